//! The builder's place in the cgroup hierarchy: the directory (one per v1 controller, or one
//! in the v2 tree) in which each build gets its group.
//!
//! On v2 the builder prefers its own cgroup, as systemd's delegation model asks
//! (`Delegate=yes`): a cgroup with controllers enabled for its children may hold no process,
//! so the builder moves itself into a leaf (`builder`) and makes its builds' groups under a
//! sibling (`builds`). Where its cgroup holds other processes too (the builder started from a
//! shell, or beside a test harness), it is not the builder's to rearrange: the builds' groups
//! then go under the hierarchy's root, which has no such rule, named after the builder.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{Controller, FALLBACK, Hierarchy, Limits, V1Mount, group};

/// Where the builder makes its builds' groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Builds {
    /// cgroup v1: for each controller the builder can use, the directory its builds' groups
    /// go in.
    V1(BTreeMap<Controller, PathBuf>),
    /// cgroup v2: the directory the builds' groups go in, and the controllers they have.
    V2 {
        dir: PathBuf,
        controllers: Vec<Controller>,
    },
}

impl Builds {
    /// The place of the builder `builder` working in `work_dir` on this machine, made if need
    /// be. Groups that an earlier run left (the builder was killed) are emptied and removed.
    ///
    /// The place is named after both: two builders on one machine may have the same name (in
    /// two farms, or in tests), and one must never remove the other's groups.
    pub fn open(builder: &str, work_dir: &Path) -> Result<Builds, String> {
        use sha2::Digest as _;
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
        let work_dir = work_dir
            .canonicalize()
            .unwrap_or_else(|_| work_dir.to_owned());
        let digest = sha2::Sha256::digest(work_dir.as_os_str().as_encoded_bytes());
        let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("quarters-{builder}-{tag}");
        let place = Builds::open_in(&Hierarchy::of_this_machine(), &own, &name)?;
        for dir in place.dirs() {
            let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    group::empty_and_remove(&entry.path())?;
                }
            }
        }
        Ok(place)
    }

    fn open_in(hierarchy: &Hierarchy, own: &str, name: &str) -> Result<Builds, String> {
        let own = super::own_groups(own);
        match hierarchy {
            Hierarchy::None => Err("this machine mounts no cgroups".into()),
            Hierarchy::Legacy(mounts) | Hierarchy::Hybrid(mounts) => {
                let mut dirs = BTreeMap::new();
                for (controller, mount) in mounts {
                    let dir = v1_dir(mount, *controller, &own).join(name);
                    make_dir(&dir)?;
                    dirs.insert(*controller, dir);
                }
                if dirs.is_empty() {
                    return Err(
                        "this machine mounts cgroup v1 without the memory, pids or cpu controller"
                            .into(),
                    );
                }
                Ok(Builds::V1(dirs))
            }
            Hierarchy::Unified(mount) => {
                let own_path = own
                    .iter()
                    .find(|(controllers, _)| controllers.is_empty())
                    .map(|(_, path)| path.as_str())
                    .ok_or("/proc/self/cgroup has no cgroup v2 line")?;
                let own_dir = mount.join(own_path.trim_start_matches('/'));
                if own_path != "/" && holds_only_this_process(&own_dir) {
                    delegated(&own_dir)
                } else {
                    let dir = mount.join(name);
                    let controllers = enable(mount, &dir)?;
                    Ok(Builds::V2 { dir, controllers })
                }
            }
        }
    }

    /// Removes the builder's place when it leaves, where it made one of its own: what is left
    /// is empty, as every build removed its group.
    pub fn close(&self) {
        match self {
            Builds::V1(dirs) => {
                for dir in dirs.values() {
                    let _ = fs::remove_dir(dir);
                }
            }
            // The delegated `builds/` stays with the cgroup it was made in, which its manager
            // removes; one at the root is the builder's own.
            Builds::V2 { dir, .. } => {
                if dir.file_name().is_some_and(|n| n != "builds") {
                    let _ = fs::remove_dir(dir);
                }
            }
        }
    }

    /// The directories the builds' groups go in.
    pub fn dirs(&self) -> Vec<&Path> {
        match self {
            Builds::V1(dirs) => dirs.values().map(PathBuf::as_path).collect(),
            Builds::V2 { dir, .. } => vec![dir.as_path()],
        }
    }

    /// The controllers a build's group has.
    pub fn controllers(&self) -> Vec<Controller> {
        match self {
            Builds::V1(dirs) => dirs.keys().copied().collect(),
            Builds::V2 { controllers, .. } => controllers.clone(),
        }
    }

    /// What the builder says at start-up about the limits its builds get.
    pub fn notice(&self, limits: &Limits) -> String {
        let controllers = self.controllers();
        let mut have = Vec::new();
        for c in &controllers {
            have.push(match c {
                Controller::Memory => format!("memory {} MiB", limits.memory_mib),
                Controller::Pids => format!("{} processes", limits.pids),
                Controller::Cpu => format!("CPU weight {}", limits.cpu_weight),
            });
        }
        let missing: Vec<&str> = Controller::ALL
            .iter()
            .filter(|c| !controllers.contains(c))
            .map(|c| c.name())
            .collect();
        let (kind, dir) = match self {
            Builds::V1(_) => ("cgroup v1", self.dirs()[0].display().to_string()),
            Builds::V2 { dir, .. } => ("cgroup v2", dir.display().to_string()),
        };
        let mut notice = format!(
            "each build gets a {kind} group ({}) under {dir}",
            have.join(", ")
        );
        if !missing.is_empty() {
            notice += &format!(
                "; without the {} controller, builds are bounded there only by {FALLBACK}",
                missing.join(" and ")
            );
        }
        notice
    }
}

/// The notice where the builder cannot have its builds' groups.
pub fn without(reason: &str) -> String {
    format!(
        "no per-build cgroup ({reason}): builds are bounded by {FALLBACK}; one build can still take most of the machine's memory or CPU"
    )
}

/// The builder's own group in a v1 controller's hierarchy, as a directory.
fn v1_dir(mount: &V1Mount, controller: Controller, own: &[(Vec<String>, String)]) -> PathBuf {
    let path = own
        .iter()
        .find(|(controllers, _)| controllers.iter().any(|c| c == controller.name()))
        .map_or("/", |(_, path)| path.as_str());
    // A mount whose root is a cgroup below the hierarchy's own root shows that cgroup's
    // descendants only: the path inside it is relative to its root.
    let relative = path
        .strip_prefix(mount.root.as_str())
        .unwrap_or(path)
        .trim_start_matches('/');
    mount.mount_point.join(relative)
}

/// Whether the v2 group at `dir` holds this process and no other.
fn holds_only_this_process(dir: &Path) -> bool {
    let me = std::process::id().to_string();
    fs::read_to_string(dir.join("cgroup.procs"))
        .is_ok_and(|procs| procs.lines().all(|p| p == me) && procs.lines().count() == 1)
}

/// The delegated case: the builder moves into `own/builder` and its builds go under
/// `own/builds`.
fn delegated(own: &Path) -> Result<Builds, String> {
    let leaf = own.join("builder");
    make_dir(&leaf)?;
    write(&leaf.join("cgroup.procs"), &std::process::id().to_string())?;
    let dir = own.join("builds");
    let controllers = enable(own, &dir)?;
    Ok(Builds::V2 { dir, controllers })
}

/// Enables the limits' controllers for `parent`'s children, makes `dir` below it, and enables
/// them for `dir`'s children (the builds' groups). Returns the controllers that could be
/// enabled: those `parent` has itself.
fn enable(parent: &Path, dir: &Path) -> Result<Vec<Controller>, String> {
    let available = fs::read_to_string(parent.join("cgroup.controllers"))
        .map_err(|e| format!("{}: {e}", parent.join("cgroup.controllers").display()))?;
    let controllers: Vec<Controller> = Controller::ALL
        .into_iter()
        .filter(|c| available.split_whitespace().any(|a| a == c.name()))
        .collect();
    let line: Vec<String> = controllers
        .iter()
        .map(|c| format!("+{}", c.name()))
        .collect();
    let line = line.join(" ");
    write(&parent.join("cgroup.subtree_control"), &line)?;
    make_dir(dir)?;
    write(&dir.join("cgroup.subtree_control"), &line)?;
    Ok(controllers)
}

fn make_dir(dir: &Path) -> Result<(), String> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("making the cgroup {}: {e}", dir.display())),
    }
}

pub(super) fn write(file: &Path, value: &str) -> Result<(), String> {
    fs::write(file, value).map_err(|e| format!("writing {value:?} to {}: {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_group_is_found_below_the_mount_s_own_root() {
        let own = super::super::own_groups("4:memory:/lxc/c1/svc\n3:pids:/svc\n");
        let mount = |root: &str| V1Mount {
            mount_point: "/sys/fs/cgroup/x".into(),
            root: root.into(),
        };
        assert_eq!(
            v1_dir(&mount("/lxc/c1"), Controller::Memory, &own),
            PathBuf::from("/sys/fs/cgroup/x/svc")
        );
        assert_eq!(
            v1_dir(&mount("/"), Controller::Pids, &own),
            PathBuf::from("/sys/fs/cgroup/x/svc")
        );
        // A controller the process file does not name: the hierarchy's root.
        assert_eq!(
            v1_dir(&mount("/"), Controller::Cpu, &own),
            PathBuf::from("/sys/fs/cgroup/x")
        );
    }

    #[test]
    fn the_notice_names_what_bounds_builds_and_what_does_not() {
        let limits = Limits {
            memory_mib: 512,
            pids: 64,
            cpu_weight: 100,
        };
        let place = Builds::V1(BTreeMap::from([(
            Controller::Memory,
            PathBuf::from("/sys/fs/cgroup/memory/quarters-b1"),
        )]));
        let notice = place.notice(&limits);
        assert!(
            notice.contains("cgroup v1 group (memory 512 MiB)"),
            "{notice}"
        );
        assert!(
            notice.contains("without the pids and cpu controller"),
            "{notice}"
        );
        assert!(without("this machine mounts no cgroups").contains("the watchdog"));
    }
}

//! Per-build memory, process and CPU-weight limits through cgroups.
//!
//! Every sandboxed stage of a build runs in the build's own cgroup, made by the builder (host
//! root) and entered before the sandbox makes its namespaces, so that nothing the package
//! starts can leave it: the cgroup file system is never mounted in a build root, and the
//! sandbox gets a cgroup namespace of its own. A build that reaches a limit is stopped by the
//! kernel (the OOM killer for memory, a failing `fork` for processes) and fails in its stage
//! with the limit named ([`group::Events`]).
//!
//! Both kinds of hierarchy are served, because build machines have both:
//! * **cgroup v2** (unified): the builder's own cgroup is delegated to it (the shipped systemd
//!   unit says `Delegate=yes`), it moves itself into a leaf and makes its builds' groups beside
//!   it ([`place`]);
//! * **cgroup v1** (legacy, or hybrid where the v2 tree holds no controller): one directory per
//!   controller hierarchy, under the builder's own group in each.
//!
//! Where neither can be had (no cgroups, or the builder may not write them), builds are bounded
//! by what needs no cgroup: the process limit, the size of every tmpfs, and the watchdog's
//! wall-clock, CPU-time and hang limits. The builder says which at start-up.

pub mod group;
pub mod place;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use group::{BuildGroup, Events};
pub use place::Builds;

/// One cgroup controller a build's limits use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

    /// The kernel's name of the controller.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

/// A build's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Memory, page cache and the build's tmpfs pages included, in MiB; no swap beyond it.
    pub memory_mib: u64,
    /// Processes and threads at once.
    pub pids: u64,
    /// CPU weight against the other builds (cgroup v2's scale: 1..=10000, 100 is the norm).
    pub cpu_weight: u16,
}

/// Where a v1 controller's hierarchy is mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Mount {
    pub mount_point: PathBuf,
    /// The cgroup the mount shows as its root (not `/` in some containers).
    pub root: String,
}

/// The cgroup hierarchy of this machine, as its mount table shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// Only cgroup2, mounted here.
    Unified(PathBuf),
    /// cgroup v1 controllers beside a cgroup2 tree (which has none of them): the v1
    /// controllers serve.
    Hybrid(BTreeMap<Controller, V1Mount>),
    /// cgroup v1 controllers only.
    Legacy(BTreeMap<Controller, V1Mount>),
    /// No cgroups mounted at all.
    None,
}

impl Hierarchy {
    /// Reads `/proc/self/mountinfo`.
    pub fn of_this_machine() -> Hierarchy {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|text| Hierarchy::from_mountinfo(&text))
            .unwrap_or(Hierarchy::None)
    }

    /// The hierarchy a mount table (`/proc/self/mountinfo`'s format) describes.
    pub fn from_mountinfo(text: &str) -> Hierarchy {
        let mut v1 = false;
        let mut v1_mounts = BTreeMap::new();
        let mut v2 = None;
        for line in text.lines() {
            // Fields: id parent major:minor root mount-point options [optional...] - type
            // source super-options.
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split(' ').collect();
            let (Some(root), Some(mount_point)) = (left.get(3), left.get(4)) else {
                continue;
            };
            let right: Vec<&str> = right.split(' ').collect();
            match right.first() {
                Some(&"cgroup") => {
                    v1 = true;
                    let options = right.get(2).copied().unwrap_or("");
                    for controller in Controller::ALL {
                        if options.split(',').any(|o| o == controller.name()) {
                            v1_mounts.entry(controller).or_insert(V1Mount {
                                mount_point: PathBuf::from(mount_point),
                                root: (*root).to_owned(),
                            });
                        }
                    }
                }
                Some(&"cgroup2") if v2.is_none() => v2 = Some(PathBuf::from(mount_point)),
                _ => {}
            }
        }
        match (v1, v2) {
            (false, Some(path)) => Hierarchy::Unified(path),
            (true, Some(_)) => Hierarchy::Hybrid(v1_mounts),
            (true, None) => Hierarchy::Legacy(v1_mounts),
            (false, None) => Hierarchy::None,
        }
    }
}

/// What bounds a build where it gets no cgroup, or no controller of one kind.
pub const FALLBACK: &str = "the process limit (`nproc`), the size of every tmpfs and the watchdog (wall-clock, CPU time, hang)";

/// The groups of `/proc/self/cgroup`'s format: for each line's controllers (empty for v2's
/// `0::` line), the process's path in that hierarchy.
pub fn own_groups(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let _id = fields.next()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            Some((
                controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path.to_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY: &str = "\
25 30 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
27 25 0:24 /lxc/c1 /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
";
    const HYBRID: &str = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
";
    const UNIFIED: &str = "\
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn the_mount_table_tells_the_hierarchy_and_where_each_v1_controller_is() {
        let Hierarchy::Legacy(mounts) = Hierarchy::from_mountinfo(LEGACY) else {
            panic!("not legacy");
        };
        assert_eq!(
            mounts[&Controller::Memory].mount_point,
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert_eq!(mounts[&Controller::Pids].root, "/lxc/c1");
        // `cpuacct` is not `cpu`, but a co-mounted `cpu,cpuacct` hierarchy serves `cpu`.
        assert_eq!(
            mounts[&Controller::Cpu].mount_point,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        let Hierarchy::Hybrid(mounts) = Hierarchy::from_mountinfo(HYBRID) else {
            panic!("not hybrid");
        };
        assert_eq!(
            mounts.keys().copied().collect::<Vec<_>>(),
            [Controller::Memory]
        );
        assert_eq!(
            Hierarchy::from_mountinfo(UNIFIED),
            Hierarchy::Unified("/sys/fs/cgroup".into())
        );
        assert_eq!(Hierarchy::from_mountinfo(""), Hierarchy::None);
    }

    #[test]
    fn own_groups_are_read_per_hierarchy() {
        let groups =
            own_groups("4:memory:/process_api/a2\n2:cpu,cpuacct:/\n0::/system.slice/q.service\n");
        assert_eq!(
            groups,
            [
                (vec!["memory".to_owned()], "/process_api/a2".to_owned()),
                (vec!["cpu".to_owned(), "cpuacct".to_owned()], "/".to_owned()),
                (vec![], "/system.slice/q.service".to_owned()),
            ]
        );
    }
}

//! One build's cgroup: made with its limits before the first sandboxed stage, entered by each
//! stage's sandbox before it makes its namespaces, read after each stage for the limits it
//! reached, and emptied and removed with the build's root.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::place::write;
use super::{Builds, Controller, Limits};

/// A build's cgroup (one directory per v1 controller, or one v2 directory).
#[derive(Debug)]
pub struct BuildGroup {
    /// The directories, each with the controllers it holds.
    dirs: Vec<(Vec<Controller>, PathBuf)>,
    version: Version,
    limits: Limits,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// What the kernel counted in a build's group: compared before and after a stage, they say
/// which limit the stage reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// Processes the OOM killer killed for the memory limit.
    pub oom_kills: u64,
    /// `fork`s and `clone`s refused for the process limit.
    pub pids_refused: u64,
}

impl BuildGroup {
    /// Makes the group of build `id` (a name the builder made from the pkgbase, whose
    /// characters makepkg allows, and a number) with `limits`.
    pub fn create(builds: &Builds, id: &str, limits: Limits) -> Result<BuildGroup, String> {
        if id.is_empty()
            || id.starts_with('.')
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '@'))
        {
            return Err(format!("{id:?} cannot name a cgroup"));
        }
        let (version, dirs) = match builds {
            Builds::V1(dirs) => (
                Version::V1,
                dirs.iter()
                    .map(|(c, dir)| (vec![*c], dir.join(id)))
                    .collect::<Vec<_>>(),
            ),
            Builds::V2 { dir, controllers } => {
                (Version::V2, vec![(controllers.clone(), dir.join(id))])
            }
        };
        let group = BuildGroup {
            dirs,
            version,
            limits,
        };
        for (controllers, dir) in &group.dirs {
            // A group of the same name is what an earlier attempt left: not this build's.
            if dir.exists() {
                empty_and_remove(dir)?;
            }
            fs::create_dir(dir).map_err(|e| format!("making the cgroup {}: {e}", dir.display()))?;
            for controller in controllers {
                group.apply(*controller, dir)?;
            }
        }
        Ok(group)
    }

    fn apply(&self, controller: Controller, dir: &Path) -> Result<(), String> {
        let limits = &self.limits;
        let memory = (limits.memory_mib << 20).to_string();
        match (self.version, controller) {
            (Version::V1, Controller::Memory) => {
                write(&dir.join("memory.limit_in_bytes"), &memory)?;
                // Memory and swap together, where the kernel accounts swap: no swap beyond the
                // limit.
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &memory)?;
                }
                Ok(())
            }
            (Version::V2, Controller::Memory) => {
                write(&dir.join("memory.max"), &memory)?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
                // A build with one process killed is a broken build: the whole group goes.
                write(&dir.join("memory.oom.group"), "1")
            }
            (_, Controller::Pids) => write(&dir.join("pids.max"), &limits.pids.to_string()),
            (Version::V1, Controller::Cpu) => {
                // v1's shares are 1024 for v2's weight of 100.
                let shares = (u64::from(limits.cpu_weight) * 1024 / 100).max(2);
                write(&dir.join("cpu.shares"), &shares.to_string())
            }
            (Version::V2, Controller::Cpu) => {
                write(&dir.join("cpu.weight"), &limits.cpu_weight.to_string())
            }
        }
    }

    /// Puts process `pid` (a sandbox's entry, before it starts anything) into the group: what
    /// it starts is in it too.
    pub fn enter(&self, pid: u32) -> Result<(), String> {
        for (_, dir) in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// What the kernel has counted so far.
    pub fn events(&self) -> Events {
        let mut events = Events::default();
        for (controllers, dir) in &self.dirs {
            if controllers.contains(&Controller::Memory) {
                let file = match self.version {
                    Version::V1 => "memory.oom_control",
                    Version::V2 => "memory.events",
                };
                events.oom_kills = counter(&dir.join(file), "oom_kill");
            }
            if controllers.contains(&Controller::Pids) {
                events.pids_refused = counter(&dir.join("pids.events"), "max");
            }
        }
        events
    }

    /// The limit a stage reached, named, if the kernel counted one since `before`.
    pub fn reached_since(&self, before: Events) -> Option<String> {
        let now = self.events();
        if now.oom_kills > before.oom_kills {
            Some(format!(
                "out of memory: killed at the build's memory limit of {} MiB",
                self.limits.memory_mib
            ))
        } else if now.pids_refused > before.pids_refused {
            Some(format!(
                "reached the build's limit of {} processes and threads",
                self.limits.pids
            ))
        } else {
            None
        }
    }

    /// Kills whatever is left in the group and removes it.
    pub fn remove(self) -> Result<(), String> {
        for (_, dir) in &self.dirs {
            empty_and_remove(dir)?;
        }
        Ok(())
    }
}

/// A `key value` line's value in a cgroup's flat keyed file; 0 where there is none.
fn counter(file: &Path, key: &str) -> u64 {
    fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let (k, v) = line.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

/// Kills every process of the group at `dir` and removes it (its child groups first).
pub(super) fn empty_and_remove(dir: &Path) -> Result<(), String> {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                empty_and_remove(&entry.path())?;
            }
        }
    }
    // v2 kills a whole group at once (Linux 5.14 and later); v1 one process at a time, until
    // none is left, as the processes may still be forking.
    let kill_all = dir.join("cgroup.kill");
    if kill_all.exists() {
        let _ = write(&kill_all, "1");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|p| p.parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // Busy while the killed processes are still exiting.
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("removing the cgroup {}: {e}", dir.display()));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_flat_keyed_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.oom_control");
        fs::write(&file, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").unwrap();
        assert_eq!(counter(&file, "oom_kill"), 3);
        assert_eq!(counter(&file, "oom_kill_disable"), 0);
        assert_eq!(counter(&file, "nothing"), 0);
        assert_eq!(counter(&dir.path().join("absent"), "max"), 0);
    }

    #[test]
    fn only_a_plain_name_names_a_group() {
        let builds = Builds::V1(Default::default());
        let limits = Limits {
            memory_mib: 1,
            pids: 1,
            cpu_weight: 1,
        };
        for bad in ["", "..", "../x", "a/b", ".hidden"] {
            assert!(BuildGroup::create(&builds, bad, limits).is_err(), "{bad}");
        }
        for good in ["b-17", "libc++-1795354943661-0", "gtk2@x_y.z-1-0"] {
            assert!(BuildGroup::create(&builds, good, limits).is_ok(), "{good}");
        }
    }
}

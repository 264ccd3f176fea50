//! Which cgroup hierarchy the machine has, and what that means for a build's limits.
//!
//! Per-build memory, process and CPU-weight limits need a cgroup v2 (unified) hierarchy to
//! which the builder can delegate. Many machines still mount the legacy v1 controllers, alone
//! or beside a v2 tree that holds none of them (systemd's "hybrid" mode); there, a build is
//! bounded by what does not need cgroups: the process limit, the size of every tmpfs, and the
//! watchdog's wall-clock, CPU-time and hang limits. The builder says which at start-up, so
//! that an operator knows what protects the machine.

use std::path::PathBuf;

/// The cgroup hierarchy of this machine, as its mount table shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// Only cgroup2, mounted here: the controllers a per-build cgroup needs may be there.
    Unified(PathBuf),
    /// cgroup v1 controllers beside a cgroup2 tree (which has none of them).
    Hybrid,
    /// cgroup v1 controllers only.
    Legacy,
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
        let mut v2 = None;
        for line in text.lines() {
            // Fields: id parent major:minor root mount-point options [optional...] - type ...
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4) else {
                continue;
            };
            match right.split(' ').next() {
                Some("cgroup") => v1 = true,
                Some("cgroup2") if v2.is_none() => v2 = Some(PathBuf::from(mount_point)),
                _ => {}
            }
        }
        match (v1, v2) {
            (false, Some(path)) => Hierarchy::Unified(path),
            (true, Some(_)) => Hierarchy::Hybrid,
            (true, None) => Hierarchy::Legacy,
            (false, None) => Hierarchy::None,
        }
    }

    /// What the builder says at start-up about the limits builds get on this machine.
    pub fn notice(&self) -> String {
        let fallback = "builds are bounded by the process limit (`nproc`), the size of every tmpfs and the watchdog (wall-clock, CPU time, hang); one build can still take most of the machine's memory or CPU";
        match self {
            Hierarchy::Unified(path) => format!(
                "cgroup v2 at {}: per-build memory, process and CPU-weight limits are not implemented yet; {fallback}",
                path.display()
            ),
            Hierarchy::Hybrid => format!(
                "this machine mounts cgroups in hybrid mode (v1 controllers beside an empty v2 tree): no per-build memory, process or CPU-weight limits; {fallback}"
            ),
            Hierarchy::Legacy => format!(
                "this machine mounts only cgroup v1: no per-build memory, process or CPU-weight limits; {fallback}"
            ),
            Hierarchy::None => format!(
                "this machine mounts no cgroups: no per-build memory, process or CPU-weight limits; {fallback}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY: &str = "\
25 30 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
27 25 0:24 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
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
    fn the_mount_table_tells_the_hierarchy() {
        assert_eq!(Hierarchy::from_mountinfo(LEGACY), Hierarchy::Legacy);
        assert_eq!(Hierarchy::from_mountinfo(HYBRID), Hierarchy::Hybrid);
        assert_eq!(
            Hierarchy::from_mountinfo(UNIFIED),
            Hierarchy::Unified("/sys/fs/cgroup".into())
        );
        assert_eq!(Hierarchy::from_mountinfo(""), Hierarchy::None);
        assert!(Hierarchy::Hybrid.notice().contains("hybrid mode"));
        assert!(Hierarchy::Legacy.notice().contains("the watchdog"));
    }
}

//! The mounts of a build root on the host: a tmpfs for the writable layer, the overlay over the
//! template, and unmounting whatever a crash left under the work directory.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// A build root: `root` is an overlay of `template` whose writable layer lives on a tmpfs at
/// `scratch`. Nothing is copied, so a root costs milliseconds.
#[derive(Debug)]
pub struct BuildRoot {
    pub root: PathBuf,
    scratch: PathBuf,
}

impl BuildRoot {
    /// The root, its writable layer limited to `size_mib`; mounted `nosuid` and `nodev`, so
    /// that the template's setuid binaries (su, mount, passwd) are plain files in a build.
    pub fn create(template: &Path, dir: &Path, size_mib: u64) -> Result<Self, String> {
        let root = dir.join("root");
        let scratch = dir.join("scratch");
        for d in [&root, &scratch] {
            fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        mount(
            Some("tmpfs"),
            &scratch,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("mode=755,size={size_mib}m").as_str()),
        )
        .map_err(|e| format!("mounting a tmpfs at {}: {e}", scratch.display()))?;
        let built = BuildRoot { root, scratch };
        for d in ["upper", "work"] {
            let p = built.scratch.join(d);
            fs::create_dir(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            template.display(),
            built.scratch.join("upper").display(),
            built.scratch.join("work").display()
        );
        mount(
            Some("overlay"),
            &built.root,
            Some("overlay"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|e| format!("mounting the overlay at {}: {e}", built.root.display()))?;
        Ok(built)
    }

    /// Binds `bind.host` at `bind.inside` in the root, `nosuid,nodev` (and `ro` if asked): the
    /// flags of a bind can only be set by a remount. Made here, in the host's mount namespace,
    /// the flags are locked for the build: root inside cannot remount a read-only bind
    /// writable.
    pub fn bind(&self, bind: &Bind) -> Result<(), String> {
        let inside = &bind.inside;
        let target = self.root.join(inside.strip_prefix("/").unwrap_or(inside));
        fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
        mount(
            Some(bind.host.as_path()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            format!(
                "binding {} at {}: {e}",
                bind.host.display(),
                inside.display()
            )
        })?;
        let mut flags =
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if bind.read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        mount(None::<&str>, &target, None::<&str>, flags, None::<&str>)
            .map_err(|e| format!("remounting {}: {e}", inside.display()))
    }

    /// Shows `lower` at `inside` in the root through an overlay whose writable layer (owned
    /// by `owner`, a host id) lives on the root's tmpfs: the build may change what it sees
    /// there, and the changes go with the root; `lower` itself never changes.
    pub fn overlay(&self, lower: &Path, inside: &Path, owner: u32) -> Result<(), String> {
        let name = inside.to_string_lossy().replace('/', "_");
        let upper = self.scratch.join(format!("{name}.upper"));
        let work = self.scratch.join(format!("{name}.work"));
        for d in [&upper, &work] {
            fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        nix::unistd::chown(
            &upper,
            Some(nix::unistd::Uid::from_raw(owner)),
            Some(nix::unistd::Gid::from_raw(owner)),
        )
        .map_err(|e| format!("chown {}: {e}", upper.display()))?;
        let target = self.root.join(inside.strip_prefix("/").unwrap_or(inside));
        fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|e| format!("mounting an overlay at {}: {e}", inside.display()))
    }

    /// Unmounts the root (with everything bound into it) and its tmpfs and removes their
    /// directories.
    pub fn remove(self) -> Result<(), String> {
        let mut errors = Vec::new();
        for d in [&self.root, &self.scratch] {
            if let Err(e) = umount2(d.as_path(), MntFlags::MNT_DETACH) {
                errors.push(format!("unmounting {}: {e}", d.display()));
            }
            let _ = fs::remove_dir(d);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// A directory of the host bound into a build root, read-only if `read_only`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    /// Absolute, inside the root.
    pub inside: PathBuf,
    pub read_only: bool,
}

/// Unmounts every mount point under `dir`, deepest first: what a crash left of build roots.
pub fn unmount_under(dir: &Path) -> usize {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return 0;
    };
    let Ok(dir) = dir.canonicalize() else {
        return 0;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(&dir) && *p != dir)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    let mut n = 0;
    for p in points {
        if umount2(p.as_path(), MntFlags::MNT_DETACH).is_ok() {
            n += 1;
        }
    }
    n
}

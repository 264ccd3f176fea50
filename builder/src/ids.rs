//! The ids of a build's user namespace, and the template root that belongs to them.
//!
//! Every sandboxed stage runs in a user namespace whose ids 0..65536 are the host's
//! `base..base + 65536`, as systemd-nspawn's `--private-users` does: root inside a build
//! (pacman installing packages, their scriptlets and ALPM hooks) is an unprivileged id on the
//! host, and the build user is another one. For root inside to own the files of the root, the
//! template's files belong to the shifted ids (`quarters-builder mkroot` shifts them, as
//! nspawn's `--private-users-ownership=chown` does); the builder refuses a template that does
//! not belong to its range.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use nix::fcntl::AtFlags;
use nix::unistd::{Gid, Uid, fchownat};

/// Where the range starts by default: inside systemd's range for container ids
/// (524288..1879048192), far from the 100000.. that `useradd` gives users in `/etc/subuid`.
pub const DEFAULT_BASE: u32 = 0x6000_0000;

/// A build's id map: ids `0..IdMap::COUNT` inside are `base..base + COUNT` outside.
///
/// Invariant: `base >= COUNT` (no host system id is ever inside a build) and
/// `base + COUNT` fits in a `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdMap {
    base: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error("id base {0} is below 65536: the host's own users would be inside builds")]
    TooLow(u32),
    #[error("id base {0} leaves no room for 65536 ids below 2^32")]
    TooHigh(u32),
}

impl IdMap {
    /// How many ids a build has: every id a package may use.
    pub const COUNT: u32 = 65536;

    pub fn new(base: u32) -> Result<Self, IdMapError> {
        if base < Self::COUNT {
            return Err(IdMapError::TooLow(base));
        }
        if base.checked_add(Self::COUNT).is_none() {
            return Err(IdMapError::TooHigh(base));
        }
        Ok(IdMap { base })
    }

    pub fn base(self) -> u32 {
        self.base
    }

    /// The host id of `inside`, an id of the build.
    pub fn outside(self, inside: u32) -> u32 {
        self.base + inside % Self::COUNT
    }

    /// The line of `/proc/PID/uid_map` and `gid_map` that sets the map.
    pub fn proc_line(self) -> String {
        format!("0 {} {}\n", self.base, Self::COUNT)
    }

    /// Whether the template at `dir` belongs to this range (its top directory is root's, inside).
    pub fn owns(self, dir: &Path) -> std::io::Result<bool> {
        let meta = fs::metadata(dir)?;
        Ok(meta.uid() == self.base && meta.gid() == self.base)
    }

    /// Hands every file under `dir` to this range, keeping the modes that a change of owner
    /// clears (setuid, setgid). Each id moves from the host's `0..65536` or from the range of
    /// `from` (a template made for another base); ids already in this range stay, so that an
    /// interrupted shift can be run again. `dir` itself changes last: [`IdMap::owns`] is true
    /// only of a finished shift. Returns how many entries changed. An id in none of these
    /// ranges is an error: nothing in a build could own it.
    pub fn shift_tree(self, dir: &Path, from: Option<IdMap>) -> anyhow::Result<u64> {
        let mut changed = 0;
        let mut stack: Vec<std::path::PathBuf> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        while let Some(path) = stack.pop() {
            let meta = fs::symlink_metadata(&path)?;
            changed += u64::from(self.shift_one(&path, &meta, from)?);
            if meta.is_dir() {
                for entry in fs::read_dir(&path)? {
                    stack.push(entry?.path());
                }
            }
        }
        changed += u64::from(self.shift_one(dir, &fs::symlink_metadata(dir)?, from)?);
        Ok(changed)
    }

    /// Shifts one entry; whether it changed.
    fn shift_one(
        self,
        path: &Path,
        meta: &fs::Metadata,
        from: Option<IdMap>,
    ) -> anyhow::Result<bool> {
        let shift = |id: u32| -> anyhow::Result<u32> {
            let inside = if id < Self::COUNT {
                id
            } else if let Some(i) = self.inside(id).or_else(|| from.and_then(|f| f.inside(id))) {
                i
            } else {
                anyhow::bail!(
                    "{} belongs to id {id}, in no range of build ids (0..65536, {}..{}{})",
                    path.display(),
                    self.base,
                    u64::from(self.base) + u64::from(Self::COUNT),
                    from.map_or(String::new(), |f| format!(", {}..", f.base))
                );
            };
            Ok(self.base + inside)
        };
        let (uid, gid) = (shift(meta.uid())?, shift(meta.gid())?);
        if (uid, gid) == (meta.uid(), meta.gid()) {
            return Ok(false);
        }
        fchownat(
            nix::fcntl::AT_FDCWD,
            path,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| anyhow::anyhow!("chown {}: {e}", path.display()))?;
        if !meta.file_type().is_symlink() {
            // The kernel clears setuid and setgid on a change of owner; the template keeps
            // them (builds run with no_new_privs, so they grant nothing there).
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
        Ok(true)
    }

    /// The id inside of `outside`, if this range holds it.
    fn inside(self, outside: u32) -> Option<u32> {
        outside.checked_sub(self.base).filter(|i| *i < Self::COUNT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_never_holds_host_system_ids_nor_wraps() {
        assert!(matches!(IdMap::new(0), Err(IdMapError::TooLow(0))));
        assert!(matches!(IdMap::new(65535), Err(IdMapError::TooLow(_))));
        assert!(matches!(
            IdMap::new(u32::MAX - 10),
            Err(IdMapError::TooHigh(_))
        ));
        let map = IdMap::new(DEFAULT_BASE).unwrap();
        assert_eq!(map.outside(0), DEFAULT_BASE);
        assert_eq!(map.outside(65534), DEFAULT_BASE + 65534);
        assert_eq!(map.proc_line(), format!("0 {DEFAULT_BASE} 65536\n"));
    }

    #[test]
    fn shifting_a_tree_moves_every_owner_and_keeps_setuid() {
        // Tests run as root (CI does), as chown to other ids needs.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("su");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("su", dir.path().join("link")).unwrap();
        let map = IdMap::new(DEFAULT_BASE).unwrap();
        assert_eq!(map.shift_tree(dir.path(), None).unwrap(), 3);
        assert!(map.owns(dir.path()).unwrap());
        let meta = fs::metadata(&file).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (DEFAULT_BASE, 0o4755));
        let link = fs::symlink_metadata(dir.path().join("link")).unwrap();
        assert_eq!(link.uid(), DEFAULT_BASE);
        // Shifting again from the same range changes nothing; to another range moves all.
        assert_eq!(map.shift_tree(dir.path(), Some(map)).unwrap(), 0);
        let other = IdMap::new(DEFAULT_BASE + IdMap::COUNT).unwrap();
        assert_eq!(other.shift_tree(dir.path(), Some(map)).unwrap(), 3);
        // An interrupted shift (part of the tree still the host's) finishes when run again.
        let partial = dir.path().join("late");
        fs::write(&partial, b"").unwrap();
        assert!(other.owns(dir.path()).unwrap());
        assert_eq!(other.shift_tree(dir.path(), None).unwrap(), 1);
        assert_eq!(fs::metadata(&partial).unwrap().uid(), other.base());
        // Ids that no build could own are refused by name.
        nix::unistd::chown(&partial, Some(Uid::from_raw(70000)), None).unwrap();
        let err = other.shift_tree(dir.path(), None).unwrap_err().to_string();
        assert!(
            err.contains("late belongs to id 70000, in no range"),
            "{err}"
        );
    }
}

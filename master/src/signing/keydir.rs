//! The signer's key directory through a key's life: made, staged as the next key, made
//! current, retired, revoked.
//!
//! ```text
//! DIR/farm-key.asc, farm-key.pub.asc            the key that signs (secret 0600)
//! DIR/next/farm-key.asc, next/farm-key.pub.asc  the staged next key: listed, not signing
//! DIR/retired/FINGERPRINT.pub.asc               keys that signed once, listed until removed
//! DIR/revoked/FINGERPRINT.pub.asc               keys clients must no longer trust
//! ```
//!
//! A rotation has two steps because pacman requires every signature it reads to verify: a
//! client must trust the next key before anything is signed by it, and the old key signs
//! until then. `rotate` stages the next key, which `export` and keyring packages list at once;
//! `rotate --activate`, once clients and builders have it, makes it the signing key.

use std::io;
use std::path::{Path, PathBuf};

use quarters_common::farm_key::FarmPublicKey;

use super::key::{FarmKey, Fingerprint, KeyError, PUBLIC_FILE, SECRET_FILE};

const NEXT_DIR: &str = "next";
const RETIRED_DIR: &str = "retired";
const REVOKED_DIR: &str = "revoked";

/// What a key directory lists for clients.
#[derive(Clone, Debug)]
pub struct Listing {
    pub current: FarmPublicKey,
    pub next: Option<FarmPublicKey>,
    /// Newest first.
    pub retired: Vec<FarmPublicKey>,
    pub revoked: Vec<FarmPublicKey>,
}

impl Listing {
    /// The keys clients should trust, the signing key first.
    pub fn trusted(&self) -> impl Iterator<Item = &FarmPublicKey> {
        std::iter::once(&self.current)
            .chain(&self.next)
            .chain(&self.retired)
    }

    /// The trusted keys, armored one after another: what `quartersctl key export` prints and
    /// a builder's `farm_key` holds.
    pub fn exported(&self) -> String {
        self.trusted().map(|k| k.armored.as_str()).collect()
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The public keys in `dir`, from their public files alone.
pub fn listing(dir: &Path) -> Result<Listing, KeyError> {
    let read = |path: PathBuf| {
        FarmPublicKey::read(&path).map_err(|reason| KeyError::Malformed { path, reason })
    };
    let current = read(dir.join(PUBLIC_FILE))?;
    let next_path = dir.join(NEXT_DIR).join(PUBLIC_FILE);
    let next = next_path.exists().then(|| read(next_path)).transpose()?;
    let listed = |sub: &str| -> Result<Vec<FarmPublicKey>, KeyError> {
        let at = dir.join(sub);
        let entries = match std::fs::read_dir(&at) {
            Ok(entries) => entries
                .collect::<Result<Vec<_>, _>>()
                .map_err(io_error(&at))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error(&at)(e)),
        };
        let mut keys = entries
            .into_iter()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "asc"))
            .map(read)
            .collect::<Result<Vec<_>, _>>()?;
        keys.sort_by_key(|k| std::cmp::Reverse(k.created));
        Ok(keys)
    };
    let revoked = listed(REVOKED_DIR)?;
    let retired = listed(RETIRED_DIR)?
        .into_iter()
        .filter(|k| k.fingerprint != current.fingerprint)
        .filter(|k| !revoked.iter().any(|r| r.fingerprint == k.fingerprint))
        .collect();
    Ok(Listing {
        current,
        next,
        retired,
        revoked,
    })
}

/// Stages a next key for `user_id`, listed from now on and signing only once activated. A key
/// already staged is kept.
pub fn stage(dir: &Path, user_id: &str) -> Result<FarmKey, KeyError> {
    FarmKey::load(dir)?;
    let next = dir.join(NEXT_DIR);
    std::fs::create_dir_all(&next).map_err(io_error(&next))?;
    super::key::owned_like_dir(&next).map_err(io_error(&next))?;
    FarmKey::init(&next, user_id, false)
}

/// Makes the staged key the signing key; the one it replaces is retired (still listed).
/// Returns the retired key's fingerprint and the new key.
pub fn activate(dir: &Path) -> Result<(Fingerprint, FarmKey), KeyError> {
    let old = FarmKey::load(dir)?;
    let next_dir = dir.join(NEXT_DIR);
    let next = FarmKey::load(&next_dir)?;
    let retired = dir.join(RETIRED_DIR);
    std::fs::create_dir_all(&retired).map_err(io_error(&retired))?;
    // The old public key is kept first, then the secret renamed over: a crash in between
    // leaves the old key signing and listed twice, never a key that no file lists.
    let kept = retired.join(format!("{}.pub.asc", old.fingerprint()));
    quarters_common::fsutil::write_file(&kept, old.public_armored().as_bytes(), 0o644, true)
        .map_err(io_error(&kept))?;
    super::key::owned_like_dir(&retired).map_err(io_error(&retired))?;
    super::key::owned_like_dir(&kept).map_err(io_error(&kept))?;
    for file in [SECRET_FILE, PUBLIC_FILE] {
        let to = dir.join(file);
        std::fs::rename(next_dir.join(file), &to).map_err(io_error(&to))?;
    }
    std::fs::remove_dir(&next_dir).map_err(io_error(&next_dir))?;
    Ok((old.fingerprint(), next))
}

/// Revokes a retired key: clients that install the next keyring package stop trusting it.
/// The signing and the staged key cannot be revoked: rotate first.
pub fn revoke(dir: &Path, fingerprint: &str) -> Result<(), KeyError> {
    let file = format!("{fingerprint}.pub.asc");
    let from = dir.join(RETIRED_DIR).join(&file);
    if !from.is_file() {
        return Err(KeyError::Io {
            path: from,
            source: io::Error::new(
                io::ErrorKind::NotFound,
                "only a retired key can be revoked (rotate a signing key out first)",
            ),
        });
    }
    let revoked = dir.join(REVOKED_DIR);
    std::fs::create_dir_all(&revoked).map_err(io_error(&revoked))?;
    super::key::owned_like_dir(&revoked).map_err(io_error(&revoked))?;
    let to = revoked.join(&file);
    std::fs::rename(&from, &to).map_err(io_error(&to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprints<'a>(keys: impl Iterator<Item = &'a FarmPublicKey>) -> Vec<Fingerprint> {
        keys.map(|k| k.fingerprint.clone()).collect()
    }

    #[test]
    fn a_key_is_staged_listed_activated_retired_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let first = FarmKey::init(dir.path(), "Farm <farm@example.org>", false).unwrap();
        let second = stage(dir.path(), "Farm <farm@example.org>").unwrap();
        // Staged: listed after the signing key, which still signs.
        let listed = listing(dir.path()).unwrap();
        assert_eq!(
            fingerprints(listed.trusted()),
            [first.fingerprint(), second.fingerprint()]
        );
        assert_eq!(
            FarmKey::load(dir.path()).unwrap().fingerprint(),
            first.fingerprint()
        );
        assert_eq!(
            FarmPublicKey::parse_all(Path::new("export"), &listed.exported())
                .unwrap()
                .len(),
            2
        );

        let (old, new) = activate(dir.path()).unwrap();
        assert_eq!(
            (old, new.fingerprint()),
            (first.fingerprint(), second.fingerprint())
        );
        assert_eq!(
            FarmKey::load(dir.path()).unwrap().fingerprint(),
            second.fingerprint()
        );
        let listed = listing(dir.path()).unwrap();
        assert_eq!(
            fingerprints(listed.trusted()),
            [second.fingerprint(), first.fingerprint()]
        );
        assert!(activate(dir.path()).is_err(), "nothing is staged any more");

        assert!(revoke(dir.path(), second.fingerprint().as_str()).is_err());
        revoke(dir.path(), first.fingerprint().as_str()).unwrap();
        let listed = listing(dir.path()).unwrap();
        assert_eq!(fingerprints(listed.trusted()), [second.fingerprint()]);
        assert_eq!(fingerprints(listed.revoked.iter()), [first.fingerprint()]);
    }
}

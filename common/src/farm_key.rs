//! The farm's public signing key as everyone but the signer holds it: an armored OpenPGP
//! public key file (`quartersctl key export`), read and checked with rPGP.

use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::types::KeyDetails;

/// A key's fingerprint, as `pacman-key --lsign-key` and `gpg --list-keys` show it: 40
/// upper-case hexadecimal digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(key: &impl KeyDetails) -> Self {
        Fingerprint(format!("{:X}", key.fingerprint()))
    }

    /// A fingerprint printed as upper-case hexadecimal by rPGP, the only source of one.
    pub fn from_hex(hex: String) -> Self {
        Fingerprint(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A farm public key, read from its file.
#[derive(Clone, Debug)]
pub struct FarmPublicKey {
    pub path: PathBuf,
    /// The file's text, armored.
    pub armored: String,
    pub fingerprint: Fingerprint,
    /// When the key was made, in seconds since the epoch.
    pub created: u32,
}

impl FarmPublicKey {
    /// Reads the armored public key at `path`; the error names the file and the reason.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(path, text)
    }

    /// Every key in the file at `path`, in its order (`quartersctl key export` writes the
    /// current key first, then the retired ones clients may still need): one armored block
    /// each. At least one.
    pub fn read_all(path: &Path) -> Result<Vec<Self>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse_all(path, &text)
    }

    /// Every armored key block in `text`, which came from `path`.
    pub fn parse_all(path: &Path, text: &str) -> Result<Vec<Self>, String> {
        const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
        let keys = text
            .match_indices(BEGIN)
            .map(|(at, _)| {
                let rest = &text[at..];
                let end = rest[BEGIN.len()..]
                    .find(BEGIN)
                    .map_or(rest.len(), |e| e + BEGIN.len());
                Self::parse(path, rest[..end].to_owned())
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(format!(
                "{}: holds no armored OpenPGP public key",
                path.display()
            ));
        }
        Ok(keys)
    }

    /// The key in `armored`, which came from `path` (a file, or a socket that answered it).
    pub fn parse(path: &Path, armored: String) -> Result<Self, String> {
        let (key, _) = SignedPublicKey::from_string(&armored)
            .map_err(|e| format!("{}: not an armored OpenPGP public key: {e}", path.display()))?;
        key.verify_bindings()
            .map_err(|e| format!("{}: its self-signatures do not verify: {e}", path.display()))?;
        Ok(FarmPublicKey {
            path: path.to_owned(),
            fingerprint: Fingerprint::of(&key),
            created: key.created_at().as_secs(),
            armored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_no_key_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("farm-key.pub.asc");
        std::fs::write(&path, "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnonsense\n").unwrap();
        let e = FarmPublicKey::read(&path).unwrap_err();
        assert!(
            e.contains("farm-key.pub.asc") && e.contains("not an armored OpenPGP public key"),
            "{e}"
        );
        let e = FarmPublicKey::read(&dir.path().join("missing.asc")).unwrap_err();
        assert!(e.contains("missing.asc"), "{e}");
        let e = FarmPublicKey::parse_all(&path, "no key here\n").unwrap_err();
        assert!(e.contains("holds no armored OpenPGP public key"), "{e}");
    }
}

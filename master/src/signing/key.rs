//! The farm's OpenPGP key, made, kept and used with rPGP (the `pgp` crate).
//!
//! What pacman verifies through GPGME decides the shape: a v4 key (GnuPG 2.2, which Debian
//! and many pacman installations still run, reads no v6 key), Ed25519 in its v4 ("EdDSA
//! legacy") encoding, one primary key that certifies and signs, no expiry, and detached binary
//! signatures over SHA-256, which is what `gpg --detach-sign` makes for makepkg and repo-add.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use pgp::composed::{
    ArmorOptions, Deserializable, DetachedSignature, KeyType, SecretKeyParamsBuilder,
    SignedPublicKey, SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::ser::Serialize;
use pgp::types::Password;
pub use quarters_common::farm_key::Fingerprint;

/// The secret key in a key directory: armored, mode 0600.
pub const SECRET_FILE: &str = "farm-key.asc";
/// The public key beside it: armored, for anyone.
pub const PUBLIC_FILE: &str = "farm-key.pub.asc";

/// The hash every signature is made over.
const HASH: HashAlgorithm = HashAlgorithm::Sha256;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{} exists; pass --force to replace the farm's signing key (every client must then trust the new one)",
        path.display()
    )]
    Exists { path: PathBuf },
    #[error("{}: not a usable OpenPGP secret key: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("making the key: {0}")]
    Generate(String),
    #[error("signing: {0}")]
    Sign(String),
}

/// A detached OpenPGP signature in its binary form, as pacman reads `FILE.sig` and, in base64,
/// `%PGPSIG%`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature(Vec<u8>);

impl Signature {
    /// A signature received from the signer. Only its length is checked here: pacman is what
    /// verifies it, and a wrong one fails there, loudly.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Signature(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The signature in a `%PGPSIG%` value.
    pub fn from_base64(text: &str) -> Option<Self> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()
            .map(Signature)
    }

    /// The fingerprint of the key that made it, as the signature says (not checked: pacman
    /// checks).
    pub fn issuer(&self) -> Option<Fingerprint> {
        let parsed = DetachedSignature::from_bytes(&self.0[..]).ok()?;
        let issuer = parsed.signature.issuer_fingerprint().into_iter().next()?;
        Some(Fingerprint::from_hex(format!("{issuer:X}")))
    }

    /// The signature as `%PGPSIG%` holds it.
    pub fn to_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }
}

/// Gives `path` the owner of its directory. Run as root in the signer's key directory, `key
/// init` or `key rotate` would otherwise leave a secret key only root can read, and the
/// signer, its own user, could not load it.
pub(crate) fn owned_like_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let owner = std::fs::metadata(dir)?;
    std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()))
}

/// The farm's signing key.
pub struct FarmKey {
    secret: SignedSecretKey,
}

impl fmt::Debug for FarmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret, not even in a debug print.
        f.debug_struct("FarmKey")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl FarmKey {
    /// A new key for `user_id` (`Name <email>`).
    pub fn generate(user_id: &str) -> Result<Self, KeyError> {
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(user_id.to_owned())
            .preferred_hash_algorithms([HASH, HashAlgorithm::Sha512].into_iter().collect());
        let params = params
            .build()
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let secret = params
            .generate(rand::rngs::OsRng)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        Ok(FarmKey { secret })
    }

    /// Makes a key for `user_id` and writes it into `dir` (created if missing): the secret
    /// key with mode 0600, the public key with 0644. An existing key is kept unless `force`.
    pub fn init(dir: &Path, user_id: &str, force: bool) -> Result<Self, KeyError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| KeyError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let secret_path = dir.join(SECRET_FILE);
        if !force && secret_path.exists() {
            return Err(KeyError::Exists { path: secret_path });
        }
        let key = FarmKey::generate(user_id)?;
        let armored = key
            .secret
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        quarters_common::fsutil::write_file(&secret_path, armored.as_bytes(), 0o600, force)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => KeyError::Exists {
                    path: secret_path.clone(),
                },
                _ => KeyError::Io {
                    path: secret_path.clone(),
                    source: e,
                },
            })?;
        let public_path = dir.join(PUBLIC_FILE);
        quarters_common::fsutil::write_file(
            &public_path,
            key.public_armored().as_bytes(),
            0o644,
            true,
        )
        .map_err(io(&public_path))?;
        for path in [&secret_path, &public_path] {
            owned_like_dir(path).map_err(io(path))?;
        }
        Ok(key)
    }

    /// The key in `dir`, checked: its self-signatures verify and it can sign.
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join(SECRET_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| KeyError::Io {
            path: path.clone(),
            source,
        })?;
        let malformed = |reason: String| KeyError::Malformed {
            path: path.clone(),
            reason,
        };
        let (secret, _) =
            SignedSecretKey::from_string(&text).map_err(|e| malformed(e.to_string()))?;
        secret
            .verify_bindings()
            .map_err(|e| malformed(format!("its self-signatures do not verify: {e}")))?;
        let key = FarmKey { secret };
        // A signature made and checked now: a key that cannot sign fails here, at start-up,
        // not at the first acceptance.
        let probe = key
            .sign(&b"probe"[..])
            .map_err(|e| malformed(e.to_string()))?;
        key.verify(&probe, b"probe")
            .map_err(|e| malformed(format!("its signatures do not verify: {e}")))?;
        Ok(key)
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.secret.primary_key)
    }

    /// The public key, armored, as `pacman-key --add` reads it.
    pub fn public_armored(&self) -> String {
        SignedPublicKey::from(self.secret.clone())
            .to_armored_string(ArmorOptions::default())
            .expect("a key rPGP made or read serializes")
    }

    /// A detached binary signature over everything `data` yields.
    pub fn sign(&self, data: impl Read) -> Result<Signature, KeyError> {
        let signature = DetachedSignature::sign_binary_data(
            rand::rngs::OsRng,
            &self.secret.primary_key,
            &Password::empty(),
            HASH,
            data,
        )
        .map_err(|e| KeyError::Sign(e.to_string()))?;
        let mut bytes = Vec::new();
        signature
            .to_writer(&mut bytes)
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        Ok(Signature(bytes))
    }

    /// Checks `signature` over `data` with this key's public half.
    pub fn verify(&self, signature: &Signature, data: &[u8]) -> Result<(), String> {
        let parsed =
            DetachedSignature::from_bytes(signature.as_bytes()).map_err(|e| e.to_string())?;
        parsed
            .verify(&self.secret.primary_key.public_key(), data)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_key_is_written_private_kept_without_force_and_signs_what_it_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let key = FarmKey::init(dir.path(), "Farm <farm@example.org>", false).unwrap();
        let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(key.fingerprint().as_str().len(), 40);
        let public =
            quarters_common::farm_key::FarmPublicKey::read(&dir.path().join(PUBLIC_FILE)).unwrap();
        assert_eq!(public.fingerprint, key.fingerprint());
        let again = FarmKey::init(dir.path(), "Farm <farm@example.org>", false).unwrap_err();
        assert!(matches!(again, KeyError::Exists { .. }), "{again}");
        let loaded = FarmKey::load(dir.path()).unwrap();
        assert_eq!(loaded.fingerprint(), key.fingerprint());

        let signature = loaded.sign(&b"a package"[..]).unwrap();
        let read_back = Signature::from_base64(&signature.to_base64()).unwrap();
        assert_eq!(read_back.issuer(), Some(key.fingerprint()));
        key.verify(&signature, b"a package").unwrap();
        assert!(key.verify(&signature, b"a packagf").is_err());
        let other = FarmKey::generate("Other <o@example.org>").unwrap();
        assert!(other.verify(&signature, b"a package").is_err());

        let replaced = FarmKey::init(dir.path(), "Farm <farm@example.org>", true).unwrap();
        assert_ne!(replaced.fingerprint(), key.fingerprint());
    }

    #[test]
    fn a_key_made_by_root_belongs_to_the_owner_of_its_directory() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("signer");
        std::fs::create_dir(&keys).unwrap();
        // As root (the tests run as root), the directory is handed to `nobody`, as the
        // signer's own user would own it; otherwise it stays ours.
        let owner = if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&keys, Some(65534), Some(65534)).unwrap();
            65534
        } else {
            nix::unistd::geteuid().as_raw()
        };
        FarmKey::init(&keys, "Farm <farm@example.org>", false).unwrap();
        for file in [SECRET_FILE, PUBLIC_FILE] {
            assert_eq!(
                std::fs::metadata(keys.join(file)).unwrap().uid(),
                owner,
                "{file}"
            );
        }
    }

    #[test]
    fn a_damaged_key_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SECRET_FILE), "not a key").unwrap();
        let e = FarmKey::load(dir.path()).unwrap_err();
        assert!(matches!(e, KeyError::Malformed { .. }), "{e}");
        assert!(e.to_string().contains(SECRET_FILE), "{e}");
    }
}

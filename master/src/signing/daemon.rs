//! The signer: the only process that reads the farm's key. It listens on a Unix socket that
//! only its own user and the users it is told of may use, and signs what it is sent.
//!
//! Run as a user of its own (`quartersctl key serve`), it keeps the key out of the master's
//! reach: the master can ask for signatures, never for the key.

use std::future::Future;
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::SystemTime;

use anyhow::Context;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;

use super::key::{self, FarmKey, KeyError};
use super::keydir;
use super::protocol::{self, Received};

/// Who may ask, and how much.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Users (besides the signer's own) whose processes may connect; root always may, as it
    /// could read the key anyway.
    pub allowed_uids: Vec<u32>,
    /// The most bytes one signature covers.
    pub max_bytes: u64,
    /// How long a request may stall before the signer gives up on it.
    pub idle: Duration,
}

impl Policy {
    /// Whether a process of user `uid` may ask, the signer running as `own_uid`.
    pub fn admits(&self, uid: u32, own_uid: u32) -> bool {
        uid == 0 || uid == own_uid || self.allowed_uids.contains(&uid)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_uids: Vec::new(),
            max_bytes: 16 << 30,
            idle: Duration::from_secs(60),
        }
    }
}

/// Binds the signer's socket at `path`, mode 0660 (the master's user reaches it through the
/// group). A socket left by a signer that is gone is replaced; anything else at `path` is kept
/// and refused.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                anyhow::bail!("{}: another signer listens there", path.display());
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        Ok(_) => anyhow::bail!("{}: exists and is not a socket; it is kept", path.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(listener)
}

/// The signer's key: the one in its directory, read again when the secret key file changes
/// (`quartersctl key rotate --activate`), so that a rotation needs no restart.
#[derive(Debug)]
pub struct KeyStore {
    dir: Option<PathBuf>,
    loaded: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    /// The secret key file's inode, modification time and length when it was read (a
    /// rotation renames a new file into place: a new inode).
    stamp: Option<(u64, SystemTime, u64)>,
    key: Arc<FarmKey>,
}

impl KeyStore {
    /// The key in `dir`, followed there.
    pub fn load(dir: &Path) -> Result<Self, KeyError> {
        let stamp = stamp(dir);
        let key = Arc::new(FarmKey::load(dir)?);
        Ok(KeyStore {
            dir: Some(dir.to_owned()),
            loaded: Mutex::new(Loaded { stamp, key }),
        })
    }

    /// `key`, for good.
    pub fn fixed(key: FarmKey) -> Self {
        KeyStore {
            dir: None,
            loaded: Mutex::new(Loaded {
                stamp: None,
                key: Arc::new(key),
            }),
        }
    }

    /// The key to sign with now.
    pub fn current(&self) -> Arc<FarmKey> {
        let lock = || self.loaded.lock().expect("no code panics holding the key");
        let Some(dir) = &self.dir else {
            return lock().key.clone();
        };
        let now = stamp(dir);
        {
            let loaded = lock();
            if loaded.stamp == now {
                return loaded.key.clone();
            }
        }
        // Read outside the lock; a key that does not load leaves the one in use.
        match FarmKey::load(dir) {
            Ok(key) => {
                let key = Arc::new(key);
                tracing::info!(fingerprint = %key.fingerprint(), "the farm key changed; signing with the new one");
                let mut loaded = lock();
                *loaded = Loaded {
                    stamp: now,
                    key: key.clone(),
                };
                key
            }
            Err(e) => {
                tracing::error!(
                    "the key file changed but cannot be used, so the old key signs on: {e}"
                );
                lock().key.clone()
            }
        }
    }

    /// The public keys clients should trust, the current one first.
    fn exported(&self) -> Result<String, KeyError> {
        let key = self.current();
        match &self.dir {
            Some(dir) => keydir::listing(dir).map(|listed| listed.exported()),
            None => Ok(key.public_armored()),
        }
    }
}

fn stamp(dir: &Path) -> Option<(u64, SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir.join(key::SECRET_FILE)).ok()?;
    Some((meta.ino(), meta.modified().ok()?, meta.len()))
}

/// Requests served at once; the rest wait in the socket's backlog.
const CONCURRENT: usize = 4;

/// Serves `listener` with `key` until `shutdown` completes.
pub async fn run(
    listener: UnixListener,
    keys: Arc<KeyStore>,
    policy: Policy,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(CONCURRENT));
    let own_uid = nix::unistd::geteuid().as_raw();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => return,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: pause rather than spin.
                    tracing::warn!("accepting a signing request: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (uid, pid) = match stream.peer_cred() {
            Ok(cred) => (cred.uid(), cred.pid()),
            Err(e) => {
                tracing::warn!("a signing request without peer credentials: {e}");
                continue;
            }
        };
        if !policy.admits(uid, own_uid) {
            tracing::warn!(
                uid,
                "refused a signing request from a user that is not allowed"
            );
            continue;
        }
        let (keys, policy) = (keys.clone(), policy.clone());
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!("taking a signing request: {e}");
                continue;
            }
        };
        tokio::task::spawn_blocking(move || {
            if let Err(e) = serve_one(stream, &keys, &policy, (uid, pid)) {
                tracing::warn!(uid, pid, "a signing request failed: {e}");
            }
            drop(permit);
        });
    }
}

/// Answers one request on `stream`.
/// Answers one request on `stream`, from the process `peer` (uid, pid). Every signature is
/// logged with what it covers, so that after a compromise of the master the signer's log
/// tells what was signed.
fn serve_one(
    mut stream: UnixStream,
    keys: &KeyStore,
    policy: &Policy,
    peer: (u32, Option<i32>),
) -> io::Result<()> {
    let (uid, pid) = peer;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(policy.idle))?;
    stream.set_write_timeout(Some(policy.idle))?;
    let mut kind = [0u8; 1];
    stream.read_exact(&mut kind)?;
    match kind[0] {
        protocol::KEYS => match keys.exported() {
            Ok(text) => protocol::write_reply(&mut stream, Ok(text.as_bytes())),
            Err(e) => protocol::write_reply(&mut stream, Err(&e.to_string())),
        },
        protocol::SIGN => {
            let mut len = [0u8; 8];
            stream.read_exact(&mut len)?;
            let len = u64::from_be_bytes(len);
            if len > policy.max_bytes {
                let message = format!(
                    "{len} bytes to sign, over the signer's limit of {}",
                    policy.max_bytes
                );
                return protocol::write_reply(&mut stream, Err(&message));
            }
            // A whole request may take its idle time plus the time to send its data at 4 MiB/s.
            let deadline = std::time::Instant::now() + policy.idle + Duration::from_secs(len >> 22);
            let mut data = Received::new((&mut stream).take(len), deadline);
            let key = keys.current();
            let signed = key.sign(&mut data);
            let count = data.count;
            let reply = match signed {
                // A short read means the client went away or stalled: the signature would be
                // over less than it meant, so there is none.
                Ok(_) if count != len => {
                    Err(format!("the request ended after {count} of {len} bytes"))
                }
                Ok(signature) => Ok(signature),
                Err(e) => Err(e.to_string()),
            };
            match &reply {
                Ok(signature) => {
                    tracing::info!(
                        uid,
                        pid,
                        bytes = len,
                        sha256 = %data.sha256(),
                        key = %key.fingerprint(),
                        "signed"
                    );
                    protocol::write_reply(&mut stream, Ok(signature.as_bytes()))
                }
                Err(message) => protocol::write_reply(&mut stream, Err(message)),
            }
        }
        other => protocol::write_reply(&mut stream, Err(&format!("unknown request {other:#04x}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_the_signers_user_and_the_users_named_may_ask() {
        let policy = Policy {
            allowed_uids: vec![990],
            ..Policy::default()
        };
        assert!(policy.admits(0, 991));
        assert!(policy.admits(991, 991));
        assert!(policy.admits(990, 991));
        assert!(!policy.admits(65534, 991));
        assert!(!Policy::default().admits(990, 991));
    }
}

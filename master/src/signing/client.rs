//! The master's side of the signer's socket.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quarters_common::farm_key::FarmPublicKey;

use super::key::Signature;
use super::protocol;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The signer could not be reached or stopped answering; worth trying again later.
    #[error("the signer at {}: {source}", socket.display())]
    Unreachable { socket: PathBuf, source: io::Error },
    /// The signer answered with a refusal.
    #[error("the signer at {} refused: {message}", socket.display())]
    Refused { socket: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
}

/// The signer, reached through its socket, with the key it signs with. Every call is
/// blocking: call it from the core's thread or `spawn_blocking`.
#[derive(Clone, Debug)]
pub struct Signer {
    endpoint: Endpoint,
    key: FarmPublicKey,
}

impl Signer {
    /// The signer at `socket`, asked for its key: one that does not answer, or answers with
    /// no key, is an error here rather than at the first signature.
    pub fn connect(socket: PathBuf) -> Result<Self, SignError> {
        let endpoint = Endpoint {
            socket,
            timeout: Duration::from_secs(60),
        };
        let key = current_key(&endpoint)?;
        Ok(Signer { endpoint, key })
    }

    pub fn socket(&self) -> &Path {
        &self.endpoint.socket
    }

    /// The same signer, with `timeout` for each read and write of a request.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        let mut signer = self.clone();
        signer.endpoint.timeout = timeout;
        signer
    }

    /// The key the signer signed with when it was reached.
    pub fn key(&self) -> &FarmPublicKey {
        &self.key
    }

    /// The key the signer signs with now: asked again, as a rotation changes it.
    pub fn current_key(&self) -> Result<FarmPublicKey, SignError> {
        current_key(&self.endpoint)
    }

    pub fn sign_bytes(&self, bytes: &[u8]) -> Result<Signature, SignError> {
        self.endpoint.sign(bytes.len() as u64, &mut &bytes[..])
    }

    pub fn sign_file(&self, path: &Path) -> Result<Signature, SignError> {
        let read = |source| SignError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(read)?;
        let len = file.metadata().map_err(read)?.len();
        self.endpoint.sign(len, &mut file)
    }
}

/// The first of the keys the signer lists: the one it signs with.
fn current_key(endpoint: &Endpoint) -> Result<FarmPublicKey, SignError> {
    let armored = endpoint.public_keys()?;
    let refused = |message| SignError::Refused {
        socket: endpoint.socket.clone(),
        message,
    };
    let keys = FarmPublicKey::parse_all(&endpoint.socket, &armored).map_err(refused)?;
    Ok(keys
        .into_iter()
        .next()
        .expect("parse_all returns at least one key"))
}

/// Where the signer listens, and how long a request may take.
#[derive(Clone, Debug)]
struct Endpoint {
    socket: PathBuf,
    timeout: Duration,
}

impl Endpoint {
    fn connect(&self) -> Result<UnixStream, SignError> {
        let stream = UnixStream::connect(&self.socket).map_err(|e| self.unreachable(e))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| self.unreachable(e))?;
        Ok(stream)
    }

    fn unreachable(&self, source: io::Error) -> SignError {
        SignError::Unreachable {
            socket: self.socket.clone(),
            source,
        }
    }

    fn reply(&self, stream: &mut UnixStream) -> Result<Vec<u8>, SignError> {
        match protocol::read_reply(stream).map_err(|e| self.unreachable(e))? {
            Ok(payload) => Ok(payload),
            Err(message) => Err(SignError::Refused {
                socket: self.socket.clone(),
                message,
            }),
        }
    }

    /// A detached signature over `len` bytes of `data`.
    fn sign(&self, len: u64, data: &mut impl Read) -> Result<Signature, SignError> {
        let mut stream = self.connect()?;
        let sent = (|| {
            stream.write_all(&[protocol::SIGN])?;
            stream.write_all(&len.to_be_bytes())?;
            let copied = io::copy(&mut data.take(len), &mut stream)?;
            if copied != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{copied} of {len} bytes to sign"),
                ));
            }
            stream.flush()
        })();
        if let Err(e) = sent {
            // The signer may have refused on the header alone (over its limit) and closed
            // while the data was still being sent: its reply says why.
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) && let Err(refused @ SignError::Refused { .. }) = self.reply(&mut stream)
            {
                return Err(refused);
            }
            return Err(self.unreachable(e));
        }
        Ok(Signature::from_bytes(self.reply(&mut stream)?))
    }

    /// The public keys clients must trust, armored.
    fn public_keys(&self) -> Result<String, SignError> {
        let mut stream = self.connect()?;
        stream
            .write_all(&[protocol::KEYS])
            .map_err(|e| self.unreachable(e))?;
        let bytes = self.reply(&mut stream)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::signing::FarmKey;
    use crate::signing::daemon::{self, Policy};

    async fn serve(policy: Policy) -> (tempfile::TempDir, Arc<FarmKey>, Signer) {
        let dir = tempfile::tempdir().unwrap();
        FarmKey::init(dir.path(), "Farm <farm@example.org>", false).unwrap();
        let key = Arc::new(FarmKey::load(dir.path()).unwrap());
        let socket = dir.path().join("signer.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        tokio::spawn(daemon::run(
            listener,
            Arc::new(daemon::KeyStore::load(dir.path()).unwrap()),
            policy,
            std::future::pending(),
        ));
        let signer = tokio::task::spawn_blocking(move || Signer::connect(socket).unwrap())
            .await
            .unwrap();
        (dir, key, signer)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_signer_signs_a_file_and_names_its_key() {
        let (dir, key, signer) = serve(Policy::default()).await;
        let file = dir.path().join("a.pkg.tar.zst");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(signer.key().fingerprint, key.fingerprint());
        assert_eq!(signer.key().armored, key.public_armored());
        let signature = tokio::task::spawn_blocking(move || signer.sign_file(&file).unwrap())
            .await
            .unwrap();
        key.verify(&signature, &bytes).unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_rotated_key_signs_without_a_restart() {
        let (dir, old, signer) = serve(Policy::default()).await;
        crate::signing::keydir::stage(dir.path(), "Farm <farm@example.org>").unwrap();
        let (retired, new) = crate::signing::keydir::activate(dir.path()).unwrap();
        assert_eq!(retired, old.fingerprint());
        let socket = signer.socket().to_owned();
        let (signature, again) = tokio::task::spawn_blocking(move || {
            (
                signer.sign_bytes(b"after").unwrap(),
                Signer::connect(socket).unwrap(),
            )
        })
        .await
        .unwrap();
        new.verify(&signature, b"after").unwrap();
        assert_eq!(again.key().fingerprint, new.fingerprint());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_signer_refuses_more_than_its_limit() {
        // Far more than a socket buffer: the signer refuses on the header and closes while the
        // data is still being sent, and the client still reads why.
        let policy = Policy {
            max_bytes: 10,
            ..Policy::default()
        };
        let (_dir, _key, signer) = serve(policy).await;
        let e =
            tokio::task::spawn_blocking(move || signer.sign_bytes(&vec![0; 4 << 20]).unwrap_err())
                .await
                .unwrap();
        assert!(
            matches!(&e, SignError::Refused { message, .. } if message.contains("limit")),
            "{e}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_cut_request_gets_no_signature() {
        let (_dir, _key, signer) = serve(Policy::default()).await;
        let reply = tokio::task::spawn_blocking(move || {
            let mut stream = signer.endpoint.connect().unwrap();
            stream.write_all(&[protocol::SIGN]).unwrap();
            stream.write_all(&100u64.to_be_bytes()).unwrap();
            stream.write_all(&[1; 40]).unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            protocol::read_reply(&mut stream).unwrap()
        })
        .await
        .unwrap();
        let message = reply.unwrap_err();
        assert!(message.contains("40 of 100"), "{message}");
    }
}

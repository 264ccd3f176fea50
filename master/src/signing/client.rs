//! The master's side of the signer's socket.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The signer, reached through its socket. Every call is blocking: call it from the core's
/// thread or `spawn_blocking`.
#[derive(Clone, Debug)]
pub struct Signer {
    socket: PathBuf,
    timeout: Duration,
}

impl Signer {
    pub fn new(socket: PathBuf) -> Self {
        Signer {
            socket,
            timeout: Duration::from_secs(60),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

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
        sent.map_err(|e| self.unreachable(e))?;
        Ok(Signature::from_bytes(self.reply(&mut stream)?))
    }

    pub fn sign_bytes(&self, bytes: &[u8]) -> Result<Signature, SignError> {
        self.sign(bytes.len() as u64, &mut &bytes[..])
    }

    pub fn sign_file(&self, path: &Path) -> Result<Signature, SignError> {
        let read = |source| SignError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(read)?;
        let len = file.metadata().map_err(read)?.len();
        self.sign(len, &mut file)
    }

    /// The public keys clients must trust, armored.
    pub fn public_keys(&self) -> Result<String, SignError> {
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
        let key = Arc::new(FarmKey::generate("Farm <farm@example.org>").unwrap());
        let socket = dir.path().join("signer.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        tokio::spawn(daemon::run(
            listener,
            key.clone(),
            policy,
            std::future::pending(),
        ));
        (dir, key, Signer::new(socket))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_signer_signs_a_file_and_names_its_key() {
        let (dir, key, signer) = serve(Policy::default()).await;
        let file = dir.path().join("a.pkg.tar.zst");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &bytes).unwrap();
        let (signature, keys) = tokio::task::spawn_blocking(move || {
            (
                signer.sign_file(&file).unwrap(),
                signer.public_keys().unwrap(),
            )
        })
        .await
        .unwrap();
        key.verify(&signature, &bytes).unwrap();
        assert_eq!(keys, key.public_armored());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_signer_refuses_more_than_its_limit() {
        let policy = Policy {
            max_bytes: 10,
            ..Policy::default()
        };
        let (_dir, _key, signer) = serve(policy).await;
        let e = tokio::task::spawn_blocking(move || signer.sign_bytes(&[0; 11]).unwrap_err())
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
            let mut stream = signer.connect().unwrap();
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

//! The signer's protocol, on a Unix stream socket: one request and one reply per connection.
//!
//! ```text
//! request  = "S" length:u64be data     a detached signature over `data`
//!          | "K"                       the public keys clients must trust, armored
//! reply    = "O" length:u32be payload  the binary signature, or the armored keys
//!          | "E" length:u32be message  why not, in UTF-8
//! ```
//!
//! The data is streamed: neither side holds a package in memory.

use std::io::{self, Read, Write};

pub const SIGN: u8 = b'S';
pub const KEYS: u8 = b'K';
const OK: u8 = b'O';
const ERR: u8 = b'E';

/// The longest reply either side accepts: signatures are a few hundred bytes, a keyring a
/// few kilobytes per key.
pub const MAX_REPLY: u32 = 1 << 20;

pub fn write_reply(out: &mut impl Write, reply: Result<&[u8], &str>) -> io::Result<()> {
    let (tag, payload) = match reply {
        Ok(bytes) => (OK, bytes),
        Err(message) => (ERR, message.as_bytes()),
    };
    let len = u32::try_from(payload.len()).map_err(io::Error::other)?;
    out.write_all(&[tag])?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(payload)?;
    out.flush()
}

/// The reply: `Ok(payload)`, or `Err(message)` when the signer refused.
pub fn read_reply(input: &mut impl Read) -> io::Result<Result<Vec<u8>, String>> {
    let mut head = [0u8; 5];
    input.read_exact(&mut head)?;
    let len = u32::from_be_bytes(head[1..].try_into().expect("four bytes"));
    if len > MAX_REPLY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a reply of {len} bytes, over the limit of {MAX_REPLY}"),
        ));
    }
    let mut payload = vec![0; len as usize];
    input.read_exact(&mut payload)?;
    match head[0] {
        OK => Ok(Ok(payload)),
        ERR => Ok(Err(String::from_utf8_lossy(&payload).into_owned())),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a reply tagged {other:#04x}"),
        )),
    }
}

/// The data of a request as the signer reads it: counted, to tell a whole request from a cut
/// one; hashed, for the signer's log of what it signed; and bounded in time as a whole, so that
/// a client trickling bytes cannot hold a signing slot for ever.
pub struct Received<R> {
    inner: R,
    pub count: u64,
    sha256: sha2::Sha256,
    deadline: std::time::Instant,
}

impl<R> Received<R> {
    pub fn new(inner: R, deadline: std::time::Instant) -> Self {
        Received {
            inner,
            count: 0,
            sha256: <sha2::Sha256 as sha2::Digest>::new(),
            deadline,
        }
    }

    /// The SHA-256 of what was read, hexadecimal.
    pub fn sha256(self) -> String {
        use std::fmt::Write as _;
        sha2::Digest::finalize(self.sha256)
            .iter()
            .fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }
}

impl<R: Read> Read for Received<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if std::time::Instant::now() > self.deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request took longer than its deadline",
            ));
        }
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        sha2::Digest::update(&mut self.sha256, &buf[..n]);
        Ok(n)
    }
}

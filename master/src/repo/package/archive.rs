//! Reading a package archive under limits: the metadata members the master needs, and the
//! list of files for the repository's `files` entry.
//!
//! A package is whatever a builder sent, so every read is bounded: a metadata member by its
//! declared size before a byte of it is decompressed, the whole archive by its uncompressed
//! bytes and its number of entries. A decompression bomb therefore costs the master at most
//! the limits, and one whose bomb is a metadata member costs it nothing at all.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

use alpm_compress::decompression::{CompressionDecoder, DecompressionSettings};

/// How much of an archive the master reads at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one metadata member (`.PKGINFO`, `.BUILDINFO`).
    pub member_bytes: u64,
    /// Uncompressed bytes of the whole archive.
    pub total_bytes: u64,
    /// Entries in the archive.
    pub entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            member_bytes: 4 << 20,
            total_bytes: 64 << 30,
            entries: 2_000_000,
        }
    }
}

/// What an archive holds, as far as the master cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    pub pkginfo: Option<String>,
    pub buildinfo: Option<String>,
    pub has_mtree: bool,
    /// Every entry but the top-level metadata files, as `bsdtar -tf` lists them (directories
    /// end in `/`), sorted and without duplicates: repo-add's `files` entry.
    pub files: Vec<String>,
    /// Paths that are not UTF-8, shown with replacement characters in `files`.
    pub non_utf8_paths: usize,
}

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArchiveError {
    #[error("not a readable package archive: {0}")]
    Unreadable(String),
    #[error("{member} is {size} bytes, over the limit of {limit}")]
    MemberTooLarge {
        member: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("{member} is not UTF-8 text")]
    NotText { member: &'static str },
    #[error("the archive unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the archive has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("reading stopped: the master is shutting down")]
    Cancelled,
}

/// Why the bounded reader stopped a read: told apart from the decompressor's own errors,
/// which reach the caller wrapped by the tar reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    TooLarge,
    Cancelled,
}

/// A reader that counts what passes through it and fails once it passes `limit` or `cancel`
/// is set; `stopped` says which, for the caller, after the error comes back through `tar`.
struct Bounded<'a, R> {
    inner: R,
    read: u64,
    limit: u64,
    cancel: &'a AtomicBool,
    stopped: Rc<Cell<Option<Stop>>>,
}

impl<R: Read> Read for Bounded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            self.stopped.set(Some(Stop::Cancelled));
            return Err(io::Error::other("cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            self.stopped.set(Some(Stop::TooLarge));
            return Err(io::Error::other("over the size limit"));
        }
        Ok(n)
    }
}

const PKGINFO: &str = ".PKGINFO";
const BUILDINFO: &str = ".BUILDINFO";
const MTREE: &str = ".MTREE";

/// The archive at `path` as a tar stream read through the limit on its uncompressed bytes, and
/// what tells an I/O error of that stream apart from the limit's stop. Its compression comes
/// from its file name, as makepkg names it (`.pkg.tar.zst`, `.gz`, `.xz`, `.bz2`, or none).
fn open<'a>(
    path: &Path,
    limits: &Limits,
    cancel: &'a AtomicBool,
) -> Result<Opened<'a>, ArchiveError> {
    let unreadable = |e: &dyn std::fmt::Display| ArchiveError::Unreadable(e.to_string());
    let settings = match DecompressionSettings::try_from(path) {
        Ok(s) => s,
        Err(_) if path.extension().is_some_and(|e| e == "tar") => DecompressionSettings::None,
        Err(e) => return Err(unreadable(&e)),
    };
    let file = File::open(path).map_err(|e| unreadable(&e))?;
    let decoder = CompressionDecoder::new(file, settings).map_err(|e| unreadable(&e))?;
    let stopped = Rc::new(Cell::new(None));
    let bounded = Bounded {
        inner: decoder,
        read: 0,
        limit: limits.total_bytes,
        cancel,
        stopped: stopped.clone(),
    };
    Ok((tar::Archive::new(bounded), stopped))
}

/// An archive [`open`] made: the tar stream, and what stopped its reader if it did.
type Opened<'a> = (
    tar::Archive<Bounded<'a, CompressionDecoder<'static>>>,
    Rc<Cell<Option<Stop>>>,
);

/// Maps an I/O error of a stream from [`open`] to what stopped it.
#[allow(clippy::needless_pass_by_value)] // Shaped for `map_err`, which hands over the error.
fn stopped_why(stopped: &Cell<Option<Stop>>, limits: &Limits, e: io::Error) -> ArchiveError {
    match stopped.get() {
        Some(Stop::TooLarge) => ArchiveError::TooLarge {
            limit: limits.total_bytes,
        },
        Some(Stop::Cancelled) => ArchiveError::Cancelled,
        None => ArchiveError::Unreadable(e.to_string()),
    }
}

/// Reads the package archive at `path`.
pub fn read(path: &Path, limits: &Limits, cancel: &AtomicBool) -> Result<Members, ArchiveError> {
    let (mut archive, stopped) = open(path, limits, cancel)?;
    let why = |e: io::Error| stopped_why(&stopped, limits, e);
    let mut members = Members::default();
    let mut count = 0u64;
    for entry in archive.entries().map_err(why)? {
        let mut entry = entry.map_err(why)?;
        count += 1;
        if count > limits.entries {
            return Err(ArchiveError::TooManyEntries {
                limit: limits.entries,
            });
        }
        let raw = entry.path_bytes().into_owned();
        let name = match String::from_utf8(raw) {
            Ok(name) => name,
            Err(e) => {
                members.non_utf8_paths += 1;
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        };
        let member = match name.as_str() {
            PKGINFO => Some(PKGINFO),
            BUILDINFO => Some(BUILDINFO),
            _ => None,
        };
        if let Some(member) = member {
            let text =
                read_member(&mut entry, member, limits.member_bytes).map_err(|e| match e {
                    MemberError::Archive(e) => e,
                    MemberError::Io(e) => why(e),
                })?;
            if member == PKGINFO {
                members.pkginfo = Some(text);
            } else {
                members.buildinfo = Some(text);
            }
            continue;
        }
        if name == MTREE {
            members.has_mtree = true;
        }
        // repo-add lists the archive with `--exclude='^.*'`: no top-level dot files.
        if name.starts_with('.') {
            continue;
        }
        let is_dir = entry.header().entry_type().is_dir();
        let mut listed = name;
        if is_dir && !listed.ends_with('/') {
            listed.push('/');
        }
        members.files.push(listed);
    }
    // repo-add sorts with `LC_ALL=C sort -u`: by bytes, without duplicates.
    members.files.sort_unstable();
    members.files.dedup();
    Ok(members)
}

/// One entry of a package archive, as a comparison of two builds of it needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The tar entry type (`0` a file, `5` a directory, `2` a symbolic link, ...).
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    /// The content's sha256, for a file.
    pub sha256: Option<[u8; 32]>,
    /// The target, for a link.
    pub link: Option<String>,
}

/// Every entry of the archive at `path`, by name, with its metadata and the sha256 of its
/// content, under the limits on uncompressed bytes and entries.
///
/// Computed from the archive itself rather than read from its `.MTREE`: the `.MTREE` was
/// written by the very build under test, and a hostile one could make it agree with anything.
pub fn entries(
    path: &Path,
    limits: &Limits,
    cancel: &AtomicBool,
) -> Result<std::collections::BTreeMap<String, Entry>, ArchiveError> {
    use sha2::Digest as _;
    let (mut archive, stopped) = open(path, limits, cancel)?;
    let why = |e: io::Error| stopped_why(&stopped, limits, e);
    let mut out = std::collections::BTreeMap::new();
    for (count, entry) in archive.entries().map_err(why)?.enumerate() {
        if count as u64 >= limits.entries {
            return Err(ArchiveError::TooManyEntries {
                limit: limits.entries,
            });
        }
        let mut entry = entry.map_err(why)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let header = entry.header();
        let kind = header.entry_type().as_byte();
        let mode = header.mode().unwrap_or(0);
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0);
        let size = header.size().unwrap_or(0);
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let sha256 = if header.entry_type().is_file() {
            let mut hasher = sha2::Sha256::new();
            let mut buf = [0u8; 64 << 10];
            loop {
                let n = entry.read(&mut buf).map_err(why)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Some(hasher.finalize().into())
        } else {
            None
        };
        out.insert(
            name,
            Entry {
                kind,
                mode,
                uid,
                gid,
                mtime,
                size,
                sha256,
                link,
            },
        );
    }
    Ok(out)
}

enum MemberError {
    Archive(ArchiveError),
    Io(io::Error),
}

fn read_member<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    member: &'static str,
    limit: u64,
) -> Result<String, MemberError> {
    // The declared size is known before anything is decompressed: a bomb is refused here.
    let size = entry.header().size().map_err(MemberError::Io)?;
    if size > limit {
        return Err(MemberError::Archive(ArchiveError::MemberTooLarge {
            member,
            size,
            limit,
        }));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(MemberError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(MemberError::Archive(ArchiveError::MemberTooLarge {
            member,
            size: bytes.len() as u64,
            limit,
        }));
    }
    String::from_utf8(bytes).map_err(|_| MemberError::Archive(ArchiveError::NotText { member }))
}

//! Writing pacman repository databases: `NAME.db.tar.gz` (a `desc` per package) and
//! `NAME.files.tar.gz` (with `files` too), as repo-add writes them, plus the `NAME.db` and
//! `NAME.files` that pacman downloads.
//!
//! The archive itself is assembled here because alpm-repo-db writes the entries but not the
//! database archive.
//!
//! A database is rewritten whole after every acceptance, and compressing it whole made the
//! master's CPU time grow with the square of the repository's size. So each package's entries
//! are compressed once, on their own, and kept ([`Chunks`]): a deflate stream may be cut into
//! pieces that each end on a byte boundary with no reference to earlier data (a full flush),
//! and such pieces concatenate into one valid stream, whose CRC is combined from theirs (the
//! technique of pigz). A rewrite is then a concatenation.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io;

use flate2::{Compress, Compression, FlushCompress, Status};

/// One package's entries in a repository database.
#[derive(Clone, Copy, Debug)]
pub struct DbEntry<'a> {
    pub pkgname: &'a str,
    pub version: &'a str,
    pub desc: &'a str,
    pub files: &'a str,
}

/// A piece of a deflate stream that stands on its own: raw deflate ending in a full flush.
#[derive(Clone, Debug)]
struct Chunk {
    deflated: Vec<u8>,
    /// CRC-32 and length of the uncompressed bytes.
    crc: u32,
    len: u64,
    /// What joins a CRC before this piece to this piece's ([`crc_join`]).
    shift: u32,
}

impl Chunk {
    /// Compresses `bytes` with `compress`, reset first so that the piece refers to nothing
    /// before it. One compressor serves many pieces: setting one up costs more than a small
    /// entry's compression.
    fn new(compress: &mut Compress, bytes: &[u8]) -> io::Result<Self> {
        compress.reset();
        let mut deflated = Vec::with_capacity(bytes.len() / 2 + 64);
        deflate(compress, bytes, &mut deflated, FlushCompress::Full)?;
        let len = bytes.len() as u64;
        Ok(Chunk {
            deflated,
            crc: crc32fast::hash(bytes),
            len,
            shift: crc_shift(len),
        })
    }
}

/// Runs `compress` over all of `input` with `flush`, appending to `out`.
fn deflate(
    compress: &mut Compress,
    input: &[u8],
    out: &mut Vec<u8>,
    flush: FlushCompress,
) -> io::Result<()> {
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let before = compress.total_in();
        let status = compress
            .compress_vec(&input[consumed..], out, flush)
            .map_err(io::Error::other)?;
        consumed += usize::try_from(compress.total_in() - before).expect("fits in memory");
        // Done once the input is used up and the compressor had room to spare for the flush.
        if consumed == input.len() && (out.capacity() > out.len() || status == Status::StreamEnd) {
            return Ok(());
        }
    }
}

/// Both databases' pieces for one package.
#[derive(Clone, Debug)]
struct Cached {
    /// A hash of what the pieces were made from, to notice a changed entry.
    made_from: u64,
    db: Chunk,
    files: Chunk,
}

/// One repository's packages as compressed pieces, by package name, kept between rewrites.
///
/// A repository holds one version of each package name, so putting an entry replaces the
/// name's earlier one: a rewrite after an acceptance costs the new entries' compression and a
/// concatenation, not a pass over every entry's text.
#[derive(Debug, Default)]
pub struct Chunks {
    entries: BTreeMap<String, Cached>,
    /// Set once every entry was given ([`Chunks::replace_all`]): only then may entries be
    /// put in, or the database would list the changed packages alone.
    whole: bool,
}

/// Makes pieces: one compressor serves many, as setting one up costs more than compressing a
/// small entry.
struct Maker {
    compress: Compress,
    mtime: u64,
}

impl Maker {
    fn new() -> Self {
        Maker {
            compress: Compress::new(Compression::default(), false),
            mtime: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// The pieces of `e`, or `old` if they were made from the same text.
    fn make(&mut self, e: &DbEntry<'_>, old: Option<Cached>) -> io::Result<Cached> {
        let dir = format!("{}-{}", e.pkgname, e.version);
        // The directory names the version: a rebuild with the same text is another entry.
        let mut h = std::hash::DefaultHasher::new();
        (&dir, e.desc, e.files).hash(&mut h);
        let made_from = h.finish();
        if let Some(old) = old.filter(|c| c.made_from == made_from) {
            return Ok(old);
        }
        let desc = tar_entries(&dir, &[("desc", e.desc)], self.mtime)?;
        let files = tar_entries(&dir, &[("desc", e.desc), ("files", e.files)], self.mtime)?;
        Ok(Cached {
            made_from,
            db: Chunk::new(&mut self.compress, &desc)?,
            files: Chunk::new(&mut self.compress, &files)?,
        })
    }
}

impl Chunks {
    /// Keeps the pieces of exactly `entries`: those already made from the same text are
    /// reused, the others made now, and those of packages no longer listed dropped.
    pub fn replace_all(&mut self, entries: &[DbEntry<'_>]) -> io::Result<()> {
        self.whole = false;
        let mut old = std::mem::take(&mut self.entries);
        let mut maker = Maker::new();
        for e in entries {
            let cached = maker.make(e, old.remove(e.pkgname))?;
            self.entries.insert(e.pkgname.to_owned(), cached);
        }
        self.whole = true;
        Ok(())
    }

    /// Puts `entries` in, each in place of its package name's earlier version. Refused until
    /// the repository was given whole once.
    pub fn put(&mut self, entries: &[DbEntry<'_>]) -> io::Result<()> {
        if !self.whole {
            return Err(io::Error::other(
                "the repository's entries were never read whole",
            ));
        }
        let mut maker = Maker::new();
        for e in entries {
            let cached = maker.make(e, self.entries.remove(e.pkgname))?;
            self.entries.insert(e.pkgname.to_owned(), cached);
        }
        Ok(())
    }

    /// The databases of the packages held, in package name order as repo-add writes them.
    pub fn assemble(&self) -> io::Result<Databases> {
        Ok(Databases {
            db: gzip(self.entries.values().map(|c| &c.db))?,
            files: gzip(self.entries.values().map(|c| &c.files))?,
        })
    }
}

/// A repository's two databases, as pacman downloads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Databases {
    /// `NAME.db`: a `desc` per package.
    pub db: Vec<u8>,
    /// `NAME.files`: `desc` and `files` per package.
    pub files: Vec<u8>,
}

/// The databases of exactly `entries`, reusing and updating the pieces in `chunks`.
pub fn assemble(entries: &[DbEntry<'_>], chunks: &mut Chunks) -> io::Result<Databases> {
    chunks.replace_all(entries)?;
    chunks.assemble()
}

/// A directory `dir/` and `files` in it, as tar records without the end-of-archive marker.
fn tar_entries(dir: &str, files: &[(&str, &str)], mtime: u64) -> io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_mtime(mtime);
    tar.append_data(&mut header, format!("{dir}/"), io::empty())?;
    for (file, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(text.len() as u64);
        header.set_mtime(mtime);
        tar.append_data(&mut header, format!("{dir}/{file}"), text.as_bytes())?;
    }
    // `into_inner` finishes the archive with its end marker, two zero records; the pieces of
    // one archive must not carry it, so it is cut off and added once at the end.
    let mut bytes = tar.into_inner()?;
    bytes.truncate(bytes.len() - END_OF_ARCHIVE);
    Ok(bytes)
}

const END_OF_ARCHIVE: usize = 1024;

/// One gzip member from `pieces` and the tar end marker.
fn gzip<'a>(pieces: impl Iterator<Item = &'a Chunk>) -> io::Result<Vec<u8>> {
    let mut compress = Compress::new(Compression::default(), false);
    let end = Chunk::new(&mut compress, &[0; END_OF_ARCHIVE])?;
    let mut out = Vec::new();
    // Header: magic, deflate, no flags, no mtime, no extra flags, Unix.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
    let mut crc = 0;
    let mut len = 0u64;
    let mut append = |piece: &Chunk| {
        out.extend_from_slice(&piece.deflated);
        crc = crc_join(crc, piece);
        len += piece.len;
    };
    pieces.for_each(&mut append);
    append(&end);
    // The final, empty block.
    compress.reset();
    deflate(&mut compress, &[], &mut out, FlushCompress::Finish)?;
    out.extend_from_slice(&crc.to_le_bytes());
    // ISIZE is the length modulo 2^32, as RFC 1952 says.
    out.extend_from_slice(&((len & 0xffff_ffff) as u32).to_le_bytes());
    Ok(out)
}

// Joining CRC-32s, as zlib's crc32_combine_op does: the CRC of `a` then `b` is
// `crc(a) * x^(8 len(b)) + crc(b)` modulo the gzip polynomial (bits reflected). crc32fast's
// `combine` works out `x^(8 len(b))` at every call with 32x32 bit matrices; a database joins a
// piece per package at every write, and that made the join most of a write's cost at 33,000
// packages. The power depends on the piece alone, so it is worked out once, when the piece is
// made ([`Chunk::shift`]), and a join is one multiplication.

/// The gzip CRC-32 polynomial, bits reflected.
const POLY: u32 = 0xedb8_8320;

/// `a * b` modulo [`POLY`], both reflected polynomials.
const fn mult_mod_p(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut product = 0;
    while m != 0 {
        if a & m != 0 {
            product ^= b;
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    product
}

/// `x^(2^k)` modulo [`POLY`] for k in 0..32 (`x^0` is `1 << 31`, reflected).
const X2N: [u32; 32] = {
    let mut table = [0; 32];
    let mut p = 1u32 << 30;
    let mut k = 0;
    while k < 32 {
        table[k] = p;
        p = mult_mod_p(p, p);
        k += 1;
    }
    table
};

/// `x^(8 len)` modulo [`POLY`]: what moves a CRC past `len` bytes.
fn crc_shift(len: u64) -> u32 {
    let mut p = 1u32 << 31;
    let mut n = len;
    // x^(8 len) = x^(len * 2^3): the bits of `len` pick powers from 2^3 on.
    let mut k = 3;
    while n != 0 {
        if n & 1 != 0 {
            p = mult_mod_p(X2N[k & 31], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// The CRC of what `crc` covers followed by `piece`'s bytes.
fn crc_join(crc: u32, piece: &Chunk) -> u32 {
    mult_mod_p(piece.shift, crc) ^ piece.crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_databases_list_every_package_in_name_order() {
        let entries = [
            DbEntry {
                pkgname: "foo",
                version: "1-2",
                desc: "%NAME%\nfoo\n",
                files: "%FILES%\nusr/\n",
            },
            DbEntry {
                pkgname: "bar",
                version: "3-1",
                desc: "%NAME%\nbar\n",
                files: "%FILES%\n",
            },
        ];
        let dbs = assemble(&entries, &mut Chunks::default()).unwrap();
        let names = |bytes: &[u8]| -> Vec<String> {
            read_back(bytes).into_iter().map(|(p, _)| p).collect()
        };
        assert_eq!(
            names(&dbs.db),
            ["bar-3-1/", "bar-3-1/desc", "foo-1-2/", "foo-1-2/desc"]
        );
        assert_eq!(
            names(&dbs.files),
            [
                "bar-3-1/",
                "bar-3-1/desc",
                "bar-3-1/files",
                "foo-1-2/",
                "foo-1-2/desc",
                "foo-1-2/files"
            ]
        );
    }

    #[test]
    fn entries_are_put_in_only_into_a_repository_read_whole() {
        let entry = |pkgname, version| DbEntry {
            pkgname,
            version,
            desc: "%NAME%\n",
            files: "%FILES%\n",
        };
        let mut chunks = Chunks::default();
        assert!(chunks.put(&[entry("new", "1-1")]).is_err());
        chunks
            .replace_all(&[entry("old", "1-1"), entry("other", "1-1")])
            .unwrap();
        chunks
            .put(&[entry("old", "2-1"), entry("new", "1-1")])
            .unwrap();
        let names: Vec<String> = read_back(&chunks.assemble().unwrap().db)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p.ends_with('/'))
            .collect();
        assert_eq!(names, ["new-1-1/", "old-2-1/", "other-1-1/"]);
    }

    #[test]
    fn joined_crcs_are_the_crc_of_the_joined_bytes() {
        let mut compress = Compress::new(Compression::default(), false);
        let pieces: Vec<Vec<u8>> = [0usize, 1, 7, 300, 4096, 70_000]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (j * 31 + i * 7) as u8).collect())
            .collect();
        let mut crc = 0;
        let mut all = Vec::new();
        for bytes in &pieces {
            crc = crc_join(crc, &Chunk::new(&mut compress, bytes).unwrap());
            all.extend_from_slice(bytes);
            assert_eq!(crc, crc32fast::hash(&all), "after {} bytes", all.len());
        }
    }

    /// Reads a database back with flate2 and tar: `(path, content)` of every entry.
    fn read_back(bytes: &[u8]) -> Vec<(String, String)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mut text = String::new();
                io::Read::read_to_string(&mut e, &mut text).unwrap();
                (path, text)
            })
            .collect()
    }

    #[test]
    fn pieces_kept_between_rewrites_make_the_same_archive_as_fresh_ones() {
        let dir = tempfile::tempdir().unwrap();
        let descs: Vec<(String, String, String)> = (0..300)
            .map(|i| {
                (
                    format!("pkg{i:03}"),
                    format!("%NAME%\npkg{i:03}\n%DESC%\n{}\n", "words ".repeat(i % 40)),
                    format!("%FILES%\nusr/\nusr/bin/pkg{i:03}\n"),
                )
            })
            .collect();
        fn entries(descs: &[(String, String, String)]) -> Vec<DbEntry<'_>> {
            descs
                .iter()
                .map(|(name, desc, files)| DbEntry {
                    pkgname: name,
                    version: "1-1",
                    desc,
                    files,
                })
                .collect()
        }
        let mut chunks = Chunks::default();
        assemble(&entries(&descs[..200]), &mut chunks).unwrap();
        // One package changes its description without changing its version; more arrive.
        let mut changed = descs.clone();
        changed[7].1 = "%NAME%\npkg007\n%DESC%\nchanged\n".to_owned();
        let kept = assemble(&entries(&changed), &mut chunks).unwrap();
        let fresh = assemble(&entries(&changed), &mut Chunks::default()).unwrap();
        for (kept, fresh) in [(&kept.db, &fresh.db), (&kept.files, &fresh.files)] {
            let (kept, fresh) = (read_back(kept), read_back(fresh));
            assert_eq!(kept, fresh);
            assert!(kept.contains(&("pkg007-1-1/desc".to_owned(), changed[7].1.clone())));
        }
        assert_eq!(read_back(&kept.db).len(), 600);
        std::fs::write(dir.path().join("kept.files.tar.gz"), &kept.files).unwrap();
        // gzip checks the combined CRC and the length; bsdtar reads it as pacman's libarchive.
        for tool in [&["gzip", "-t"][..], &["bsdtar", "-tf"][..]] {
            let status = std::process::Command::new(tool[0])
                .args(&tool[1..])
                .arg(dir.path().join("kept.files.tar.gz"))
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("running {}: {e}", tool[0]));
            assert!(status.success(), "{} refused the database", tool[0]);
        }
    }
}

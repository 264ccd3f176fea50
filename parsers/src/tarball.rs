//! Source tarballs that the master serves to builders: reproducible, so that the same package
//! content always gives the same bytes and the same sha256.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::git::hex;

/// Writes `dir` as `out` (a .tar.gz whose entries sit under `prefix/`) and returns the sha256
/// of the file. Entries are sorted, owned by root, dated at the epoch and have normalised
/// modes; `out` appears only once it is complete.
pub fn write_tarball(dir: &Path, prefix: &str, out: &Path) -> io::Result<String> {
    let parent = out.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(parent)?;
    let hashing = HashingWriter {
        inner: tmp.as_file(),
        hash: Sha256::new(),
    };
    let gz = GzEncoder::new(hashing, Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    append_dir(&mut tar, dir, Path::new(prefix))?;
    let gz = tar.into_inner()?;
    let mut hashing = gz.finish()?;
    hashing.flush()?;
    let digest = hex(&hashing.hash.finalize());
    tmp.as_file().sync_all()?;
    tmp.persist(out).map_err(|e| e.error)?;
    Ok(digest)
}

/// The sha256 of the regular file at `path`, or `None` if there is none (a symlink counts as
/// none: makepkg would read through it, the master does not).
pub fn file_sha256(path: &Path) -> io::Result<Option<String>> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Some(sha256_of(fs::File::open(path)?)?)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The sha256 of `PREFIX/PKGBUILD` in a tarball made by [`write_tarball`], read under a
/// limit; `None` if it has none.
pub fn pkgbuild_sha256_in(tarball: &Path) -> io::Result<Option<String>> {
    const MAX_PKGBUILD: u64 = 16 << 20;
    let gz = flate2::read::GzDecoder::new(fs::File::open(tarball)?);
    let mut archive = tar::Archive::new(io::Read::take(gz, 1 << 30));
    for entry in archive.entries()? {
        let entry = entry?;
        let path = entry.path()?.into_owned();
        let mut parts = path.components();
        let is_pkgbuild = parts.next().is_some()
            && parts.next().is_some_and(|c| c.as_os_str() == "PKGBUILD")
            && parts.next().is_none();
        if is_pkgbuild && entry.header().entry_type().is_file() {
            return Ok(Some(sha256_of(io::Read::take(entry, MAX_PKGBUILD))?));
        }
    }
    Ok(None)
}

fn sha256_of(mut reader: impl io::Read) -> io::Result<String> {
    let mut hashing = HashingWriter {
        inner: io::sink(),
        hash: Sha256::new(),
    };
    io::copy(&mut reader, &mut hashing)?;
    Ok(hex(&hashing.hash.finalize()))
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, dir: &Path, name: &Path) -> io::Result<()> {
    let mut header = new_header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut header, name, io::empty())?;
    let mut children: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    children.sort();
    for child in children {
        let child_name = name.join(child.file_name().expect("read_dir entries have names"));
        let meta = fs::symlink_metadata(&child)?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&child)?;
            let mut header = new_header(tar::EntryType::Symlink, 0o777, 0);
            tar.append_link(&mut header, &child_name, &target)?;
        } else if meta.is_dir() {
            append_dir(tar, &child, &child_name)?;
        } else {
            use std::os::unix::fs::PermissionsExt;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let mut header = new_header(tar::EntryType::Regular, mode, meta.len());
            tar.append_data(&mut header, &child_name, fs::File::open(&child)?)?;
        }
    }
    Ok(())
}

fn new_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_content_gives_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("pkg");
        fs::create_dir(&pkg).unwrap();
        fs::write(pkg.join("PKGBUILD"), "pkgname=x\n").unwrap();
        std::os::unix::fs::symlink("PKGBUILD", pkg.join("link")).unwrap();
        let a = write_tarball(&pkg, "x-1", &dir.path().join("a.tar.gz")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        fs::write(pkg.join("PKGBUILD"), "pkgname=x\n").unwrap();
        let b = write_tarball(&pkg, "x-1", &dir.path().join("b.tar.gz")).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            fs::read(dir.path().join("a.tar.gz")).unwrap(),
            fs::read(dir.path().join("b.tar.gz")).unwrap()
        );
        let out = std::process::Command::new("tar")
            .args(["-tzvf"])
            .arg(dir.path().join("a.tar.gz"))
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("x-1/PKGBUILD"), "{listing}");
        assert!(listing.contains("x-1/link -> PKGBUILD"), "{listing}");
        let expected = file_sha256(&pkg.join("PKGBUILD")).unwrap().unwrap();
        assert_eq!(expected, hex(&Sha256::digest(b"pkgname=x\n")));
        assert_eq!(
            pkgbuild_sha256_in(&dir.path().join("a.tar.gz")).unwrap(),
            Some(expected)
        );
    }
}

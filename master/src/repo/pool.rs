//! The pool: every package file of both repositories, by its file name. A file in it is
//! never replaced: a name holds one content for good, so that what a database entry's sha256
//! promises is what the server sends.

use std::fs;
use std::io;
use std::path::Path;

/// Where a file of a given name and content stands in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// No file of that name.
    Free,
    /// A file of that name with the same content: nothing to do.
    Same,
    /// A file of that name with other content: the new one may not enter.
    Taken,
}

/// Looks up `file` in `pool`, hashing it if it is there.
pub fn slot(pool: &Path, file: &str, sha256: &str) -> io::Result<Slot> {
    let path = pool.join(file);
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Slot::Free),
        Err(e) => Err(e),
        Ok(meta) if !meta.is_file() => Ok(Slot::Taken),
        Ok(_) => Ok(
            if quarters_parsers::tarball::file_sha256(&path)?.as_deref() == Some(sha256) {
                Slot::Same
            } else {
                Slot::Taken
            },
        ),
    }
}

/// Puts `staged` into the pool as `file`, never replacing a file already there: a link is
/// made under the new name (which fails if the name exists), then the staged name goes.
pub fn put(pool: &Path, staged: &Path, file: &str, sha256: &str) -> io::Result<()> {
    let dest = pool.join(file);
    let linked = match fs::hard_link(staged, &dest) {
        Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
            // Staging on another filesystem: copy beside the pool first, then link.
            let incoming = pool.join(format!(".incoming-{file}"));
            let _ = fs::remove_file(&incoming);
            fs::copy(staged, &incoming)?;
            let linked = fs::hard_link(&incoming, &dest);
            fs::remove_file(&incoming)?;
            linked
        }
        other => other,
    };
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if slot(pool, file, sha256)? != Slot::Same {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("the pool holds another {file}; it is kept"),
                ));
            }
        }
        Err(e) => return Err(e),
    }
    let _ = fs::remove_file(staged);
    Ok(())
}

/// Puts the signature `staged` beside `file` in the pool as `FILE.sig`. Unlike a package, a
/// signature may be replaced: any signature the farm's key made over the same bytes is as good
/// as another, and a new key's is the one clients need.
pub fn put_signature(pool: &Path, staged: &Path, file: &str) -> io::Result<()> {
    let bytes = fs::read(staged)?;
    quarters_common::fsutil::write_file(&pool.join(format!("{file}.sig")), &bytes, 0o644, true)
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn sha(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn a_name_keeps_its_first_content() {
        let dir = tempfile::tempdir().unwrap();
        let pool = dir.path().join("pool");
        fs::create_dir(&pool).unwrap();
        let staged = dir.path().join("staged");
        fs::write(&staged, b"first").unwrap();
        let file = "a-1-1-x86_64.pkg.tar.zst";
        assert_eq!(slot(&pool, file, &sha(b"first")).unwrap(), Slot::Free);
        put(&pool, &staged, file, &sha(b"first")).unwrap();
        assert!(!staged.exists());
        assert_eq!(slot(&pool, file, &sha(b"first")).unwrap(), Slot::Same);

        fs::write(&staged, b"second").unwrap();
        assert_eq!(slot(&pool, file, &sha(b"second")).unwrap(), Slot::Taken);
        let e = put(&pool, &staged, file, &sha(b"second")).unwrap_err();
        assert!(e.to_string().contains("the pool holds another"), "{e}");
        assert_eq!(fs::read(pool.join(file)).unwrap(), b"first");

        // The same content again is no conflict.
        fs::write(&staged, b"first").unwrap();
        put(&pool, &staged, file, &sha(b"first")).unwrap();
        assert_eq!(fs::read(pool.join(file)).unwrap(), b"first");
    }
}

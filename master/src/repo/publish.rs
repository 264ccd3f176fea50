//! Publishing a repository's databases: each version in a directory of its own, made whole
//! (both databases, their signatures, the version before as `*.old`) before a symlink swings
//! to it in one rename.
//!
//! ```text
//! repos/build/x86_64 -> .x86_64.7      a symlink, replaced by rename
//! repos/build/.x86_64.7/NAME.db …      the version clients read
//! repos/build/.x86_64.6/ …             the ones before (KEPT_VERSIONS in all), for clients
//!                                      sent to one of them in the middle of a download
//! ```
//!
//! Invariant: a database is never on disk without the signature made over it. A client, or a
//! web server serving the directory, reads one version or the next, and a crash at any point
//! leaves the last complete version in place. Renaming the files of one directory one by one
//! could not promise that: between the database's rename and its signature's, both versions
//! are half visible.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::dbfile::Databases;
use crate::signing::Signature;

/// The signatures over a version's two databases.
#[derive(Clone, Debug)]
pub struct Signatures {
    pub db: Signature,
    pub files: Signature,
}

/// The database files of one version, by suffix after `NAME.`: each written once, the names
/// pacman and repo-add also use linked to it.
const DATABASES: [(&str, &str); 2] = [("db.tar.gz", "db"), ("files.tar.gz", "files")];

/// Makes `dbs` (signed by `signatures`, if the farm signs) the version of repository `name`
/// that `parent/arch` shows.
pub fn publish(
    parent: &Path,
    arch: &str,
    name: &str,
    dbs: &Databases,
    signatures: Option<&Signatures>,
) -> io::Result<()> {
    fs::create_dir_all(parent)?;
    let link = parent.join(arch);
    let current = current_version(parent, arch)?;
    let next = current.map_or(1, |n| n + 1);
    let dir = version_dir(parent, arch, next);
    // Left by a crash before the swing: nobody ever read it.
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir(&dir)?;
    let bytes = [&dbs.db, &dbs.files];
    let sigs = signatures.map(|s| [&s.db, &s.files]);
    for (i, (archive, short)) in DATABASES.iter().enumerate() {
        write(&dir.join(format!("{name}.{archive}")), bytes[i])?;
        fs::hard_link(
            dir.join(format!("{name}.{archive}")),
            dir.join(format!("{name}.{short}")),
        )?;
        if let Some(sigs) = sigs {
            write(
                &dir.join(format!("{name}.{archive}.sig")),
                sigs[i].as_bytes(),
            )?;
            fs::hard_link(
                dir.join(format!("{name}.{archive}.sig")),
                dir.join(format!("{name}.{short}.sig")),
            )?;
        }
        if let Some(n) = current {
            let before = version_dir(parent, arch, n);
            for file in [*archive, short] {
                let old = before.join(format!("{name}.{file}"));
                if old.is_file() {
                    fs::hard_link(&old, dir.join(format!("{name}.{file}.old")))?;
                }
            }
        }
    }
    fs::File::open(&dir)?.sync_all()?;
    let swing = parent.join(format!(".{arch}.swing"));
    let _ = fs::remove_file(&swing);
    std::os::unix::fs::symlink(format!(".{arch}.{next}"), &swing)?;
    fs::rename(&swing, &link)?;
    fs::File::open(parent)?.sync_all()?;
    // The last few versions stay, for clients redirected to one of them in the middle of a
    // download (see `Repos::redirect`).
    for entry in fs::read_dir(parent)? {
        let entry = entry?;
        let file_name = entry.file_name();
        if let Some(n) = parse_version(&file_name.to_string_lossy(), arch)
            && n + KEPT_VERSIONS <= next
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// Versions kept on disk, the current one included. A client sent to one by a redirect has
/// this many rewrites' time to fetch its signature.
pub const KEPT_VERSIONS: u64 = 8;

/// The version `parent/arch` shows now, if any.
pub fn shown_version(parent: &Path, arch: &str) -> Option<u64> {
    let target = fs::read_link(parent.join(arch)).ok()?;
    parse_version(&target.to_string_lossy(), arch)
}

pub fn version_dir(parent: &Path, arch: &str, n: u64) -> PathBuf {
    parent.join(format!(".{arch}.{n}"))
}

fn parse_version(file_name: &str, arch: &str) -> Option<u64> {
    file_name
        .strip_prefix('.')?
        .strip_prefix(arch)?
        .strip_prefix('.')?
        .parse()
        .ok()
}

/// The version `parent/arch` shows. A real directory there (the layout before versions) is
/// moved aside as version 0 first.
fn current_version(parent: &Path, arch: &str) -> io::Result<Option<u64>> {
    let link = parent.join(arch);
    match fs::symlink_metadata(&link) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => {
            fs::rename(&link, version_dir(parent, arch, 0))?;
            Ok(Some(0))
        }
        Ok(_) => {
            let target = fs::read_link(&link)?;
            let n = parse_version(&target.to_string_lossy(), arch).ok_or_else(|| {
                io::Error::other(format!(
                    "{} points at {}, not at a version of the repository",
                    link.display(),
                    target.display()
                ))
            })?;
            Ok(Some(n))
        }
    }
}

fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dbs(tag: &str) -> Databases {
        Databases {
            db: format!("db {tag}").into_bytes(),
            files: format!("files {tag}").into_bytes(),
        }
    }

    fn signatures(tag: &str) -> Signatures {
        Signatures {
            db: Signature::from_bytes(format!("sig db {tag}").into_bytes()),
            files: Signature::from_bytes(format!("sig files {tag}").into_bytes()),
        }
    }

    fn read(dir: &Path, file: &str) -> String {
        fs::read_to_string(dir.join("x86_64").join(file)).unwrap()
    }

    #[test]
    fn each_version_is_whole_with_its_signatures_and_the_one_before_as_old() {
        let dir = tempfile::tempdir().unwrap();
        // A repository in the layout before versions: moved aside, read as the version before.
        fs::create_dir_all(dir.path().join("x86_64")).unwrap();
        fs::write(dir.path().join("x86_64/r.db.tar.gz"), "db legacy").unwrap();
        for tag in ["one", "two", "three"] {
            publish(dir.path(), "x86_64", "r", &dbs(tag), Some(&signatures(tag))).unwrap();
        }
        for (file, want) in [
            ("r.db", "db three"),
            ("r.db.tar.gz", "db three"),
            ("r.files", "files three"),
            ("r.files.tar.gz", "files three"),
            ("r.db.sig", "sig db three"),
            ("r.db.tar.gz.sig", "sig db three"),
            ("r.files.sig", "sig files three"),
            ("r.db.old", "db two"),
            ("r.files.tar.gz.old", "files two"),
        ] {
            assert_eq!(read(dir.path(), file), want, "{file}");
        }
        let mut versions: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        versions.sort();
        assert_eq!(
            versions,
            [".x86_64.0", ".x86_64.1", ".x86_64.2", ".x86_64.3", "x86_64"]
        );
        assert_eq!(shown_version(dir.path(), "x86_64"), Some(3));
        for tag in 4..=12 {
            publish(dir.path(), "x86_64", "r", &dbs(&tag.to_string()), None).unwrap();
        }
        let kept = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| parse_version(&e.unwrap().file_name().to_string_lossy(), "x86_64"))
            .count();
        assert_eq!(kept as u64, KEPT_VERSIONS);

        // Unsigned, a version has no signature files, not stale ones.
        assert!(!dir.path().join("x86_64/r.db.sig").exists());
        assert_eq!(read(dir.path(), "r.db"), "db 12");
    }

    #[test]
    fn a_version_a_crash_left_unfinished_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        publish(
            dir.path(),
            "x86_64",
            "r",
            &dbs("one"),
            Some(&signatures("one")),
        )
        .unwrap();
        // A crash after the next version's directory was begun, before the swing.
        fs::create_dir(dir.path().join(".x86_64.2")).unwrap();
        fs::write(dir.path().join(".x86_64.2/r.db"), "torn").unwrap();
        std::os::unix::fs::symlink(".x86_64.2", dir.path().join(".x86_64.swing")).unwrap();
        assert_eq!(read(dir.path(), "r.db"), "db one");
        assert_eq!(read(dir.path(), "r.db.sig"), "sig db one");
        publish(
            dir.path(),
            "x86_64",
            "r",
            &dbs("two"),
            Some(&signatures("two")),
        )
        .unwrap();
        assert_eq!(read(dir.path(), "r.db"), "db two");
        assert_eq!(read(dir.path(), "r.db.sig"), "sig db two");
    }
}

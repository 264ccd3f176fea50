//! Writing pacman repository databases: `NAME.db.tar.gz` (a `desc` per package) and
//! `NAME.files.tar.gz` (with `files` too), as repo-add writes them, plus the `NAME.db` and
//! `NAME.files` that pacman downloads.
//!
//! Each file is written to a temporary name and renamed into place, so a client reads the old
//! database or the new one, never a torn one; the previous version stays as `*.old`.
//! The archive itself is assembled here because alpm-repo-db writes the entries but not the
//! database archive.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;

/// One package's entries in a repository database.
#[derive(Clone, Copy, Debug)]
pub struct DbEntry<'a> {
    pub pkgname: &'a str,
    pub version: &'a str,
    pub desc: &'a str,
    pub files: &'a str,
}

/// Writes the databases of repository `name` in `dir` from `entries`.
pub fn write_databases(dir: &Path, name: &str, entries: &[DbEntry<'_>]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut sorted: Vec<&DbEntry<'_>> = entries.iter().collect();
    sorted.sort_by(|a, b| a.pkgname.cmp(b.pkgname));
    let db = archive(&sorted, false)?;
    let files = archive(&sorted, true)?;
    for (file, bytes) in [
        (format!("{name}.db.tar.gz"), &db),
        (format!("{name}.db"), &db),
        (format!("{name}.files.tar.gz"), &files),
        (format!("{name}.files"), &files),
    ] {
        replace(&dir.join(file), bytes)?;
    }
    Ok(())
}

fn archive(entries: &[&DbEntry<'_>], with_files: bool) -> io::Result<Vec<u8>> {
    let gz = GzEncoder::new(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for e in entries {
        let dir = format!("{}-{}", e.pkgname, e.version);
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_mtime(mtime);
        tar.append_data(&mut header, format!("{dir}/"), io::empty())?;
        let mut add = |file: &str, text: &str| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(text.len() as u64);
            header.set_mtime(mtime);
            tar.append_data(&mut header, format!("{dir}/{file}"), text.as_bytes())
        };
        add("desc", e.desc)?;
        if with_files {
            add("files", e.files)?;
        }
    }
    tar.into_inner()?.finish()
}

/// Puts `bytes` at `path` by rename, keeping what was there as `path.old`.
fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    if path.exists() {
        let old = path.with_file_name(format!(
            "{}.old",
            path.file_name()
                .expect("database paths have names")
                .to_string_lossy()
        ));
        let old_tmp = tempfile::Builder::new()
            .prefix(".old")
            .tempfile_in(dir)?
            .into_temp_path();
        fs::remove_file(&old_tmp)?;
        fs::hard_link(path, &old_tmp)?;
        old_tmp.persist(&old).map_err(|e| e.error)?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_both_databases_and_keeps_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = [DbEntry {
            pkgname: "foo",
            version: "1-1",
            desc: "%NAME%\nfoo\n",
            files: "%FILES%\nusr/\n",
        }];
        write_databases(dir.path(), "quarters", &first).unwrap();
        let second = [
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
        write_databases(dir.path(), "quarters", &second).unwrap();
        let list = |file: &str| {
            let out = std::process::Command::new("tar")
                .arg("-tzf")
                .arg(dir.path().join(file))
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(
            list("quarters.db"),
            "bar-3-1/\nbar-3-1/desc\nfoo-1-2/\nfoo-1-2/desc\n"
        );
        assert_eq!(
            list("quarters.files.tar.gz"),
            "bar-3-1/\nbar-3-1/desc\nbar-3-1/files\nfoo-1-2/\nfoo-1-2/desc\nfoo-1-2/files\n"
        );
        assert_eq!(list("quarters.db.old"), "foo-1-1/\nfoo-1-1/desc\n");
        assert_eq!(
            fs::read(dir.path().join("quarters.db")).unwrap(),
            fs::read(dir.path().join("quarters.db.tar.gz")).unwrap()
        );
    }
}

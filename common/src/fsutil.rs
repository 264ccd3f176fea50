//! Small file-system helpers that the nodes share: files written whole or not at all.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `contents` to `path` with permission bits `mode`.
///
/// Without `overwrite`, an existing file is an `AlreadyExists` error and stays untouched.
/// With it, the new content goes to a temporary file in the same directory that is renamed over
/// the old one, so a reader sees either the old file or the new one, never half of either.
/// The mode is set when the file is created, so a private key is never readable by others, not
/// even for an instant.
pub fn write_file(path: &Path, contents: &[u8], mode: u32, overwrite: bool) -> io::Result<()> {
    if !overwrite {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        file.write_all(contents)?;
        return file.sync_all();
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_overwrite_unless_asked_and_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_file(&path, b"one", 0o600, false).unwrap();
        let err = write_file(&path, b"two", 0o600, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_file(&path, b"three", 0o600, true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

//! Where the master keeps what it takes from builders (a build's staging directory while it
//! is pulled, a failed build's logs): under directories named by digests the master makes.
//!
//! Nothing a builder wrote becomes part of a path. A builder's name is the master's own (from
//! its config); the build id and stage names are the builder's, so they are hashed, which no
//! value can turn into `..` or `/`. The same functions serve the logs back.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The hexadecimal sha256 of `parts`, each ended by a NUL so that no two lists of parts
/// collide, cut to `len` digits.
fn digest(parts: &[&str], len: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex[..len].to_owned()
}

/// The directory a build of `builder` is pulled into before its packages enter the pool.
pub fn staging_dir(state_dir: &Path, builder: &str, build: &str) -> PathBuf {
    state_dir
        .join("staging")
        .join(digest(&[builder, build], 32))
}

/// The directory of a failed build's logs.
pub fn log_dir(state_dir: &Path, builder: &str, build: &str) -> PathBuf {
    state_dir.join("logs").join(digest(&[builder, build], 32))
}

/// The file of one stage's log in a build's log directory.
pub fn log_file(dir: &Path, stage: &str) -> PathBuf {
    dir.join(format!("{}.log", digest(&[stage], 16)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_id_stays_inside_the_state_directory() {
        let state = Path::new("/var/lib/quarters");
        for (builder, build) in [("b", "../../../../victim"), ("b", "/etc"), ("..", "..")] {
            for dir in [
                staging_dir(state, builder, build),
                log_dir(state, builder, build),
            ] {
                assert_eq!(dir.parent().unwrap().parent().unwrap(), state);
                let name = dir.file_name().unwrap().to_str().unwrap();
                assert!(name.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
                let file = log_file(&dir, "../../planted");
                assert_eq!(file.parent().unwrap(), dir);
            }
        }
        assert_ne!(staging_dir(state, "ab", "c"), staging_dir(state, "a", "bc"));
    }
}

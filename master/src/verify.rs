//! Independent verification: an accepted version rebuilt by another builder, and the packages
//! it made compared byte for byte with the accepted ones.
//!
//! A difference is named down to the archive members that differ and how (content, mode,
//! owner, time, link, type), from the two archives themselves ([`archive::entries`]), so that
//! a packager sees at once whether a build is unreproducible (a timestamp, an embedded path)
//! or one of the two builders planted something.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::db::AcceptedFile;
use crate::repo::package::{Limits, archive};

/// Whether the farm verifies accepted versions, and what promotion makes of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No verification builds.
    Off,
    /// Verification builds whose results are shown; promotion does not wait for them.
    #[default]
    Advisory,
    /// Only a version an independent build reproduced is promoted (`promote --force`
    /// overrides, with a recorded reason).
    Required,
}

/// `[verification]`: whether the farm verifies, and how many builds must agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// Independent builds that must make the same bytes, the accepted one included:
    /// invariant 2..=5 (the config refuses anything else).
    pub agree: u32,
}

impl Policy {
    /// Reproductions by verification builds that settle a version.
    pub fn reproductions(&self) -> u32 {
        self.agree.saturating_sub(1).max(1)
    }
}

impl Mode {
    pub fn to_wire(self) -> quarters_common::api::v1::VerificationMode {
        use quarters_common::api::v1::VerificationMode;
        match self {
            Mode::Off => VerificationMode::Off,
            Mode::Advisory => VerificationMode::Advisory,
            Mode::Required => VerificationMode::Required,
        }
    }
}

/// Inconclusive verifications (failed builds, refused pulls) of one version before the master
/// stops asking for more.
pub const MAX_UNVERIFIABLE: u32 = 2;

/// A package file the verification build made, pulled and checked as any build's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Made {
    pub filename: String,
    pub sha256: String,
    pub path: PathBuf,
}

/// How one package file differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub file: String,
    pub what: String,
}

/// What a verification task brings back: the comparison, and the files the build made (name
/// and sha256), kept with its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compared {
    pub comparison: Comparison,
    pub made: Vec<AcceptedFile>,
}

/// What the comparison found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Comparison {
    Reproduced,
    Differs(Vec<Difference>),
}

impl Comparison {
    /// One line for the record: every file that differs, and how.
    pub fn detail(&self) -> Option<String> {
        match self {
            Comparison::Reproduced => None,
            Comparison::Differs(d) => Some(
                d.iter()
                    .map(|d| format!("{}: {}", d.file, d.what))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }
}

/// Members named per file before the rest is counted.
const MEMBERS_SHOWN: usize = 8;

/// Compares what a verification build made with the accepted files, which are in `pool`.
pub fn compare(
    accepted: &[AcceptedFile],
    pool: &Path,
    made: &[Made],
    limits: &Limits,
    cancel: &AtomicBool,
) -> Comparison {
    let mut differences = Vec::new();
    for a in accepted {
        match made.iter().find(|m| m.filename == a.filename) {
            None => differences.push(Difference {
                file: a.filename.clone(),
                what: "the verification build did not make it".to_owned(),
            }),
            Some(m) if m.sha256 == a.sha256 => {}
            Some(m) => differences.push(Difference {
                file: a.filename.clone(),
                what: members_differ(&pool.join(&a.filename), &m.path, limits, cancel),
            }),
        }
    }
    for m in made {
        if !accepted.iter().any(|a| a.filename == m.filename) {
            differences.push(Difference {
                file: m.filename.clone(),
                what: "made by the verification build only".to_owned(),
            });
        }
    }
    if differences.is_empty() {
        Comparison::Reproduced
    } else {
        Comparison::Differs(differences)
    }
}

/// The members of two archives that differ, and how; or why they could not be compared.
fn members_differ(accepted: &Path, made: &Path, limits: &Limits, cancel: &AtomicBool) -> String {
    let read = |path: &Path, which: &str| {
        archive::entries(path, limits, cancel).map_err(|e| format!("the {which} package: {e}"))
    };
    let (ours, theirs) = match (read(accepted, "accepted"), read(made, "rebuilt")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return format!("differs; its members cannot be compared: {e}");
        }
    };
    let names: BTreeMap<&String, ()> = ours.keys().chain(theirs.keys()).map(|k| (k, ())).collect();
    let mut found = Vec::new();
    for name in names.keys() {
        let how = match (ours.get(*name), theirs.get(*name)) {
            (Some(_), None) => "missing".to_owned(),
            (None, Some(_)) => "added".to_owned(),
            (Some(a), Some(b)) => {
                let mut how = Vec::new();
                if a.kind != b.kind {
                    how.push("type");
                }
                if a.sha256 != b.sha256 || a.size != b.size {
                    how.push("content");
                }
                if a.link != b.link {
                    how.push("link");
                }
                if a.mode != b.mode {
                    how.push("mode");
                }
                if a.uid != b.uid || a.gid != b.gid {
                    how.push("owner");
                }
                if a.mtime != b.mtime {
                    how.push("time");
                }
                if how.is_empty() {
                    continue;
                }
                how.join(", ")
            }
            (None, None) => continue,
        };
        found.push(format!("{name} ({how})"));
    }
    if found.is_empty() {
        // Same members, other bytes: the archive's own layout (order, compression).
        return "the same members, archived differently".to_owned();
    }
    let more = found.len().saturating_sub(MEMBERS_SHOWN);
    found.truncate(MEMBERS_SHOWN);
    let mut what = format!("members differ: {}", found.join(", "));
    if more > 0 {
        what += &format!(" and {more} more");
    }
    what
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::package::testpkg;

    fn sha256(path: &Path) -> String {
        use sha2::Digest as _;
        let bytes = std::fs::read(path).unwrap();
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn made(path: PathBuf) -> Made {
        Made {
            filename: path.file_name().unwrap().to_string_lossy().into_owned(),
            sha256: sha256(&path),
            path,
        }
    }

    #[test]
    fn the_same_bytes_reproduce_and_other_bytes_are_named_down_to_their_members() {
        let pool = tempfile::tempdir().unwrap();
        let rebuilt = tempfile::tempdir().unwrap();
        let file = "hello-1.0-1-x86_64.pkg.tar.gz";
        let members = |hello: &[u8]| -> Vec<(&'static str, Vec<u8>)> {
            vec![
                (".PKGINFO", b"pkgname = hello\n".to_vec()),
                ("usr/", Vec::new()),
                ("usr/bin/", Vec::new()),
                ("usr/bin/hello", hello.to_vec()),
                ("usr/share/doc", b"same\n".to_vec()),
            ]
        };
        let write = |dir: &Path, hello: &[u8]| {
            let m = members(hello);
            let refs: Vec<(&str, &[u8])> = m.iter().map(|(n, d)| (*n, d.as_slice())).collect();
            testpkg::write_members(dir, file, &refs)
        };
        let accepted_path = write(pool.path(), b"the real thing\n");
        let accepted = vec![AcceptedFile {
            filename: file.to_owned(),
            sha256: sha256(&accepted_path),
        }];
        let limits = Limits::default();
        let cancel = AtomicBool::new(false);

        let same = write(rebuilt.path(), b"the real thing\n");
        assert_eq!(
            compare(&accepted, pool.path(), &[made(same)], &limits, &cancel),
            Comparison::Reproduced
        );

        let planted = write(rebuilt.path(), b"the real thing, and a back door\n");
        let got = compare(&accepted, pool.path(), &[made(planted)], &limits, &cancel);
        assert_eq!(
            got.detail().unwrap(),
            format!("{file}: members differ: usr/bin/hello (content)")
        );

        let other = testpkg::write(rebuilt.path(), "hello-doc", "hello", "1.0-1", "any", "");
        let got = compare(&accepted, pool.path(), &[made(other)], &limits, &cancel);
        assert_eq!(
            got.detail().unwrap(),
            format!(
                "{file}: the verification build did not make it; hello-doc-1.0-1-any.pkg.tar.gz: made by the verification build only"
            )
        );
    }
}

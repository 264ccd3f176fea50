//! Property tests of the package reader: whatever a builder sends as a package (random bytes,
//! a real package with bytes changed, an archive of any members) is read or refused without a
//! panic and within the limits. CI runs a few dozen cases per property; `PROPTEST_CASES=5000
//! cargo test -p quarters-master fuzz` runs a longer campaign.

use std::io::Write;
use std::sync::atomic::AtomicBool;

use proptest::prelude::*;

use super::*;

/// Small limits, so that generated archives cross them.
const LIMITS: Limits = Limits {
    member_bytes: 2048,
    total_bytes: 16 << 10,
    entries: 24,
};

fn read_as(dir: &Path, name: &str, bytes: &[u8]) -> Result<Inspected, InspectError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    inspect(
        &path,
        FileFacts {
            file_name: name,
            size: bytes.len() as u64,
            sha256: "aa",
            pgpsig: None,
        },
        &LIMITS,
        &AtomicBool::new(false),
    )
}

/// The archive reader's own promises, checked on what it returned.
fn within_limits(result: &Result<Inspected, InspectError>) -> Result<(), TestCaseError> {
    if let Ok(inspected) = result {
        prop_assert!(inspected.files.lines().count() <= LIMITS.entries as usize + 1);
        prop_assert!(inspected.desc.len() <= 4 * LIMITS.total_bytes as usize);
    }
    Ok(())
}

/// An uncompressed tar of `members`, written as the tar crate writes them.
fn tar_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        // A name the tar crate refuses is left out: the test is of our reader, not of tar.
        let _ = tar.append_data(&mut h, name, data.as_slice());
    }
    tar.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn member() -> impl Strategy<Value = (String, Vec<u8>)> {
    (
        prop_oneof![
            Just(".PKGINFO".to_owned()),
            Just(".BUILDINFO".to_owned()),
            Just(".MTREE".to_owned()),
            "[a-z/.]{1,24}",
            any::<String>(),
        ],
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            "(pkgname|pkgver|arch|depend|size) = [ -~]{0,20}\n".prop_map(String::into_bytes),
            (0usize..6000).prop_map(|n| vec![b'x'; n]),
        ],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_bytes_under_any_package_name_are_refused_without_harm(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        ext in prop_oneof![Just("tar"), Just("tar.gz"), Just("tar.zst"), Just("tar.xz"), Just("tar.bz2")],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let result = read_as(dir.path(), &format!("x-1-1-any.pkg.{ext}"), &bytes);
        within_limits(&result)?;
    }

    #[test]
    fn a_real_package_with_bytes_changed_is_read_or_refused_within_the_limits(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
        compressed in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let good = testpkg::write(dir.path(), "foo", "foo", "1.0-1", "x86_64", "");
        // The tar inside, so that the edits hit headers and members rather than only the
        // compressed stream's checksums.
        let mut tar = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(&good).unwrap()),
            &mut tar,
        )
        .unwrap();
        for (at, byte) in edits {
            let i = at.index(tar.len());
            tar[i] = byte;
        }
        let (name, bytes) = if compressed {
            ("foo-1.0-1-x86_64.pkg.tar.gz", gzip(&tar))
        } else {
            ("foo-1.0-1-x86_64.pkg.tar", tar)
        };
        let result = read_as(dir.path(), name, &bytes);
        within_limits(&result)?;
    }

    #[test]
    fn an_archive_of_any_members_is_bounded_by_the_limits(
        members in proptest::collection::vec(member(), 0..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&members);
        let path = dir.path().join("m-1-1-any.pkg.tar.gz");
        std::fs::write(&path, gzip(&tar)).unwrap();
        // The archive reader itself, which has to hold the limits whatever `.PKGINFO` says.
        let result = archive::read(&path, &LIMITS, &AtomicBool::new(false));
        if let Ok(m) = &result {
            prop_assert!(m.files.len() as u64 <= LIMITS.entries);
            for text in m.pkginfo.iter().chain(&m.buildinfo) {
                prop_assert!(text.len() as u64 <= LIMITS.member_bytes);
            }
        }
        let count = |name: &str| members.iter().filter(|(n, _)| n == name).count();
        let oversized = |name: &str| {
            members.iter().any(|(n, d)| n == name && d.len() as u64 > LIMITS.member_bytes)
        };
        if count(".PKGINFO") == 1 && oversized(".PKGINFO") {
            prop_assert!(result.is_err());
        }
    }

    #[test]
    fn an_archive_over_the_limits_is_refused_as_such(
        sizes in proptest::collection::vec(0usize..4000, 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut members = vec![(".PKGINFO".to_owned(), b"pkgname = m\n".to_vec())];
        members.extend(
            sizes
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("usr/share/m/f{i}"), vec![b'x'; *n])),
        );
        let tar = tar_of(&members);
        let path = dir.path().join("m-1-1-any.pkg.tar.gz");
        std::fs::write(&path, gzip(&tar)).unwrap();
        let result = archive::read(&path, &LIMITS, &AtomicBool::new(false));
        let data: usize = sizes.iter().sum();
        if members.len() as u64 > LIMITS.entries {
            prop_assert!(
                matches!(
                    result,
                    Err(ArchiveError::TooManyEntries { .. } | ArchiveError::TooLarge { .. })
                ),
                "{result:?}"
            );
        } else if data as u64 > LIMITS.total_bytes {
            prop_assert_eq!(result, Err(ArchiveError::TooLarge { limit: LIMITS.total_bytes }));
        } else if (tar.len() as u64) < LIMITS.total_bytes {
            let m = result.unwrap();
            prop_assert_eq!(m.files.len(), sizes.len(), "{:?}", m.files);
        }
    }
}

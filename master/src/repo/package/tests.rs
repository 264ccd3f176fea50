use std::io::Write;
use std::sync::atomic::AtomicBool;

use super::*;

fn facts(name: &str) -> FileFacts<'_> {
    FileFacts {
        file_name: name,
        size: 1234,
        sha256: "aa",
        pgpsig: None,
    }
}

fn read(path: &Path) -> Result<Inspected, InspectError> {
    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
    inspect(
        path,
        facts(&name),
        &Limits::default(),
        &AtomicBool::new(false),
    )
}

#[test]
fn reads_pkginfo_and_buildinfo_and_makes_desc_and_files_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = testpkg::write(
        dir.path(),
        "b-lib",
        "split-b",
        "1:2.0-1",
        "x86_64",
        "provides = libb.so=1-64\ndepend = glibc\n",
    );
    let inspected = read(&path).unwrap();
    let info = &inspected.pkginfo;
    assert_eq!(info.pkgname, "b-lib");
    assert_eq!(info.pkgbase, "split-b");
    assert_eq!(info.version, "1:2.0-1");
    assert_eq!(info.arch, "x86_64");
    assert_eq!(info.provides, ["libb.so=1-64"]);
    let buildinfo = inspected.buildinfo.as_ref().unwrap();
    assert_eq!(
        buildinfo.builddir.as_deref(),
        Some(quarters_common::api::v1::BUILDDIR)
    );
    assert_eq!(
        buildinfo.pkgbuild_sha256sum.as_deref(),
        Some(testpkg::PKGBUILD_SHA256)
    );
    for line in [
        "%FILENAME%\nb-lib-1:2.0-1-x86_64.pkg.tar.gz",
        "%BASE%\nsplit-b",
        "%CSIZE%\n1234",
        "%DEPENDS%\nglibc",
    ] {
        assert!(
            inspected.desc.contains(line),
            "{line:?} in\n{}",
            inspected.desc
        );
    }
    assert_eq!(
        inspected.files,
        "%FILES%\nusr/\nusr/share/\nusr/share/b-lib/\nusr/share/b-lib/hello\n"
    );
}

#[test]
fn a_file_that_is_not_a_package_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil-1-1-x86_64.pkg.tar.gz");
    std::fs::write(&path, b"not a tarball").unwrap();
    let err = read(&path).unwrap_err();
    assert!(
        matches!(err, InspectError::Archive(ArchiveError::Unreadable(_))),
        "{err}"
    );

    let path = testpkg::write_members(dir.path(), "x-1-1-any.pkg.tar.gz", &[("usr/", b"")]);
    assert_eq!(read(&path).unwrap_err(), InspectError::NoPkgInfo);
}

/// A `.PKGINFO` that declares gigabytes is refused from its header, before a byte of it is
/// decompressed: the bomb of the hostile-builder issue costs nothing.
#[test]
fn a_metadata_member_over_the_limit_is_refused_from_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb-1-1-any.pkg.tar.gz");
    let size: u64 = 2 << 30;
    // Only the header and the first megabyte of the declared content are written: the reader
    // must not need more than the header to refuse it.
    let file = std::fs::File::create(&path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    let mut out = gz;
    let mut h = tar::Header::new_gnu();
    h.set_path(".PKGINFO").unwrap();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_cksum();
    out.write_all(h.as_bytes()).unwrap();
    out.write_all(&vec![b'a'; 1 << 20]).unwrap();
    out.finish().unwrap();
    // Were the member read, the truncated archive would fail as unreadable instead.
    let err = read(&path).unwrap_err();
    assert_eq!(
        err,
        InspectError::Archive(ArchiveError::MemberTooLarge {
            member: ".PKGINFO",
            size,
            limit: Limits::default().member_bytes
        })
    );
}

#[test]
fn the_whole_archive_and_its_entries_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![0u8; 3 << 20];
    let path = testpkg::write(dir.path(), "a", "a", "1-1", "any", "");
    let limits = Limits {
        entries: 3,
        ..Limits::default()
    };
    let err = inspect(&path, facts("a"), &limits, &AtomicBool::new(false)).unwrap_err();
    assert_eq!(
        err,
        InspectError::Archive(ArchiveError::TooManyEntries { limit: 3 })
    );
    let path = testpkg::write_members(
        dir.path(),
        "z-1-1-any.pkg.tar.gz",
        &[(".PKGINFO", b"pkgname = z\n"), ("usr/big", &big)],
    );
    let limits = Limits {
        total_bytes: 1 << 20,
        ..Limits::default()
    };
    let err = inspect(&path, facts("z"), &limits, &AtomicBool::new(false)).unwrap_err();
    assert_eq!(
        err,
        InspectError::Archive(ArchiveError::TooLarge { limit: 1 << 20 })
    );
    let err = inspect(
        &path,
        facts("z"),
        &Limits::default(),
        &AtomicBool::new(true),
    )
    .unwrap_err();
    assert_eq!(err, InspectError::Archive(ArchiveError::Cancelled));
}

#[test]
fn what_pacman_accepts_and_the_schema_does_not_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let pkginfo = "pkgname = n\npkgbase = n\npkgver = 1-1\nurl = \nlicense = my licence\narch = any\nsize = 1\n";
    let path = testpkg::write_members(
        dir.path(),
        "n-1-1-any.pkg.tar.gz",
        &[(".PKGINFO", pkginfo.as_bytes()), ("usr/", b"")],
    );
    let inspected = read(&path).unwrap();
    assert_eq!(inspected.pkginfo.pkgname, "n");
    assert!(
        inspected
            .warnings
            .iter()
            .any(|w| w.starts_with(".PKGINFO does not follow the alpm schema")),
        "{:?}",
        inspected.warnings
    );
    assert!(
        inspected.warnings.iter().any(|w| w.contains("no .MTREE")),
        "{:?}",
        inspected.warnings
    );
    assert!(!inspected.desc.contains("%URL%"), "{}", inspected.desc);
}

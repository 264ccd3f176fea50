//! Pulling from a real HTTPS server standing in for a builder: it serves package files that are
//! real gzip'd tar archives with a .PKGINFO, as makepkg writes them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::get;
use quarters_common::api::v1::{Artifact, Build, BuildOutcome};
use quarters_common::client::{ClientLimits, PeerClient};
use quarters_common::peer_input::BuilderLimits;
use quarters_common::tls::{FarmTrust, Identity, TlsFiles};
use quarters_common::{NodeName, pki};
use sha2::{Digest, Sha256};

use super::*;
use crate::repo::package::testpkg;

struct TestBuilder {
    _dir: tempfile::TempDir,
    files: PathBuf,
    client: PeerClient,
    stop: tokio_util::sync::CancellationToken,
}

async fn serve_file(
    State(dir): State<Arc<PathBuf>>,
    UrlPath((_id, file)): UrlPath<(String, String)>,
) -> Result<Vec<u8>, axum::http::StatusCode> {
    std::fs::read(dir.join(file)).map_err(|_| axum::http::StatusCode::NOT_FOUND)
}

async fn test_builder() -> TestBuilder {
    let dir = tempfile::tempdir().unwrap();
    pki::init_ca(dir.path(), false).unwrap();
    let name = NodeName::new("builder-1").unwrap();
    let files =
        pki::issue_cert(dir.path(), dir.path(), &name, &["127.0.0.1".into()], false).unwrap();
    let identity = Identity::load(
        &name,
        &TlsFiles {
            ca: dir.path().join("ca.pem"),
            cert: files.cert,
            key: files.key,
        },
    )
    .unwrap();
    let artifacts = dir.path().join("artifacts");
    std::fs::create_dir(&artifacts).unwrap();
    let app = Router::new()
        .route("/v1/builds/{id}/artifacts/{file}", get(serve_file))
        .with_state(Arc::new(artifacts.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}/",
        listener.local_addr().unwrap().port()
    )
    .parse()
    .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(quarters_common::serve::serve(
        listener,
        identity.server_config(),
        app,
        quarters_common::serve::Limits::default(),
        async move { token.cancelled().await },
    ));
    let trust = FarmTrust::load(&dir.path().join("ca.pem")).unwrap();
    let client = PeerClient::new(&trust, name, url, ClientLimits::default());
    TestBuilder {
        _dir: dir,
        files: artifacts,
        client,
        stop,
    }
}

fn artifact(path: &Path) -> Artifact {
    let bytes = std::fs::read(path).unwrap();
    Artifact {
        file: path.file_name().unwrap().to_string_lossy().into_owned(),
        sha256: Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        size: bytes.len() as u64,
    }
}

fn build(artifacts: Vec<Artifact>) -> Build {
    Build {
        id: "42".into(),
        pkgbase: "split-b".into(),
        version: "1:2.0-1".into(),
        arch: "x86_64".into(),
        outcome: BuildOutcome::Succeeded,
        started_at: time::OffsetDateTime::now_utc(),
        finished_at: None,
        logs: vec![],
        artifacts,
        wall_ms: None,
        cpu_ms: None,
        peak_memory_kb: None,
        purpose: Default::default(),
    }
}

const NAMES: &[&str] = &["b-lib", "b-bin"];

fn expect<'a>(names: &'a [String], arch: &'a Arch) -> Expectation<'a> {
    Expectation {
        pkgbase: "split-b",
        version: "1:2.0-1",
        arch,
        pkgnames: names,
        packager: testpkg::PACKAGER,
        pkgbuild_sha256: Some(testpkg::PKGBUILD_SHA256),
        pins: &[],
    }
}

fn refused(err: &PullError) -> Option<(Blame, &str)> {
    match err {
        PullError::Refused(r) => Some((r.blame, r.reason.as_str())),
        PullError::Unavailable(_) => None,
    }
}

async fn try_pull(b: &TestBuilder, build: &Build) -> Result<Vec<Pulled>, PullError> {
    try_pull_pinned(b, build, &[]).await
}

/// [`try_pull`] of a build that waited for the dependencies `pins`.
async fn try_pull_pinned(
    b: &TestBuilder,
    build: &Build,
    pins: &[crate::plan::Pin],
) -> Result<Vec<Pulled>, PullError> {
    let staging = tempfile::tempdir().unwrap();
    let names: Vec<String> = NAMES.iter().map(|s| (*s).to_owned()).collect();
    let arch = Arch::parse("x86_64").unwrap();
    let limits = PullLimits {
        max_bytes: 1 << 20,
        archive: Limits::default(),
        cancel: Arc::default(),
        pace: Pace {
            min_rate: 1 << 20,
            grace: std::time::Duration::from_secs(30),
            max_time: std::time::Duration::from_secs(600),
        },
    };
    // What the master checks when it reads a builder's state comes first, as in the master.
    let build = match CheckedBuild::check(build, &BuilderLimits::default()) {
        Ok(build) => build,
        Err(v) => return refuse(Blame::Builder, v.to_string()),
    };
    let expectation = Expectation {
        pins,
        ..expect(&names, &arch)
    };
    let result = pull(&b.client, &build, expectation, staging.path(), &limits).await;
    if let Ok(pulled) = &result {
        for p in pulled {
            assert!(p.path.is_file());
        }
    }
    result
}

#[tokio::test]
async fn a_complete_split_build_is_pulled_and_verified() {
    let b = test_builder().await;
    let lib = testpkg::write(&b.files, "b-lib", "split-b", "1:2.0-1", "x86_64", "");
    let doc = testpkg::write(&b.files, "b-bin", "split-b", "1:2.0-1", "any", "");
    let pulled = try_pull(&b, &build(vec![artifact(&lib), artifact(&doc)]))
        .await
        .unwrap();
    assert_eq!(pulled.len(), 2);
    assert_eq!(pulled[1].package.pkginfo.arch, "any");
    b.stop.cancel();
}

#[tokio::test]
async fn tampered_wrong_missing_and_oversized_builds_are_rejected() {
    let b = test_builder().await;
    let lib = testpkg::write(&b.files, "b-lib", "split-b", "1:2.0-1", "x86_64", "");
    let bin = testpkg::write(&b.files, "b-bin", "split-b", "1:2.0-1", "x86_64", "");

    let mut tampered = artifact(&lib);
    tampered.sha256 = "0".repeat(64);
    let err = try_pull(&b, &build(vec![tampered, artifact(&bin)]))
        .await
        .unwrap_err();
    assert!(
        matches!(refused(&err), Some((Blame::Builder, m)) if m.contains("does not match the announced")),
        "{err}"
    );

    let other = testpkg::write(&b.files, "b-lib", "evil", "1:2.0-1", "x86_64", "");
    let renamed = b.files.join("b-lib-1:2.0-1-x86_64.pkg.tar.gz");
    std::fs::rename(&other, &renamed).unwrap();
    let err = try_pull(&b, &build(vec![artifact(&renamed), artifact(&bin)]))
        .await
        .unwrap_err();
    assert!(
        matches!(refused(&err), Some((Blame::Package, m)) if m.contains(r#"names pkgbase "evil", but "split-b" was claimed"#)),
        "{err}"
    );

    let lib = testpkg::write(&b.files, "b-lib", "split-b", "1:2.0-1", "x86_64", "");
    let err = try_pull(&b, &build(vec![artifact(&lib)]))
        .await
        .unwrap_err();
    assert!(
        matches!(refused(&err), Some((Blame::Package, m)) if m.contains("the build lacks b-bin")),
        "{err}"
    );

    let mut huge = artifact(&lib);
    huge.size = 10 << 20;
    let err = try_pull(&b, &build(vec![huge, artifact(&bin)]))
        .await
        .unwrap_err();
    assert!(
        matches!(refused(&err), Some((Blame::Builder, m)) if m.contains("over the limit")),
        "{err}"
    );

    let mut bad_name = artifact(&lib);
    bad_name.file = "../../etc/passwd".into();
    let err = try_pull(&b, &build(vec![bad_name])).await.unwrap_err();
    assert!(
        matches!(refused(&err), Some((Blame::Builder, m)) if m.contains("package file name \"../../etc/passwd\"")),
        "{err}"
    );

    b.stop.cancel();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let err = try_pull(&b, &build(vec![artifact(&lib), artifact(&bin)]))
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Unavailable(_)), "{err}");
}

/// The `.BUILDINFO` an honest builder's makepkg writes for the test packages.
fn good_buildinfo() -> String {
    format!(
        "format = 2\npkgbuild_sha256sum = {}\npackager = {}\nbuilddir = {}\n",
        testpkg::PKGBUILD_SHA256,
        testpkg::PACKAGER,
        quarters_common::api::v1::BUILDDIR
    )
}

/// Writes `b-lib` of `split-b 1:2.0-1` with `pkginfo_extra` after its `.PKGINFO`'s basic lines
/// and `buildinfo` as its `.BUILDINFO`; returns its path.
fn b_lib(b: &TestBuilder, pkginfo_extra: &str, buildinfo: &str) -> PathBuf {
    let pkginfo = format!(
        "pkgname = b-lib\npkgbase = split-b\npkgver = 1:2.0-1\narch = x86_64\nsize = 1\n{pkginfo_extra}"
    );
    testpkg::write_members(
        &b.files,
        "b-lib-1:2.0-1-x86_64.pkg.tar.gz",
        &[
            (".PKGINFO", pkginfo.as_bytes()),
            (".BUILDINFO", buildinfo.as_bytes()),
            ("usr/", b""),
        ],
    )
}

/// Each of the checks a distribution's repository tooling makes, each refused with the check
/// named and the values, and blamed on the builder: makepkg on an honest builder passes them.
#[tokio::test]
async fn packages_failing_the_repository_checks_are_refused_naming_the_check() {
    let b = test_builder().await;
    let bin = testpkg::write(&b.files, "b-bin", "split-b", "1:2.0-1", "x86_64", "");
    let standard = |pkginfo_extra: &str, buildinfo: &str| b_lib(&b, pkginfo_extra, buildinfo);
    let good_buildinfo = good_buildinfo();
    let packager = format!("packager = {}\n", testpkg::PACKAGER);
    let cases: Vec<(String, String, &str)> = vec![
        (
            String::new(),
            good_buildinfo.clone(),
            "the packager check failed: .PKGINFO says \"\"",
        ),
        (
            packager.clone(),
            good_buildinfo.replace(quarters_common::api::v1::BUILDDIR, "/home/me/src"),
            "the clean-root check failed: .BUILDINFO says builddir \"/home/me/src\"",
        ),
        (
            packager.clone(),
            good_buildinfo.replace(testpkg::PKGBUILD_SHA256, &"c".repeat(64)),
            "the PKGBUILD check failed",
        ),
        (
            packager.clone(),
            good_buildinfo.replace(testpkg::PACKAGER, "Mallory <m@evil>"),
            "the packager check failed: .BUILDINFO says \"Mallory <m@evil>\"",
        ),
    ];
    for (pkginfo_extra, buildinfo, expected) in cases {
        let lib = standard(&pkginfo_extra, &buildinfo);
        let err = try_pull(&b, &build(vec![artifact(&lib), artifact(&bin)]))
            .await
            .unwrap_err();
        assert!(
            matches!(refused(&err), Some((Blame::Builder, m)) if m.contains(expected)),
            "{expected}: {err}"
        );
    }

    // No .BUILDINFO at all.
    let pkginfo =
        format!("pkgname = b-lib\npkgbase = split-b\npkgver = 1:2.0-1\narch = x86_64\n{packager}");
    let lib = testpkg::write_members(
        &b.files,
        "b-lib-1:2.0-1-x86_64.pkg.tar.gz",
        &[(".PKGINFO", pkginfo.as_bytes())],
    );
    let err = try_pull(&b, &build(vec![artifact(&lib), artifact(&bin)]))
        .await
        .unwrap_err();
    assert!(
        matches!(refused(&err), Some((Blame::Builder, m)) if m.contains("the .BUILDINFO check failed")),
        "{err}"
    );

    // A file named unlike its .PKGINFO, though a valid package file name.
    let lib = testpkg::write(&b.files, "b-lib", "split-b", "1:2.0-1", "x86_64", "");
    let renamed = b.files.join("b-lib-1:2.0-1-any.pkg.tar.gz");
    std::fs::rename(&lib, &renamed).unwrap();
    let err = try_pull(&b, &build(vec![artifact(&renamed), artifact(&bin)]))
        .await
        .unwrap_err();
    assert!(
        matches!(refused(&err), Some((Blame::Builder, m)) if m.contains("the file name check failed")),
        "{err}"
    );
    b.stop.cancel();
}

/// What makepkg writes for real PKGBUILDs that the alpm schema does not take (an empty url, a
/// licence that is no SPDX expression) and the debug package `options=(debug)` adds: accepted,
/// with warnings.
#[tokio::test]
async fn what_pacman_installs_is_accepted_with_warnings() {
    let b = test_builder().await;
    let lib = testpkg::write(
        &b.files,
        "b-lib",
        "split-b",
        "1:2.0-1",
        "x86_64",
        "url = \nlicense = my own licence\n",
    );
    let bin = testpkg::write(&b.files, "b-bin", "split-b", "1:2.0-1", "x86_64", "");
    let debug = testpkg::write(
        &b.files,
        "split-b-debug",
        "split-b",
        "1:2.0-1",
        "x86_64",
        "",
    );
    let pulled = try_pull(
        &b,
        &build(vec![artifact(&lib), artifact(&bin), artifact(&debug)]),
    )
    .await
    .unwrap();
    assert_eq!(pulled.len(), 3);
    assert!(
        pulled[0]
            .package
            .warnings
            .iter()
            .any(|w| w.contains("does not follow the alpm schema")),
        "{:?}",
        pulled[0].package.warnings
    );
    assert!(!pulled[0].package.desc.contains("%URL%"));
    assert!(
        pulled[0]
            .package
            .desc
            .contains("%LICENSE%\nmy own licence\n")
    );
    b.stop.cancel();
}

/// A build must have been built against the versions it waited for: one whose `.BUILDINFO`
/// shows an older version of such a dependency is refused, naming both.
#[tokio::test]
async fn a_build_against_an_older_version_of_what_it_waited_for_is_refused() {
    let b = test_builder().await;
    let bin = testpkg::write(&b.files, "b-bin", "split-b", "1:2.0-1", "x86_64", "");
    let with_installed = |installed: &str| {
        b_lib(
            &b,
            &format!("packager = {}\n", testpkg::PACKAGER),
            &format!(
                "{}installed = glibc-2.36-9-x86_64\ninstalled = {installed}\n",
                good_buildinfo()
            ),
        )
    };
    let pins = [crate::plan::Pin {
        pkgbase: "lib-a".into(),
        pkgnames: vec!["lib-a".into(), "lib-a-docs".into()],
        version: "2:1.0-2".into(),
    }];
    let old = with_installed("lib-a-2:1.0-1-x86_64");
    let err = try_pull_pinned(&b, &build(vec![artifact(&old), artifact(&bin)]), &pins)
        .await
        .unwrap_err();
    assert!(
        matches!(refused(&err), Some((Blame::Builder, m)) if m.contains(
            "the dependency check failed: .BUILDINFO says lib-a 2:1.0-1 was installed, the master's plan named lib-a 2:1.0-2 (of lib-a)"
        )),
        "{err}"
    );
    let new = with_installed("lib-a-2:1.0-2-x86_64");
    let pulled = try_pull_pinned(&b, &build(vec![artifact(&new), artifact(&bin)]), &pins)
        .await
        .unwrap();
    assert_eq!(pulled.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn every_transfer_has_a_deadline_from_its_size_and_a_build_a_total() {
    use std::time::Duration;
    let pace = Pace {
        min_rate: 1000,
        grace: Duration::from_secs(5),
        max_time: Duration::from_secs(60),
    };
    let mut budget = Budget::new(pace);
    let start = tokio::time::Instant::now();
    // 20,000 bytes at 1,000 a second: 20 s, and the grace.
    let deadline = budget
        .transfer(20_000, async |deadline| {
            tokio::time::sleep(Duration::from_secs(40)).await;
            deadline
        })
        .await;
    assert_eq!(deadline - start, Duration::from_secs(25));
    // 40 s of the 60 are spent: however large the next file, it gets the 20 left.
    let next = tokio::time::Instant::now();
    let deadline = budget.transfer(1 << 40, async |deadline| deadline).await;
    assert_eq!(deadline - next, Duration::from_secs(20));
}

//! Pulling from a real HTTPS server standing in for a builder: it serves package files that are
//! real gzip'd tar archives with a .PKGINFO, as makepkg writes them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::get;
use quarters_common::api::v1::{Artifact, Build, BuildOutcome};
use quarters_common::client::{ClientLimits, PeerClient};
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
    }
}

const NAMES: &[&str] = &["b-lib", "b-bin"];

fn expect(names: &[String]) -> Expectation<'_> {
    Expectation {
        pkgbase: "split-b",
        version: "1:2.0-1",
        arch: "x86_64",
        pkgnames: names,
    }
}

async fn try_pull(b: &TestBuilder, build: &Build) -> Result<Vec<Pulled>, PullError> {
    let staging = tempfile::tempdir().unwrap();
    let names: Vec<String> = NAMES.iter().map(|s| (*s).to_owned()).collect();
    let result = pull(&b.client, build, expect(&names), staging.path(), 1 << 20).await;
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
    assert_eq!(pulled[1].package.arch, "any");
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
        matches!(&err, PullError::Rejected(m) if m.contains("does not match the announced")),
        "{err}"
    );

    let other = testpkg::write(&b.files, "b-lib", "evil", "1:2.0-1", "x86_64", "");
    let renamed = b.files.join("b-lib-1:2.0-1-x86_64.pkg.tar.gz");
    std::fs::rename(&other, &renamed).unwrap();
    let err = try_pull(&b, &build(vec![artifact(&renamed), artifact(&bin)]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PullError::Rejected(m) if m.contains(r#"names pkgbase "evil", but "split-b" was claimed"#)),
        "{err}"
    );

    let lib = testpkg::write(&b.files, "b-lib", "split-b", "1:2.0-1", "x86_64", "");
    let err = try_pull(&b, &build(vec![artifact(&lib)]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PullError::Rejected(m) if m.contains("the build lacks b-bin")),
        "{err}"
    );

    let mut huge = artifact(&lib);
    huge.size = 10 << 20;
    let err = try_pull(&b, &build(vec![huge, artifact(&bin)]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PullError::Rejected(m) if m.contains("over the limit")),
        "{err}"
    );

    let mut bad_name = artifact(&lib);
    bad_name.file = "../../etc/passwd".into();
    let err = try_pull(&b, &build(vec![bad_name])).await.unwrap_err();
    assert!(
        matches!(&err, PullError::Rejected(m) if m.contains("not a package file name")),
        "{err}"
    );

    b.stop.cancel();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let err = try_pull(&b, &build(vec![artifact(&lib), artifact(&bin)]))
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Unavailable(_)), "{err}");
}

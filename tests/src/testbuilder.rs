//! A builder stand-in for testing the master alone: a real HTTPS server with a farm
//! certificate that publishes a builder state the test writes, and serves the artifacts and
//! logs the test puts there.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::response::Response;
use axum::routing::get;
use quarters_common::api::v1::{
    Artifact, Build, BuildOutcome, BuilderState, Claim, ClaimPhase, PeerStatus, PeerView, Role,
};
use quarters_common::files::{is_plain_name, serve_file};
use quarters_common::state::StatePublisher;
use quarters_common::tls::{Identity, TlsFiles};
use quarters_common::{NodeName, pki};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use url::Url;

/// A finished build of `pkgbase` at `version` for this machine's architecture, as a builder
/// would show it; the test adds artifacts or logs.
pub fn finished_build(id: &str, pkgbase: &str, version: &str, outcome: BuildOutcome) -> Build {
    Build {
        id: id.into(),
        pkgbase: pkgbase.into(),
        version: version.into(),
        arch: std::env::consts::ARCH.into(),
        outcome,
        started_at: time::OffsetDateTime::now_utc(),
        finished_at: Some(time::OffsetDateTime::now_utc()),
        logs: vec![],
        artifacts: vec![],
        wall_ms: Some(1000),
        cpu_ms: Some(900),
        peak_memory_kb: Some(1000),
        purpose: Default::default(),
    }
}

/// A build of `pkgbase` that failed in `stage` with `reason`.
pub fn failed_build(id: &str, pkgbase: &str, stage: &str, reason: &str) -> Build {
    finished_build(
        id,
        pkgbase,
        "1.0-1",
        BuildOutcome::Failed {
            stage: stage.into(),
            reason: reason.into(),
        },
    )
}

/// A claim renewed now with a lease of five minutes, under the master's default maximum.
pub fn claim_on(
    pkgbase: &str,
    version: &str,
    arch: &str,
    phase: ClaimPhase,
    build: Option<&str>,
) -> Claim {
    let now = time::OffsetDateTime::now_utc();
    Claim {
        pkgbase: pkgbase.into(),
        version: version.into(),
        arch: arch.into(),
        phase,
        renewed_at: now,
        lease_until: now + time::Duration::minutes(5),
        build: build.map(Into::into),
        purpose: Default::default(),
    }
}

pub struct TestBuilder {
    pub name: NodeName,
    pub url: Url,
    files: PathBuf,
    serving: Arc<Serving>,
    publisher: StatePublisher,
    state: Mutex<BuilderState>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

/// How the test builder serves files.
struct Serving {
    files: PathBuf,
    /// Delay between 16 KiB chunks of an artifact or a log, to make a pull slow.
    throttle: Mutex<Option<std::time::Duration>>,
    /// Fires when an artifact download starts.
    pull_started: tokio::sync::Notify,
}

async fn file(
    State(serving): State<Arc<Serving>>,
    UrlPath((id, kind, name)): UrlPath<(String, String, String)>,
) -> Response {
    use axum::response::IntoResponse;
    if !is_plain_name(&id) || !is_plain_name(&name) || !(kind == "artifacts" || kind == "logs") {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    let path = serving.files.join(id).join(&kind).join(name);
    if kind == "artifacts" {
        serving.pull_started.notify_waiters();
    }
    {
        let throttle = *serving.throttle.lock().unwrap();
        if let Some(delay) = throttle {
            let Ok(bytes) = std::fs::read(&path) else {
                return axum::http::StatusCode::NOT_FOUND.into_response();
            };
            let len = bytes.len();
            let chunks: Vec<Vec<u8>> = bytes.chunks(16 * 1024).map(<[u8]>::to_vec).collect();
            let stream =
                futures_util::stream::unfold(chunks.into_iter(), move |mut rest| async move {
                    let chunk = rest.next()?;
                    tokio::time::sleep(delay).await;
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), rest))
                });
            return (
                [(axum::http::header::CONTENT_LENGTH, len)],
                axum::body::Body::from_stream(stream),
            )
                .into_response();
        }
    }
    serve_file(&path, "application/octet-stream").await
}

impl TestBuilder {
    /// Starts a builder called `name`, with a certificate from the CA in `ca_dir`.
    pub async fn start(ca_dir: &Path, name: &str, master: &Url) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node = NodeName::new(name).unwrap();
        let certs =
            pki::issue_cert(ca_dir, dir.path(), &node, &["127.0.0.1".into()], false).unwrap();
        let identity = Identity::load(
            &node,
            &TlsFiles {
                ca: ca_dir.join(pki::CA_CERT_FILE),
                cert: certs.cert,
                key: certs.key,
            },
        )
        .unwrap();
        let files = dir.path().join("files");
        std::fs::create_dir_all(&files).unwrap();
        let serving = Arc::new(Serving {
            files: files.clone(),
            throttle: Mutex::new(None),
            pull_started: tokio::sync::Notify::new(),
        });
        let state = BuilderState {
            arch: vec![std::env::consts::ARCH.to_owned()],
            slots: 1,
            master: PeerView {
                name: "master".into(),
                url: master.clone(),
                status: PeerStatus::Unknown,
                slots: None,
                quarantine: None,
            },
            claims: Vec::new(),
            builds: Vec::new(),
            template: None,
            machine: None,
        };
        let publisher = StatePublisher::new(node.clone(), Role::Builder, &state, 0);
        let app = publisher.routes().merge(
            Router::new()
                .route("/v1/builds/{id}/{kind}/{name}", get(file))
                .with_state(serving.clone()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: Url = format!(
            "https://127.0.0.1:{}/",
            listener.local_addr().unwrap().port()
        )
        .parse()
        .unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(quarters_common::serve::serve(
            listener,
            identity.server_config(),
            app,
            quarters_common::serve::Limits::default(),
            async move { token.cancelled().await },
        ));
        TestBuilder {
            name: node,
            url,
            files,
            serving,
            publisher,
            state: Mutex::new(state),
            stop,
            _dir: dir,
        }
    }

    /// Puts `package` among the artifacts of build `id` and describes it; the sha256 and size
    /// are those of the file.
    pub fn artifact(&self, id: &str, package: &Path) -> Artifact {
        let dir = self.files.join(id).join("artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let file = package.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(package, dir.join(&file)).unwrap();
        let bytes = std::fs::read(package).unwrap();
        Artifact {
            file,
            sha256: Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            size: bytes.len() as u64,
        }
    }

    /// Puts a log for `stage` of build `id`.
    pub fn log(&self, id: &str, stage: &str, text: &str) {
        let dir = self.files.join(id).join("logs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(stage), text).unwrap();
    }

    /// A succeeded build `id` of `pkgbase` at `version` whose one artifact is `package`, served
    /// by this builder; not published yet.
    pub fn succeeded(&self, id: &str, pkgbase: &str, version: &str, package: &Path) -> Build {
        let mut build = finished_build(id, pkgbase, version, BuildOutcome::Succeeded);
        build.artifacts = vec![self.artifact(id, package)];
        build
    }

    /// Publishes `build` (replacing a build with the same id) with the claim an honest builder
    /// shows for it: done or failed, naming the build, its lease renewed now.
    pub fn show(&self, build: Build) {
        let phase = match build.outcome {
            BuildOutcome::Running { .. } => ClaimPhase::Committed,
            BuildOutcome::Succeeded => ClaimPhase::Done,
            BuildOutcome::Failed { .. } => ClaimPhase::Failed,
        };
        let claim = Claim {
            purpose: build.purpose,
            ..claim_on(
                &build.pkgbase,
                &build.version,
                &build.arch,
                phase,
                Some(&build.id),
            )
        };
        let mut state = self.state.lock().unwrap();
        // One claim per piece of work: a verification's claim stands beside a build's.
        state.claims.retain(|c| {
            (&c.pkgbase, &c.version, &c.arch, c.purpose)
                != (&claim.pkgbase, &claim.version, &claim.arch, claim.purpose)
        });
        state.claims.push(claim);
        state.builds.retain(|b| b.id != build.id);
        state.builds.push(build);
        self.publisher.publish(&*state);
    }

    /// Publishes `build` with no claim for it, as a builder that never claimed the package.
    pub fn show_unclaimed(&self, build: Build) {
        let mut state = self.state.lock().unwrap();
        state.builds.retain(|b| b.id != build.id);
        state.builds.push(build);
        self.publisher.publish(&*state);
    }

    /// Publishes `claim` beside the others.
    pub fn show_claim(&self, claim: Claim) {
        let mut state = self.state.lock().unwrap();
        state.claims.push(claim);
        self.publisher.publish(&*state);
    }

    /// Changes the published state as `change` says, whatever it makes of it.
    pub fn edit(&self, change: impl FnOnce(&mut BuilderState)) {
        let mut state = self.state.lock().unwrap();
        change(&mut state);
        self.publisher.publish(&*state);
    }

    /// Serves artifacts in 16 KiB chunks `delay` apart (or at full speed with `None`).
    pub fn throttle(&self, delay: Option<std::time::Duration>) {
        *self.serving.throttle.lock().unwrap() = delay;
    }

    /// Completes when the next artifact download after this call starts. Not an `async fn`:
    /// the waiter must exist from the call on (tokio counts a `Notified` from its creation),
    /// or a pull that starts before the future is first polled goes unseen.
    pub fn pull_started(&self) -> tokio::sync::futures::Notified<'_> {
        self.serving.pull_started.notified()
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for TestBuilder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

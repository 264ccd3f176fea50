//! How a build runs: `sim` (a timed stand-in that makes small valid packages) or `chroot`
//! (makepkg in a fresh root). Both fetch and check the master's source tarball first.

mod capped_log;
pub mod chroot;
pub mod sim;
mod stage;

pub use stage::Stage;

/// The driver a builder runs its builds with.
#[derive(Clone, Debug)]
pub enum Driver {
    Sim(sim::SimDriver),
    Chroot(Box<chroot::ChrootDriver>),
}

impl Driver {
    /// Runs `job`, calling `stage` as each stage begins. Once `stop` is cancelled (the builder
    /// is stopping), the build is abandoned, its root cleaned up, and handed back.
    pub async fn build(
        &self,
        job: &Job,
        master: &PeerClient,
        stage: &(dyn Fn(Stage) + Send + Sync),
        stop: &CancellationToken,
    ) -> Outcome {
        match self {
            Driver::Sim(d) => {
                tokio::select! {
                    outcome = d.build(job, master, stage) => outcome,
                    () = stop.cancelled() => Outcome::HandBack { reason: STOPPING.to_owned() },
                }
            }
            Driver::Chroot(d) => d.build(job, master, stage, stop).await,
        }
    }
}

use std::path::PathBuf;

use quarters_common::api::v1::ReadyPackage;
use tokio_util::sync::CancellationToken;

/// Why builds are handed back when the builder stops.
pub const STOPPING: &str = "the builder is stopping";
use quarters_common::client::PeerClient;
use tokio::io::AsyncWriteExt;

/// One build to run.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    pub package: ReadyPackage,
    /// The build's own directory.
    pub dir: PathBuf,
    pub logs: PathBuf,
    /// Where the packages must end up.
    pub artifacts: PathBuf,
}

/// How a build ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its packages are in the build's artifacts directory.
    Built { measured: Measured },
    /// `stage` failed: the package's fault, published with the reason.
    Failed { stage: Stage, reason: String },
    /// It could not be done for reasons outside the package (the master unreachable, say):
    /// the package is handed back, not failed.
    HandBack { reason: String },
}

impl Outcome {
    pub fn failed(stage: Stage, reason: impl Into<String>) -> Self {
        Outcome::Failed {
            stage,
            reason: reason.into(),
        }
    }
}

/// What a build used, where the driver measures it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Measured {
    pub cpu_ms: Option<u64>,
    pub peak_memory_kb: Option<u64>,
}

/// Appends a line to a stage's log.
/// The `PACKAGER` a build runs with: the one the master published for it (its checks expect
/// that very value), unless it could break makepkg's environment.
pub fn packager(job: &Job) -> String {
    job.package
        .packager
        .clone()
        .filter(|p| !p.is_empty() && !p.chars().any(char::is_control))
        .unwrap_or_else(|| quarters_common::api::v1::FARM_PACKAGER.to_owned())
}

pub async fn log(job: &Job, stage: Stage, line: &str) {
    let path = job.logs.join(format!("{stage}.log"));
    if let Ok(mut f) = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
    {
        let _ = f.write_all(format!("{line}\n").as_bytes()).await;
    }
}

/// Why the source could not be had.
#[derive(Debug)]
pub enum FetchError {
    /// The master could not be reached: not the package's fault.
    Unavailable(String),
    /// What came is not what was announced.
    Wrong(String),
}

/// How often reaching the master is tried before a build is handed back, and the first pause
/// between tries (it doubles).
pub const TRIES: u32 = 4;
pub const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// The first half of every driver's first stage: downloads the master's source tarball for
/// `job` to `dest` (trying again while the master is unreachable) and checks its sha256.
pub async fn fetch_source(
    job: &Job,
    master: &PeerClient,
    dest: &std::path::Path,
) -> Result<(), FetchError> {
    use quarters_common::client::PeerError;
    let url = &job.package.source.url;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut pause = FIRST_PAUSE;
    let mut tries = 0;
    let (sha256, size) = loop {
        let _ = tokio::fs::remove_file(dest).await;
        match master.download(&path, dest, 1 << 30).await {
            Ok(done) => break done,
            Err(e @ (PeerError::Unreachable { .. } | PeerError::Status { .. })) => {
                tries += 1;
                if tries >= TRIES {
                    return Err(FetchError::Unavailable(format!(
                        "downloading the source: {e}"
                    )));
                }
                log(
                    job,
                    Stage::Prepare,
                    &format!("{e}; trying again in {pause:?}"),
                )
                .await;
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => return Err(FetchError::Wrong(format!("downloading the source: {e}"))),
        }
    };
    if sha256 != job.package.source.sha256 {
        return Err(FetchError::Wrong(format!(
            "the source tarball has sha256 {sha256}, but the master announced {}",
            job.package.source.sha256
        )));
    }
    log(
        job,
        Stage::Prepare,
        &format!("source {url}: {size} bytes, sha256 {sha256} as announced"),
    )
    .await;
    Ok(())
}

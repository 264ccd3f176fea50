//! Pulling a finished build from a builder: every artifact streamed to disk under a size limit,
//! its sha256 checked against the builder's announcement, read as pacman reads it, and checked
//! as a distribution's repository tooling (Arch's dbscripts) checks a package before it enters
//! a repository. Only then may it enter a repository.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use quarters_common::Arch;
use quarters_common::api::v1::{BUILDDIR, artifact_path, log_path};
use quarters_common::client::{PeerClient, PeerError};
use quarters_common::peer_input::CheckedBuild;

use crate::plan::Pin;
use crate::repo::package::{
    ArchiveError, FileFacts, InspectError, Inspected, Limits, inspect, with_pgpsig,
};
use crate::signing::{SignError, Signer};
pub use crate::verdict::Blame;

/// What the build must contain, as the master handed it out.
#[derive(Clone, Copy, Debug)]
pub struct Expectation<'a> {
    pub pkgbase: &'a str,
    pub version: &'a str,
    /// The build's architecture (a machine architecture, or `any`).
    pub arch: &'a Arch,
    pub pkgnames: &'a [String],
    /// The packager the master published for the build.
    pub packager: &'a str,
    /// The sha256 of the PKGBUILD in the source tarball the master handed out, once known.
    pub pkgbuild_sha256: Option<&'a str>,
    /// The dependencies the build waited for, at the versions it must have been built against.
    pub pins: &'a [Pin],
}

/// Limits and cancellation for pulls.
#[derive(Clone, Debug)]
pub struct PullLimits {
    /// Bytes of one artifact.
    pub max_bytes: u64,
    pub pace: Pace,
    pub archive: Limits,
    /// Set when the master shuts down: reading a package stops within moments.
    pub cancel: Arc<AtomicBool>,
}

/// How fast a builder must hand over what it announced. A build is pulled while its builder
/// holds the package, so a builder that sends a byte now and then would hold it for ever:
/// every transfer gets a deadline from its size, and one build's transfers a total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Bytes per second a transfer must keep up on average.
    pub min_rate: u64,
    /// Time every transfer gets on top of its size's, to connect and start.
    pub grace: Duration,
    /// The most one build's transfers may take together, however large they are announced.
    pub max_time: Duration,
}

impl Pace {
    /// The time a transfer of `bytes` may take.
    fn allowance(&self, bytes: u64) -> Duration {
        self.grace + Duration::from_secs(bytes / self.min_rate.max(1))
    }
}

/// What is left of one build's transfer time.
#[derive(Debug)]
struct Budget {
    pace: Pace,
    left: Duration,
}

impl Budget {
    fn new(pace: Pace) -> Self {
        Self::with_total(pace, pace.max_time)
    }

    fn with_total(pace: Pace, total: Duration) -> Self {
        Budget {
            pace,
            left: total.min(pace.max_time),
        }
    }

    /// Runs one transfer of at most `bytes` under its deadline, and counts its time.
    async fn transfer<T>(
        &mut self,
        bytes: u64,
        run: impl AsyncFnOnce(tokio::time::Instant) -> T,
    ) -> T {
        let started = tokio::time::Instant::now();
        let result = run(started + self.pace.allowance(bytes).min(self.left)).await;
        self.left = self.left.saturating_sub(started.elapsed());
        result
    }
}

/// A verified package file, in the staging directory.
#[derive(Clone, Debug)]
pub struct Pulled {
    pub filename: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub package: Inspected,
    /// The farm's detached signature beside it, once signed.
    pub signature: Option<PathBuf>,
}

/// A build that must never enter a repository, with whose fault it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub blame: Blame,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The build is wrong; it must never enter a repository.
    #[error("{}", .0.reason)]
    Refused(Refusal),
    /// The builder could not be read now, or the master is stopping; try again later.
    #[error("{0}")]
    Unavailable(String),
}

fn refuse<T>(blame: Blame, reason: String) -> Result<T, PullError> {
    Err(PullError::Refused(Refusal { blame, reason }))
}

fn from_peer(e: PeerError) -> PullError {
    match e {
        PeerError::Unreachable { .. } => PullError::Unavailable(e.to_string()),
        PeerError::Status { status, .. } if status.is_server_error() => {
            PullError::Unavailable(e.to_string())
        }
        other => PullError::Refused(Refusal {
            blame: Blame::Builder,
            reason: other.to_string(),
        }),
    }
}

/// Pulls and verifies every artifact of `build` into `staging`, which must exist and be empty.
pub async fn pull(
    client: &PeerClient,
    build: &CheckedBuild,
    expect: Expectation<'_>,
    staging: &Path,
    limits: &PullLimits,
) -> Result<Vec<Pulled>, PullError> {
    use Blame::Builder;
    if build.artifacts.is_empty() {
        return refuse(Builder, "the build announces no packages".to_owned());
    }
    let max_bytes = limits.max_bytes;
    let mut budget = Budget::new(limits.pace);
    let mut pulled: Vec<Pulled> = Vec::new();
    for artifact in &build.artifacts {
        let file = artifact.file.as_str();
        if alpm_types::PackageFileName::from_str(file).is_err() {
            return refuse(Builder, format!("{file:?} is not a package file name"));
        }
        if artifact.size > max_bytes {
            return refuse(
                Builder,
                format!(
                    "{file} is announced at {} bytes, over the limit of {max_bytes}",
                    artifact.size
                ),
            );
        }
        let dest = staging.join(file);
        let (sha256, size) = budget
            .transfer(artifact.size, async |deadline| {
                client
                    .download_until(
                        &artifact_path(build.id.as_str(), file),
                        &dest,
                        artifact.size,
                        Some(deadline),
                    )
                    .await
            })
            .await
            .map_err(from_peer)?;
        if artifact.sha256 != *sha256 || size != artifact.size {
            return refuse(
                Builder,
                format!(
                    "{file}: sha256 {sha256} ({size} bytes) does not match the announced {} ({} bytes)",
                    artifact.sha256, artifact.size
                ),
            );
        }
        let package = read_package(&dest, file, &sha256, size, limits).await?;
        check(&package, file, expect)?;
        if pulled
            .iter()
            .any(|p| p.package.pkginfo.pkgname == package.pkginfo.pkgname)
        {
            return refuse(
                Builder,
                format!("{file}: a second package named {}", package.pkginfo.pkgname),
            );
        }
        pulled.push(Pulled {
            filename: file.to_owned(),
            path: dest,
            sha256,
            size,
            package,
            signature: None,
        });
    }
    let missing: Vec<&str> = expect
        .pkgnames
        .iter()
        .filter(|n| !pulled.iter().any(|p| &p.package.pkginfo.pkgname == *n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return refuse(
            Blame::Package,
            format!("the build lacks {}", missing.join(", ")),
        );
    }
    Ok(pulled)
}

/// Has every pulled package signed by the farm's key: the signature goes beside the file, and
/// into its `desc` as `%PGPSIG%`. A signer that cannot sign now postpones the build's
/// acceptance (nothing is lost); one that refuses the file refuses the build.
pub async fn sign(signer: &Signer, pulled: Vec<Pulled>) -> Result<Vec<Pulled>, PullError> {
    let signer = signer.clone();
    let signed = tokio::task::spawn_blocking(move || {
        pulled
            .into_iter()
            .map(|mut p| {
                let signature = signer.sign_file(&p.path).map_err(|e| match e {
                    // The signer will not sign this file, now or later (over its size limit).
                    SignError::Refused { .. } => PullError::Refused(Refusal {
                        blame: Blame::Package,
                        reason: format!("{}: {e}", p.filename),
                    }),
                    other => PullError::Unavailable(format!("signing: {other}")),
                })?;
                let path = p.path.with_file_name(format!("{}.sig", p.filename));
                std::fs::write(&path, signature.as_bytes()).map_err(|e| {
                    PullError::Unavailable(format!("signing: {}: {e}", path.display()))
                })?;
                p.package.desc = with_pgpsig(&p.package.desc, &signature.to_base64());
                p.signature = Some(path);
                Ok(p)
            })
            .collect::<Result<Vec<_>, PullError>>()
    })
    .await;
    match signed {
        Ok(result) => result,
        Err(e) => Err(PullError::Unavailable(format!("signing: {e}"))),
    }
}

async fn read_package(
    path: &Path,
    file: &str,
    sha256: &str,
    size: u64,
    limits: &PullLimits,
) -> Result<Inspected, PullError> {
    let (path, name, sha) = (path.to_owned(), file.to_owned(), sha256.to_owned());
    let (archive, cancel) = (limits.archive, limits.cancel.clone());
    let result = tokio::task::spawn_blocking(move || {
        let facts = FileFacts {
            file_name: &name,
            size,
            sha256: &sha,
            pgpsig: None,
        };
        inspect(&path, facts, &archive, &cancel)
    })
    .await;
    match result {
        Ok(Ok(package)) => Ok(package),
        Ok(Err(InspectError::Archive(ArchiveError::Cancelled))) => {
            Err(PullError::Unavailable("the master is stopping".to_owned()))
        }
        Ok(Err(e)) => refuse(Blame::Builder, format!("{file}: {e}")),
        Err(e) => Err(PullError::Unavailable(format!("inspecting {file}: {e}"))),
    }
}

/// Compression suffixes of package files that the master can read (makepkg's `PKGEXT`).
const EXTENSIONS: &[&str] = &["", ".gz", ".bz2", ".xz", ".zst"];

fn check(package: &Inspected, file: &str, expect: Expectation<'_>) -> Result<(), PullError> {
    use Blame::{Builder, Package};
    let info = &package.pkginfo;
    let wrong = |blame, what: &str, got: &str, want: &str| {
        refuse(
            blame,
            format!("{file}: its .PKGINFO names {what} {got:?}, but {want:?} was claimed"),
        )
    };
    if info.pkgbase != expect.pkgbase {
        return wrong(Package, "pkgbase", &info.pkgbase, expect.pkgbase);
    }
    if info.version != expect.version {
        return wrong(Package, "version", &info.version, expect.version);
    }
    // makepkg's `options=(debug)` adds `PKGBASE-debug`, which no .SRCINFO lists.
    let debug = format!("{}-debug", expect.pkgbase);
    if !expect.pkgnames.contains(&info.pkgname) && info.pkgname != debug {
        return refuse(
            Package,
            format!(
                "{file}: its .PKGINFO names pkgname {:?}, which {} does not build ({})",
                info.pkgname,
                expect.pkgbase,
                expect.pkgnames.join(", ")
            ),
        );
    }
    // A machine build may contain `any` packages; an `any` build contains nothing else.
    let fits = Arch::parse(&info.arch)
        .is_ok_and(|a| a == *expect.arch || (a.is_any() && !expect.arch.is_any()));
    if !fits {
        return wrong(Package, "arch", &info.arch, expect.arch.as_str());
    }
    // dbscripts' checks, where they apply to a farm. makepkg names the file from .PKGINFO.
    let stem = format!("{}-{}-{}.pkg.tar", info.pkgname, info.version, info.arch);
    let named_right = file
        .strip_prefix(&stem)
        .is_some_and(|ext| EXTENSIONS.contains(&ext));
    if !named_right {
        return refuse(
            Builder,
            format!("{file}: the file name check failed: its .PKGINFO makes it {stem}.*"),
        );
    }
    let Some(buildinfo) = &package.buildinfo else {
        return refuse(
            Builder,
            format!("{file}: the .BUILDINFO check failed: the package has none"),
        );
    };
    for (member, packager) in [
        (".PKGINFO", &info.packager),
        (".BUILDINFO", &buildinfo.packager),
    ] {
        if packager.as_deref() != Some(expect.packager) {
            return refuse(
                Builder,
                format!(
                    "{file}: the packager check failed: {member} says {:?}, the master published {:?}",
                    packager.as_deref().unwrap_or(""),
                    expect.packager
                ),
            );
        }
    }
    if buildinfo.builddir.as_deref() != Some(BUILDDIR) {
        return refuse(
            Builder,
            format!(
                "{file}: the clean-root check failed: .BUILDINFO says builddir {:?}, builders build in {BUILDDIR:?}",
                buildinfo.builddir.as_deref().unwrap_or("")
            ),
        );
    }
    // A build against an older version of what it waited for is not the rebuild the sources
    // asked for. A builder that installs what the master's build repository holds cannot make
    // one, unless that dependency was built again while this build ran.
    for pin in expect.pins {
        if let Some(other) = buildinfo
            .installed
            .iter()
            .find(|i| pin.pkgnames.contains(&i.name) && i.version != pin.version)
        {
            return refuse(
                Builder,
                format!(
                    "{file}: the dependency check failed: .BUILDINFO says {} {} was installed, the master's plan named {} {} (of {})",
                    other.name, other.version, other.name, pin.version, pin.pkgbase
                ),
            );
        }
    }
    if let Some(want) = expect.pkgbuild_sha256
        && buildinfo.pkgbuild_sha256sum.as_deref() != Some(want)
    {
        return refuse(
            Builder,
            format!(
                "{file}: the PKGBUILD check failed: .BUILDINFO says pkgbuild_sha256sum {:?}, the master handed out {want}",
                buildinfo.pkgbuild_sha256sum.as_deref().unwrap_or("")
            ),
        );
    }
    Ok(())
}

/// Copies the logs of a failed build into `dir`, each at most `max_bytes`; returns the stages
/// whose logs could be read.
///
/// A log's size is not announced: the logs together may take what one of `max_bytes` would at
/// `pace`. An honest build's logs are far smaller; a hostile builder's, however many, hold its
/// package no longer than that.
pub async fn pull_logs(
    client: &PeerClient,
    build: &CheckedBuild,
    dir: &Path,
    max_bytes: u64,
    pace: Pace,
) -> Vec<String> {
    let _ = tokio::fs::create_dir_all(dir).await;
    let mut budget = Budget::with_total(pace, pace.allowance(max_bytes));
    let mut got = Vec::new();
    for stage in &build.logs {
        let dest = crate::store::log_file(dir, stage.as_str());
        let _ = tokio::fs::remove_file(&dest).await;
        let path = log_path(build.id.as_str(), stage.as_str());
        let fetched = budget
            .transfer(max_bytes, async |deadline| {
                client
                    .download_until(&path, &dest, max_bytes, Some(deadline))
                    .await
            })
            .await;
        match fetched {
            Ok(_) => got.push(stage.to_string()),
            Err(e) => tracing::warn!("log {stage} of {}: {e}", build.id),
        }
    }
    got
}

#[cfg(test)]
mod tests;

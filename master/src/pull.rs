//! Pulling a finished build from a builder: every artifact streamed to disk under a size limit,
//! its sha256 checked against the builder's announcement, its .PKGINFO checked against what
//! was claimed, and every package of the build present. Only then may it enter a repository.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use quarters_common::api::v1::{Build, artifact_path, log_path};
use quarters_common::client::{PeerClient, PeerError};

use crate::repo::package::{Inspected, inspect};

/// What the build must contain.
#[derive(Clone, Copy, Debug)]
pub struct Expectation<'a> {
    pub pkgbase: &'a str,
    pub version: &'a str,
    /// The build's architecture (a machine architecture, or `any`).
    pub arch: &'a str,
    pub pkgnames: &'a [String],
}

/// A verified package file, in the staging directory.
#[derive(Clone, Debug)]
pub struct Pulled {
    pub filename: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub package: Inspected,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The build is wrong; it must never enter a repository.
    #[error("{0}")]
    Rejected(String),
    /// The builder could not be read now; try again later.
    #[error("{0}")]
    Unavailable(String),
}

fn from_peer(e: PeerError) -> PullError {
    match e {
        PeerError::Unreachable { .. } => PullError::Unavailable(e.to_string()),
        PeerError::Status { status, .. } if status.is_server_error() => {
            PullError::Unavailable(e.to_string())
        }
        other => PullError::Rejected(other.to_string()),
    }
}

/// Pulls and verifies every artifact of `build` into `staging`, which must exist and be empty.
pub async fn pull(
    client: &PeerClient,
    build: &Build,
    expect: Expectation<'_>,
    staging: &Path,
    max_bytes: u64,
) -> Result<Vec<Pulled>, PullError> {
    let reject = |m: String| Err(PullError::Rejected(m));
    if build.artifacts.is_empty() {
        return reject("the build announces no packages".to_owned());
    }
    let mut pulled: Vec<Pulled> = Vec::new();
    for artifact in &build.artifacts {
        let file = &artifact.file;
        if file.contains('/') || alpm_types::PackageFileName::from_str(file).is_err() {
            return reject(format!("{file:?} is not a package file name"));
        }
        if artifact.size > max_bytes {
            return reject(format!(
                "{file} is announced at {} bytes, over the limit of {max_bytes}",
                artifact.size
            ));
        }
        let dest = staging.join(file);
        let (sha256, size) = client
            .download(
                &artifact_path(&build.id, file),
                &dest,
                artifact.size.min(max_bytes),
            )
            .await
            .map_err(from_peer)?;
        if sha256 != artifact.sha256 || size != artifact.size {
            return reject(format!(
                "{file}: sha256 {sha256} ({size} bytes) does not match the announced {} ({} bytes)",
                artifact.sha256, artifact.size
            ));
        }
        let path = dest.clone();
        let sha = sha256.clone();
        let package = tokio::task::spawn_blocking(move || inspect(&path, &sha, size))
            .await
            .map_err(|e| PullError::Unavailable(format!("inspecting {file}: {e}")))?
            .map_err(|e| PullError::Rejected(format!("{file}: {e}")))?;
        check(&package, file, expect)?;
        if pulled.iter().any(|p| p.package.pkgname == package.pkgname) {
            return reject(format!(
                "{file}: a second package named {}",
                package.pkgname
            ));
        }
        pulled.push(Pulled {
            filename: file.clone(),
            path: dest,
            sha256,
            size,
            package,
        });
    }
    let missing: Vec<&str> = expect
        .pkgnames
        .iter()
        .filter(|n| !pulled.iter().any(|p| &p.package.pkgname == *n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return reject(format!("the build lacks {}", missing.join(", ")));
    }
    Ok(pulled)
}

fn check(package: &Inspected, file: &str, expect: Expectation<'_>) -> Result<(), PullError> {
    let wrong = |what: &str, got: &str, want: &str| {
        Err(PullError::Rejected(format!(
            "{file}: its .PKGINFO names {what} {got:?}, but {want:?} was claimed"
        )))
    };
    if package.pkgbase != expect.pkgbase {
        return wrong("pkgbase", &package.pkgbase, expect.pkgbase);
    }
    if package.version != expect.version {
        return wrong("version", &package.version, expect.version);
    }
    if !expect.pkgnames.contains(&package.pkgname) {
        return Err(PullError::Rejected(format!(
            "{file}: its .PKGINFO names pkgname {:?}, which {} does not build ({})",
            package.pkgname,
            expect.pkgbase,
            expect.pkgnames.join(", ")
        )));
    }
    // A machine build may contain `any` packages; an `any` build contains nothing else.
    if package.arch != expect.arch && !(package.arch == "any" && expect.arch != "any") {
        return wrong("arch", &package.arch, expect.arch);
    }
    Ok(())
}

/// Copies the logs of a failed build into `dir`, each at most `max_bytes`; returns the stages
/// whose logs could be read.
pub async fn pull_logs(
    client: &PeerClient,
    build: &Build,
    dir: &Path,
    max_bytes: u64,
) -> Vec<String> {
    let _ = tokio::fs::create_dir_all(dir).await;
    let mut got = Vec::new();
    for stage in &build.logs {
        if stage.is_empty() || stage.contains('/') || stage.starts_with('.') {
            continue;
        }
        let dest = dir.join(format!("{stage}.log"));
        let _ = tokio::fs::remove_file(&dest).await;
        match client
            .download(&log_path(&build.id, stage), &dest, max_bytes)
            .await
        {
            Ok(_) => got.push(stage.clone()),
            Err(e) => tracing::warn!("log {stage} of {}: {e}", build.id),
        }
    }
    got
}

#[cfg(test)]
mod tests;

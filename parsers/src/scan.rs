//! Scanning a source: listings become package metadata, and only packages whose content id
//! changed are read and parsed again.
//!
//! The cache is keyed by content id (a git tree id, an SVN revision, a digest of CVS file
//! revisions), never by modification time, so it can neither miss a change nor go stale the
//! way pbulk's `reuse_scan_results` can. It persists across restarts as one JSON file.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::evaluate::{self, Evaluation, Observer};
use crate::meta::PkgBase;
use crate::printsrcinfo::{self, EvalError};
use crate::source::{Entry, Files, Revision, Source, SourceError};
use crate::tarball;

/// Why a package has no metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PackageError {
    /// The package's own files are wrong (malformed .SRCINFO, a PKGBUILD that does not
    /// evaluate, a pkgbase that does not match its directory). Kept until its content changes.
    #[error("{0}")]
    Metadata(String),
    /// Reading the package failed for a reason outside it (the repository vanished, a client
    /// failed, no sandbox). Tried again at the next poll.
    #[error("{0}")]
    Source(String),
}

/// A package as the last poll left it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Scanned {
    pub content_id: String,
    pub result: Result<PkgBase, PackageError>,
    /// The `.SRCINFO` made by evaluating the PKGBUILD, for a package that has none: it goes
    /// into the package's source tarball, so that builders read the very metadata the master
    /// planned with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_srcinfo: Option<String>,
}

/// A source tarball as made for builders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MadeTarball {
    pub sha256: String,
    /// The sha256 of its PKGBUILD, as makepkg records it in `.BUILDINFO`.
    pub pkgbuild_sha256: Option<String>,
}

/// What one poll did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollReport {
    /// The revision the packages now reflect.
    pub revision: Option<Revision>,
    /// Package paths read and parsed by this poll.
    pub parsed: Vec<String>,
    /// Package paths gone since the previous poll.
    pub removed: Vec<String>,
}

impl PollReport {
    pub fn changed(&self) -> bool {
        !self.parsed.is_empty() || !self.removed.is_empty()
    }
}

const CACHE_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize, Default)]
struct CacheFile {
    format: u32,
    revision: Option<Revision>,
    packages: BTreeMap<String, Scanned>,
}

/// A source with its scan cache.
pub struct Scanner {
    name: String,
    source: Box<dyn Source>,
    revision: Option<Revision>,
    packages: BTreeMap<String, Scanned>,
    cache_path: Option<PathBuf>,
    evaluation: Evaluation,
    /// Told how an evaluation of PKGBUILDs goes.
    progress: Observer,
}

impl std::fmt::Debug for Scanner {
    // By hand, because the progress observer is a closure.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("revision", &self.revision)
            .field("packages", &self.packages.len())
            .field("cache_path", &self.cache_path)
            .field("evaluation", &self.evaluation)
            .finish_non_exhaustive()
    }
}

impl Scanner {
    /// A scanner for `source`, called `name` in messages. With `cache_path`, the cache is loaded
    /// from it now and written back after every poll that changed something; a missing or
    /// unreadable cache only means a cold scan.
    pub fn new(
        name: &str,
        source: Box<dyn Source>,
        cache_path: Option<PathBuf>,
        evaluation: Evaluation,
    ) -> Self {
        let cache = cache_path.as_deref().map(load_cache).unwrap_or_default();
        Scanner {
            name: name.to_owned(),
            source,
            revision: cache.revision,
            packages: cache.packages,
            cache_path,
            evaluation,
            progress: evaluate::log_observer(name),
        }
    }

    /// Tells `observer`, instead of the log, how evaluations of PKGBUILDs go.
    #[must_use]
    pub fn with_progress(mut self, observer: Observer) -> Self {
        self.progress = observer;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn source(&self) -> &dyn Source {
        &*self.source
    }

    /// The revision the packages reflect, once a poll succeeded.
    pub fn revision(&self) -> Option<&Revision> {
        self.revision.as_ref()
    }

    /// Every package directory with its metadata or its error, by path.
    pub fn packages(&self) -> &BTreeMap<String, Scanned> {
        &self.packages
    }

    /// Brings the packages up to the source's newest revision. An error means the source as a
    /// whole could not be listed; the packages then stay as they were.
    pub fn poll(&mut self) -> Result<PollReport, SourceError> {
        let retry = self
            .packages
            .values()
            .any(|p| matches!(p.result, Err(PackageError::Source(_))));
        let known = if retry { None } else { self.revision.clone() };
        let Some(listing) = self.source.list(known.as_ref())? else {
            return Ok(PollReport {
                revision: self.revision.clone(),
                ..PollReport::default()
            });
        };
        let stale: Vec<Entry> = listing
            .entries
            .iter()
            .filter(|e| {
                self.packages.get(&e.path).is_none_or(|p| {
                    p.content_id != e.content_id || matches!(p.result, Err(PackageError::Source(_)))
                })
            })
            .cloned()
            .collect();
        let removed: Vec<String> = {
            let live: std::collections::HashSet<&str> =
                listing.entries.iter().map(|e| e.path.as_str()).collect();
            self.packages
                .keys()
                .filter(|p| !live.contains(p.as_str()))
                .cloned()
                .collect()
        };
        for path in &removed {
            self.packages.remove(path);
        }
        let files = self.source.read(&listing.revision, &stale);
        let mut evaluated = self.evaluate_all(&listing.revision, &stale, &files);
        let mut parsed = Vec::with_capacity(stale.len());
        for ((entry, files), evaluated) in stale.into_iter().zip(files).zip(evaluated.drain(..)) {
            let (result, generated_srcinfo) = self.parse(&entry, files, evaluated);
            if let Err(e) = &result {
                tracing::debug!(source = %self.name, package = %entry.path, "{e}");
            }
            parsed.push(entry.path.clone());
            self.packages.insert(
                entry.path,
                Scanned {
                    content_id: entry.content_id,
                    result,
                    generated_srcinfo,
                },
            );
        }
        self.revision = Some(listing.revision);
        let report = PollReport {
            revision: self.revision.clone(),
            parsed,
            removed,
        };
        if report.changed() || retry || known.is_none() {
            self.save();
        }
        Ok(report)
    }

    /// The package's metadata, and the `.SRCINFO` evaluation made if it had none.
    fn parse(
        &self,
        entry: &Entry,
        files: Result<Files, SourceError>,
        evaluated: Option<Result<String, PackageError>>,
    ) -> (Result<PkgBase, PackageError>, Option<String>) {
        let mut generated = None;
        let result = self.parse_into(entry, files, evaluated, &mut generated);
        let generated = generated.filter(|_| result.is_ok());
        (result, generated)
    }

    fn parse_into(
        &self,
        entry: &Entry,
        files: Result<Files, SourceError>,
        evaluated: Option<Result<String, PackageError>>,
        generated: &mut Option<String>,
    ) -> Result<PkgBase, PackageError> {
        let files = files.map_err(|e| match e {
            SourceError::Package(m) | SourceError::Refused(m) | SourceError::Unavailable(m) => {
                PackageError::Source(m)
            }
        })?;
        let srcinfo = match files.srcinfo {
            Some(text) => text,
            None if !files.has_pkgbuild => {
                return Err(PackageError::Metadata(
                    "neither .SRCINFO nor PKGBUILD in the package directory".to_owned(),
                ));
            }
            None if !self.evaluation.enabled => {
                return Err(PackageError::Metadata(
                    "no .SRCINFO, and evaluating PKGBUILDs is turned off".to_owned(),
                ));
            }
            None => {
                let text = evaluated.unwrap_or_else(|| {
                    Err(PackageError::Source(
                        "the PKGBUILD was not evaluated".to_owned(),
                    ))
                })?;
                *generated = Some(text.clone());
                text
            }
        };
        let mut meta =
            PkgBase::from_srcinfo(&srcinfo).map_err(|e| PackageError::Metadata(e.to_string()))?;
        if meta.pkgbase != entry.dir_name() {
            return Err(PackageError::Metadata(format!(
                "directory {:?} holds pkgbase {:?}; they must be the same",
                entry.dir_name(),
                meta.pkgbase
            )));
        }
        meta.packager = files.packager;
        meta.changed_at = files.changed_at;
        Ok(meta)
    }

    /// Evaluates the PKGBUILDs of the packages among `entries` that have no `.SRCINFO`, on
    /// `evaluation.jobs` threads at once, each in its own sandbox, telling the progress observer
    /// how it goes. One result per entry, `None` where there was nothing to evaluate.
    fn evaluate_all(
        &mut self,
        revision: &Revision,
        entries: &[Entry],
        files: &[Result<Files, SourceError>],
    ) -> Vec<Option<Result<String, PackageError>>> {
        let mut results: Vec<Option<Result<String, PackageError>>> = vec![None; entries.len()];
        if !self.evaluation.enabled {
            return results;
        }
        // Exports come from the source, one at a time; the evaluations run side by side.
        let mut exported = Vec::new();
        for (i, (entry, files)) in entries.iter().zip(files).enumerate() {
            let Ok(files) = files else { continue };
            if files.srcinfo.is_some() || !files.has_pkgbuild {
                continue;
            }
            match self.export_for_evaluation(revision, &entry.path) {
                Ok(dir) => exported.push((i, dir)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let timeout = self.evaluation.timeout;
        let evaluated = evaluate::run_pool(
            &exported,
            self.evaluation.jobs,
            |(_, dir)| evaluate_exported(dir, timeout),
            Result::is_err,
            &self.progress,
        );
        for ((i, _), result) in exported.iter().zip(evaluated) {
            results[*i] = Some(result);
        }
        results
    }

    /// Exports the package at `path` into a scratch directory for `printsrcinfo`.
    fn export_for_evaluation(
        &mut self,
        revision: &Revision,
        path: &str,
    ) -> Result<tempfile::TempDir, PackageError> {
        let tmp = tempfile::tempdir()
            .map_err(|e| PackageError::Source(format!("creating a temporary directory: {e}")))?;
        self.source
            .export(revision, path, &tmp.path().join("pkg"))
            .map_err(|e| PackageError::Source(e.to_string()))?;
        make_world_readable(tmp.path());
        Ok(tmp)
    }

    /// Writes the package at `path` as of `revision` into the new directory `dest`.
    pub fn export(
        &mut self,
        revision: &Revision,
        path: &str,
        dest: &Path,
    ) -> Result<(), SourceError> {
        self.source.export(revision, path, dest)
    }

    /// Writes the package at `path` as of `revision` as a reproducible tarball `out`, with its
    /// files under `prefix/`. A package without `.SRCINFO` gets the one its evaluation made,
    /// if the scan evaluated this very content (`content_id`).
    pub fn tarball(
        &mut self,
        revision: &Revision,
        path: &str,
        content_id: &str,
        prefix: &str,
        out: &Path,
    ) -> Result<MadeTarball, SourceError> {
        let tmp = tempfile::tempdir().map_err(|e| {
            SourceError::Unavailable(format!("creating a temporary directory: {e}"))
        })?;
        let dir = tmp.path().join("export");
        self.source.export(revision, path, &dir)?;
        let written =
            |e: std::io::Error| SourceError::Unavailable(format!("writing {}: {e}", out.display()));
        let srcinfo = dir.join(".SRCINFO");
        if fs::symlink_metadata(&srcinfo).is_err()
            && let Some(text) = self
                .packages
                .get(path)
                .filter(|p| p.content_id == content_id)
                .and_then(|p| p.generated_srcinfo.as_deref())
        {
            fs::write(&srcinfo, text).map_err(written)?;
        }
        let pkgbuild_sha256 = tarball::file_sha256(&dir.join("PKGBUILD")).map_err(written)?;
        let sha256 = tarball::write_tarball(&dir, prefix, out).map_err(written)?;
        Ok(MadeTarball {
            sha256,
            pkgbuild_sha256,
        })
    }

    /// Which packages changed between `since` and the newest revision.
    pub fn changed_since(
        &mut self,
        since: &Revision,
    ) -> Result<(Revision, Vec<String>), SourceError> {
        self.source.changed_since(since)
    }

    /// Bumps the pkgrel of the package at `path` and commits it with `message`.
    pub fn bump_pkgrel(&mut self, path: &str, message: &str) -> Result<Revision, SourceError> {
        self.source.bump_pkgrel(path, message)
    }

    fn save(&self) {
        let Some(path) = &self.cache_path else { return };
        let file = CacheFile {
            format: CACHE_FORMAT,
            revision: self.revision.clone(),
            packages: self.packages.clone(),
        };
        let result = serde_json::to_vec(&file)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let dir = path.parent().unwrap_or(Path::new("."));
                fs::create_dir_all(dir)?;
                let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
                std::io::Write::write_all(&mut tmp, &bytes)?;
                tmp.persist(path).map_err(|e| e.error)?;
                Ok(())
            });
        if let Err(e) = result {
            tracing::warn!(source = %self.name, "cannot write the scan cache {}: {e}", path.display());
        }
    }
}

fn load_cache(path: &Path) -> CacheFile {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return CacheFile::default(),
        Err(e) => {
            tracing::warn!(
                "cannot read the scan cache {}: {e}; scanning cold",
                path.display()
            );
            return CacheFile::default();
        }
    };
    match serde_json::from_slice::<CacheFile>(&bytes) {
        Ok(cache) if cache.format == CACHE_FORMAT => cache,
        Ok(_) => CacheFile::default(),
        Err(e) => {
            tracing::warn!(
                "the scan cache {} is unreadable ({e}); scanning cold",
                path.display()
            );
            CacheFile::default()
        }
    }
}

/// Makes the scratch copy at `path` readable by everyone: a master running as root evaluates
/// as `nobody`, which must be able to read what the sandbox binds. Links are left alone.
fn make_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o755));
        for entry in fs::read_dir(path).into_iter().flatten().flatten() {
            make_world_readable(&entry.path());
        }
    } else if meta.is_file() {
        let mode = meta.permissions().mode() | 0o444;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    }
}

/// Waits before evaluating again when the sandbox could not start makepkg for want of
/// processes: the unprivileged user's process limit is shared with everything else running as
/// that user (builds too), so a busy moment passes.
const SANDBOX_RETRY_MS: [u64; 5] = [200, 500, 1000, 2000, 4000];

/// Evaluates the PKGBUILD exported into `tmp/pkg`, again after a moment if the sandbox lacked
/// processes.
fn evaluate_exported(tmp: &tempfile::TempDir, timeout: Duration) -> Result<String, PackageError> {
    let dir = tmp.path().join("pkg");
    let mut result = printsrcinfo::evaluate(&dir, timeout);
    for wait in SANDBOX_RETRY_MS {
        match &result {
            Err(EvalError::Sandbox(m)) if m.contains("Resource temporarily unavailable") => {
                std::thread::sleep(Duration::from_millis(wait));
                result = printsrcinfo::evaluate(&dir, timeout);
            }
            _ => break,
        }
    }
    result.map_err(|e| match e {
        EvalError::Sandbox(_) => PackageError::Source(format!("no .SRCINFO, and {e}")),
        EvalError::Failed {
            ref stderr_tail, ..
        } => {
            // The end of what makepkg printed goes to the operator's log only: it is the
            // PKGBUILD's to choose, and what is published is the one-line reason.
            tracing::debug!("makepkg --printsrcinfo printed: {stderr_tail}");
            PackageError::Metadata(format!("no .SRCINFO, and {e}"))
        }
        EvalError::TimedOut(_) => PackageError::Metadata(format!("no .SRCINFO, and {e}")),
    })
}

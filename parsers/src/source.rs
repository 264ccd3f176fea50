//! The source abstraction every kind implements.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A point in a source's history, in the kind's own terms: a git commit id, an SVN revision
/// number, a CVS date.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(pub String);

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One package directory in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The package directory relative to the source's root: `foo`, or `devel/foo` for a
    /// two-level layout. Its last component is the pkgbase.
    pub path: String,
    /// Changes whenever anything in the package directory changes: a git tree id, an SVN
    /// last-changed revision, a digest of CVS file revisions.
    pub content_id: String,
}

impl Entry {
    /// The pkgbase this directory should hold: its last path component.
    pub fn dir_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Every package directory of a source at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    pub revision: Revision,
    pub entries: Vec<Entry>,
}

/// The metadata files of one package, as a scan needs them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Files {
    /// `.SRCINFO`, if the package has one.
    pub srcinfo: Option<String>,
    /// Whether a `PKGBUILD` is there.
    pub has_pkgbuild: bool,
    /// Author of the last change to the package: `Name <email>` or a user name.
    pub packager: Option<String>,
    /// When that same change was made, in Unix seconds: what `SOURCE_DATE_EPOCH` is set to
    /// for every build of this version, so that builds on two machines can be the same bytes.
    pub changed_at: Option<i64>,
}

/// The newest change to a package's directory: who made it, and when (Unix seconds, where the
/// source says).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastChange {
    pub author: String,
    pub at: Option<i64>,
}

impl LastChange {
    /// Puts the change into `files`: its author as the packager (none for an empty name),
    /// its time as the time of the last change.
    pub fn fill(&self, files: &mut Files) {
        files.packager = Some(self.author.clone()).filter(|a| !a.is_empty());
        files.changed_at = self.at;
    }
}

/// What went wrong reading a source. The text always names the source and the thing.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source as a whole could not be read (gone, unreachable, not a repository).
    #[error("{0}")]
    Unavailable(String),
    /// One package could not be read; the rest of the source is fine.
    #[error("{0}")]
    Package(String),
    /// The request cannot be answered (unknown revision, unsupported operation).
    #[error("{0}")]
    Refused(String),
}

/// A repository of packaging in one version-control system.
///
/// Implementations may cache between calls (`&mut self`); the scanner owns its source and
/// calls it from one thread at a time.
pub trait Source: Send + std::fmt::Debug {
    /// The kind's name as used in configs: `git`, `svn`, `cvs`.
    fn kind(&self) -> &'static str;

    /// Lists every package directory at the newest revision. Returns `None` when that revision
    /// is `known` and the caller's listing therefore still holds; this must be cheap.
    fn list(&mut self, known: Option<&Revision>) -> Result<Option<Listing>, SourceError>;

    /// Reads the metadata files of `entries` at `revision`, one result per entry, in order.
    fn read(&mut self, revision: &Revision, entries: &[Entry]) -> Vec<Result<Files, SourceError>>;

    /// Which package directories changed between `since` and the newest revision, which it
    /// returns too. Removed packages are included.
    fn changed_since(&mut self, since: &Revision) -> Result<(Revision, Vec<String>), SourceError>;

    /// Writes the package directory `path` (its build files, where a layout has a subdir) at
    /// `revision` into `dest`, which must not exist yet.
    fn export(&mut self, revision: &Revision, path: &str, dest: &Path) -> Result<(), SourceError>;

    /// Bumps the pkgrel of the package at `path` in both PKGBUILD and .SRCINFO, and commits the
    /// change with `message`. Returns the new revision.
    fn bump_pkgrel(&mut self, path: &str, message: &str) -> Result<Revision, SourceError>;

    /// Local paths whose change means the source changed, for a file watcher. Empty for a
    /// remote source.
    fn watch_paths(&self) -> Vec<PathBuf>;
}

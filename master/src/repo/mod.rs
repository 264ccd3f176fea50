//! The build and live repositories: package files in a pool, and pacman databases written from
//! the master's SQLite tables.
//!
//! Layout under the state directory:
//!
//! ```text
//! pool/FILE                          every accepted package file, once
//! pool/FILE.sig                      its detached signature, when the farm signs
//! repos/{build,live}/ARCH/NAME.db    databases; NAME is `<repo_name>-build` or `<repo_name>`
//! repos/{build,live}/ARCH/NAME.db.sig
//! ```
//!
//! `ARCH` is a symlink to the current version of the databases (see [`publish`]).

pub mod dbfile;
pub mod package;
pub mod pool;
pub mod publish;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use quarters_common::Arch;

use crate::db::RepoEntry;
use crate::plan::binaries::RepoKind;
use crate::signing::Signer;

/// A writer's lock for each repository and architecture, which also guards the compressed
/// pieces its databases are assembled from.
type WriteLocks = Mutex<BTreeMap<(RepoKind, String), std::sync::Arc<Mutex<dbfile::Chunks>>>>;

/// The package files one repository lists.
#[derive(Debug, Default)]
struct Listed {
    /// Each package name's file: a name's new version takes its old file off the list.
    by_name: HashMap<String, String>,
    files: HashSet<String>,
}

impl Listed {
    fn put(&mut self, pkgname: &str, filename: &str) {
        if let Some(old) = self.by_name.insert(pkgname.to_owned(), filename.to_owned()) {
            self.files.remove(&old);
        }
        self.files.insert(filename.to_owned());
    }
}

/// How a write changes a repository's entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// The entries given are all there are.
    Whole,
    /// The entries given replace those of the same package names.
    Put,
}

/// How long one read or write of a database's signing request may take.
const DATABASE_SIGNING: std::time::Duration = std::time::Duration::from_secs(5);

/// The repositories on disk.
#[derive(Debug)]
pub struct Repos {
    root: PathBuf,
    name: String,
    /// One writer at a time per repository and architecture.
    locks: WriteLocks,
    /// Package files each repository lists, by package name, for serving. Written after
    /// the databases that list them.
    listed: RwLock<HashMap<(RepoKind, String), Listed>>,
    /// Who signs the databases; `None` publishes them unsigned.
    signer: Option<Signer>,
}

impl Repos {
    /// Repositories under `state_dir`; the live one is called `name`, the build one
    /// `name-build`. With a `signer`, every database is published with its signature.
    pub fn new(state_dir: &Path, name: &str, signer: Option<Signer>) -> io::Result<Self> {
        let root = state_dir.to_owned();
        std::fs::create_dir_all(root.join("pool"))?;
        Ok(Repos {
            root,
            name: name.to_owned(),
            locks: Mutex::new(BTreeMap::new()),
            listed: RwLock::new(HashMap::new()),
            signer,
        })
    }

    /// Who signs what enters the repositories, if the farm signs.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    /// The database name of a repository, as pacman.conf's section calls it.
    pub fn db_name(&self, repo: RepoKind) -> String {
        match repo {
            RepoKind::Live => self.name.clone(),
            RepoKind::Build => format!("{}-build", self.name),
        }
    }

    pub fn pool(&self) -> PathBuf {
        self.root.join("pool")
    }

    /// Where the versions of `repo`'s databases are published.
    fn parent(&self, repo: RepoKind) -> PathBuf {
        let kind = match repo {
            RepoKind::Build => "build",
            RepoKind::Live => "live",
        };
        self.root.join("repos").join(kind)
    }

    fn dir(&self, repo: RepoKind, arch: &str) -> PathBuf {
        self.parent(repo).join(arch)
    }

    /// Rewrites the databases of `repo` for `arch` from `entries` (all entries of the master;
    /// those of other repositories and architectures are ignored).
    pub fn rewrite(&self, repo: RepoKind, arch: &str, entries: &[RepoEntry]) -> io::Result<()> {
        let mine: Vec<&RepoEntry> = entries
            .iter()
            .filter(|e| e.repo == repo && e.arch == arch)
            .collect();
        self.write(repo, arch, &mine, Change::Whole)
    }

    /// Writes the databases of `repo` for `arch` again with `changed` in place of the earlier
    /// entries of the same package names: what an acceptance or a promotion does, at the cost
    /// of the entries changed rather than of the whole repository.
    pub fn update(&self, repo: RepoKind, arch: &str, changed: &[RepoEntry]) -> io::Result<()> {
        let mine: Vec<&RepoEntry> = changed
            .iter()
            .filter(|e| e.repo == repo && e.arch == arch)
            .collect();
        self.write(repo, arch, &mine, Change::Put)
    }

    fn write(
        &self,
        repo: RepoKind,
        arch: &str,
        entries: &[&RepoEntry],
        change: Change,
    ) -> io::Result<()> {
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .expect("no code panics while holding the lock table");
            locks.entry((repo, arch.to_owned())).or_default().clone()
        };
        let mut chunks = lock
            .lock()
            .expect("no code panics while writing a repository");
        let db_entries: Vec<dbfile::DbEntry<'_>> = entries
            .iter()
            .map(|e| dbfile::DbEntry {
                pkgname: &e.pkgname,
                version: &e.version,
                desc: &e.desc,
                files: &e.files,
            })
            .collect();
        match change {
            Change::Whole => chunks.replace_all(&db_entries)?,
            Change::Put => chunks.put(&db_entries)?,
        }
        let dbs = chunks.assemble()?;
        // On the core's thread: a signer that hangs holds the core for this long at most,
        // and the rewrite is tried again at the next turn.
        let signer = self
            .signer
            .as_ref()
            .map(|s| s.with_timeout(DATABASE_SIGNING));
        let signatures = match &signer {
            None => None,
            Some(signer) => Some(publish::Signatures {
                db: signer.sign_bytes(&dbs.db).map_err(io::Error::other)?,
                files: signer.sign_bytes(&dbs.files).map_err(io::Error::other)?,
            }),
        };
        publish::publish(
            &self.parent(repo),
            arch,
            &self.db_name(repo),
            &dbs,
            signatures.as_ref(),
        )?;
        let mut listed = self
            .listed
            .write()
            .expect("no code panics while holding the index");
        let listing = listed.entry((repo, arch.to_owned())).or_default();
        if change == Change::Whole {
            *listing = Listed::default();
        }
        for e in entries {
            listing.put(&e.pkgname, &e.filename);
        }
        Ok(())
    }

    /// Rewrites every repository for every architecture from `entries`: at start-up, so that
    /// the files on disk match what SQLite committed, whatever a crash interrupted.
    pub fn rewrite_all(&self, arches: &[Arch], entries: &[RepoEntry]) -> io::Result<()> {
        for arch in arches {
            for repo in [RepoKind::Build, RepoKind::Live] {
                self.rewrite(repo, arch.as_str(), entries)?;
            }
        }
        Ok(())
    }

    /// Whether `file` is one of the database files of `repo` (or their signatures or previous
    /// versions).
    fn is_database_file(&self, repo: RepoKind, file: &str) -> bool {
        const DATABASES: [&str; 12] = [
            "db",
            "db.tar.gz",
            "files",
            "files.tar.gz",
            "db.old",
            "db.tar.gz.old",
            "files.old",
            "files.tar.gz.old",
            "db.sig",
            "db.tar.gz.sig",
            "files.sig",
            "files.tar.gz.sig",
        ];
        let name = self.db_name(repo);
        file.strip_prefix(name.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|suffix| DATABASES.contains(&suffix))
    }

    /// Where pacman's own downloader is sent for database `file`: the version shown now, so
    /// that the signature it fetches next, beside the URL it was redirected to, is the one
    /// made over the database it got, however many rewrites happen in between (up to
    /// [`publish::KEPT_VERSIONS`]). `None` for other files, and before the first version.
    pub fn redirect(&self, repo: RepoKind, arch: &str, file: &str) -> Option<String> {
        if !self.is_database_file(repo, file) || file.ends_with(".sig") || file.ends_with(".old") {
            return None;
        }
        let version = publish::shown_version(&self.parent(repo), arch)?;
        Some(format!("v{version}/{file}"))
    }

    /// The file to serve for `/repo/{repo}/{arch}/v{version}/{file}`: a database file of that
    /// version, while it is kept.
    pub fn versioned_file(
        &self,
        repo: RepoKind,
        arch: &str,
        version: &str,
        file: &str,
    ) -> Option<PathBuf> {
        let version: u64 = version.strip_prefix('v')?.parse().ok()?;
        if !self.is_database_file(repo, file) {
            return None;
        }
        let path = publish::version_dir(&self.parent(repo), arch, version).join(file);
        path.is_file().then_some(path)
    }

    /// The file to serve for `/repo/{repo}/{arch}/{file}`, if there is one: a database file
    /// or its signature, or a package file the repository lists or its signature.
    pub fn file(&self, repo: RepoKind, arch: &str, file: &str) -> Option<PathBuf> {
        if file.is_empty() || file.contains('/') || file.starts_with('.') {
            return None;
        }
        if self.is_database_file(repo, file) {
            let path = self.dir(repo, arch).join(file);
            return path.is_file().then_some(path);
        }
        let listed = self
            .listed
            .read()
            .expect("no code panics while holding the index");
        let (package, signature) = match file.strip_suffix(".sig") {
            Some(package) => (package, true),
            None => (file, false),
        };
        let is_listed = listed
            .get(&(repo, arch.to_owned()))
            .is_some_and(|l| l.files.contains(package));
        if !is_listed {
            return None;
        }
        let path = self.pool().join(file);
        (!signature || path.is_file()).then_some(path)
    }
}

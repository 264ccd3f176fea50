//! The build and live repositories: package files in a pool, and pacman databases written from
//! the master's SQLite tables.
//!
//! Layout under the state directory:
//!
//! ```text
//! pool/FILE                          every accepted package file, once
//! repos/{build,live}/ARCH/NAME.db    databases; NAME is `<repo_name>-build` or `<repo_name>`
//! ```

pub mod dbfile;
pub mod package;
pub mod pool;

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use crate::db::RepoEntry;
use crate::plan::binaries::RepoKind;

/// A writer's lock for each repository and architecture, which also guards the compressed
/// pieces its databases are assembled from.
type WriteLocks = Mutex<BTreeMap<(RepoKind, String), std::sync::Arc<Mutex<dbfile::Chunks>>>>;

/// The repositories on disk.
#[derive(Debug)]
pub struct Repos {
    root: PathBuf,
    name: String,
    /// One writer at a time per repository and architecture.
    locks: WriteLocks,
    /// Package files each repository lists, for serving.
    listed: RwLock<HashSet<(RepoKind, String, String)>>,
}

impl Repos {
    /// Repositories under `state_dir`; the live one is called `name`, the build one
    /// `name-build`.
    pub fn new(state_dir: &Path, name: &str) -> io::Result<Self> {
        let root = state_dir.to_owned();
        std::fs::create_dir_all(root.join("pool"))?;
        Ok(Repos {
            root,
            name: name.to_owned(),
            locks: Mutex::new(BTreeMap::new()),
            listed: RwLock::new(HashSet::new()),
        })
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

    fn dir(&self, repo: RepoKind, arch: &str) -> PathBuf {
        let kind = match repo {
            RepoKind::Build => "build",
            RepoKind::Live => "live",
        };
        self.root.join("repos").join(kind).join(arch)
    }

    /// Rewrites the databases of `repo` for `arch` from `entries` (all entries of the master;
    /// those of other repositories and architectures are ignored).
    pub fn rewrite(&self, repo: RepoKind, arch: &str, entries: &[RepoEntry]) -> io::Result<()> {
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
        let mine: Vec<&RepoEntry> = entries
            .iter()
            .filter(|e| e.repo == repo && e.arch == arch)
            .collect();
        let db_entries: Vec<dbfile::DbEntry<'_>> = mine
            .iter()
            .map(|e| dbfile::DbEntry {
                pkgname: &e.pkgname,
                version: &e.version,
                desc: &e.desc,
                files: &e.files,
            })
            .collect();
        dbfile::write_databases(
            &self.dir(repo, arch),
            &self.db_name(repo),
            &db_entries,
            &mut chunks,
        )?;
        let mut listed = self
            .listed
            .write()
            .expect("no code panics while holding the index");
        listed.retain(|(r, a, _)| !(*r == repo && a == arch));
        listed.extend(
            mine.iter()
                .map(|e| (repo, arch.to_owned(), e.filename.clone())),
        );
        Ok(())
    }

    /// Rewrites every repository for every architecture from `entries`: at start-up, so that
    /// the files on disk match what SQLite committed, whatever a crash interrupted.
    pub fn rewrite_all(&self, arches: &[String], entries: &[RepoEntry]) -> io::Result<()> {
        for arch in arches {
            for repo in [RepoKind::Build, RepoKind::Live] {
                self.rewrite(repo, arch, entries)?;
            }
        }
        Ok(())
    }

    /// The file to serve for `/repo/{repo}/{arch}/{file}`, if there is one: a database file,
    /// or a package file the repository lists.
    pub fn file(&self, repo: RepoKind, arch: &str, file: &str) -> Option<PathBuf> {
        if file.is_empty() || file.contains('/') || file.starts_with('.') {
            return None;
        }
        let name = self.db_name(repo);
        let databases = [
            "db",
            "db.tar.gz",
            "files",
            "files.tar.gz",
            "db.old",
            "db.tar.gz.old",
            "files.old",
            "files.tar.gz.old",
        ];
        if databases.iter().any(|d| file == format!("{name}.{d}")) {
            let path = self.dir(repo, arch).join(file);
            return path.is_file().then_some(path);
        }
        let listed = self
            .listed
            .read()
            .expect("no code panics while holding the index");
        listed
            .contains(&(repo, arch.to_owned(), file.to_owned()))
            .then(|| self.pool().join(file))
    }
}

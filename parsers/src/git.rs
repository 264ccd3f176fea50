//! Git sources, read with git2 (libgit2): no `git` process is started.
//!
//! Two layouts: one repository whose directories are packages (Arch's packaging, pkgsrc-style
//! `category/name` too), and a directory of repositories, one per package (the AUR).
//! A remote repository is mirrored locally (`git clone --mirror`, then `git fetch` from a timer
//! or hook); the source reads the mirror, and its watcher sees each fetch at once.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs;
use std::ops::Bound;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Signature, Tree, TreeEntry};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::bump;
use crate::layout::{Layout, is_ignored};
use crate::meta::MAX_SRCINFO_BYTES;
use crate::source::{Entry, Files, LastChange, Listing, Revision, Source, SourceError};

/// Options of a `kind = "git"` source.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct GitOptions {
    /// A local repository (bare or not), or with `repository_per_package`, a directory of them.
    pub path: PathBuf,
    /// The branch to build; by default whatever HEAD points at.
    #[serde(default)]
    pub branch: Option<String>,
    /// Each directory under `path` is the repository of one package, named after it
    /// (`foo/` or `foo.git/`).
    #[serde(default)]
    pub repository_per_package: bool,
}

/// Opens a git source.
pub fn open(options: GitOptions, layout: Layout) -> Result<Box<dyn Source>, String> {
    if options.repository_per_package {
        if !options.path.is_dir() {
            return Err(format!("{}: not a directory", options.path.display()));
        }
        return Ok(Box::new(GitRepos {
            dir: options.path,
            branch: options.branch,
            layout,
            history: VecDeque::new(),
        }));
    }
    let repo = Repository::open(&options.path).map_err(|e| {
        format!(
            "{}: not a git repository: {}",
            options.path.display(),
            e.message()
        )
    })?;
    Ok(Box::new(GitTree {
        path: options.path,
        repo,
        branch: options.branch,
        layout,
        trees: TreeIndex::default(),
    }))
}

/// One repository, one directory per package.
pub struct GitTree {
    path: PathBuf,
    repo: Repository,
    branch: Option<String>,
    layout: Layout,
    trees: TreeIndex,
}

/// The entries of the trees exports went through, by tree id.
///
/// A packaging repository's root tree lists every package (about 12,000 in Arch's, 33,000 in
/// the scale benchmark): read for each export, it was inflated, hashed and parsed whole once
/// per package, and made the master's CPU time grow with the square of the tree. libgit2
/// caches no tree larger than 4 KiB unless told to through a global, `unsafe` option, so the
/// index is kept here. A tree id names its content, so an entry is never stale; the index is
/// only emptied when it grows past [`TreeIndex::MAX_TREES`].
#[derive(Debug, Default)]
struct TreeIndex {
    trees: HashMap<Oid, HashMap<String, Oid>>,
}

impl TreeIndex {
    const MAX_TREES: usize = 256;

    /// The id of the tree at `dir` below the tree `root`.
    fn resolve(&mut self, repo: &Repository, root: Oid, dir: &str) -> Result<Oid, String> {
        let mut at = root;
        for component in dir.split('/').filter(|c| !c.is_empty()) {
            if !self.trees.contains_key(&at) {
                if self.trees.len() >= Self::MAX_TREES {
                    self.trees.clear();
                }
                let tree = repo
                    .find_tree(at)
                    .map_err(|_| format!("{dir} is not a directory"))?;
                let entries = tree
                    .iter()
                    .filter(|e| e.kind() == Some(ObjectType::Tree))
                    .filter_map(|e| Some((e.name().ok()?.to_owned(), e.id())))
                    .collect();
                self.trees.insert(at, entries);
            }
            at = *self.trees[&at]
                .get(component)
                .ok_or_else(|| format!("no directory {dir}"))?;
        }
        Ok(at)
    }
}

impl std::fmt::Debug for GitTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitTree")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl GitTree {
    fn unavailable(&self, what: &str, e: &git2::Error) -> SourceError {
        SourceError::Unavailable(format!(
            "git {}: {what}: {}",
            self.path.display(),
            e.message()
        ))
    }

    fn head(&self) -> Result<git2::Commit<'_>, SourceError> {
        head_commit(&self.repo, self.branch.as_deref())
            .map_err(|e| self.unavailable("reading the branch", &e))
    }

    fn commit(&self, revision: &Revision) -> Result<git2::Commit<'_>, SourceError> {
        find_commit(&self.repo, revision).map_err(|e| {
            SourceError::Refused(format!(
                "git {}: revision {revision}: {}",
                self.path.display(),
                e.message()
            ))
        })
    }

    fn listing_of(&self, tree: &Tree<'_>) -> Vec<Entry> {
        list_packages(&self.repo, tree, &self.layout)
    }
}

impl Source for GitTree {
    fn kind(&self) -> &'static str {
        "git"
    }

    fn list(&mut self, known: Option<&Revision>) -> Result<Option<Listing>, SourceError> {
        let head = self.head()?;
        let revision = Revision(head.id().to_string());
        if known == Some(&revision) {
            return Ok(None);
        }
        let tree = head
            .tree()
            .map_err(|e| self.unavailable("reading the tree", &e))?;
        let entries = self.listing_of(&tree);
        Ok(Some(Listing { revision, entries }))
    }

    fn read(&mut self, revision: &Revision, entries: &[Entry]) -> Vec<Result<Files, SourceError>> {
        let commit = match self.commit(revision) {
            Ok(c) => c,
            Err(e) => {
                return entries
                    .iter()
                    .map(|_| Err(SourceError::Refused(e.to_string())))
                    .collect();
            }
        };
        let dirs: Vec<String> = entries
            .iter()
            .map(|e| self.layout.build_dir(&e.path))
            .collect();
        let packagers = last_changes(&self.repo, &commit, &dirs);
        let tree = match commit.tree() {
            Ok(t) => t,
            Err(e) => {
                return entries
                    .iter()
                    .map(|_| Err(self.unavailable("reading the tree", &e)))
                    .collect();
            }
        };
        dirs.iter()
            .map(|dir| {
                let mut files = read_files(&self.repo, &tree, dir).map_err(|e| {
                    SourceError::Package(format!("git {}: {e}", self.path.display()))
                })?;
                if let Some(change) = packagers.get(dir.as_str()) {
                    change.fill(&mut files);
                }
                Ok(files)
            })
            .collect()
    }

    fn changed_since(&mut self, since: &Revision) -> Result<(Revision, Vec<String>), SourceError> {
        let old = self.commit(since)?;
        let head = self.head()?;
        let old_tree = old
            .tree()
            .map_err(|e| self.unavailable("reading the tree", &e))?;
        let new_tree = head
            .tree()
            .map_err(|e| self.unavailable("reading the tree", &e))?;
        let changed = diff_listings(&self.listing_of(&old_tree), &self.listing_of(&new_tree));
        Ok((Revision(head.id().to_string()), changed))
    }

    fn export(&mut self, revision: &Revision, path: &str, dest: &Path) -> Result<(), SourceError> {
        let root = self.commit(revision)?.tree_id();
        let dir = self.layout.build_dir(path);
        let package_error =
            |e: String| SourceError::Package(format!("git {}: {e}", self.path.display()));
        let sub = self
            .trees
            .resolve(&self.repo, root, &dir)
            .and_then(|id| {
                self.repo
                    .find_tree(id)
                    .map_err(|_| format!("{dir} is not a directory"))
            })
            .map_err(package_error)?;
        write_tree(&self.repo, &sub, dest).map_err(|e| {
            SourceError::Package(format!("git {}: exporting {dir}: {e}", self.path.display()))
        })
    }

    fn bump_pkgrel(&mut self, path: &str, message: &str) -> Result<Revision, SourceError> {
        let dir = self.layout.build_dir(path);
        let refname = branch_ref(&self.repo, self.branch.as_deref())
            .map_err(|e| self.unavailable("reading the branch", &e))?;
        let oid = commit_bump(&self.repo, &refname, &dir, message).map_err(|e| {
            SourceError::Package(format!("git {}: bumping {path}: {e}", self.path.display()))
        })?;
        Ok(Revision(oid.to_string()))
    }

    fn watch_paths(&self) -> Vec<PathBuf> {
        vec![self.repo.path().to_owned()]
    }
}

/// A directory of repositories, one per package.
#[derive(Debug)]
pub struct GitRepos {
    dir: PathBuf,
    branch: Option<String>,
    layout: Layout,
    /// The head of every repository at recent revisions. A revision of this source is a digest
    /// of all heads, so "what changed since" needs the heads it stood for.
    history: VecDeque<(Revision, BTreeMap<String, Oid>)>,
}

const REPOS_HISTORY: usize = 64;

impl GitRepos {
    fn repo_path(&self, name: &str) -> PathBuf {
        let bare = self.dir.join(format!("{name}.git"));
        if bare.is_dir() {
            bare
        } else {
            self.dir.join(name)
        }
    }

    fn heads(&self) -> Result<BTreeMap<String, Result<Oid, String>>, SourceError> {
        let read = fs::read_dir(&self.dir).map_err(|e| {
            SourceError::Unavailable(format!("git repositories in {}: {e}", self.dir.display()))
        })?;
        let mut heads = BTreeMap::new();
        for entry in read.flatten() {
            if !entry.path().is_dir() {
                continue;
            }
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let name = file_name
                .strip_suffix(".git")
                .unwrap_or(&file_name)
                .to_owned();
            if is_ignored(&name) {
                continue;
            }
            let head = Repository::open(entry.path())
                .and_then(|repo| head_commit(&repo, self.branch.as_deref()).map(|c| c.id()))
                .map_err(|e| e.message().to_owned());
            heads.insert(name, head);
        }
        Ok(heads)
    }

    fn remember(&mut self, revision: &Revision, heads: BTreeMap<String, Oid>) {
        if self.history.iter().any(|(r, _)| r == revision) {
            return;
        }
        if self.history.len() == REPOS_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((revision.clone(), heads));
    }

    fn heads_at(&self, revision: &Revision) -> Result<&BTreeMap<String, Oid>, SourceError> {
        self.history
            .iter()
            .find(|(r, _)| r == revision)
            .map(|(_, h)| h)
            .ok_or_else(|| {
                SourceError::Refused(format!(
                    "git repositories in {}: revision {revision} is not among the last {REPOS_HISTORY} this source listed",
                    self.dir.display()
                ))
            })
    }

    fn entries_at(&self, heads: &BTreeMap<String, Oid>) -> Vec<Entry> {
        let dir = self.layout.subdir.clone().unwrap_or_default();
        heads
            .iter()
            .map(|(name, oid)| {
                let content_id = Repository::open(self.repo_path(name))
                    .and_then(|repo| {
                        let tree = repo.find_commit(*oid)?.tree()?;
                        Ok(subtree(&repo, &tree, &dir).map_or_else(|_| tree.id(), |t| t.id()))
                    })
                    .map_or_else(|_| format!("commit:{oid}"), |id| id.to_string());
                Entry {
                    path: name.clone(),
                    content_id,
                }
            })
            .collect()
    }

    fn with_repo<T>(
        &self,
        revision: &Revision,
        name: &str,
        f: impl FnOnce(&Repository, git2::Commit<'_>) -> Result<T, String>,
    ) -> Result<T, SourceError> {
        let oid = *self.heads_at(revision)?.get(name).ok_or_else(|| {
            SourceError::Package(format!(
                "git repositories in {}: no package {name}",
                self.dir.display()
            ))
        })?;
        let path = self.repo_path(name);
        let fail = |e: String| SourceError::Package(format!("git {}: {e}", path.display()));
        let repo = Repository::open(&path).map_err(|e| fail(e.message().to_owned()))?;
        let commit = repo
            .find_commit(oid)
            .map_err(|e| fail(e.message().to_owned()))?;
        f(&repo, commit).map_err(fail)
    }
}

impl Source for GitRepos {
    fn kind(&self) -> &'static str {
        "git"
    }

    fn list(&mut self, known: Option<&Revision>) -> Result<Option<Listing>, SourceError> {
        let heads = self.heads()?;
        let mut digest = Sha256::new();
        for (name, head) in &heads {
            digest.update(format!("{name} {head:?}\n"));
        }
        let revision = Revision(hex(&digest.finalize()[..16]));
        if known == Some(&revision) {
            return Ok(None);
        }
        let mut good = BTreeMap::new();
        let mut broken = Vec::new();
        for (name, head) in heads {
            match head {
                Ok(oid) => {
                    good.insert(name, oid);
                }
                Err(e) => broken.push(Entry {
                    path: name,
                    content_id: format!("broken:{e}"),
                }),
            }
        }
        let mut entries = self.entries_at(&good);
        entries.extend(broken);
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        self.remember(&revision, good);
        Ok(Some(Listing { revision, entries }))
    }

    fn read(&mut self, revision: &Revision, entries: &[Entry]) -> Vec<Result<Files, SourceError>> {
        let dir = self.layout.subdir.clone().unwrap_or_default();
        entries
            .iter()
            .map(|entry| {
                if let Some(reason) = entry.content_id.strip_prefix("broken:") {
                    return Err(SourceError::Package(format!(
                        "git {}: {reason}",
                        self.repo_path(&entry.path).display()
                    )));
                }
                self.with_repo(revision, &entry.path, |repo, commit| {
                    let tree = commit.tree().map_err(|e| e.message().to_owned())?;
                    let mut files = read_files(repo, &tree, &dir)?;
                    if let Some(change) =
                        last_changes(repo, &commit, std::slice::from_ref(&dir)).remove(dir.as_str())
                    {
                        change.fill(&mut files);
                    }
                    Ok(files)
                })
            })
            .collect()
    }

    fn changed_since(&mut self, since: &Revision) -> Result<(Revision, Vec<String>), SourceError> {
        let old = self.entries_at(&self.heads_at(since)?.clone());
        let listing = match self.list(None)? {
            Some(listing) => listing,
            None => unreachable!("list(None) always lists"),
        };
        Ok((listing.revision, diff_listings(&old, &listing.entries)))
    }

    fn export(&mut self, revision: &Revision, path: &str, dest: &Path) -> Result<(), SourceError> {
        let dir = self.layout.subdir.clone().unwrap_or_default();
        self.with_repo(revision, path, |repo, commit| {
            let tree = commit.tree().map_err(|e| e.message().to_owned())?;
            let sub = subtree(repo, &tree, &dir)?;
            write_tree(repo, &sub, dest)
        })
    }

    fn bump_pkgrel(&mut self, path: &str, message: &str) -> Result<Revision, SourceError> {
        let repo_path = self.repo_path(path);
        let fail =
            |e: String| SourceError::Package(format!("git {}: bumping: {e}", repo_path.display()));
        let repo = Repository::open(&repo_path).map_err(|e| fail(e.message().to_owned()))?;
        let refname =
            branch_ref(&repo, self.branch.as_deref()).map_err(|e| fail(e.message().to_owned()))?;
        let dir = self.layout.subdir.clone().unwrap_or_default();
        commit_bump(&repo, &refname, &dir, message).map_err(fail)?;
        // The source's revision is a digest over every repository: list again to learn it.
        let listing = self.list(None)?.expect("list(None) always lists");
        Ok(listing.revision)
    }

    fn watch_paths(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }
}

fn branch_ref(repo: &Repository, branch: Option<&str>) -> Result<String, git2::Error> {
    match branch {
        Some(b) => Ok(format!("refs/heads/{b}")),
        None => {
            let head = repo.find_reference("HEAD")?;
            Ok(head.symbolic_target()?.unwrap_or("HEAD").to_owned())
        }
    }
}

fn head_commit<'r>(
    repo: &'r Repository,
    branch: Option<&str>,
) -> Result<git2::Commit<'r>, git2::Error> {
    let refname = branch_ref(repo, branch)?;
    repo.find_reference(&refname)?.peel_to_commit()
}

fn find_commit<'r>(
    repo: &'r Repository,
    revision: &Revision,
) -> Result<git2::Commit<'r>, git2::Error> {
    repo.find_commit(Oid::from_str(&revision.0)?)
}

/// The package directories of `tree` under `layout`, with their tree ids as content ids.
fn list_packages(repo: &Repository, tree: &Tree<'_>, layout: &Layout) -> Vec<Entry> {
    let mut out = Vec::new();
    let dirs = |tree: &Tree<'_>| -> Vec<(String, Oid)> {
        tree.iter()
            .filter(|e| e.kind() == Some(ObjectType::Tree))
            .map(|e| (String::from_utf8_lossy(e.name_bytes()).into_owned(), e.id()))
            .filter(|(name, _)| !is_ignored(name))
            .collect()
    };
    let mut push = |path: String, oid: Oid| {
        let content = match &layout.subdir {
            None => oid,
            Some(sub) => repo
                .find_tree(oid)
                .ok()
                .and_then(|t| t.get_path(Path::new(sub)).ok())
                .map_or(oid, |e| e.id()),
        };
        out.push(Entry {
            path,
            content_id: content.to_string(),
        });
    };
    for (name, oid) in dirs(tree) {
        if layout.depth == 1 {
            push(name, oid);
        } else if let Ok(category) = repo.find_tree(oid) {
            for (pkg, pkg_oid) in dirs(&category) {
                push(format!("{name}/{pkg}"), pkg_oid);
            }
        }
    }
    out
}

/// The tree at `dir` inside `tree`; `""` is `tree` itself.
fn subtree<'r>(repo: &'r Repository, tree: &Tree<'r>, dir: &str) -> Result<Tree<'r>, String> {
    if dir.is_empty() {
        return Ok(tree.clone());
    }
    let entry = tree
        .get_path(Path::new(dir))
        .map_err(|_| format!("no directory {dir}"))?;
    repo.find_tree(entry.id())
        .map_err(|_| format!("{dir} is not a directory"))
}

fn read_files(repo: &Repository, tree: &Tree<'_>, dir: &str) -> Result<Files, String> {
    let sub = subtree(repo, tree, dir)?;
    let srcinfo = match sub.get_name(".SRCINFO") {
        None => None,
        Some(entry) => {
            let blob = repo
                .find_blob(entry.id())
                .map_err(|_| format!("{dir}/.SRCINFO is not a file"))?;
            if blob.size() > MAX_SRCINFO_BYTES {
                return Err(format!(
                    "{dir}/.SRCINFO is {} bytes, larger than the limit of {MAX_SRCINFO_BYTES}",
                    blob.size()
                ));
            }
            Some(
                String::from_utf8(blob.content().to_vec())
                    .map_err(|_| format!("{dir}/.SRCINFO is not UTF-8"))?,
            )
        }
    };
    Ok(Files {
        srcinfo,
        has_pkgbuild: sub.get_name("PKGBUILD").is_some(),
        packager: None,
        changed_at: None,
    })
}

/// For each directory, the author of the newest commit (following first parents from `start`)
/// that changed it: `Name <email>`. A directory no commit is seen changing has no entry.
///
/// Each commit's tree is compared with its first parent's from the root down, descending only
/// into entries whose ids differ and under which a directory still looked for lies, so a commit
/// costs what it changed, not the number of directories. The walk ends once every directory is
/// found, or at a root commit, which changed everything in it.
fn last_changes(
    repo: &Repository,
    start: &git2::Commit<'_>,
    dirs: &[String],
) -> HashMap<String, LastChange> {
    let mut found = HashMap::new();
    let mut pending = Pending::new(dirs);
    let mut commit = start.clone();
    let Ok(mut tree) = commit.tree() else {
        return found;
    };
    while !pending.dirs.is_empty() {
        let parent = commit.parent(0).ok();
        let parent_tree = parent.as_ref().and_then(|p| p.tree().ok());
        if parent_tree.as_ref().map(Tree::id) != Some(tree.id()) {
            let mut diff = TreeDiff {
                repo,
                pending: &pending,
                path: String::new(),
                changed: Vec::new(),
            };
            diff.trees(Some(&tree), parent_tree.as_ref());
            if !diff.changed.is_empty() {
                let changed = diff.changed;
                // The commit's (committer's) time, as `git log --format=%ct` gives it: what
                // reproducible builds of a git checkout date themselves by.
                let change = LastChange {
                    author: author_of(&commit),
                    at: Some(commit.time().seconds()),
                };
                for dir in changed {
                    pending.remove(&dir);
                    found.insert(dir, change.clone());
                }
            }
        }
        match (parent, parent_tree) {
            (Some(p), Some(t)) => {
                commit = p;
                tree = t;
            }
            _ => break,
        }
    }
    found
}

/// The directories [`last_changes`] has not found yet.
struct Pending {
    /// Sorted, so that the directories under a path are one range.
    dirs: BTreeSet<String>,
    /// For each path with pending directories strictly under it, how many: `""` for all but
    /// `""` itself, then `core`, `core/foo` (for `core/foo/trunk`)...
    under: HashMap<String, usize>,
}

impl Pending {
    fn new(dirs: &[String]) -> Self {
        let mut pending = Pending {
            dirs: BTreeSet::new(),
            under: HashMap::new(),
        };
        for dir in dirs {
            if pending.dirs.insert(dir.clone()) {
                for ancestor in ancestors(dir) {
                    *pending.under.entry(ancestor.to_owned()).or_default() += 1;
                }
            }
        }
        pending
    }

    fn remove(&mut self, dir: &str) {
        if !self.dirs.remove(dir) {
            return;
        }
        for ancestor in ancestors(dir) {
            if let Some(n) = self.under.get_mut(ancestor) {
                *n -= 1;
                if *n == 0 {
                    self.under.remove(ancestor);
                }
            }
        }
    }

    /// How many pending directories lie strictly under `path`.
    fn under(&self, path: &str) -> usize {
        self.under.get(path).copied().unwrap_or(0)
    }

    /// The names of the entries of `path` that pending directories lie at or under.
    fn children<'s>(&'s self, path: &str) -> Vec<&'s str> {
        let base = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let mut names: Vec<&str> = self
            .dirs
            .range::<str, _>((Bound::Included(base.as_str()), Bound::Unbounded))
            .map_while(|dir| dir.strip_prefix(base.as_str()))
            .filter(|rest| !rest.is_empty())
            .map(|rest| rest.split_once('/').map_or(rest, |(name, _)| name))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// The paths strictly above `dir`: `""`, then each of its leading components.
fn ancestors(dir: &str) -> impl Iterator<Item = &str> {
    let parents = dir.match_indices('/').map(|(i, _)| &dir[..i]);
    (!dir.is_empty()).then_some("").into_iter().chain(parents)
}

/// One side of a tree entry being compared: its id, and whether it is a tree.
type Side = Option<(Oid, bool)>;

fn side(entry: Option<&TreeEntry<'_>>) -> Side {
    entry.map(|e| (e.id(), e.kind() == Some(ObjectType::Tree)))
}

/// Git's order of tree entries: by name, a directory's name read as if it ended in `/`.
fn git_order(a: &TreeEntry<'_>, b: &TreeEntry<'_>) -> Ordering {
    fn key<'e>(e: &'e TreeEntry<'_>) -> impl Iterator<Item = &'e u8> {
        let slash = (e.kind() == Some(ObjectType::Tree)).then_some(&b'/');
        e.name_bytes().iter().chain(slash)
    }
    key(a).cmp(key(b))
}

/// The comparison of one commit's tree with its parent's, for [`last_changes`].
struct TreeDiff<'a, 'r> {
    repo: &'r Repository,
    pending: &'a Pending,
    /// The path being compared, relative to the root: `""`, `core`, `core/foo`...
    path: String,
    /// Pending directories that differ between the two trees, possibly more than once.
    changed: Vec<String>,
}

impl TreeDiff<'_, '_> {
    /// `self.path` has different ids on the two sides (or exists on one only): records it if
    /// it is pending, and compares what lies under it if some pending directory does.
    fn entry(&mut self, new: Side, old: Side) {
        let tree = |side: Side| {
            side.filter(|(_, is_tree)| *is_tree)
                .and_then(|(id, _)| self.repo.find_tree(id).ok())
        };
        if self.pending.under(&self.path) > 0 {
            self.trees(tree(new).as_ref(), tree(old).as_ref());
        } else if self.pending.dirs.contains(self.path.as_str()) {
            self.changed.push(self.path.clone());
        }
    }

    /// [`Self::entry`], with the trees (if they are trees) at hand.
    fn trees(&mut self, new: Option<&Tree<'_>>, old: Option<&Tree<'_>>) {
        if self.pending.dirs.contains(self.path.as_str()) {
            self.changed.push(self.path.clone());
        }
        let under = self.pending.under(&self.path);
        if under == 0 {
            return;
        }
        let entries = new.map_or(0, Tree::len) + old.map_or(0, Tree::len);
        // With few pending directories below, looking them up by name is cheaper than walking
        // every entry of both trees (a flat tree of thousands of packages, late in the walk).
        if under <= entries / 16 {
            let pending = self.pending;
            self.by_names(new, old, &pending.children(&self.path));
            return;
        }
        let mark = self.changed.len();
        if !self.merge(new, old) {
            // A tree out of git's order: a merge could pair the wrong entries.
            self.changed.truncate(mark);
            self.unordered(new, old);
        }
    }

    /// Compares the entry `name` of both trees, and goes into it if it differs and matters.
    fn child(&mut self, name: &str, new: Side, old: Side) {
        if new.map(|(id, _)| id) == old.map(|(id, _)| id) {
            return;
        }
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('/');
        }
        self.path.push_str(name);
        if self.pending.dirs.contains(self.path.as_str()) || self.pending.under(&self.path) > 0 {
            self.entry(new, old);
        }
        self.path.truncate(len);
    }

    fn by_names(&mut self, new: Option<&Tree<'_>>, old: Option<&Tree<'_>>, names: &[&str]) {
        for name in names {
            let new_side = side(new.and_then(|t| t.get_name(name)).as_ref());
            let old_side = side(old.and_then(|t| t.get_name(name)).as_ref());
            self.child(name, new_side, old_side);
        }
    }

    /// Pairs the entries of both trees by name, whatever their order.
    fn unordered(&mut self, new: Option<&Tree<'_>>, old: Option<&Tree<'_>>) {
        let entries = |tree: Option<&Tree<'_>>| -> HashMap<String, Side> {
            tree.into_iter()
                .flat_map(|t| t.iter())
                .filter_map(|e| Some((e.name().ok()?.to_owned(), side(Some(&e)))))
                .collect()
        };
        let (new, old) = (entries(new), entries(old));
        let names: BTreeSet<&String> = new.keys().chain(old.keys()).collect();
        for name in names {
            let (a, b) = (
                new.get(name).copied().flatten(),
                old.get(name).copied().flatten(),
            );
            self.child(name, a, b);
        }
    }

    /// Walks the entries of both trees side by side, in git's order (a directory sorts as if
    /// its name ended in `/`). False if either tree is not in that order.
    fn merge(&mut self, new: Option<&Tree<'_>>, old: Option<&Tree<'_>>) -> bool {
        let (mut i, mut j) = (0, 0);
        loop {
            let (a, b) = (new.and_then(|t| t.get(i)), old.and_then(|t| t.get(j)));
            let order = match (&a, &b) {
                (None, None) => return true,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => git_order(x, y),
            };
            let a = a.filter(|_| order.is_le());
            let b = b.filter(|_| order.is_ge());
            let Some(entry) = a.as_ref().or(b.as_ref()) else {
                return true;
            };
            // A pending directory is UTF-8: no other name leads to one.
            if let Ok(name) = std::str::from_utf8(entry.name_bytes()) {
                self.child(name, side(a.as_ref()), side(b.as_ref()));
            }
            if let Some(x) = &a {
                i += 1;
                if new
                    .and_then(|t| t.get(i))
                    .is_some_and(|next| git_order(x, &next).is_ge())
                {
                    return false;
                }
            }
            if let Some(y) = &b {
                j += 1;
                if old
                    .and_then(|t| t.get(j))
                    .is_some_and(|next| git_order(y, &next).is_ge())
                {
                    return false;
                }
            }
        }
    }
}

fn author_of(commit: &git2::Commit<'_>) -> String {
    let author = commit.author();
    let name = author.name().unwrap_or("");
    match author.email() {
        Ok(email) if !email.is_empty() => format!("{name} <{email}>"),
        _ => name.to_owned(),
    }
}

/// The package paths whose content differs between two listings, including added and removed.
pub(crate) fn diff_listings(old: &[Entry], new: &[Entry]) -> Vec<String> {
    let old: HashMap<&str, &str> = old
        .iter()
        .map(|e| (e.path.as_str(), e.content_id.as_str()))
        .collect();
    let new_map: HashMap<&str, &str> = new
        .iter()
        .map(|e| (e.path.as_str(), e.content_id.as_str()))
        .collect();
    let mut changed: Vec<String> = new
        .iter()
        .filter(|e| old.get(e.path.as_str()) != Some(&e.content_id.as_str()))
        .map(|e| e.path.clone())
        .chain(
            old.keys()
                .filter(|p| !new_map.contains_key(*p))
                .map(|p| (*p).to_owned()),
        )
        .collect();
    changed.sort();
    changed.dedup();
    changed
}

/// Writes `tree` into the new directory `dest`: files with their executable bit, symlinks as
/// symlinks (never followed). Submodules and names that could escape `dest` are refused.
fn write_tree(repo: &Repository, tree: &Tree<'_>, dest: &Path) -> Result<(), String> {
    fs::create_dir(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    for entry in tree.iter() {
        let name = entry
            .name()
            .ok()
            .filter(|n| !n.is_empty() && *n != "." && *n != ".." && !n.contains('/'))
            .ok_or_else(|| {
                format!(
                    "refusing the file name {:?}",
                    String::from_utf8_lossy(entry.name_bytes())
                )
            })?;
        let target = dest.join(name);
        match entry.kind() {
            Some(ObjectType::Tree) => {
                let sub = repo
                    .find_tree(entry.id())
                    .map_err(|e| e.message().to_owned())?;
                write_tree(repo, &sub, &target)?;
            }
            Some(ObjectType::Blob) => {
                let blob = repo
                    .find_blob(entry.id())
                    .map_err(|e| e.message().to_owned())?;
                if entry.filemode() == 0o120_000 {
                    let link = std::str::from_utf8(blob.content())
                        .map_err(|_| format!("{name}: symlink target is not UTF-8"))?;
                    std::os::unix::fs::symlink(link, &target)
                        .map_err(|e| format!("{name}: {e}"))?;
                } else {
                    fs::write(&target, blob.content()).map_err(|e| format!("{name}: {e}"))?;
                    let mode = if entry.filemode() == 0o100_755 {
                        0o755
                    } else {
                        0o644
                    };
                    fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                        .map_err(|e| format!("{name}: {e}"))?;
                }
            }
            _ => return Err(format!("{name}: submodules are not supported")),
        }
    }
    Ok(())
}

/// Commits a pkgrel bump of the package in `dir` on `refname`; in a repository with a working
/// tree on that branch, the two files are checked out too.
fn commit_bump(repo: &Repository, refname: &str, dir: &str, message: &str) -> Result<Oid, String> {
    let head = repo
        .find_reference(refname)
        .and_then(|r| r.peel_to_commit())
        .map_err(|e| e.message().to_owned())?;
    let tree = head.tree().map_err(|e| e.message().to_owned())?;
    let sub = subtree(repo, &tree, dir)?;
    let text = |name: &str| -> Result<Option<String>, String> {
        match sub.get_name(name) {
            None => Ok(None),
            Some(e) => {
                let blob = repo.find_blob(e.id()).map_err(|e| e.message().to_owned())?;
                String::from_utf8(blob.content().to_vec())
                    .map(Some)
                    .map_err(|_| format!("{name} is not UTF-8"))
            }
        }
    };
    let pkgbuild = text("PKGBUILD")?.ok_or_else(|| format!("no PKGBUILD in {dir}"))?;
    let srcinfo = text(".SRCINFO")?;
    let bumped = bump::bump(&pkgbuild, srcinfo.as_deref())?;
    let mut files = vec![("PKGBUILD", bumped.pkgbuild)];
    if let Some(s) = bumped.srcinfo {
        files.push((".SRCINFO", s));
    }
    let mut builder = repo
        .treebuilder(Some(&sub))
        .map_err(|e| e.message().to_owned())?;
    for (name, content) in &files {
        let blob = repo
            .blob(content.as_bytes())
            .map_err(|e| e.message().to_owned())?;
        let mode = sub.get_name(name).map_or(0o100_644, |e| e.filemode());
        builder
            .insert(name, blob, mode)
            .map_err(|e| e.message().to_owned())?;
    }
    let mut new_id = builder.write().map_err(|e| e.message().to_owned())?;
    // Rebuild every tree from the package directory up to the root.
    let components: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    for depth in (0..components.len()).rev() {
        let parent_dir = components[..depth].join("/");
        let parent = subtree(repo, &tree, &parent_dir)?;
        let mut builder = repo
            .treebuilder(Some(&parent))
            .map_err(|e| e.message().to_owned())?;
        builder
            .insert(components[depth], new_id, 0o040_000)
            .map_err(|e| e.message().to_owned())?;
        new_id = builder.write().map_err(|e| e.message().to_owned())?;
    }
    let new_tree = repo.find_tree(new_id).map_err(|e| e.message().to_owned())?;
    let signature = repo
        .signature()
        .or_else(|_| Signature::now("Quarters", "quarters@localhost"))
        .map_err(|e| e.message().to_owned())?;
    let oid = repo
        .commit(
            Some(refname),
            &signature,
            &signature,
            message,
            &new_tree,
            &[&head],
        )
        .map_err(|e| e.message().to_owned())?;
    let on_branch = repo
        .find_reference("HEAD")
        .ok()
        .and_then(|h| h.symbolic_target().ok().flatten().map(|t| t == refname))
        .unwrap_or(false);
    if !repo.is_bare() && on_branch {
        let mut checkout = git2::build::CheckoutBuilder::new();
        checkout.force();
        for (name, _) in &files {
            checkout.path(if dir.is_empty() {
                (*name).to_owned()
            } else {
                format!("{dir}/{name}")
            });
        }
        repo.checkout_head(Some(&mut checkout))
            .map_err(|e| e.message().to_owned())?;
    }
    Ok(oid)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` (path → content) as nested trees; returns the root tree.
    fn tree_of(repo: &Repository, files: &BTreeMap<String, String>, prefix: &str) -> Oid {
        let mut builder = repo.treebuilder(None).unwrap();
        let mut subdirs = BTreeSet::new();
        for (path, content) in files.range(prefix.to_owned()..) {
            let Some(rest) = path.strip_prefix(prefix) else {
                break;
            };
            match rest.split_once('/') {
                Some((dir, _)) => {
                    subdirs.insert(dir.to_owned());
                }
                None => {
                    let blob = repo.blob(content.as_bytes()).unwrap();
                    builder.insert(rest, blob, 0o100_644).unwrap();
                }
            }
        }
        for dir in subdirs {
            let id = tree_of(repo, files, &format!("{prefix}{dir}/"));
            builder.insert(&dir, id, 0o040_000).unwrap();
        }
        builder.write().unwrap()
    }

    fn commit(
        repo: &Repository,
        files: &BTreeMap<String, String>,
        who: &str,
        parents: &[Oid],
    ) -> Oid {
        let tree = repo.find_tree(tree_of(repo, files, "")).unwrap();
        let sig = Signature::new(
            who,
            &format!("{}@example.org", who.to_lowercase()),
            &git2::Time::new(when(who), 0),
        )
        .unwrap();
        let parents: Vec<git2::Commit<'_>> = parents
            .iter()
            .map(|p| repo.find_commit(*p).unwrap())
            .collect();
        let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
        repo.commit(None, &sig, &sig, who, &tree, &parents).unwrap()
    }

    /// When each test author commits: a time of its own, so that a change's time tells whose
    /// commit it came from.
    fn when(who: &str) -> i64 {
        let order = [
            "Root", "Alice", "Bob", "Carol", "Dave", "Erin", "Merger", "Zed",
        ];
        let i = order.iter().position(|w| *w == who).unwrap_or(order.len());
        1_700_000_000 + 3_600 * i as i64
    }

    /// The authors [`last_changes`] found.
    fn authors(found: HashMap<String, LastChange>) -> HashMap<String, String> {
        found.into_iter().map(|(d, c)| (d, c.author)).collect()
    }

    /// The walk as it was: every directory looked up in every commit's tree and its parent's.
    fn naive(start: &git2::Commit<'_>, dirs: &[String]) -> HashMap<String, String> {
        let id_at = |tree: &Tree<'_>, dir: &str| -> Option<Oid> {
            if dir.is_empty() {
                Some(tree.id())
            } else {
                tree.get_path(Path::new(dir)).ok().map(|e| e.id())
            }
        };
        let mut found = HashMap::new();
        let mut pending: Vec<&str> = dirs.iter().map(String::as_str).collect();
        let mut commit = start.clone();
        loop {
            let tree = commit.tree().unwrap();
            let parent = commit.parent(0).ok();
            let parent_tree = parent.as_ref().map(|p| p.tree().unwrap());
            pending.retain(|dir| {
                let before = parent_tree.as_ref().and_then(|t| id_at(t, dir));
                if id_at(&tree, dir) == before {
                    return true;
                }
                found.insert((*dir).to_owned(), author_of(&commit));
                false
            });
            match parent {
                Some(p) => commit = p,
                None => return found,
            }
        }
    }

    fn set(files: &mut BTreeMap<String, String>, path: &str, content: &str) {
        files.insert(path.to_owned(), content.to_owned());
    }

    #[test]
    fn last_changes_names_the_newest_author_of_every_package() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let mut files = BTreeMap::new();
        for pkg in [
            "core/a",
            "core/b",
            "extra/c",
            "extra/d",
            "community/e",
            "testing/g/trunk",
            "testing/g/repos/x",
        ] {
            set(&mut files, &format!("{pkg}/PKGBUILD"), "1");
        }
        for i in 0..40 {
            set(&mut files, &format!("big/p{i:02}/PKGBUILD"), "1");
        }
        let root = commit(&repo, &files, "Root", &[]);
        set(&mut files, "core/a/PKGBUILD", "2");
        let alice = commit(&repo, &files, "Alice", &[root]);
        // Three categories and two packages of one at once, and a file beside the packages.
        set(&mut files, "extra/c/PKGBUILD", "2");
        set(&mut files, "big/p07/PKGBUILD", "2");
        set(&mut files, "big/p31/PKGBUILD", "2");
        set(&mut files, "core/README", "1");
        let bob = commit(&repo, &files, "Bob", &[alice]);
        // A side branch...
        let mut side = files.clone();
        set(&mut side, "core/b/PKGBUILD", "2");
        let carol = commit(&repo, &side, "Carol", &[bob]);
        set(&mut side, "extra/d/PKGBUILD", "2");
        set(&mut side, "testing/g/repos/x/PKGBUILD", "2");
        let dave = commit(&repo, &side, "Dave", &[carol]);
        // ... while the main line changes two packages and adds one...
        set(&mut files, "core/a/PKGBUILD", "3");
        set(&mut files, "testing/g/trunk/PKGBUILD", "2");
        set(&mut files, "core/n/PKGBUILD", "1");
        let erin = commit(&repo, &files, "Erin", &[bob]);
        // ... then merges the branch: what it brings is the merge's change.
        for path in [
            "core/b/PKGBUILD",
            "extra/d/PKGBUILD",
            "testing/g/repos/x/PKGBUILD",
        ] {
            files.insert(path.to_owned(), side[path].clone());
        }
        let merge = commit(&repo, &files, "Merger", &[erin, dave]);
        // Files outside every package.
        set(&mut files, "core/README", "2");
        set(&mut files, "README", "1");
        let head = commit(&repo, &files, "Zed", &[merge]);
        let head = repo.find_commit(head).unwrap();

        let mut expected: BTreeMap<&str, &str> = BTreeMap::from([
            ("", "Zed"),
            ("core", "Zed"),
            ("core/a", "Erin"),
            ("core/b", "Merger"),
            ("core/n", "Erin"),
            ("extra/c", "Bob"),
            ("extra/d", "Merger"),
            ("community/e", "Root"),
            ("testing/g/trunk", "Erin"),
            ("big/p07", "Bob"),
            ("big/p31", "Bob"),
        ]);
        let others: Vec<String> = (0..40)
            .filter(|i| *i != 7 && *i != 31)
            .map(|i| format!("big/p{i:02}"))
            .collect();
        for pkg in &others {
            expected.insert(pkg, "Root");
        }
        let mut dirs: Vec<String> = expected.keys().map(|d| (*d).to_owned()).collect();
        dirs.push("nowhere/x".to_owned());
        dirs.push("core/a/nothing".to_owned());
        let found = last_changes(&repo, &head, &dirs);
        // Each change's time is its commit's, the same change its author comes from.
        for (dir, who) in &expected {
            assert_eq!(found[*dir].at, Some(when(who)), "{dir}");
        }
        let got = authors(found);
        let want: HashMap<String, String> = expected
            .iter()
            .map(|(d, who)| {
                let email = who.to_lowercase();
                ((*d).to_owned(), format!("{who} <{email}@example.org>"))
            })
            .collect();
        let sorted = |m: HashMap<String, String>| m.into_iter().collect::<BTreeMap<_, _>>();
        assert_eq!(sorted(got.clone()), sorted(want));
        assert_eq!(got, naive(&head, &dirs));

        // One directory at a time, and a few in one large category: looked up by name, two of
        // them changed by one commit.
        for dir in &dirs {
            let one = std::slice::from_ref(dir);
            assert_eq!(
                authors(last_changes(&repo, &head, one)),
                naive(&head, one),
                "{dir}"
            );
        }
        let few = ["big/p07", "big/p31", "big/p33"].map(str::to_owned);
        assert_eq!(
            authors(last_changes(&repo, &head, &few)),
            naive(&head, &few)
        );
        assert_eq!(last_changes(&repo, &head, &[]), HashMap::new());
    }

    #[test]
    fn last_changes_pairs_entries_of_trees_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let odb = repo.odb().unwrap();
        let blob = |s: &str| repo.blob(s.as_bytes()).unwrap();
        // A tree written by hand, entries out of git's order, as old converters left some.
        let raw = |entries: &[(&str, &str, Oid)]| {
            let mut bytes = Vec::new();
            for (mode, name, id) in entries {
                bytes.extend_from_slice(format!("{mode} {name}\0").as_bytes());
                bytes.extend_from_slice(id.as_bytes());
            }
            odb.write(ObjectType::Tree, &bytes).unwrap()
        };
        let pkg = |v: &str| raw(&[("100644", "PKGBUILD", blob(v))]);
        let sig = Signature::now("Root", "root@example.org").unwrap();
        let first = raw(&[("40000", "zeta", pkg("1")), ("40000", "alpha", pkg("1"))]);
        let first = repo
            .commit(
                None,
                &sig,
                &sig,
                "root",
                &repo.find_tree(first).unwrap(),
                &[],
            )
            .unwrap();
        let first = repo.find_commit(first).unwrap();
        let sig = Signature::now("Bob", "bob@example.org").unwrap();
        let second = raw(&[("40000", "zeta", pkg("2")), ("40000", "alpha", pkg("1"))]);
        let second = repo
            .commit(
                None,
                &sig,
                &sig,
                "zeta 2",
                &repo.find_tree(second).unwrap(),
                &[&first],
            )
            .unwrap();
        let head = repo.find_commit(second).unwrap();
        let dirs = ["alpha".to_owned(), "zeta".to_owned()];
        let got = last_changes(&repo, &head, &dirs);
        assert_eq!(got["alpha"].author, "Root <root@example.org>");
        assert_eq!(got["zeta"].author, "Bob <bob@example.org>");
    }
}

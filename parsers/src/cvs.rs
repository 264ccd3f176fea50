//! CVS sources (pkgsrc, OpenBSD ports), read with the `cvs` client.
//!
//! CVS has no repository-wide revision, so a revision here is a date (`YYYY-MM-DD HH:MM:SS UTC`):
//! the tree as it stood then, which `cvs -D` can always check out again. A package's content id
//! is a digest of its files' revision numbers; "what changed since" is `cvs rdiff -s`, as in
//! OpenBSD's bulk builds.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::bump;
use crate::cmd;
use crate::git::hex;
use crate::layout::{Layout, is_ignored};
use crate::source::{Entry, Files, LastChange, Listing, Revision, Source, SourceError};
use crate::svn::read_dir_files;

/// Options of a `kind = "cvs"` source.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CvsOptions {
    /// The CVSROOT: a local path, or `:pserver:user@host:/cvs`, `:ext:...`.
    pub root: String,
    /// The module holding the packages.
    pub module: String,
}

const LIMIT: Duration = Duration::from_secs(600);
/// Modules named in one `cvs export`, to stay clear of argument-length limits.
const EXPORT_BATCH: usize = 200;
/// A revision is this far in the past, so that a commit still being written in the current
/// second is seen whole at the next poll rather than half now.
const SETTLE: time::Duration = time::Duration::seconds(2);

pub fn open(options: CvsOptions, layout: Layout) -> Result<Box<dyn Source>, String> {
    if options.module.is_empty() || options.module.split('/').any(|c| c.is_empty() || c == "..") {
        return Err(format!(
            "module {:?} is not a plain module name",
            options.module
        ));
    }
    Ok(Box::new(Cvs {
        root: options.root,
        module: options.module,
        layout,
        listed: None,
    }))
}

#[derive(Debug)]
pub struct Cvs {
    root: String,
    module: String,
    layout: Layout,
    /// The files of every package at the latest listed revision, paths relative to the package.
    listed: Option<(Revision, HashMap<String, Vec<String>>)>,
}

/// Above this many packages to read, one export of the whole module is cheaper than reading
/// files one by one: `cvs export` pauses about a second per module it is given, while
/// `cvs checkout -p` of one file takes milliseconds.
const EXPORT_ALL_ABOVE: usize = 32;

fn now_revision(offset: time::Duration) -> Revision {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    let at = OffsetDateTime::now_utc() + offset;
    Revision(at.format(format).expect("the date format is valid"))
}

impl Cvs {
    fn cvs(&self, args: &[&str], dir: Option<&Path>) -> Result<String, SourceError> {
        let mut all = vec!["-Q", "-d", &self.root];
        all.extend_from_slice(args);
        cmd::run("cvs", &all, dir, LIMIT).map_err(|e| {
            SourceError::Unavailable(format!("cvs {} {}: {e}", self.root, self.module))
        })
    }

    /// The module-relative path of a repository path printed by cvs, without `,v` and `Attic/`.
    fn relative(&self, path: &str) -> Option<String> {
        let marker = format!("{}/", self.module);
        let start = path.find(&marker)? + marker.len();
        let rel = path[start..].trim_end_matches(",v").replace("/Attic/", "/");
        Some(rel)
    }

    /// Exports `build_dirs` at `revision` under `dir/<module>/`.
    fn export_into(
        &self,
        revision: &Revision,
        build_dirs: &[String],
        dir: &Path,
    ) -> Result<(), SourceError> {
        for batch in build_dirs.chunks(EXPORT_BATCH) {
            let modules: Vec<String> = batch
                .iter()
                .map(|d| format!("{}/{d}", self.module))
                .collect();
            let mut args = vec!["export", "-D", &revision.0];
            args.extend(modules.iter().map(String::as_str));
            self.cvs(&args, Some(dir))?;
        }
        Ok(())
    }

    /// The newest revision, at or before `revision`, of any file in each package: its author
    /// and its time.
    fn packagers(&self, revision: &Revision, paths: &[String]) -> HashMap<String, LastChange> {
        let mut newest: HashMap<String, (String, String)> = HashMap::new();
        for batch in paths.chunks(EXPORT_BATCH) {
            let modules: Vec<String> = batch
                .iter()
                .map(|d| format!("{}/{d}", self.module))
                .collect();
            let range = format!("<{}", revision.0);
            let mut args = vec!["rlog", "-N", "-d", &range];
            args.extend(modules.iter().map(String::as_str));
            let Ok(log) = self.cvs(&args, None) else {
                continue;
            };
            let mut package: Option<String> = None;
            for line in log.lines() {
                if let Some(file) = line.strip_prefix("RCS file: ") {
                    package = self
                        .relative(file)
                        .and_then(|rel| self.layout.package_of(&rel));
                } else if let (Some(pkg), Some(rest)) = (&package, line.strip_prefix("date: ")) {
                    let date = rest.split(';').next().unwrap_or("").to_owned();
                    let author = rest
                        .split(';')
                        .find_map(|f| f.trim().strip_prefix("author: "))
                        .unwrap_or("")
                        .to_owned();
                    let slot = newest.entry(pkg.clone()).or_default();
                    if date > slot.0 {
                        *slot = (date, author);
                    }
                }
            }
        }
        newest
            .into_iter()
            .map(|(pkg, (date, author))| {
                let at = rlog_date(&date);
                (pkg, LastChange { author, at })
            })
            .collect()
    }
}

/// The time of an `rlog` revision's `date:` field, in Unix seconds: `2024/01/02 03:04:05`
/// (CVS 1.11, UTC) or `2024-01-02 03:04:05 +0000` (CVS 1.12, with its offset).
fn rlog_date(date: &str) -> Option<i64> {
    use time::macros::format_description;
    let date = date.trim();
    let with_offset = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    if let Ok(t) = time::OffsetDateTime::parse(date, &with_offset) {
        return Some(t.unix_timestamp());
    }
    let utc = format_description!("[year]/[month]/[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(date, &utc)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

impl Cvs {
    /// Reads one package file by file, knowing its files from the listing.
    fn read_listed(
        &self,
        revision: &Revision,
        entry: &Entry,
        names: &HashMap<String, Vec<String>>,
    ) -> Result<Files, SourceError> {
        let files = names
            .get(&entry.path)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let prefix = match &self.layout.subdir {
            Some(sub) => format!("{sub}/"),
            None => String::new(),
        };
        let has = |name: &str| files.iter().any(|f| *f == format!("{prefix}{name}"));
        let build_dir = self.layout.build_dir(&entry.path);
        if !files.iter().any(|f| f.starts_with(&prefix)) {
            return Err(SourceError::Package(format!(
                "cvs {} {}: no directory {build_dir}",
                self.root, self.module
            )));
        }
        let srcinfo = if has(".SRCINFO") {
            let file = format!("{}/{build_dir}/.SRCINFO", self.module);
            let text = self
                .cvs(&["checkout", "-p", "-D", &revision.0, &file], None)
                .map_err(|e| SourceError::Package(e.to_string()))?;
            if text.len() > crate::meta::MAX_SRCINFO_BYTES {
                return Err(SourceError::Package(format!(
                    "{build_dir}/.SRCINFO is {} bytes, larger than the limit of {}",
                    text.len(),
                    crate::meta::MAX_SRCINFO_BYTES
                )));
            }
            Some(text)
        } else {
            None
        };
        Ok(Files {
            srcinfo,
            has_pkgbuild: has("PKGBUILD"),
            packager: None,
            changed_at: None,
        })
    }

    /// Reads packages from one export of the whole module.
    fn read_exported(
        &self,
        revision: &Revision,
        entries: &[Entry],
    ) -> Vec<Result<Files, SourceError>> {
        let tmp = match tempfile::tempdir() {
            Ok(t) => t,
            Err(e) => {
                let e = format!("temporary directory: {e}");
                return entries
                    .iter()
                    .map(|_| Err(SourceError::Unavailable(e.clone())))
                    .collect();
            }
        };
        if let Err(e) = self.cvs(
            &["export", "-D", &revision.0, &self.module],
            Some(tmp.path()),
        ) {
            return entries
                .iter()
                .map(|_| Err(SourceError::Package(e.to_string())))
                .collect();
        }
        entries
            .iter()
            .map(|entry| {
                let build_dir = self.layout.build_dir(&entry.path);
                let dir = tmp.path().join(&self.module).join(&build_dir);
                read_dir_files(&dir, &build_dir).map_err(|e| {
                    SourceError::Package(format!("cvs {} {}: {e}", self.root, self.module))
                })
            })
            .collect()
    }
}

impl Source for Cvs {
    fn kind(&self) -> &'static str {
        "cvs"
    }

    fn list(&mut self, _known: Option<&Revision>) -> Result<Option<Listing>, SourceError> {
        // Without a repository-wide revision there is no cheaper test than listing.
        let revision = now_revision(-SETTLE);
        let out = self.cvs(&["rls", "-e", "-R", "-D", &revision.0, &self.module], None)?;
        let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut names: HashMap<String, Vec<String>> = HashMap::new();
        let mut dir = String::new();
        for line in out.lines() {
            if let Some(section) = line.strip_suffix(':') {
                dir = self.relative(&format!("{section}/")).unwrap_or_default();
                continue;
            }
            // Entries: `/name/revision/date//` for files, `D/name////` for directories.
            let Some(rest) = line.strip_prefix('/') else {
                continue;
            };
            let mut fields = rest.split('/');
            let (Some(name), Some(rev)) = (fields.next(), fields.next()) else {
                continue;
            };
            let path = format!("{dir}{name}");
            if let Some(pkg) = self.layout.package_of(&path)
                && path != pkg
            {
                files
                    .entry(pkg.clone())
                    .or_default()
                    .push(format!("{path} {rev}"));
                names
                    .entry(pkg.clone())
                    .or_default()
                    .push(path[pkg.len() + 1..].to_owned());
            }
        }
        let entries = files
            .into_iter()
            .filter(|(pkg, _)| !pkg.split('/').any(is_ignored))
            .map(|(path, mut revs)| {
                revs.sort();
                let digest = Sha256::digest(revs.join("\n").as_bytes());
                Entry {
                    path,
                    content_id: hex(&digest[..16]),
                }
            })
            .collect();
        self.listed = Some((revision.clone(), names));
        Ok(Some(Listing { revision, entries }))
    }

    fn read(&mut self, revision: &Revision, entries: &[Entry]) -> Vec<Result<Files, SourceError>> {
        let paths: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
        let packagers = self.packagers(revision, &paths);
        let listed = self
            .listed
            .as_ref()
            .filter(|(r, _)| r == revision && entries.len() <= EXPORT_ALL_ABOVE)
            .map(|(_, names)| names);
        let results: Vec<Result<Files, SourceError>> = match listed {
            Some(names) => entries
                .iter()
                .map(|entry| self.read_listed(revision, entry, names))
                .collect(),
            None => self.read_exported(revision, entries),
        };
        results
            .into_iter()
            .zip(entries)
            .map(|(files, entry)| {
                files.map(|mut f| {
                    if let Some(change) = packagers.get(&entry.path) {
                        change.fill(&mut f);
                    }
                    f
                })
            })
            .collect()
    }

    fn changed_since(&mut self, since: &Revision) -> Result<(Revision, Vec<String>), SourceError> {
        let now = now_revision(-SETTLE);
        let out = self.cvs(
            &["rdiff", "-s", "-D", &since.0, "-D", &now.0, &self.module],
            None,
        )?;
        let mut changed: Vec<String> = out
            .lines()
            .filter_map(|l| l.strip_prefix("File "))
            .filter_map(|l| l.split(' ').next())
            .filter_map(|p| self.relative(&format!("/{p}")))
            .filter_map(|p| self.layout.package_of(&p))
            .collect();
        changed.sort();
        changed.dedup();
        Ok((now, changed))
    }

    fn export(&mut self, revision: &Revision, path: &str, dest: &Path) -> Result<(), SourceError> {
        let tmp = tempfile::tempdir()
            .map_err(|e| SourceError::Unavailable(format!("temporary directory: {e}")))?;
        let build_dir = self.layout.build_dir(path);
        self.export_into(revision, std::slice::from_ref(&build_dir), tmp.path())?;
        let exported = tmp.path().join(&self.module).join(&build_dir);
        if !exported.is_dir() {
            return Err(SourceError::Package(format!(
                "cvs {} {}: no package {path} at {revision}",
                self.root, self.module
            )));
        }
        fs::rename(&exported, dest)
            .map_err(|e| SourceError::Unavailable(format!("{}: {e}", dest.display())))
    }

    fn bump_pkgrel(&mut self, path: &str, message: &str) -> Result<Revision, SourceError> {
        let tmp = tempfile::tempdir()
            .map_err(|e| SourceError::Unavailable(format!("temporary directory: {e}")))?;
        let module = format!("{}/{}", self.module, self.layout.build_dir(path));
        self.cvs(&["checkout", "-d", "wc", &module], Some(tmp.path()))?;
        let wc = tmp.path().join("wc");
        let pkgbuild = fs::read_to_string(wc.join("PKGBUILD"))
            .map_err(|e| SourceError::Package(format!("cvs {module}: PKGBUILD: {e}")))?;
        let srcinfo = fs::read_to_string(wc.join(".SRCINFO")).ok();
        let bumped = bump::bump(&pkgbuild, srcinfo.as_deref())
            .map_err(|e| SourceError::Package(format!("cvs {module}: {e}")))?;
        fs::write(wc.join("PKGBUILD"), &bumped.pkgbuild)
            .map_err(|e| SourceError::Unavailable(format!("PKGBUILD: {e}")))?;
        if let Some(s) = &bumped.srcinfo {
            fs::write(wc.join(".SRCINFO"), s)
                .map_err(|e| SourceError::Unavailable(format!(".SRCINFO: {e}")))?;
        }
        self.cvs(&["commit", "-m", message], Some(&wc))?;
        // The commit is dated now; a revision a second later surely includes it.
        Ok(now_revision(time::Duration::seconds(1)))
    }

    fn watch_paths(&self) -> Vec<PathBuf> {
        let local = self.root.strip_prefix(":local:").unwrap_or(&self.root);
        if local.starts_with('/') {
            vec![Path::new(local).join(&self.module)]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlog_dates_of_both_cvs_versions_are_read_as_utc() {
        // 2024-01-02 03:04:05 UTC.
        assert_eq!(rlog_date("2024/01/02 03:04:05"), Some(1_704_164_645));
        assert_eq!(rlog_date("2024-01-02 03:04:05 +0000"), Some(1_704_164_645));
        assert_eq!(rlog_date("2024-01-02 05:04:05 +0200"), Some(1_704_164_645));
        assert_eq!(rlog_date("yesterday"), None);
    }
}

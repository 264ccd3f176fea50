//! Subversion sources, read with the `svn` client and its `--xml` output.
//!
//! A package's content id is its directory's last-changed revision, which Subversion moves
//! whenever anything below the directory changes; its packager is that revision's author.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::bump;
use crate::cmd;
use crate::layout::{Layout, is_ignored};
use crate::meta::MAX_SRCINFO_BYTES;
use crate::source::{Entry, Files, LastChange, Listing, Revision, Source, SourceError};

/// Options of a `kind = "svn"` source.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct SvnOptions {
    /// The repository URL of the directory holding the packages: `file:///srv/svn/packages`,
    /// `svn://host/repo/packages`, `https://...`.
    pub url: String,
}

const LIMIT: Duration = Duration::from_secs(600);
/// Above this many packages to read, one export of the whole tree beats one export each.
const EXPORT_ALL_ABOVE: usize = 16;

pub fn open(options: SvnOptions, layout: Layout) -> Result<Box<dyn Source>, String> {
    let mut url = options.url;
    while url.ends_with('/') {
        url.pop();
    }
    let known = ["file://", "svn://", "svn+ssh://", "http://", "https://"];
    if !known.iter().any(|scheme| url.starts_with(scheme)) {
        return Err(format!(
            "{url:?} is not a Subversion URL (file://, svn://, svn+ssh://, http(s)://)"
        ));
    }
    Ok(Box::new(Svn {
        url,
        layout,
        authors: HashMap::new(),
    }))
}

#[derive(Debug)]
pub struct Svn {
    url: String,
    layout: Layout,
    /// Each package's last change, from the latest listing.
    authors: HashMap<String, LastChange>,
}

impl Svn {
    fn svn(&self, args: &[&str], dir: Option<&Path>) -> Result<String, SourceError> {
        let mut all = vec!["--non-interactive"];
        all.extend_from_slice(args);
        cmd::run("svn", &all, dir, LIMIT)
            .map_err(|e| SourceError::Unavailable(format!("svn {}: {e}", self.url)))
    }

    fn head(&self) -> Result<u64, SourceError> {
        let xml = self.svn(&["info", "--xml", &self.url], None)?;
        let doc = parse_xml(&self.url, &xml)?;
        doc.descendants()
            .find(|n| n.has_tag_name("entry"))
            .and_then(|n| n.attribute("revision"))
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| {
                SourceError::Unavailable(format!("svn {}: `svn info` names no revision", self.url))
            })
    }

    /// `(name, last-changed revision, last change)` of the directories in `url` at `rev`.
    fn dirs(&self, url: &str, rev: u64) -> Result<Vec<(String, String, LastChange)>, SourceError> {
        let xml = self.svn(&["list", "--xml", &format!("{url}@{rev}")], None)?;
        let doc = parse_xml(&self.url, &xml)?;
        Ok(doc
            .descendants()
            .filter(|n| n.has_tag_name("entry") && n.attribute("kind") == Some("dir"))
            .filter_map(|n| {
                let name = n
                    .children()
                    .find(|c| c.has_tag_name("name"))?
                    .text()?
                    .to_owned();
                let commit = n.children().find(|c| c.has_tag_name("commit"))?;
                let changed = commit.attribute("revision")?.to_owned();
                let author = commit
                    .children()
                    .find(|c| c.has_tag_name("author"))
                    .and_then(|a| a.text())
                    .unwrap_or("")
                    .to_owned();
                // `<date>` is the revision's, in UTC with microseconds: RFC 3339.
                let at = commit
                    .children()
                    .find(|c| c.has_tag_name("date"))
                    .and_then(|d| d.text())
                    .and_then(|d| {
                        time::OffsetDateTime::parse(
                            d,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .ok()
                    })
                    .map(time::OffsetDateTime::unix_timestamp);
                Some((name, changed, LastChange { author, at }))
            })
            .filter(|(name, _, _)| !is_ignored(name))
            .collect())
    }

    fn revision(revision: &Revision) -> Result<u64, SourceError> {
        revision
            .0
            .parse()
            .map_err(|_| SourceError::Refused(format!("{revision:?} is not a Subversion revision")))
    }
}

impl Source for Svn {
    fn kind(&self) -> &'static str {
        "svn"
    }

    fn list(&mut self, known: Option<&Revision>) -> Result<Option<Listing>, SourceError> {
        let rev = self.head()?;
        let revision = Revision(rev.to_string());
        if known == Some(&revision) {
            return Ok(None);
        }
        let mut entries = Vec::new();
        self.authors.clear();
        let top = self.dirs(&self.url, rev)?;
        for (name, changed, change) in top {
            if self.layout.depth == 1 {
                self.authors.insert(name.clone(), change);
                entries.push(Entry {
                    path: name,
                    content_id: changed,
                });
            } else {
                for (pkg, changed, change) in self.dirs(&format!("{}/{name}", self.url), rev)? {
                    let path = format!("{name}/{pkg}");
                    self.authors.insert(path.clone(), change);
                    entries.push(Entry {
                        path,
                        content_id: changed,
                    });
                }
            }
        }
        Ok(Some(Listing { revision, entries }))
    }

    fn read(&mut self, revision: &Revision, entries: &[Entry]) -> Vec<Result<Files, SourceError>> {
        let all_failed = |e: SourceError| {
            entries
                .iter()
                .map(|_| Err(SourceError::Package(e.to_string())))
                .collect()
        };
        let rev = match Self::revision(revision) {
            Ok(r) => r,
            Err(e) => return all_failed(e),
        };
        let tmp = match tempfile::tempdir() {
            Ok(t) => t,
            Err(e) => {
                return all_failed(SourceError::Unavailable(format!(
                    "temporary directory: {e}"
                )));
            }
        };
        let whole = tmp.path().join("all");
        let export_all = entries.len() > EXPORT_ALL_ABOVE;
        if export_all
            && let Err(e) = self.svn(
                &[
                    "export",
                    "-q",
                    &format!("{}@{rev}", self.url),
                    whole.to_str().unwrap_or_default(),
                ],
                None,
            )
        {
            return all_failed(e);
        }
        entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let build_dir = self.layout.build_dir(&entry.path);
                let dir = if export_all {
                    whole.join(&build_dir)
                } else {
                    let dir = tmp.path().join(i.to_string());
                    self.svn(
                        &[
                            "export",
                            "-q",
                            &format!("{}/{build_dir}@{rev}", self.url),
                            dir.to_str().unwrap_or_default(),
                        ],
                        None,
                    )
                    .map_err(|e| SourceError::Package(e.to_string()))?;
                    dir
                };
                let mut files = read_dir_files(&dir, &build_dir)
                    .map_err(|e| SourceError::Package(format!("svn {}: {e}", self.url)))?;
                if let Some(change) = self.authors.get(&entry.path) {
                    change.fill(&mut files);
                }
                Ok(files)
            })
            .collect()
    }

    fn changed_since(&mut self, since: &Revision) -> Result<(Revision, Vec<String>), SourceError> {
        let old = Self::revision(since)?;
        let new = self.head()?;
        if old >= new {
            return Ok((Revision(new.to_string()), Vec::new()));
        }
        let range = format!("{old}:{new}");
        let xml = self.svn(
            &["diff", "--summarize", "--xml", "-r", &range, &self.url],
            None,
        )?;
        let doc = parse_xml(&self.url, &xml)?;
        let prefix = format!("{}/", self.url);
        let mut changed: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("path"))
            .filter_map(|n| n.text())
            .filter_map(|p| p.strip_prefix(&prefix))
            .filter_map(|p| self.layout.package_of(p))
            .collect();
        changed.sort();
        changed.dedup();
        Ok((Revision(new.to_string()), changed))
    }

    fn export(&mut self, revision: &Revision, path: &str, dest: &Path) -> Result<(), SourceError> {
        let rev = Self::revision(revision)?;
        let url = format!("{}/{}@{rev}", self.url, self.layout.build_dir(path));
        self.svn(
            &["export", "-q", &url, dest.to_str().unwrap_or_default()],
            None,
        )
        .map(|_| ())
        .map_err(|e| SourceError::Package(e.to_string()))
    }

    fn bump_pkgrel(&mut self, path: &str, message: &str) -> Result<Revision, SourceError> {
        let tmp = tempfile::tempdir()
            .map_err(|e| SourceError::Unavailable(format!("temporary directory: {e}")))?;
        let wc = tmp.path().join("wc");
        let url = format!("{}/{}", self.url, self.layout.build_dir(path));
        self.svn(
            &["checkout", "-q", &url, wc.to_str().unwrap_or_default()],
            None,
        )?;
        let pkgbuild = fs::read_to_string(wc.join("PKGBUILD"))
            .map_err(|e| SourceError::Package(format!("svn {url}: PKGBUILD: {e}")))?;
        let srcinfo = fs::read_to_string(wc.join(".SRCINFO")).ok();
        let bumped = bump::bump(&pkgbuild, srcinfo.as_deref())
            .map_err(|e| SourceError::Package(format!("svn {url}: {e}")))?;
        write(&wc.join("PKGBUILD"), &bumped.pkgbuild)?;
        if let Some(s) = &bumped.srcinfo {
            write(&wc.join(".SRCINFO"), s)?;
        }
        let out = self.svn(&["commit", "-m", message], Some(&wc))?;
        out.lines()
            .find_map(|l| {
                l.strip_prefix("Committed revision ")?
                    .trim_end_matches('.')
                    .parse::<u64>()
                    .ok()
            })
            .map(|r| Revision(r.to_string()))
            .ok_or_else(|| {
                SourceError::Unavailable(format!("svn {url}: commit printed no revision: {out}"))
            })
    }

    fn watch_paths(&self) -> Vec<PathBuf> {
        // Only a repository on this machine can be watched: its `db` changes on every commit.
        let root = self
            .svn(&["info", "--xml", &self.url], None)
            .ok()
            .and_then(|xml| {
                let doc = roxmltree::Document::parse(&xml).ok()?;
                let root = doc
                    .descendants()
                    .find(|n| n.has_tag_name("root"))?
                    .text()?
                    .to_owned();
                Some(root)
            });
        match root.as_deref().and_then(|r| r.strip_prefix("file://")) {
            Some(path) => vec![PathBuf::from(path).join("db")],
            None => Vec::new(),
        }
    }
}

fn parse_xml<'a>(url: &str, xml: &'a str) -> Result<roxmltree::Document<'a>, SourceError> {
    roxmltree::Document::parse(xml)
        .map_err(|e| SourceError::Unavailable(format!("svn {url}: unreadable XML from svn: {e}")))
}

fn write(path: &Path, text: &str) -> Result<(), SourceError> {
    fs::write(path, text).map_err(|e| SourceError::Unavailable(format!("{}: {e}", path.display())))
}

/// Reads .SRCINFO and looks for PKGBUILD in an exported package directory.
pub(crate) fn read_dir_files(dir: &Path, name: &str) -> Result<Files, String> {
    if !dir.is_dir() {
        return Err(format!("no directory {name}"));
    }
    let srcinfo_path = dir.join(".SRCINFO");
    let srcinfo = match fs::symlink_metadata(&srcinfo_path) {
        Err(_) => None,
        Ok(meta) if !meta.is_file() => return Err(format!("{name}/.SRCINFO is not a file")),
        Ok(meta) if meta.len() > MAX_SRCINFO_BYTES as u64 => {
            return Err(format!(
                "{name}/.SRCINFO is {} bytes, larger than the limit of {MAX_SRCINFO_BYTES}",
                meta.len()
            ));
        }
        Ok(_) => {
            Some(fs::read_to_string(&srcinfo_path).map_err(|e| format!("{name}/.SRCINFO: {e}"))?)
        }
    };
    Ok(Files {
        srcinfo,
        has_pkgbuild: dir.join("PKGBUILD").is_file(),
        packager: None,
        changed_at: None,
    })
}

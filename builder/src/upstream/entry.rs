//! One `source=()` entry, read as makepkg reads it (`get_protocol`, `get_filename` and
//! `get_url` in makepkg's `util/source.sh`): makepkg decides what a build finds in `SRCDEST`,
//! so the fetcher must put each source exactly where makepkg will look for it.

use std::fmt;

/// A name in the source cache: one plain path component. The entry comes from the package,
/// and the fetcher writes there as the builder: `..` or a slash would let a package write
/// anywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheName(String);

impl CacheName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let bad = name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('\0')
            || name.len() > 255;
        if bad {
            return Err(format!("{name:?} is not a plain file name"));
        }
        Ok(CacheName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A version control system makepkg knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vcs {
    Git,
    Svn,
    Hg,
    Bzr,
    Fossil,
}

impl Vcs {
    fn from_protocol(p: &str) -> Option<Self> {
        Some(match p {
            "git" => Vcs::Git,
            "svn" => Vcs::Svn,
            "hg" => Vcs::Hg,
            "bzr" => Vcs::Bzr,
            "fossil" => Vcs::Fossil,
            _ => return None,
        })
    }

    pub fn client(self) -> &'static str {
        match self {
            Vcs::Git => "git",
            Vcs::Svn => "svn",
            Vcs::Hg => "hg",
            Vcs::Bzr => "bzr",
            Vcs::Fossil => "fossil",
        }
    }
}

/// Where an entry's content comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file beside the PKGBUILD: in the source tarball, nothing to fetch.
    Local,
    /// A download (`http`, `https`, `ftp`).
    Download { url: url::Url },
    /// A repository, cloned with its own client; `url` is what the client gets (no `git+`
    /// prefix, no fragment), `fragment` the part after `#`.
    Repository {
        vcs: Vcs,
        url: url::Url,
        fragment: Option<String>,
    },
}

/// An entry: the name it has in the cache, and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: CacheName,
    pub origin: Origin,
}

impl Entry {
    /// Reads `entry` as makepkg does. Protocols makepkg fetches with tools this builder does
    /// not run for packages (`scp`, `file`, `ssh` transports) are refused by name.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let (given_name, url) = match entry.split_once("::") {
            Some((name, url)) => (Some(name), url),
            None => (None, entry),
        };
        let Some((scheme, _)) = url.split_once("://") else {
            let name = CacheName::parse(given_name.unwrap_or(url))?;
            return Ok(Entry {
                name,
                origin: Origin::Local,
            });
        };
        // `git+https://…`: the protocol is the part before the `+`, the transport after it.
        let (protocol, transport) = match scheme.split_once('+') {
            Some((p, t)) => (p, Some(t)),
            None => (scheme, None),
        };
        let origin = if let Some(vcs) = Vcs::from_protocol(protocol) {
            let bare = url.strip_prefix(&format!("{protocol}+")).unwrap_or(url);
            let (bare, fragment) = match bare.split_once('#') {
                Some((u, f)) => (u, Some(f.to_owned())),
                None => (bare, None),
            };
            let bare = bare.split('?').next().unwrap_or(bare);
            let transport = transport.unwrap_or(protocol);
            let allowed: &[&str] = match vcs {
                Vcs::Git => &["http", "https", "git"],
                Vcs::Svn => &["http", "https", "svn"],
                _ => &["http", "https"],
            };
            if !allowed.contains(&transport) {
                return Err(format!(
                    "{entry}: {} over {transport} is not fetched by builders (only {})",
                    vcs.client(),
                    allowed.join(", ")
                ));
            }
            let url = url::Url::parse(bare).map_err(|e| format!("{entry}: {e}"))?;
            Origin::Repository { vcs, url, fragment }
        } else if ["http", "https", "ftp"].contains(&protocol) && transport.is_none() {
            let url = url::Url::parse(url).map_err(|e| format!("{entry}: {e}"))?;
            Origin::Download { url }
        } else {
            return Err(format!(
                "{entry}: the {scheme} protocol is not fetched by builders (http, https, ftp, and git, svn, hg, bzr, fossil repositories are)"
            ));
        };
        let name = match given_name {
            Some(n) => n.to_owned(),
            None => default_name(url, &origin),
        };
        Ok(Entry {
            name: CacheName::parse(&name).map_err(|e| format!("{entry}: {e}"))?,
            origin,
        })
    }
}

/// makepkg's `get_filename` for an entry without `NAME::`.
fn default_name(url: &str, origin: &Origin) -> String {
    match origin {
        Origin::Repository { vcs, .. } => {
            let name = url.split('#').next().unwrap_or(url);
            let name = name.split('?').next().unwrap_or(name);
            let name = name.trim_end_matches('/');
            let name = name.rsplit('/').next().unwrap_or(name);
            match vcs {
                Vcs::Git => name.split(".git").next().unwrap_or(name).to_owned(),
                Vcs::Fossil => format!("{name}.fossil"),
                _ => name.to_owned(),
            }
        }
        _ => url.rsplit('/').next().unwrap_or(url).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_named_as_makepkg_names_them() {
        let e = Entry::parse("https://example.org/dl/hello-1.0.tar.gz").unwrap();
        assert_eq!(e.name.as_str(), "hello-1.0.tar.gz");
        assert!(matches!(e.origin, Origin::Download { .. }));
        let e = Entry::parse("h.tgz::https://example.org/dl/download?id=3").unwrap();
        assert_eq!(e.name.as_str(), "h.tgz");
        let e = Entry::parse("git+https://example.org/team/repo.git#tag=v1.0").unwrap();
        assert_eq!(e.name.as_str(), "repo");
        assert_eq!(
            e.origin,
            Origin::Repository {
                vcs: Vcs::Git,
                url: "https://example.org/team/repo.git".parse().unwrap(),
                fragment: Some("tag=v1.0".into()),
            }
        );
        let e = Entry::parse("svn+https://example.org/svn/trunk/#revision=5").unwrap();
        assert_eq!(e.name.as_str(), "trunk");
        let e = Entry::parse("fossil+https://example.org/f").unwrap();
        assert_eq!(e.name.as_str(), "f.fossil");
        let e = Entry::parse("hello.patch").unwrap();
        assert_eq!(e.origin, Origin::Local);
    }

    #[test]
    fn hostile_entries_are_refused_with_the_reason() {
        for (entry, why) in [
            (
                "../../etc/cron.d/x::https://e.org/x",
                "not a plain file name",
            ),
            ("..::https://e.org/x", "not a plain file name"),
            ("https://e.org/", "not a plain file name"),
            ("file:///etc/shadow", "file protocol is not fetched"),
            ("scp://host/x", "scp protocol is not fetched"),
            ("git+file:///srv/repo", "git over file is not fetched"),
            ("git+ssh://host/repo", "git over ssh is not fetched"),
        ] {
            let err = Entry::parse(entry).unwrap_err();
            assert!(err.contains(why), "{entry}: {err}");
        }
    }
}

//! What the demo builds: the bundled examples in a fresh git repository, or a source given as
//! `git:PATH`, `svn:URL` or `cvs:CVSROOT:MODULE`.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;

use crate::localfarm::configs::{Source, SourceKind};

/// A source named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Git(String),
    Svn(String),
    Cvs { root: String, module: String },
}

impl FromStr for SourceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?}: expected git:PATH, svn:URL or cvs:CVSROOT:MODULE");
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "git" => Ok(SourceSpec::Git(rest.to_owned())),
            "svn" => Ok(SourceSpec::Svn(rest.to_owned())),
            "cvs" => {
                let (root, module) = rest.rsplit_once(':').ok_or_else(bad)?;
                Ok(SourceSpec::Cvs {
                    root: root.to_owned(),
                    module: module.to_owned(),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// Prepares the source in `dir` and returns the master's `[[source]]` table for it.
pub fn prepare(spec: Option<&SourceSpec>, dir: &Path) -> anyhow::Result<Source> {
    let main = |kind| Source {
        name: "main".to_owned(),
        kind,
    };
    Ok(match spec {
        None => {
            let packages = dir.join("packages");
            crate::examples::write(&packages).context("writing the example packages")?;
            commit_all(&packages, "The Quarters example packages")
                .context("making a git repository of the examples")?;
            Source {
                name: "examples".to_owned(),
                // Relative to the master's config, which is in `dir` too.
                kind: SourceKind::Git {
                    path: "packages".into(),
                },
            }
        }
        Some(SourceSpec::Git(path)) => {
            let path = std::fs::canonicalize(path).with_context(|| format!("git source {path}"))?;
            main(SourceKind::Git { path })
        }
        Some(SourceSpec::Svn(url)) => main(SourceKind::Svn { url: url.clone() }),
        Some(SourceSpec::Cvs { root, module }) => main(SourceKind::Cvs {
            root: root.clone(),
            module: module.clone(),
        }),
    })
}

/// `git init` and commit everything in `dir`, with git2.
pub(crate) fn commit_all(dir: &Path, message: &str) -> Result<(), git2::Error> {
    let repo = git2::Repository::init(dir)?;
    let mut index = repo.index()?;
    index.add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = git2::Signature::now("Quarters", "quarters@quarters.invalid")?;
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &[])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_source_specs() {
        assert_eq!("git:/srv/p".parse(), Ok(SourceSpec::Git("/srv/p".into())));
        assert_eq!(
            "svn:file:///srv/svn/p".parse(),
            Ok(SourceSpec::Svn("file:///srv/svn/p".into()))
        );
        assert_eq!(
            "cvs:/srv/cvs:packages".parse(),
            Ok(SourceSpec::Cvs {
                root: "/srv/cvs".into(),
                module: "packages".into()
            })
        );
        assert!(
            "hg:/x"
                .parse::<SourceSpec>()
                .unwrap_err()
                .contains("expected git:PATH")
        );
    }

    #[test]
    fn a_source_on_the_command_line_becomes_its_source_table() {
        let dir = tempfile::tempdir().unwrap();
        let spec: SourceSpec = "cvs::pserver:anon@cvs.example.org:/cvs \"root\":packages"
            .parse()
            .unwrap();
        let extra = crate::localfarm::configs::MasterExtra {
            sources: vec![prepare(Some(&spec), dir.path()).unwrap()],
            ..Default::default()
        };
        let expected: toml::Table = toml::from_str(
            r#"
            [[source]]
            name = "main"
            kind = "cvs"
            root = ':pserver:anon@cvs.example.org:/cvs "root"'
            module = "packages"
            "#,
        )
        .unwrap();
        assert_eq!(crate::localfarm::configs::table(&extra).unwrap(), expected);
        let svn: SourceSpec = "svn:file:///srv/svn/p".parse().unwrap();
        assert_eq!(
            prepare(Some(&svn), dir.path()).unwrap().kind,
            SourceKind::Svn {
                url: "file:///srv/svn/p".into()
            }
        );
    }
}

//! What `quartersctl promote` moves into the live repository: the pkgbases asked for and, with
//! `--with-deps`, every pkgbase of the build repository they need that the live repository
//! lacks, until nothing is missing. Pure, as the planner is: the core reads the repository
//! tables, this decides, the core commits.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::{self, Write as _};

use quarters_common::Arch;

use super::binaries::{Binaries, BinaryPackage, RepoKind};
use super::relation::{Requirement, vercmp};
use crate::db::RepoEntry;

/// A promotion asked for.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Package names or pkgbases.
    pub names: &'a [String],
    /// Whether the build repository's packages they need come along.
    pub with_deps: bool,
    /// What every machine has: needs met without a package.
    pub build_root: &'a HashSet<String>,
}

/// What may move, all of it consistent.
#[derive(Debug, PartialEq, Eq)]
pub struct Promotion<'a> {
    /// Every build-repository entry of the promoted pkgbases.
    pub entries: Vec<&'a RepoEntry>,
    /// The pkgbases asked for; the others in `entries` came along as dependencies.
    pub requested: BTreeSet<String>,
}

/// A need of a package being promoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    /// The dependency as the package states it.
    pub dep: String,
    /// The package that states it.
    pub by: String,
}

/// Why nothing may move.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// A name asked for is in no build-repository package.
    NotInBuild { name: String },
    /// A package would replace a newer one in the live repository.
    Downgrade {
        pkgname: String,
        version: String,
        live: String,
    },
    /// Needs that neither repository can meet.
    Unavailable(Vec<Need>),
    /// Needs that build-repository pkgbases meet, not asked for (without `--with-deps`).
    NeedsDependencies(BTreeMap<String, Vec<Need>>),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::NotInBuild { name } => write!(f, "{name} is not in the build repository"),
            Refused::Downgrade {
                pkgname,
                version,
                live,
            } => write!(
                f,
                "{pkgname} {version} is older than the live {live}; promoting it would downgrade"
            ),
            Refused::Unavailable(needs) => {
                f.write_str("cannot promote:")?;
                for n in needs {
                    write!(
                        f,
                        "\n  {} needs {}, which neither repository has",
                        n.by, n.dep
                    )?;
                }
                Ok(())
            }
            Refused::NeedsDependencies(missing) => {
                let mut text = String::from(
                    "refused: these dependencies are not live and not being promoted:",
                );
                for (pkgbase, needs) in missing {
                    let needs: Vec<String> = needs
                        .iter()
                        .map(|n| format!("{} (needed by {})", n.dep, n.by))
                        .collect();
                    let _ = write!(text, "\n  {pkgbase}: {}", needs.join(", "));
                }
                text.push_str("\npromote them too, or add --with-deps");
                f.write_str(&text)
            }
        }
    }
}

/// The promotion of `request` over the repository tables `entries` (both repositories).
pub fn closure<'a>(
    entries: &'a [RepoEntry],
    request: &Request<'_>,
) -> Result<Promotion<'a>, Refused> {
    let build: Vec<&RepoEntry> = entries
        .iter()
        .filter(|e| e.repo == RepoKind::Build)
        .collect();
    let live: Vec<&RepoEntry> = entries
        .iter()
        .filter(|e| e.repo == RepoKind::Live)
        .collect();
    let mut selected = BTreeSet::new();
    for name in request.names {
        let Some(e) = build
            .iter()
            .find(|e| &e.pkgbase == name || &e.pkgname == name)
        else {
            return Err(Refused::NotInBuild { name: name.clone() });
        };
        selected.insert(e.pkgbase.clone());
    }
    let requested = selected.clone();
    loop {
        let promoting: Vec<&RepoEntry> = build
            .iter()
            .copied()
            .filter(|e| selected.contains(&e.pkgbase))
            .collect();
        if let Some(refusal) = downgrade(&promoting, &live) {
            return Err(refusal);
        }
        // The live repository as it would be: what is promoted replaces its namesake.
        let after = Binaries::new(
            live.iter()
                .filter(|l| {
                    !promoting
                        .iter()
                        .any(|p| p.pkgname == l.pkgname && p.arch == l.arch)
                })
                .chain(promoting.iter())
                .filter_map(|e| binary(e))
                .collect(),
        );
        let mut missing: BTreeMap<String, Vec<Need>> = BTreeMap::new();
        let mut unavailable = Vec::new();
        for e in &promoting {
            for dep in &e.depends {
                let req = Requirement::parse(dep);
                if request.build_root.contains(req.name.as_ref()) || after.satisfies(&req, &e.arch)
                {
                    continue;
                }
                let need = Need {
                    dep: dep.clone(),
                    by: e.pkgname.clone(),
                };
                // Whichever repository it is in, a package that runs on this one's
                // architecture (its own, or `any`) may be what it needs.
                let provider = build.iter().find(|b| {
                    binary(b).is_some_and(|p| Binaries::new(vec![p]).satisfies(&req, &e.arch))
                });
                match provider {
                    Some(p) => missing.entry(p.pkgbase.clone()).or_default().push(need),
                    None => unavailable.push(need),
                }
            }
        }
        if !unavailable.is_empty() {
            return Err(Refused::Unavailable(unavailable));
        }
        if missing.is_empty() {
            return Ok(Promotion {
                entries: promoting,
                requested,
            });
        }
        if !request.with_deps {
            return Err(Refused::NeedsDependencies(missing));
        }
        selected.extend(missing.into_keys());
    }
}

/// The first package of `promoting` older than its live namesake.
fn downgrade(promoting: &[&RepoEntry], live: &[&RepoEntry]) -> Option<Refused> {
    promoting.iter().find_map(|e| {
        let l = live
            .iter()
            .find(|l| l.pkgname == e.pkgname && l.arch == e.arch)?;
        vercmp(&l.version, &e.version)
            .is_gt()
            .then(|| Refused::Downgrade {
                pkgname: e.pkgname.clone(),
                version: e.version.clone(),
                live: l.version.clone(),
            })
    })
}

/// A repository entry as the planner's binaries; `None` for an architecture that does not
/// parse, which no accepted package has (the pull checked it).
fn binary(e: &RepoEntry) -> Option<BinaryPackage> {
    Some(BinaryPackage {
        repo: RepoKind::Live,
        arch: Arch::parse(&e.pkg_arch).ok()?,
        pkgname: e.pkgname.clone(),
        pkgbase: e.pkgbase.clone(),
        version: e.version.clone(),
        provides: e.provides.clone(),
    })
}

#[cfg(test)]
mod tests;

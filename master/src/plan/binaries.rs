//! The packages already in binary repositories, indexed for dependency resolution.

use std::collections::HashMap;

use super::relation::{Requirement, provision, vercmp};

/// Which repository a binary package is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RepoKind {
    Build,
    Live,
}

impl RepoKind {
    /// How `why` names it: "the build repository".
    pub fn describe(self) -> &'static str {
        match self {
            RepoKind::Build => "the build repository",
            RepoKind::Live => "the live repository",
        }
    }
}

/// One package file in a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinaryPackage {
    pub repo: RepoKind,
    /// The package's own architecture (`any` packages serve every architecture).
    pub arch: String,
    pub pkgname: String,
    pub pkgbase: String,
    pub version: String,
    pub provides: Vec<String>,
}

/// Binary packages by every name they answer to.
#[derive(Debug, Default)]
pub struct Binaries {
    packages: Vec<BinaryPackage>,
    by_name: HashMap<String, Vec<usize>>,
    /// Every plan asks for each build's version in the repositories: indexed, so that a plan
    /// stays linear in the number of packages.
    by_base: HashMap<String, Vec<usize>>,
}

impl Binaries {
    pub fn new(packages: Vec<BinaryPackage>) -> Self {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_base: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in packages.iter().enumerate() {
            by_base.entry(p.pkgbase.clone()).or_default().push(i);
            by_name.entry(p.pkgname.clone()).or_default().push(i);
            for prov in &p.provides {
                by_name
                    .entry(provision(prov).0.to_owned())
                    .or_default()
                    .push(i);
            }
        }
        Binaries {
            packages,
            by_name,
            by_base,
        }
    }

    pub fn packages(&self) -> &[BinaryPackage] {
        &self.packages
    }

    /// Whether a package in either repository, for `arch`, satisfies `req`.
    pub fn satisfies(&self, req: &Requirement<'_>, arch: &str) -> bool {
        self.satisfier(req, arch).is_some()
    }

    /// The newest package in either repository, for `arch`, that satisfies `req`.
    pub fn satisfier(&self, req: &Requirement<'_>, arch: &str) -> Option<&BinaryPackage> {
        self.by_name
            .get(req.name.as_ref())?
            .iter()
            .map(|&i| &self.packages[i])
            .filter(|p| {
                (p.arch == arch || p.arch == "any")
                    && (req.satisfied_by(&p.pkgname, Some(&p.version))
                        || p.provides.iter().any(|prov| {
                            let (name, version) = provision(prov);
                            req.satisfied_by(name, version)
                        }))
            })
            .max_by(|a, b| vercmp(&a.version, &b.version))
    }

    /// The newest version of `pkgbase` in `repo` for build architecture `arch`.
    pub fn version_of(&self, repo: RepoKind, pkgbase: &str, arch: &str) -> Option<&str> {
        self.by_base
            .get(pkgbase)?
            .iter()
            .map(|&i| &self.packages[i])
            .filter(|p| {
                p.repo == repo && p.pkgbase == pkgbase && (p.arch == arch || p.arch == "any")
            })
            .map(|p| p.version.as_str())
            .max_by(|a, b| vercmp(a, b))
    }
}

//! The packages already in binary repositories, indexed for dependency resolution.

use std::collections::HashMap;

use quarters_common::Arch;

use super::relation::{Requirement, provision, vercmp};

/// Which repository a binary package is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RepoKind {
    Build,
    Live,
}

impl RepoKind {
    /// Its stable name, as the database stores it and the wire carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            RepoKind::Build => "build",
            RepoKind::Live => "live",
        }
    }

    /// The repository named `text` by [`RepoKind::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "build" => Some(RepoKind::Build),
            "live" => Some(RepoKind::Live),
            _ => None,
        }
    }

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
    pub arch: Arch,
    pub pkgname: String,
    pub pkgbase: String,
    pub version: String,
    pub provides: Vec<String>,
}

/// Binary packages by every name they answer to.
#[derive(Debug, Default)]
pub struct Binaries {
    /// `None` where a package was replaced: indexes into this stay valid.
    packages: Vec<Option<BinaryPackage>>,
    by_name: HashMap<String, Vec<usize>>,
    /// Every plan asks for each build's version in the repositories: indexed, so that a plan
    /// stays linear in the number of packages.
    by_base: HashMap<String, Vec<usize>>,
    by_pkgname: HashMap<String, Vec<usize>>,
    free: Vec<usize>,
}

impl Binaries {
    pub fn new(packages: Vec<BinaryPackage>) -> Self {
        let mut binaries = Binaries::default();
        for p in packages {
            binaries.insert(p);
        }
        binaries
    }

    fn insert(&mut self, p: BinaryPackage) {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.packages.push(None);
                self.packages.len() - 1
            }
        };
        self.by_base.entry(p.pkgbase.clone()).or_default().push(i);
        self.by_pkgname
            .entry(p.pkgname.clone())
            .or_default()
            .push(i);
        self.by_name.entry(p.pkgname.clone()).or_default().push(i);
        for prov in &p.provides {
            self.by_name
                .entry(provision(prov).0.to_owned())
                .or_default()
                .push(i);
        }
        self.packages[i] = Some(p);
    }

    /// Replaces every package named `pkgname` (in either repository, for any architecture)
    /// with `now`: what the repositories hold under that name after a change. Costs what the
    /// name's packages cost, not what the repositories hold.
    /// Returns the names the replaced packages answered to (their provisions too): a
    /// dependency on a name a package no longer provides must be resolved again.
    pub fn replace(&mut self, pkgname: &str, now: Vec<BinaryPackage>) -> Vec<String> {
        let mut answered = Vec::new();
        for i in self.by_pkgname.remove(pkgname).unwrap_or_default() {
            let p = self.packages[i]
                .take()
                .expect("indexed packages are present");
            let unlist = |index: &mut HashMap<String, Vec<usize>>, key: &str| {
                if let Some(list) = index.get_mut(key) {
                    list.retain(|&j| j != i);
                    if list.is_empty() {
                        index.remove(key);
                    }
                }
            };
            unlist(&mut self.by_base, &p.pkgbase);
            unlist(&mut self.by_name, &p.pkgname);
            for prov in &p.provides {
                let name = provision(prov).0;
                unlist(&mut self.by_name, name);
                answered.push(name.to_owned());
            }
            self.free.push(i);
        }
        for p in now {
            debug_assert_eq!(p.pkgname, pkgname);
            self.insert(p);
        }
        answered
    }

    pub fn packages(&self) -> impl Iterator<Item = &BinaryPackage> {
        self.packages.iter().flatten()
    }

    fn at(&self, i: usize) -> &BinaryPackage {
        self.packages[i]
            .as_ref()
            .expect("indexed packages are present")
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
            .map(|&i| self.at(i))
            .filter(|p| {
                p.arch.runs_on(arch)
                    && (req.satisfied_by(&p.pkgname, Some(&p.version))
                        || p.provides.iter().any(|prov| {
                            let (name, version) = provision(prov);
                            req.satisfied_by(name, version)
                        }))
            })
            // Ties broken by the package itself, not by where it is stored: a master that
            // replaced packages in place must choose as one that read them afresh.
            .max_by(|a, b| {
                vercmp(&a.version, &b.version)
                    .then_with(|| (a.repo, &a.pkgname, &a.arch).cmp(&(b.repo, &b.pkgname, &b.arch)))
            })
    }

    /// The newest version of `pkgbase` in `repo` for build architecture `arch`.
    pub fn version_of(&self, repo: RepoKind, pkgbase: &str, arch: &Arch) -> Option<&str> {
        self.by_base
            .get(pkgbase)?
            .iter()
            .map(|&i| self.at(i))
            .filter(|p| p.repo == repo && p.pkgbase == pkgbase && p.arch.runs_on(arch.as_str()))
            .map(|p| p.version.as_str())
            .max_by(|a, b| vercmp(a, b))
    }
}

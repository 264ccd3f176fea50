//! Planning: from what the sources hold and what the repositories have, every build's state
//! (DESIGN.md's package states), what it waits on, and the ready list by critical path.
//!
//! A plan is made in two phases, both pure functions of their inputs. The first
//! ([`Resolution`]) resolves every build's dependencies against the sources and the binary
//! repositories; it is the costly one, so the master keeps it and, when packages enter a
//! repository, resolves again only the builds they concern. The second ([`Resolution::plan`])
//! derives states, cycles, critical-path priorities and the ready list from the resolution and
//! how builds are going (failures, claims, durations); it is linear in builds and waits, and
//! runs whenever one of those changes. [`plan`] does both from scratch.
//!
//! Two rules decide what a build waits for:
//!
//! * **Pending versions first.** A dependency that a source provides is met by that source's
//!   version: while it is not in a binary repository the dependent waits for it, even if an
//!   older binary would satisfy the relation. A rebuild is built against what the sources say,
//!   never against what they are replacing. Only a dependency no source provides (or whose
//!   source version does not fit a versioned relation) is met by a binary alone.
//! * **Cycles are broken through binaries** ([`break_cycles`]): in a cycle of pending builds,
//!   a member whose dependencies inside the cycle all have binaries is built first against
//!   those binaries (the one the rest of the cycle waits for most); the rest of the cycle then
//!   waits for it as usual. A cycle with no such member stays blocked.

pub mod binaries;
pub mod graph;
pub mod promotion;
pub mod relation;
mod update;

pub use update::Changes;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use quarters_common::api::v1::PackageState;
use quarters_common::{Arch, BuildKey};
use quarters_parsers::PkgBase;

use self::binaries::{Binaries, BinaryPackage, RepoKind};
use self::relation::{Requirement, provision, vercmp};

/// One build the farm may have to do: a pkgbase, for one architecture (or `any`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitSpec {
    pub source: String,
    pub path: String,
    pub pkgbase: String,
    /// A machine architecture, or `any`.
    pub arch: Arch,
    pub version: String,
    pub pkgnames: Vec<String>,
    /// What the build's packages provide.
    pub provides: Vec<String>,
    /// Run-time dependencies of the build's packages.
    pub depends: Vec<String>,
    /// makedepends and checkdepends.
    pub build_depends: Vec<String>,
    pub packager: Option<String>,
    /// When the package last changed in its source (Unix seconds): every build of this
    /// version runs with it as `SOURCE_DATE_EPOCH`.
    pub changed_at: Option<i64>,
}

impl UnitSpec {
    /// The builds of a pkgbase for the farm's architectures: one per architecture it supports,
    /// or a single `any` build.
    pub fn from_meta(source: &str, path: &str, meta: &PkgBase, arches: &[Arch]) -> Vec<Self> {
        let wanted: Vec<Arch> = if meta.arch.iter().any(|a| Arch::any() == *a.as_str()) {
            vec![Arch::any()]
        } else {
            arches
                .iter()
                .filter(|a| meta.arch.iter().any(|m| a.as_str() == m))
                .cloned()
                .collect()
        };
        wanted
            .into_iter()
            .filter_map(|arch| {
                let target = meta.targets.get(arch.as_str())?;
                let mut build_depends = target.makedepends.clone();
                build_depends.extend(target.checkdepends.iter().cloned());
                Some(UnitSpec {
                    source: source.to_owned(),
                    path: path.to_owned(),
                    pkgbase: meta.pkgbase.clone(),
                    arch,
                    version: meta.version.clone(),
                    pkgnames: target.packages.iter().map(|p| p.pkgname.clone()).collect(),
                    provides: target
                        .packages
                        .iter()
                        .flat_map(|p| p.provides.clone())
                        .collect(),
                    depends: target
                        .packages
                        .iter()
                        .flat_map(|p| p.depends.clone())
                        .collect(),
                    build_depends,
                    packager: meta.packager.clone(),
                    changed_at: meta.changed_at,
                })
            })
            .collect()
    }

    /// The `PACKAGER` the build runs with, and so what its `.PKGINFO` and `.BUILDINFO` must
    /// say: the author of the package's last change when that reads as makepkg's
    /// `Name <email>`, the farm otherwise.
    pub fn makepkg_packager(&self) -> String {
        self.packager
            .as_deref()
            .filter(|p| p.contains('<') && p.ends_with('>') && !p.chars().any(char::is_control))
            .unwrap_or(quarters_common::api::v1::FARM_PACKAGER)
            .to_owned()
    }

    /// What the build's claims, builds and failures are keyed by.
    pub fn key(&self) -> BuildKey {
        BuildKey::new(&self.pkgbase, &self.version, self.arch.clone())
    }

    /// Every dependency, run-time and build-time, in one numbering (see [`Wait::dep`]).
    pub fn all_depends(&self) -> impl Iterator<Item = &str> {
        self.depends
            .iter()
            .chain(&self.build_depends)
            .map(String::as_str)
    }

    fn provides_itself(&self, req: &Requirement<'_>) -> bool {
        self.pkgnames
            .iter()
            .any(|n| req.satisfied_by(n, Some(&self.version)))
            || self.provides.iter().any(|p| {
                let (name, version) = provision(p);
                req.satisfied_by(name, version)
            })
    }
}

/// A build's state, with the reason for every state but the happy ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Some dependency is not in a binary repository yet; [`Plan::waiting_on`] says which.
    Waiting,
    Ready,
    /// A builder has committed to it.
    Claimed {
        builder: String,
    },
    /// This version is in the build repository.
    Built,
    /// This version (or a newer one) is in the live repository.
    Live,
    Failed {
        reason: String,
    },
    /// A dependency failed: the chain from this build to the failure.
    IndirectFailed {
        chain: Vec<String>,
    },
    /// It can never build as things are: the chain to the cause (an unresolvable dependency,
    /// a dependency cycle, a duplicate pkgbase).
    Blocked {
        chain: Vec<String>,
    },
}

impl State {
    /// The state without its reason, as the wire names it.
    pub fn kind(&self) -> PackageState {
        match self {
            State::Waiting => PackageState::Waiting,
            State::Ready => PackageState::Ready,
            State::Claimed { .. } => PackageState::Claimed,
            State::Built => PackageState::Built,
            State::Live => PackageState::Live,
            State::Failed { .. } => PackageState::Failed,
            State::IndirectFailed { .. } => PackageState::IndirectFailed,
            State::Blocked { .. } => PackageState::Blocked,
        }
    }

    /// Its stable name.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Still to be built: counts toward critical paths.
    pub fn is_pending(&self) -> bool {
        matches!(self, State::Waiting | State::Ready | State::Claimed { .. })
    }

    /// This version is in a binary repository.
    pub fn is_done(&self) -> bool {
        matches!(self, State::Built | State::Live)
    }
}

/// Everything a plan depends on.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The farm's architectures; the first also resolves the dependencies of `any` builds.
    pub arches: &'a [Arch],
    pub units: Vec<UnitSpec>,
    pub binaries: &'a Binaries,
    /// Names the build root already provides.
    pub template: &'a HashSet<String>,
    /// Failed builds not retried since, with the reason.
    pub failed: &'a HashMap<BuildKey, String>,
    /// Committed claims, with the builder.
    pub claimed: &'a HashMap<BuildKey, String>,
    /// Expected duration of each pkgbase's build, from its accepted builds.
    pub durations: &'a HashMap<String, u64>,
    /// Expected durations from an imported history, for pkgbases without accepted builds.
    pub history: &'a HashMap<String, u64>,
    /// Expected duration of a build without history.
    pub default_ms: u64,
}

/// One dependency a build has on another build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    /// The build that provides it (an index into [`Plan::units`]).
    pub provider: usize,
    /// Which dependency: an index into [`UnitSpec::all_depends`].
    pub dep: usize,
    /// A package already in a repository that satisfies the dependency too, but which the
    /// provider's new version replaces: not used while that version is pending, unless a
    /// cycle must be broken.
    pub stand_in: Option<BinaryPackage>,
}

/// A dependency a build waited for: whichever of `pkgnames` its root had installed must be at
/// `version`, the one the sources provide, not an older binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pub pkgbase: String,
    pub pkgnames: Vec<String>,
    pub version: String,
}

/// A build with its state.
#[derive(Clone, Debug)]
pub struct Planned {
    pub spec: Arc<UnitSpec>,
    pub state: State,
    /// The builds whose packages it needs and that are not in a binary repository.
    pub waits: Vec<Wait>,
    /// Dependencies on builds of its own dependency cycle that it does not wait for: it is
    /// built against their [`Wait::stand_in`] binaries, to break the cycle.
    pub bootstrap: Vec<Wait>,
    pub expected_ms: u64,
    /// Critical-path priority: `expected_ms` plus the longest chain of pending dependents.
    pub priority: u64,
}

/// Every build's state, and the ready list.
#[derive(Debug, Default)]
pub struct Plan {
    pub units: Vec<Planned>,
    /// Ready builds, highest priority first.
    pub ready: Vec<usize>,
    by_name: Arc<HashMap<(String, Arch), usize>>,
    /// What [`Resolution::plan_again`] needs to update the plan in place.
    kept: update::Kept,
}

impl Plan {
    /// The build of `pkgbase` for `arch`.
    pub fn unit(&self, pkgbase: &str, arch: &Arch) -> Option<&Planned> {
        self.by_name
            .get(&(pkgbase.to_owned(), arch.clone()))
            .map(|&i| &self.units[i])
    }

    /// Every build of `pkgbase`, or of the pkgbase that makes the package `name`.
    pub fn find(&self, name: &str) -> Vec<&Planned> {
        let direct: Vec<&Planned> = self
            .units
            .iter()
            .filter(|u| u.spec.pkgbase == name)
            .collect();
        if !direct.is_empty() {
            return direct;
        }
        self.units
            .iter()
            .filter(|u| u.spec.pkgnames.iter().any(|n| n == name))
            .collect()
    }

    /// The waits of a build whose providers are not built yet, each with the dependency it is
    /// for as the build's metadata writes it.
    fn pending_waits<'a>(&'a self, unit: &'a Planned) -> impl Iterator<Item = (&'a Wait, &'a str)> {
        unit.waits
            .iter()
            .filter(|w| !self.units[w.provider].state.is_done())
            .filter_map(|w| Some((w, unit.spec.all_depends().nth(w.dep)?)))
    }

    /// What a build waits on, as `dependency (pkgbase)`, for builds not built yet.
    pub fn waiting_on(&self, unit: &Planned) -> Vec<String> {
        self.pending_waits(unit)
            .map(|(w, dep)| format!("{dep} ({})", self.units[w.provider].spec.pkgbase))
            .collect()
    }

    /// What a build waits for, one line each, for `why`: the pending version it waits for,
    /// where that build is, and the binary it does not use meanwhile.
    pub fn explain_waits(&self, unit: &Planned) -> Vec<String> {
        self.pending_waits(unit)
            .map(|(w, dep)| {
                let provider = &self.units[w.provider];
                let at = match &provider.state {
                    State::Waiting => "which waits for its own dependencies".to_owned(),
                    State::Ready => "which is ready to be built".to_owned(),
                    State::Claimed { builder } => format!("which is being built on {builder}"),
                    other => format!("which is {}", other.name()),
                };
                let mut line = format!(
                    "waits for {} {} (for {dep}), {at}",
                    provider.spec.pkgbase, provider.spec.version
                );
                if let Some(old) = &w.stand_in {
                    line.push_str(&format!(
                        "; {} {} is in {}, but the sources replace it",
                        old.pkgname,
                        old.version,
                        old.repo.describe()
                    ));
                }
                line
            })
            .collect()
    }

    /// The versions a build must be built against: those of the builds it waited for.
    pub fn pins(&self, unit: &Planned) -> Vec<Pin> {
        unit.waits
            .iter()
            .map(|w| {
                let provider = &self.units[w.provider].spec;
                Pin {
                    pkgbase: provider.pkgbase.clone(),
                    pkgnames: provider.pkgnames.clone(),
                    version: provider.version.clone(),
                }
            })
            .collect()
    }

    /// The binaries a build is built against to break its dependency cycle, one line each.
    pub fn explain_bootstrap(&self, unit: &Planned) -> Vec<String> {
        unit.bootstrap
            .iter()
            .filter_map(|w| {
                let dep = unit.spec.all_depends().nth(w.dep)?;
                let old = w.stand_in.as_ref()?;
                let provider = &self.units[w.provider].spec;
                Some(format!(
                    "built against {} {} from {} (for {dep}), not {} {}: they depend on each other, and it goes first",
                    old.pkgname,
                    old.version,
                    old.repo.describe(),
                    provider.pkgbase,
                    provider.version
                ))
            })
            .collect()
    }

    /// How many builds are in each state.
    pub fn counts(&self) -> std::collections::BTreeMap<PackageState, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for u in &self.units {
            *counts.entry(u.state.kind()).or_insert(0) += 1;
        }
        counts
    }
}

/// Computes the plan from scratch.
pub fn plan(inputs: Inputs<'_>) -> Plan {
    let specs: Vec<Arc<UnitSpec>> = inputs.units.into_iter().map(Arc::new).collect();
    let resolution = Resolution::new(specs, inputs.arches, inputs.binaries, inputs.template);
    resolution.plan(&Progress {
        failed: inputs.failed,
        claimed: inputs.claimed,
        durations: inputs.durations,
        history: inputs.history,
        default_ms: inputs.default_ms,
    })
}

/// What changes as builds go on, without changing what any build depends on: the plan's
/// second phase reads these.
#[derive(Debug)]
pub struct Progress<'a> {
    pub failed: &'a HashMap<BuildKey, String>,
    pub claimed: &'a HashMap<BuildKey, String>,
    pub durations: &'a HashMap<String, u64>,
    pub history: &'a HashMap<String, u64>,
    pub default_ms: u64,
}

/// The plan's first phase: every build's dependencies resolved against the sources and the
/// binary repositories. It costs what the plan costs (every dependency of every build is
/// parsed and looked up), so it is kept between plans and, when binaries arrive, updated for
/// the builds they concern only ([`Resolution::update`]). Failures, claims and durations do not
/// touch it.
///
/// Invariant: a resolution updated for a sequence of repository changes equals one made from
/// scratch with the repositories as they are after them (tested in `tests.rs`).
#[derive(Clone, Debug, Default)]
pub struct Resolution {
    specs: Vec<Arc<UnitSpec>>,
    primary: String,
    by_name: Arc<HashMap<(String, Arch), usize>>,
    /// Builds that are never built, with the reason: a duplicate pkgbase or a pkgname clash.
    duplicates: HashMap<usize, String>,
    /// Every name a build answers to, with the version it provides, for the builds that may
    /// provide a dependency.
    providers: HashMap<String, Vec<(usize, Option<String>)>>,
    /// The builds that have a dependency on each name: those to resolve again when binaries
    /// of that name arrive.
    depends_on: HashMap<String, Vec<usize>>,
    /// The builds of each pkgbase (one per architecture).
    by_base: HashMap<String, Vec<usize>>,
    rows: Vec<Row>,
}

/// One build's resolution.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Row {
    /// Its version (or a newer one) is in the live repository.
    live: bool,
    /// Its version (or a newer one) is in a binary repository.
    done: bool,
    waits: Vec<Wait>,
    /// Why it can never build as things are, if a dependency of its own cannot be met.
    own_block: Option<String>,
}

impl Resolution {
    /// Resolves every build from scratch.
    pub fn new(
        specs: Vec<Arc<UnitSpec>>,
        arches: &[Arch],
        binaries: &Binaries,
        template: &HashSet<String>,
    ) -> Self {
        let n = specs.len();
        let mut by_name: HashMap<(String, Arch), usize> = HashMap::with_capacity(n);
        let mut duplicates: HashMap<usize, String> = HashMap::new();
        for (i, s) in specs.iter().enumerate() {
            let key = (s.pkgbase.clone(), s.arch.clone());
            match by_name.get(&key) {
                Some(&first) => {
                    duplicates.insert(
                        i,
                        format!(
                            "{} is also in source {} at {}; only the first is built",
                            s.pkgbase, specs[first].source, specs[first].path
                        ),
                    );
                }
                None => {
                    by_name.insert(key, i);
                }
            }
        }

        // A package name belongs to one pkgbase: two pkgbases that produce the same pkgname
        // would take each other's place in the repository, so both are blocked until one
        // gives it up.
        let mut owners: HashMap<&str, usize> = HashMap::new();
        let mut clashes: Vec<(usize, String)> = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            if duplicates.contains_key(&i) {
                continue;
            }
            for name in &s.pkgnames {
                match owners.get(name.as_str()) {
                    Some(&j) if specs[j].pkgbase != s.pkgbase => {
                        let clash = |b: &UnitSpec| {
                            format!(
                                "pkgname {name} is also built by pkgbase {} in source {} at {}; a package name belongs to one pkgbase",
                                b.pkgbase, b.source, b.path
                            )
                        };
                        clashes.push((i, clash(&specs[j])));
                        clashes.push((j, clash(s)));
                    }
                    Some(_) => {}
                    None => {
                        owners.insert(name, i);
                    }
                }
            }
        }
        for (i, why) in clashes {
            duplicates.entry(i).or_insert(why);
        }

        let mut providers: HashMap<String, Vec<(usize, Option<String>)>> = HashMap::new();
        let mut depends_on: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in specs.iter().enumerate() {
            if duplicates.contains_key(&i) {
                continue;
            }
            for name in &s.pkgnames {
                providers
                    .entry(name.clone())
                    .or_default()
                    .push((i, Some(s.version.clone())));
            }
            for p in &s.provides {
                let (name, version) = provision(p);
                providers
                    .entry(name.to_owned())
                    .or_default()
                    .push((i, version.map(str::to_owned)));
            }
            let mut names: Vec<String> = s
                .all_depends()
                .map(|d| Requirement::parse(d).name.into_owned())
                .collect();
            names.sort_unstable();
            names.dedup();
            for name in names {
                depends_on.entry(name).or_default().push(i);
            }
        }

        let mut by_base: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in specs.iter().enumerate() {
            by_base.entry(s.pkgbase.clone()).or_default().push(i);
        }
        let mut resolution = Resolution {
            primary: arches.first().map_or("x86_64", Arch::as_str).to_owned(),
            by_base,
            rows: vec![Row::default(); n],
            specs,
            by_name: Arc::new(by_name),
            duplicates,
            providers,
            depends_on,
        };
        let all: Vec<usize> = (0..n).collect();
        resolution.resolve(&all, binaries, template);
        resolution
    }

    /// Resolves again the builds that binaries of `pkgbases` (whose packages answer to
    /// `names`) concern, after those binaries changed: the builds of those pkgbases, and
    /// those with a dependency on one of the names. Returns them, for
    /// [`Changes::resolved`].
    pub fn update(
        &mut self,
        binaries: &Binaries,
        template: &HashSet<String>,
        pkgbases: &HashSet<String>,
        names: &HashSet<String>,
    ) -> Vec<usize> {
        let mut affected: Vec<usize> = pkgbases
            .iter()
            .filter_map(|b| self.by_base.get(b))
            .flatten()
            .copied()
            .collect();
        // Their own names too: a build that is now done changes what its dependents wait for.
        let mut all_names: HashSet<&str> = names.iter().map(String::as_str).collect();
        for &i in &affected {
            let s = &self.specs[i];
            all_names.extend(s.pkgnames.iter().map(String::as_str));
            all_names.extend(s.provides.iter().map(|p| provision(p).0));
        }
        for name in all_names {
            if let Some(dependents) = self.depends_on.get(name) {
                affected.extend(dependents);
            }
        }
        affected.sort_unstable();
        affected.dedup();
        self.resolve(&affected, binaries, template);
        affected
    }

    /// Resolves the builds `which` (sorted): whether each is done, then what each waits for,
    /// which reads whether its providers are done.
    fn resolve(&mut self, which: &[usize], binaries: &Binaries, template: &HashSet<String>) {
        let in_repo = |s: &UnitSpec, repo| {
            binaries
                .version_of(repo, &s.pkgbase, &s.arch)
                .is_some_and(|v| vercmp(v, &s.version).is_ge())
        };
        for &i in which {
            let s = &self.specs[i];
            let live = in_repo(s, RepoKind::Live);
            self.rows[i].live = live;
            self.rows[i].done = live || in_repo(s, RepoKind::Build);
        }
        for &i in which {
            let (waits, own_block) = self.resolve_one(i, binaries, template);
            self.rows[i].waits = waits;
            self.rows[i].own_block = own_block;
        }
    }

    /// What build `i` waits for, and why it can never build if it cannot.
    fn resolve_one(
        &self,
        i: usize,
        binaries: &Binaries,
        template: &HashSet<String>,
    ) -> (Vec<Wait>, Option<String>) {
        let s = &self.specs[i];
        let mut waits = Vec::new();
        let mut own_block: Option<String> = None;
        if self.duplicates.contains_key(&i) || self.rows[i].done {
            return (waits, own_block);
        }
        // An `any` build installs its dependencies on a machine of the farm's first
        // architecture, and is resolved as such.
        let resolve_arch = if s.arch.is_any() {
            self.primary.as_str()
        } else {
            s.arch.as_str()
        };
        let deps: Vec<&str> = s.all_depends().collect();
        for (k, dep) in deps.iter().enumerate() {
            if deps[..k].contains(dep) {
                continue;
            }
            let req = Requirement::parse(dep);
            if s.provides_itself(&req) || template.contains(req.name.as_ref()) {
                continue;
            }
            let binary = binaries.satisfier(&req, resolve_arch);
            let named = self
                .providers
                .get(req.name.as_ref())
                .map(Vec::as_slice)
                .unwrap_or_default();
            let fitting: Vec<usize> = named
                .iter()
                .filter(|(p, version)| {
                    *p != i
                        && self.specs[*p].arch.runs_on(resolve_arch)
                        && req.satisfied_by(&req.name, version.as_deref())
                })
                .map(|(p, _)| *p)
                .collect();
            let chosen = fitting
                .iter()
                .copied()
                .find(|&p| {
                    self.specs[p]
                        .pkgnames
                        .iter()
                        .any(|n| n == req.name.as_ref())
                })
                .or_else(|| fitting.first().copied());
            match chosen {
                // The source's version is in a repository: met, as by any binary.
                Some(p) if self.rows[p].done && binary.is_some() => {}
                // The source's version is pending: waited for, whatever binary would do.
                Some(p) => waits.push(Wait {
                    provider: p,
                    dep: k,
                    stand_in: binary.cloned(),
                }),
                None if binary.is_some() => {}
                None if named.is_empty() => {
                    own_block.get_or_insert_with(|| {
                        format!("{}: needs {dep}, which nothing provides (not in the sources, the repositories or the build root)", s.pkgbase)
                    });
                }
                None => {
                    let offers: Vec<String> = named
                        .iter()
                        .map(|(p, v)| {
                            format!(
                                "{} {}",
                                self.specs[*p].pkgbase,
                                v.as_deref().unwrap_or("(unversioned)")
                            )
                        })
                        .collect();
                    own_block.get_or_insert_with(|| {
                        format!(
                            "{}: needs {dep}, but the sources offer only {}",
                            s.pkgbase,
                            offers.join(", ")
                        )
                    });
                }
            }
        }
        (waits, own_block)
    }

    /// The state of build `i` that depends on nothing but itself: blocked as a duplicate,
    /// live, built or failed; `None` for a build whose state its dependencies decide.
    fn settled_state(&self, i: usize, progress: &Progress<'_>) -> Option<State> {
        let s = &self.specs[i];
        if let Some(why) = self.duplicates.get(&i) {
            return Some(State::Blocked {
                chain: vec![format!("{}: {why}", s.pkgbase)],
            });
        }
        let row = &self.rows[i];
        if row.live {
            return Some(State::Live);
        }
        if row.done {
            return Some(State::Built);
        }
        progress.failed.get(&s.key()).map(|reason| State::Failed {
            reason: reason.clone(),
        })
    }

    /// The state of build `i`, not settled on its own and not in a blocked cycle, from the
    /// states of the builds it waits for (`waits`).
    fn derived_state<'s>(
        &self,
        i: usize,
        waits: &[Wait],
        state_of: impl Fn(usize) -> Option<&'s State> + Copy,
        progress: &Progress<'_>,
    ) -> State {
        let s = &self.specs[i];
        if let Some(why) = &self.rows[i].own_block {
            return State::Blocked {
                chain: vec![why.clone()],
            };
        }
        if let Some(inherited) = propagate(i, waits, state_of, &self.specs) {
            return inherited;
        }
        let waiting = waits
            .iter()
            .any(|w| !state_of(w.provider).is_some_and(State::is_done));
        if waiting {
            return State::Waiting;
        }
        match progress.claimed.get(&s.key()) {
            Some(builder) => State::Claimed {
                builder: builder.clone(),
            },
            None => State::Ready,
        }
    }

    /// The plan's second phase: states, cycles, critical paths and the ready list, from this
    /// resolution and how the builds are going.
    pub fn plan(&self, progress: &Progress<'_>) -> Plan {
        let specs = &self.specs;
        let n = specs.len();
        let mut states: Vec<Option<State>> = vec![None; n];
        let mut edges: Vec<Vec<Wait>> = vec![Vec::new(); n];
        for i in 0..n {
            match self.settled_state(i, progress) {
                Some(state) => states[i] = Some(state),
                None => edges[i].clone_from(&self.rows[i].waits),
            }
        }

        // Strongly connected components over the waiting edges, providers before dependents;
        // cycles that binaries can break are broken first.
        let (order, bootstrap, in_cycle) = break_cycles(&mut edges, &states, specs);
        let mut cycle_blocked = vec![false; n];
        for component in &order {
            if is_cycle(component, &edges) {
                let chain = cycle_chain(component, &edges, specs);
                for &i in component {
                    cycle_blocked[i] = true;
                    states[i] = Some(State::Blocked {
                        chain: chain.clone(),
                    });
                }
            }
        }
        for component in &order {
            for &i in component {
                if states[i].is_some() {
                    continue;
                }
                let state = self.derived_state(i, &edges[i], |p| states[p].as_ref(), progress);
                states[i] = Some(state);
            }
        }

        let states: Vec<State> = states
            .into_iter()
            .map(|s| s.expect("every build has a state"))
            .collect();
        let expected: Vec<u64> = specs.iter().map(|s| expected_ms(s, progress)).collect();
        let kept = update::Kept::new(self, progress, &edges, in_cycle, cycle_blocked);
        let flat: Vec<usize> = order.iter().flatten().copied().collect();
        let priority = graph::critical_paths(&flat, &kept.dependents, |i| {
            states[i].is_pending().then_some(expected[i])
        });

        let units: Vec<Planned> = specs
            .iter()
            .cloned()
            .zip(states)
            .zip(edges.into_iter().zip(bootstrap))
            .enumerate()
            .map(|(i, ((spec, state), (waits, bootstrap)))| Planned {
                spec,
                state,
                waits,
                bootstrap,
                expected_ms: expected[i],
                priority: priority[i],
            })
            .collect();
        let mut plan = Plan {
            units,
            ready: Vec::new(),
            by_name: self.by_name.clone(),
            kept,
        };
        plan.fill_ready();
        plan
    }
}

/// How long a build is expected to take: from its accepted builds, its imported history, or
/// the default.
fn expected_ms(s: &UnitSpec, progress: &Progress<'_>) -> u64 {
    progress
        .durations
        .get(&s.pkgbase)
        .or_else(|| progress.history.get(&s.pkgbase))
        .copied()
        .unwrap_or(progress.default_ms)
}

/// The state a build inherits from a failed or blocked dependency, if any.
fn propagate<'s>(
    i: usize,
    edges: &[Wait],
    state_of: impl Fn(usize) -> Option<&'s State>,
    specs: &[Arc<UnitSpec>],
) -> Option<State> {
    let me = &specs[i].pkgbase;
    let dep_text = |k: usize| specs[i].all_depends().nth(k).unwrap_or("?");
    let mut blocked = None;
    for w in edges {
        let (p, k) = (&w.provider, w.dep);
        let via = format!("{me} needs {} ({})", dep_text(k), specs[*p].pkgbase);
        match state_of(*p) {
            Some(State::Failed { reason }) => {
                return Some(State::IndirectFailed {
                    chain: vec![via, format!("{} failed: {reason}", specs[*p].pkgbase)],
                });
            }
            Some(State::IndirectFailed { chain }) => {
                let mut c = vec![via];
                c.extend(chain.iter().cloned());
                return Some(State::IndirectFailed { chain: c });
            }
            Some(State::Blocked { chain }) if blocked.is_none() => {
                let mut c = vec![via];
                c.extend(chain.iter().cloned());
                blocked = Some(State::Blocked { chain: c });
            }
            _ => {}
        }
    }
    blocked
}

/// Whether a component of [`tarjan`]'s is a cycle.
fn is_cycle(component: &[usize], edges: &[Vec<Wait>]) -> bool {
    graph::is_cycle(component, |v| edges[v].iter().map(|w| w.provider).collect())
}

/// Breaks the dependency cycles among pending builds that binaries can break, and returns the
/// components of what remains (as [`tarjan`]) with, for every build, the waits it no longer
/// has (its bootstrap), and whether it was in a cycle before any was broken.
///
/// The rule, applied to every cycle until none is left that it can break, as Eades, Lin and
/// Smyth's greedy ordering picks its sources: of the members all of whose dependencies inside
/// the cycle have a stand-in binary, the one that most members wait for, less what it needs
/// from the cycle, goes first (then the one that needs the least, then the first by pkgbase),
/// built against those binaries. Its waits inside the cycle are dropped, and the rest is
/// examined again: a bigger cycle may still hold smaller ones. Each round drops the waits of
/// at least one build, so this ends. The aim is as few binaries used as possible; the greedy
/// rule does not promise the least, but it is deterministic and shown by `why`.
fn break_cycles(
    edges: &mut [Vec<Wait>],
    states: &[Option<State>],
    specs: &[Arc<UnitSpec>],
) -> (Vec<Vec<usize>>, Vec<Vec<Wait>>, Vec<bool>) {
    let n = edges.len();
    let mut bootstrap: Vec<Vec<Wait>> = vec![Vec::new(); n];
    let mut in_cycle: Option<Vec<bool>> = None;
    loop {
        let order = tarjan(n, edges, states);
        let in_cycle = in_cycle.get_or_insert_with(|| {
            let mut marked = vec![false; n];
            for component in order.iter().filter(|c| is_cycle(c, edges)) {
                for &i in component {
                    marked[i] = true;
                }
            }
            marked
        });
        let mut broke = false;
        for component in &order {
            if !is_cycle(component, edges) {
                continue;
            }
            let members: HashSet<usize> = component.iter().copied().collect();
            let inside = |w: &Wait| members.contains(&w.provider);
            let needs = |m: usize| edges[m].iter().filter(|w| inside(w)).count();
            let mut waited_for: HashMap<usize, usize> = HashMap::new();
            for &m in component {
                for w in edges[m].iter().filter(|w| inside(w)) {
                    *waited_for.entry(w.provider).or_default() += 1;
                }
            }
            let score = |m: usize| {
                let gain = waited_for.get(&m).copied().unwrap_or(0);
                (std::cmp::Reverse(gain as i64 - needs(m) as i64), needs(m))
            };
            let first = component
                .iter()
                .copied()
                .filter(|&m| {
                    edges[m]
                        .iter()
                        .filter(|w| inside(w))
                        .all(|w| w.stand_in.is_some())
                })
                .min_by(|&a, &b| {
                    score(a)
                        .cmp(&score(b))
                        .then_with(|| specs[a].pkgbase.cmp(&specs[b].pkgbase))
                });
            if let Some(m) = first {
                let (dropped, kept) = std::mem::take(&mut edges[m]).into_iter().partition(inside);
                edges[m] = kept;
                bootstrap[m].extend::<Vec<Wait>>(dropped);
                broke = true;
            }
        }
        if !broke {
            return (order, bootstrap, std::mem::take(in_cycle));
        }
    }
}

/// [`graph::components`] over the builds that still need resolving: waits to builds settled
/// on their own are not followed.
fn tarjan(n: usize, edges: &[Vec<Wait>], states: &[Option<State>]) -> Vec<Vec<usize>> {
    graph::components(n, |v| {
        edges[v]
            .iter()
            .map(|w| w.provider)
            .filter(|p| states[*p].is_none())
            .collect()
    })
}

/// A readable cycle through a component: `a needs x (b)`, `b needs y (a)`.
fn cycle_chain(component: &[usize], edges: &[Vec<Wait>], specs: &[Arc<UnitSpec>]) -> Vec<String> {
    let members: HashSet<usize> = component.iter().copied().collect();
    let start = *component
        .iter()
        .min_by_key(|&&i| &specs[i].pkgbase)
        .expect("components are not empty");
    let mut chain = Vec::new();
    let mut seen = HashSet::new();
    let mut at = start;
    while seen.insert(at) {
        let Some(Wait {
            provider: next,
            dep: k,
            ..
        }) = edges[at].iter().find(|w| members.contains(&w.provider))
        else {
            break;
        };
        let dep = specs[at].all_depends().nth(*k).unwrap_or("?");
        chain.push(format!(
            "{} needs {dep} ({})",
            specs[at].pkgbase, specs[*next].pkgbase
        ));
        at = *next;
    }
    chain.insert(
        0,
        format!("dependency cycle: {}", {
            let mut names: Vec<&str> = component
                .iter()
                .map(|&i| specs[i].pkgbase.as_str())
                .collect();
            names.sort_unstable();
            names.join(", ")
        }),
    );
    chain
}

#[cfg(test)]
mod incremental;
#[cfg(test)]
mod tests;

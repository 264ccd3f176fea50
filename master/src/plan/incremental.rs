//! The properties the core relies on: a resolution updated for each repository change, then
//! planned with the progress of the moment, equals a plan made from scratch; so does a plan
//! updated in place ([`Resolution::plan_again`]), and the binaries updated in place; after any
//! sequence of acceptances, promotions, failures, retries, claims and their ends, and new
//! durations.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use proptest::prelude::*;

use super::binaries::{Binaries, BinaryPackage, RepoKind};
use super::relation::provision;
use super::*;

/// One thing that happens to a farm, on build `unit % builds`.
#[derive(Clone, Debug)]
enum Happening {
    /// Its version lands in the build repository.
    Accepted(usize),
    /// Its packages in the build repository are copied into the live one.
    Promoted(usize),
    Failed(usize),
    Retried(usize),
    Claimed(usize),
    /// Its claim ends (the builder gave it up, or finished).
    Unclaimed(usize),
    /// An accepted build of it changes its expected duration.
    Timed(usize),
    /// A new version of it appears in the sources: a full plan, as when sources change.
    Bumped(usize),
}

fn happening() -> impl Strategy<Value = Happening> {
    prop_oneof![
        4 => (0..64usize).prop_map(Happening::Accepted),
        2 => (0..64usize).prop_map(Happening::Promoted),
        1 => (0..64usize).prop_map(Happening::Failed),
        1 => (0..64usize).prop_map(Happening::Retried),
        2 => (0..64usize).prop_map(Happening::Claimed),
        1 => (0..64usize).prop_map(Happening::Unclaimed),
        1 => (0..64usize).prop_map(Happening::Timed),
        1 => (0..64usize).prop_map(Happening::Bumped),
    ]
}

/// A small world: builds with dependencies on each other (by pkgname, by a virtual provision,
/// versioned or not, cycles allowed), some binaries of older versions already there.
fn world() -> impl Strategy<Value = (Vec<UnitSpec>, Vec<BinaryPackage>)> {
    (3..12usize)
        .prop_flat_map(|n| {
            (
                Just(n),
                proptest::collection::vec(proptest::collection::vec((0..n, 0..4u8), 0..4), n),
                proptest::collection::vec(any::<bool>(), n),
                proptest::collection::vec(0..3u8, n),
            )
        })
        .prop_map(|(n, deps, provides, old)| {
            let specs: Vec<UnitSpec> = (0..n)
                .map(|i| {
                    let depends: Vec<String> = deps[i]
                        .iter()
                        .map(|&(j, how)| match how {
                            0 => format!("p{j}"),
                            1 => format!("p{j}>=2"),
                            2 => format!("virt{j}"),
                            _ => format!("p{j}<2"),
                        })
                        .collect();
                    let (depends, build_depends) = depends.split_at(depends.len() / 2);
                    UnitSpec {
                        source: "main".into(),
                        path: format!("p{i}"),
                        pkgbase: format!("p{i}"),
                        arch: quarters_common::Arch::parse("x86_64").unwrap(),
                        version: "2-1".into(),
                        pkgnames: vec![format!("p{i}")],
                        provides: if provides[i] {
                            vec![format!("virt{i}=2")]
                        } else {
                            Vec::new()
                        },
                        depends: depends.to_vec(),
                        build_depends: build_depends.to_vec(),
                        packager: None,
                        changed_at: None,
                    }
                })
                .collect();
            let binaries = (0..n)
                .filter(|&i| old[i] > 0)
                .map(|i| BinaryPackage {
                    repo: if old[i] == 1 {
                        RepoKind::Build
                    } else {
                        RepoKind::Live
                    },
                    arch: quarters_common::Arch::parse("x86_64").unwrap(),
                    pkgname: format!("p{i}"),
                    pkgbase: format!("p{i}"),
                    version: "1-1".into(),
                    provides: specs[i]
                        .provides
                        .iter()
                        .map(|p| p.replace("=2", "=1"))
                        .collect(),
                })
                .collect();
            (specs, binaries)
        })
}

/// The repositories after putting `package` in, as the database does: it replaces the same
/// name in the same repository.
fn put(binaries: &mut Vec<BinaryPackage>, package: BinaryPackage) {
    binaries.retain(|b| !(b.repo == package.repo && b.pkgname == package.pkgname));
    binaries.push(package);
}

/// What a test compares of a plan: every build's state, waits, bootstrap and priority, and
/// the ready list.
fn summary(plan: &Plan) -> Vec<String> {
    let mut out: Vec<String> = plan
        .units
        .iter()
        .map(|u| {
            format!(
                "{} {}: {:?} waits {:?} bootstrap {:?} priority {}",
                u.spec.pkgbase, u.spec.version, u.state, u.waits, u.bootstrap, u.priority
            )
        })
        .collect();
    out.push(format!("ready {:?}", plan.ready));
    out
}

/// How often the property test's plans were updated in place, of how many: the test is only
/// worth something if most were.
static IN_PLACE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static TURNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The binaries in a comparable form.
fn binaries_summary(binaries: &Binaries) -> Vec<String> {
    let mut out: Vec<String> = binaries.packages().map(|b| format!("{b:?}")).collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn an_updated_resolution_plans_as_a_fresh_one(
        (mut specs, mut binaries) in world(),
        happenings in proptest::collection::vec(happening(), 1..24),
    ) {
        let arches = vec![quarters_common::Arch::parse("x86_64").unwrap()];
        let template = HashSet::new();
        let mut failed: HashMap<BuildKey, String> = HashMap::new();
        let mut claimed: HashMap<BuildKey, String> = HashMap::new();
        let mut durations: HashMap<String, u64> = HashMap::new();
        let history: HashMap<String, u64> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.pkgbase.clone(), 10 * (i as u64 + 1)))
            .collect();
        let shared = |specs: &[UnitSpec]| specs.iter().cloned().map(Arc::new).collect::<Vec<_>>();
        let mut resolution = Resolution::new(
            shared(&specs),
            &arches,
            &Binaries::new(binaries.clone()),
            &template,
        );
        let mut kept_binaries = Binaries::new(binaries.clone());
        let mut planned = resolution.plan(&Progress {
            failed: &failed,
            claimed: &claimed,
            durations: &durations,
            history: &history,
            default_ms: 1000,
        });
        for happening in happenings {
            let mut changes = Changes::default();
            let n = specs.len();
            let mut changed_bases = HashSet::new();
            let mut changed_names = HashSet::new();
            let mut binaries_changed = |package: &BinaryPackage| {
                changed_bases.insert(package.pkgbase.clone());
                changed_names.insert(package.pkgname.clone());
                changed_names.extend(package.provides.iter().map(|p| provision(p).0.to_owned()));
            };
            match happening {
                Happening::Accepted(i) => {
                    let s = &specs[i % n];
                    let package = BinaryPackage {
                        repo: RepoKind::Build,
                        arch: s.arch.clone(),
                        pkgname: s.pkgnames[0].clone(),
                        pkgbase: s.pkgbase.clone(),
                        version: s.version.clone(),
                        provides: s.provides.clone(),
                    };
                    binaries_changed(&package);
                    put(&mut binaries, package);
                }
                Happening::Promoted(i) => {
                    let base = &specs[i % n].pkgbase;
                    let promoted: Vec<BinaryPackage> = binaries
                        .iter()
                        .filter(|b| b.repo == RepoKind::Build && &b.pkgbase == base)
                        .map(|b| BinaryPackage { repo: RepoKind::Live, ..b.clone() })
                        .collect();
                    for package in promoted {
                        binaries_changed(&package);
                        put(&mut binaries, package);
                    }
                }
                Happening::Failed(i) => {
                    let s = &specs[i % n];
                    failed.insert(s.key(), "check: no".into());
                }
                Happening::Retried(i) => {
                    failed.retain(|k, _| k.pkgbase != specs[i % n].pkgbase);
                }
                Happening::Claimed(i) => {
                    let s = &specs[i % n];
                    claimed.insert(s.key(), "builder-1".into());
                }
                Happening::Unclaimed(i) => {
                    claimed.retain(|k, _| k.pkgbase != specs[i % n].pkgbase);
                }
                Happening::Timed(i) => {
                    let base = specs[i % n].pkgbase.clone();
                    durations.insert(base.clone(), 7 * (i as u64 + 3));
                    changes.durations.push(base);
                }
                Happening::Bumped(i) => {
                    specs[i % n].version = "3-1".into();
                }
            }
            let now = Binaries::new(binaries.clone());
            for name in &changed_names {
                let named: Vec<BinaryPackage> =
                    binaries.iter().filter(|b| &b.pkgname == name).cloned().collect();
                kept_binaries.replace(name, named);
            }
            prop_assert_eq!(binaries_summary(&kept_binaries), binaries_summary(&now));
            if matches!(happening, Happening::Bumped(_)) {
                // Sources changed: the core resolves from scratch.
                resolution = Resolution::new(shared(&specs), &arches, &now, &template);
            } else {
                changes.resolved =
                    resolution.update(&kept_binaries, &template, &changed_bases, &changed_names);
            }
            let progress = Progress {
                failed: &failed,
                claimed: &claimed,
                durations: &durations,
                history: &history,
                default_ms: 1000,
            };
            let updated = resolution.plan(&progress);
            if resolution.plan_again(&mut planned, &progress, &changes) {
                IN_PLACE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            TURNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let fresh = plan(Inputs {
                arches: &arches,
                units: specs.clone(),
                binaries: &now,
                template: &template,
                failed: &failed,
                claimed: &claimed,
                durations: &durations,
                history: &history,
                default_ms: 1000,
            });
            prop_assert_eq!(summary(&updated), summary(&fresh), "after {:?}", happening);
            prop_assert_eq!(summary(&planned), summary(&fresh), "in place, after {:?}", happening);
        }
        let (in_place, turns) = (
            IN_PLACE.load(std::sync::atomic::Ordering::Relaxed),
            TURNS.load(std::sync::atomic::Ordering::Relaxed),
        );
        // Counted over every case so far: after the first few, most turns must have been in
        // place, or the property says nothing about the in-place update.
        prop_assert!(turns < 64 || in_place * 2 > turns, "{in_place} of {turns} in place");
    }
}

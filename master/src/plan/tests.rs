use std::collections::{HashMap, HashSet};

use super::binaries::{Binaries, BinaryPackage, RepoKind};
use super::*;

fn unit(pkgbase: &str, version: &str, depends: &[&str], makedepends: &[&str]) -> UnitSpec {
    UnitSpec {
        source: "main".into(),
        path: pkgbase.into(),
        pkgbase: pkgbase.into(),
        arch: quarters_common::Arch::parse("x86_64").unwrap(),
        version: version.into(),
        pkgnames: vec![pkgbase.into()],
        provides: Vec::new(),
        depends: depends.iter().map(|s| (*s).to_owned()).collect(),
        build_depends: makedepends.iter().map(|s| (*s).to_owned()).collect(),
        packager: None,
        changed_at: None,
    }
}

fn bin(repo: RepoKind, pkgname: &str, version: &str) -> BinaryPackage {
    BinaryPackage {
        repo,
        arch: quarters_common::Arch::parse("x86_64").unwrap(),
        pkgname: pkgname.into(),
        pkgbase: pkgname.into(),
        version: version.into(),
        provides: Vec::new(),
    }
}

struct World {
    arches: Vec<quarters_common::Arch>,
    binaries: Binaries,
    template: HashSet<String>,
    failed: HashMap<BuildKey, String>,
    claimed: HashMap<BuildKey, String>,
    durations: HashMap<String, u64>,
    history: HashMap<String, u64>,
}

impl World {
    fn new() -> Self {
        World {
            arches: vec![quarters_common::Arch::parse("x86_64").unwrap()],
            binaries: Binaries::default(),
            template: HashSet::new(),
            failed: HashMap::new(),
            claimed: HashMap::new(),
            durations: HashMap::new(),
            history: HashMap::new(),
        }
    }

    fn plan(&self, units: Vec<UnitSpec>) -> Plan {
        plan(Inputs {
            arches: &self.arches,
            units,
            binaries: &self.binaries,
            template: &self.template,
            failed: &self.failed,
            claimed: &self.claimed,
            durations: &self.durations,
            history: &self.history,
            default_ms: 1000,
        })
    }
}

fn state<'a>(plan: &'a Plan, pkgbase: &str) -> &'a State {
    &plan.find(pkgbase)[0].state
}

/// Asserts that `pkgbase` waits, on exactly `on`.
#[track_caller]
fn assert_waits(plan: &Plan, pkgbase: &str, on: &[&str]) {
    let unit = plan.find(pkgbase)[0];
    assert_eq!(unit.state, State::Waiting, "{pkgbase}");
    assert_eq!(plan.waiting_on(unit), on, "{pkgbase}");
}

fn key(pkgbase: &str, version: &str) -> BuildKey {
    BuildKey::new(
        pkgbase,
        version,
        quarters_common::Arch::parse("x86_64").unwrap(),
    )
}

#[test]
fn a_chain_waits_in_order_and_priorities_follow_the_critical_path() {
    let mut w = World::new();
    w.durations = [("a", 10), ("b", 20), ("c", 30), ("d", 5)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let p = w.plan(vec![
        unit("a", "1-1", &[], &[]),
        unit("b", "1-1", &["a"], &[]),
        unit("c", "1-1", &[], &["b"]),
        unit("d", "1-1", &[], &[]),
    ]);
    assert_eq!(state(&p, "a"), &State::Ready);
    assert_waits(&p, "b", &["a (a)"]);
    assert_waits(&p, "c", &["b (b)"]);
    let prio = |n| p.find(n)[0].priority;
    assert_eq!(
        (prio("a"), prio("b"), prio("c"), prio("d")),
        (60, 50, 30, 5)
    );
    let ready: Vec<&str> = p
        .ready
        .iter()
        .map(|&i| p.units[i].spec.pkgbase.as_str())
        .collect();
    assert_eq!(ready, ["a", "d"], "highest priority first");
}

#[test]
fn own_builds_beat_imported_history_which_beats_the_default() {
    let mut w = World::new();
    w.durations = [("a".to_owned(), 10)].into();
    w.history = [("a".to_owned(), 99), ("b".to_owned(), 20)].into();
    let p = w.plan(vec![
        unit("a", "1-1", &[], &[]),
        unit("b", "1-1", &[], &[]),
        unit("c", "1-1", &[], &[]),
    ]);
    let expected = |n| p.find(n)[0].expected_ms;
    assert_eq!(
        (expected("a"), expected("b"), expected("c")),
        (10, 20, 1000)
    );
}

#[test]
fn binaries_template_and_provides_satisfy_dependencies() {
    let mut w = World::new();
    w.binaries = Binaries::new(vec![bin(RepoKind::Build, "a", "1-1")]);
    w.template.insert("glibc".into());
    let mut lib = unit("lib", "1-1", &[], &[]);
    lib.pkgnames = vec!["lib-core".into(), "lib-extra".into()];
    lib.provides = vec!["libthing.so=1-64".into()];
    let p = w.plan(vec![
        unit("a", "1-1", &[], &[]),
        unit("b", "1-1", &["a", "glibc"], &[]),
        lib,
        unit("c", "1-1", &["libthing.so"], &[]),
        unit("e", "1-1", &["lib-extra"], &[]),
    ]);
    assert_eq!(state(&p, "a"), &State::Built);
    assert_eq!(state(&p, "b"), &State::Ready);
    assert_waits(&p, "c", &["libthing.so (lib)"]);
    assert_waits(&p, "e", &["lib-extra (lib)"]);
    assert_eq!(p.find("lib-core")[0].spec.pkgbase, "lib");
}

#[test]
fn versions_decide_built_live_and_unsatisfiable() {
    let mut w = World::new();
    w.binaries = Binaries::new(vec![
        bin(RepoKind::Live, "new", "2-1"),
        bin(RepoKind::Build, "old", "1-1"),
    ]);
    let p = w.plan(vec![
        unit("new", "1:0.5-1", &[], &[]),
        unit("old", "1-2", &[], &[]),
        unit("needs-new-old", "1-1", &["old>=3"], &[]),
    ]);
    assert_eq!(
        state(&p, "new"),
        &State::Ready,
        "an epoch makes 1:0.5 newer than 2"
    );
    assert_eq!(state(&p, "old"), &State::Ready, "1-2 is not built yet");
    match state(&p, "needs-new-old") {
        State::Blocked { chain } => assert!(
            chain[0].contains("the sources offer only old 1-2"),
            "{chain:?}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unresolvable_dependency_and_a_cycle_block_only_those_involved() {
    let w = World::new();
    let p = w.plan(vec![
        unit("ghostly", "1-1", &["ghost"], &[]),
        unit("haunted", "1-1", &["ghostly"], &[]),
        unit("x", "1-1", &["y"], &[]),
        unit("y", "1-1", &[], &["x"]),
        unit("z", "1-1", &["x"], &[]),
        unit("fine", "1-1", &[], &[]),
    ]);
    match state(&p, "ghostly") {
        State::Blocked { chain } => {
            assert!(chain[0].contains("needs ghost, which nothing provides"));
        }
        other => panic!("{other:?}"),
    }
    match state(&p, "haunted") {
        State::Blocked { chain } => {
            assert_eq!(chain[0], "haunted needs ghostly (ghostly)");
            assert!(chain[1].contains("ghost"));
        }
        other => panic!("{other:?}"),
    }
    for member in ["x", "y"] {
        match state(&p, member) {
            State::Blocked { chain } => {
                assert_eq!(chain[0], "dependency cycle: x, y");
                assert_eq!(chain[1], "x needs y (y)");
                assert_eq!(chain[2], "y needs x (x)");
            }
            other => panic!("{member}: {other:?}"),
        }
    }
    assert!(matches!(state(&p, "z"), State::Blocked { chain } if chain[0] == "z needs x (x)"));
    assert_eq!(state(&p, "fine"), &State::Ready);
    assert_eq!(p.counts()[&PackageState::Blocked], 5);
}

#[test]
fn a_failure_makes_its_dependents_indirect_failed() {
    let mut w = World::new();
    w.failed
        .insert(key("a", "1-1"), "build: exit status 2".into());
    let p = w.plan(vec![
        unit("a", "1-1", &[], &[]),
        unit("b", "1-1", &["a"], &[]),
        unit("c", "1-1", &["b"], &[]),
    ]);
    assert!(matches!(state(&p, "a"), State::Failed { reason } if reason.contains("exit status 2")));
    match state(&p, "c") {
        State::IndirectFailed { chain } => assert_eq!(
            chain,
            &[
                "c needs b (b)",
                "b needs a (a)",
                "a failed: build: exit status 2"
            ]
        ),
        other => panic!("{other:?}"),
    }
    // A new version of a is not the failed one.
    let p = w.plan(vec![
        unit("a", "1-2", &[], &[]),
        unit("b", "1-1", &["a"], &[]),
    ]);
    assert_eq!(state(&p, "a"), &State::Ready);
}

#[test]
fn claims_any_builds_and_duplicates() {
    let mut w = World::new();
    w.claimed.insert(key("a", "1-1"), "builder-1".into());
    let mut docs = unit("docs", "1-1", &["a"], &[]);
    docs.arch = quarters_common::Arch::parse("any").unwrap();
    let mut dup = unit("a", "9-9", &[], &[]);
    dup.source = "other".into();
    let p = w.plan(vec![unit("a", "1-1", &[], &[]), docs, dup]);
    assert_eq!(
        state(&p, "a"),
        &State::Claimed {
            builder: "builder-1".into()
        }
    );
    let docs = p.unit("docs", &quarters_common::Arch::any()).unwrap();
    assert_eq!(docs.state, State::Waiting);
    assert_eq!(p.waiting_on(docs), ["a (a)"]);
    let blocked = p.units.iter().find(|u| u.spec.source == "other").unwrap();
    assert!(
        matches!(&blocked.state, State::Blocked { chain } if chain[0].contains("also in source main"))
    );
}

#[test]
fn two_pkgbases_producing_one_pkgname_are_both_blocked() {
    let w = World::new();
    let mut impostor = unit("impostor", "1-1", &[], &[]);
    impostor.pkgnames = vec!["impostor".into(), "lib".into()];
    impostor.source = "other".into();
    let p = w.plan(vec![
        unit("lib", "1-1", &[], &[]),
        impostor,
        unit("app", "1-1", &["lib"], &[]),
    ]);
    let chain = |pkgbase: &str| match state(&p, pkgbase) {
        State::Blocked { chain } => chain.join("; "),
        other => panic!("{pkgbase} is {other:?}"),
    };
    assert!(
        chain("lib").contains("pkgname lib is also built by pkgbase impostor in source other"),
        "{}",
        chain("lib")
    );
    assert!(
        chain("impostor").contains("pkgname lib is also built by pkgbase lib in source main"),
        "{}",
        chain("impostor")
    );
    assert!(
        !matches!(state(&p, "app"), State::Ready),
        "nothing is built against a contested name"
    );
}

/// Every build of the plan that is ready, by pkgbase.
fn ready(p: &Plan) -> Vec<&str> {
    p.ready
        .iter()
        .map(|&i| p.units[i].spec.pkgbase.as_str())
        .collect()
}

#[test]
fn a_pending_version_is_waited_for_even_when_an_older_binary_would_do() {
    let mut w = World::new();
    w.binaries = Binaries::new(vec![
        bin(RepoKind::Build, "liba", "1.0-1"),
        bin(RepoKind::Live, "app", "1.0-1"),
    ]);
    let units = || {
        vec![
            unit("liba", "2.0-1", &[], &[]),
            unit("app", "1.0-2", &["liba"], &[]),
            // A relation the new version does not meet is met by the old binary.
            unit("pinned", "1-1", &["liba<2"], &[]),
        ]
    };
    let p = w.plan(units());
    assert_eq!(ready(&p), ["liba", "pinned"]);
    let app = p.find("app")[0];
    assert_eq!(app.state, State::Waiting);
    assert_eq!(
        p.explain_waits(app),
        [
            "waits for liba 2.0-1 (for liba), which is ready to be built; liba 1.0-1 is in the build repository, but the sources replace it"
        ]
    );

    w.claimed.insert(key("liba", "2.0-1"), "builder-1".into());
    let p = w.plan(units());
    let line = &p.explain_waits(p.find("app")[0])[0];
    assert!(line.contains("which is being built on builder-1"), "{line}");

    // Once the new version is in the build repository, the rebuild goes.
    w.claimed.clear();
    w.binaries = Binaries::new(vec![
        bin(RepoKind::Live, "liba", "1.0-1"),
        bin(RepoKind::Build, "liba", "2.0-1"),
        bin(RepoKind::Live, "app", "1.0-1"),
    ]);
    let p = w.plan(units());
    assert_eq!(ready(&p), ["app", "pinned"]);
}

#[test]
fn a_soname_bump_rebuilds_no_dependent_before_the_library() {
    let mut w = World::new();
    let dependents: Vec<String> = (0..50).map(|i| format!("app{i:02}")).collect();
    let mut old = vec![bin(RepoKind::Live, "libfoo", "1-1")];
    old.extend(dependents.iter().map(|d| bin(RepoKind::Live, d, "1-1")));
    w.binaries = Binaries::new(old);
    let units = || {
        let mut units = vec![unit("libfoo", "2-1", &[], &[])];
        units.extend(dependents.iter().map(|d| unit(d, "1-2", &["libfoo"], &[])));
        units
    };
    let p = w.plan(units());
    assert_eq!(ready(&p), ["libfoo"]);
    assert_eq!(p.counts()[&PackageState::Waiting], 50);
    assert_eq!(
        p.find("libfoo")[0].priority,
        2000,
        "its rebuilds count on its path"
    );

    w.binaries = Binaries::new(
        [bin(RepoKind::Build, "libfoo", "2-1")]
            .into_iter()
            .chain(dependents.iter().map(|d| bin(RepoKind::Live, d, "1-1")))
            .collect(),
    );
    let p = w.plan(units());
    assert_eq!(p.ready.len(), 50);
    assert_eq!(state(&p, "libfoo"), &State::Built);
}

#[test]
fn a_chain_of_pending_versions_goes_one_level_at_a_time() {
    let mut w = World::new();
    let units = || {
        vec![
            unit("a", "2-1", &[], &[]),
            unit("b", "2-1", &["a"], &[]),
            unit("c", "2-1", &[], &["b"]),
        ]
    };
    let olds = ["a", "b", "c"].map(|n| bin(RepoKind::Live, n, "1-1"));
    w.binaries = Binaries::new(olds.to_vec());
    let p = w.plan(units());
    assert_eq!(ready(&p), ["a"]);
    assert_waits(&p, "b", &["a (a)"]);
    assert_waits(&p, "c", &["b (b)"]);

    w.binaries = Binaries::new(vec![
        bin(RepoKind::Build, "a", "2-1"),
        olds[1].clone(),
        olds[2].clone(),
    ]);
    let p = w.plan(units());
    assert_eq!(ready(&p), ["b"]);
    assert_waits(&p, "c", &["b (b)"]);
}

#[test]
fn a_cycle_with_older_binaries_is_broken_where_the_cycle_waits_most() {
    let mut w = World::new();
    w.binaries = Binaries::new(
        ["glibc", "gcc", "binutils"]
            .map(|n| bin(RepoKind::Live, n, "1-1"))
            .to_vec(),
    );
    // The toolchain: gcc needs binutils and glibc, binutils needs glibc, glibc needs gcc.
    let p = w.plan(vec![
        unit("glibc", "2-1", &[], &["gcc"]),
        unit("gcc", "2-1", &["glibc", "binutils"], &[]),
        unit("binutils", "2-1", &["glibc"], &[]),
        unit("gdb", "2-1", &["gcc"], &[]),
    ]);
    // glibc is what both others wait for and needs one binary: it goes first, against the
    // old gcc; the rest waits for the new versions as usual. One binary used, not two.
    assert_eq!(ready(&p), ["glibc"]);
    let glibc = p.find("glibc")[0];
    assert_eq!(
        p.explain_bootstrap(glibc),
        [
            "built against gcc 1-1 from the live repository (for gcc), not gcc 2-1: they depend on each other, and it goes first"
        ]
    );
    assert_waits(&p, "binutils", &["glibc (glibc)"]);
    assert_waits(&p, "gcc", &["glibc (glibc)", "binutils (binutils)"]);
    assert!(p.find("gcc")[0].bootstrap.is_empty());
    assert_waits(&p, "gdb", &["gcc (gcc)"]);
    let prio = |n| p.find(n)[0].priority;
    assert_eq!(
        (prio("glibc"), prio("binutils"), prio("gcc"), prio("gdb")),
        (4000, 3000, 2000, 1000),
        "the broken cycle is a chain, and the critical path follows it"
    );
}

#[test]
fn a_cycle_only_part_of_which_has_binaries_starts_where_it_can_or_stays_blocked() {
    let mut w = World::new();
    // x needs y, which has a binary; y needs x, which has none: x goes first.
    w.binaries = Binaries::new(vec![bin(RepoKind::Live, "y", "1-1")]);
    let p = w.plan(vec![
        unit("x", "1-1", &["y"], &[]),
        unit("y", "2-1", &["x"], &[]),
        // Neither p nor q has a binary: blocked, as any cycle was before.
        unit("p", "1-1", &["q"], &[]),
        unit("q", "1-1", &["p"], &[]),
    ]);
    assert_eq!(ready(&p), ["x"]);
    assert_waits(&p, "y", &["x (x)"]);
    for member in ["p", "q"] {
        assert!(
            matches!(state(&p, member), State::Blocked { chain } if chain[0] == "dependency cycle: p, q"),
            "{member}: {:?}",
            state(&p, member)
        );
    }
}

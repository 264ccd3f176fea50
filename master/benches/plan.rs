//! Planning on the real pkgsrc bulk-build graph in ../shared/data: a full plan, and the ready
//! list after one package is accepted (a full replan, as the master does, plus publishing the
//! ready list as JSON).
//!
//! `cargo bench -p quarters-master --bench plan -- [--data DIR]`

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use quarters_master::plan::binaries::{Binaries, BinaryPackage, RepoKind};
use quarters_master::plan::{Inputs, State, UnitSpec, plan};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = args
        .iter()
        .position(|a| a == "--data")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/data/pkgsrc-bulk-large"
            )
            .to_owned()
        });
    let depgraph =
        std::fs::read_to_string(format!("{data}/depgraph")).expect("the depgraph of shared/data");
    let history =
        std::fs::read_to_string(format!("{data}/history.csv")).expect("the history of shared/data");

    let mut depends: HashMap<String, Vec<String>> = HashMap::new();
    for line in depgraph.lines() {
        let Some((before, after)) = line.split_once(" -> ") else {
            continue;
        };
        depends
            .entry(after.trim().to_owned())
            .or_default()
            .push(before.trim().to_owned());
        depends.entry(before.trim().to_owned()).or_default();
    }
    let mut durations = HashMap::new();
    let mut lines = history.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let name_col = header.iter().position(|h| *h == "pkgname").unwrap();
    let dur_col = header.iter().position(|h| *h == "duration").unwrap();
    for line in lines {
        let cols: Vec<&str> = line.split(',').collect();
        if let (Some(n), Some(d)) = (
            cols.get(name_col),
            cols.get(dur_col).and_then(|d| d.parse::<u64>().ok()),
        ) {
            durations.insert((*n).to_owned(), d);
        }
    }
    let units: Vec<UnitSpec> = depends
        .iter()
        .map(|(name, deps)| UnitSpec {
            source: "pkgsrc".into(),
            path: name.clone(),
            pkgbase: name.clone(),
            arch: quarters_common::Arch::parse("x86_64").unwrap(),
            version: "1-1".into(),
            pkgnames: vec![name.clone()],
            provides: vec![],
            depends: deps.clone(),
            build_depends: vec![],
            packager: None,
            changed_at: None,
        })
        .collect();
    let arches = vec![quarters_common::Arch::parse("x86_64").unwrap()];
    let template = HashSet::new();
    let failed = HashMap::new();
    let claimed = HashMap::new();
    let run = |binaries: &Binaries| {
        plan(Inputs {
            arches: &arches,
            units: units.clone(),
            binaries,
            template: &template,
            failed: &failed,
            claimed: &claimed,
            durations: &durations,
            history: &HashMap::new(),
            default_ms: 60_000,
        })
    };

    let empty = Binaries::default();
    let first = run(&empty);
    let ready: Vec<String> = first
        .ready
        .iter()
        .map(|&i| first.units[i].spec.pkgbase.clone())
        .collect();
    let top = &first.units[first.ready[0]];
    println!(
        "graph: {} packages, {} edges; {} ready at the start; highest priority {} ({} ms of critical path); blocked {}",
        units.len(),
        depgraph.lines().count(),
        ready.len(),
        top.spec.pkgbase,
        top.priority,
        first
            .units
            .iter()
            .filter(|u| matches!(u.state, State::Blocked { .. }))
            .count()
    );

    // One package accepted: the master replans everything and publishes the ready list.
    let accepted = Binaries::new(vec![BinaryPackage {
        repo: RepoKind::Build,
        arch: quarters_common::Arch::parse("x86_64").unwrap(),
        pkgname: ready[0].clone(),
        pkgbase: ready[0].clone(),
        version: "1-1".into(),
        provides: vec![],
    }]);
    let mut times: Vec<Duration> = (0..51)
        .map(|_| {
            let t = Instant::now();
            let p = run(&accepted);
            let list: Vec<(&str, u64)> = p
                .ready
                .iter()
                .map(|&i| (p.units[i].spec.pkgbase.as_str(), p.units[i].priority))
                .collect();
            let json = serde_json::to_vec(&list).unwrap();
            std::hint::black_box(json);
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "ready-list update after one acceptance (full replan + JSON), 51 runs: median {:.2} ms, min {:.2} ms, max {:.2} ms",
        times[25].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[50].as_secs_f64() * 1e3
    );
}

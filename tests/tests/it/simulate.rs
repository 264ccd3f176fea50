//! `quartersctl simulate`: a real master and real builders (simulation driver) over HTTPS on
//! loopback build a real pkgsrc dependency graph, and the report agrees with itself and with
//! the graph: every package built once, never before its dependencies, never faster than the
//! lower bound; and a graph with a dependency cycle builds everything the cycle does not block.

use std::path::{Path, PathBuf};

use quarters_tests::command;
use serde_json::Value;

/// The shared pkgsrc data; CI has `../shared` beside the checkout, as this machine does.
fn pkgsrc_data() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/pkgsrc-bulk-large");
    assert!(
        dir.join("depgraph-small").is_file(),
        "{} is missing: the simulator tests need ../shared beside the checkout",
        dir.display()
    );
    dir
}

fn simulate(args: &[&str], json: &Path) -> Value {
    let out = command("quartersctl")
        .arg("simulate")
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "simulate failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"))
}

#[test]
fn the_farm_builds_the_small_pkgsrc_graph_once_each_and_no_faster_than_the_bound() {
    let data = pkgsrc_data();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let scale = 0.001;
    let report = simulate(
        &[
            "--depgraph",
            data.join("depgraph-small").to_str().unwrap(),
            "--history",
            data.join("history-small.csv").to_str().unwrap(),
            "--builders",
            "3",
            "--time-scale",
            &scale.to_string(),
        ],
        &json,
    );
    let graph = &report["graph"];
    assert_eq!(u(&graph["packages"]), 71);
    assert_eq!(u(&graph["cycles"]), 0);
    let bound_ms = u(&report["lower_bound_ms"]);
    assert!(bound_ms >= u(&graph["critical_path_ms"]));
    // No list schedule beats the bound, and critical-path-first is one of them.
    for policy in report["policies"].as_array().unwrap() {
        assert!(f(&policy["ratio"]) >= 1.0, "{policy}");
    }
    let farm = &report["farm"];
    assert_eq!(u(&farm["accepted"]), 71, "{farm}");
    assert_eq!(u(&farm["blocked"]) + u(&farm["failed"]), 0, "{farm}");
    assert_eq!(u(&farm["built_more_than_once"]), 0, "{farm}");
    assert_eq!(u(&farm["started_early"]), 0, "{farm}");
    assert_eq!(u(&farm["builds_started"]), 71, "{farm}");
    assert!(u(&farm["claim_attempts"]) >= 71, "{farm}");
    let bound_s = bound_ms as f64 / 1000.0 * scale;
    assert!(
        f(&farm["makespan_s"]) >= bound_s,
        "the farm beat the lower bound: {farm}"
    );
    // Dependencies were waited on, so there is a latency to report.
    assert!(u(&farm["dispatch"]["samples"]) > 0, "{farm}");
    assert!(f(&farm["dispatch"]["p50_ms"]) > 0.0, "{farm}");
    // Claims were reviewed by reading the peers, and the nodes counted what they served.
    assert!(u(&farm["peer_reads"]) >= 2 * 71, "{farm}");
    assert!(u(&farm["master_requests"]) > 0, "{farm}");
    assert!(
        u(&farm["builder_requests"]) >= u(&farm["peer_reads"]),
        "{farm}"
    );
    assert!(f(&farm["master_cpu_s"]) > 0.0, "{farm}");
    // A running master holds at least a few MiB; the figure is read, not defaulted to zero.
    assert!(u(&farm["master_peak_rss_kib"]) > 4 * 1024, "{farm}");
}

/// With `--verify` every package is built again by another builder and reproduced, and the
/// first builds are measured as without it: once each.
#[test]
fn with_verify_every_package_of_the_small_graph_is_reproduced_by_another_builder() {
    let data = pkgsrc_data();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let report = simulate(
        &[
            "--depgraph",
            data.join("depgraph-small").to_str().unwrap(),
            "--history",
            data.join("history-small.csv").to_str().unwrap(),
            "--builders",
            "3",
            "--time-scale",
            "0.001",
            "--verify",
        ],
        &json,
    );
    let farm = &report["farm"];
    assert_eq!(u(&farm["accepted"]), 71, "{farm}");
    assert_eq!(u(&farm["built_more_than_once"]), 0, "{farm}");
    let verification = &farm["verification"];
    assert_eq!(u(&verification["reproduced"]), 71, "{farm}");
    assert_eq!(u(&verification["differs"]), 0, "{farm}");
    assert!(f(&verification["done_s"]) >= f(&farm["wall_s"]), "{farm}");
    // A first build and a verification of each: claims won by the builders.
    assert_eq!(u(&farm["builds_started"]), 2 * 71, "{farm}");
}

#[test]
fn a_dependency_cycle_is_reported_and_everything_it_does_not_block_is_built() {
    let dir = tempfile::tempdir().unwrap();
    // a -> b -> c -> a is a cycle; d needs a; e, f and g are free of it.
    let depgraph = dir.path().join("depgraph");
    std::fs::write(
        &depgraph,
        "a-1 -> b-1\nb-1 -> c-1\nc-1 -> a-1\na-1 -> d-1\ne-1 -> f-1\nf-1 -> g-1\ne-1 -> g-1\n",
    )
    .unwrap();
    let history = dir.path().join("history.csv");
    std::fs::write(
        &history,
        "pkgname,duration\na-1,1000\nb-1,1000\nc-1,1000\nd-1,1000\ne-1,2000\nf-1,3000\n",
    )
    .unwrap();
    let json = dir.path().join("report.json");
    let report = simulate(
        &[
            "--depgraph",
            depgraph.to_str().unwrap(),
            "--history",
            history.to_str().unwrap(),
            "--builders",
            "2",
            "--time-scale",
            "0.01",
        ],
        &json,
    );
    let graph = &report["graph"];
    assert_eq!(u(&graph["packages"]), 7);
    assert_eq!(u(&graph["cycles"]), 1);
    assert_eq!(u(&graph["in_cycles"]), 3);
    assert_eq!(u(&graph["blocked"]), 4);
    // g has no recorded time: it is estimated, and the path e, f, g is the critical one.
    assert_eq!(u(&graph["recorded"]), 6);
    assert!(u(&graph["critical_path_ms"]) > 5000);
    let farm = &report["farm"];
    assert_eq!(u(&farm["accepted"]), 3, "{farm}");
    assert_eq!(u(&farm["blocked"]), 4, "{farm}");
    assert_eq!(u(&farm["built_more_than_once"]), 0, "{farm}");
    assert_eq!(u(&farm["started_early"]), 0, "{farm}");
}

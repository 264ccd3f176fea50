//! Synthetic graphs in the format of `../shared/data`, larger than any real one at hand, for the
//! scale benchmark and tests: packages depend mostly on a few popular libraries and on their
//! near neighbours (as in pkgsrc, where chains run through toolkits), durations spread from
//! seconds to hours, some packages have no recorded time, and some cycles are planted.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub packages: usize,
    /// Dependency cycles to plant (of two to four packages each).
    pub cycles: usize,
    pub seed: u64,
}

/// Writes `depgraph` and `history.csv` into `dir` and returns their paths.
pub fn write(dir: &Path, shape: Shape) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (depgraph, history) = generate(shape);
    let graph_path = dir.join("depgraph");
    let history_path = dir.join("history.csv");
    fs::write(&graph_path, depgraph)
        .with_context(|| format!("writing {}", graph_path.display()))?;
    fs::write(&history_path, history)
        .with_context(|| format!("writing {}", history_path.display()))?;
    Ok((graph_path, history_path))
}

/// The two files' contents.
pub fn generate(shape: Shape) -> (String, String) {
    let mut rng = fastrand::Rng::with_seed(shape.seed);
    let n = shape.packages;
    let name = |i: usize| format!("pkg{i:06}-1.0nb{}", i % 7);
    // The first packages are the popular libraries everything links against.
    let popular = (n / 50).max(1);
    let mut edges: Vec<(usize, usize)> = Vec::new();
    for i in 1..n {
        // About six dependencies a package, as in Arch's repositories (the 33,000
        // packages with about 200,000 dependencies).
        let count = match rng.u32(0..100) {
            0..10 => 0,
            10..50 => rng.usize(1..4),
            50..90 => rng.usize(4..12),
            _ => rng.usize(12..40),
        };
        for _ in 0..count {
            let dep = if rng.bool() {
                rng.usize(0..popular.min(i))
            } else {
                // A near neighbour: chains run through related packages.
                i - 1 - rng.usize(0..i.min(200))
            };
            edges.push((dep, i));
        }
    }
    edges.sort_unstable();
    edges.dedup();
    // A cycle: a chain of two to four packages, closed by an edge back to its start.
    for _ in 0..shape.cycles {
        let len = rng.usize(2..5);
        let start = rng.usize(popular..n - len);
        for k in 0..len - 1 {
            edges.push((start + k, start + k + 1));
        }
        edges.push((start + len - 1, start));
    }
    let mut depgraph = String::with_capacity(edges.len() * 32);
    for (before, after) in &edges {
        let _ = writeln!(depgraph, "{} -> {}", name(*before), name(*after));
    }
    let mut history = String::from("pkgname,outcome,duration\n");
    for i in 0..n {
        // One in twenty packages has no recorded time and is estimated.
        if rng.u32(0..20) == 0 {
            continue;
        }
        // Log-uniform from 2 s to about 2 h, popular libraries at the long end.
        let exponent = rng.f64() * 8.2 + if i < popular { 2.0 } else { 0.0 };
        let ms = (2_000.0 * exponent.exp()).min(7_200_000.0) as u64;
        let _ = writeln!(history, "{},success,{ms}", name(i));
    }
    (depgraph, history)
}

#[cfg(test)]
mod tests {
    use super::super::graph::Graph;
    use super::super::schedule::{Policy, Schedulable};
    use super::*;

    #[test]
    fn a_generated_graph_loads_with_its_cycles_and_schedules_within_the_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let shape = Shape {
            packages: 2_000,
            cycles: 5,
            seed: 7,
        };
        let (depgraph, history) = write(dir.path(), shape).unwrap();
        let graph = Graph::load(&depgraph, Some(&history)).unwrap();
        assert!(graph.len() > 1_900, "{} packages", graph.len());
        assert!(graph.recorded.iter().any(Option::is_none));
        let (cycles, blocked) = graph.blocked();
        assert_eq!(cycles.len(), 5);
        assert!(blocked.len() >= cycles.iter().map(Vec::len).sum::<usize>());
        let s = Schedulable::new(&graph, &blocked);
        assert_eq!(s.order.len(), graph.len() - blocked.len());
        let bound = s.lower_bound(8);
        for policy in [Policy::CriticalPath, Policy::MostDependents, Policy::Fifo] {
            let makespan = s.simulate(policy, 8);
            // Graham: any list schedule is within (2 - 1/m) of the optimum.
            assert!(
                makespan >= bound && makespan <= bound * 2,
                "{policy:?}: {makespan} vs {bound}"
            );
        }
        assert_eq!(
            generate(shape),
            generate(shape),
            "the same seed, the same graph"
        );
    }
}

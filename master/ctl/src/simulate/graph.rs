//! Dependency graphs in the format of `../shared/data`: `A -> B` lines (A is built before B)
//! and a build-history CSV with `pkgname` and `duration` (milliseconds) columns.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;

use anyhow::{Context, bail};
use quarters_master::plan::graph::{components, is_cycle};

/// A package graph with durations.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Names as the data gives them.
    pub names: Vec<String>,
    /// `deps[i]`: the packages `i` needs built first.
    pub deps: Vec<Vec<usize>>,
    /// Recorded build time in milliseconds, if any.
    pub recorded: Vec<Option<u64>>,
    /// What a package without a recorded time is expected to take: the median of the others.
    pub estimate: u64,
}

impl Graph {
    pub fn load(depgraph: &Path, history: Option<&Path>) -> anyhow::Result<Self> {
        let text = fs::read_to_string(depgraph)
            .with_context(|| format!("reading {}", depgraph.display()))?;
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut names = Vec::new();
        let mut deps: Vec<Vec<usize>> = Vec::new();
        let mut id = |name: &str, names: &mut Vec<String>, deps: &mut Vec<Vec<usize>>| {
            *index.entry(name.to_owned()).or_insert_with(|| {
                names.push(name.to_owned());
                deps.push(Vec::new());
                names.len() - 1
            })
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((before, after)) = line.split_once("->") else {
                bail!(
                    "{}:{}: expected `A -> B`, found {line:?}",
                    depgraph.display(),
                    n + 1
                );
            };
            let (before, after) = (before.trim(), after.trim());
            if before.is_empty() || after.is_empty() {
                bail!("{}:{}: a side of `->` is empty", depgraph.display(), n + 1);
            }
            let b = id(before, &mut names, &mut deps);
            let a = id(after, &mut names, &mut deps);
            if !deps[a].contains(&b) {
                deps[a].push(b);
            }
        }
        let mut recorded = vec![None; names.len()];
        if let Some(history) = history {
            let durations = quarters_master::history::read(history)?;
            for (i, name) in names.iter().enumerate() {
                recorded[i] = durations.get(name).copied();
            }
        }
        let mut known: Vec<u64> = recorded.iter().flatten().copied().collect();
        known.sort_unstable();
        let estimate = known.get(known.len() / 2).copied().unwrap_or(60_000);
        Ok(Graph {
            names,
            deps,
            recorded,
            estimate,
        })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// A package's expected duration in milliseconds.
    pub fn duration(&self, i: usize) -> u64 {
        self.recorded[i].unwrap_or(self.estimate)
    }

    /// Packages in dependency cycles (strongly connected components of more than one package, or
    /// depending on themselves), and every package that needs one of them: none can be built.
    pub fn blocked(&self) -> (Vec<Vec<usize>>, BTreeSet<usize>) {
        let cycles = cycles(&self.deps);
        let mut blocked: BTreeSet<usize> = cycles.iter().flatten().copied().collect();
        // Whatever needs a blocked package is blocked too: propagate until nothing changes.
        let mut changed = true;
        while changed {
            changed = false;
            for (i, d) in self.deps.iter().enumerate() {
                if !blocked.contains(&i) && d.iter().any(|p| blocked.contains(p)) {
                    blocked.insert(i);
                    changed = true;
                }
            }
        }
        (cycles, blocked)
    }
}

/// The dependency cycles: the planner's strongly connected components that are cycles.
fn cycles(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let needs = |v: usize| deps[v].clone();
    components(deps.len(), needs)
        .into_iter()
        .filter(|c| is_cycle(c, needs))
        .collect()
}

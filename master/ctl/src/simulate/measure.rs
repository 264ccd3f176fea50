//! What a simulated run came to, computed from the master's record of every build: the
//! makespan, dispatch latency, and packages built more than once.

use std::collections::HashMap;

use serde::Serialize;
use time::OffsetDateTime;

use quarters_master::db::{BuildRow, VerdictKind};

/// One recorded build, by graph node.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The graph node the build was of.
    pub node: usize,
    pub builder: String,
    pub accepted: bool,
    /// By the builder's clock (the same machine's clock here).
    pub started_at: OffsetDateTime,
    /// When the builder finished it.
    pub finished_at: OffsetDateTime,
    /// When the master recorded its verdict: for an accepted build, its acceptance.
    pub recorded_at: OffsetDateTime,
}

impl Recorded {
    /// Maps a database row to its graph node; rows of packages not in the graph, or without a
    /// start time, are left out.
    pub fn from_row(
        row: &BuildRow,
        recorded_at: OffsetDateTime,
        node_of: &HashMap<&str, usize>,
    ) -> Option<Self> {
        let started_at = row.started_at?;
        let wall = time::Duration::milliseconds(row.wall_ms.unwrap_or(0) as i64);
        Some(Recorded {
            node: *node_of.get(row.pkgbase.as_str())?,
            builder: row.builder.clone(),
            accepted: row.verdict == VerdictKind::Accepted,
            started_at,
            finished_at: started_at + wall,
            recorded_at,
        })
    }
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(mut ms: Vec<f64>) -> Self {
        if ms.is_empty() {
            return Percentiles::default();
        }
        ms.sort_by(f64::total_cmp);
        // Nearest rank: the smallest sample with at least p of the samples at or below it.
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Percentiles {
            samples: ms.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: ms[ms.len() - 1],
        }
    }
}

/// The timeline's figures.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Timeline {
    /// From the first build's start to the last acceptance, in seconds.
    pub makespan_s: f64,
    pub accepted: usize,
    /// From the acceptance of a build's last dependency to the build's start, for builds whose
    /// builder was idle by then (the build waited on the dependency, not on a free builder).
    pub dispatch: Percentiles,
    /// Builds that started before every dependency was accepted: must be none.
    pub started_early: usize,
    /// Packages with more than one build recorded.
    pub built_more_than_once: usize,
}

/// Computes the figures; `deps[v]` lists what node `v` needs built first.
pub fn timeline(builds: &[Recorded], deps: &[Vec<usize>]) -> Timeline {
    let mut accepted_at: HashMap<usize, OffsetDateTime> = HashMap::new();
    let mut per_node: HashMap<usize, usize> = HashMap::new();
    for b in builds {
        *per_node.entry(b.node).or_default() += 1;
        if b.accepted {
            accepted_at.insert(b.node, b.recorded_at);
        }
    }
    let first_start = builds.iter().map(|b| b.started_at).min();
    let last_acceptance = accepted_at.values().max().copied();
    let makespan_s = match (first_start, last_acceptance) {
        (Some(a), Some(b)) => (b - a).as_seconds_f64().max(0.0),
        _ => 0.0,
    };

    let mut by_builder: HashMap<&str, Vec<&Recorded>> = HashMap::new();
    for b in builds {
        by_builder.entry(b.builder.as_str()).or_default().push(b);
    }
    for list in by_builder.values_mut() {
        list.sort_by_key(|b| b.started_at);
    }
    let mut latencies = Vec::new();
    let mut started_early = 0;
    for list in by_builder.values() {
        for (i, b) in list.iter().enumerate() {
            let Some(ready_at) = deps[b.node]
                .iter()
                .map(|d| accepted_at.get(d).copied())
                .collect::<Option<Vec<_>>>()
                .and_then(|times| times.into_iter().max())
            else {
                // No dependencies, or one never accepted (then the build is not the farm's).
                continue;
            };
            if ready_at > b.started_at {
                started_early += 1;
                continue;
            }
            let builder_free_at = i.checked_sub(1).map(|p| list[p].finished_at);
            if builder_free_at.is_none_or(|free| free <= ready_at) {
                latencies.push((b.started_at - ready_at).as_seconds_f64() * 1000.0);
            }
        }
    }
    Timeline {
        makespan_s,
        accepted: accepted_at.len(),
        dispatch: Percentiles::of(latencies),
        started_early,
        built_more_than_once: per_node.values().filter(|n| **n > 1).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn at(ms: i64) -> OffsetDateTime {
        datetime!(2026-11-21 12:00 UTC) + time::Duration::milliseconds(ms)
    }

    fn build(node: usize, builder: &str, started: i64, finished: i64, recorded: i64) -> Recorded {
        Recorded {
            node,
            builder: builder.into(),
            accepted: true,
            started_at: at(started),
            finished_at: at(finished),
            recorded_at: at(recorded),
        }
    }

    #[test]
    fn latency_counts_only_builds_that_waited_on_their_dependency() {
        // 0 -> 1 and 0 -> 2. b1 builds 0, then 1 (20 ms after 0's acceptance). b2 was busy
        // with 3 until after 0's acceptance, so 2 waited on b2, not on 0.
        let deps = vec![vec![], vec![0], vec![0], vec![]];
        let builds = [
            build(0, "b1", 0, 100, 110),
            build(1, "b1", 130, 200, 210),
            build(3, "b2", 0, 150, 160),
            build(2, "b2", 155, 300, 320),
        ];
        let t = timeline(&builds, &deps);
        assert_eq!(t.dispatch.samples, 1);
        assert!((t.dispatch.p50_ms - 20.0).abs() < 1e-6, "{t:?}");
        assert!((t.makespan_s - 0.320).abs() < 1e-9, "{t:?}");
        assert_eq!(
            (t.accepted, t.started_early, t.built_more_than_once),
            (4, 0, 0)
        );
    }

    #[test]
    fn early_starts_and_second_builds_are_counted() {
        let deps = vec![vec![], vec![0]];
        let mut failed = build(0, "b2", 0, 50, 60);
        failed.accepted = false;
        let builds = [
            failed,
            build(0, "b1", 0, 100, 110),
            build(1, "b2", 105, 200, 210),
        ];
        let t = timeline(&builds, &deps);
        assert_eq!((t.started_early, t.built_more_than_once), (1, 1));
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (p.p50_ms, p.p99_ms, p.max_ms, p.samples),
            (50.0, 99.0, 100.0, 100)
        );
        assert_eq!(Percentiles::of(Vec::new()).samples, 0);
    }
}

//! Scheduling without a network: list scheduling of a graph on N identical builders, to compare
//! policies on the same graph against the lower bound max(total work / N, critical path).

use std::collections::{BTreeSet, BinaryHeap};

use super::graph::Graph;

/// How a free builder picks among ready packages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Highest critical path first (HLFET): a package's duration plus the longest chain of
    /// durations of what depends on it. What the Quarters master publishes.
    CriticalPath,
    /// Most packages depending on it (transitively) first, as pbulk orders.
    MostDependents,
    /// In the order packages became ready.
    Fifo,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::CriticalPath => "critical path (HLFET)",
            Policy::MostDependents => "most dependents (pbulk)",
            Policy::Fifo => "FIFO",
        }
    }
}

/// The schedulable part of a graph: what is not blocked by a cycle.
#[derive(Debug)]
pub struct Schedulable<'g> {
    pub graph: &'g Graph,
    pub live: Vec<bool>,
    pub dependents: Vec<Vec<usize>>,
    /// Topological order of the live packages, dependencies first.
    pub order: Vec<usize>,
}

impl<'g> Schedulable<'g> {
    pub fn new(graph: &'g Graph, blocked: &BTreeSet<usize>) -> Self {
        let n = graph.len();
        let live: Vec<bool> = (0..n).map(|i| !blocked.contains(&i)).collect();
        let mut dependents = vec![Vec::new(); n];
        let mut missing = vec![0usize; n];
        for i in (0..n).filter(|&i| live[i]) {
            for &d in &graph.deps[i] {
                dependents[d].push(i);
                missing[i] += 1;
            }
        }
        let mut order: Vec<usize> = (0..n).filter(|&i| live[i] && missing[i] == 0).collect();
        let mut at = 0;
        while at < order.len() {
            let v = order[at];
            at += 1;
            for &w in &dependents[v] {
                missing[w] -= 1;
                if missing[w] == 0 {
                    order.push(w);
                }
            }
        }
        Schedulable {
            graph,
            live,
            dependents,
            order,
        }
    }

    pub fn total_work(&self) -> u64 {
        self.order.iter().map(|&i| self.graph.duration(i)).sum()
    }

    /// Each package's critical-path priority: its duration plus the longest chain after it.
    pub fn critical_path(&self) -> Vec<u64> {
        quarters_master::plan::graph::critical_paths(&self.order, &self.dependents, |v| {
            Some(self.graph.duration(v))
        })
    }

    /// The lower bound on the makespan with `builders` builders, in milliseconds.
    pub fn lower_bound(&self, builders: usize) -> u64 {
        let longest = self.critical_path().into_iter().max().unwrap_or(0);
        (self.total_work().div_ceil(builders as u64)).max(longest)
    }

    /// How many packages need each package, directly or not: pbulk's priority.
    pub fn transitive_dependents(&self) -> Vec<u64> {
        // Reachability as bit sets, one block of targets at a time, so that memory stays at
        // `BLOCK / 8` bytes per package whatever the graph's size (30,000 packages: 15 MB).
        const WORDS: usize = 64;
        const BLOCK: usize = WORDS * 64;
        let n = self.graph.len();
        let mut counts = vec![0u64; n];
        let mut reach = vec![0u64; n * WORDS];
        for first in (0..n).step_by(BLOCK) {
            reach.fill(0);
            // Dependents before what they depend on: each set is complete when it is read.
            for &v in self.order.iter().rev() {
                for &w in &self.dependents[v] {
                    for k in 0..WORDS {
                        reach[v * WORDS + k] |= reach[w * WORDS + k];
                    }
                    if (first..first + BLOCK).contains(&w) {
                        let bit = w - first;
                        reach[v * WORDS + bit / 64] |= 1 << (bit % 64);
                    }
                }
            }
            for (v, count) in counts.iter_mut().enumerate() {
                *count += reach[v * WORDS..(v + 1) * WORDS]
                    .iter()
                    .map(|w| u64::from(w.count_ones()))
                    .sum::<u64>();
            }
        }
        counts
    }

    /// The makespan of list scheduling with `policy` on `builders` builders, in milliseconds.
    pub fn simulate(&self, policy: Policy, builders: usize) -> u64 {
        let n = self.graph.len();
        let rank: Vec<u64> = match policy {
            Policy::CriticalPath => self.critical_path(),
            Policy::MostDependents => self.transitive_dependents(),
            Policy::Fifo => vec![0; n],
        };
        let mut missing: Vec<usize> = (0..n)
            .map(|i| {
                if self.live[i] {
                    self.graph.deps[i].len()
                } else {
                    0
                }
            })
            .collect();
        // Ready packages by (rank, earliest-ready first, lowest index): a max-heap.
        let mut ready: BinaryHeap<(u64, std::cmp::Reverse<u64>, std::cmp::Reverse<usize>)> =
            BinaryHeap::new();
        let mut sequence = 0u64;
        for &v in &self.order {
            if missing[v] == 0 {
                ready.push((rank[v], std::cmp::Reverse(sequence), std::cmp::Reverse(v)));
                sequence += 1;
            }
        }
        // Running builds by finish time: a min-heap.
        let mut running: BinaryHeap<std::cmp::Reverse<(u64, usize)>> = BinaryHeap::new();
        let (mut now, mut idle, mut done) = (0u64, builders, 0usize);
        while done < self.order.len() {
            while idle > 0 {
                let Some((_, _, std::cmp::Reverse(v))) = ready.pop() else {
                    break;
                };
                running.push(std::cmp::Reverse((now + self.graph.duration(v), v)));
                idle -= 1;
            }
            let std::cmp::Reverse((finish, v)) =
                running.pop().expect("something runs while work remains");
            now = finish;
            idle += 1;
            done += 1;
            for &w in &self.dependents[v] {
                missing[w] -= 1;
                if missing[w] == 0 {
                    ready.push((rank[w], std::cmp::Reverse(sequence), std::cmp::Reverse(w)));
                    sequence += 1;
                }
            }
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(usize, usize)], durations: &[u64]) -> Graph {
        let mut deps = vec![Vec::new(); durations.len()];
        for &(before, after) in edges {
            deps[after].push(before);
        }
        Graph {
            names: (0..durations.len()).map(|i| format!("p{i}")).collect(),
            deps,
            recorded: durations.iter().map(|d| Some(*d)).collect(),
            estimate: 1,
        }
    }

    #[test]
    fn critical_path_first_beats_fifo_where_it_matters() {
        // p0 (10) -> p1 (10): a chain of 20; p2, p3, p4 (5 each) independent; two builders.
        let g = graph(&[(0, 1)], &[10, 10, 5, 5, 5]);
        let (_, blocked) = g.blocked();
        let s = Schedulable::new(&g, &blocked);
        assert_eq!(s.lower_bound(2), 20);
        assert_eq!(s.simulate(Policy::CriticalPath, 2), 20);
        assert!(s.simulate(Policy::Fifo, 2) >= 20);
    }

    #[test]
    fn dependents_are_counted_once_through_every_path() {
        // p0 -> p1 -> p3, p0 -> p2 -> p3, p3 -> p4; p5 alone.
        let g = graph(&[(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)], &[1; 6]);
        let (_, blocked) = g.blocked();
        let s = Schedulable::new(&g, &blocked);
        assert_eq!(s.transitive_dependents(), [4, 2, 2, 1, 0, 0]);
    }

    #[test]
    fn cycles_and_what_needs_them_are_left_out() {
        let g = graph(&[(0, 1), (1, 0), (1, 2), (3, 4)], &[1, 1, 1, 1, 1]);
        let (cycles, blocked) = g.blocked();
        assert_eq!(cycles.len(), 1);
        assert_eq!(blocked, [0, 1, 2].into_iter().collect());
        let s = Schedulable::new(&g, &blocked);
        assert_eq!(s.order, [3, 4]);
        assert_eq!(s.simulate(Policy::CriticalPath, 1), 2);
    }
}

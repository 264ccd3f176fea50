//! The plan updated in place: after an acceptance, a failure, a claim or a changed duration,
//! only the builds it affects are looked at again.
//!
//! A full plan ([`Resolution::plan`]) costs what the whole graph costs; at 33,000 builds it
//! was most of the master's time, run after every turn. [`Resolution::plan_again`] starts from
//! the builds whose inputs changed (the *seeds*) and walks:
//!
//! * **states** forwards, providers before dependents (by a topological rank kept from the
//!   full plan), going on to a build's dependents only when its state changed;
//! * **priorities** backwards, dependents before providers, going on to a build's providers
//!   only when its priority changed;
//!
//! and moves the builds whose state or priority changed in an ordered ready set.
//!
//! It falls back to a full plan where the shortcut would not be exact: a new resolution (the
//! sources changed), a seed that is or was in a dependency cycle and whose waits or
//! settledness changed (breaking cycles looks at whole cycles), a build that gains a wait (a
//! retried failure: a new wait may close a cycle and breaks the topological rank), or more
//! seeds than a full plan costs.
//!
//! Invariant: after any sequence of changes, the plan updated in place equals a full plan of
//! the same inputs (the property test in `incremental.rs`).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use super::{Plan, Progress, Resolution, State, Wait, expected_ms, graph};
use quarters_common::BuildKey;

/// What a plan keeps to be updated in place; made by every full plan.
#[derive(Debug, Default)]
pub(super) struct Kept {
    /// The builds that wait for each build.
    pub(super) dependents: Vec<Vec<usize>>,
    /// A topological rank over the waits: a provider's is lower than its dependents'.
    rank: Vec<usize>,
    /// Was in a dependency cycle before any was broken.
    in_cycle: Vec<bool>,
    /// In a cycle that stays blocked: its state does not depend on its providers.
    cycle_blocked: Vec<bool>,
    /// Position of each build's pkgbase in name order: the ready list's tie-break.
    name_rank: Vec<usize>,
    /// Ready builds by priority, highest first, then by name.
    ready: BTreeSet<ReadyKey>,
    /// The failures and claims the plan was made with, to see which changed.
    failed: HashMap<BuildKey, String>,
    claimed: HashMap<BuildKey, String>,
}

type ReadyKey = (Reverse<u64>, usize, usize);

/// What changed since the plan was made, besides failures and claims, which the plan compares
/// itself.
#[derive(Debug, Default)]
pub struct Changes {
    /// Builds resolved again ([`Resolution::update`]): their waits may have changed.
    pub resolved: Vec<usize>,
    /// Pkgbases whose expected durations may have changed.
    pub durations: Vec<String>,
}

/// More seeds than this share of the builds (and than [`FEW_SEEDS`]): a full plan is cheaper.
const FULL_PLAN_SHARE: usize = 8;
const FEW_SEEDS: usize = 64;

impl Kept {
    pub(super) fn new(
        resolution: &Resolution,
        progress: &Progress<'_>,
        edges: &[Vec<Wait>],
        in_cycle: Vec<bool>,
        cycle_blocked: Vec<bool>,
    ) -> Self {
        let n = edges.len();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, e) in edges.iter().enumerate() {
            for w in e {
                dependents[w.provider].push(i);
            }
        }
        // Every wait counts for the rank, also those to builds settled on their own, which
        // the full plan's order does not follow: such a build may become unsettled.
        let mut rank = vec![0; n];
        let every_wait = |v: usize| edges[v].iter().map(|w| w.provider).collect();
        for (r, component) in graph::components(n, every_wait).iter().enumerate() {
            for &i in component {
                rank[i] = r;
            }
        }
        let mut in_name_order: Vec<usize> = (0..n).collect();
        in_name_order.sort_by(|&a, &b| {
            resolution.specs[a]
                .pkgbase
                .cmp(&resolution.specs[b].pkgbase)
        });
        let mut name_rank = vec![0; n];
        for (r, &i) in in_name_order.iter().enumerate() {
            name_rank[i] = r;
        }
        Kept {
            dependents,
            rank,
            in_cycle,
            cycle_blocked,
            name_rank,
            ready: BTreeSet::new(),
            failed: progress.failed.clone(),
            claimed: progress.claimed.clone(),
        }
    }
}

impl Plan {
    fn ready_key(&self, i: usize) -> ReadyKey {
        (Reverse(self.units[i].priority), self.kept.name_rank[i], i)
    }

    /// Makes the ready set and list from the units' states, after a full plan.
    pub(super) fn fill_ready(&mut self) {
        let ready: BTreeSet<ReadyKey> = (0..self.units.len())
            .filter(|&i| self.units[i].state == State::Ready)
            .map(|i| self.ready_key(i))
            .collect();
        self.kept.ready = ready;
        self.ready = self.kept.ready.iter().map(|k| k.2).collect();
    }

    /// Sets build `i`'s state and priority, keeping the ready set in step.
    fn set(&mut self, i: usize, state: State, priority: u64) {
        if self.units[i].state == State::Ready {
            let key = self.ready_key(i);
            self.kept.ready.remove(&key);
        }
        self.units[i].state = state;
        self.units[i].priority = priority;
        if self.units[i].state == State::Ready {
            let key = self.ready_key(i);
            self.kept.ready.insert(key);
        }
    }
}

impl Resolution {
    /// Brings `plan`, made from this resolution, up to date with `progress` and `changes`:
    /// in place where that is exact, by a full plan otherwise. Returns whether it was in
    /// place.
    pub fn plan_again(&self, plan: &mut Plan, progress: &Progress<'_>, changes: &Changes) -> bool {
        let in_place = self.try_in_place(plan, progress, changes);
        if !in_place {
            *plan = self.plan(progress);
        }
        in_place
    }

    fn try_in_place(&self, plan: &mut Plan, progress: &Progress<'_>, changes: &Changes) -> bool {
        let n = self.specs.len();
        if plan.units.len() != n || !Arc::ptr_eq(&plan.by_name, &self.by_name) {
            return false;
        }
        let seeds = self.seeds(plan, progress, changes);
        if seeds.len() > (n / FULL_PLAN_SHARE).max(FEW_SEEDS) {
            return false;
        }
        // The seeds' waits, as a full plan would take them: only ever fewer than before.
        let mut new_waits: Vec<(usize, Vec<Wait>)> = Vec::new();
        for &i in &seeds {
            let settled = self.settled_state(i, progress).is_some();
            let waits = if settled {
                Vec::new()
            } else {
                self.rows[i].waits.clone()
            };
            if waits.iter().any(|w| !plan.units[i].waits.contains(w)) {
                return false;
            }
            // How cycles are broken depends on their members' waits and on which members are
            // settled, nothing else: a claim or a duration of a member changes neither.
            if plan.kept.in_cycle[i]
                && (waits != plan.units[i].waits || settled != self.was_settled(plan, i))
            {
                return false;
            }
            new_waits.push((i, waits));
        }

        // From here on the plan is changed in place.
        let mut priority_seeds: Vec<usize> = Vec::new();
        for (i, waits) in new_waits {
            if waits != plan.units[i].waits {
                for w in &plan.units[i].waits {
                    if !waits.contains(w) {
                        // One entry per wait: a build may wait on one provider for two of
                        // its dependencies, and lose only one of those waits.
                        let dependents = &mut plan.kept.dependents[w.provider];
                        if let Some(at) = dependents.iter().position(|&d| d == i) {
                            dependents.swap_remove(at);
                        }
                        priority_seeds.push(w.provider);
                    }
                }
                plan.units[i].waits = waits;
            }
            let expected = expected_ms(&self.specs[i], progress);
            if expected != plan.units[i].expected_ms {
                plan.units[i].expected_ms = expected;
                priority_seeds.push(i);
            }
        }

        // States, providers first.
        let mut queue: BinaryHeap<Reverse<(usize, usize)>> = BinaryHeap::new();
        let mut queued: HashSet<usize> = HashSet::new();
        for &i in &seeds {
            if queued.insert(i) {
                queue.push(Reverse((plan.kept.rank[i], i)));
            }
        }
        while let Some(Reverse((_, i))) = queue.pop() {
            queued.remove(&i);
            if plan.kept.cycle_blocked[i] {
                continue;
            }
            let state = match self.settled_state(i, progress) {
                Some(state) => state,
                None => {
                    let units = &plan.units;
                    self.derived_state(i, &units[i].waits, |p| Some(&units[p].state), progress)
                }
            };
            if state == plan.units[i].state {
                continue;
            }
            if state.is_pending() != plan.units[i].state.is_pending() {
                priority_seeds.push(i);
            }
            let priority = plan.units[i].priority;
            plan.set(i, state, priority);
            for &d in &plan.kept.dependents[i] {
                if queued.insert(d) {
                    queue.push(Reverse((plan.kept.rank[d], d)));
                }
            }
        }

        // Priorities, dependents first.
        let mut queue: BinaryHeap<(usize, usize)> = BinaryHeap::new();
        let mut queued: HashSet<usize> = HashSet::new();
        for i in priority_seeds {
            if queued.insert(i) {
                queue.push((plan.kept.rank[i], i));
            }
        }
        while let Some((_, i)) = queue.pop() {
            queued.remove(&i);
            let unit = &plan.units[i];
            let priority = if unit.state.is_pending() {
                let longest = plan.kept.dependents[i]
                    .iter()
                    .filter(|&&d| plan.units[d].state.is_pending())
                    .map(|&d| plan.units[d].priority)
                    .max()
                    .unwrap_or(0);
                unit.expected_ms + longest
            } else {
                0
            };
            if priority == unit.priority {
                continue;
            }
            let state = unit.state.clone();
            plan.set(i, state, priority);
            for w in &plan.units[i].waits {
                if queued.insert(w.provider) {
                    queue.push((plan.kept.rank[w.provider], w.provider));
                }
            }
        }

        plan.ready = plan.kept.ready.iter().map(|k| k.2).collect();
        plan.kept.failed.clone_from(progress.failed);
        plan.kept.claimed.clone_from(progress.claimed);
        true
    }

    /// Whether build `i`'s state in `plan` was one settled on its own ([`Resolution::settled_state`]).
    fn was_settled(&self, plan: &Plan, i: usize) -> bool {
        self.duplicates.contains_key(&i)
            || matches!(
                plan.units[i].state,
                State::Live | State::Built | State::Failed { .. }
            )
    }

    /// The builds whose inputs changed: resolved again, failed or retried, claimed or no
    /// longer, or with another expected duration.
    fn seeds(&self, plan: &Plan, progress: &Progress<'_>, changes: &Changes) -> Vec<usize> {
        let mut seeds: Vec<usize> = changes.resolved.clone();
        let mut by_key = |key: &BuildKey| {
            if let Some(&i) = self.by_name.get(&(key.pkgbase.clone(), key.arch.clone())) {
                seeds.push(i);
            }
        };
        for (old, new) in [
            (&plan.kept.failed, progress.failed),
            (&plan.kept.claimed, progress.claimed),
        ] {
            for (key, value) in old {
                if new.get(key) != Some(value) {
                    by_key(key);
                }
            }
            for (key, value) in new {
                if old.get(key) != Some(value) {
                    by_key(key);
                }
            }
        }
        for pkgbase in &changes.durations {
            seeds.extend(self.by_base.get(pkgbase).into_iter().flatten());
        }
        seeds.sort_unstable();
        seeds.dedup();
        seeds
    }
}

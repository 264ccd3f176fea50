//! Evaluating PKGBUILDs that have no `.SRCINFO`: a bounded pool of sandboxed
//! `makepkg --printsrcinfo` runs, and the progress it reports while it works.
//!
//! A tree of PKGBUILDs without `.SRCINFO` costs makepkg's own evaluation per package, seconds
//! each; a cold scan of thousands of them takes minutes even on every core, so whoever runs
//! the scan (a terminal, the master's state, the log) is told how far it got.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How PKGBUILDs without .SRCINFO are treated.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Evaluate them with `makepkg --printsrcinfo` in a sandbox; if not, they are errors.
    pub enabled: bool,
    pub timeout: Duration,
    /// How many PKGBUILDs are evaluated at once (each in its own sandbox).
    pub jobs: usize,
}

impl Default for Evaluation {
    fn default() -> Self {
        Evaluation {
            enabled: true,
            timeout: Duration::from_secs(20),
            jobs: default_jobs(),
        }
    }
}

/// One evaluation per core: evaluating a PKGBUILD is bash and makepkg's own work.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// How far one evaluation run has got.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// PKGBUILDs evaluated so far, failed ones included.
    pub done: usize,
    /// PKGBUILDs this run evaluates.
    pub total: usize,
    pub failed: usize,
    /// Evaluations running side by side.
    pub jobs: usize,
    pub elapsed: Duration,
}

impl Progress {
    /// Evaluations per second so far.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(0.001)
    }

    /// The time left at the rate so far; unknown until the first evaluation finished.
    pub fn left(&self) -> Option<Duration> {
        let rate = self.rate();
        (self.done > 0 && rate > 0.0)
            .then(|| Duration::from_secs_f64((self.total - self.done) as f64 / rate))
    }

    pub fn finished(&self) -> bool {
        self.done == self.total
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} PKGBUILDs evaluated, {} failed, {:.1}/s on {} cores",
            self.done,
            self.total,
            self.failed,
            self.rate(),
            self.jobs
        )?;
        match self.left() {
            _ if self.finished() => write!(f, ", {:.1} s", self.elapsed.as_secs_f64()),
            Some(left) => write!(f, ", about {:.0} s left", left.as_secs_f64()),
            None => Ok(()),
        }
    }
}

/// Told how a run goes: about once a second, and once more when it has finished.
pub type Observer = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How often the observer hears of a run.
pub const TICK: Duration = Duration::from_secs(1);

/// The observer used where nobody asked for one: a log line every few seconds, and one at the
/// end.
pub fn log_observer(source: &str) -> Observer {
    const EVERY: u64 = 5;
    let source = source.to_owned();
    Arc::new(move |p: &Progress| {
        if p.finished()
            || p.elapsed.as_secs() / EVERY != p.elapsed.saturating_sub(TICK).as_secs() / EVERY
        {
            tracing::info!(source = %source, "{p}");
        }
    })
}

/// Runs `work` on every item, `jobs` at a time, telling `observer` how it goes. Results come
/// back in the order of `items`; `failed` says which results count as failures.
pub fn run_pool<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
    failed: impl Fn(&R) -> bool + Sync,
    observer: &Observer,
) -> Vec<R> {
    let total = items.len();
    if total == 0 {
        return Vec::new();
    }
    let jobs = jobs.clamp(1, total);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failures = AtomicUsize::new(0);
    let started = Instant::now();
    let progress = || Progress {
        done: done.load(Ordering::Relaxed),
        total,
        failed: failures.load(Ordering::Relaxed),
        jobs,
        elapsed: started.elapsed(),
    };
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(n) else {
                            return out;
                        };
                        let result = work(item);
                        if failed(&result) {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                        out.push((n, result));
                    }
                })
            })
            .collect();
        let mut last_tick = Instant::now();
        while workers.iter().any(|w| !w.is_finished()) {
            std::thread::sleep(Duration::from_millis(50));
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                observer(&progress());
            }
        }
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("evaluation threads do not panic"))
            .collect()
    });
    observer(&progress());
    results.sort_by_key(|(n, _)| *n);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn the_pool_keeps_the_order_counts_failures_and_reports_the_end() {
        let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
        let observer: Observer = {
            let seen = seen.clone();
            Arc::new(move |p: &Progress| seen.lock().unwrap().push(p.clone()))
        };
        let items: Vec<u32> = (0..40).collect();
        let results = run_pool(&items, 3, |&i| i * 2, |&r| r % 10 == 0, &observer);
        assert_eq!(results, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let seen = seen.lock().unwrap();
        let last = seen.last().expect("the end is always reported");
        assert_eq!(
            (last.done, last.total, last.failed, last.jobs),
            (40, 40, 8, 3)
        );
        assert!(last.finished());
        assert!(
            last.to_string()
                .starts_with("40 of 40 PKGBUILDs evaluated, 8 failed")
        );
    }

    #[test]
    fn time_left_is_unknown_until_something_finished() {
        let mut p = Progress {
            done: 0,
            total: 10,
            failed: 0,
            jobs: 2,
            elapsed: Duration::from_secs(4),
        };
        assert_eq!(p.left(), None);
        p.done = 2;
        assert_eq!(p.left(), Some(Duration::from_secs(16)));
        assert!(p.to_string().ends_with("about 16 s left"), "{p}");
    }
}

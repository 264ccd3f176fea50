//! `quartersctl simulate`: how close the farm comes to the best possible makespan on a real
//! dependency graph.
//!
//! No schedule on N builders beats max(total work / N, critical path). The simulator loads a
//! graph with its recorded build times, reports its cycles (and what they block), compares
//! scheduling policies on it without a network (list scheduling: critical path first as the
//! master orders its ready list, pbulk's most-dependents order, FIFO), and then, unless told
//! not to, runs a real farm over it: a master and N builders with the simulation driver, as
//! processes over HTTPS on loopback, measuring the makespan, dispatch latency, builds started
//! twice, requests served and CPU time.

mod farm;
pub mod generate;
pub mod graph;
mod measure;
pub mod schedule;
mod source;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

pub use farm::{Cost, FarmReport, IdleCost};
use graph::Graph;
pub use measure::{Percentiles, Timeline};
use schedule::{Policy, Schedulable};

#[derive(Clone, Debug)]
pub struct SimulateOptions {
    /// `A -> B` lines: A is built before B.
    pub depgraph: PathBuf,
    /// CSV with `pkgname` and `duration` (ms) columns.
    pub history: Option<PathBuf>,
    pub builders: usize,
    /// Simulated builds take their recorded duration times this.
    pub time_scale: f64,
    /// Compare the policies and stop: no farm.
    pub schedule_only: bool,
    /// Where the farm keeps its files; a temporary directory if none.
    pub dir: Option<PathBuf>,
    pub keep: bool,
    /// How long to watch the farm idle after the build.
    pub idle: Duration,
    /// Verify every package too, and measure it.
    pub verify: bool,
    /// Write the report as JSON here too.
    pub json: Option<PathBuf>,
}

/// Everything the simulator found, as printed (and written with `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub graph: GraphSummary,
    pub builders: usize,
    /// max(total work / builders, critical path), unscaled, in milliseconds.
    pub lower_bound_ms: u64,
    pub policies: Vec<PolicyResult>,
    pub farm: Option<FarmReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GraphSummary {
    pub packages: usize,
    pub edges: usize,
    /// Packages with a recorded duration; the others are estimated at `estimate_ms`.
    pub recorded: usize,
    pub estimate_ms: u64,
    pub cycles: usize,
    pub in_cycles: usize,
    /// In a cycle, or needing a package in one: never built.
    pub blocked: usize,
    pub total_work_ms: u64,
    pub critical_path_ms: u64,
    /// Reading and parsing the files.
    pub load_ms: f64,
    /// Cycles, blocked packages, order and critical path.
    pub analysis_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PolicyResult {
    pub policy: String,
    pub makespan_ms: u64,
    /// Makespan over the lower bound.
    pub ratio: f64,
    /// How long the policy took to schedule the graph.
    pub compute_ms: f64,
}

/// Runs the simulation; `shutdown` interrupts the farm.
pub async fn run(
    options: &SimulateOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Report> {
    if options.builders == 0 {
        anyhow::bail!("--builders must be at least 1");
    }
    if !(options.time_scale > 0.0 && options.time_scale.is_finite()) {
        anyhow::bail!("--time-scale must be a positive number");
    }
    let clock = Instant::now();
    let graph = Graph::load(&options.depgraph, options.history.as_deref())?;
    let load_ms = ms(clock.elapsed());
    let clock = Instant::now();
    let (cycles, blocked) = graph.blocked();
    let schedulable = Schedulable::new(&graph, &blocked);
    let critical_path_ms = schedulable.critical_path().into_iter().max().unwrap_or(0);
    let analysis_ms = ms(clock.elapsed());
    let summary = GraphSummary {
        packages: graph.len(),
        edges: graph.deps.iter().map(Vec::len).sum(),
        recorded: graph.recorded.iter().flatten().count(),
        estimate_ms: graph.estimate,
        cycles: cycles.len(),
        in_cycles: cycles.iter().map(Vec::len).sum(),
        blocked: blocked.len(),
        total_work_ms: schedulable.total_work(),
        critical_path_ms,
        load_ms,
        analysis_ms,
    };
    print_graph(&summary, &graph, &cycles);

    let bound = schedulable.lower_bound(options.builders);
    let policies: Vec<PolicyResult> = [Policy::CriticalPath, Policy::MostDependents, Policy::Fifo]
        .into_iter()
        .map(|policy| {
            let clock = Instant::now();
            let makespan = schedulable.simulate(policy, options.builders);
            PolicyResult {
                policy: policy.name().to_owned(),
                makespan_ms: makespan,
                ratio: makespan as f64 / bound.max(1) as f64,
                compute_ms: ms(clock.elapsed()),
            }
        })
        .collect();
    print_policies(options.builders, bound, &policies);

    let farm = if options.schedule_only {
        None
    } else {
        Some(run_farm(options, &graph, bound, shutdown).await?)
    };
    let report = Report {
        graph: summary,
        builders: options.builders,
        lower_bound_ms: bound,
        policies,
        farm,
    };
    if let Some(path) = &options.json {
        let json = serde_json::to_vec_pretty(&report).expect("the report serializes");
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

async fn run_farm(
    options: &SimulateOptions,
    graph: &Graph,
    bound_ms: u64,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<FarmReport> {
    let exe = std::env::current_exe().context("locating quartersctl")?;
    let bin_dir = exe
        .parent()
        .context("quartersctl has no parent directory")?
        .to_owned();
    let (dir, temp) = match &options.dir {
        Some(dir) => {
            if dir.exists() && dir.read_dir()?.next().is_some() {
                anyhow::bail!("{} is not empty; choose another --dir", dir.display());
            }
            std::fs::create_dir_all(dir)?;
            (dir.clone(), None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("quarters-simulate-")
                .tempdir()
                .context("creating a temporary directory")?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    let bound_s = bound_ms as f64 / 1000.0 * options.time_scale;
    println!(
        "\nFarm: {} builders, time scale {} (the lower bound becomes {bound_s:.1} s), in {}",
        options.builders,
        options.time_scale,
        dir.display()
    );
    let farm_options = farm::FarmOptions {
        builders: options.builders,
        time_scale: options.time_scale,
        dir: dir.clone(),
        bin_dir,
        idle: options.idle,
        verify: options.verify,
        // Generous: a farm this far from the bound has a problem worth a look, not a wait.
        timeout: Duration::from_secs_f64(bound_s * 10.0 + 300.0),
    };
    let result = farm::run(graph, &farm_options, shutdown).await;
    match temp {
        Some(temp) if options.keep || result.is_err() => {
            let _ = temp.keep();
            println!("The farm's files stay in {}", dir.display());
        }
        _ => {}
    }
    let report = result?;
    print_farm(&report, bound_s);
    Ok(report)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn hours(ms: u64) -> String {
    format!("{:.2} h", ms as f64 / 3_600_000.0)
}

fn print_graph(s: &GraphSummary, graph: &Graph, cycles: &[Vec<usize>]) {
    println!(
        "Graph: {} packages, {} dependencies; {} with a recorded time, the others estimated at {:.1} s (the median)",
        s.packages,
        s.edges,
        s.recorded,
        s.estimate_ms as f64 / 1000.0
    );
    println!(
        "  total work {}, critical path {}; loaded in {:.1} ms, analysed in {:.1} ms",
        hours(s.total_work_ms),
        hours(s.critical_path_ms),
        s.load_ms,
        s.analysis_ms
    );
    if cycles.is_empty() {
        println!("  no dependency cycles");
        return;
    }
    println!(
        "  {} dependency cycle(s) over {} packages; {} packages blocked by them (never built):",
        s.cycles, s.in_cycles, s.blocked
    );
    for cycle in cycles.iter().take(5) {
        let names: Vec<&str> = cycle
            .iter()
            .take(6)
            .map(|&i| graph.names[i].as_str())
            .collect();
        let more = cycle.len().saturating_sub(names.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        println!("    {}{more}", names.join(", "));
    }
    if cycles.len() > 5 {
        println!("    ... and {} more cycles", cycles.len() - 5);
    }
}

fn print_policies(builders: usize, bound: u64, policies: &[PolicyResult]) {
    println!(
        "\nScheduling on {builders} builders, without a network; lower bound {}:",
        hours(bound)
    );
    for p in policies {
        println!(
            "  {:<26} {:>9}  {:.4} x the bound  ({:.1} ms to compute)",
            p.policy,
            hours(p.makespan_ms),
            p.ratio,
            p.compute_ms
        );
    }
}

fn print_farm(r: &FarmReport, bound_s: f64) {
    let t = &r.timeline;
    let c = &r.cost;
    println!("Farm results:");
    println!(
        "  makespan             {:.2} s, first build start to last acceptance ({:.1} s from starting the processes)",
        t.makespan_s, r.wall_s
    );
    println!("  lower bound          {bound_s:.2} s");
    println!(
        "  ratio                {:.4}",
        t.makespan_s / bound_s.max(f64::MIN_POSITIVE)
    );
    println!(
        "  built                {} packages; {} blocked, {} failed",
        t.accepted, r.blocked, r.failed
    );
    println!(
        "  built more than once {} packages ({} builds started); {} started before a dependency was accepted",
        t.built_more_than_once, c.builds_started, t.started_early
    );
    if let Some(v) = &r.verification {
        println!(
            "  verification         {} reproduced, {} differ; all done {:.2} s from starting the processes, {:.2} s after the farm settled",
            v.reproduced, v.differs, v.done_s, v.after_settled_s
        );
    }
    println!(
        "  dispatch latency     p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, over {} builds that waited on a dependency",
        t.dispatch.p50_ms, t.dispatch.p99_ms, t.dispatch.max_ms, t.dispatch.samples
    );
    println!(
        "  requests served      master {}, builders {}",
        c.master_requests, c.builder_requests
    );
    println!(
        "  claims               {} attempts; {:.1} peer reads per claim ({} of {} reads unchanged, 304)",
        c.claim_attempts,
        c.peer_reads_per_claim(),
        c.peer_reads_unchanged,
        c.peer_reads
    );
    println!(
        "  CPU time             master {:.2} s ({:.1} % of one core over the run), builders {:.2} s",
        c.master_cpu_s,
        100.0 * c.master_cpu_s / r.wall_s.max(f64::MIN_POSITIVE),
        c.builders_cpu_s
    );
    let builds = t.accepted.max(1) as f64;
    println!(
        "  per accepted build   master {:.2} ms of CPU, builders {:.2} ms",
        1000.0 * c.master_cpu_s / builds,
        1000.0 * c.builders_cpu_s / builds
    );
    println!(
        "  master memory        {:.0} MiB at most (resident)",
        c.master_peak_rss_kib as f64 / 1024.0
    );
    if let Some(idle) = &c.idle {
        println!(
            "  idle, {:.0} s          master {:.2} % of one core, {:.1} requests/s; all builders {:.2} % of one core",
            idle.seconds,
            100.0 * idle.master_cpu_share,
            idle.master_requests_per_s,
            100.0 * idle.builders_cpu_share
        );
    }
}

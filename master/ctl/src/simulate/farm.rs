//! The farm half of the simulator: the graph as a git source, a master and N builders with the
//! simulation driver as real processes over HTTPS on loopback, and what they did, from the
//! master's database, the nodes' counters and the kernel's CPU accounting.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use quarters_common::api::v1::{MasterState, PackageState, Role};
use quarters_common::client::Fetched;
use quarters_common::counters::{
    CLAIM_ATTEMPTS, CLAIMS_WON, PEER_READS, PEER_READS_UNCHANGED, REQUESTS,
};
use serde::Serialize;

use super::graph::Graph;
use super::measure::{self, Recorded, Timeline};
use super::source;
use crate::localfarm::configs::{
    self, BuilderExtra, Builds, MasterExtra, Scan, Source, SourceKind,
};
use crate::localfarm::{FarmSpec, LocalFarm};

/// How to run the farm.
#[derive(Clone, Debug)]
pub struct FarmOptions {
    pub builders: usize,
    /// Simulated builds take their recorded duration times this.
    pub time_scale: f64,
    /// Holds the source, the CA, the configs, the logs and the nodes' state.
    pub dir: PathBuf,
    /// Where `quarters-master` and `quarters-builder` are.
    pub bin_dir: PathBuf,
    /// How long to watch the farm idle after the build, to measure what polling costs.
    pub idle: Duration,
    /// Give up if the build has not settled by then.
    pub timeout: Duration,
    /// Verify every package too (advisory), and wait for the verifications.
    pub verify: bool,
}

/// What the farm did.
#[derive(Clone, Debug, Serialize)]
pub struct FarmReport {
    pub builders: usize,
    pub time_scale: f64,
    /// From starting the processes to the farm settling, in seconds.
    pub wall_s: f64,
    /// Packages the master found blocked (cycles, and what needs them) or failed.
    pub blocked: u64,
    pub failed: u64,
    #[serde(flatten)]
    pub timeline: Timeline,
    #[serde(flatten)]
    pub cost: Cost,
    /// With `--verify`: what the verification builds found, and when they were done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationReport>,
}

/// The verification builds of a `--verify` run.
#[derive(Clone, Debug, Serialize)]
pub struct VerificationReport {
    pub reproduced: u64,
    pub differs: u64,
    /// From starting the processes to no verification waiting, in seconds.
    pub done_s: f64,
    /// From the farm settling (every first build done) to no verification waiting.
    pub after_settled_s: f64,
}

/// What the nodes say they did, and the CPU time they took.
#[derive(Clone, Debug, Serialize)]
pub struct Cost {
    /// Builds started, by the builders' count of claims won: each package once if none was
    /// built twice.
    pub builds_started: u64,
    pub claim_attempts: u64,
    pub peer_reads: u64,
    /// Peer reads answered 304 (nothing changed): no body, no parsing.
    pub peer_reads_unchanged: u64,
    pub master_requests: u64,
    pub builder_requests: u64,
    pub master_cpu_s: f64,
    pub builders_cpu_s: f64,
    /// The master's peak resident memory, in KiB.
    pub master_peak_rss_kib: u64,
    pub idle: Option<IdleCost>,
}

/// What the farm costs while nothing happens.
#[derive(Clone, Debug, Serialize)]
pub struct IdleCost {
    pub seconds: f64,
    /// CPU time over wall time: 1.0 is one core kept busy.
    pub master_cpu_share: f64,
    pub builders_cpu_share: f64,
    pub master_requests_per_s: f64,
}

impl Cost {
    pub fn peer_reads_per_claim(&self) -> f64 {
        self.peer_reads as f64 / self.claim_attempts.max(1) as f64
    }
}

/// Builds `graph` on a local farm and measures it.
pub async fn run(
    graph: &Graph,
    options: &FarmOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<FarmReport> {
    if options.builders == 0 {
        bail!("a farm needs at least one builder");
    }
    let names = source::package_names(graph)?;
    source::write_packages(graph, &names, &options.dir.join("packages"))?;
    source::write_history(graph, &names, &options.dir.join("history.csv"))?;
    let (master_extra, builder_extra) = extras(graph.estimate, options.time_scale, options.verify)?;
    let spec = FarmSpec {
        dir: options.dir.clone(),
        builders: options.builders,
        bin_dir: options.bin_dir.clone(),
        master_extra,
        builder_extra,
        // Unsigned, as the figures in BENCHMARKS.md were measured: the simulated builders make
        // tiny packages, and signing them would measure the signer, not the scheduler.
        signing: false,
    };
    let started = Instant::now();
    let mut farm = LocalFarm::start(&spec).await?;
    let outcome = tokio::select! {
        () = shutdown => Err(anyhow::anyhow!("interrupted")),
        settled = async {
            let state = wait_settled(&mut farm, options.timeout).await?;
            let wall = started.elapsed();
            let verified = if options.verify {
                wait_verified(&mut farm, options.timeout).await?;
                Some(started.elapsed())
            } else {
                None
            };
            anyhow::Ok((state, wall, verified))
        } => settled,
    };
    let measured = match outcome {
        Ok((state, wall, verified)) => measure_cost(&farm, options)
            .await
            .map(|cost| (state, cost, wall, verified)),
        Err(e) => Err(e),
    };
    farm.stop(Duration::from_secs(10)).await?;
    let (state, cost, wall, verified) = measured?;

    let db = quarters_master::db::Db::open(&farm.master_state_dir().join("master.sqlite"))
        .context("opening the master's database")?;
    let node_of: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let builds: Vec<Recorded> = db
        .timeline()?
        .iter()
        .filter_map(|(row, recorded)| Recorded::from_row(row, *recorded, &node_of))
        .collect();
    let count = |k: PackageState| state.counts.get(&k).copied().unwrap_or(0);
    let verification = match verified {
        Some(done) => {
            let (reproduced, differs) = db.verification_counts()?;
            Some(VerificationReport {
                reproduced,
                differs,
                done_s: done.as_secs_f64(),
                after_settled_s: (done - wall).as_secs_f64(),
            })
        }
        None => None,
    };
    Ok(FarmReport {
        verification,
        builders: options.builders,
        time_scale: options.time_scale,
        wall_s: wall.as_secs_f64(),
        blocked: count(PackageState::Blocked) + count(PackageState::IndirectFailed),
        failed: count(PackageState::Failed),
        timeline: measure::timeline(&builds, &graph.deps),
        cost,
    })
}

/// The master's and the builders' config beyond what every local farm has: the graph's
/// packages as a git source in `packages`, their expected durations in `history.csv` (beside
/// the configs) and `estimate_ms` for the others, simulated builds at `time_scale`.
fn extras(
    estimate_ms: u64,
    time_scale: f64,
    verify: bool,
) -> anyhow::Result<(toml::Table, toml::Table)> {
    let master = MasterExtra {
        // The .SRCINFO files say everything; evaluating PKGBUILDs would only slow the scan.
        scan: Some(Scan {
            evaluate_pkgbuilds: false,
        }),
        builds: Some(Builds {
            history: Some("history.csv".into()),
            default_estimate: Some(estimate_ms.div_ceil(1000)),
        }),
        // The simulation measures how first builds are shared out; verification builds,
        // which only fill idle slots, would double the builds it counts: only with `--verify`.
        verification: Some(configs::Verification {
            mode: if verify { "advisory" } else { "off" }.to_owned(),
        }),
        sources: vec![Source {
            name: "graph".to_owned(),
            kind: SourceKind::Git {
                path: "packages".into(),
            },
        }],
        ..MasterExtra::default()
    };
    Ok((
        configs::table(&master)?,
        configs::table(&BuilderExtra::sim(time_scale))?,
    ))
}

/// Follows the master until nothing is left to build, printing progress now and then.
async fn wait_settled(farm: &mut LocalFarm, timeout: Duration) -> anyhow::Result<MasterState> {
    let client = farm.client(&farm.master);
    let started = Instant::now();
    let mut etag: Option<String> = None;
    let mut last_print = Instant::now();
    let mut last: Option<MasterState> = None;
    loop {
        farm.check_running()?;
        if started.elapsed() > timeout {
            let counts = last.map(|s| s.counts).unwrap_or_default();
            bail!(
                "the farm had not settled after {timeout:?} ({counts:?}); see the logs in {}",
                farm.dir.display()
            );
        }
        match client
            .state::<MasterState>(Role::Master, etag.as_deref(), Duration::from_secs(1))
            .await
        {
            Ok(Fetched::New { state, etag: e }) => {
                etag = Some(e);
                if crate::localfarm::settled(&state.content) {
                    return Ok(state.content);
                }
                last = Some(state.content);
            }
            Ok(Fetched::Unchanged) => {}
            Err(e) => tracing::debug!("reading the master: {e}"),
        }
        if last_print.elapsed() >= Duration::from_secs(5)
            && let Some(state) = &last
        {
            last_print = Instant::now();
            let counts: Vec<String> = state
                .counts
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect();
            println!(
                "[{:>7.1} s] {}",
                started.elapsed().as_secs_f64(),
                counts.join(", ")
            );
        }
    }
}

/// Follows the master until no verification waits.
async fn wait_verified(farm: &mut LocalFarm, timeout: Duration) -> anyhow::Result<()> {
    let client = farm.client(&farm.master);
    let started = Instant::now();
    loop {
        farm.check_running()?;
        if started.elapsed() > timeout {
            bail!(
                "verifications still waiting after {timeout:?}; see the logs in {}",
                farm.dir.display()
            );
        }
        if let Ok(Fetched::New { state, .. }) = client
            .state::<MasterState>(Role::Master, None, Duration::from_secs(1))
            .await
            && state
                .content
                .verification
                .as_ref()
                .is_some_and(|v| v.pending == 0)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The nodes' counters and CPU time, after the build and after an idle spell.
async fn measure_cost(farm: &LocalFarm, options: &FarmOptions) -> anyhow::Result<Cost> {
    let snapshot = Snapshot::take(farm).await?;
    let idle = if options.idle.is_zero() {
        None
    } else {
        println!(
            "Watching the farm idle for {:.0} s...",
            options.idle.as_secs_f64()
        );
        tokio::time::sleep(options.idle).await;
        let after = Snapshot::take(farm).await?;
        let seconds = (after.at - snapshot.at).as_secs_f64();
        Some(IdleCost {
            seconds,
            master_cpu_share: (after.master_cpu - snapshot.master_cpu) / seconds,
            builders_cpu_share: (after.builders_cpu - snapshot.builders_cpu) / seconds,
            master_requests_per_s: (after.master_requests - snapshot.master_requests) as f64
                / seconds,
        })
    };
    let sum = |k: &str| {
        snapshot
            .builder_counters
            .iter()
            .map(|c| c.get(k).copied().unwrap_or(0))
            .sum()
    };
    Ok(Cost {
        builds_started: sum(CLAIMS_WON),
        claim_attempts: sum(CLAIM_ATTEMPTS),
        peer_reads: sum(PEER_READS),
        peer_reads_unchanged: sum(PEER_READS_UNCHANGED),
        master_requests: snapshot.master_requests,
        builder_requests: sum(REQUESTS),
        master_cpu_s: snapshot.master_cpu,
        builders_cpu_s: snapshot.builders_cpu,
        master_peak_rss_kib: farm.master.peak_rss_kib()?,
        idle,
    })
}

/// The farm's counters and CPU time at one moment.
struct Snapshot {
    at: Instant,
    master_cpu: f64,
    builders_cpu: f64,
    master_requests: u64,
    builder_counters: Vec<std::collections::BTreeMap<String, u64>>,
}

impl Snapshot {
    async fn take(farm: &LocalFarm) -> anyhow::Result<Self> {
        let at = Instant::now();
        let master_cpu = farm.master.cpu_time()?.as_secs_f64();
        let mut builders_cpu = 0.0;
        for b in &farm.builders {
            builders_cpu += b.cpu_time()?.as_secs_f64();
        }
        let master_requests = farm
            .health(&farm.master)
            .await?
            .counters
            .get(REQUESTS)
            .copied()
            .unwrap_or(0);
        let mut builder_counters = Vec::with_capacity(farm.builders.len());
        for b in &farm.builders {
            builder_counters.push(farm.health(b).await?.counters);
        }
        Ok(Snapshot {
            at,
            master_cpu,
            builders_cpu,
            master_requests,
            builder_counters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarters_builder::config::{BuilderConfig, DriverConfig};
    use quarters_master::config::MasterConfig;

    #[test]
    fn a_simulated_farm_s_configs_load() {
        let dir = tempfile::tempdir().unwrap();
        let graph = Graph {
            names: vec!["a-1.0".into(), "b-1.0".into()],
            deps: vec![vec![], vec![0]],
            recorded: vec![Some(90_000), None],
            estimate: 1_500,
        };
        let names = source::package_names(&graph).unwrap();
        source::write_packages(&graph, &names, &dir.path().join("packages")).unwrap();
        source::write_history(&graph, &names, &dir.path().join("history.csv")).unwrap();
        let (master_extra, builder_extra) = extras(graph.estimate, 0.002, false).unwrap();
        let spec = FarmSpec {
            dir: dir.path().to_owned(),
            builders: 1,
            bin_dir: PathBuf::from("/nonexistent"),
            master_extra,
            builder_extra,
            signing: false,
        };
        let (master, builders) = crate::localfarm::write_unstarted(&spec);
        let m = MasterConfig::load(&master.config).unwrap();
        assert!(!m.evaluation.enabled);
        assert_eq!(m.default_estimate, Duration::from_secs(2));
        assert_eq!(m.history.get("a-1.0"), Some(&90_000));
        assert_eq!(m.history.get("b-1.0"), Some(&1_500));
        assert_eq!(m.sources[0].name, "graph");
        assert_eq!(m.signer, None);
        let c = BuilderConfig::load(&builders[0].config).unwrap();
        assert!(matches!(c.driver, DriverConfig::Sim { time_scale } if time_scale == 0.002));
        assert!(c.farm_key.is_none());
    }
}

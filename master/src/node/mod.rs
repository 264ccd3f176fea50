//! The running master: its model of the farm, and the tasks that keep it current.
//!
//! * one task per source polls its scanner (and its file watcher) and makes source tarballs;
//! * one follower per builder long-polls its state; finished builds are pulled and judged;
//! * the planner recomputes every package's state whenever an input changed, and publishes.
//!
//! Every change ends in `replan`, which computes the plan from the model and the database and
//! publishes the master's state; the state is therefore always a function of committed data.

mod builders;
mod ctl;
mod sources;
mod standing;
mod wire;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use quarters_common::NodeName;
use quarters_common::api::v1::{MasterState, Role};
use quarters_common::client::PeerClient;
use quarters_common::liveness::Liveness;
use quarters_common::peer_input::lease::LeaseClock;
use quarters_common::peer_input::{CheckedBuilder, CheckedClaim, Violation};
use quarters_common::state::StatePublisher;
use quarters_parsers::scan::Scanned;
use tokio::sync::{Notify, mpsc};

use crate::config::MasterConfig;
use crate::db::Db;
use crate::plan::binaries::Binaries;
use crate::plan::{self, Inputs, Plan, UnitKey, UnitSpec};
use crate::quarantine::{Offences, Quarantine};
use crate::repo::Repos;

pub use builders::run_follower;
pub use sources::{TarballRequest, run_source};

/// The master while it runs.
#[derive(Debug)]
pub struct Master {
    pub config: Arc<MasterConfig>,
    model: Mutex<Model>,
    db: Mutex<Db>,
    pub repos: Repos,
    publisher: StatePublisher,
    replan: Notify,
    republish: Notify,
    tarballs: Vec<mpsc::Sender<TarballRequest>>,
    /// Set when the master stops: package reads in progress give up.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug, Default)]
struct Model {
    builders: Vec<BuilderSlot>,
    sources: Vec<SourceSlot>,
    plan: Plan,
    /// Whether `plan` was made after every source had been scanned: until then it is
    /// incomplete, and no build may be judged against it.
    plan_complete: bool,
    tarballs: HashMap<TarballKey, Tarball>,
    requested: HashSet<TarballKey>,
    /// Every waiting package had its tarball made, as of the sources' last change.
    tarballs_ahead_done: bool,
    /// Builds being pulled or judged now: `(builder, build id)`.
    in_flight: HashSet<(String, String)>,
}

impl Model {
    /// The tarball of `spec` as its source holds it now, if the source lists the package.
    fn tarball_key(&self, spec: &UnitSpec) -> Option<TarballKey> {
        let source = self.sources.iter().position(|s| s.name == spec.source)?;
        let content_id = &self.sources[source].packages.get(&spec.path)?.content_id;
        Some((source, spec.path.clone(), content_id.clone()))
    }
}

#[derive(Debug)]
struct BuilderSlot {
    name: NodeName,
    client: PeerClient,
    liveness: Liveness,
    /// Its state as last read, checked: nothing else of what it published is used.
    state: Option<CheckedBuilder>,
    /// What its last state broke of the protocol.
    violations: Vec<Violation>,
    /// Its finished builds that have a verdict: a claim naming one of them no longer holds
    /// its package, however long the builder goes on renewing it.
    judged: HashSet<quarters_common::peer_input::BuildId>,
    /// When the master first saw each of its live commitments: of two builders committed to
    /// the same package, only the earlier one's build is judged.
    committed_since: HashMap<UnitKey, std::time::Instant>,
    /// The renewals seen of its claims: a claim lapses a lease after the read that first
    /// showed its latest renewal, as builders count it (the builder's own clock is never
    /// compared with ours).
    leases: LeaseClock<UnitKey>,
    /// When each claim in `state` lapses.
    lapses_at: HashMap<UnitKey, std::time::Instant>,
    /// Its recent protocol violations, counted towards a quarantine.
    offences: Offences,
    /// Set while the master does not validate it: nothing it publishes counts.
    quarantine: Option<Quarantine>,
}

impl BuilderSlot {
    /// What the builder has committed to (or finished), as the plan counts it.
    fn committed(&self) -> std::collections::BTreeSet<UnitKey> {
        use quarters_common::api::v1::ClaimPhase;
        self.live_claims()
            .filter(|c| c.phase >= ClaimPhase::Committed)
            .map(claim_key)
            .collect()
    }

    /// The builder's claims that have not lapsed (their leases clamped when they were read)
    /// and whose builds have no verdict yet; none while it is quarantined.
    fn live_claims(&self) -> impl Iterator<Item = &CheckedClaim> {
        let now = std::time::Instant::now();
        self.state
            .iter()
            .filter(|_| self.quarantine.is_none())
            .flat_map(|s| &s.claims)
            .filter(move |c| {
                self.lapses_at
                    .get(&claim_key(c))
                    .is_some_and(|at| now < *at)
            })
            .filter(|c| {
                c.phase == quarters_common::api::v1::ClaimPhase::Committed
                    || c.build.as_ref().is_none_or(|b| !self.judged.contains(b))
            })
    }
}

#[derive(Debug, Default)]
struct SourceSlot {
    name: String,
    kind: String,
    /// Whether a poll has succeeded since the master started.
    scanned: bool,
    revision: Option<String>,
    error: Option<String>,
    packages: BTreeMap<String, Scanned>,
    /// How the last evaluation of PKGBUILDs without `.SRCINFO` went, or how far the running
    /// one has got.
    evaluation: Option<quarters_parsers::evaluate::Progress>,
}

/// A source tarball: `(source index, package path, content id)`.
type TarballKey = (usize, String, String);

#[derive(Clone, Debug)]
struct Tarball {
    filename: String,
    sha256: String,
    /// What makepkg will record as `pkgbuild_sha256sum` for a build from it.
    pkgbuild_sha256: Option<String>,
}

impl Master {
    pub(crate) fn new(
        config: Arc<MasterConfig>,
        db: Db,
        repos: Repos,
        builders: Vec<PeerClient>,
        sources: Vec<(String, String)>,
        tarballs: Vec<mpsc::Sender<TarballRequest>>,
    ) -> Arc<Self> {
        // Quarantines outlive restarts: a builder stays out until an operator enables it.
        let mut quarantined: HashMap<String, Quarantine> = match db.quarantines() {
            Ok(rows) => rows.into_iter().collect(),
            Err(e) => {
                tracing::error!("reading the quarantined builders: {e}");
                HashMap::new()
            }
        };
        for name in quarantined.keys() {
            tracing::warn!(builder = %name, "quarantined (from the database)");
        }
        let model = Model {
            builders: builders
                .into_iter()
                .map(|client| BuilderSlot {
                    quarantine: quarantined.remove(client.name().as_str()),
                    name: client.name().clone(),
                    client,
                    liveness: Liveness::Unknown,
                    state: None,
                    violations: Vec::new(),
                    committed_since: HashMap::new(),
                    judged: HashSet::new(),
                    leases: LeaseClock::default(),
                    lapses_at: HashMap::new(),
                    offences: Offences::default(),
                })
                .collect(),
            sources: sources
                .into_iter()
                .map(|(name, kind)| SourceSlot {
                    name,
                    kind,
                    ..SourceSlot::default()
                })
                .collect(),
            ..Model::default()
        };
        let publisher = StatePublisher::new(
            config.name.clone(),
            Role::Master,
            &MasterState::default(),
            0,
        );
        let master = Arc::new(Master {
            config,
            model: Mutex::new(model),
            db: Mutex::new(db),
            repos,
            publisher,
            replan: Notify::new(),
            republish: Notify::new(),
            tarballs,
            stopping: Arc::default(),
        });
        master.replan_now();
        master
    }

    /// Makes every package read in progress give up: the master is stopping.
    pub fn stop_reading(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn publisher(&self) -> &StatePublisher {
        &self.publisher
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        self.model
            .lock()
            .expect("no code panics while holding the model")
    }

    pub(crate) fn db(&self) -> MutexGuard<'_, Db> {
        self.db
            .lock()
            .expect("no code panics while holding the database")
    }

    /// Asks the planner to recompute soon; many requests in a burst make one recomputation.
    pub fn request_replan(&self) {
        self.replan.notify_one();
    }

    /// Waits for the next replan request.
    pub async fn replan_requested(&self) {
        self.replan.notified().await;
    }

    /// Asks for the state to be published again soon, with the plan as it is.
    pub fn request_republish(&self) {
        self.republish.notify_one();
    }

    /// Waits for the next republish request.
    pub async fn republish_requested(&self) {
        self.republish.notified().await;
    }

    /// Publishes the master's state from the current plan and what the builders show.
    pub fn republish_now(&self) {
        let model = self.model();
        let db = self.db();
        let failures = match db.failures(self.config.max_refusals) {
            Ok(failures) => failures,
            Err(e) => {
                tracing::error!("reading the database: {e}");
                return;
            }
        };
        let wire = self.to_wire(&model, &db, &failures);
        drop(db);
        drop(model);
        self.publisher.publish(&wire);
    }

    /// Recomputes the plan and publishes the master's state.
    pub fn replan_now(&self) {
        // The model, then the database, as everywhere: the plan and the verdicts published with
        // it come from one reading of both, so a state never shows a build accepted that its
        // plan does not count as built.
        let mut model = self.model();
        let db = self.db();
        let read = (|| {
            Ok::<_, crate::db::DbError>((
                db.failures(self.config.max_refusals)?,
                db.durations()?,
                db.binaries()?,
            ))
        })();
        let (failures, durations, binaries) = match read {
            Ok(read) => read,
            Err(e) => {
                tracing::error!("reading the database: {e}");
                return;
            }
        };
        let binaries = Binaries::new(binaries);
        let failed: HashMap<UnitKey, String> = failures
            .iter()
            .map(|(k, f)| (k.clone(), f.describe()))
            .collect();
        let units: Vec<UnitSpec> = model
            .sources
            .iter()
            .flat_map(|s| {
                s.packages.iter().filter_map(move |(path, scanned)| {
                    scanned.result.as_ref().ok().map(|meta| (s, path, meta))
                })
            })
            .flat_map(|(s, path, meta)| UnitSpec::from_meta(&s.name, path, meta, &self.config.arch))
            .collect();
        let claimed = committed_claims(&model.builders);
        let plan = plan::plan(Inputs {
            arches: &self.config.arch,
            units,
            binaries: &binaries,
            template: &self.config.build_root,
            failed: &failed,
            claimed: &claimed,
            durations: &durations,
            history: &self.config.history,
            default_ms: u64::try_from(self.config.default_estimate.as_millis()).unwrap_or(u64::MAX),
        });
        model.plan = plan;
        model.plan_complete = model.sources.iter().all(|s| s.scanned);
        self.request_tarballs(&mut model);
        let wire = self.to_wire(&model, &db, &failures);
        drop(db);
        drop(model);
        self.publisher.publish(&wire);
    }
}

/// What a claim is on, as the plan names units.
fn claim_key(c: &CheckedClaim) -> UnitKey {
    (
        c.pkgbase.to_string(),
        c.version.to_string(),
        c.arch.to_string(),
    )
}

fn build_key(b: &quarters_common::peer_input::CheckedBuild) -> UnitKey {
    (
        b.pkgbase.to_string(),
        b.version.to_string(),
        b.arch.to_string(),
    )
}

/// Claims a builder has committed to (or finished), by what they build.
fn committed_claims(builders: &[BuilderSlot]) -> HashMap<UnitKey, String> {
    use quarters_common::api::v1::ClaimPhase;
    let mut claimed = HashMap::new();
    for b in builders {
        for c in b.live_claims() {
            if c.phase >= ClaimPhase::Committed {
                claimed.insert(claim_key(c), b.name.to_string());
            }
        }
    }
    claimed
}

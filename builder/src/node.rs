//! The builder's model and its publication, and the loops that drive it: following the master,
//! claiming ready packages, renewing leases, running builds, and cleaning up what the master
//! has judged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use quarters_common::api::v1::{
    Artifact, Build, BuildOutcome, BuilderState, Claim, ClaimPhase, MasterState, PeerView,
    ReadyPackage, Role, TemplateView,
};
use quarters_common::client::PeerClient;
use quarters_common::counters::{CLAIM_ATTEMPTS, CLAIMS_WON};
use quarters_common::follow::PeerEvent;
use quarters_common::liveness::Liveness;
use quarters_common::state::StatePublisher;
use quarters_common::{Arch, BuildKey, WorkKey};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::builds::{BuildStore, Record};
use crate::claims::protocol::PeerTracker;
use crate::claims::{Attempt, ClaimBook, Withdrawn};
use crate::config::BuilderConfig;
use crate::dispatch;
use crate::driver::{Driver, Job, Measured, Outcome, Stage};
use crate::peers::Peers;

/// After a failed claim attempt, the package is left alone this long.
const BACKOFF: Duration = Duration::from_secs(3);
/// After a collision (two builders committed at once and both may have withdrawn), the package
/// is left alone between one and four times this long.
const COLLISION_PAUSE: Duration = Duration::from_millis(20);
/// After a build was handed back (the master out of reach), the package is left alone this long.
const HAND_BACK_PAUSE: Duration = Duration::from_secs(10);

/// The builder: its model, its claims, and what drives them.
///
/// Locks: `book`, `model` and `tracker` are std mutexes held for short sections only, never
/// across an `.await` (the tasks are `Send`, so the compiler refuses a guard held over one).
/// Order: `book` before `model` (the book publishes its claims into the model while locked);
/// nothing takes `book` while holding `model`. `tracker` is taken alone.
pub struct Node {
    pub config: Arc<BuilderConfig>,
    /// The identity of the template its builds start from, published with its state.
    template: Option<TemplateView>,
    /// The identity of its machine, published with its state.
    machine: Option<String>,
    model: Mutex<Model>,
    publisher: StatePublisher,
    book: Mutex<ClaimBook>,
    tracker: Mutex<PeerTracker>,
    pub store: BuildStore,
    driver: Driver,
    pub master: PeerClient,
    pub peers: Peers,
    wake: Notify,
    /// One permit per build slot, held by each running build's task until it ends, however it
    /// ends: no count kept by hand to drift.
    slots: Arc<Semaphore>,
    /// Cancelled when the builder stops: nothing more is claimed, running builds are handed
    /// back.
    stopping: CancellationToken,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Model {
    master_liveness: Option<Liveness>,
    master: Option<MasterState>,
    claims: Vec<Claim>,
    builds: BTreeMap<String, Record>,
    backoff: HashMap<WorkKey, Instant>,
    /// Ready packages assigned to other builders, and when this builder first saw them so.
    deferred: HashMap<WorkKey, Instant>,
}

/// What the scheduler should do next.
enum Pick {
    Now {
        key: WorkKey,
        package: Box<ReadyPackage>,
    },
    /// Nothing now; something may be worth trying then.
    Later(Instant),
    Nothing,
}

/// Which machine this builder runs on, as it publishes it: a sha256 of the machine's id (never
/// the id itself, which other software uses as a secret seed), `None` where there is none.
fn machine_identity() -> Option<String> {
    use sha2::Digest as _;
    let id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())?;
    let id = id.trim();
    if id.is_empty() {
        return None;
    }
    let digest = sha2::Sha256::digest(format!("quarters-machine\0{id}"));
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// The identity of the chroot driver's template, as the builder publishes it; `None` for the
/// simulation driver, or a template whose identity cannot be read (said in the log).
fn template_view(config: &BuilderConfig) -> Option<TemplateView> {
    let crate::config::DriverConfig::Chroot(chroot) = &config.driver else {
        return None;
    };
    match crate::template::identity(&chroot.template) {
        Ok(id) => {
            tracing::info!(
                "template {}: {} packages, identity {}",
                chroot.template.display(),
                id.packages,
                id.sha256
            );
            Some(TemplateView {
                sha256: id.sha256,
                packages: id.packages,
            })
        }
        Err(e) => {
            tracing::warn!("the template's identity cannot be read: {e}");
            None
        }
    }
}

/// What a ready package is keyed by (its build, or its verification); `None` for an
/// architecture that does not parse, which no builder builds.
fn key_of(p: &ReadyPackage) -> Option<WorkKey> {
    let arch = Arch::parse(&p.arch).ok()?;
    Some(WorkKey::new(
        BuildKey::new(&p.pkgbase, &p.version, arch),
        p.purpose(),
    ))
}

impl Node {
    pub fn new(
        config: Arc<BuilderConfig>,
        driver: Driver,
        master: PeerClient,
    ) -> std::io::Result<Arc<Self>> {
        let store = BuildStore::open(&config.work_dir)?;
        let finished = store.load();
        let template = template_view(&config);
        let machine = machine_identity();
        let initial = BuilderState {
            arch: config.arch.clone(),
            slots: config.slots,
            master: PeerView {
                name: config.master_name.to_string(),
                url: config.master_url.clone(),
                status: Liveness::Unknown.to_wire(),
                slots: None,
                quarantine: None,
            },
            claims: Vec::new(),
            builds: Vec::new(),
            template: template.clone(),
            machine: machine.clone(),
        };
        let publisher = StatePublisher::new(config.name.clone(), Role::Builder, &initial, 0);
        let peers = Peers::new(
            config.name.clone(),
            config.identity.trust.clone(),
            publisher.counters().clone(),
        );
        let node = Arc::new_cyclic(|weak: &Weak<Node>| {
            let weak = weak.clone();
            let publish = Arc::new(move |claims: &[Claim]| {
                if let Some(node) = weak.upgrade() {
                    node.claims_changed(claims);
                }
            });
            let slots = Arc::new(Semaphore::new(config.slots as usize));
            Node {
                template,
                machine,
                book: Mutex::new(ClaimBook::new(config.lease, time::Duration::ZERO, publish)),
                config,
                model: Mutex::new(Model::default()),
                publisher,
                // Until the master says otherwise; nothing is claimed before it has been read.
                tracker: Mutex::new(PeerTracker::new(Duration::from_secs(
                    quarters_common::api::v1::DEFAULT_MAX_LEASE_SECS,
                ))),
                store,
                driver,
                master,
                peers,
                wake: Notify::new(),
                slots,
                stopping: CancellationToken::new(),
            }
        });
        // Finished builds wait for the master's verdict; their claims come back with them.
        for record in finished {
            // The job was picked, so its key parsed then.
            let Some(key) = key_of(&record.job) else {
                continue;
            };
            let phase = match record.build.outcome {
                BuildOutcome::Failed { .. } => ClaimPhase::Failed,
                _ => ClaimPhase::Done,
            };
            let id = record.build.id.clone();
            node.model().builds.insert(id.clone(), record);
            let mut book = node.book();
            book.claim(&key);
            book.set_phase(&key, phase, Some(id));
        }
        node.publish();
        Ok(node)
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        self.model
            .lock()
            .expect("no code panics while holding the model")
    }

    fn book(&self) -> MutexGuard<'_, ClaimBook> {
        self.book
            .lock()
            .expect("no code panics while holding the claim book")
    }

    pub fn publisher(&self) -> &StatePublisher {
        &self.publisher
    }

    fn claims_changed(&self, claims: &[Claim]) {
        self.model().claims = claims.to_vec();
        self.publish();
    }

    fn publish(&self) {
        let model = self.model();
        let state = BuilderState {
            arch: self.config.arch.clone(),
            slots: self.config.slots,
            master: PeerView {
                name: self.config.master_name.to_string(),
                url: self.config.master_url.clone(),
                status: model
                    .master_liveness
                    .as_ref()
                    .unwrap_or(&Liveness::Unknown)
                    .to_wire(),
                slots: None,
                quarantine: None,
            },
            claims: model.claims.clone(),
            builds: model.builds.values().map(|r| r.build.clone()).collect(),
            template: self.template.clone(),
            machine: self.machine.clone(),
        };
        drop(model);
        self.publisher.publish(&state);
    }

    /// Records what the follower of the master saw.
    pub fn master_event(&self, event: PeerEvent<MasterState>) {
        let mut model = self.model();
        let liveness = model.master_liveness.get_or_insert(Liveness::Unknown);
        let changed = liveness.observe(&event);
        if changed {
            match liveness {
                Liveness::Down { error, .. } => tracing::warn!("master down: {error}"),
                Liveness::Up { .. } => tracing::info!("master up"),
                Liveness::Unknown => {}
            }
        }
        let mut max_lease = None;
        if let PeerEvent::State(state) = event {
            self.peers.update(&state.content.builders);
            let me = self.config.name.as_str();
            let quarantine = |m: &MasterState| {
                m.builders
                    .iter()
                    .find(|b| b.name == me)
                    .and_then(|b| b.quarantine.clone())
            };
            let now_quarantined = quarantine(&state.content);
            if now_quarantined != model.master.as_ref().and_then(quarantine) {
                match &now_quarantined {
                    Some(q) => tracing::error!(
                        "the master has quarantined this builder ({} since {}): {}; it claims nothing until an operator enables it",
                        q.by.as_str(),
                        q.since,
                        q.reason
                    ),
                    None => tracing::info!("the master validates this builder"),
                }
            }
            max_lease = Some(Duration::from_secs(state.content.max_lease_secs));
            model.master = Some(state.content);
        }
        drop(model);
        if let Some(max) = max_lease {
            self.book().limit_lease(max);
            self.tracker
                .lock()
                .expect("no code panics while holding the tracker")
                .limit_lease(max);
        }
        if changed {
            self.publish();
        }
        self.wake.notify_one();
    }

    /// Drops the builds the master has judged, and their claims.
    fn clean_up(&self) {
        let me = self.config.name.as_str();
        let judged: Vec<(String, Option<WorkKey>)> = {
            let model = self.model();
            let Some(master) = &model.master else { return };
            master
                .results
                .iter()
                .filter(|r| r.builder == me)
                .filter_map(|r| {
                    let record = model.builds.get(&r.build)?;
                    Some((r.build.clone(), key_of(&record.job)))
                })
                .collect()
        };
        for (id, key) in judged {
            tracing::info!(build = %id, "judged by the master; cleaning up");
            self.store.remove(&id);
            self.model().builds.remove(&id);
            if let Some(key) = key {
                self.book().drop_claim(&key);
            }
        }
        self.publish();
    }

    /// What to try next, if a slot is free. The ready packages this builder can build, that
    /// nobody holds a claim on and that are not backed off, are shared out among the idle
    /// builders ([`dispatch`]): this builder's own share is tried at once, another builder's
    /// only after its takeover delay has passed since this builder first saw it.
    fn pick(&self) -> Pick {
        let free = u32::try_from(self.slots.available_permits()).unwrap_or(u32::MAX);
        if free == 0 || self.stopping.is_cancelled() {
            return Pick::Nothing;
        }
        let mut model = self.model();
        let now = Instant::now();
        model.backoff.retain(|_, until| *until > now);
        let Model {
            master,
            claims,
            backoff,
            deferred,
            ..
        } = &mut *model;
        let Some(master) = master.as_ref() else {
            return Pick::Nothing;
        };
        let me = self.config.name.as_str();
        if master
            .builders
            .iter()
            .any(|b| b.name == me && !b.is_validated())
        {
            return Pick::Nothing;
        }
        // Any claim the master shows, in whatever phase, and this builder's own.
        let taken: HashSet<WorkKey> = master
            .claims
            .iter()
            .filter_map(|c| {
                let arch = Arch::parse(&c.arch).ok()?;
                Some(WorkKey::new(
                    BuildKey::new(&c.pkgbase, &c.version, arch),
                    c.purpose,
                ))
            })
            .chain(claims.iter().filter_map(crate::claims::review::key_of))
            .collect();
        let idle = dispatch::idle_builders(master, me, free.min(self.config.slots));
        let free: u32 = idle.iter().map(|b| b.free).sum();
        let (keys, candidates): (Vec<WorkKey>, Vec<&ReadyPackage>) = master
            .ready
            .iter()
            .filter_map(|p| Some((key_of(p)?, p)))
            .filter(|(k, _)| self.config.arch.iter().any(|m| k.build.arch.runs_on(m)))
            .filter(|(k, _)| !taken.contains(k) && !backoff.contains_key(k))
            .take(usize::try_from(free).unwrap_or(usize::MAX))
            .unzip();
        let now_pick = |i: usize| Pick::Now {
            key: keys[i].clone(),
            package: Box::new(candidates[i].clone()),
        };
        let assigned = dispatch::assign(&candidates, &idle);
        let mine = idle.iter().position(|b| b.name == me);
        if let Some(i) = assigned.iter().position(|a| a.is_some() && *a == mine) {
            return now_pick(i);
        }
        // Nothing of this builder's own: take over what another has left too long.
        deferred.retain(|k, _| keys.contains(k));
        let mut next: Option<Instant> = None;
        for (i, p) in candidates.iter().enumerate() {
            // A verification by a builder that built the version proves nothing.
            if !p.may_be_built_by(me) {
                continue;
            }
            let since = *deferred.entry(keys[i].clone()).or_insert(now);
            let at = since + dispatch::takeover_delay(me, p, &idle);
            if at <= now {
                return now_pick(i);
            }
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        let backoff_ends = backoff.values().min().copied();
        match (next, backoff_ends) {
            (Some(a), Some(b)) => Pick::Later(a.min(b)),
            (Some(t), None) | (None, Some(t)) => Pick::Later(t),
            (None, None) => Pick::Nothing,
        }
    }

    /// Tries to claim and start builds until the slots are full or nothing is left to try now;
    /// returns when to look again if nothing else happens before.
    async fn fill_slots(self: &Arc<Self>) -> Option<Instant> {
        loop {
            let (key, package) = match self.pick() {
                Pick::Now { key, package } => (key, *package),
                Pick::Later(at) => return Some(at),
                Pick::Nothing => return None,
            };
            let attempt = Attempt {
                me: self.config.name.as_str(),
                book: &self.book,
                reads: &self.peers,
                tracker: &self.tracker,
            };
            self.publisher.counters().add(CLAIM_ATTEMPTS, 1);
            match attempt.run(&key).await {
                Ok(()) => {
                    self.publisher.counters().add(CLAIMS_WON, 1);
                    self.model().deferred.remove(&key);
                    self.start(key.clone(), package);
                }
                Err(why) => {
                    tracing::debug!(package = %package.pkgbase, "claim withdrawn: {why:?}");
                    let pause = match why {
                        // The peer may have withdrawn too: try again soon, at a random moment
                        // so that the two do not collide again.
                        Withdrawn::Collided(_) => COLLISION_PAUSE * (1 + (random_u64() % 4) as u32),
                        Withdrawn::Conflict(_) | Withdrawn::Unreadable(_) => BACKOFF,
                    };
                    self.model().backoff.insert(key, Instant::now() + pause);
                }
            }
        }
    }

    fn start(self: &Arc<Self>, key: WorkKey, package: ReadyPackage) {
        // `pick` saw a free slot, and only this task takes slots.
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            tracing::error!("no free slot for {} after picking it", package.pkgbase);
            self.book().drop_claim(&key);
            return;
        };
        let id = self.store.new_id(&package.pkgbase);
        if let Err(e) = self.store.create(&id) {
            tracing::error!("creating build {id}: {e}");
            self.book().drop_claim(&key);
            return;
        }
        let record = Record {
            build: Build {
                id: id.clone(),
                pkgbase: package.pkgbase.clone(),
                version: package.version.clone(),
                arch: package.arch.clone(),
                outcome: BuildOutcome::Running {
                    stage: Stage::Prepare.as_str().to_owned(),
                },
                started_at: OffsetDateTime::now_utc(),
                finished_at: None,
                logs: Vec::new(),
                artifacts: Vec::new(),
                wall_ms: None,
                cpu_ms: None,
                peak_memory_kb: None,
                purpose: package.purpose(),
            },
            job: package.clone(),
        };
        tracing::info!(build = %id, "building {} {} ({})", package.pkgbase, package.version, package.arch);
        self.save(&record);
        {
            let mut model = self.model();
            model.builds.insert(id.clone(), record);
        }
        self.book()
            .set_phase(&key, ClaimPhase::Committed, Some(id.clone()));
        let node = self.clone();
        tokio::spawn(async move { node.run_build(id, key, package, slot).await });
    }

    fn save(&self, record: &Record) {
        if let Err(e) = self.store.save(record) {
            tracing::error!(build = %record.build.id, "saving the build record: {e}");
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Record)) {
        let record = {
            let mut model = self.model();
            let Some(record) = model.builds.get_mut(id) else {
                return;
            };
            f(record);
            record.clone()
        };
        self.save(&record);
        self.publish();
    }

    async fn run_build(
        self: Arc<Self>,
        id: String,
        key: WorkKey,
        package: ReadyPackage,
        slot: OwnedSemaphorePermit,
    ) {
        let job = Job {
            id: id.clone(),
            package: package.clone(),
            dir: self.store.dir(&id),
            logs: self.store.logs(&id),
            artifacts: self.store.artifacts(&id),
        };
        let started = std::time::Instant::now();
        let stage = |stage: Stage| {
            self.update(&id, |r| {
                r.build.outcome = BuildOutcome::Running {
                    stage: stage.as_str().to_owned(),
                }
            });
        };
        let built = self
            .driver
            .build(&job, &self.master, &stage, &self.stopping)
            .await;
        let (failure, measured) = match built {
            Outcome::HandBack { reason } => {
                // Not the package's fault: forget the build, withdraw the claim, try again later.
                tracing::warn!(build = %id, "handing {} {} back: {reason}", package.pkgbase, package.version);
                self.store.remove(&id);
                self.model().builds.remove(&id);
                self.book().drop_claim(&key);
                self.model()
                    .backoff
                    .insert(key, Instant::now() + HAND_BACK_PAUSE);
                drop(slot);
                self.publish();
                self.wake.notify_one();
                return;
            }
            Outcome::Built { measured } => (None, measured),
            Outcome::Failed { stage, reason } => (Some((stage, reason)), Measured::default()),
        };
        let artifacts = list_artifacts(&job.artifacts).await;
        let logs = list_logs(&job.logs).await;
        self.update(&id, |r| {
            r.build.outcome = match &failure {
                None => BuildOutcome::Succeeded,
                Some((stage, reason)) => BuildOutcome::Failed {
                    stage: stage.as_str().to_owned(),
                    reason: reason.clone(),
                },
            };
            r.build.finished_at = Some(OffsetDateTime::now_utc());
            r.build.wall_ms =
                Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
            r.build.cpu_ms = measured.cpu_ms;
            r.build.peak_memory_kb = measured.peak_memory_kb;
            r.build.artifacts = artifacts;
            r.build.logs = logs;
        });
        let phase = if failure.is_some() {
            ClaimPhase::Failed
        } else {
            ClaimPhase::Done
        };
        self.book().set_phase(&key, phase, None);
        match &failure {
            None => tracing::info!(build = %id, "built {} {}", package.pkgbase, package.version),
            Some((stage, reason)) => {
                tracing::warn!(build = %id, "{} {} failed in {stage}: {reason}", package.pkgbase, package.version);
            }
        }
        drop(slot);
        self.wake.notify_one();
    }

    /// Stops claiming, and hands every running build back (its root cleaned up, its claim
    /// withdrawn and published, so that others may take the package at once); returns whether
    /// they all ended within `grace`.
    pub async fn stop_builds(&self, grace: Duration) -> bool {
        self.stopping.cancel();
        tokio::time::timeout(grace, self.slots.acquire_many(self.config.slots))
            .await
            .is_ok()
    }

    /// Renews the claims' leases, cleans up judged builds and fills free slots, until `cancel`.
    pub async fn run_scheduler(self: Arc<Self>, cancel: CancellationToken) {
        let mut renew = tokio::time::interval(self.config.lease / 3);
        let mut look_again: Option<Instant> = None;
        loop {
            let timer = async {
                match look_again {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.wake.notified() => {}
                () = timer => {}
                _ = renew.tick() => self.book().renew(),
            }
            self.clean_up();
            look_again = self.fill_slots().await;
        }
    }
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    quarters_common::tls::provider()
        .secure_random
        .fill(&mut bytes)
        .expect("the system random source works");
    u64::from_le_bytes(bytes)
}

async fn list_artifacts(dir: &std::path::Path) -> Vec<Artifact> {
    let mut out = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return out;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let Ok(bytes) = tokio::fs::read(entry.path()).await else {
            continue;
        };
        out.push(Artifact {
            file: entry.file_name().to_string_lossy().into_owned(),
            sha256: Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            size: bytes.len() as u64,
        });
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

async fn list_logs(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return out;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if let Some(stage) = entry.file_name().to_string_lossy().strip_suffix(".log") {
            out.push(stage.to_owned());
        }
    }
    out.sort();
    out
}

//! The core: the one owner of the master's model and database.
//!
//! It runs on a thread of its own and takes [`Event`]s from one channel. Each turn applies every
//! event waiting (up to [`BATCH`]), then settles once: judges what builders finished, rewrites
//! the repository databases that acceptances and promotions changed, plans again if an input
//! of the plan changed, and publishes. A burst of events therefore costs one plan and one
//! rewrite (group commit), and an event never waits longer than one turn.
//!
//! Invariants:
//! * nothing else reads or writes the model or the database: other tasks send events, and
//!   read what the core published;
//! * no lock is held anywhere in the master across planning, I/O or SQL, because there is no
//!   lock: long network work (pulls, log downloads) runs in tasks that report back as events;
//! * the repository files are rewritten before the plan that counts their new packages is
//!   published: no package is published ready before the dependency it gained is in the files
//!   pacman reads;
//! * an acceptance, the end of the claim it judges and the plan that counts the package built
//!   happen in one turn, so no state shows the package between claimed and built.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use quarters_common::api::v1::ctl::{Command, Reply};
use quarters_common::state::StatePublisher;
use quarters_parsers::evaluate::Progress as Evaluation;
use quarters_parsers::scan::Scanned;
use tokio::sync::{mpsc, oneshot};

use super::builders::{BuilderRead, Judgement};
use super::model::{BuilderSlot, Model, SourceSlot, Tarball, TarballKey, committed_claims};
use super::resign::{ResignState, Resigned};
use super::sources::TarballRequest;
use crate::config::MasterConfig;
use crate::db::{Db, DbError, Failure, RepoEntry};
use crate::plan::binaries::{Binaries, RepoKind};
use crate::plan::relation::provision;
use crate::plan::{Changes, Progress, Resolution, UnitSpec};
use crate::quarantine::Quarantine;
use crate::repo::Repos;
use crate::signing::Fingerprint;
use quarters_common::BuildKey;

/// Events applied in one turn at most, so that a flood still gets published now and then.
const BATCH: usize = 1024;

/// Something the core must take into account.
#[derive(Debug)]
pub(crate) enum Event {
    /// A builder's state was read and checked by its follower, or it could not be read.
    Builder { index: usize, read: BuilderRead },
    /// A source was polled: its revision, and its packages if they changed (or the error).
    SourcePolled {
        index: usize,
        revision: Option<String>,
        result: Result<Option<BTreeMap<String, Scanned>>, String>,
    },
    /// An evaluation of PKGBUILDs in a source went on.
    Evaluation { index: usize, progress: Evaluation },
    /// A source tarball asked for was made, or could not be.
    TarballMade {
        key: TarballKey,
        made: Option<Tarball>,
    },
    /// A judgement that needed the network has its result.
    Judged(Box<Judgement>),
    /// A `quartersctl` request; the reply goes back on `reply`.
    Command {
        id: String,
        command: Command,
        reply: oneshot::Sender<Reply>,
    },
    /// Time passed: claims lapse with time alone, and postponed pulls are tried again.
    Tick,
    /// The signer signs with this key (sent at start-up, and when it changes).
    SigningKey(Fingerprint),
    /// Package files signed again with the signer's key.
    Resigned(Resigned),
    /// The master is stopping.
    Stop,
}

/// What the turn's events left to do when it settles.
#[derive(Debug, Default)]
struct Todo {
    replan: bool,
    republish: bool,
    judge: bool,
    /// Repository databases to write again: acceptances and promotions changed them.
    rewrite: BTreeMap<(RepoKind, String), Rewrite>,
}

/// How a repository's databases are written again.
#[derive(Debug)]
enum Rewrite {
    /// From every entry SQLite holds for it (signatures changed, say).
    Whole,
    /// With these entries, committed in SQLite, in place of their names' earlier ones.
    Changed(Vec<RepoEntry>),
}

/// The plan's inputs read from the database about builds: read whole once, then again for
/// each pkgbase with a new verdict.
#[derive(Debug)]
pub(super) struct Facts {
    pub(super) failures: HashMap<BuildKey, Failure>,
    durations: HashMap<String, u64>,
}

/// What changed in the repositories since the plan last looked: the resolution is updated for
/// the builds these concern only.
#[derive(Debug, Default)]
struct RepoChanges {
    pkgbases: HashSet<String>,
    /// The changed packages' own names: their binaries are read again.
    pkgnames: BTreeSet<String>,
    /// Every name the changed packages answer to.
    names: HashSet<String>,
}

/// The owner of the model; see the module documentation.
#[derive(Debug)]
pub(crate) struct Core {
    pub(super) config: Arc<MasterConfig>,
    pub(super) model: Model,
    pub(super) db: Db,
    pub(super) repos: Arc<Repos>,
    publisher: StatePublisher,
    pub(super) tarballs: Vec<mpsc::Sender<TarballRequest>>,
    /// Where tasks the core starts report back. Weak, so that the channel closes (and the
    /// core stops) when the master's last handle is gone, however it ended.
    pub(super) events: mpsc::WeakSender<Event>,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) stopping: Arc<AtomicBool>,
    /// Every build's dependencies resolved: made again when a source changes, updated when
    /// the repositories do.
    resolution: Option<Resolution>,
    /// The repositories as the planner sees them, read again when they change.
    binaries: Option<Binaries>,
    repo_changes: RepoChanges,
    /// Read whole at start-up, then again for the pkgbases whose verdicts changed.
    facts: Option<Facts>,
    /// Pkgbases with a verdict since the facts were read.
    stale_facts: BTreeSet<String>,
    /// What changed since the last plan, for the plan to be updated in place.
    plan_changes: Changes,
    todo: Todo,
    pub(super) resign: ResignState,
}

/// What the core is made from.
#[derive(Debug)]
pub(crate) struct CoreParts<'a> {
    pub config: Arc<MasterConfig>,
    pub db: Db,
    pub repos: Arc<Repos>,
    pub publisher: StatePublisher,
    pub builders: Vec<quarters_common::client::PeerClient>,
    /// Each source's name and kind.
    pub sources: Vec<(String, String)>,
    pub tarballs: Vec<mpsc::Sender<TarballRequest>>,
    pub events: &'a mpsc::Sender<Event>,
    pub runtime: tokio::runtime::Handle,
    pub stopping: Arc<AtomicBool>,
}

impl Core {
    pub(crate) fn new(parts: CoreParts<'_>) -> Self {
        let CoreParts {
            config,
            db,
            repos,
            publisher,
            builders,
            sources,
            tarballs,
            events,
            runtime,
            stopping,
        } = parts;
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
                .map(|client| BuilderSlot::new(client, &mut quarantined))
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
        let mut core = Core {
            config,
            model,
            db,
            repos,
            publisher,
            tarballs,
            events: events.downgrade(),
            runtime,
            stopping,
            resolution: None,
            binaries: None,
            repo_changes: RepoChanges::default(),
            facts: None,
            stale_facts: BTreeSet::new(),
            plan_changes: Changes::default(),
            todo: Todo::default(),
            resign: ResignState::default(),
        };
        core.load_pending_verifications();
        core
    }

    /// Applies events until [`Event::Stop`], or until every sender is gone. Blocks: run it on
    /// a thread of its own.
    pub(crate) fn run(mut self, mut events: mpsc::Receiver<Event>) {
        self.todo.replan = true;
        self.settle();
        while let Some(first) = events.blocking_recv() {
            let mut next = Some(first);
            let mut applied = 0;
            while let Some(event) = next.take() {
                if matches!(event, Event::Stop) {
                    return;
                }
                self.apply(event);
                applied += 1;
                if applied < BATCH {
                    next = events.try_recv().ok();
                }
            }
            self.settle();
        }
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Builder { index, read } => self.builder_event(index, read),
            Event::SourcePolled {
                index,
                revision,
                result,
            } => self.source_polled(index, revision, result),
            Event::Evaluation { index, progress } => {
                self.model.sources[index].evaluation = Some(progress);
                self.todo.republish = true;
            }
            Event::TarballMade { key, made } => self.tarball_made(key, made),
            Event::Judged(judgement) => self.judged(*judgement),
            Event::Command { id, command, reply } => {
                // The reply sees every event that came before the request.
                self.settle();
                let reply_to = self.handle(&id, &command);
                self.settle();
                let _ = reply.send(reply_to);
            }
            Event::Tick => {
                self.todo.replan = true;
                self.todo.judge = true;
            }
            Event::SigningKey(key) => self.signing_key(key),
            Event::Resigned(resigned) => self.resigned(resigned),
            Event::Stop => {}
        }
    }

    /// The sources changed: the builds they ask for are resolved again at the next plan.
    pub(super) fn sources_changed(&mut self) {
        self.resolution = None;
        self.todo.replan = true;
    }

    /// A verdict on `pkgbase` changed (recorded or retried): the plan reads its failures and
    /// durations again.
    pub(super) fn verdicts_changed(&mut self, pkgbase: &str) {
        self.stale_facts.insert(pkgbase.to_owned());
        self.todo.replan = true;
    }

    pub(super) fn request_replan(&mut self) {
        self.todo.replan = true;
    }

    pub(super) fn request_republish(&mut self) {
        self.todo.republish = true;
    }

    pub(super) fn request_judging(&mut self) {
        self.todo.judge = true;
    }

    /// A repository's databases must be written again (signatures changed, say), though no
    /// package entered or left it.
    pub(super) fn rewrite_databases(
        &mut self,
        which: impl IntoIterator<Item = (RepoKind, String)>,
    ) {
        self.todo
            .rewrite
            .extend(which.into_iter().map(|key| (key, Rewrite::Whole)));
    }

    /// A repository gained `entry` (committed in SQLite): its databases are written again
    /// before the next plan, which resolves again the builds the entry concerns.
    pub(super) fn repo_changed(&mut self, entry: &RepoEntry) {
        let rewrite = self
            .todo
            .rewrite
            .entry((entry.repo, entry.arch.clone()))
            .or_insert_with(|| Rewrite::Changed(Vec::new()));
        if let Rewrite::Changed(entries) = rewrite {
            entries.push(entry.clone());
        }
        self.repo_changes.pkgbases.insert(entry.pkgbase.clone());
        self.repo_changes.pkgnames.insert(entry.pkgname.clone());
        self.repo_changes.names.insert(entry.pkgname.clone());
        self.repo_changes
            .names
            .extend(entry.provides.iter().map(|p| provision(p).0.to_owned()));
        self.todo.replan = true;
    }

    /// Does what the turn's events left to do, in the order the invariants need: verdicts,
    /// then the files they change, then the plan that counts them, then the state.
    fn settle(&mut self) {
        // Judging may record verdicts, and a new plan may make builds judgeable (the first
        // complete one): twice is enough for both to settle.
        for _ in 0..2 {
            if std::mem::take(&mut self.todo.judge) {
                self.judge_finished_builds();
            }
            self.write_repos();
            if std::mem::take(&mut self.todo.replan) {
                let was_complete = self.model.plan_complete;
                self.replan();
                self.todo.republish = true;
                if !was_complete && self.model.plan_complete {
                    self.todo.judge = true;
                }
            }
            if !self.todo.judge && !self.todo.replan {
                break;
            }
        }
        if std::mem::take(&mut self.todo.republish) {
            self.publish();
        }
    }

    /// Writes the repository databases the turn changed, from what SQLite committed.
    fn write_repos(&mut self) {
        let rewrite = std::mem::take(&mut self.todo.rewrite);
        if rewrite.is_empty() {
            return;
        }
        let mut all = None;
        for ((repo, arch), how) in rewrite {
            let written = match how {
                Rewrite::Changed(entries) => self.repos.update(repo, &arch, &entries),
                Rewrite::Whole => {
                    if all.is_none() {
                        all = self.db.repo_entries().ok();
                    }
                    match all.as_deref() {
                        Some(entries) => self.repos.rewrite(repo, &arch, entries),
                        None => Err(std::io::Error::other("the database could not be read")),
                    }
                }
            };
            if let Err(e) = written {
                // The version clients see stays whole and signed; this one is made again at
                // the next turn (a tick at the latest), when the signer may answer again,
                // and from SQLite, whatever the failed write left of the kept entries.
                tracing::error!("rewriting the {} ({arch}): {e}", repo.describe());
                self.todo.rewrite.insert((repo, arch), Rewrite::Whole);
            }
        }
    }

    /// The plan's facts from the database: read whole the first time, then again for the
    /// pkgbases whose verdicts changed since.
    fn facts(&mut self) -> Option<&Facts> {
        let max_refusals = self.config.max_refusals;
        match &mut self.facts {
            None => {
                let read = (|| {
                    Ok::<_, DbError>(Facts {
                        failures: self.db.failures(max_refusals)?,
                        durations: self.db.durations()?,
                    })
                })();
                match read {
                    Ok(facts) => {
                        self.facts = Some(facts);
                        self.stale_facts.clear();
                    }
                    Err(e) => tracing::error!("reading the database: {e}"),
                }
            }
            Some(facts) => {
                while let Some(pkgbase) = self.stale_facts.pop_first() {
                    let read = (|| {
                        Ok::<_, DbError>((
                            self.db.failures_of(max_refusals, &pkgbase)?,
                            self.db.duration_of(&pkgbase)?,
                        ))
                    })();
                    match read {
                        Ok((failures, duration)) => {
                            self.plan_changes.durations.push(pkgbase.clone());
                            facts.failures.retain(|key, _| key.pkgbase != pkgbase);
                            facts.failures.extend(failures);
                            match duration {
                                Some(ms) => facts.durations.insert(pkgbase, ms),
                                None => facts.durations.remove(&pkgbase),
                            };
                        }
                        Err(e) => {
                            tracing::error!("reading the database: {e}");
                            self.stale_facts.insert(pkgbase);
                            return None;
                        }
                    }
                }
            }
        }
        self.facts.as_ref()
    }

    /// Every build's dependencies resolved against the repositories as they are now: made
    /// from the sources when they changed, updated for what entered the repositories since
    /// the last plan otherwise.
    fn resolution(&mut self) -> Option<&Resolution> {
        match &mut self.binaries {
            None => match self.db.binaries() {
                Ok(binaries) => {
                    self.binaries = Some(Binaries::new(binaries));
                    self.repo_changes.pkgnames.clear();
                }
                Err(e) => {
                    tracing::error!("reading the repositories: {e}");
                    return None;
                }
            },
            Some(binaries) => {
                while let Some(pkgname) = self.repo_changes.pkgnames.pop_first() {
                    match self.db.binaries_named(&pkgname) {
                        Ok(now) => {
                            let answered = binaries.replace(&pkgname, now);
                            self.repo_changes.names.extend(answered);
                        }
                        Err(e) => {
                            tracing::error!("reading the repositories: {e}");
                            self.repo_changes.pkgnames.insert(pkgname);
                            return None;
                        }
                    }
                }
            }
        }
        let binaries = self.binaries.as_ref().expect("read just now");
        let changes = std::mem::take(&mut self.repo_changes);
        match &mut self.resolution {
            Some(resolution) => {
                if !changes.pkgbases.is_empty() {
                    let resolved = resolution.update(
                        binaries,
                        &self.config.build_root,
                        &changes.pkgbases,
                        &changes.names,
                    );
                    self.plan_changes.resolved.extend(resolved);
                }
            }
            None => {
                let arches = &self.config.arch;
                let specs = self
                    .model
                    .sources
                    .iter()
                    .flat_map(|s| {
                        s.packages.iter().filter_map(move |(path, scanned)| {
                            scanned.result.as_ref().ok().map(|meta| (s, path, meta))
                        })
                    })
                    .flat_map(|(s, path, meta)| UnitSpec::from_meta(&s.name, path, meta, arches))
                    .map(Arc::new)
                    .collect();
                self.resolution = Some(Resolution::new(
                    specs,
                    arches,
                    binaries,
                    &self.config.build_root,
                ));
            }
        }
        self.resolution.as_ref()
    }

    /// Plans again from the resolution and how the builds are going.
    fn replan(&mut self) {
        if self.facts().is_none() || self.resolution().is_none() {
            return;
        }
        let facts = self.facts.as_ref().expect("read just now");
        let failed: HashMap<BuildKey, String> = facts
            .failures
            .iter()
            .map(|(k, f)| (k.clone(), f.describe()))
            .collect();
        let claimed = committed_claims(&self.model.builders);
        let resolution = self.resolution.as_ref().expect("made just now");
        let changes = std::mem::take(&mut self.plan_changes);
        resolution.plan_again(
            &mut self.model.plan,
            &Progress {
                failed: &failed,
                claimed: &claimed,
                durations: &facts.durations,
                history: &self.config.history,
                default_ms: u64::try_from(self.config.default_estimate.as_millis())
                    .unwrap_or(u64::MAX),
            },
            &changes,
        );
        self.model.plan_complete = self.model.sources.iter().all(|s| s.scanned);
        self.request_tarballs();
    }

    /// Publishes the master's state from the current plan and what the builders show.
    fn publish(&mut self) {
        if self.facts().is_none() {
            return;
        }
        let wire = self.to_wire();
        self.publisher.publish(&wire);
    }

    /// The facts as last read; empty if the database could not be read.
    pub(super) fn failures(&self) -> Option<&HashMap<BuildKey, Failure>> {
        self.facts.as_ref().map(|f| &f.failures)
    }
}

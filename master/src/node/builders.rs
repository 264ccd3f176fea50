//! Builders: following their states, and judging their finished builds: pulled, verified and
//! accepted into the build repository, rejected with a reason, or recorded as failed with logs.
//!
//! A follower checks each state it reads and hands it to the core. The core decides what to
//! judge; pulls and log downloads run in tasks of their own and come back as a [`Judgement`].

use std::path::PathBuf;
use std::sync::Arc;

use quarters_common::api::v1::{BuilderState, ClaimPhase, Role};
use quarters_common::client::PeerClient;
use quarters_common::follow::{FollowOptions, PeerEvent, follow};
use quarters_common::liveness::Liveness;
use quarters_common::peer_input::{
    BuildId, CheckedBuild, CheckedBuilder, CheckedOutcome, Violation,
};
use quarters_common::{Arch, NodeName};
use tokio_util::sync::CancellationToken;

use super::model::{BuilderSlot, Judged};
use super::{Core, Event, Master};
use crate::db::{BuildRow, DbError, Recorded, RepoEntry, VerdictKind};
use crate::plan::State;
use crate::plan::binaries::RepoKind;
use crate::pull::{Expectation, PullError, PullLimits, Pulled, pull, pull_logs};

/// One read of a builder, as its follower passes it on.
#[derive(Debug)]
pub(crate) enum BuilderRead {
    /// A new state, checked.
    State(Box<CheckedState>),
    /// Nothing new.
    Alive,
    /// The read failed: why.
    Down(String),
}

/// A builder's state as its follower checked it: nothing else of what it published is used.
#[derive(Debug)]
pub(crate) struct CheckedState {
    checked: CheckedBuilder,
    /// What the state broke of the protocol.
    violations: Vec<Violation>,
}

/// A finished build whose judgement needed the network, with what came of it.
#[derive(Debug)]
pub(crate) struct Judgement {
    builder: NodeName,
    build: BuildId,
    row: BuildRow,
    outcome: Fetched,
}

/// What a judgement's task fetched.
#[derive(Debug)]
pub(super) enum Fetched {
    /// A failed build's logs, in `row.log_dir` if any arrived.
    Logs,
    /// A successful build's packages, verified into `staging`, or why not.
    Packages {
        staging: PathBuf,
        result: Result<Vec<Pulled>, PullError>,
    },
    /// A verification build's packages, pulled into `staging` and compared with the accepted
    /// ones, or why not.
    Verification {
        staging: PathBuf,
        result: Result<crate::verify::Compared, PullError>,
    },
}

impl Core {
    pub(super) fn builder_event(&mut self, index: usize, read: BuilderRead) {
        let slot = &mut self.model.builders[index];
        let liveness_changed = match &read {
            BuilderRead::State(_) | BuilderRead::Alive => slot.liveness.answered(),
            BuilderRead::Down(error) => slot.liveness.failed(error),
        };
        if liveness_changed {
            match &slot.liveness {
                Liveness::Down { error, .. } => {
                    tracing::warn!(builder = %slot.name, "builder down: {error}");
                }
                Liveness::Up { .. } => tracing::info!(builder = %slot.name, "builder up"),
                Liveness::Unknown => {}
            }
        }
        let committed_before = slot.committed();
        let mut offences = Vec::new();
        if let BuilderRead::State(state) = read {
            let CheckedState {
                checked,
                violations,
            } = *state;
            for v in violations.iter().filter(|v| !slot.violations.contains(v)) {
                tracing::warn!(builder = %slot.name, "protocol violation: {v}");
            }
            offences.extend(violations.iter().map(|v| v.to_string()));
            slot.violations = violations;
            slot.judged
                .retain(|id, _| checked.builds.iter().any(|b| &b.id == id));
            let now = std::time::Instant::now();
            let keys: std::collections::HashSet<_> =
                checked.claims.iter().map(|c| c.work()).collect();
            slot.leases.retain(|k| keys.contains(k));
            slot.lapses_at = checked
                .claims
                .iter()
                .map(|c| {
                    let key = c.work();
                    let at = slot.leases.lapses_at(&key, c.renewed_at, c.lease, now);
                    (key, at)
                })
                .collect();
            slot.state = Some(checked);
            let committed = slot.committed_work();
            slot.committed_since
                .retain(|key, _| committed.contains(key));
            for key in committed {
                slot.committed_since.entry(key).or_insert(now);
            }
            offences.extend(idle_commitments(slot, self.config.builder_limits.max_lease));
        }
        let mut quarantined = false;
        for what in &offences {
            quarantined |= self.offend(index, what);
        }
        let slot = &self.model.builders[index];
        // Most of a builder's changes (a build's stage, a lease renewed, a claim being made)
        // leave the plan as it was: only what it has committed to counts there. Those are
        // published without planning again, which at thousands of packages is what the
        // master's CPU time would otherwise go to.
        if liveness_changed || quarantined || slot.committed() != committed_before {
            self.request_replan();
        } else {
            self.request_republish();
        }
        self.request_judging();
    }

    /// Starts judging every finished build a builder shows that has no verdict yet.
    pub(super) fn judge_finished_builds(&mut self) {
        if !self.model.plan_complete {
            // Judged against an incomplete plan, a good build would look unwanted.
            return;
        }
        let mut todo = Vec::new();
        // A quarantined builder's builds wait: nothing of it is pulled or judged.
        for (index, slot) in self.model.builders.iter().enumerate() {
            if slot.quarantine.is_some() {
                continue;
            }
            let Some(state) = &slot.state else { continue };
            for build in state.builds.iter().filter(|b| !b.is_running()) {
                if !slot.judged.contains_key(&build.id)
                    && !self
                        .model
                        .in_flight
                        .contains(&(slot.name.clone(), build.id.clone()))
                {
                    todo.push((index, build.clone()));
                }
            }
        }
        for (index, build) in todo {
            // Recorded before this run saw it (the master restarted): known, not judged again.
            let slot = &self.model.builders[index];
            if build.purpose == quarters_common::api::v1::Purpose::Verify {
                match self
                    .db
                    .verification_of(slot.name.as_str(), build.id.as_str())
                {
                    Ok(None) => {}
                    Ok(Some((verdict, detail))) => {
                        self.model.builders[index]
                            .judged
                            .insert(build.id.clone(), Judged::Verify { verdict, detail });
                        self.request_republish();
                        continue;
                    }
                    Err(e) => {
                        tracing::error!("reading the verdict of build {}: {e}", build.id);
                        continue;
                    }
                }
                self.judge(index, &build);
                continue;
            }
            match self.db.verdict_of(slot.name.as_str(), build.id.as_str()) {
                Ok(None) => {}
                Ok(Some(recorded)) => {
                    self.model.builders[index]
                        .judged
                        .insert(build.id.clone(), Judged::Build(recorded));
                    self.request_republish();
                    continue;
                }
                Err(e) => {
                    tracing::error!("reading the verdict of build {}: {e}", build.id);
                    continue;
                }
            }
            self.judge(index, &build);
        }
    }

    /// Judges one finished build: at once when nothing needs fetching, else in a task that
    /// reports back with a [`Judgement`]. A build that was not claimed as the protocol says
    /// is recorded unjudged: nothing of it is pulled, and it counts against nothing but its
    /// builder, and against that only if the builder never claimed it.
    fn judge(&mut self, index: usize, build: &CheckedBuild) {
        let slot = &self.model.builders[index];
        let builder = slot.name.to_string();
        let mut row = BuildRow {
            builder: builder.clone(),
            build_id: build.id.to_string(),
            pkgbase: build.pkgbase.to_string(),
            version: build.version.to_string(),
            arch: build.arch.to_string(),
            verdict: VerdictKind::Unneeded,
            reason: None,
            wall_ms: build.wall_ms,
            cpu_ms: build.cpu_ms,
            peak_memory_kb: build.peak_memory_kb,
            log_dir: None,
            started_at: Some(build.started_at),
            warnings: Vec::new(),
            template: slot
                .state
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .map(ToString::to_string),
        };
        if let Some(unclaimed) = unclaimed(&self.model.builders, index, build) {
            let why = unclaimed.to_string();
            tracing::warn!(%builder, build = %build.id, "not judged: {why}");
            row.reason = Some(format!("not judged: {why}"));
            self.record(&row);
            if let Unclaimed::NoClaim(_) = unclaimed {
                self.offend(index, &why);
            }
            return;
        }
        if build.purpose == quarters_common::api::v1::Purpose::Verify {
            self.judge_verification(index, build, row);
            return;
        }
        let unit = self
            .model
            .plan
            .unit(build.pkgbase.as_str(), &build.arch)
            .cloned();
        let key = build.key();
        let already = self.db.is_accepted(&key).unwrap_or(false);
        let unneeded = match &unit {
            None => Some(format!(
                "{} ({}) is not a package the master builds",
                build.pkgbase, build.arch
            )),
            Some(_) if already => Some(format!(
                "{} {} ({}) was accepted from another build",
                build.pkgbase, build.version, build.arch
            )),
            Some(u) if build.version != *u.spec.version => {
                Some(format!("the sources are at {} now", u.spec.version))
            }
            Some(u) if matches!(u.state, State::Built | State::Live) => {
                Some("that version is built already".to_owned())
            }
            Some(_) => None,
        };
        if let Some(reason) = unneeded
            && matches!(build.outcome, CheckedOutcome::Succeeded)
        {
            row.reason = Some(format!("not needed: {reason}"));
            self.record(&row);
            return;
        }
        let client = slot.client.clone();
        let name = slot.name.clone();
        match &build.outcome {
            CheckedOutcome::Running { .. } => {}
            CheckedOutcome::Failed { stage, reason } => {
                let dir =
                    crate::store::log_dir(&self.config.state_dir, &builder, build.id.as_str());
                row.verdict = VerdictKind::Failed;
                row.reason = Some(format!("{stage}: {reason}"));
                let max_log = self.config.max_log_size;
                let pace = self.config.pull_pace;
                self.fetch(name, build, async move |build| {
                    let got = pull_logs(&client, &build, &dir, max_log, pace).await;
                    row.log_dir = (!got.is_empty()).then(|| dir.to_string_lossy().into_owned());
                    (row, Fetched::Logs)
                });
            }
            CheckedOutcome::Succeeded => {
                let unit = unit.expect("checked above");
                let pins = self.model.plan.pins(&unit);
                let handed_out = self.handed_out_pkgbuild(&unit.spec);
                let packager = unit.spec.makepkg_packager();
                let staging =
                    crate::store::staging_dir(&self.config.state_dir, &builder, build.id.as_str());
                let limits = PullLimits {
                    max_bytes: self.config.max_artifact_size,
                    pace: self.config.pull_pace,
                    archive: self.config.archive_limits,
                    cancel: self.stopping.clone(),
                };
                let signer = self.repos.signer().cloned();
                self.fetch(name, build, async move |build| {
                    let pkgbuild_sha256 = handed_out.resolve().await;
                    if pkgbuild_sha256.is_none() {
                        row.warnings.push(
                            "the master has no source tarball of this version left to check its PKGBUILD against"
                                .to_owned(),
                        );
                    }
                    let expect = Expectation {
                        pkgbase: build.pkgbase.as_str(),
                        version: build.version.as_str(),
                        arch: &build.arch,
                        pkgnames: &unit.spec.pkgnames,
                        packager: &packager,
                        pkgbuild_sha256: pkgbuild_sha256.as_deref(),
                        pins: &pins,
                    };
                    let _ = tokio::fs::remove_dir_all(&staging).await;
                    let result = match tokio::fs::create_dir_all(&staging).await {
                        Ok(()) => pull(&client, &build, expect, &staging, &limits).await,
                        Err(e) => Err(PullError::Unavailable(format!(
                            "creating {}: {e}",
                            staging.display()
                        ))),
                    };
                    // Signed only once verified: the farm's key vouches for nothing else.
                    let result = match (result, &signer) {
                        (Ok(pulled), Some(signer)) => crate::pull::sign(signer, pulled).await,
                        (result, _) => result,
                    };
                    (row, Fetched::Packages { staging, result })
                });
            }
        }
    }

    /// Runs `work` on `build` in a task of its own, the build counted in flight (not judged
    /// again) until its [`Judgement`] is applied.
    pub(super) fn fetch<W, F>(&mut self, builder: NodeName, build: &CheckedBuild, work: W)
    where
        W: FnOnce(CheckedBuild) -> F + Send + 'static,
        F: std::future::Future<Output = (BuildRow, Fetched)> + Send,
    {
        // Gone only when the master is stopping: the build is judged at the next start.
        let Some(events) = self.events.upgrade() else {
            return;
        };
        let id = build.id.clone();
        self.model.in_flight.insert((builder.clone(), id.clone()));
        let build = build.clone();
        self.runtime.spawn(async move {
            let (row, outcome) = work(build).await;
            let judgement = Judgement {
                builder,
                build: id,
                row,
                outcome,
            };
            // Only a stopping master drops this: the build is judged again at the next start.
            let _ = events.send(Event::Judged(Box::new(judgement))).await;
        });
    }

    /// Applies what a judgement's task fetched.
    pub(super) fn judged(&mut self, judgement: Judgement) {
        let Judgement {
            builder,
            build,
            mut row,
            outcome,
        } = judgement;
        self.model
            .in_flight
            .remove(&(builder.clone(), build.clone()));
        self.request_replan();
        let quarantined = self
            .model
            .builders
            .iter()
            .any(|b| b.name == builder && b.quarantine.is_some());
        if quarantined {
            // Quarantined while the pull ran: nothing of it is judged now, as nothing of it
            // would have been pulled. The build waits, as the builder's others do, until an
            // operator enables it.
            tracing::info!(%builder, %build, "not judged: the builder was quarantined during the pull");
            if let Fetched::Packages { staging, .. } = &outcome {
                remove_staging(staging);
            }
            return;
        }
        match outcome {
            Fetched::Verification { staging, result } => {
                self.verification_judged(&builder, row, &staging, result);
            }
            Fetched::Logs => {
                let reason = row.reason.as_deref().unwrap_or_default();
                tracing::warn!(%builder, %build, "{} {} failed in {reason}", row.pkgbase, row.version);
                self.record(&row);
            }
            Fetched::Packages { staging, result } => {
                match result {
                    Ok(pulled) => {
                        for p in &pulled {
                            row.warnings.extend(
                                p.package
                                    .warnings
                                    .iter()
                                    .map(|w| format!("{}: {w}", p.filename)),
                            );
                        }
                        if !row.warnings.is_empty() {
                            tracing::info!(%builder, %build, "warnings: {}", row.warnings.join("; "));
                        }
                        self.accept(&mut row, &pulled);
                    }
                    Err(PullError::Refused(refusal)) => {
                        tracing::warn!(%builder, %build, blame = refusal.blame.as_str(), "refused: {}", refusal.reason);
                        row.verdict = VerdictKind::Refused(refusal.blame);
                        row.reason = Some(refusal.reason);
                        self.record(&row);
                        if refusal.blame == crate::verdict::Blame::Builder {
                            self.offend_by_name(
                                &builder,
                                &format!(
                                    "build {} of {} {} was refused: {}",
                                    build,
                                    row.pkgbase,
                                    row.version,
                                    row.reason.as_deref().unwrap_or_default()
                                ),
                            );
                        }
                    }
                    Err(PullError::Unavailable(reason)) => {
                        // Judged again at the next tick.
                        tracing::info!(%builder, %build, "pull postponed: {reason}");
                    }
                }
                remove_staging(&staging);
            }
        }
    }

    /// Marks a build judged, with its verdict: no state published with the verdict may still
    /// count the claim naming it.
    fn mark_judged(&mut self, row: &BuildRow) {
        if let Some(slot) = self
            .model
            .builders
            .iter_mut()
            .find(|b| b.name.as_str() == row.builder)
            && let Ok(id) = BuildId::parse(&row.build_id)
        {
            slot.judged.insert(
                id,
                Judged::Build(Recorded {
                    verdict: row.verdict,
                    reason: row.reason.clone(),
                    warnings: row.warnings.clone(),
                }),
            );
        }
    }

    /// Records a build's verdict, and marks the build judged.
    fn record(&mut self, row: &BuildRow) {
        self.mark_judged(row);
        if let Err(e) = self.db.record_build(row) {
            tracing::error!("recording build {} of {}: {e}", row.build_id, row.builder);
        }
        let message = format!(
            "{} {} ({}) from {} build {}: {}{}",
            row.pkgbase,
            row.version,
            row.arch,
            row.builder,
            row.build_id,
            row.verdict.describe(),
            row.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        let _ = self.db.event(row.verdict.as_str(), &row.pkgbase, &message);
        self.verdicts_changed(&row.pkgbase);
    }

    /// Commits the acceptance of verified packages, puts them into the pool, and asks for the
    /// build repository of every architecture they belong to to be written again (before the
    /// next plan). A pool file of the same name with other content, or a package name another
    /// pkgbase holds, refuses the build and changes nothing.
    fn accept(&mut self, row: &mut BuildRow, pulled: &[Pulled]) {
        use crate::repo::pool::{self, Slot};
        let pool = self.repos.pool();
        let mut entries = Vec::new();
        for p in pulled {
            let info = &p.package.pkginfo;
            // The pull checked the architecture against the build's.
            let Ok(pkg_arch) = Arch::parse(&info.arch) else {
                tracing::error!(
                    "{}: architecture {:?} passed the pull",
                    p.filename,
                    info.arch
                );
                return;
            };
            for arch in pkg_arch.repos(&self.config.arch) {
                entries.push(RepoEntry {
                    repo: RepoKind::Build,
                    arch: arch.to_string(),
                    filename: p.filename.clone(),
                    pkgname: info.pkgname.clone(),
                    pkgbase: info.pkgbase.clone(),
                    version: info.version.clone(),
                    pkg_arch: info.arch.clone(),
                    sha256: p.sha256.clone(),
                    size: p.size,
                    provides: info.provides.clone(),
                    depends: info.depends.clone(),
                    desc: p.package.desc.clone(),
                    files: p.package.files.clone(),
                });
            }
        }
        // The core is the only writer: no other acceptance can take a name between the check
        // and the link.
        for p in pulled {
            match pool::slot(&pool, &p.filename, &p.sha256) {
                Ok(Slot::Free | Slot::Same) => {}
                Ok(Slot::Taken) => {
                    row.verdict = VerdictKind::Refused(crate::verdict::Blame::Package);
                    row.reason = Some(format!(
                        "the pool check failed: it holds another {}, which is never replaced",
                        p.filename
                    ));
                    self.record(row);
                    return;
                }
                Err(e) => {
                    tracing::error!("looking up {} in the pool: {e}", p.filename);
                    return;
                }
            }
        }
        // Signatures first: pacman requires `FILE.sig` beside a package whenever it checks
        // signatures, so no entry may name a file whose signature is not in the pool. A
        // signature may be replaced, so one put here for a build then refused harms nothing.
        for p in pulled {
            if let Some(signature) = &p.signature
                && let Err(e) = pool::put_signature(&pool, signature, &p.filename)
            {
                tracing::error!("putting the signature of {} into the pool: {e}", p.filename);
                return;
            }
        }
        row.verdict = VerdictKind::Accepted;
        match self.db.accept(row, &entries) {
            Ok(()) => {}
            Err(DbError::AlreadyAccepted { .. }) => {
                row.verdict = VerdictKind::Unneeded;
                row.reason =
                    Some("not needed: another build of this version was accepted first".to_owned());
                self.record(row);
                return;
            }
            Err(e @ DbError::NameTaken { .. }) => {
                row.verdict = VerdictKind::Refused(crate::verdict::Blame::Package);
                row.reason = Some(format!("the package name check failed: {e}"));
                self.record(row);
                return;
            }
            Err(e) => {
                tracing::error!("accepting {} {}: {e}", row.pkgbase, row.version);
                return;
            }
        }
        self.mark_judged(row);
        self.verification_accepted(row);
        // Its wall time counts towards the pkgbase's expected duration.
        self.verdicts_changed(&row.pkgbase);
        // Into the pool only now that the acceptance is committed; a failure here leaves the
        // database naming a file the pool lacks, which is said loudly and fixed by a rebuild.
        for p in pulled {
            if let Err(e) = pool::put(&pool, &p.path, &p.filename, &p.sha256) {
                tracing::error!("putting {} into the pool: {e}", p.filename);
            }
        }
        tracing::info!(builder = %row.builder, build = %row.build_id, "accepted {} {} ({})", row.pkgbase, row.version, row.arch);
        for e in &entries {
            self.repo_changed(e);
        }
        // Signed before a rotation that the core has since seen: signed again.
        self.signed_with(entries.iter().map(|e| e.desc.as_str()));
    }
}

/// Removes a pull's staging directory; what a pull left there was never accepted.
pub(super) fn remove_staging(staging: &std::path::Path) {
    if let Err(e) = std::fs::remove_dir_all(staging)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("removing {}: {e}", staging.display());
    }
}

/// Why a finished build is not judged.
#[derive(Debug)]
enum Unclaimed {
    /// Its builder shows no live commitment naming it: a protocol violation.
    NoClaim(String),
    /// Another builder committed to the same version earlier. Not held against the later
    /// builder: honest builders that lost replies to each other can both commit, and a hostile
    /// one can show its commitment to the master and hide it from its peers, which must not
    /// make the honest builder an offender.
    Preceded(String),
}

impl std::fmt::Display for Unclaimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unclaimed::NoClaim(why) | Unclaimed::Preceded(why) => f.write_str(why),
        }
    }
}

/// Why the finished `build` of builder `index` may not be judged, if it may not: the
/// builder must show a live claim on it past `claimed` naming the build, and no other
/// builder may hold an older live commitment to the same package version.
fn unclaimed(builders: &[BuilderSlot], index: usize, build: &CheckedBuild) -> Option<Unclaimed> {
    let key = build.work();
    let slot = &builders[index];
    let claimed = slot.live_claims().any(|c| {
        c.phase >= ClaimPhase::Committed && c.work() == key && c.build.as_ref() == Some(&build.id)
    });
    if !claimed {
        return Some(Unclaimed::NoClaim(format!(
            "build {} of {} {} ({}) has no live committed claim naming it",
            build.id, build.pkgbase, build.version, build.arch
        )));
    }
    let ours = slot.committed_since.get(&key)?;
    builders
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .find(|(_, other)| {
            other.committed_work().contains(&key)
                && other
                    .committed_since
                    .get(&key)
                    .is_some_and(|since| since < ours)
        })
        .map(|(_, other)| {
            Unclaimed::Preceded(format!(
                "{} {} ({}) was committed to by {} before {} committed to it",
                build.pkgbase, build.version, build.arch, other.name, slot.name
            ))
        })
}

/// The builder's commitments that it has held for longer than a lease without showing a build
/// of the package: an honest builder starts the build as it commits, and a builder that only
/// holds commitments keeps others from building.
fn idle_commitments(slot: &BuilderSlot, max_lease: std::time::Duration) -> Vec<String> {
    let Some(state) = &slot.state else {
        return Vec::new();
    };
    let now = std::time::Instant::now();
    slot.live_claims()
        .filter(|c| c.phase == ClaimPhase::Committed)
        .filter(|c| {
            let key = c.work();
            slot.committed_since
                .get(&key)
                .is_some_and(|since| now.duration_since(*since) > max_lease)
                && !state
                    .builds
                    .iter()
                    .any(|b| b.is_running() && b.work() == key)
        })
        .map(|c| {
            format!(
                "committed to {} {} ({}) for more than {} s without building it",
                c.pkgbase,
                c.version,
                c.arch,
                max_lease.as_secs()
            )
        })
        .collect()
}

/// Follows builder `index` until `cancel` fires, checking each state it reads before the
/// core sees it.
pub async fn run_follower(
    master: Arc<Master>,
    index: usize,
    client: PeerClient,
    cancel: CancellationToken,
) {
    let limits = master.config.builder_limits;
    follow::<BuilderState, _, _>(
        &client,
        Role::Builder,
        &FollowOptions::default(),
        &cancel,
        |event| {
            let read = match event {
                PeerEvent::State(state) => {
                    let (checked, violations) = CheckedBuilder::check(&state.content, &limits);
                    BuilderRead::State(Box::new(CheckedState {
                        checked,
                        violations,
                    }))
                }
                PeerEvent::Alive => BuilderRead::Alive,
                PeerEvent::Down(e) => BuilderRead::Down(e),
            };
            let events = master.events().clone();
            async move {
                // Waiting here is the back-pressure: a core behind slows its followers.
                let _ = events.send(Event::Builder { index, read }).await;
            }
        },
    )
    .await;
}

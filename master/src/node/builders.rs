//! Builders: following their states, and judging their finished builds: pulled, verified and
//! accepted into the build repository, rejected with a reason, or recorded as failed with logs.

use std::sync::Arc;

use quarters_common::api::v1::{BuilderState, ClaimPhase, Role};
use quarters_common::client::PeerClient;
use quarters_common::follow::{FollowOptions, PeerEvent, follow};
use quarters_common::liveness::Liveness;
use quarters_common::peer_input::{CheckedBuild, CheckedBuilder, CheckedOutcome};
use tokio_util::sync::CancellationToken;

use super::Master;
use crate::db::{BuildRow, DbError, RepoEntry, VerdictKind};
use crate::plan::State;
use crate::plan::binaries::RepoKind;
use crate::pull::{Expectation, PullError, PullLimits, pull, pull_logs};

impl Master {
    fn builder_event(self: &Arc<Self>, index: usize, event: PeerEvent<BuilderState>) {
        let mut model = self.model();
        let slot = &mut model.builders[index];
        let liveness_changed = slot.liveness.observe(&event);
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
        if let PeerEvent::State(state) = event {
            let (checked, violations) =
                CheckedBuilder::check(&state.content, &self.config.builder_limits);
            for v in violations.iter().filter(|v| !slot.violations.contains(v)) {
                tracing::warn!(builder = %slot.name, "protocol violation: {v}");
            }
            offences.extend(violations.iter().map(|v| v.to_string()));
            slot.violations = violations;
            slot.judged
                .retain(|id| checked.builds.iter().any(|b| &b.id == id));
            let now = std::time::Instant::now();
            let keys: std::collections::HashSet<_> =
                checked.claims.iter().map(super::claim_key).collect();
            slot.leases.retain(|k| keys.contains(k));
            slot.lapses_at = checked
                .claims
                .iter()
                .map(|c| {
                    let key = super::claim_key(c);
                    let at = slot.leases.lapses_at(&key, c.renewed_at, c.lease, now);
                    (key, at)
                })
                .collect();
            slot.state = Some(checked);
            let committed = slot.committed();
            slot.committed_since
                .retain(|key, _| committed.contains(key));
            for key in committed {
                slot.committed_since.entry(key).or_insert(now);
            }
            offences.extend(idle_commitments(slot, self.config.builder_limits.max_lease));
        }
        let mut quarantined = false;
        for what in &offences {
            quarantined |= self.offend(&mut model, index, what);
        }
        let slot = &model.builders[index];
        // Most of a builder's changes (a build's stage, a lease renewed, a claim being made)
        // leave the plan as it was: only what it has committed to counts there. Those are
        // published without planning again, which at thousands of packages is what the
        // master's CPU time would otherwise go to.
        let replan = liveness_changed || quarantined || slot.committed() != committed_before;
        drop(model);
        self.judge_finished_builds();
        if replan {
            self.request_replan();
        } else {
            self.request_republish();
        }
    }

    /// Starts judging every finished build a builder shows that has no verdict yet.
    pub(crate) fn judge_finished_builds(self: &Arc<Self>) {
        let mut model = self.model();
        if !model.plan_complete {
            // Judged against an incomplete plan, a good build would look unwanted.
            return;
        }
        let mut todo = Vec::new();
        // A quarantined builder's builds wait: nothing of it is pulled or judged.
        for (index, slot) in model.builders.iter().enumerate() {
            if slot.quarantine.is_some() {
                continue;
            }
            let Some(state) = &slot.state else { continue };
            for build in state.builds.iter().filter(|b| !b.is_running()) {
                todo.push((index, slot.name.to_string(), build.clone()));
            }
        }
        todo.retain(|(_, builder, build)| {
            !model
                .in_flight
                .contains(&(builder.clone(), build.id.to_string()))
        });
        let db = self.db();
        todo.retain(
            |(index, builder, build)| match db.verdict_of(builder, build.id.as_str()) {
                Ok(None) => true,
                Ok(Some(_)) => {
                    model.builders[*index].judged.insert(build.id.clone());
                    false
                }
                Err(_) => false,
            },
        );
        drop(db);
        for (index, builder, build) in todo {
            let unclaimed = unclaimed(&model.builders, index, &build);
            model
                .in_flight
                .insert((builder.clone(), build.id.to_string()));
            let client = model.builders[index].client.clone();
            let master = self.clone();
            tokio::spawn(async move {
                master.judge(&client, &build, unclaimed).await;
                master
                    .model()
                    .in_flight
                    .remove(&(builder, build.id.to_string()));
                master.request_replan();
            });
        }
    }

    /// Judges one finished build. One that was not claimed as the protocol says (`unclaimed`
    /// says why) is recorded unjudged: nothing of it is pulled, and it counts against nothing
    /// but its builder, and against that only if the builder never claimed it.
    async fn judge(&self, client: &PeerClient, build: &CheckedBuild, unclaimed: Option<Unclaimed>) {
        let builder = client.name().to_string();
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
        };
        if let Some(unclaimed) = unclaimed {
            let why = unclaimed.to_string();
            tracing::warn!(%builder, build = %build.id, "not judged: {why}");
            row.reason = Some(format!("not judged: {why}"));
            self.record(&row);
            if let Unclaimed::NoClaim(_) = unclaimed {
                self.offend_by_name(&builder, &why);
            }
            return;
        }
        let (unit, pins) = {
            let model = self.model();
            let unit = model
                .plan
                .unit(build.pkgbase.as_str(), build.arch.as_str())
                .cloned();
            let pins = unit
                .as_ref()
                .map(|u| model.plan.pins(u))
                .unwrap_or_default();
            (unit, pins)
        };
        let key = super::build_key(build);
        let already = self.db().is_accepted(&key).unwrap_or(false);
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
        match &build.outcome {
            CheckedOutcome::Running { .. } => {}
            CheckedOutcome::Failed { stage, reason } => {
                let dir =
                    crate::store::log_dir(&self.config.state_dir, &builder, build.id.as_str());
                let got = pull_logs(client, build, &dir, self.config.max_log_size).await;
                row.verdict = VerdictKind::Failed;
                row.reason = Some(format!("{stage}: {reason}"));
                row.log_dir = (!got.is_empty()).then(|| dir.to_string_lossy().into_owned());
                tracing::warn!(%builder, build = %build.id, "{} {} failed in {stage}: {reason}", build.pkgbase, build.version);
                self.record(&row);
            }
            CheckedOutcome::Succeeded => {
                let unit = unit.expect("checked above");
                let staging =
                    crate::store::staging_dir(&self.config.state_dir, &builder, build.id.as_str());
                let _ = tokio::fs::remove_dir_all(&staging).await;
                if let Err(e) = tokio::fs::create_dir_all(&staging).await {
                    tracing::error!("creating {}: {e}", staging.display());
                    return;
                }
                let pkgbuild_sha256 = self.handed_out_pkgbuild(&unit.spec);
                if pkgbuild_sha256.is_none() {
                    row.warnings.push(
                        "the master has no source tarball of this version left to check its PKGBUILD against"
                            .to_owned(),
                    );
                }
                let packager = unit.spec.makepkg_packager();
                let expect = Expectation {
                    pkgbase: build.pkgbase.as_str(),
                    version: build.version.as_str(),
                    arch: build.arch.as_str(),
                    pkgnames: &unit.spec.pkgnames,
                    packager: &packager,
                    pkgbuild_sha256: pkgbuild_sha256.as_deref(),
                    pins: &pins,
                };
                let limits = PullLimits {
                    max_bytes: self.config.max_artifact_size,
                    archive: self.config.archive_limits,
                    cancel: self.stopping.clone(),
                };
                let result = pull(client, build, expect, &staging, &limits).await;
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
                            tracing::info!(%builder, build = %build.id, "warnings: {}", row.warnings.join("; "));
                        }
                        self.accept(&mut row, &pulled);
                    }
                    Err(PullError::Refused(refusal)) => {
                        tracing::warn!(%builder, build = %build.id, blame = refusal.blame.as_str(), "refused: {}", refusal.reason);
                        row.verdict = VerdictKind::Refused(refusal.blame);
                        row.reason = Some(refusal.reason);
                        self.record(&row);
                        if refusal.blame == crate::verdict::Blame::Builder {
                            self.offend_by_name(
                                &builder,
                                &format!(
                                    "build {} of {} {} was refused: {}",
                                    build.id,
                                    build.pkgbase,
                                    build.version,
                                    row.reason.as_deref().unwrap_or_default()
                                ),
                            );
                        }
                    }
                    Err(PullError::Unavailable(reason)) => {
                        tracing::info!(%builder, build = %build.id, "pull postponed: {reason}");
                    }
                }
                let _ = tokio::fs::remove_dir_all(&staging).await;
            }
        }
    }

    /// Marks a build judged before its verdict is written: no state published with the
    /// verdict may still count the claim naming it.
    fn mark_judged(&self, row: &BuildRow) {
        let Ok(id) = quarters_common::peer_input::BuildId::parse(&row.build_id) else {
            return;
        };
        let mut model = self.model();
        if let Some(slot) = model
            .builders
            .iter_mut()
            .find(|b| b.name.as_str() == row.builder)
        {
            slot.judged.insert(id);
        }
    }

    fn record(&self, row: &BuildRow) {
        self.mark_judged(row);
        let mut db = self.db();
        if let Err(e) = db.record_build(row) {
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
        let _ = db.event(row.verdict.as_str(), &row.pkgbase, &message);
    }

    /// Commits the acceptance of verified packages, puts them into the pool, and rewrites
    /// the build repository of every architecture they belong to. A pool file of the same
    /// name with other content, or a package name another pkgbase holds, refuses the build
    /// and changes nothing.
    fn accept(&self, row: &mut BuildRow, pulled: &[crate::pull::Pulled]) {
        use crate::repo::pool::{self, Slot};
        let pool = self.repos.pool();
        let mut entries = Vec::new();
        for p in pulled {
            let info = &p.package.pkginfo;
            let arches: Vec<String> = if info.arch == "any" {
                self.config.arch.clone()
            } else {
                vec![info.arch.clone()]
            };
            for arch in arches {
                entries.push(RepoEntry {
                    repo: RepoKind::Build,
                    arch,
                    filename: p.filename.clone(),
                    pkgname: info.pkgname.clone(),
                    pkgbase: info.pkgbase.clone(),
                    version: info.version.clone(),
                    pkg_arch: info.arch.clone(),
                    sha256: p.sha256.clone(),
                    size: p.size,
                    provides: info.provides.clone(),
                    desc: p.package.desc.clone(),
                    files: p.package.files.clone(),
                });
            }
        }
        // Marked before the database is locked (the model is always locked first).
        self.mark_judged(row);
        // The database lock is held from the pool check to the rewrite: acceptances are one
        // at a time, so no other can take a name between the check and the link.
        let mut db = self.db();
        for p in pulled {
            match pool::slot(&pool, &p.filename, &p.sha256) {
                Ok(Slot::Free | Slot::Same) => {}
                Ok(Slot::Taken) => {
                    drop(db);
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
        row.verdict = VerdictKind::Accepted;
        match db.accept(row, &entries) {
            Ok(()) => {}
            Err(DbError::AlreadyAccepted { .. }) => {
                drop(db);
                row.verdict = VerdictKind::Unneeded;
                row.reason =
                    Some("not needed: another build of this version was accepted first".to_owned());
                self.record(row);
                return;
            }
            Err(e @ DbError::NameTaken { .. }) => {
                drop(db);
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
        // Into the pool only now that the acceptance is committed; a failure here leaves the
        // database naming a file the pool lacks, which is said loudly and fixed by a rebuild.
        for p in pulled {
            if let Err(e) = pool::put(&pool, &p.path, &p.filename, &p.sha256) {
                tracing::error!("putting {} into the pool: {e}", p.filename);
            }
        }
        // The database stays locked until the files are rewritten: a plan reads the build
        // repository from SQLite, and must not publish a package as ready before the
        // dependency it just gained is in the files pacman reads.
        let all = db.repo_entries();
        tracing::info!(builder = %row.builder, build = %row.build_id, "accepted {} {} ({})", row.pkgbase, row.version, row.arch);
        match all {
            Ok(all) => {
                let mut arches: Vec<&str> = entries.iter().map(|e| e.arch.as_str()).collect();
                arches.sort_unstable();
                arches.dedup();
                for arch in arches {
                    if let Err(e) = self.repos.rewrite(RepoKind::Build, arch, &all) {
                        // SQLite has the acceptance; the next start-up rewrites the files.
                        tracing::error!("rewriting the build repository ({arch}): {e}");
                    }
                }
            }
            Err(e) => tracing::error!("reading the repositories: {e}"),
        }
        drop(db);
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
fn unclaimed(
    builders: &[super::BuilderSlot],
    index: usize,
    build: &CheckedBuild,
) -> Option<Unclaimed> {
    let key = super::build_key(build);
    let slot = &builders[index];
    let claimed = slot.live_claims().any(|c| {
        c.phase >= ClaimPhase::Committed
            && super::claim_key(c) == key
            && c.build.as_ref() == Some(&build.id)
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
            other.committed().contains(&key)
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
fn idle_commitments(slot: &super::BuilderSlot, max_lease: std::time::Duration) -> Vec<String> {
    let Some(state) = &slot.state else {
        return Vec::new();
    };
    let now = std::time::Instant::now();
    slot.live_claims()
        .filter(|c| c.phase == ClaimPhase::Committed)
        .filter(|c| {
            let key = super::claim_key(c);
            slot.committed_since
                .get(&key)
                .is_some_and(|since| now.duration_since(*since) > max_lease)
                && !state
                    .builds
                    .iter()
                    .any(|b| b.is_running() && super::build_key(b) == key)
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

/// Follows builder `index` until `cancel` fires.
pub async fn run_follower(
    master: Arc<Master>,
    index: usize,
    client: PeerClient,
    cancel: CancellationToken,
) {
    follow::<BuilderState, _>(
        &client,
        Role::Builder,
        &FollowOptions::default(),
        &cancel,
        |event| {
            master.builder_event(index, event);
        },
    )
    .await;
}

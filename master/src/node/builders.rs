//! Builders: following their states, and judging their finished builds: pulled, verified and
//! accepted into the build repository, rejected with a reason, or recorded as failed with logs.

use std::sync::Arc;

use quarters_common::api::v1::{Build, BuildOutcome, BuilderState, Role};
use quarters_common::client::PeerClient;
use quarters_common::follow::{FollowOptions, PeerEvent, follow};
use quarters_common::liveness::Liveness;
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
        if let PeerEvent::State(state) = event {
            slot.state = Some(state.content);
            slot.read_at = Some(std::time::Instant::now());
        }
        // Most of a builder's changes (a build's stage, a lease renewed, a claim being made)
        // leave the plan as it was: only what it has committed to counts there. Those are
        // published without planning again, which at thousands of packages is what the
        // master's CPU time would otherwise go to.
        let replan = liveness_changed || slot.committed() != committed_before;
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
        for (index, slot) in model.builders.iter().enumerate() {
            let Some(state) = &slot.state else { continue };
            for build in &state.builds {
                if matches!(build.outcome, BuildOutcome::Running { .. }) {
                    continue;
                }
                todo.push((index, slot.name.to_string(), build.clone()));
            }
        }
        todo.retain(|(_, builder, build)| {
            !model
                .in_flight
                .contains(&(builder.clone(), build.id.clone()))
        });
        let db = self.db();
        todo.retain(|(_, builder, build)| matches!(db.verdict_of(builder, &build.id), Ok(None)));
        drop(db);
        for (index, builder, build) in todo {
            model.in_flight.insert((builder.clone(), build.id.clone()));
            let client = model.builders[index].client.clone();
            let master = self.clone();
            tokio::spawn(async move {
                master.judge(&client, &build).await;
                master
                    .model()
                    .in_flight
                    .remove(&(builder, build.id.clone()));
                master.request_replan();
            });
        }
    }

    async fn judge(&self, client: &PeerClient, build: &Build) {
        let builder = client.name().to_string();
        let mut row = BuildRow {
            builder: builder.clone(),
            build_id: build.id.clone(),
            pkgbase: build.pkgbase.clone(),
            version: build.version.clone(),
            arch: build.arch.clone(),
            verdict: VerdictKind::Unneeded,
            reason: None,
            wall_ms: build.wall_ms,
            cpu_ms: build.cpu_ms,
            peak_memory_kb: build.peak_memory_kb,
            log_dir: None,
            started_at: Some(build.started_at),
            warnings: Vec::new(),
        };
        let unit = self.model().plan.unit(&build.pkgbase, &build.arch).cloned();
        let key = (
            build.pkgbase.clone(),
            build.version.clone(),
            build.arch.clone(),
        );
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
            Some(u) if u.spec.version != build.version => {
                Some(format!("the sources are at {} now", u.spec.version))
            }
            Some(u) if matches!(u.state, State::Built | State::Live) => {
                Some("that version is built already".to_owned())
            }
            Some(_) => None,
        };
        if let Some(reason) = unneeded
            && matches!(build.outcome, BuildOutcome::Succeeded)
        {
            row.reason = Some(format!("not needed: {reason}"));
            self.record(&row);
            return;
        }
        match &build.outcome {
            BuildOutcome::Running { .. } => {}
            BuildOutcome::Failed { stage, reason } => {
                let dir = self
                    .config
                    .state_dir
                    .join("logs")
                    .join(&builder)
                    .join(&build.id);
                let got = pull_logs(client, build, &dir, self.config.max_log_size).await;
                row.verdict = VerdictKind::Failed;
                row.reason = Some(format!("{stage}: {reason}"));
                row.log_dir = (!got.is_empty()).then(|| dir.to_string_lossy().into_owned());
                tracing::warn!(%builder, build = %build.id, "{} {} failed in {stage}: {reason}", build.pkgbase, build.version);
                self.record(&row);
            }
            BuildOutcome::Succeeded => {
                let unit = unit.expect("checked above");
                let staging = self
                    .config
                    .state_dir
                    .join("staging")
                    .join(format!("{builder}-{}", build.id));
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
                    pkgbase: &build.pkgbase,
                    version: &build.version,
                    arch: &build.arch,
                    pkgnames: &unit.spec.pkgnames,
                    packager: &packager,
                    pkgbuild_sha256: pkgbuild_sha256.as_deref(),
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
                    }
                    Err(PullError::Unavailable(reason)) => {
                        tracing::info!(%builder, build = %build.id, "pull postponed: {reason}");
                    }
                }
                let _ = tokio::fs::remove_dir_all(&staging).await;
            }
        }
    }

    fn record(&self, row: &BuildRow) {
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

    /// Moves verified packages into the pool, commits the acceptance, and rewrites the build
    /// repository of every architecture they belong to.
    fn accept(&self, row: &mut BuildRow, pulled: &[crate::pull::Pulled]) {
        let pool = self.repos.pool();
        let mut entries = Vec::new();
        for p in pulled {
            if let Err(e) = std::fs::rename(&p.path, pool.join(&p.filename)) {
                tracing::error!("moving {} into the pool: {e}", p.filename);
                return;
            }
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
        row.verdict = VerdictKind::Accepted;
        let mut db = self.db();
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
            Err(e) => {
                tracing::error!("accepting {} {}: {e}", row.pkgbase, row.version);
                return;
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

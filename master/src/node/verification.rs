//! Independent verification in the core: which accepted versions wait for a verification
//! build, the ready-list entries that ask for them, and the judging of a verification build
//! (pulled and checked as any build, then compared with the accepted packages; nothing of it
//! enters a repository).

use quarters_common::api::v1::ctl::{
    VerificationCounts, VerificationStatus, VerificationView, VerifyBuild,
};
use quarters_common::api::v1::{
    ClaimPhase, DiffersView, Purpose, ReadyPackage, VerificationSummary, VerifyRequest,
};
use quarters_common::peer_input::{CheckedBuild, CheckedOutcome};
use quarters_common::{BuildKey, NodeName};

use super::Core;
use super::builders::{Fetched, remove_staging};
use super::model::Judged;
use crate::db::{AcceptedFile, BuildRow, Pending, VerificationRow};
use crate::plan::State;
use crate::pull::{Expectation, PullError, PullLimits, pull};
use crate::verdict::Verification;
use crate::verify::{self, Compared, Comparison, MAX_UNVERIFIABLE, Made, Mode};

impl Core {
    /// The accepted versions no verification has settled, from the database.
    pub(super) fn load_pending_verifications(&mut self) {
        if self.config.verification.mode == Mode::Off {
            return;
        }
        match self
            .db
            .pending_verifications(MAX_UNVERIFIABLE, self.config.verification.reproductions())
        {
            Ok(pending) => {
                self.model.pending_verify =
                    pending.into_iter().map(|p| (p.key.clone(), p)).collect();
            }
            Err(e) => tracing::error!("reading the versions waiting for verification: {e}"),
        }
        match self.db.differing() {
            Ok(keys) => self.model.differing = keys.into_iter().collect(),
            Err(e) => tracing::error!("reading the versions that did not reproduce: {e}"),
        }
    }

    /// Verification in the published state: the current versions that wait, and those that
    /// differ; nothing where the farm does not verify.
    ///
    /// A pass over the versions waiting, at each publication: proportional to what waits for
    /// a verification, which idle builders drain.
    pub(super) fn verification_summary(&self) -> Option<VerificationSummary> {
        if self.config.verification.mode == Mode::Off {
            return None;
        }
        let current = |key: &BuildKey| {
            self.model
                .plan
                .unit(&key.pkgbase, &key.arch)
                .is_some_and(|u| *u.spec.version == key.version)
        };
        Some(VerificationSummary {
            mode: self.config.verification.mode.to_wire(),
            pending: self
                .model
                .pending_verify
                .keys()
                .filter(|k| current(k))
                .count() as u64,
            differs: self
                .model
                .differing
                .iter()
                .filter(|k| current(k))
                .map(|k| DiffersView {
                    pkgbase: k.pkgbase.clone(),
                    version: k.version.clone(),
                    arch: k.arch.to_string(),
                    deciding: self.model.pending_verify.contains_key(k),
                })
                .collect(),
        })
    }

    /// Verification counts for `quartersctl status`, from the database.
    pub(super) fn verification_counts(&self) -> Option<VerificationCounts> {
        let (reproduced, differs) = match self.db.verification_counts() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("counting verifications: {e}");
                return None;
            }
        };
        Some(VerificationCounts {
            mode: self.config.verification.mode.to_wire(),
            reproduced,
            differs,
            pending: self.verification_summary().map_or(0, |s| s.pending),
        })
    }

    /// A version was accepted from `row`'s build: it waits for a verification.
    pub(super) fn verification_accepted(&mut self, row: &BuildRow) {
        if self.config.verification.mode == Mode::Off {
            return;
        }
        let Ok(arch) = quarters_common::Arch::parse(&row.arch) else {
            return;
        };
        let key = BuildKey::new(&row.pkgbase, &row.version, arch);
        self.model.pending_verify.insert(
            key.clone(),
            Pending {
                key,
                built_by: vec![row.builder.clone()],
                unverifiable: 0,
            },
        );
    }

    /// Ready-list entries for at most `room` verifications: versions accepted and still the
    /// sources' current ones, that no builder has committed to verifying.
    pub(super) fn verification_entries(&self, room: usize) -> Vec<ReadyPackage> {
        if self.config.verification.mode == Mode::Off || room == 0 {
            return Vec::new();
        }
        let claimed: std::collections::HashSet<BuildKey> = self
            .model
            .builders
            .iter()
            .flat_map(|b| b.live_claims())
            .filter(|c| c.purpose == Purpose::Verify && c.phase >= ClaimPhase::Committed)
            .map(|c| c.key())
            .collect();
        self.model
            .pending_verify
            .values()
            .filter(|p| !claimed.contains(&p.key))
            .filter_map(|p| {
                let built_by = self.not_to_verify(&p.built_by);
                let u = self.model.plan.unit(&p.key.pkgbase, &p.key.arch)?;
                let current = *u.spec.version == p.key.version
                    && matches!(u.state, State::Built | State::Live);
                current.then(|| self.ready_entry(u, Some(VerifyRequest { built_by })))?
            })
            .take(room)
            .collect()
    }

    /// The builders a verification may not go to: those that built the version, and, where
    /// the farm has a builder on another machine, every builder on their machines too (two
    /// builders of one machine are one machine's word).
    fn not_to_verify(&self, built_by: &[String]) -> Vec<String> {
        let machine_of = |name: &str| {
            self.model
                .builders
                .iter()
                .find(|b| b.name.as_str() == name)
                .and_then(|b| b.state.as_ref()?.machine.clone())
        };
        let machines: Vec<_> = built_by.iter().filter_map(|b| machine_of(b)).collect();
        let same_machine: Vec<String> = self
            .model
            .builders
            .iter()
            .filter(|b| !built_by.iter().any(|n| n == b.name.as_str()))
            .filter(|b| {
                b.state
                    .as_ref()
                    .and_then(|s| s.machine.as_ref())
                    .is_some_and(|m| machines.contains(m))
            })
            .map(|b| b.name.to_string())
            .collect();
        let others = self
            .model
            .builders
            .iter()
            .filter(|b| !built_by.iter().any(|n| n == b.name.as_str()))
            .count();
        let mut out = built_by.to_vec();
        // Another machine exists only if some builder is neither a builder of the version nor
        // on one of their machines.
        if others > same_machine.len() {
            out.extend(same_machine);
        }
        out
    }

    /// Judges a finished verification build of builder `index`.
    pub(super) fn judge_verification(&mut self, index: usize, build: &CheckedBuild, row: BuildRow) {
        let slot = &self.model.builders[index];
        let builder = slot.name.to_string();
        let key = build.key();
        let accepted = match self.db.accepted(&key) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("reading the accepted build of {key}: {e}");
                return;
            }
        };
        let verification = |verdict, detail: &str| VerificationRow {
            builder: builder.clone(),
            build_id: row.build_id.clone(),
            key: key.clone(),
            verdict,
            detail: Some(detail.to_owned()),
            wall_ms: row.wall_ms,
            cpu_ms: row.cpu_ms,
            log_dir: None,
            files: Vec::new(),
            template: row.template.clone(),
        };
        let Some(accepted) = accepted else {
            // Nothing to compare with: answered, not recorded (nothing was pulled).
            self.mark_verification(&verification(
                Verification::Unverifiable,
                "no accepted build of this version to compare with",
            ));
            return;
        };
        if accepted.builder == builder {
            let what = format!(
                "build {} verifies {key}, which the builder built itself",
                build.id
            );
            tracing::warn!(%builder, "protocol violation: {what}");
            self.mark_verification(&verification(Verification::Unverifiable, &what));
            self.offend(index, &what);
            return;
        }
        let unit = self.model.plan.unit(&key.pkgbase, &key.arch).cloned();
        let unit = match unit {
            Some(u) if *u.spec.version == key.version => u,
            _ => {
                self.finish_verification(&verification(
                    Verification::Unverifiable,
                    "the sources have moved on from this version",
                ));
                return;
            }
        };
        match &build.outcome {
            CheckedOutcome::Running { .. } => {}
            CheckedOutcome::Failed { stage, reason } => {
                self.finish_verification(&verification(
                    Verification::Unverifiable,
                    &format!("the verification build failed in {stage}: {reason}"),
                ));
            }
            CheckedOutcome::Succeeded => {
                let client = slot.client.clone();
                let name = slot.name.clone();
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
                let pool = self.repos.pool();
                self.fetch(name, build, async move |build| {
                    let pkgbuild_sha256 = handed_out.resolve().await;
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
                    let pulled = match tokio::fs::create_dir_all(&staging).await {
                        Ok(()) => pull(&client, &build, expect, &staging, &limits).await,
                        Err(e) => Err(PullError::Unavailable(format!(
                            "creating {}: {e}",
                            staging.display()
                        ))),
                    };
                    let result = match pulled {
                        Ok(pulled) => {
                            let made: Vec<Made> = pulled
                                .into_iter()
                                .map(|p| Made {
                                    filename: p.filename,
                                    sha256: p.sha256,
                                    path: p.path,
                                })
                                .collect();
                            let archive = limits.archive;
                            let cancel = limits.cancel.clone();
                            let files = accepted.files;
                            // Reading two archives whole is long work: off the runtime.
                            tokio::task::spawn_blocking(move || Compared {
                                comparison: verify::compare(
                                    &files, &pool, &made, &archive, &cancel,
                                ),
                                made: made
                                    .into_iter()
                                    .map(|m| AcceptedFile {
                                        filename: m.filename,
                                        sha256: m.sha256,
                                    })
                                    .collect(),
                            })
                            .await
                            .map_err(|e| PullError::Unavailable(format!("comparing: {e}")))
                        }
                        Err(e) => Err(e),
                    };
                    (row, Fetched::Verification { staging, result })
                });
            }
        }
    }

    /// Applies what a verification's task found.
    pub(super) fn verification_judged(
        &mut self,
        builder: &NodeName,
        row: BuildRow,
        staging: &std::path::Path,
        result: Result<Compared, PullError>,
    ) {
        remove_staging(staging);
        let Ok(arch) = quarters_common::Arch::parse(&row.arch) else {
            return;
        };
        let key = BuildKey::new(&row.pkgbase, &row.version, arch);
        let mut files = Vec::new();
        let (verdict, detail) = match result {
            Ok(compared) => {
                files = compared.made;
                (
                    match compared.comparison {
                        Comparison::Reproduced => Verification::Reproduced,
                        Comparison::Differs(_) => Verification::Differs,
                    },
                    compared.comparison.detail(),
                )
            }
            Err(PullError::Refused(refusal)) => {
                if refusal.blame == crate::verdict::Blame::Builder {
                    self.offend_by_name(
                        builder,
                        &format!(
                            "verification build {} of {key} was refused: {}",
                            row.build_id, refusal.reason
                        ),
                    );
                }
                (Verification::Unverifiable, Some(refusal.reason))
            }
            Err(PullError::Unavailable(reason)) => {
                tracing::info!(%builder, build = %row.build_id, "verification pull postponed: {reason}");
                return;
            }
        };
        match verdict {
            Verification::Differs => tracing::warn!(
                %builder,
                build = %row.build_id,
                "{key} differs from the accepted build: {}",
                detail.as_deref().unwrap_or_default()
            ),
            _ => {
                tracing::info!(%builder, build = %row.build_id, "{key}: verification {}", verdict.as_str());
            }
        }
        self.finish_verification(&VerificationRow {
            builder: builder.to_string(),
            build_id: row.build_id,
            key,
            verdict,
            detail,
            wall_ms: row.wall_ms,
            cpu_ms: row.cpu_ms,
            log_dir: None,
            files,
            template: row.template,
        });
    }

    /// Records a verification's verdict and settles (or not) the version's verification.
    ///
    /// A reproduction settles it. A difference alone does not: two builds disagree and
    /// nothing says which one is honest, so another builder is asked. Its build then takes a
    /// side: agreeing with the accepted build, it settles the version as reproduced and makes
    /// each builder that differed an offender; agreeing with an earlier differing build, it
    /// makes the accepted build's builder the offender (two independent builds agree against
    /// it); agreeing with neither, the package does not reproduce, and nobody is blamed.
    fn finish_verification(&mut self, v: &VerificationRow) {
        let earlier = self
            .db
            .verifications_of(&v.key.pkgbase)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.key == v.key && e.build_id != v.build_id)
            .collect::<Vec<_>>();
        if let Err(e) = self.db.record_verification(v) {
            tracing::error!(
                "recording verification build {} of {}: {e}",
                v.build_id,
                v.builder
            );
            return;
        }
        let message = format!(
            "{} from {} build {}: {}{}",
            v.key,
            v.builder,
            v.build_id,
            v.verdict.as_str(),
            v.detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
        let _ = self.db.event(
            &format!("verification-{}", v.verdict.as_str()),
            &v.key.pkgbase,
            &message,
        );
        let differed: Vec<&VerificationRow> = earlier
            .iter()
            .filter(|e| e.verdict == Verification::Differs)
            .collect();
        let mut offenders: Vec<(String, String)> = Vec::new();
        match v.verdict {
            Verification::Reproduced => {
                self.model.differing.remove(&v.key);
            }
            Verification::Differs => {
                self.model.differing.insert(v.key.clone());
            }
            Verification::Unverifiable => {}
        }
        let settled = match v.verdict {
            Verification::Reproduced => {
                let reproductions = 1 + earlier
                    .iter()
                    .filter(|e| e.verdict == Verification::Reproduced)
                    .count();
                for d in &differed {
                    offenders.push((
                        d.builder.clone(),
                        format!(
                            "its verification build {} of {} differs from the accepted build, which {}'s build {} reproduced",
                            d.build_id, v.key, v.builder, v.build_id
                        ),
                    ));
                }
                reproductions >= self.config.verification.reproductions() as usize
            }
            Verification::Differs => {
                if let Some(agrees) = differed.iter().find(|d| same_files(&d.files, &v.files)) {
                    let accepted_by = self.db.accepted(&v.key).ok().flatten().map(|a| a.builder);
                    if let Some(first) = accepted_by {
                        tracing::error!(
                            "{}: the accepted build, from {first}, differs from the builds of {} and {}, which agree",
                            v.key,
                            agrees.builder,
                            v.builder
                        );
                        offenders.push((
                            first,
                            format!(
                                "its accepted build of {} differs from {}'s build {} and {}'s build {}, which agree",
                                v.key, agrees.builder, agrees.build_id, v.builder, v.build_id
                            ),
                        ));
                    }
                }
                !differed.is_empty()
            }
            Verification::Unverifiable => false,
        };
        if let Some(p) = self.model.pending_verify.get_mut(&v.key) {
            if !p.built_by.contains(&v.builder) {
                p.built_by.push(v.builder.clone());
            }
            if v.verdict == Verification::Unverifiable {
                p.unverifiable += 1;
            }
            if settled || p.unverifiable >= MAX_UNVERIFIABLE {
                self.model.pending_verify.remove(&v.key);
            }
        }
        self.mark_verification(v);
        for (builder, what) in offenders {
            if let Ok(name) = NodeName::new(&builder) {
                tracing::warn!(%builder, "{what}");
                self.offend_by_name(&name, &what);
            }
        }
    }

    /// The builds among `entries` (about to be promoted) that no independent build has
    /// reproduced, as `pkgbase version (arch)`, where the farm requires verification; none
    /// where it does not.
    pub(super) fn unreproduced(
        &self,
        entries: &[crate::db::RepoEntry],
    ) -> Result<Vec<String>, crate::db::DbError> {
        if self.config.verification.mode != Mode::Required {
            return Ok(Vec::new());
        }
        let mut out: Vec<String> = Vec::new();
        let mut known: std::collections::HashMap<(String, String), Vec<String>> =
            std::collections::HashMap::new();
        for e in entries {
            let key = (e.pkgbase.clone(), e.version.clone());
            let archs = match known.get(&key) {
                Some(a) => a.clone(),
                None => {
                    let a = self.db.reproduced_archs(
                        &e.pkgbase,
                        &e.version,
                        self.config.verification.reproductions(),
                    )?;
                    known.insert(key, a.clone());
                    a
                }
            };
            // A package's repository architecture is its build's, or the build was `any`.
            let reproduced = archs
                .iter()
                .any(|a| *a == e.arch || quarters_common::Arch::any() == *a.as_str());
            let name = format!("{} {} ({})", e.pkgbase, e.version, e.arch);
            if !reproduced && !out.contains(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// How the verification of built version `key` stands, for `why`.
    pub(super) fn verification_view(&self, key: &BuildKey) -> VerificationView {
        let accepted = self.db.accepted(key).ok().flatten();
        let accepted_template = accepted.as_ref().and_then(|a| a.template.clone());
        let accepted_from = accepted.map(|a| a.builder);
        let builds: Vec<VerifyBuild> = self
            .db
            .verifications_of(&key.pkgbase)
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v.key == *key)
            .map(|v| VerifyBuild {
                builder: v.builder,
                build: v.build_id,
                verdict: status_of(v.verdict),
                detail: v.detail,
                template: v.template,
            })
            .collect();
        let has = |s: VerificationStatus| builds.iter().any(|b| b.verdict == s);
        let reproductions = builds
            .iter()
            .filter(|b| b.verdict == VerificationStatus::Reproduced)
            .count() as u32;
        let needed = self.config.verification.reproductions();
        // Enough reproductions outweigh an earlier difference: the builds agree, and the one
        // that differed was blamed.
        let status = if reproductions >= needed {
            VerificationStatus::Reproduced
        } else if has(VerificationStatus::Differs) && reproductions == 0 {
            VerificationStatus::Differs
        } else if self.config.verification.mode == Mode::Off {
            VerificationStatus::Off
        } else if self.model.pending_verify.contains_key(key) {
            VerificationStatus::Pending
        } else if !builds.is_empty() {
            VerificationStatus::Unverifiable
        } else if accepted_from.is_none() {
            VerificationStatus::NotRecorded
        } else {
            VerificationStatus::Pending
        };
        VerificationView {
            status,
            deciding: status == VerificationStatus::Differs
                && self.model.pending_verify.contains_key(key),
            accepted_from,
            accepted_template,
            reproductions_needed: needed,
            builds,
        }
    }

    /// Answers the builder: its verification build has a verdict, and may go.
    fn mark_verification(&mut self, v: &VerificationRow) {
        if let Some(slot) = self
            .model
            .builders
            .iter_mut()
            .find(|b| b.name.as_str() == v.builder)
            && let Ok(id) = quarters_common::peer_input::BuildId::parse(&v.build_id)
        {
            slot.judged.insert(
                id,
                Judged::Verify {
                    verdict: v.verdict,
                    detail: v.detail.clone(),
                },
            );
        }
        self.request_republish();
    }
}

fn status_of(v: Verification) -> VerificationStatus {
    match v {
        Verification::Reproduced => VerificationStatus::Reproduced,
        Verification::Differs => VerificationStatus::Differs,
        Verification::Unverifiable => VerificationStatus::Unverifiable,
    }
}

/// Whether two builds made the same files, byte for byte.
fn same_files(a: &[AcceptedFile], b: &[AcceptedFile]) -> bool {
    fn sorted(f: &[AcceptedFile]) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = f
            .iter()
            .map(|f| (f.filename.as_str(), f.sha256.as_str()))
            .collect();
        v.sort_unstable();
        v
    }
    !a.is_empty() && sorted(a) == sorted(b)
}

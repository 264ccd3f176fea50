//! The master's state as published: `api::v1::MasterState` from the model.

use quarters_common::api::v1::{
    BuildVerdict, ClaimView, Download, EvaluationProgress, MasterState, PackageState, PeerView,
    Problem, ReadyPackage, SourceView, Verdict, VerifyRequest, ViolationView,
};

use quarters_common::Arch;

use super::Core;
use super::model::Judged;
use crate::db::VerdictKind;
use crate::plan::State;
use crate::quarantine::Quarantine;
use crate::verdict::Verification;

/// Violations published per builder: enough to name the offence, never a flood.
const VIOLATIONS_SHOWN: usize = 8;

impl Core {
    pub(super) fn to_wire(&self) -> MasterState {
        let model = &self.model;
        let no_failures = std::collections::HashMap::new();
        let failures = self.failures().unwrap_or(&no_failures);
        let base = &self.config.url;
        let shown = shown(&model.builders);
        let mut ready: Vec<ReadyPackage> = model
            .plan
            .ready
            .iter()
            .take(shown)
            .filter_map(|&i| self.ready_entry(&model.plan.units[i], None))
            .collect();
        // Verifications only fill what room first builds leave: they use idle capacity.
        let room = shown.saturating_sub(ready.len());
        ready.extend(self.verification_entries(room));
        let mut claims = Vec::new();
        let mut results = Vec::new();
        for b in &model.builders {
            let Some(state) = &b.state else { continue };
            claims.extend(b.live_claims().map(|c| ClaimView {
                builder: b.name.to_string(),
                pkgbase: c.pkgbase.to_string(),
                version: c.version.to_string(),
                arch: c.arch.to_string(),
                phase: c.phase,
                purpose: c.purpose,
            }));
            for build in state.builds.iter().filter(|b| !b.is_running()) {
                if let Some(judged) = b.judged.get(&build.id) {
                    // Builders only need to know whether to clean up; the wire keeps its
                    // three verdicts.
                    let (verdict, reason, warnings) = match judged {
                        Judged::Build(recorded) => (
                            match recorded.verdict {
                                VerdictKind::Accepted => Verdict::Accepted,
                                VerdictKind::Refused(_) | VerdictKind::Unneeded => {
                                    Verdict::Rejected
                                }
                                VerdictKind::Failed => Verdict::Failed,
                            },
                            recorded.reason.clone(),
                            recorded.warnings.clone(),
                        ),
                        Judged::Verify { verdict, detail } => (
                            match verdict {
                                Verification::Reproduced => Verdict::Accepted,
                                Verification::Differs => Verdict::Rejected,
                                Verification::Unverifiable => Verdict::Failed,
                            },
                            Some(match detail {
                                Some(d) => format!("verification: {}: {d}", verdict.as_str()),
                                None => format!("verification: {}", verdict.as_str()),
                            }),
                            Vec::new(),
                        ),
                    };
                    results.push(BuildVerdict {
                        builder: b.name.to_string(),
                        build: build.id.to_string(),
                        pkgbase: build.pkgbase.to_string(),
                        version: build.version.to_string(),
                        arch: build.arch.to_string(),
                        verdict,
                        reason,
                        warnings,
                    });
                }
            }
        }
        claims.sort_by(|a, b| {
            b.phase
                .cmp(&a.phase)
                .then_with(|| a.pkgbase.cmp(&b.pkgbase))
        });
        let mut problems: Vec<Problem> = model
            .plan
            .units
            .iter()
            .filter_map(|u| {
                let (reason, log) = match &u.state {
                    State::Failed { reason } => {
                        let log =
                            failures
                                .get(&u.spec.key())
                                .filter(|f| f.has_logs)
                                .and_then(|f| {
                                    base.join(&format!(
                                        "v1/logs/{}/{}/{}",
                                        f.builder,
                                        f.build_id,
                                        f.stage()
                                    ))
                                    .ok()
                                });
                        (reason.clone(), log)
                    }
                    State::IndirectFailed { chain } | State::Blocked { chain } => {
                        (chain.join("; "), None)
                    }
                    _ => return None,
                };
                Some(Problem {
                    pkgbase: u.spec.pkgbase.clone(),
                    version: Some(u.spec.version.clone()),
                    arch: Some(u.spec.arch.to_string()),
                    state: u.state.kind(),
                    reason,
                    log,
                })
            })
            .collect();
        // Packages whose metadata could not be read have no build; they are blocked too.
        for s in &model.sources {
            for (path, scanned) in &s.packages {
                if let Err(e) = &scanned.result {
                    problems.push(Problem {
                        pkgbase: path.rsplit('/').next().unwrap_or(path).to_owned(),
                        version: None,
                        arch: None,
                        state: PackageState::Blocked,
                        reason: format!("{} in source {}: {e}", path, s.name).replace('\n', " "),
                        log: None,
                    });
                }
            }
        }
        MasterState {
            problems,
            violations: model
                .builders
                .iter()
                .flat_map(|b| {
                    b.violations
                        .iter()
                        .take(VIOLATIONS_SHOWN)
                        .map(|v| ViolationView {
                            builder: b.name.to_string(),
                            what: v.to_string(),
                        })
                })
                .collect(),
            builders: model
                .builders
                .iter()
                .map(|b| PeerView {
                    name: b.name.to_string(),
                    url: b.client.base_url().clone(),
                    status: b.liveness.to_wire(),
                    slots: b.state.as_ref().map(|s| s.slots),
                    quarantine: b.quarantine.as_ref().map(Quarantine::to_view),
                })
                .collect(),
            sources: model
                .sources
                .iter()
                .map(|s| SourceView {
                    name: s.name.clone(),
                    kind: s.kind.clone(),
                    revision: s.revision.clone(),
                    error: s.error.clone(),
                    evaluation: s.evaluation.as_ref().map(|p| EvaluationProgress {
                        done: p.done as u64,
                        total: p.total as u64,
                        failed: p.failed as u64,
                        jobs: p.jobs as u64,
                        elapsed_ms: p.elapsed.as_millis() as u64,
                        left_ms: p
                            .left()
                            .filter(|_| !p.finished())
                            .map(|d| d.as_millis() as u64),
                    }),
                })
                .collect(),
            ready,
            claims,
            results,
            counts: model.plan.counts(),
            max_lease_secs: self.config.builder_limits.max_lease.as_secs(),
            verification: self.verification_summary(),
        }
    }
}

/// The ready list is published only as far as the builders can use it: the highest-priority
/// packages, several times the builders' slots. A bulk build has thousands of packages ready at
/// once, and every builder reads the whole state at every change; `counts` still says how many
/// are ready in all.
fn shown(builders: &[super::model::BuilderSlot]) -> usize {
    let slots: usize = builders
        .iter()
        .map(|b| b.state.as_ref().map_or(1, |s| s.slots as usize))
        .sum();
    (READY_PER_SLOT * slots).max(READY_SHOWN_AT_LEAST)
}

impl Core {
    /// The ready-list entry for planned build `u`: its first build, or with `verify` a
    /// verification of it. `None` while its source tarball is not made.
    pub(super) fn ready_entry(
        &self,
        u: &crate::plan::Planned,
        verify: Option<VerifyRequest>,
    ) -> Option<ReadyPackage> {
        let model = &self.model;
        let base = &self.config.url;
        let primary = self.config.arch.first().map_or("x86_64", Arch::as_str);
        let tarball = model.tarballs.get(&model.tarball_key(&u.spec)?)?;
        // An `any` build installs its dependencies from the first architecture's
        // repository, as the planner resolved them.
        let repo_arch = if u.spec.arch.is_any() {
            primary
        } else {
            u.spec.arch.as_str()
        };
        Some(ReadyPackage {
            pkgbase: u.spec.pkgbase.clone(),
            version: u.spec.version.clone(),
            arch: u.spec.arch.to_string(),
            pkgnames: u.spec.pkgnames.clone(),
            priority: if verify.is_some() { 0 } else { u.priority },
            expected_ms: u.expected_ms,
            source: Download {
                url: base
                    .join(&format!(
                        "v1/sources/{}/{}",
                        u.spec.source, tarball.filename
                    ))
                    .expect("plain names join onto a base URL"),
                sha256: tarball.sha256.clone(),
            },
            repo: base
                .join(&format!("repo/build/{repo_arch}/"))
                .expect("plain names join onto a base URL"),
            repo_db: self.repos.db_name(crate::plan::binaries::RepoKind::Build),
            packager: Some(u.spec.makepkg_packager()),
            source_date_epoch: u.spec.changed_at,
            verify,
        })
    }
}

/// How many ready packages are published per builder slot, and at least.
const READY_PER_SLOT: usize = 4;
const READY_SHOWN_AT_LEAST: usize = 32;

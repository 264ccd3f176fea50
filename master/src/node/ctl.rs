//! What the master does for `quartersctl`: promote, retry, status, why (and, in `standing.rs`,
//! builder list, disable and enable).

use quarters_common::api::v1::ctl::{
    Answer, BuilderStatus, BuiltOn, Command, PastBuild, Promoted, ReadyHead, Reply, RepoPackage,
    SignatureStatus, SourceStatus, StateDetail, Status, WhyBuild,
};

use super::Core;
use crate::db::RepoEntry;
use crate::plan::State;
use crate::plan::binaries::RepoKind;
use crate::plan::promotion::{self, Refused};
use crate::quarantine::Quarantine;

impl Core {
    /// Carries out one request.
    pub(super) fn handle(&mut self, id: &str, command: &Command) -> Reply {
        let answer = match command {
            Command::Status => Answer::Status(self.status()),
            Command::Why { package } => self.why(package),
            Command::Retry { package } => self.retry(package),
            Command::Promote {
                packages,
                with_deps,
                force,
            } => self.promote(packages, *with_deps, force.as_deref()),
            Command::BuilderList => self.builder_list(),
            Command::BuilderDisable { builder, reason } => self.builder_disable(builder, reason),
            Command::BuilderEnable { builder } => self.builder_enable(builder),
        };
        Reply {
            id: id.to_owned(),
            answer,
        }
    }

    fn status(&self) -> Status {
        let model = &self.model;
        let sources = model
            .sources
            .iter()
            .map(|s| SourceStatus {
                name: s.name.clone(),
                kind: s.kind.to_string(),
                revision: s.revision.clone(),
                error: s.error.clone(),
            })
            .collect();
        let builders = model
            .builders
            .iter()
            .map(|b| BuilderStatus {
                name: b.name.to_string(),
                status: b.liveness.to_wire(),
                claims: b.state.as_ref().map_or(0, |s| s.claims.len() as u64),
                quarantine: b.quarantine.as_ref().map(Quarantine::to_view),
                violations: b.violations.len() as u64,
                first_violation: b.violations.first().map(ToString::to_string),
            })
            .collect();
        let ready = model
            .plan
            .ready
            .iter()
            .take(10)
            .map(|&i| {
                let u = &model.plan.units[i];
                ReadyHead {
                    pkgbase: u.spec.pkgbase.clone(),
                    version: u.spec.version.clone(),
                    arch: u.spec.arch.to_string(),
                    priority_ms: u.priority,
                }
            })
            .collect();
        Status {
            verification: self.verification_counts(),
            sources,
            builders,
            counts: model.plan.counts(),
            ready,
        }
    }

    fn why(&self, name: &str) -> Answer {
        let model = &self.model;
        let units = model.plan.find(name);
        if units.is_empty() {
            // A package whose metadata could not be read has no build, only an error.
            for s in &model.sources {
                for (path, scanned) in &s.packages {
                    if (path == name || path.rsplit('/').next() == Some(name))
                        && let Err(e) = &scanned.result
                    {
                        return Answer::Unreadable {
                            source: s.name.clone(),
                            path: path.clone(),
                            error: e.to_string(),
                        };
                    }
                }
            }
            return refused(format!("no package {name:?} in any source"));
        }
        let db = &self.db;
        let builds = units
            .into_iter()
            .map(|u| {
                let s = &u.spec;
                let detail = match &u.state {
                    State::Waiting => StateDetail::Waits {
                        waits: model.plan.explain_waits(u),
                    },
                    State::Claimed { builder } => StateDetail::Claimed {
                        builder: builder.clone(),
                    },
                    State::Failed { reason } => StateDetail::Failed {
                        reason: reason.clone(),
                    },
                    State::IndirectFailed { chain } | State::Blocked { chain } => {
                        StateDetail::Chain {
                            chain: chain.clone(),
                        }
                    }
                    State::Ready => StateDetail::Ready {
                        expected_ms: u.expected_ms,
                        priority_ms: u.priority,
                    },
                    State::Built | State::Live => StateDetail::Done,
                };
                let history = db.builds_of(&s.pkgbase, 5).unwrap_or_default();
                let packages = db
                    .repo_entries_of(&s.pkgbase)
                    .unwrap_or_default()
                    .iter()
                    .map(|e| provenance(e, &history))
                    .collect();
                WhyBuild {
                    pkgbase: s.pkgbase.clone(),
                    version: s.version.clone(),
                    arch: s.arch.to_string(),
                    state: u.state.kind(),
                    source: s.source.clone(),
                    path: s.path.clone(),
                    packager: s.packager.clone(),
                    pkgnames: s.pkgnames.clone(),
                    detail,
                    bootstrap: model.plan.explain_bootstrap(u),
                    packages,
                    history: history
                        .into_iter()
                        .map(|b| PastBuild {
                            build: b.build_id,
                            builder: b.builder,
                            version: b.version,
                            verdict: b.verdict.describe().to_owned(),
                            reason: b.reason,
                            warnings: b.warnings,
                        })
                        .collect(),
                    verification: matches!(u.state, State::Built | State::Live)
                        .then(|| self.verification_view(&s.key())),
                }
            })
            .collect();
        Answer::Why { builds }
    }

    fn retry(&mut self, name: &str) -> Answer {
        let pkgbase = {
            let model = &self.model;
            model
                .plan
                .find(name)
                .first()
                .map(|u| u.spec.pkgbase.clone())
        };
        let Some(pkgbase) = pkgbase else {
            return refused(format!("no package {name:?} in any source"));
        };
        match self.db.retry(&pkgbase) {
            Ok(0) => refused(format!("{pkgbase} has no failed or refused build to retry")),
            Ok(n) => {
                self.verdicts_changed(&pkgbase);
                Answer::Retried {
                    pkgbase,
                    cleared: n as u64,
                }
            }
            Err(e) => refused(format!("database: {e}")),
        }
    }

    fn promote(&mut self, names: &[String], with_deps: bool, force: Option<&str>) -> Answer {
        let entries = match self.db.repo_entries() {
            Ok(e) => e,
            Err(e) => return refused(format!("database: {e}")),
        };
        let request = promotion::Request {
            names,
            with_deps,
            build_root: &self.config.build_root,
        };
        let promotion = match promotion::closure(&entries, &request) {
            Ok(p) => p,
            Err(Refused::NotInBuild { name }) => {
                let state = self.model.plan.find(&name).first().map(|u| u.state.name());
                return refused(format!(
                    "{name} is not in the build repository{}",
                    state.map(|s| format!(" (it is {s})")).unwrap_or_default()
                ));
            }
            Err(refusal) => return refused(refusal.to_string()),
        };
        let to_live: Vec<RepoEntry> = promotion.entries.iter().map(|e| (*e).clone()).collect();
        // The gate: where the farm requires it, only what an independent build reproduced.
        let unreproduced = match self.unreproduced(&to_live) {
            Ok(u) => u,
            Err(e) => return refused(format!("database: {e}")),
        };
        let forced = match (unreproduced.is_empty(), force) {
            (true, _) => None,
            (false, Some(reason)) if !reason.trim().is_empty() => Some(reason.trim().to_owned()),
            (false, _) => {
                return refused(format!(
                    "the farm requires verification, and no independent build has reproduced {} yet (`quartersctl why` shows where each stands); `--force REASON` promotes anyway, with the reason recorded",
                    unreproduced.join(", ")
                ));
            }
        };
        if let Err(e) = self.db.promote(&to_live) {
            return refused(format!("database: {e}"));
        }
        if let Some(reason) = &forced {
            for name in &unreproduced {
                let _ = self.db.event(
                    "promoted-unreproduced",
                    name.split(' ').next().unwrap_or(name),
                    &format!("{name} promoted without an independent reproduction: {reason}"),
                );
            }
            tracing::warn!(
                "promoted without an independent reproduction ({reason}): {}",
                unreproduced.join(", ")
            );
        }
        // Written before the reply: the core settles between handling a request and answering.
        for e in &to_live {
            self.repo_changed(&RepoEntry {
                repo: RepoKind::Live,
                ..e.clone()
            });
        }
        Answer::Promoted {
            packages: to_live
                .iter()
                .map(|e| Promoted {
                    pkgname: e.pkgname.clone(),
                    version: e.version.clone(),
                    arch: e.arch.clone(),
                    dependency: !promotion.requested.contains(&e.pkgbase),
                    forced: forced.clone().filter(|_| {
                        unreproduced
                            .iter()
                            .any(|u| u.starts_with(&format!("{} {} ", e.pkgbase, e.version)))
                    }),
                })
                .collect(),
        }
    }
}

/// A refusal with its reason.
pub(super) fn refused(reason: impl Into<String>) -> Answer {
    Answer::Refused {
        reason: reason.into(),
    }
}

/// Where a package in a repository came from: who packaged it (its `.PKGINFO`, which the master
/// checked against the author of the last change), which builder built it, and whose key signed
/// it (its `%PGPSIG%`, which pacman checks).
fn provenance(entry: &RepoEntry, builds: &[crate::db::BuildRow]) -> RepoPackage {
    let field = |name: &str| crate::repo::package::desc_field(&entry.desc, name);
    let built_on = builds
        .iter()
        .find(|b| b.version == entry.version && b.verdict == crate::verdict::VerdictKind::Accepted)
        .map(|b| BuiltOn {
            builder: b.builder.clone(),
            build: b.build_id.clone(),
        });
    let signature = match field("PGPSIG").and_then(crate::signing::Signature::from_base64) {
        Some(signature) => match signature.issuer() {
            Some(key) => SignatureStatus::By {
                key: key.to_string(),
            },
            None => SignatureStatus::Unnamed,
        },
        None => SignatureStatus::Unsigned,
    };
    RepoPackage {
        pkgname: entry.pkgname.clone(),
        version: entry.version.clone(),
        repo: entry.repo.as_str().to_owned(),
        arch: entry.arch.clone(),
        filename: entry.filename.clone(),
        packager: field("PACKAGER").map(str::to_owned),
        built_on,
        signature,
    }
}

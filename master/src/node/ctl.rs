//! What the master does for `quartersctl`: promote, retry, status, why (and, in `standing.rs`,
//! builder list, disable and enable).

use std::fmt::Write as _;

use quarters_common::api::v1::ctl::{Command, Reply};

use super::Core;
use crate::db::RepoEntry;
use crate::plan::State;
use crate::plan::binaries::RepoKind;
use crate::plan::promotion::{self, Refused};

impl Core {
    /// Carries out one request.
    pub(super) fn handle(&mut self, id: &str, command: &Command) -> Reply {
        let (ok, text) = match command {
            Command::Status => (true, self.status()),
            Command::Why { package } => self.why(package),
            Command::Retry { package } => self.retry(package),
            Command::Promote {
                packages,
                with_deps,
            } => self.promote(packages, *with_deps),
            Command::BuilderList => self.builder_list(),
            Command::BuilderDisable { builder, reason } => self.builder_disable(builder, reason),
            Command::BuilderEnable { builder } => self.builder_enable(builder),
        };
        Reply {
            id: id.to_owned(),
            ok,
            text,
        }
    }

    fn status(&self) -> String {
        let model = &self.model;
        let mut out = String::new();
        for s in &model.sources {
            let _ = writeln!(
                out,
                "source {} ({}): revision {}{}",
                s.name,
                s.kind,
                s.revision.as_deref().unwrap_or("(not read yet)"),
                s.error
                    .as_ref()
                    .map(|e| format!(", last poll failed: {e}"))
                    .unwrap_or_default()
            );
        }
        for b in &model.builders {
            let status = match b.liveness.to_wire() {
                quarters_common::api::v1::PeerStatus::Up { .. } => "up".to_owned(),
                quarters_common::api::v1::PeerStatus::Unknown => "not seen yet".to_owned(),
                quarters_common::api::v1::PeerStatus::Down { error, .. } => {
                    format!("down: {error}")
                }
            };
            let claims = b.state.as_ref().map_or(0, |s| s.claims.len());
            let _ = writeln!(out, "builder {}: {status}, {claims} claims", b.name);
            if let Some(q) = &b.quarantine {
                let _ = writeln!(out, "  {q}");
            }
            if let Some(first) = b.violations.first() {
                let _ = writeln!(
                    out,
                    "  {} protocol violation(s) in its state, first: {first}",
                    b.violations.len()
                );
            }
        }
        let counts: Vec<String> = model
            .plan
            .counts()
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        let _ = writeln!(
            out,
            "packages: {}",
            if counts.is_empty() {
                "none".to_owned()
            } else {
                counts.join(", ")
            }
        );
        for &i in model.plan.ready.iter().take(10) {
            let u = &model.plan.units[i];
            let _ = writeln!(
                out,
                "  ready {} {} ({}), priority {} ms",
                u.spec.pkgbase, u.spec.version, u.spec.arch, u.priority
            );
        }
        out
    }

    fn why(&self, name: &str) -> (bool, String) {
        let model = &self.model;
        let units = model.plan.find(name);
        let mut out = String::new();
        if units.is_empty() {
            // A package whose metadata could not be read has no build, only an error.
            for s in &model.sources {
                for (path, scanned) in &s.packages {
                    if (path == name || path.rsplit('/').next() == Some(name))
                        && let Err(e) = &scanned.result
                    {
                        let _ = writeln!(
                            out,
                            "{path} in source {}: blocked: its metadata cannot be read",
                            s.name
                        );
                        let _ = writeln!(out, "  {e}");
                        return (true, out);
                    }
                }
            }
            return (false, format!("no package {name:?} in any source\n"));
        }
        let db = &self.db;
        for u in units {
            let s = &u.spec;
            let _ = writeln!(
                out,
                "{} {} ({}): {}",
                s.pkgbase,
                s.version,
                s.arch,
                u.state.name()
            );
            let _ = writeln!(
                out,
                "  from source {} at {}{}",
                s.source,
                s.path,
                s.packager
                    .as_ref()
                    .map(|p| format!(", last changed by {p}"))
                    .unwrap_or_default()
            );
            if s.pkgnames.len() > 1 || s.pkgnames[0] != s.pkgbase {
                let _ = writeln!(out, "  builds {}", s.pkgnames.join(", "));
            }
            match &u.state {
                State::Waiting => {
                    for line in model.plan.explain_waits(u) {
                        let _ = writeln!(out, "  {line}");
                    }
                }
                State::Claimed { builder } => {
                    let _ = writeln!(out, "  being built by {builder}");
                }
                State::Failed { reason } => {
                    let _ = writeln!(
                        out,
                        "  failed: {reason}\n  `quartersctl retry {}` puts it back in the ready list, its refusals forgotten",
                        s.pkgbase
                    );
                }
                State::IndirectFailed { chain } | State::Blocked { chain } => {
                    for (depth, link) in chain.iter().enumerate() {
                        let _ = writeln!(out, "  {}{link}", "  ".repeat(depth));
                    }
                }
                State::Ready => {
                    let _ = writeln!(
                        out,
                        "  expected to take {} ms; critical-path priority {} ms",
                        u.expected_ms, u.priority
                    );
                }
                State::Built | State::Live => {}
            }
            for line in model.plan.explain_bootstrap(u) {
                let _ = writeln!(out, "  {line}");
            }
            let builds = db.builds_of(&s.pkgbase, 5).unwrap_or_default();
            if let Ok(entries) = db.repo_entries_of(&s.pkgbase) {
                for e in entries {
                    let _ = writeln!(out, "  {}", provenance(&e, &builds));
                }
            }
            for b in builds {
                let _ = writeln!(
                    out,
                    "  build {} on {}: {} {}{}",
                    b.build_id,
                    b.builder,
                    b.version,
                    b.verdict.describe(),
                    b.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                );
                for warning in &b.warnings {
                    let _ = writeln!(out, "    warning: {warning}");
                }
            }
        }
        (true, out)
    }

    fn retry(&mut self, name: &str) -> (bool, String) {
        let pkgbase = {
            let model = &self.model;
            model
                .plan
                .find(name)
                .first()
                .map(|u| u.spec.pkgbase.clone())
        };
        let Some(pkgbase) = pkgbase else {
            return (false, format!("no package {name:?} in any source\n"));
        };
        let retried = self.db.retry(&pkgbase);
        match retried {
            Ok(0) => (
                false,
                format!("{pkgbase} has no failed or refused build to retry\n"),
            ),
            Ok(n) => {
                self.verdicts_changed(&pkgbase);
                (
                    true,
                    format!(
                        "{pkgbase}: {n} failed or refused build(s) cleared; it is ready again once its dependencies are\n"
                    ),
                )
            }
            Err(e) => (false, format!("database: {e}\n")),
        }
    }

    fn promote(&mut self, names: &[String], with_deps: bool) -> (bool, String) {
        let entries = match self.db.repo_entries() {
            Ok(e) => e,
            Err(e) => return (false, format!("database: {e}\n")),
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
                return (
                    false,
                    format!(
                        "{name} is not in the build repository{}\n",
                        state.map(|s| format!(" (it is {s})")).unwrap_or_default()
                    ),
                );
            }
            Err(refused) => return (false, format!("{refused}\n")),
        };
        let to_live: Vec<RepoEntry> = promotion.entries.iter().map(|e| (*e).clone()).collect();
        if let Err(e) = self.db.promote(&to_live) {
            return (false, format!("database: {e}\n"));
        }
        // Written before the reply: the core settles between handling a request and answering.
        for e in &to_live {
            self.repo_changed(&RepoEntry {
                repo: RepoKind::Live,
                ..e.clone()
            });
        }
        let mut text = String::from("promoted to the live repository:\n");
        for e in &to_live {
            let extra = if promotion.requested.contains(&e.pkgbase) {
                ""
            } else {
                " (dependency)"
            };
            let _ = writeln!(text, "  {} {} ({}){extra}", e.pkgname, e.version, e.arch);
        }
        (true, text)
    }
}

/// Where a package in a repository came from: who packaged it (its `.PKGINFO`, which the master
/// checked against the author of the last change), which builder built it, and whose key signed
/// it (its `%PGPSIG%`, which pacman checks).
fn provenance(entry: &RepoEntry, builds: &[crate::db::BuildRow]) -> String {
    let field = |name: &str| crate::repo::package::desc_field(&entry.desc, name);
    let packager = field("PACKAGER").unwrap_or("an unknown packager");
    let built = builds
        .iter()
        .find(|b| b.version == entry.version && b.verdict == crate::verdict::VerdictKind::Accepted)
        .map_or_else(
            || "built on a builder whose build is no longer listed".to_owned(),
            |b| format!("built on {} (build {})", b.builder, b.build_id),
        );
    let signed = match field("PGPSIG").and_then(crate::signing::Signature::from_base64) {
        Some(signature) => match signature.issuer() {
            Some(key) => format!("signed by the farm key {key}"),
            None => "signed, by a key the signature does not name".to_owned(),
        },
        None => "not signed".to_owned(),
    };
    format!(
        "{} {} in {} ({}): {}; packaged by {packager}; {built}; {signed}",
        entry.pkgname,
        entry.version,
        entry.repo.describe(),
        entry.arch,
        entry.filename
    )
}

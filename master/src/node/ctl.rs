//! What the master does for `quartersctl`: promote, retry, status, why (and, in `standing.rs`,
//! builder list, disable and enable).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use quarters_common::Arch;
use quarters_common::api::v1::ctl::{Command, Reply};

use super::Core;
use crate::db::RepoEntry;
use crate::plan::State;
use crate::plan::binaries::{Binaries, BinaryPackage, RepoKind};
use crate::plan::relation::{Requirement, vercmp};
use crate::repo::package::desc_section;

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
        let build: Vec<&RepoEntry> = entries
            .iter()
            .filter(|e| e.repo == RepoKind::Build)
            .collect();
        let live: Vec<&RepoEntry> = entries
            .iter()
            .filter(|e| e.repo == RepoKind::Live)
            .collect();
        let mut selected = BTreeSet::new();
        for name in names {
            match build
                .iter()
                .find(|e| &e.pkgbase == name || &e.pkgname == name)
            {
                Some(e) => {
                    selected.insert(e.pkgbase.clone());
                }
                None => {
                    let state = self.model.plan.find(name).first().map(|u| u.state.name());
                    return (
                        false,
                        format!(
                            "{name} is not in the build repository{}\n",
                            state.map(|s| format!(" (it is {s})")).unwrap_or_default()
                        ),
                    );
                }
            }
        }
        let requested = selected.clone();
        let promoting: Vec<&RepoEntry> = loop {
            let promoting: Vec<&RepoEntry> = build
                .iter()
                .copied()
                .filter(|e| selected.contains(&e.pkgbase))
                .collect();
            for e in &promoting {
                if let Some(l) = live
                    .iter()
                    .find(|l| l.pkgname == e.pkgname && l.arch == e.arch)
                    && vercmp(&l.version, &e.version).is_gt()
                {
                    return (
                        false,
                        format!(
                            "{} {} is older than the live {}; promoting it would downgrade\n",
                            e.pkgname, e.version, l.version
                        ),
                    );
                }
            }
            let after = Binaries::new(
                live.iter()
                    .filter(|l| {
                        !promoting
                            .iter()
                            .any(|p| p.pkgname == l.pkgname && p.arch == l.arch)
                    })
                    .chain(promoting.iter())
                    .filter_map(|e| binary(e))
                    .collect(),
            );
            let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut unavailable = Vec::new();
            for e in &promoting {
                for dep in desc_section(&e.desc, "%DEPENDS%") {
                    let req = Requirement::parse(dep);
                    if self.config.build_root.contains(req.name.as_ref())
                        || after.satisfies(&req, &e.arch)
                    {
                        continue;
                    }
                    // Whichever repository it is in, a package that runs on this one's
                    // architecture (its own, or `any`) may be what it needs.
                    let provider = build.iter().find(|b| {
                        binary(b).is_some_and(|p| Binaries::new(vec![p]).satisfies(&req, &e.arch))
                    });
                    match provider {
                        Some(p) => missing
                            .entry(p.pkgbase.clone())
                            .or_default()
                            .push(format!("{dep} (needed by {})", e.pkgname)),
                        None => unavailable.push(format!(
                            "{} needs {dep}, which neither repository has",
                            e.pkgname
                        )),
                    }
                }
            }
            if !unavailable.is_empty() {
                return (
                    false,
                    format!("cannot promote:\n  {}\n", unavailable.join("\n  ")),
                );
            }
            if missing.is_empty() {
                break promoting;
            }
            if !with_deps {
                let mut text = String::from(
                    "refused: these dependencies are not live and not being promoted:\n",
                );
                for (pkgbase, why) in &missing {
                    let _ = writeln!(text, "  {pkgbase}: {}", why.join(", "));
                }
                let _ = writeln!(text, "promote them too, or add --with-deps");
                return (false, text);
            }
            selected.extend(missing.into_keys());
        };
        let to_live: Vec<RepoEntry> = promoting.iter().map(|e| (*e).clone()).collect();
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
            let extra = if requested.contains(&e.pkgbase) {
                ""
            } else {
                " (dependency)"
            };
            let _ = writeln!(text, "  {} {} ({}){extra}", e.pkgname, e.version, e.arch);
        }
        (true, text)
    }
}

/// A repository entry as the planner's binaries; `None` for an architecture that does not
/// parse, which no accepted package has (the pull checked it).
fn binary(e: &RepoEntry) -> Option<BinaryPackage> {
    Some(BinaryPackage {
        repo: RepoKind::Live,
        arch: Arch::parse(&e.pkg_arch).ok()?,
        pkgname: e.pkgname.clone(),
        pkgbase: e.pkgbase.clone(),
        version: e.version.clone(),
        provides: e.provides.clone(),
    })
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

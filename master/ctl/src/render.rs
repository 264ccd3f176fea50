//! The master's answers to `quartersctl`, in words: the master replies with data
//! (`api::v1::ctl::Answer`), and only the client decides how a person reads it.

use std::fmt::Write as _;

use quarters_common::api::v1::PeerStatus;
use quarters_common::api::v1::QuarantineView;
use quarters_common::api::v1::ctl::{
    Answer, BuilderStatus, RepoPackage, SignatureStatus, StateDetail, Status, VerificationStatus,
    VerificationView, WhyBuild,
};

/// `answer` as `quartersctl` prints it, one line per fact, each line ending in a newline.
pub fn render(answer: &Answer) -> String {
    let mut out = String::new();
    match answer {
        Answer::Refused { reason } => line(&mut out, reason),
        Answer::Status(status) => render_status(&mut out, status),
        Answer::Unreadable {
            source,
            path,
            error,
        } => {
            line(
                &mut out,
                &format!("{path} in source {source}: blocked: its metadata cannot be read"),
            );
            line(&mut out, &format!("  {error}"));
        }
        Answer::Why { builds } => {
            for build in builds {
                render_why(&mut out, build);
            }
        }
        Answer::Retried { pkgbase, cleared } => line(
            &mut out,
            &format!(
                "{pkgbase}: {cleared} failed or refused build(s) cleared; it is ready again once its dependencies are"
            ),
        ),
        Answer::Promoted { packages } => {
            line(&mut out, "promoted to the live repository:");
            for p in packages {
                let mut extra = if p.dependency {
                    " (dependency)".to_owned()
                } else {
                    String::new()
                };
                if let Some(reason) = &p.forced {
                    extra += &format!(" (not reproduced; forced: {reason})");
                }
                line(
                    &mut out,
                    &format!("  {} {} ({}){extra}", p.pkgname, p.version, p.arch),
                );
            }
        }
        Answer::Builders { builders } => {
            for b in builders {
                let standing = b
                    .quarantine
                    .as_ref()
                    .map_or_else(|| "validated".to_owned(), quarantine);
                line(&mut out, &format!("{} {}: {standing}", b.name, b.url));
            }
        }
        Answer::Disabled {
            builder,
            quarantine: q,
        } => line(&mut out, &format!("{builder}: {}", quarantine(q))),
        Answer::Enabled {
            builder,
            was_quarantined,
        } => line(
            &mut out,
            &if *was_quarantined {
                format!("{builder}: validated again")
            } else {
                format!("{builder}: was not quarantined")
            },
        ),
    }
    out
}

/// `text` as one or more lines; a text that ends without a newline gets one.
fn line(out: &mut String, text: &str) {
    out.push_str(text);
    if !text.ends_with('\n') {
        out.push('\n');
    }
}

fn quarantine(q: &QuarantineView) -> String {
    format!(
        "quarantined by the {} since {}: {}",
        q.by.as_str(),
        q.since
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        q.reason
    )
}

fn render_status(out: &mut String, status: &Status) {
    for s in &status.sources {
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
    for b in &status.builders {
        render_builder(out, b);
    }
    let counts: Vec<String> = status
        .counts
        .iter()
        .map(|(state, n)| format!("{n} {}", state.as_str()))
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
    if let Some(v) = &status.verification {
        let _ = writeln!(
            out,
            "verification ({}): {} reproduced, {} differ, {} waiting",
            v.mode.as_str(),
            v.reproduced,
            v.differs,
            v.pending
        );
    }
    for r in &status.ready {
        let _ = writeln!(
            out,
            "  ready {} {} ({}), priority {} ms",
            r.pkgbase, r.version, r.arch, r.priority_ms
        );
    }
}

fn render_builder(out: &mut String, b: &BuilderStatus) {
    let status = match &b.status {
        PeerStatus::Up { .. } => "up".to_owned(),
        PeerStatus::Unknown => "not seen yet".to_owned(),
        PeerStatus::Down { error, .. } => format!("down: {error}"),
    };
    let _ = writeln!(out, "builder {}: {status}, {} claims", b.name, b.claims);
    if let Some(q) = &b.quarantine {
        let _ = writeln!(out, "  {}", quarantine(q));
    }
    if let Some(first) = &b.first_violation {
        let _ = writeln!(
            out,
            "  {} protocol violation(s) in its state, first: {first}",
            b.violations
        );
    }
}

fn render_why(out: &mut String, b: &WhyBuild) {
    let _ = writeln!(
        out,
        "{} {} ({}): {}",
        b.pkgbase,
        b.version,
        b.arch,
        b.state.as_str()
    );
    let _ = writeln!(
        out,
        "  from source {} at {}{}",
        b.source,
        b.path,
        b.packager
            .as_ref()
            .map(|p| format!(", last changed by {p}"))
            .unwrap_or_default()
    );
    if b.pkgnames.len() > 1 || b.pkgnames.first() != Some(&b.pkgbase) {
        let _ = writeln!(out, "  builds {}", b.pkgnames.join(", "));
    }
    match &b.detail {
        StateDetail::Waits { waits } => {
            for w in waits {
                let _ = writeln!(out, "  {w}");
            }
        }
        StateDetail::Claimed { builder } => {
            let _ = writeln!(out, "  being built by {builder}");
        }
        StateDetail::Failed { reason } => {
            let _ = writeln!(
                out,
                "  failed: {reason}\n  `quartersctl retry {}` puts it back in the ready list, its refusals forgotten",
                b.pkgbase
            );
        }
        StateDetail::Chain { chain } => {
            for (depth, link) in chain.iter().enumerate() {
                let _ = writeln!(out, "  {}{link}", "  ".repeat(depth));
            }
        }
        StateDetail::Ready {
            expected_ms,
            priority_ms,
        } => {
            let _ = writeln!(
                out,
                "  expected to take {expected_ms} ms; critical-path priority {priority_ms} ms"
            );
        }
        StateDetail::Done => {}
    }
    for line in &b.bootstrap {
        let _ = writeln!(out, "  {line}");
    }
    for p in &b.packages {
        let _ = writeln!(out, "  {}", provenance(p));
    }
    if let Some(v) = &b.verification {
        render_verification(out, v);
    }
    for h in &b.history {
        let _ = writeln!(
            out,
            "  build {} on {}: {} {}{}",
            h.build,
            h.builder,
            h.version,
            h.verdict,
            h.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        for warning in &h.warnings {
            let _ = writeln!(out, "    warning: {warning}");
        }
    }
}

/// The verification lines of `why`: where it stands, then each verification build.
fn render_verification(out: &mut String, v: &VerificationView) {
    let reproduced = v
        .builds
        .iter()
        .filter(|b| b.verdict == VerificationStatus::Reproduced)
        .count();
    let status = match v.status {
        VerificationStatus::Pending if reproduced > 0 => format!(
            "pending: {reproduced} of {} independent reproductions",
            v.reproductions_needed
        ),
        VerificationStatus::Pending => format!(
            "pending: waiting for a builder other than {}",
            v.accepted_from
                .as_deref()
                .unwrap_or("the one that built it")
        ),
        VerificationStatus::NotRecorded => {
            "none: accepted before the master recorded what it accepted".to_owned()
        }
        VerificationStatus::Differs if v.deciding => {
            "DIFFERS from an independent build; another builder is asked to decide which is the odd one".to_owned()
        }
        VerificationStatus::Differs => "DIFFERS from an independent build".to_owned(),
        other => other.as_str().to_owned(),
    };
    let _ = writeln!(out, "  verification: {status}");
    for b in &v.builds {
        // Two templates are the first thing to look at when two builds differ.
        let template = match (&b.template, &v.accepted_template) {
            (Some(ours), Some(theirs)) if ours != theirs => format!(
                " (from another template: {}, the accepted build's {})",
                short(ours),
                short(theirs)
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "    {} build {}: {}{template}{}",
            b.builder,
            b.build,
            b.verdict.as_str(),
            b.detail
                .as_ref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
    }
}

/// The first twelve characters of a digest, as a person compares them.
fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// Where a package in a repository came from: who packaged it, which builder built it, and
/// whose key signed it.
fn provenance(p: &RepoPackage) -> String {
    let packager = p.packager.as_deref().unwrap_or("an unknown packager");
    let built = p.built_on.as_ref().map_or_else(
        || "built on a builder whose build is no longer listed".to_owned(),
        |b| format!("built on {} (build {})", b.builder, b.build),
    );
    let signed = match &p.signature {
        SignatureStatus::By { key } => format!("signed by the farm key {key}"),
        SignatureStatus::Unnamed => "signed, by a key the signature does not name".to_owned(),
        SignatureStatus::Unsigned => "not signed".to_owned(),
    };
    format!(
        "{} {} in the {} repository ({}): {}; packaged by {packager}; {built}; {signed}",
        p.pkgname, p.version, p.repo, p.arch, p.filename
    )
}

#[cfg(test)]
mod tests {
    use quarters_common::api::v1::ctl::{BuiltOn, PastBuild, Promoted};

    use super::*;

    #[test]
    fn a_promotion_names_what_came_along() {
        let answer = Answer::Promoted {
            packages: vec![
                Promoted {
                    pkgname: "hello".into(),
                    version: "1.0-1".into(),
                    arch: "x86_64".into(),
                    dependency: false,
                    forced: None,
                },
                Promoted {
                    pkgname: "libhello".into(),
                    version: "1.0-1".into(),
                    arch: "x86_64".into(),
                    dependency: true,
                    forced: Some("security fix, builder-2 down".into()),
                },
            ],
        };
        assert_eq!(
            render(&answer),
            "promoted to the live repository:\n  hello 1.0-1 (x86_64)\n  libhello 1.0-1 (x86_64) (dependency) (not reproduced; forced: security fix, builder-2 down)\n"
        );
    }

    #[test]
    fn why_explains_state_provenance_and_history() {
        let answer = Answer::Why {
            builds: vec![WhyBuild {
                pkgbase: "hello".into(),
                version: "1.0-1".into(),
                arch: "x86_64".into(),
                state: quarters_common::api::v1::PackageState::Built,
                source: "main".into(),
                path: "hello".into(),
                packager: Some("A <a@example.org>".into()),
                pkgnames: vec!["hello".into()],
                detail: StateDetail::Done,
                bootstrap: vec![],
                packages: vec![RepoPackage {
                    pkgname: "hello".into(),
                    version: "1.0-1".into(),
                    repo: "build".into(),
                    arch: "x86_64".into(),
                    filename: "hello-1.0-1-x86_64.pkg.tar.zst".into(),
                    packager: Some("A <a@example.org>".into()),
                    built_on: Some(BuiltOn {
                        builder: "builder-1".into(),
                        build: "b1".into(),
                    }),
                    signature: SignatureStatus::By { key: "ABCD".into() },
                }],
                history: vec![PastBuild {
                    build: "b1".into(),
                    builder: "builder-1".into(),
                    version: "1.0-1".into(),
                    verdict: "accepted".into(),
                    reason: None,
                    warnings: vec!["odd".into()],
                }],
                verification: Some(VerificationView {
                    status: VerificationStatus::Differs,
                    deciding: false,
                    accepted_from: Some("builder-1".into()),
                    accepted_template: Some("3f2a1b2c3d4e".repeat(5)),
                    reproductions_needed: 1,
                    builds: vec![quarters_common::api::v1::ctl::VerifyBuild {
                        builder: "builder-2".into(),
                        build: "b7".into(),
                        verdict: VerificationStatus::Differs,
                        detail: Some("hello-1.0-1-x86_64.pkg.tar.zst: members differ: usr/bin/hello (content)".into()),
                        template: Some("9bc1d2e3f4a5".repeat(5)),
                    }],
                }),
            }],
        };
        let text = render(&answer);
        for expected in [
            "hello 1.0-1 (x86_64): built\n",
            "  from source main at hello, last changed by A <a@example.org>\n",
            "in the build repository (x86_64): hello-1.0-1-x86_64.pkg.tar.zst; packaged by A <a@example.org>; built on builder-1 (build b1); signed by the farm key ABCD\n",
            "  build b1 on builder-1: 1.0-1 accepted\n    warning: odd\n",
            "  verification: DIFFERS from an independent build\n    builder-2 build b7: differs (from another template: 9bc1d2e3f4a5, the accepted build's 3f2a1b2c3d4e): hello-1.0-1-x86_64.pkg.tar.zst: members differ: usr/bin/hello (content)\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
    }

    #[test]
    fn a_refusal_is_its_reason_on_a_line() {
        let answer = Answer::Refused {
            reason: "no package \"x\" in any source".into(),
        };
        assert_eq!(render(&answer), "no package \"x\" in any source\n");
    }
}

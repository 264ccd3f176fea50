//! A build the master refuses is never built forever: a package whose `.SRCINFO` is stale (its
//! PKGBUILD makes another version than it says) is refused, then failed after `max_refusals`
//! refusals with the reason, shown by `why` with every refused build, and `retry` starts it
//! afresh.

use quarters_common::api::v1::{Build, BuildOutcome, MasterState, Verdict};
use quarters_tests::makepkg::{self, recipe};
use quarters_tests::master::{farm_pki, master_with_test_builder};
use quarters_tests::testbuilder::finished_build;

fn build(id: &str) -> Build {
    finished_build(id, "stale", "1.0-1", BuildOutcome::Succeeded)
}

fn problem<'a>(state: &'a MasterState, pkgbase: &str) -> Option<&'a str> {
    state
        .problems
        .iter()
        .find(|p| p.pkgbase == pkgbase)
        .map(|p| p.reason.as_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_refused_twice_fails_with_the_reason_until_retried() {
    let dir = tempfile::tempdir().unwrap();
    farm_pki(dir.path());
    let packages = dir.path().join("packages");
    let arch = std::env::consts::ARCH;
    // The PKGBUILD was bumped to pkgrel 2; its .SRCINFO was not regenerated.
    let mut stale = recipe("stale", "1.0-1", arch, &[], ":");
    stale.pkgbuild = stale.pkgbuild.replace("pkgrel=1", "pkgrel=2");
    makepkg::write_tree(&packages, std::slice::from_ref(&stale));
    makepkg::git_commit_all(&packages, "import");
    let (master, builder) =
        master_with_test_builder(dir.path(), "[builds]\nmax_refusals = 2\n").await;
    master
        .wait_for("stale ready", |s| {
            s.ready.iter().any(|r| r.pkgbase == "stale")
        })
        .await;
    let package = makepkg::build(&stale, &dir.path().join("built"));

    // The first refusal leaves the package ready: one refusal may be a fluke.
    let mut b1 = build("b1");
    b1.artifacts = vec![builder.artifact("b1", &package)];
    builder.show(b1);
    let state = master
        .wait_for("b1 judged and stale ready again", |s| {
            s.results.iter().any(|r| r.build == "b1")
                && s.ready.iter().any(|r| r.pkgbase == "stale")
        })
        .await;
    let result = state.results.iter().find(|r| r.build == "b1").unwrap();
    assert_eq!(result.verdict, Verdict::Rejected);
    let reason = result.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains(r#"names version "1.0-2", but "1.0-1" was claimed"#),
        "{reason}"
    );
    assert!(state.ready.iter().any(|r| r.pkgbase == "stale"));

    // The second makes it failed, with the refusal as its reason, and off the ready list.
    let mut b2 = build("b2");
    b2.artifacts = vec![builder.artifact("b2", &package)];
    builder.show(b2);
    let state = master
        .wait_for("stale failed", |s| problem(s, "stale").is_some())
        .await;
    let reason = problem(&state, "stale").unwrap();
    assert!(
        reason.contains("refused 2 times, last:") && reason.contains("names version \"1.0-2\""),
        "{reason}"
    );
    assert!(!state.ready.iter().any(|r| r.pkgbase == "stale"));
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Failed),
        Some(&1),
        "{:?}",
        state.counts
    );

    let ctl = |args: &[&str]| quarters_tests::quartersctl(&master.config, args);
    let (ok, why) = ctl(&["why", "stale"]);
    assert!(ok, "{why}");
    quarters_tests::assert_contains(
        &why,
        &[
            "stale 1.0-1",
            "failed: refused 2 times",
            "build b1 on builder-1: 1.0-1 refused (the package's fault)",
            "build b2 on builder-1: 1.0-1 refused (the package's fault)",
        ],
    );

    // Retried, it is ready again: its refusals are forgotten.
    let (ok, text) = ctl(&["retry", "stale"]);
    assert!(ok, "{text}");
    master
        .wait_for("stale ready again", |s| {
            s.ready.iter().any(|r| r.pkgbase == "stale") && problem(s, "stale").is_none()
        })
        .await;
    builder.stop();
}

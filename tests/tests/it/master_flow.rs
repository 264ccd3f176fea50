//! The master alone, with a test builder: it plans from a real git source, publishes the ready
//! list with source tarballs, pulls and verifies real makepkg packages into the build
//! repository, rejects tampered and mislabelled ones, records failures with their logs, and a
//! stock pacman installs from the result.

use quarters_common::api::v1::{Build, BuildOutcome, MasterState, Verdict};
use quarters_tests::makepkg::{self, Recipe, recipe};
use quarters_tests::master::{farm_pki, master_with_test_builder};
use quarters_tests::pacman::PacmanRoot;
use quarters_tests::testbuilder::finished_build;
use sha2::{Digest, Sha256};

fn recipes() -> Vec<Recipe> {
    let arch = std::env::consts::ARCH;
    let mut recipes = makepkg::libhello_and_hello();
    recipes.extend([
        recipe("fails", "1.0-1", arch, &[], "false"),
        recipe("after-fails", "1.0-1", arch, &["fails"], ":"),
        recipe("needs-ghost", "1.0-1", arch, &["ghost"], ":"),
        recipe("cyc-a", "1.0-1", arch, &["cyc-b"], ":"),
        recipe("cyc-b", "1.0-1", arch, &["cyc-a"], ":"),
    ]);
    recipes
}

fn build(id: &str, pkgbase: &str, outcome: BuildOutcome) -> Build {
    finished_build(id, pkgbase, "1.0-1", outcome)
}

fn verdict(state: &MasterState, id: &str) -> Option<(Verdict, String)> {
    state
        .results
        .iter()
        .find(|r| r.build == id)
        .map(|r| (r.verdict, r.reason.clone().unwrap_or_default()))
}

fn ready(state: &MasterState) -> Vec<&str> {
    state.ready.iter().map(|r| r.pkgbase.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_master_plans_pulls_verifies_and_serves_a_repository_pacman_installs_from() {
    let dir = tempfile::tempdir().unwrap();
    let ca = farm_pki(dir.path());
    let packages = dir.path().join("packages");
    let recipes = recipes();
    makepkg::write_tree(&packages, &recipes);
    makepkg::git_commit_all(&packages, "import");
    let (master, builder) = master_with_test_builder(dir.path(), "").await;

    // Planning: what can be built now, what waits, what can never build.
    let state = master
        .wait_for("libhello and fails ready", |s| {
            let r = ready(s);
            r.contains(&"libhello") && r.contains(&"fails")
        })
        .await;
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Blocked),
        Some(&3),
        "{:?}",
        state.counts
    );
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Waiting),
        Some(&2),
        "{:?}",
        state.counts
    );
    assert!(state.builders[0].status.is_up());
    let lib = state
        .ready
        .iter()
        .find(|r| r.pkgbase == "libhello")
        .unwrap();
    assert!(
        lib.priority > lib.expected_ms,
        "hello waits on libhello, so its chain is longer"
    );

    // The source tarball is where the ready list says, with the sha256 it says.
    let tarball = master
        .client
        .get_bytes(lib.source.url.path(), 1 << 20)
        .await
        .unwrap();
    let sha: String = Sha256::digest(&tarball)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha, lib.source.sha256);

    // A good build of libhello enters the build repository; hello becomes ready.
    let out = dir.path().join("built");
    let libhello_pkg = makepkg::build(&recipes[0], &out);
    let hello_pkg = makepkg::build(&recipes[1], &out);
    let mut b1 = build("b1", "libhello", BuildOutcome::Succeeded);
    b1.artifacts = vec![builder.artifact("b1", &libhello_pkg)];
    builder.show(b1);
    let state = master
        .wait_for("b1 accepted and hello ready", |s| {
            verdict(s, "b1").is_some() && ready(s).contains(&"hello")
        })
        .await;
    assert_eq!(verdict(&state, "b1").unwrap().0, Verdict::Accepted);

    // A tampered artifact is rejected and stays out of the repository.
    let mut b2 = build("b2", "hello", BuildOutcome::Succeeded);
    let mut tampered = builder.artifact("b2", &hello_pkg);
    tampered.sha256 = "f".repeat(64);
    b2.artifacts = vec![tampered];
    builder.show(b2);
    // One build of a package at a time, as a builder has them: b3's claim replaces b2's.
    master
        .wait_for("b2 judged", |s| verdict(s, "b2").is_some())
        .await;
    // A package whose .PKGINFO names another package is rejected too.
    let mut b3 = build("b3", "hello", BuildOutcome::Succeeded);
    let disguised = out.join("disguise").join(hello_pkg.file_name().unwrap());
    std::fs::create_dir_all(disguised.parent().unwrap()).unwrap();
    std::fs::copy(&libhello_pkg, &disguised).unwrap();
    b3.artifacts = vec![builder.artifact("b3", &disguised)];
    builder.show(b3);
    let state = master
        .wait_for("b2 and b3 judged, hello ready again", |s| {
            verdict(s, "b2").is_some() && verdict(s, "b3").is_some() && ready(s).contains(&"hello")
        })
        .await;
    let (v2, why2) = verdict(&state, "b2").unwrap();
    assert_eq!(v2, Verdict::Rejected);
    assert!(why2.contains("does not match the announced"), "{why2}");
    let (v3, why3) = verdict(&state, "b3").unwrap();
    assert_eq!(v3, Verdict::Rejected);
    assert!(
        why3.contains("names pkgbase \"libhello\", but \"hello\" was claimed"),
        "{why3}"
    );
    assert!(
        ready(&state).contains(&"hello"),
        "hello still needs a good build"
    );

    // The good build of hello is accepted.
    let mut b4 = build("b4", "hello", BuildOutcome::Succeeded);
    b4.artifacts = vec![builder.artifact("b4", &hello_pkg)];
    builder.show(b4);
    let state = master
        .wait_for("b4 accepted", |s| verdict(s, "b4").is_some())
        .await;
    assert_eq!(verdict(&state, "b4").unwrap().0, Verdict::Accepted);

    // A failed build: its log is kept and served, its dependent is indirect-failed.
    let mut b5 = build(
        "b5",
        "fails",
        BuildOutcome::Failed {
            stage: "build".into(),
            reason: "exit status 1".into(),
        },
    );
    builder.log(
        "b5",
        "build",
        "==> ERROR: A failure occurred in package().\n",
    );
    b5.logs = vec!["build".into()];
    builder.show(b5);
    let state = master
        .wait_for("fails failed", |s| {
            s.counts
                .get(&quarters_common::api::v1::PackageState::Failed)
                == Some(&1)
        })
        .await;
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::IndirectFailed),
        Some(&1),
        "{:?}",
        state.counts
    );
    let log = master
        .client
        .get_bytes("/v1/logs/builder-1/b5/build", 1 << 20)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&log).contains("A failure occurred"));

    // A stock pacman, trusting the farm CA, installs hello and its library from the build
    // repository, and the program runs.
    let root = PacmanRoot::new(
        &ca.join("ca.pem"),
        &[("quarters-build", format!("{}repo/build/$arch", master.url))],
    );
    root.install(&["hello"]);
    let out = std::process::Command::new(root.root.join("usr/bin/hello"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from libhello 1.0\n"
    );

    // Only the accepted packages are in the repository.
    let out = root.pacman(&["-Sl", "quarters-build"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(names, ["hello", "libhello"], "{listing}");

    // quartersctl, through the master's spool.
    let ctl = |args: &[&str]| quarters_tests::quartersctl(&master.config, args);
    let (ok, text) = ctl(&["promote", "hello"]);
    assert!(
        !ok,
        "promoting without the library must be refused:\n{text}"
    );
    assert!(
        text.contains("libhello: libhello (needed by hello)") && text.contains("--with-deps"),
        "{text}"
    );
    let (ok, text) = ctl(&["promote", "hello", "--with-deps"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("hello 1.0-1")
            && text.contains("libhello 1.0-1")
            && text.contains("(dependency)"),
        "{text}"
    );
    let state = master
        .wait_for("hello live", |s| {
            s.counts.get(&quarters_common::api::v1::PackageState::Live) == Some(&2)
        })
        .await;
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Built),
        None,
        "{:?}",
        state.counts
    );
    let live = PacmanRoot::new(
        &ca.join("ca.pem"),
        &[("quarters", format!("{}repo/live/$arch", master.url))],
    );
    live.install(&["hello"]);
    let out = std::process::Command::new(live.root.join("usr/bin/hello"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from libhello 1.0\n"
    );

    let (ok, text) = ctl(&["promote", "cyc-a"]);
    assert!(
        !ok && text.contains("cyc-a is not in the build repository (it is blocked)"),
        "{text}"
    );
    let (ok, text) = ctl(&["why", "cyc-b"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("cyc-b 1.0-1")
            && text.contains("blocked")
            && text.contains("dependency cycle: cyc-a, cyc-b"),
        "{text}"
    );
    let (_, text) = ctl(&["why", "needs-ghost"]);
    assert!(
        text.contains("needs ghost, which nothing provides"),
        "{text}"
    );
    let (_, text) = ctl(&["why", "after-fails"]);
    assert!(
        text.contains("indirect-failed") && text.contains("fails failed: build: exit status 1"),
        "{text}"
    );
    let (ok, text) = ctl(&["status"]);
    assert!(
        ok && text.contains("builder builder-1: up") && text.contains("source main (git)"),
        "{text}"
    );

    // "I fixed it, try again": the failed package is ready again, the farm never stopped.
    let (ok, text) = ctl(&["retry", "fails"]);
    assert!(ok, "{text}");
    master
        .wait_for("fails ready again", |s| ready(s).contains(&"fails"))
        .await;
    let (ok, text) = ctl(&["retry", "libhello"]);
    assert!(!ok && text.contains("no failed or refused build"), "{text}");
    builder.stop();
}

/// A library update and the rebuild of its dependent in one commit: the rebuild waits for the
/// new library even though the old one is in the build repository, and `why` says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_waits_for_the_new_library_not_the_one_it_replaces() {
    let dir = tempfile::tempdir().unwrap();
    farm_pki(dir.path());
    let packages = dir.path().join("packages");
    let arch = std::env::consts::ARCH;
    let liba = |version: &str| recipe("liba", version, arch, &[], ":");
    let app = |version: &str| recipe("app", version, arch, &["liba"], ":");
    makepkg::write_tree(&packages, &[liba("1.0-1")]);
    makepkg::git_commit_all(&packages, "liba 1.0");
    let (master, builder) = master_with_test_builder(dir.path(), "").await;
    master
        .wait_for("liba ready", |s| ready(s).contains(&"liba"))
        .await;
    let old = makepkg::build(&liba("1.0-1"), &dir.path().join("built"));
    builder.show(builder.succeeded("b1", "liba", "1.0-1", &old));
    master
        .wait_for("liba 1.0-1 built", |s| {
            s.counts.get(&quarters_common::api::v1::PackageState::Built) == Some(&1)
        })
        .await;

    // One commit: the new library and the rebuild against it.
    makepkg::write_tree(&packages, &[liba("2.0-1"), app("1.0-2")]);
    makepkg::git_commit_all(&packages, "liba 2.0, and app rebuilt against it");
    let state = master
        .wait_for("liba 2.0-1 ready", |s| {
            s.ready
                .iter()
                .any(|r| r.pkgbase == "liba" && r.version == "2.0-1")
        })
        .await;
    assert_eq!(
        ready(&state),
        ["liba"],
        "app must not build against liba 1.0-1"
    );
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Waiting),
        Some(&1),
        "{:?}",
        state.counts
    );
    let (ok, why) = quarters_tests::quartersctl(&master.config, &["why", "app"]);
    assert!(ok, "{why}");
    quarters_tests::assert_contains(
        &why,
        &[
            "waits for liba 2.0-1 (for liba), which is ready to be built; liba 1.0-1 is in the build repository, but the sources replace it",
        ],
    );
}

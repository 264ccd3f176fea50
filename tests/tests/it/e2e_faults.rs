//! Faults, end to end, on a real farm over the examples from git: a builder killed in the middle
//! of a build, the master killed in the middle of the run, and a commit while the farm runs.

use std::path::Path;
use std::time::Duration;

use quarters_common::api::v1::ClaimPhase;
use quarters_master::db::{Db, VerdictKind};
use quarters_tests::makepkg::git_commit_all;
use quarters_tests::{start_farm_in, wait_for_farm};

use crate::e2e::{
    BUILDABLE, Kind, assert_built_exactly_once, example_source, install_and_run_hello, quartersctl,
    real_farm_config, wait_until_done,
};

/// Makes an example's build take `seconds` longer.
fn slow_down(packages: &Path, pkg: &str, seconds: u32) {
    let pkgbuild = packages.join(pkg).join("PKGBUILD");
    let text = std::fs::read_to_string(&pkgbuild).unwrap();
    std::fs::write(
        &pkgbuild,
        text.replace("build() {\n", &format!("build() {{\n  sleep {seconds}\n")),
    )
    .unwrap();
    git_commit_all(packages, &format!("{pkg}: slower"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_builder_killed_mid_build_loses_its_package_to_another_after_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let source = example_source(&Kind::Git, dir.path());
    slow_down(&dir.path().join("packages"), "libhello", 10);
    let (master, builder) = real_farm_config(&source, 5);
    let mut farm = start_farm_in(dir.path(), 3, &master, &builder).await;
    let state = wait_for_farm(
        &farm,
        "libhello being built",
        Duration::from_secs(120),
        |s| {
            s.claims
                .iter()
                .any(|c| c.pkgbase == "libhello" && c.phase == ClaimPhase::Committed)
        },
    )
    .await;
    let victim = state
        .claims
        .iter()
        .find(|c| c.pkgbase == "libhello")
        .unwrap()
        .builder
        .clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    farm.builders
        .iter_mut()
        .find(|b| b.name.as_str() == victim)
        .unwrap()
        .kill()
        .await
        .unwrap();

    let state = wait_until_done(&farm).await;
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Built),
        Some(&(BUILDABLE.len() as u64)),
        "{state:#?}"
    );
    let db = Db::open(&dir.path().join("master-state/master.sqlite")).unwrap();
    let builds = db.builds_of("libhello", 10).unwrap();
    assert_eq!(builds.len(), 1, "{builds:#?}");
    assert_ne!(
        builds[0].builder, victim,
        "the killed builder cannot have finished it"
    );
    assert_built_exactly_once(dir.path());
    farm.stop(Duration::from_secs(20)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_master_killed_mid_run_comes_back_and_the_farm_completes() {
    let dir = tempfile::tempdir().unwrap();
    let source = example_source(&Kind::Git, dir.path());
    slow_down(&dir.path().join("packages"), "hello", 4);
    let (master, builder) = real_farm_config(&source, 10);
    let mut farm = start_farm_in(dir.path(), 3, &master, &builder).await;
    wait_for_farm(
        &farm,
        "a few packages built",
        Duration::from_secs(120),
        |s| {
            s.counts
                .get(&quarters_common::api::v1::PackageState::Built)
                .copied()
                .unwrap_or(0)
                >= 2
        },
    )
    .await;
    farm.crash_and_restart_master().await.unwrap();
    let state = wait_until_done(&farm).await;
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Built),
        Some(&(BUILDABLE.len() as u64)),
        "{state:#?}"
    );
    // Nothing accepted twice, and the repository is whole and readable by pacman.
    let db = Db::open(&dir.path().join("master-state/master.sqlite")).unwrap();
    for name in BUILDABLE {
        let accepted = db
            .builds_of(name, 20)
            .unwrap()
            .into_iter()
            .filter(|b| b.verdict == VerdictKind::Accepted)
            .count();
        assert_eq!(accepted, 1, "{name}");
    }
    let (ok, text) = quartersctl(&farm, &["promote", "hello", "--with-deps"]);
    assert!(ok, "{text}");
    assert_eq!(install_and_run_hello(&farm), "hello from libhello, world\n");
    farm.stop(Duration::from_secs(20)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_while_the_farm_runs_is_built_after_the_old_version_and_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let source = example_source(&Kind::Git, dir.path());
    let packages = dir.path().join("packages");
    let (master, builder) = real_farm_config(&source, 10);
    let mut farm = start_farm_in(dir.path(), 3, &master, &builder).await;
    wait_for_farm(&farm, "hello 1.0-1 built", Duration::from_secs(120), |s| {
        s.counts
            .get(&quarters_common::api::v1::PackageState::Built)
            .copied()
            .unwrap_or(0)
            >= 1
            && !s
                .ready
                .iter()
                .any(|r| r.pkgbase == "hello" && r.verify.is_none())
            && !s.claims.iter().any(|c| c.pkgbase == "hello")
            && s.problems.iter().all(|p| p.pkgbase != "hello")
    })
    .await;
    let db_path = dir.path().join("master-state/master.sqlite");
    wait_for_farm(
        &farm,
        "hello 1.0-1 accepted",
        Duration::from_secs(120),
        |_| {
            Db::open(&db_path)
                .unwrap()
                .builds_of("hello", 5)
                .unwrap()
                .iter()
                .any(|b| b.verdict == VerdictKind::Accepted)
        },
    )
    .await;

    // The packager changes hello: pkgrel 2, and the program says so.
    for file in ["PKGBUILD", ".SRCINFO"] {
        let path = packages.join("hello").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("pkgrel=1", "pkgrel=2")
                .replace("pkgrel = 1", "pkgrel = 2"),
        )
        .unwrap();
    }
    let main_c = packages.join("hello/main.c");
    let text = std::fs::read_to_string(&main_c).unwrap();
    std::fs::write(&main_c, text.replace("\"world\"", "\"world, again\"")).unwrap();
    git_commit_all(&packages, "hello 1.0-2");

    wait_for_farm(&farm, "hello 1.0-2 built", Duration::from_secs(180), |_| {
        Db::open(&db_path)
            .unwrap()
            .builds_of("hello", 5)
            .unwrap()
            .iter()
            .any(|b| b.version == "1.0-2" && b.verdict == VerdictKind::Accepted)
    })
    .await;
    let builds = Db::open(&db_path).unwrap().builds_of("hello", 5).unwrap();
    let order: Vec<&str> = builds.iter().rev().map(|b| b.version.as_str()).collect();
    assert_eq!(
        order,
        ["1.0-1", "1.0-2"],
        "the old version first, then the new: {builds:#?}"
    );

    let (ok, text) = quartersctl(&farm, &["promote", "hello", "--with-deps"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("hello 1.0-2"),
        "promote takes the newest: {text}"
    );
    assert_eq!(
        install_and_run_hello(&farm),
        "hello from libhello, world, again\n"
    );
    farm.stop(Duration::from_secs(20)).await.unwrap();
}

//! The master killed with SIGKILL in the middle of pulling an artifact, and started again:
//! nothing half-pulled enters a repository, the build is accepted exactly once, and the
//! repository stays readable by pacman.

use std::time::Duration;

use quarters_common::api::v1::Verdict;
use quarters_tests::makepkg::{self, recipe};
use quarters_tests::master::{farm_pki, master_with_test_builder};
use quarters_tests::pacman::PacmanRoot;

#[tokio::test(flavor = "multi_thread")]
async fn a_master_killed_mid_pull_recovers_and_accepts_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = farm_pki(dir.path());
    let packages = dir.path().join("packages");
    // 2 MiB of random bytes: a package that takes a while to pull at the throttled rate.
    let big = recipe(
        "big",
        "1.0-1",
        std::env::consts::ARCH,
        &[],
        "install -d \"$pkgdir/usr/share/big\" && head -c 2097152 /dev/urandom > \"$pkgdir/usr/share/big/data\"",
    );
    makepkg::write_tree(&packages, std::slice::from_ref(&big));
    makepkg::git_commit_all(&packages, "import");
    let (mut master, builder) = master_with_test_builder(dir.path(), "").await;
    master
        .wait_for("big ready", |s| s.ready.iter().any(|r| r.pkgbase == "big"))
        .await;

    let package = makepkg::build(&big, &dir.path().join("built"));
    builder.throttle(Some(Duration::from_millis(40)));
    let started = builder.pull_started();
    let build = builder.succeeded("b1", "big", "1.0-1", &package);
    builder.show(build);
    tokio::time::timeout(Duration::from_secs(30), started)
        .await
        .expect("the master starts pulling");
    tokio::time::sleep(Duration::from_millis(500)).await;
    master.kill9().await;

    // Nothing of the interrupted pull is in a repository.
    let staging = master.state_dir.join("staging");
    assert!(
        !master
            .state_dir
            .join("pool")
            .join(package.file_name().unwrap())
            .exists(),
        "a half-pulled package reached the pool"
    );

    builder.throttle(None);
    master.restart().await;
    let state = master
        .wait_for("b1 judged after the restart", |s| {
            s.results.iter().any(|r| r.build == "b1")
        })
        .await;
    let result = state.results.iter().find(|r| r.build == "b1").unwrap();
    assert_eq!(result.verdict, Verdict::Accepted, "{result:?}");
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Built),
        Some(&1),
        "{:?}",
        state.counts
    );

    // Killed and restarted again after the acceptance: still exactly one acceptance.
    master.restart().await;
    let out = quarters_tests::command("quartersctl")
        .args(["why", "big", "--config"])
        .arg(&master.config)
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&out.stdout);
    assert_eq!(why.matches("accepted").count(), 1, "{why}");
    assert!(
        staging.read_dir().map_or(true, |mut d| d.next().is_none()),
        "staging is left empty"
    );

    let root = PacmanRoot::new(
        &ca.join("ca.pem"),
        &[("quarters-build", format!("{}repo/build/$arch", master.url))],
    );
    root.install(&["big"]);
    assert_eq!(
        std::fs::metadata(root.root.join("usr/share/big/data"))
            .unwrap()
            .len(),
        2_097_152
    );
    builder.stop();
}

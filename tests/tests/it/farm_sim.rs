//! A real master and real builders (with the simulation driver: everything but makepkg is
//! real) racing over a git source: every package is built exactly once; a builder killed in
//! the middle of a build loses its package to another after the lease; each version is then
//! verified by another builder, byte for byte.

use std::time::Duration;

use quarters_common::api::v1::ClaimPhase;
use quarters_master::db::{Db, VerdictKind};
use quarters_master::verdict::Verification;
use quarters_tests::makepkg::{self, recipe};
use quarters_tests::{quartersctl, start_farm_in, wait_for_farm};

/// A tree of `n` packages: a chain of three, and the rest independent.
fn source(dir: &std::path::Path, n: usize) -> Vec<String> {
    let arch = std::env::consts::ARCH;
    let mut recipes = vec![
        recipe("chain-1", "1.0-1", arch, &[], ":"),
        recipe("chain-2", "1.0-1", arch, &["chain-1"], ":"),
        recipe("chain-3", "1.0-1", arch, &["chain-2"], ":"),
    ];
    for i in 3..n {
        recipes.push(recipe(&format!("solo-{i:02}"), "1.0-1", arch, &[], ":"));
    }
    let packages = dir.join("packages");
    makepkg::write_tree(&packages, &recipes);
    makepkg::git_commit_all(&packages, "import");
    recipes.into_iter().map(|r| r.pkgbase).collect()
}

async fn race(builders: usize) {
    let dir = tempfile::tempdir().unwrap();
    let names = source(dir.path(), 12);
    let master_extra = "[builds]\ndefault_estimate = 300\n\n[[source]]\nname = \"main\"\nkind = \"git\"\npath = \"packages\"\n";
    // 300 s expected per build, scaled to 0.3 s.
    let builder_extra = "driver = \"sim\"\n\n[sim]\ntime_scale = 0.001\n\n[claims]\nlease = 5\n";
    let mut farm = start_farm_in(dir.path(), builders, master_extra, builder_extra).await;
    wait_for_farm(
        &farm,
        "every package built",
        Duration::from_secs(120),
        |s| {
            s.counts.get(&quarters_common::api::v1::PackageState::Built)
                == Some(&(names.len() as u64))
        },
    )
    .await;
    // Then each version is rebuilt by another builder, with the farm's SOURCE_DATE_EPOCH:
    // the simulation driver's packages are the same bytes.
    let started = std::time::Instant::now();
    let mut unverified = names.clone();
    while !unverified.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not reproduced: {unverified:?}\n{}",
            quartersctl(&farm.master.config, &["why", &unverified[0]]).1
        );
        unverified.retain(|name| {
            !quartersctl(&farm.master.config, &["why", name])
                .1
                .contains("verification: reproduced\n")
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    farm.stop(Duration::from_secs(10)).await.unwrap();
    let db = Db::open(&dir.path().join("master-state/master.sqlite")).unwrap();
    for name in &names {
        let builds = db.builds_of(name, 10).unwrap();
        assert_eq!(
            builds.len(),
            1,
            "{name} was built {} times: {builds:#?}",
            builds.len()
        );
        assert_eq!(builds[0].verdict, VerdictKind::Accepted);
        let verifications = db.verifications_of(name).unwrap();
        assert_eq!(verifications.len(), 1, "{name}: {verifications:#?}");
        assert_eq!(verifications[0].verdict, Verification::Reproduced);
        assert_ne!(verifications[0].builder, builds[0].builder, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_builders_build_every_package_exactly_once() {
    race(2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn five_builders_build_every_package_exactly_once() {
    race(5).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_builders_package_is_built_elsewhere_after_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    source(dir.path(), 4);
    let master_extra = "[builds]\ndefault_estimate = 300\n\n[[source]]\nname = \"main\"\nkind = \"git\"\npath = \"packages\"\n";
    // Builds of 6 s: long enough to kill one in the middle.
    let builder_extra = "driver = \"sim\"\n\n[sim]\ntime_scale = 0.02\n\n[claims]\nlease = 3\n";
    let mut farm = start_farm_in(dir.path(), 2, master_extra, builder_extra).await;
    let state = wait_for_farm(
        &farm,
        "a committed claim on chain-1",
        Duration::from_secs(60),
        |s| {
            s.claims
                .iter()
                .any(|c| c.pkgbase == "chain-1" && c.phase == ClaimPhase::Committed)
        },
    )
    .await;
    let claimant = state
        .claims
        .iter()
        .find(|c| c.pkgbase == "chain-1")
        .unwrap()
        .builder
        .clone();
    let victim = farm
        .builders
        .iter_mut()
        .find(|b| b.name.as_str() == claimant)
        .unwrap();
    victim.kill().await.unwrap();

    let state = wait_for_farm(
        &farm,
        "chain-1 built by the survivor",
        Duration::from_secs(90),
        |s| s.results.iter().any(|r| r.pkgbase == "chain-1"),
    )
    .await;
    let result = state
        .results
        .iter()
        .find(|r| r.pkgbase == "chain-1")
        .unwrap();
    assert_ne!(
        result.builder, claimant,
        "the killed builder cannot have finished it"
    );
    wait_for_farm(&farm, "everything built", Duration::from_secs(90), |s| {
        s.counts.get(&quarters_common::api::v1::PackageState::Built) == Some(&4)
    })
    .await;
    farm.stop(Duration::from_secs(10)).await.unwrap();
}

//! A hostile builder: a real TLS server with a farm certificate for a name in the master's
//! config, publishing whatever the test writes. Each test is an attack the master once fell
//! to; the master must leave its files, pool and state as they were, judge only claimed work,
//! name the offender, and go on with the honest builder.

use std::path::{Path, PathBuf};

use quarters_common::api::v1::{BuildOutcome, ClaimPhase, MasterState, Verdict};
use quarters_master::localfarm::free_ports;
use quarters_tests::makepkg::{self, recipe};
use quarters_tests::master::{MasterProcess, farm_pki};
use quarters_tests::testbuilder::{TestBuilder, claim_on, finished_build};

const ARCH: &str = std::env::consts::ARCH;

struct Farm {
    dir: tempfile::TempDir,
    master: MasterProcess,
    hostile: TestBuilder,
    honest: TestBuilder,
    /// `hello` 1.0-1, built for real by makepkg.
    hello: PathBuf,
}

/// A master with two test builders (`builder-1`, the hostile one, and `builder-2`) over a git
/// source holding `hello` and `other`, both ready.
async fn farm(extra: &str) -> Farm {
    let dir = tempfile::tempdir().unwrap();
    let ca = farm_pki(dir.path());
    let packages = dir.path().join("packages");
    let recipes = [
        recipe("hello", "1.0-1", ARCH, &[], ":"),
        recipe("other", "1.0-1", ARCH, &[], ":"),
    ];
    makepkg::write_tree(&packages, &recipes);
    makepkg::git_commit_all(&packages, "import");
    let port = free_ports(1).unwrap()[0];
    let url: url::Url = format!("https://127.0.0.1:{port}/").parse().unwrap();
    let hostile = TestBuilder::start(&ca, "builder-1", &url).await;
    let honest = TestBuilder::start(&ca, "builder-2", &url).await;
    let master = MasterProcess::start(
        dir.path(),
        port,
        &format!(
            "{extra}\n[[source]]\nname = \"main\"\nkind = \"git\"\npath = \"packages\"\n\n[[builder]]\nname = \"builder-1\"\nurl = \"{}\"\n\n[[builder]]\nname = \"builder-2\"\nurl = \"{}\"\n",
            hostile.url, honest.url
        ),
    )
    .await;
    master
        .wait_for("both packages ready", |s| s.ready.len() == 2)
        .await;
    let hello = makepkg::build(&recipes[0], &dir.path().join("built"));
    Farm {
        dir,
        master,
        hostile,
        honest,
        hello,
    }
}

fn violation<'a>(state: &'a MasterState, builder: &str, text: &str) -> Option<&'a str> {
    state
        .violations
        .iter()
        .find(|v| v.builder == builder && v.what.contains(text))
        .map(|v| v.what.as_str())
}

fn status(master: &MasterProcess) -> String {
    let out = quarters_tests::command("quartersctl")
        .args(["status", "--config"])
        .arg(&master.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir` but the master's own (its state directory and log), for comparing
/// the tree before and after an attack.
fn outside_the_master(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().to_owned());
        }
    }
    out.retain(|p| !p.starts_with("state") && !p.starts_with("master.log"));
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn build_ids_and_stages_never_become_paths() {
    let f = farm("").await;
    // What a traversal from the state directory's staging and logs directories reaches.
    let victim = f.dir.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("keep"), "precious").unwrap();
    let outside_before = outside_the_master(f.dir.path());

    let id = "../../../../victim";
    let mut b = finished_build(id, "hello", "1.0-1", BuildOutcome::Succeeded);
    b.artifacts = vec![f.hostile.artifact("victim-copy", &f.hello)];
    f.hostile.show(b);
    let mut failed = finished_build(
        "../../../planted",
        "other",
        "1.0-1",
        BuildOutcome::Failed {
            stage: "build".into(),
            reason: "exit status 1".into(),
        },
    );
    failed.logs = vec!["evil".into()];
    f.hostile.show(failed);
    let mut bad_stage = finished_build(
        "other-1-0",
        "other",
        "1.0-1",
        BuildOutcome::Failed {
            stage: "../../../../stage".into(),
            reason: "exit status 1".into(),
        },
    );
    bad_stage.logs = vec!["../../../../stage".into()];
    f.hostile.show(bad_stage);

    let state = f
        .master
        .wait_for("the hostile builds named as violations", |s| {
            violation(s, "builder-1", "build id \"../../../../victim\"").is_some()
                && violation(s, "builder-1", "build id \"../../../planted\"").is_some()
                && violation(s, "builder-1", "stage \"../../../../stage\"").is_some()
        })
        .await;
    assert_eq!(
        std::fs::read_to_string(victim.join("keep")).unwrap(),
        "precious"
    );
    assert!(!f.dir.path().join("planted").exists());
    assert!(!f.dir.path().join("stage.log").exists());
    assert_eq!(outside_the_master(f.dir.path()), outside_before);
    // Nothing of those builds was judged: no verdict, nothing built or failed. (Whether
    // `other` shows as ready or claimed depends on when the valid claim naming the invalid
    // build was last planned with.)
    assert!(state.results.is_empty(), "{:?}", state.results);
    for judged in ["built", "failed", "indirect-failed"] {
        assert_eq!(state.counts.get(judged), None, "{:?}", state.counts);
    }
    quarters_tests::assert_contains(
        &status(&f.master),
        &["builder builder-1", "protocol violation(s)", "build id"],
    );
    quarters_tests::assert_contains(&f.master.log_text(), &["protocol violation", "builder-1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_first_committed_builder_is_judged() {
    let f = farm("").await;
    // A build the hostile builder never claimed.
    let mut b = finished_build("u1", "hello", "1.0-1", BuildOutcome::Succeeded);
    b.artifacts = vec![f.hostile.artifact("u1", &f.hello)];
    f.hostile.show_unclaimed(b);
    let state = f
        .master
        .wait_for("u1 judged", |s| s.results.iter().any(|r| r.build == "u1"))
        .await;
    let result = state.results.iter().find(|r| r.build == "u1").unwrap();
    assert_eq!(result.verdict, Verdict::Rejected);
    quarters_tests::assert_contains(
        result.reason.as_deref().unwrap_or_default(),
        &["not judged", "has no live committed claim naming it"],
    );
    assert!(state.ready.iter().any(|r| r.pkgbase == "hello"));

    // The honest builder commits first; the hostile one's later commitment does not count.
    f.honest.show_claim(claim_on(
        "hello",
        "1.0-1",
        ARCH,
        ClaimPhase::Committed,
        Some("h1"),
    ));
    f.master
        .wait_for("builder-2's commitment seen", |s| {
            s.claims
                .iter()
                .any(|c| c.builder == "builder-2" && c.phase == ClaimPhase::Committed)
        })
        .await;
    let mut late = finished_build("late", "hello", "1.0-1", BuildOutcome::Succeeded);
    late.artifacts = vec![f.hostile.artifact("late", &f.hello)];
    f.hostile.show(late);
    let state = f
        .master
        .wait_for("late judged", |s| {
            s.results.iter().any(|r| r.build == "late")
        })
        .await;
    let result = state.results.iter().find(|r| r.build == "late").unwrap();
    quarters_tests::assert_contains(
        result.reason.as_deref().unwrap_or_default(),
        &[
            "not judged",
            "was committed to by builder-2 before builder-1",
        ],
    );

    // The honest builder's build is accepted.
    let mut h1 = finished_build("h1", "hello", "1.0-1", BuildOutcome::Succeeded);
    h1.artifacts = vec![f.honest.artifact("h1", &f.hello)];
    f.honest.show(h1);
    let state = f
        .master
        .wait_for("h1 accepted and hello built", |s| {
            s.results
                .iter()
                .any(|r| r.build == "h1" && r.verdict == Verdict::Accepted)
                && s.counts.get("built") == Some(&1)
        })
        .await;
    assert!(!state.ready.iter().any(|r| r.pkgbase == "hello"));
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_reasons_and_endless_leases_are_cut_to_size() {
    let f = farm("[builds]\nmax_lease = 3\n").await;
    // A failure reason of 36 MiB.
    let reason = "x".repeat(36 << 20);
    f.hostile.show(finished_build(
        "big",
        "hello",
        "1.0-1",
        BuildOutcome::Failed {
            stage: "build".into(),
            reason,
        },
    ));
    let state = f
        .master
        .wait_for("big judged", |s| s.results.iter().any(|r| r.build == "big"))
        .await;
    let published = serde_json::to_vec(&state).unwrap();
    assert!(
        published.len() < 64 << 10,
        "the master publishes {} bytes",
        published.len()
    );

    // A commitment "until the year 9999" holds only as long as the master's maximum lease.
    let mut forever = claim_on("other", "1.0-1", ARCH, ClaimPhase::Committed, None);
    forever.lease_until = time::macros::datetime!(9999-12-31 0:00 UTC);
    forever.ticket = 0;
    f.hostile.show_claim(forever);
    f.master
        .wait_for("the endless lease clamped and named", |s| {
            violation(s, "builder-1", "over the limit of 3 s").is_some()
                && s.claims.iter().any(|c| c.pkgbase == "other")
        })
        .await;
    f.master
        .wait_for("other ready again once the clamped lease lapsed", |s| {
            s.ready.iter().any(|r| r.pkgbase == "other")
                && !s.claims.iter().any(|c| c.pkgbase == "other")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_announcing_another_packages_file_leaves_the_pool_alone() {
    let f = farm("").await;
    let mut h1 = finished_build("h1", "hello", "1.0-1", BuildOutcome::Succeeded);
    h1.artifacts = vec![f.honest.artifact("h1", &f.hello)];
    f.honest.show(h1);
    f.master
        .wait_for("hello accepted", |s| {
            s.results
                .iter()
                .any(|r| r.build == "h1" && r.verdict == Verdict::Accepted)
        })
        .await;
    let pool_file = f
        .master
        .state_dir
        .join("pool")
        .join(f.hello.file_name().unwrap());
    let before = std::fs::read(&pool_file).unwrap();

    // `other`, announced under hello's file name.
    let other = makepkg::build(
        &recipe("other", "1.0-1", ARCH, &[], ":"),
        &f.dir.path().join("built-other"),
    );
    let fake = f.dir.path().join("fake").join(f.hello.file_name().unwrap());
    std::fs::create_dir_all(fake.parent().unwrap()).unwrap();
    std::fs::copy(&other, &fake).unwrap();
    let mut o1 = finished_build("o1", "other", "1.0-1", BuildOutcome::Succeeded);
    o1.artifacts = vec![f.hostile.artifact("o1", &fake)];
    f.hostile.show(o1);
    let state = f
        .master
        .wait_for("o1 judged", |s| s.results.iter().any(|r| r.build == "o1"))
        .await;
    let result = state.results.iter().find(|r| r.build == "o1").unwrap();
    assert_eq!(result.verdict, Verdict::Rejected);
    assert_eq!(std::fs::read(&pool_file).unwrap(), before);
}

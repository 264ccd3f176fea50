//! A hostile builder: a real TLS server with a farm certificate for a name in the master's
//! config, publishing whatever the test writes. Each test is an attack the master once fell
//! to; the master must leave its files, pool and state as they were, judge only claimed work,
//! name the offender, and go on with the honest builder.

use std::path::{Path, PathBuf};

use quarters_common::api::v1::{
    BuildOutcome, ClaimPhase, MasterState, QuarantineView, QuarantinedBy, Verdict,
};
use quarters_ctl::localfarm::free_ports;
use quarters_tests::makepkg::{self, recipe};
use quarters_tests::master::{MasterProcess, farm_pki};
use quarters_tests::testbuilder::{TestBuilder, claim_on, failed_build, finished_build};

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
    let (ok, text) = ctl(master, &["status"]);
    assert!(ok, "{text}");
    text
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
    let mut failed = failed_build("../../../planted", "other", "build", "exit status 1");
    failed.logs = vec!["evil".into()];
    f.hostile.show(failed);
    let mut bad_stage = failed_build("other-1-0", "other", "../../../../stage", "exit status 1");
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
    for judged in [
        quarters_common::api::v1::PackageState::Built,
        quarters_common::api::v1::PackageState::Failed,
        quarters_common::api::v1::PackageState::IndirectFailed,
    ] {
        assert_eq!(state.counts.get(&judged), None, "{:?}", state.counts);
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
    let b = f.hostile.succeeded("u1", "hello", "1.0-1", &f.hello);
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
    assert!(
        state
            .ready
            .iter()
            .any(|r| r.pkgbase == "hello" && r.verify.is_none())
    );

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
    let late = f.hostile.succeeded("late", "hello", "1.0-1", &f.hello);
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
    let h1 = f.honest.succeeded("h1", "hello", "1.0-1", &f.hello);
    f.honest.show(h1);
    let state = f
        .master
        .wait_for("h1 accepted and hello built", |s| {
            s.results
                .iter()
                .any(|r| r.build == "h1" && r.verdict == Verdict::Accepted)
                && s.counts.get(&quarters_common::api::v1::PackageState::Built) == Some(&1)
        })
        .await;
    assert!(
        !state
            .ready
            .iter()
            .any(|r| r.pkgbase == "hello" && r.verify.is_none())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_reasons_and_endless_leases_are_cut_to_size() {
    // No quarantine: the lease alone must free the package.
    let f = farm("[builds]\nmax_lease = 3\n[quarantine]\nafter = 0\n").await;
    // A failure reason of 36 MiB.
    let reason = "x".repeat(36 << 20);
    f.hostile
        .show(failed_build("big", "hello", "build", &reason));
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
    f.hostile.show_claim(forever);
    f.master
        .wait_for("the endless lease clamped and named", |s| {
            violation(s, "builder-1", "over the limit of 3 s").is_some()
                && s.claims.iter().any(|c| c.pkgbase == "other")
        })
        .await;
    // The builder keeps changing its state, so that the master reads it again and again: the
    // same renewal, seen again, must not extend the lease.
    let churn = async {
        for slots in (1..=2).cycle() {
            f.hostile.edit(|s| s.slots = slots);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    };
    tokio::select! {
        _ = f.master.wait_for("other ready again once the clamped lease lapsed", |s| {
            s.ready.iter().any(|r| r.pkgbase == "other")
                && !s.claims.iter().any(|c| c.pkgbase == "other")
        }) => {}
        () = churn => unreachable!("churns for ever"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_announcing_another_packages_file_leaves_the_pool_alone() {
    let f = farm("").await;
    let h1 = f.honest.succeeded("h1", "hello", "1.0-1", &f.hello);
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
    let o1 = f.hostile.succeeded("o1", "other", "1.0-1", &fake);
    f.hostile.show(o1);
    let state = f
        .master
        .wait_for("o1 judged", |s| s.results.iter().any(|r| r.build == "o1"))
        .await;
    let result = state.results.iter().find(|r| r.build == "o1").unwrap();
    assert_eq!(result.verdict, Verdict::Rejected);
    assert_eq!(std::fs::read(&pool_file).unwrap(), before);
}

fn quarantine_of(state: &MasterState, builder: &str) -> Option<QuarantineView> {
    state
        .builders
        .iter()
        .find(|b| b.name == builder)
        .and_then(|b| b.quarantine.clone())
}

fn ctl(master: &MasterProcess, args: &[&str]) -> (bool, String) {
    quarters_tests::quartersctl(&master.config, args)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_builder_that_keeps_breaking_the_protocol_is_quarantined_until_an_operator_enables_it() {
    let mut f = farm("[quarantine]\nafter = 2\nwindow = 3600\n").await;
    f.hostile.show_claim(claim_on(
        "hello",
        "1.0-1",
        ARCH,
        ClaimPhase::Committed,
        None,
    ));
    f.master
        .wait_for("builder-1's commitment to hello counted", |s| {
            s.claims.iter().any(|c| c.builder == "builder-1") && s.ready.len() == 1
        })
        .await;
    // Two builds it never claimed: two violations.
    for id in ["u1", "u2"] {
        f.hostile.show_unclaimed(finished_build(
            id,
            "other",
            "1.0-1",
            BuildOutcome::Succeeded,
        ));
    }
    let state = f
        .master
        .wait_for("builder-1 quarantined", |s| {
            quarantine_of(s, "builder-1").is_some()
        })
        .await;
    let q = quarantine_of(&state, "builder-1").unwrap();
    assert_eq!(q.by, QuarantinedBy::Master);
    quarters_tests::assert_contains(
        &q.reason,
        &["2 protocol violations", "has no live committed claim"],
    );
    assert!(quarantine_of(&state, "builder-2").is_none());
    // Its commitment no longer holds hello: both packages are ready for the others.
    let state = f
        .master
        .wait_for("hello ready again", |s| {
            s.ready.len() == 2 && !s.claims.iter().any(|c| c.builder == "builder-1")
        })
        .await;
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Claimed),
        None,
        "{:?}",
        state.counts
    );
    quarters_tests::assert_contains(
        &status(&f.master),
        &["builder builder-1", "quarantined by the master"],
    );
    let (ok, list) = ctl(&f.master, &["builder", "list"]);
    assert!(ok, "{list}");
    quarters_tests::assert_contains(
        &list,
        &[
            "builder-1 ",
            "quarantined by the master",
            "builder-2 ",
            ": validated",
        ],
    );
    quarters_tests::assert_contains(&f.master.log_text(), &["quarantined", "builder-1"]);

    // A build it claims properly is not judged while it is quarantined ...
    let other = makepkg::build(
        &recipe("other", "1.0-1", ARCH, &[], ":"),
        &f.dir.path().join("built-other"),
    );
    let q1 = f.hostile.succeeded("q1", "other", "1.0-1", &other);
    f.hostile.show(q1);
    // ... while the honest builder's is.
    let h1 = f.honest.succeeded("h1", "hello", "1.0-1", &f.hello);
    f.honest.show(h1);
    let state = f
        .master
        .wait_for("h1 accepted", |s| {
            s.results
                .iter()
                .any(|r| r.build == "h1" && r.verdict == Verdict::Accepted)
        })
        .await;
    assert!(
        !state.results.iter().any(|r| r.build == "q1"),
        "{:?}",
        state.results
    );

    // A restarted master still does not validate it.
    f.master.restart().await;
    f.master
        .wait_for("builder-1 still quarantined after a restart", |s| {
            quarantine_of(s, "builder-1").is_some()
                && s.builders.iter().any(|b| b.name == "builder-2")
        })
        .await;

    let (ok, text) = ctl(&f.master, &["builder", "enable", "builder-1"]);
    assert!(ok, "{text}");
    quarters_tests::assert_contains(&text, &["builder-1: validated again"]);
    let state = f
        .master
        .wait_for("builder-1 validated and its build judged", |s| {
            quarantine_of(s, "builder-1").is_none()
                && s.results
                    .iter()
                    .any(|r| r.build == "q1" && r.verdict == Verdict::Accepted)
        })
        .await;
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Built),
        Some(&2),
        "{:?}",
        state.counts
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_disables_a_builder_and_its_packages_are_free_at_once() {
    let f = farm("").await;
    f.hostile.show_claim(claim_on(
        "hello",
        "1.0-1",
        ARCH,
        ClaimPhase::Committed,
        None,
    ));
    f.master
        .wait_for("hello claimed by builder-1", |s| {
            s.claims.iter().any(|c| c.builder == "builder-1") && s.ready.len() == 1
        })
        .await;
    let (ok, text) = ctl(
        &f.master,
        &[
            "builder",
            "disable",
            "builder-1",
            "--reason",
            "machine compromised",
        ],
    );
    assert!(ok, "{text}");
    quarters_tests::assert_contains(
        &text,
        &[
            "builder-1",
            "quarantined by the operator",
            "machine compromised",
        ],
    );
    let state = f
        .master
        .wait_for("hello ready again, well before its lease ends", |s| {
            s.ready.len() == 2 && quarantine_of(s, "builder-1").is_some()
        })
        .await;
    let q = quarantine_of(&state, "builder-1").unwrap();
    assert_eq!(
        (q.by, q.reason.as_str()),
        (QuarantinedBy::Operator, "machine compromised")
    );

    let (ok, text) = ctl(&f.master, &["builder", "disable", "nobody"]);
    assert!(!ok, "{text}");
    quarters_tests::assert_contains(&text, &["no builder \"nobody\""]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_builder_that_holds_commitments_without_building_is_quarantined() {
    let f = farm("[builds]\nmax_lease = 2\n[quarantine]\nafter = 1\n").await;
    // It renews its commitment to hello as an honest builder would, but never builds it.
    let renew = async {
        loop {
            let mut claim = claim_on("hello", "1.0-1", ARCH, ClaimPhase::Committed, None);
            claim.lease_until = claim.renewed_at + time::Duration::seconds(2);
            f.hostile.edit(|s| s.claims = vec![claim]);
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    };
    let state = tokio::select! {
        state = f.master.wait_for("builder-1 quarantined", |s| {
            quarantine_of(s, "builder-1").is_some()
        }) => state,
        () = renew => unreachable!("renews for ever"),
    };
    quarters_tests::assert_contains(
        &quarantine_of(&state, "builder-1").unwrap().reason,
        &["committed to hello 1.0-1", "without building it"],
    );
    f.master
        .wait_for("hello ready again", |s| s.ready.len() == 2)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_builder_that_hides_its_commitment_from_its_peers_cannot_make_an_honest_one_an_offender()
{
    let f = farm("[quarantine]\nafter = 1\n").await;
    // The hostile builder shows the master a commitment to hello that (we suppose) it hides
    // from its peers; the honest builder, seeing nothing, commits later and builds.
    f.hostile.show_claim(claim_on(
        "hello",
        "1.0-1",
        ARCH,
        ClaimPhase::Committed,
        None,
    ));
    f.master
        .wait_for("builder-1's commitment seen", |s| {
            s.claims.iter().any(|c| c.builder == "builder-1")
        })
        .await;
    f.honest
        .show(f.honest.succeeded("h1", "hello", "1.0-1", &f.hello));
    let state = f
        .master
        .wait_for("h1 not judged", |s| {
            s.results.iter().any(|r| r.build == "h1")
        })
        .await;
    let result = state.results.iter().find(|r| r.build == "h1").unwrap();
    quarters_tests::assert_contains(
        result.reason.as_deref().unwrap_or_default(),
        &["was committed to by builder-1 before builder-2"],
    );
    // The offence, had it counted, was recorded before the plan that publishes the verdict.
    assert!(
        quarantine_of(&state, "builder-2").is_none(),
        "{:?}",
        state.builders
    );
}

/// A builder may serve its artifact at a trickle and keep the master's pull going for as long
/// as it likes. Disabled by the operator meanwhile, it keeps nothing: its package is ready for
/// others at once, not when the pull ends, and the pull that does end is not judged.
#[tokio::test(flavor = "multi_thread")]
async fn a_builder_trickling_its_artifact_keeps_nothing_once_disabled() {
    let f = farm("").await;
    // One chunk, sent after 20 s: within the master's 30 s wait for data.
    f.hostile.throttle(Some(std::time::Duration::from_secs(20)));
    let started = f.hostile.pull_started();
    f.hostile
        .show(f.hostile.succeeded("b1", "hello", "1.0-1", &f.hello));
    tokio::time::timeout(std::time::Duration::from_secs(30), started)
        .await
        .expect("the master starts pulling");
    let (ok, text) = ctl(
        &f.master,
        &["builder", "disable", "builder-1", "--reason", "trickles"],
    );
    assert!(ok, "{text}");
    // A pull left to judge would accept hello after the trickle, and it would never be
    // ready again.
    f.master
        .wait_for("hello ready again while its pull trickles", |s| {
            s.ready
                .iter()
                .any(|r| r.pkgbase == "hello" && r.verify.is_none())
                && quarantine_of(s, "builder-1").is_some()
        })
        .await;
    // Past the end of the trickle: the pull finished, and nothing of it was judged.
    tokio::time::sleep(std::time::Duration::from_secs(25)).await;
    let state = f
        .master
        .wait_for("the master still publishing", |_| true)
        .await;
    assert!(
        !state.results.iter().any(|r| r.build == "b1"),
        "the disabled builder's build was judged: {:?}",
        state.results
    );
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Built),
        None,
        "{:?}",
        state.counts
    );
}

/// A builder holds its package while the master pulls its build; trickling the artifact (a
/// chunk now and then, each within the master's wait for data) once held it for as long as
/// the builder liked. The pull now ends at a deadline the announced size sets, the build is
/// refused through the builder's fault, and the package goes to an honest builder.
#[tokio::test(flavor = "multi_thread")]
async fn a_builder_trickling_its_artifact_is_refused_at_the_pull_deadline() {
    let f =
        farm("[builds]\nmin_pull_rate = 65536\npull_grace = 3\n[quarantine]\nafter = 1\n").await;
    // One chunk every 20 s: a few kilobytes take minutes, where the deadline is 3 s away.
    f.hostile.throttle(Some(std::time::Duration::from_secs(20)));
    let started = std::time::Instant::now();
    f.hostile
        .show(f.hostile.succeeded("b1", "hello", "1.0-1", &f.hello));
    let state = f
        .master
        .wait_for("b1 judged", |s| s.results.iter().any(|r| r.build == "b1"))
        .await;
    let result = state.results.iter().find(|r| r.build == "b1").unwrap();
    assert_eq!(result.verdict, Verdict::Rejected);
    quarters_tests::assert_contains(
        result.reason.as_deref().unwrap_or_default(),
        &["builder-1", "too slow"],
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the pull was not cut at its deadline but ran to the first chunk: {:?}",
        started.elapsed()
    );
    let quarantine = f
        .master
        .wait_for("builder-1 quarantined", |s| {
            quarantine_of(s, "builder-1").is_some()
        })
        .await;
    quarters_tests::assert_contains(
        &quarantine_of(&quarantine, "builder-1").unwrap().reason,
        &["too slow"],
    );
    f.honest
        .show(f.honest.succeeded("h1", "hello", "1.0-1", &f.hello));
    let state = f
        .master
        .wait_for("hello accepted from builder-2", |s| {
            s.results
                .iter()
                .any(|r| r.build == "h1" && r.verdict == Verdict::Accepted)
        })
        .await;
    assert!(
        !state
            .ready
            .iter()
            .any(|r| r.pkgbase == "hello" && r.verify.is_none())
    );
}

/// The same for a failed build's logs, whose sizes are not announced: together they get what
/// one log of the largest size kept would at the minimum rate, and the failure is recorded
/// without the log that did not come in time.
#[tokio::test(flavor = "multi_thread")]
async fn a_builder_trickling_its_logs_is_cut_at_the_pull_deadline() {
    let f = farm("[builds]\nmin_pull_rate = 65536\npull_grace = 3\nmax_log_size = 65536\n").await;
    // Three chunks, one every 20 s: a minute, where the logs' deadline is 4 s away.
    f.hostile.throttle(Some(std::time::Duration::from_secs(20)));
    f.hostile
        .log("f1", "build", &"make: *** [all] Error 1\n".repeat(2000));
    let mut failed = failed_build("f1", "hello", "build", "exit status 2");
    failed.logs = vec!["build".into()];
    let started = std::time::Instant::now();
    f.hostile.show(failed);
    let state = f
        .master
        .wait_for("f1 judged", |s| s.results.iter().any(|r| r.build == "f1"))
        .await;
    let result = state.results.iter().find(|r| r.build == "f1").unwrap();
    assert_eq!(result.verdict, Verdict::Failed);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the log pull was not cut at its deadline but ran to the first chunk: {:?}",
        started.elapsed()
    );
}

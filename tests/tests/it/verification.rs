//! Independent verification against a real master: after a version is accepted from one
//! builder, the master asks for a rebuild by another, compares what it sends byte for byte,
//! and says in `why` whether it reproduced or which members differ. Test builders (real TLS
//! servers with farm certificates) play both builders, so that each can send exactly the
//! packages a test needs: the same bytes, other bytes, or a verification of its own build.

use quarters_common::api::v1::{MasterState, Purpose, ReadyPackage, Verdict};
use quarters_tests::makepkg;
use quarters_tests::master::{GIT_SOURCE, MasterProcess, farm_pki};
use quarters_tests::quartersctl;
use quarters_tests::testbuilder::TestBuilder;

fn verification_of<'a>(state: &'a MasterState, pkgbase: &str) -> Option<&'a ReadyPackage> {
    state
        .ready
        .iter()
        .find(|r| r.pkgbase == pkgbase && r.verify.is_some())
}

fn verdict(state: &MasterState, id: &str) -> Option<(Verdict, String)> {
    state
        .results
        .iter()
        .find(|r| r.build == id)
        .map(|r| (r.verdict, r.reason.clone().unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_accepted_version_is_rebuilt_elsewhere_and_compared_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let ca = farm_pki(dir.path());
    let packages = dir.path().join("packages");
    let recipes = makepkg::libhello_and_hello();
    makepkg::write_tree(&packages, &recipes);
    makepkg::git_commit_all(&packages, "import");
    let port = quarters_ctl::localfarm::free_ports(1).unwrap()[0];
    let url: url::Url = format!("https://127.0.0.1:{port}/").parse().unwrap();
    let one = TestBuilder::start(&ca, "builder-1", &url).await;
    let two = TestBuilder::start(&ca, "builder-2", &url).await;
    let tables = format!(
        "{GIT_SOURCE}\n[[builder]]\nname = \"builder-1\"\nurl = \"{}\"\n\n[[builder]]\nname = \"builder-2\"\nurl = \"{}\"\n",
        one.url, two.url
    );
    let master = MasterProcess::start(dir.path(), port, &tables).await;
    let why = |name: &str| quartersctl(&master.config, &["why", name]).1;

    // builder-1's libhello is accepted; the master then asks for a verification that
    // builder-1 may not take.
    master
        .wait_for("libhello ready", |s| {
            s.ready.iter().any(|r| r.pkgbase == "libhello")
        })
        .await;
    let out = dir.path().join("built");
    let libhello = makepkg::build(&recipes[0], &out);
    let b1 = one.succeeded("b1", "libhello", "1.0-1", &libhello);
    one.show(b1);
    let state = master
        .wait_for("a verification of libhello asked for", |s| {
            verification_of(s, "libhello").is_some()
        })
        .await;
    assert_eq!(verdict(&state, "b1").unwrap().0, Verdict::Accepted);
    let asked = verification_of(&state, "libhello").unwrap();
    assert_eq!(asked.verify.as_ref().unwrap().built_by, ["builder-1"]);
    assert!(
        why("libhello")
            .contains("verification: pending: waiting for a builder other than builder-1"),
        "{}",
        why("libhello")
    );

    // builder-1 verifying its own build proves nothing: answered, counted against it, and
    // the verification still waits.
    let mut own = one.succeeded("v0", "libhello", "1.0-1", &libhello);
    own.purpose = Purpose::Verify;
    one.show(own);
    let state = master
        .wait_for("builder-1's own verification answered", |s| {
            verdict(s, "v0").is_some()
        })
        .await;
    assert_eq!(verdict(&state, "v0").unwrap().0, Verdict::Failed);
    assert!(verification_of(&state, "libhello").is_some());
    let offence = format!(
        "build v0 verifies libhello 1.0-1 ({}), which the builder built itself",
        std::env::consts::ARCH
    );
    assert!(
        master.log_text().contains(&offence),
        "{}",
        master.log_text()
    );

    // builder-2 sends the same bytes: reproduced, and no longer asked for.
    let mut v1 = two.succeeded("v1", "libhello", "1.0-1", &libhello);
    v1.purpose = Purpose::Verify;
    two.show(v1);
    let state = master
        .wait_for("v1 judged", |s| verdict(s, "v1").is_some())
        .await;
    assert_eq!(
        verdict(&state, "v1").unwrap(),
        (Verdict::Accepted, "verification: reproduced".to_owned())
    );
    assert!(verification_of(&state, "libhello").is_none());
    let w = why("libhello");
    assert!(
        w.contains("verification: reproduced\n    builder-2 build v1: reproduced\n"),
        "{w}"
    );

    // hello: builder-2 builds it first this time, and builder-1's rebuild is another makepkg
    // run, dated by its own clock: it differs, and `why` names the members.
    master
        .wait_for("hello ready", |s| {
            s.ready
                .iter()
                .any(|r| r.pkgbase == "hello" && r.verify.is_none())
        })
        .await;
    let hello = makepkg::build(&recipes[1], &out);
    let b2 = two.succeeded("b2", "hello", "1.0-1", &hello);
    two.show(b2);
    master
        .wait_for("a verification of hello asked for", |s| {
            verification_of(s, "hello").is_some()
        })
        .await;
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let rebuilt_dir = dir.path().join("rebuilt");
    let rebuilt = makepkg::build(&recipes[1], &rebuilt_dir);
    assert_ne!(
        std::fs::read(&rebuilt).unwrap(),
        std::fs::read(&hello).unwrap()
    );
    let mut v2 = one.succeeded("v2", "hello", "1.0-1", &rebuilt);
    v2.purpose = Purpose::Verify;
    one.show(v2);
    let state = master
        .wait_for("v2 judged", |s| verdict(s, "v2").is_some())
        .await;
    let (v, reason) = verdict(&state, "v2").unwrap();
    assert_eq!(v, Verdict::Rejected, "{reason}");
    let w = why("hello");
    assert!(
        w.contains("verification: DIFFERS from an independent build")
            && w.contains("builder-1 build v2: differs: hello-1.0-1-")
            && w.contains("members differ: .BUILDINFO (content"),
        "{w}"
    );
    // The published state names it, with a third build asked for; `status` counts.
    let summary = state.verification.as_ref().expect("a verification summary");
    assert_eq!(summary.differs.len(), 1, "{summary:?}");
    assert_eq!(summary.differs[0].pkgbase, "hello");
    assert!(summary.differs[0].deciding);
    let status = quartersctl(&master.config, &["status"]).1;
    assert!(
        status.contains("verification (advisory): 1 reproduced, 1 differ, 1 waiting"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_farm_that_requires_verification_promotes_only_what_was_reproduced() {
    let dir = tempfile::tempdir().unwrap();
    let ca = farm_pki(dir.path());
    let packages = dir.path().join("packages");
    let recipes = makepkg::libhello_and_hello();
    makepkg::write_tree(&packages, &recipes);
    makepkg::git_commit_all(&packages, "import");
    let port = quarters_ctl::localfarm::free_ports(1).unwrap()[0];
    let url: url::Url = format!("https://127.0.0.1:{port}/").parse().unwrap();
    let one = TestBuilder::start(&ca, "builder-1", &url).await;
    let two = TestBuilder::start(&ca, "builder-2", &url).await;
    let tables = format!(
        "[verification]\nmode = \"required\"\n\n{GIT_SOURCE}\n[[builder]]\nname = \"builder-1\"\nurl = \"{}\"\n\n[[builder]]\nname = \"builder-2\"\nurl = \"{}\"\n",
        one.url, two.url
    );
    let master = MasterProcess::start(dir.path(), port, &tables).await;
    let ctl = |args: &[&str]| quartersctl(&master.config, args);
    let arch = std::env::consts::ARCH;

    master
        .wait_for("libhello ready", |s| {
            s.ready.iter().any(|r| r.pkgbase == "libhello")
        })
        .await;
    let out = dir.path().join("built");
    let libhello = makepkg::build(&recipes[0], &out);
    one.show(one.succeeded("b1", "libhello", "1.0-1", &libhello));
    master
        .wait_for("a verification of libhello asked for", |s| {
            verification_of(s, "libhello").is_some()
        })
        .await;
    let (ok, text) = ctl(&["promote", "libhello"]);
    assert!(
        !ok && text.contains(&format!(
            "no independent build has reproduced libhello 1.0-1 ({arch}) yet"
        )),
        "{text}"
    );

    let mut v1 = two.succeeded("v1", "libhello", "1.0-1", &libhello);
    v1.purpose = Purpose::Verify;
    two.show(v1);
    master
        .wait_for("v1 judged", |s| verdict(s, "v1").is_some())
        .await;
    let (ok, text) = ctl(&["promote", "libhello"]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("libhello 1.0-1 ({arch})\n")),
        "{text}"
    );

    // hello is accepted but not reproduced: refused, then forced with a reason on record.
    master
        .wait_for("hello ready", |s| {
            s.ready
                .iter()
                .any(|r| r.pkgbase == "hello" && r.verify.is_none())
        })
        .await;
    let hello = makepkg::build(&recipes[1], &out);
    one.show(one.succeeded("b2", "hello", "1.0-1", &hello));
    master
        .wait_for("b2 judged", |s| verdict(s, "b2").is_some())
        .await;
    let (ok, text) = ctl(&["promote", "hello"]);
    assert!(!ok && text.contains("`--force REASON`"), "{text}");
    let (ok, text) = ctl(&[
        "promote",
        "hello",
        "--force",
        "security fix; builder-2 is down",
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "hello 1.0-1 ({arch}) (not reproduced; forced: security fix; builder-2 is down)"
        )),
        "{text}"
    );
    assert!(
        master.log_text().contains(
            "promoted without an independent reproduction (security fix; builder-2 is down)"
        ),
        "{}",
        master.log_text()
    );
}

/// Two builds that differ say nothing of which is honest: a third decides. Here four test
/// builders, and one offence quarantines (`[quarantine] after = 1`).
#[tokio::test(flavor = "multi_thread")]
async fn a_third_build_decides_which_of_two_differing_builds_is_the_odd_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = farm_pki(dir.path());
    let packages = dir.path().join("packages");
    let recipes = makepkg::libhello_and_hello();
    makepkg::write_tree(&packages, &recipes);
    makepkg::git_commit_all(&packages, "import");
    let port = quarters_ctl::localfarm::free_ports(1).unwrap()[0];
    let url: url::Url = format!("https://127.0.0.1:{port}/").parse().unwrap();
    let mut b = Vec::new();
    let mut tables = format!("[quarantine]\nafter = 1\n\n{GIT_SOURCE}\n");
    for i in 1..=4 {
        let builder = TestBuilder::start(&ca, &format!("builder-{i}"), &url).await;
        tables += &format!(
            "\n[[builder]]\nname = \"builder-{i}\"\nurl = \"{}\"\n",
            builder.url
        );
        b.push(builder);
    }
    let master = MasterProcess::start(dir.path(), port, &tables).await;
    let why = |name: &str| quartersctl(&master.config, &["why", name]).1;
    let builders = || quartersctl(&master.config, &["builder", "list"]).1;
    let out = dir.path().join("built");
    // Two makepkg runs a second apart: the same sources, other bytes.
    let build_twice = |i: usize| {
        let first = makepkg::build(&recipes[i], &out.join("a"));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = makepkg::build(&recipes[i], &out.join("b"));
        assert_ne!(
            std::fs::read(&first).unwrap(),
            std::fs::read(&second).unwrap()
        );
        (first, second)
    };
    let verify = |builder: &TestBuilder, id: &str, pkgbase: &str, file: &std::path::Path| {
        let mut v = builder.succeeded(id, pkgbase, "1.0-1", file);
        v.purpose = Purpose::Verify;
        builder.show(v);
    };

    // libhello: builder-1's accepted build is the odd one; builders 2 and 3 agree.
    master
        .wait_for("libhello ready", |s| {
            s.ready.iter().any(|r| r.pkgbase == "libhello")
        })
        .await;
    let (accepted, other) = build_twice(0);
    b[0].show(b[0].succeeded("b1", "libhello", "1.0-1", &accepted));
    master
        .wait_for("libhello verification asked", |s| {
            verification_of(s, "libhello").is_some()
        })
        .await;
    verify(&b[1], "v1", "libhello", &other);
    let state = master
        .wait_for("v1 judged", |s| verdict(s, "v1").is_some())
        .await;
    // Undecided: another builder is asked, and nobody is blamed yet.
    let asked = verification_of(&state, "libhello").expect("a third build asked for");
    assert_eq!(
        asked.verify.as_ref().unwrap().built_by,
        ["builder-1", "builder-2"]
    );
    let w = why("libhello");
    assert!(w.contains("another builder is asked to decide"), "{w}");
    assert!(!builders().contains("quarantined"), "{}", builders());
    verify(&b[2], "v2", "libhello", &other);
    master
        .wait_for("v2 judged", |s| verdict(s, "v2").is_some())
        .await;
    let list = builders();
    let line = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in {list}"))
            .to_owned()
    };
    assert!(
        line("builder-1").contains("quarantined")
            && line("builder-1").contains("its accepted build of libhello 1.0-1")
            && line("builder-1").contains("which agree"),
        "{list}"
    );
    assert!(line("builder-2").contains("validated"), "{list}");
    let state = master.wait_for("state", |_| true).await;
    assert!(verification_of(&state, "libhello").is_none());

    // hello: builder-2's verification is the odd one; builder-3 reproduces builder-4's build.
    master
        .wait_for("hello ready", |s| {
            s.ready
                .iter()
                .any(|r| r.pkgbase == "hello" && r.verify.is_none())
        })
        .await;
    let (accepted, other) = build_twice(1);
    b[3].show(b[3].succeeded("b2", "hello", "1.0-1", &accepted));
    master
        .wait_for("hello verification asked", |s| {
            verification_of(s, "hello").is_some()
        })
        .await;
    verify(&b[1], "v3", "hello", &other);
    master
        .wait_for("v3 judged", |s| verdict(s, "v3").is_some())
        .await;
    verify(&b[2], "v4", "hello", &accepted);
    master
        .wait_for("v4 judged", |s| verdict(s, "v4").is_some())
        .await;
    let list = builders();
    let line = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in {list}"))
            .to_owned()
    };
    assert!(
        line("builder-2").contains("quarantined")
            && line("builder-2").contains("its verification build v3 of hello 1.0-1"),
        "{list}"
    );
    assert!(line("builder-3").contains("validated"), "{list}");
    assert!(line("builder-4").contains("validated"), "{list}");
    let w = why("hello");
    assert!(w.contains("verification: reproduced\n"), "{w}");
}

/// A verification goes to another machine where the farm has one: two builders of one machine
/// are one machine's word.
#[tokio::test(flavor = "multi_thread")]
async fn a_verification_goes_to_another_machine_where_the_farm_has_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = farm_pki(dir.path());
    let packages = dir.path().join("packages");
    let recipes = makepkg::libhello_and_hello();
    makepkg::write_tree(&packages, &recipes);
    makepkg::git_commit_all(&packages, "import");
    let port = quarters_ctl::localfarm::free_ports(1).unwrap()[0];
    let url: url::Url = format!("https://127.0.0.1:{port}/").parse().unwrap();
    let mut b = Vec::new();
    let mut tables = format!("{GIT_SOURCE}\n");
    for (i, machine) in [(1, "aa"), (2, "aa"), (3, "bb")] {
        let builder = TestBuilder::start(&ca, &format!("builder-{i}"), &url).await;
        builder.edit(|s| s.machine = Some(machine.repeat(32)));
        tables += &format!(
            "\n[[builder]]\nname = \"builder-{i}\"\nurl = \"{}\"\n",
            builder.url
        );
        b.push(builder);
    }
    let master = MasterProcess::start(dir.path(), port, &tables).await;
    master
        .wait_for("libhello ready", |s| {
            s.ready.iter().any(|r| r.pkgbase == "libhello")
        })
        .await;
    let libhello = makepkg::build(&recipes[0], &dir.path().join("built"));
    b[0].show(b[0].succeeded("b1", "libhello", "1.0-1", &libhello));
    let state = master
        .wait_for("a verification of libhello asked for", |s| {
            verification_of(s, "libhello").is_some()
        })
        .await;
    assert_eq!(
        verification_of(&state, "libhello")
            .unwrap()
            .verify
            .as_ref()
            .unwrap()
            .built_by,
        ["builder-1", "builder-2"]
    );
}

/// `agree = 3`: the accepted build and two independent reproductions.
#[tokio::test(flavor = "multi_thread")]
async fn a_farm_can_ask_for_more_than_one_independent_reproduction() {
    let dir = tempfile::tempdir().unwrap();
    let ca = farm_pki(dir.path());
    let packages = dir.path().join("packages");
    let recipes = makepkg::libhello_and_hello();
    makepkg::write_tree(&packages, &recipes);
    makepkg::git_commit_all(&packages, "import");
    let port = quarters_ctl::localfarm::free_ports(1).unwrap()[0];
    let url: url::Url = format!("https://127.0.0.1:{port}/").parse().unwrap();
    let mut b = Vec::new();
    let mut tables = format!("[verification]\nmode = \"required\"\nagree = 3\n\n{GIT_SOURCE}\n");
    for i in 1..=3 {
        let builder = TestBuilder::start(&ca, &format!("builder-{i}"), &url).await;
        tables += &format!(
            "\n[[builder]]\nname = \"builder-{i}\"\nurl = \"{}\"\n",
            builder.url
        );
        b.push(builder);
    }
    let master = MasterProcess::start(dir.path(), port, &tables).await;
    let ctl = |args: &[&str]| quartersctl(&master.config, args);
    master
        .wait_for("libhello ready", |s| {
            s.ready.iter().any(|r| r.pkgbase == "libhello")
        })
        .await;
    let libhello = makepkg::build(&recipes[0], &dir.path().join("built"));
    b[0].show(b[0].succeeded("b1", "libhello", "1.0-1", &libhello));
    master
        .wait_for("a verification asked for", |s| {
            verification_of(s, "libhello").is_some()
        })
        .await;
    let mut v1 = b[1].succeeded("v1", "libhello", "1.0-1", &libhello);
    v1.purpose = Purpose::Verify;
    b[1].show(v1);
    let state = master
        .wait_for("v1 judged", |s| verdict(s, "v1").is_some())
        .await;
    // One reproduction of two: still asked for, from the third builder only.
    assert_eq!(
        verification_of(&state, "libhello")
            .expect("a second verification asked for")
            .verify
            .as_ref()
            .unwrap()
            .built_by,
        ["builder-1", "builder-2"]
    );
    let w = ctl(&["why", "libhello"]).1;
    assert!(
        w.contains("verification: pending: 1 of 2 independent reproductions"),
        "{w}"
    );
    let (ok, text) = ctl(&["promote", "libhello"]);
    assert!(!ok, "{text}");
    let mut v2 = b[2].succeeded("v2", "libhello", "1.0-1", &libhello);
    v2.purpose = Purpose::Verify;
    b[2].show(v2);
    let state = master
        .wait_for("v2 judged", |s| verdict(s, "v2").is_some())
        .await;
    assert!(verification_of(&state, "libhello").is_none());
    assert!(
        ctl(&["why", "libhello"])
            .1
            .contains("verification: reproduced\n"),
        "{}",
        ctl(&["why", "libhello"]).1
    );
    let (ok, text) = ctl(&["promote", "libhello"]);
    assert!(ok, "{text}");
}

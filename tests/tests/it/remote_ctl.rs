//! `quartersctl status|why --master URL --ca FILE`: the master's answers read over HTTPS from
//! any machine are the ones its spool gives; nothing that changes the farm goes that way; and
//! a master whose certificate the farm's CA did not sign is not believed.

use quarters_common::pki;
use quarters_ctl::localfarm::free_ports;
use quarters_tests::makepkg::{self, recipe};
use quarters_tests::master::{MasterProcess, farm_pki};

const ARCH: &str = std::env::consts::ARCH;

fn remote(master: &MasterProcess, ca: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = quarters_tests::command("quartersctl")
        .args(args)
        .arg("--master")
        .arg(master.url.as_str())
        .arg("--ca")
        .arg(ca.join(pki::CA_CERT_FILE))
        .output()
        .expect("running quartersctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_why_over_https_answer_as_the_spool_does() {
    let dir = tempfile::tempdir().unwrap();
    let ca = farm_pki(dir.path());
    let packages = dir.path().join("packages");
    makepkg::write_tree(
        &packages,
        &[
            recipe("hello", "1.0-1", ARCH, &[], ":"),
            recipe("app", "1.0-1", ARCH, &["hello"], ":"),
        ],
    );
    makepkg::git_commit_all(&packages, "import");
    let port = free_ports(1).unwrap()[0];
    let master = MasterProcess::start(
        dir.path(),
        port,
        "[[source]]\nname = \"main\"\nkind = \"git\"\npath = \"packages\"\n",
    )
    .await;
    master
        .wait_for("hello ready, app waiting", |s| s.ready.len() == 1)
        .await;

    let (ok, spool) = quarters_tests::quartersctl(&master.config, &["why", "app"]);
    assert!(ok, "{spool}");
    let (ok, https) = remote(&master, &ca, &["why", "app"]);
    assert!(ok, "{https}");
    assert_eq!(https, spool);
    quarters_tests::assert_contains(&https, &["app 1.0-1", "waiting", "hello"]);

    let (ok, spool) = quarters_tests::quartersctl(&master.config, &["status"]);
    assert!(ok, "{spool}");
    let (ok, https) = remote(&master, &ca, &["status"]);
    assert!(ok, "{https}");
    assert_eq!(https, spool);
    quarters_tests::assert_contains(&https, &["source main (git)", "ready hello 1.0-1"]);

    // A refusal carries its reason, and a name is one path segment, never a path.
    let (ok, text) = remote(&master, &ca, &["why", "nope"]);
    assert!(!ok);
    quarters_tests::assert_contains(&text, &["no package \"nope\" in any source"]);
    let (ok, text) = remote(&master, &ca, &["why", "../status"]);
    assert!(!ok);
    quarters_tests::assert_contains(&text, &["no package \"../status\" in any source"]);

    // Changes go through the spool only.
    let (ok, text) = remote(&master, &ca, &["promote", "hello"]);
    assert!(!ok);
    quarters_tests::assert_contains(&text, &["--master"]);

    // Another farm's CA does not vouch for this master.
    let other = farm_pki(&dir.path().join("other"));
    let (ok, text) = remote(&master, &other, &["status"]);
    assert!(!ok, "{text}");
    quarters_tests::assert_contains(&text, &["master at", "certificate"]);
}

//! Hostile PKGBUILDs on the master: a package without `.SRCINFO` is evaluated by running its
//! PKGBUILD, which must reach nothing of the master (its key, its state, its port) and publish
//! nothing but a line of its own failure.

use std::path::Path;

use quarters_ctl::localfarm::free_ports;
use quarters_tests::master::{GIT_SOURCE, MasterProcess, RunAs, farm_pki};

/// A PKGBUILD whose version says what it could reach (`1.key.state.port` if everything, `1`
/// if nothing). It depends on what no
/// source provides, so that the master publishes it, version and all, among its problems.
fn snoop(key: &Path, state: &Path, port: u16) -> String {
    format!(
        r#"pkgname=snoop
pkgver=1
[ -r {key} ] && pkgver+=.key
touch {state}/planted 2>/dev/null && pkgver+=.state
(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && pkgver+=.port
pkgrel=1
arch=(any)
depends=(nothing-provides-this)
"#,
        key = key.display(),
        state = state.display(),
    )
}

/// A PKGBUILD that prints eight megabytes to stderr, then the master's key, and fails.
fn noisy(key: &Path) -> String {
    format!(
        "pkgname=noisy\npkgver=1\npkgrel=1\narch=(any)\nhead -c 8000000 /dev/zero | tr '\\0' x >&2\necho >&2\ncat {} >&2\nexit 1\n",
        key.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pkgbuild_evaluated_by_a_service_master_reaches_none_of_its_files() {
    let dir = tempfile::tempdir().unwrap();
    farm_pki(dir.path());
    let port = free_ports(1).unwrap()[0];
    let key = dir.path().join("ca/master.key");
    let state = dir.path().join("state");
    let tree = dir.path().join("packages");
    let put = |path: &str, text: &str| {
        let path = tree.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    put("snoop/PKGBUILD", &snoop(&key, &state, port));
    put("noisy/PKGBUILD", &noisy(&key));
    // The package after them, which the farm goes on to plan.
    put(
        "good/PKGBUILD",
        "pkgname=good\npkgver=2\npkgrel=1\narch=(any)\n",
    );
    put(
        "good/.SRCINFO",
        "pkgbase = good\n\tpkgver = 2\n\tpkgrel = 1\n\tarch = any\n\npkgname = good\n",
    );
    quarters_tests::makepkg::git_commit_all(&tree, "hostile PKGBUILDs");
    // The service user owns the directory, as it owns its StateDirectory and its key.
    let chown = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(chown.success());

    let master = MasterProcess::start_as(dir.path(), port, GIT_SOURCE, RunAs::Service).await;
    let published = master
        .wait_for("the three packages scanned", |s| {
            ["noisy", "snoop"]
                .iter()
                .all(|name| s.problems.iter().any(|p| p.pkgbase == *name))
                && s.counts.get(&quarters_common::api::v1::PackageState::Ready) == Some(&1)
        })
        .await;

    // The snoop evaluated, and could read, write and reach nothing of the master.
    let problems = &published.problems;
    let snooped = problems.iter().find(|p| p.pkgbase == "snoop").unwrap();
    assert_eq!(
        snooped.version.as_deref(),
        Some("1-1"),
        "what the PKGBUILD reached: {snooped:#?}"
    );
    assert!(!state.join("planted").exists());

    // The noisy one is one line of its own failure: not megabytes, not the key.
    let problem = published
        .problems
        .iter()
        .find(|p| p.pkgbase == "noisy")
        .unwrap();
    assert!(
        problem.reason.contains("PKGBUILD does not evaluate"),
        "{}",
        problem.reason
    );
    assert!(
        !problem.reason.contains('\n') && problem.reason.len() < 500,
        "{} bytes: {:.600}",
        problem.reason.len(),
        problem.reason
    );
    assert!(
        !problem.reason.contains("PRIVATE KEY"),
        "{}",
        problem.reason
    );
    let whole = serde_json::to_string(&published).unwrap();
    assert!(!whole.contains("PRIVATE KEY"));
}

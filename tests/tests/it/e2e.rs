//! The whole farm, end to end: a master and three builders (real processes, real TLS, real
//! makepkg builds in fresh roots) over the bundled example packages served from git, then SVN,
//! then CVS; promotion; and a stock pacman installing from the live repository.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use quarters_common::api::v1::MasterState;
use quarters_ctl::localfarm::LocalFarm;
use quarters_master::db::{Db, VerdictKind};
use quarters_tests::pacman::PacmanRoot;
use quarters_tests::template::template_root;
use quarters_tests::{start_farm_in, wait_for_farm};

/// The examples that build: all but `broken` and `needs-broken`.
pub const BUILDABLE: &[&str] = &[
    "banner",
    "epoch-demo",
    "hello",
    "hello-data",
    "hello-tools",
    "libhello",
    "split-demo",
];

pub enum Kind {
    Git,
    Svn,
    Cvs,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Puts the examples into a source of `kind` under `dir`; returns the master's source table.
pub fn example_source(kind: &Kind, dir: &Path) -> String {
    let tree = dir.join("packages");
    quarters_ctl::examples::write(&tree).unwrap();
    match kind {
        Kind::Git => {
            quarters_tests::makepkg::git_commit_all(&tree, "the examples");
            "[[source]]\nname = \"main\"\nkind = \"git\"\npath = \"packages\"\n".to_owned()
        }
        Kind::Svn => {
            let repo = dir.join("svnrepo");
            run(Command::new("svnadmin").arg("create").arg(&repo));
            let url = format!("file://{}/packages", repo.display());
            run(Command::new("svn")
                .args(["import", "-q", "-m", "the examples"])
                .arg(&tree)
                .arg(&url));
            format!("[[source]]\nname = \"main\"\nkind = \"svn\"\nurl = \"{url}\"\n")
        }
        Kind::Cvs => {
            let root = dir.join("cvsroot");
            run(Command::new("cvs")
                .arg("-Q")
                .arg("-d")
                .arg(&root)
                .arg("init"));
            run(Command::new("cvs")
                .arg("-Q")
                .arg("-d")
                .arg(&root)
                .args([
                    "import",
                    "-m",
                    "the examples",
                    "packages",
                    "vendor",
                    "start",
                ])
                .current_dir(&tree));
            // A CVS revision is a date a little in the past: let the import settle.
            std::thread::sleep(Duration::from_millis(3100));
            format!(
                "[[source]]\nname = \"main\"\nkind = \"cvs\"\nroot = \"{}\"\nmodule = \"packages\"\n",
                root.display()
            )
        }
    }
}

/// The builder and master config of a real farm.
pub fn real_farm_config(source: &str, lease: u64) -> (String, String) {
    let template = template_root();
    (
        format!(
            "[build_root]\ntemplate = \"{}\"\n\n{source}",
            template.display()
        ),
        format!(
            "driver = \"chroot\"\n\n[chroot]\ntemplate = \"{}\"\n\n[claims]\nlease = {lease}\n",
            template.display()
        ),
    )
}

fn pending(s: &MasterState) -> u64 {
    s.counts
        .iter()
        .filter(|(k, _)| k.is_pending())
        .map(|(_, n)| n)
        .sum()
}

/// Waits until nothing is left to build.
pub async fn wait_until_done(farm: &LocalFarm) -> MasterState {
    wait_for_farm(
        farm,
        "everything built or failed",
        Duration::from_secs(600),
        |s| {
            !s.counts.is_empty()
                && s.sources.iter().all(|src| src.revision.is_some())
                && pending(s) == 0
        },
    )
    .await
}

/// Every buildable example was accepted exactly once, and built by no one else.
pub fn assert_built_exactly_once(dir: &Path) {
    let db = Db::open(&dir.join("master-state/master.sqlite")).unwrap();
    for name in BUILDABLE {
        let builds = db.builds_of(name, 20).unwrap();
        let accepted = builds
            .iter()
            .filter(|b| b.verdict == VerdictKind::Accepted)
            .count();
        assert_eq!(accepted, 1, "{name}: {builds:#?}");
        assert_eq!(
            builds.len(),
            1,
            "{name} was built more than once: {builds:#?}"
        );
    }
}

pub fn quartersctl(farm: &LocalFarm, args: &[&str]) -> (bool, String) {
    quarters_tests::quartersctl(&farm.master.config, args)
}

/// `hello` from the live repository, installed by a stock pacman and run.
pub fn install_and_run_hello(farm: &LocalFarm) -> String {
    let root = PacmanRoot::new(
        &farm.ca_cert,
        &[("quarters", format!("{}repo/live/$arch", farm.master.url))],
    );
    root.install(&["hello"]);
    let out = Command::new(root.root.join("usr/bin/hello"))
        .env("LD_LIBRARY_PATH", root.root.join("usr/lib"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn end_to_end(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let source = example_source(&kind, dir.path());
    let (master, builder) = real_farm_config(&source, 30);
    let mut farm = start_farm_in(dir.path(), 3, &master, &builder).await;
    let state = wait_until_done(&farm).await;
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Built),
        Some(&(BUILDABLE.len() as u64)),
        "{state:#?}"
    );
    assert_built_exactly_once(dir.path());

    // The failing example failed in its build stage, and its log is there over HTTPS.
    let broken = state
        .problems
        .iter()
        .find(|p| p.pkgbase == "broken")
        .expect("broken is a problem");
    assert_eq!(broken.state, quarters_common::api::v1::PackageState::Failed);
    assert!(
        broken.reason.starts_with("build: exit status"),
        "{broken:?}"
    );
    let log_url = broken.log.as_ref().expect("the failed build's log is kept");
    let log = farm
        .client(&farm.master)
        .get_bytes(log_url.path(), 1 << 20)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&log).contains("this example fails on purpose"));
    let dependent = state
        .problems
        .iter()
        .find(|p| p.pkgbase == "needs-broken")
        .unwrap();
    assert_eq!(
        dependent.state,
        quarters_common::api::v1::PackageState::IndirectFailed
    );

    // Promotion with --with-deps moves the closure: hello brings libhello.
    let (ok, text) = quartersctl(&farm, &["promote", "hello"]);
    assert!(!ok && text.contains("libhello"), "{text}");
    let (ok, text) = quartersctl(&farm, &["promote", "hello", "--with-deps"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("hello 1.0-1") && text.contains("libhello 1.0-1 (x86_64) (dependency)"),
        "{text}"
    );
    assert_eq!(install_and_run_hello(&farm), "hello from libhello, world\n");
    farm.stop(Duration::from_secs(20)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_farm_builds_the_examples_from_git() {
    end_to_end(Kind::Git).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_farm_builds_the_examples_from_svn() {
    end_to_end(Kind::Svn).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_farm_builds_the_examples_from_cvs() {
    end_to_end(Kind::Cvs).await;
}

//! Helpers for the workspace tests: where the built binaries are, and farms started from them.
//!
//! The tests start the real `quarters-master`, `quarters-builder` and `quartersctl` binaries.
//! They live in other packages of the workspace, so Cargo does not hand their paths to this
//! crate; they are found in the target directory beside the test executable instead.
//! `contrib/test.sh` builds them before the tests run.

pub mod makepkg;
pub mod master;
pub mod pacman;
pub mod signer;
pub mod template;
pub mod testbuilder;

use std::path::PathBuf;
use std::process::Command;

use quarters_ctl::localfarm::{FarmSpec, LocalFarm};

/// The directory holding the workspace's binaries for this test run's profile.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    // target/<profile>/deps/<test> -> target/<profile>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/<profile>/deps")
        .to_owned();
    for bin in ["quarters-master", "quarters-builder", "quartersctl"] {
        assert!(
            dir.join(bin).is_file(),
            "{} is missing: build the binaries first (`cargo build --workspace --bins`, as contrib/test.sh does)",
            dir.join(bin).display()
        );
    }
    dir
}

/// The path of one of the workspace's binaries.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A command for one of the workspace's binaries, logging at `info`.
pub fn command(name: &str) -> Command {
    let mut cmd = Command::new(bin(name));
    cmd.env("RUST_LOG", "info");
    cmd
}

/// Runs `quartersctl ARGS --config CONFIG` against a master's spool: whether it succeeded, and
/// what it printed (stdout, then stderr).
pub fn quartersctl(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = command("quartersctl")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("running quartersctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Starts a local farm with `builders` simulating builders in a fresh temporary directory.
pub async fn start_farm(builders: usize) -> (tempfile::TempDir, LocalFarm) {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let farm = start_farm_in(dir.path(), builders, "", "driver = \"sim\"").await;
    (dir, farm)
}

/// Starts a local farm in `dir`, with extra master and builder config: TOML, whose keys are
/// added to those the farm writes itself.
pub async fn start_farm_in(
    dir: &std::path::Path,
    builders: usize,
    master_extra: &str,
    builder_extra: &str,
) -> LocalFarm {
    let spec = FarmSpec {
        dir: dir.to_owned(),
        builders,
        bin_dir: bin_dir(),
        master_extra: toml::from_str(master_extra).expect("the master's extra config is TOML"),
        builder_extra: toml::from_str(builder_extra).expect("the builders' extra config is TOML"),
        // Signed, as the demo and a farm in production are.
        signing: true,
    };
    LocalFarm::start(&spec)
        .await
        .expect("starting a local farm")
}

/// Long-polls the master behind `client` until its state satisfies `done`, and returns that
/// state; after `timeout`, fails the test with the last state and `context()` (logs, say).
pub async fn wait_for_master(
    client: &quarters_common::client::PeerClient,
    what: &str,
    timeout: std::time::Duration,
    context: impl Fn() -> String,
    done: impl Fn(&quarters_common::api::v1::MasterState) -> bool,
) -> quarters_common::api::v1::MasterState {
    use quarters_common::api::v1::{MasterState, Role};
    use quarters_common::client::Fetched;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut etag = None;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        let wait = std::time::Duration::from_secs(2);
        match client
            .state::<MasterState>(Role::Master, etag.as_deref(), wait)
            .await
        {
            Ok(Fetched::New { state, etag: e }) => {
                if done(&state.content) {
                    return state.content;
                }
                etag = Some(e);
                last = Some(state.content);
            }
            Ok(Fetched::Unchanged) => {}
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    panic!(
        "timed out waiting for {what}; last state: {last:#?}\n{}",
        context()
    );
}

/// Waits as [`wait_for_master`] on a local farm, showing every node's log on a timeout.
pub async fn wait_for_farm(
    farm: &LocalFarm,
    what: &str,
    timeout: std::time::Duration,
    done: impl Fn(&quarters_common::api::v1::MasterState) -> bool,
) -> quarters_common::api::v1::MasterState {
    let logs = || {
        farm.nodes()
            .map(|n| {
                format!(
                    "--- {}\n{}",
                    n.name,
                    std::fs::read_to_string(&n.log).unwrap_or_default()
                )
            })
            .collect()
    };
    wait_for_master(&farm.client(&farm.master), what, timeout, logs, done).await
}

/// Asserts that `haystack` contains every one of `needles`, showing all of it if not.
#[track_caller]
pub fn assert_contains(haystack: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            haystack.contains(needle),
            "expected {needle:?} in:\n{haystack}"
        );
    }
}

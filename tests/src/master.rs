//! A real `quarters-master` process with a config the test writes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use quarters_common::api::v1::MasterState;
use quarters_common::client::{ClientLimits, PeerClient};
use quarters_common::tls::FarmTrust;
use quarters_common::{NodeName, pki};
use tokio::process::{Child, Command};
use url::Url;

/// A master process; killed when dropped.
pub struct MasterProcess {
    pub url: Url,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    pub client: PeerClient,
    run_as: RunAs,
    child: Option<Child>,
}

/// How the master process is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAs {
    /// As the test runs: root, in the host's namespaces.
    Caller,
    /// As `contrib/systemd/quarters-master.service` runs it, as far as a machine without
    /// systemd allows: as an unprivileged user (`nobody`, which must own the test's directory)
    /// with its own `HOME` and `NoNewPrivileges`, the whole file system read-only but the test's directory
    /// (`ProtectSystem=strict` with its `StateDirectory`), a `/dev` of the harmless devices
    /// only (`PrivateDevices`) and a temporary directory of its own (`PrivateTmp`).
    Service,
}

/// What `unshare --mount` runs to set up [`RunAs::Service`]: `$1` is the test's directory, the
/// rest the master's command line.
const SERVICE_SETUP: &str = r#"set -eu
dir=$1; shift
mount --bind "$dir" "$dir"
devs=$dir/.service-dev
mkdir -p "$devs" "$dir/.service-tmp"
chown 65534:65534 "$dir/.service-tmp"
mount -t tmpfs -o mode=755,nosuid,noexec tmpfs "$devs"
for node in null zero full random urandom tty; do
  touch "$devs/$node"
  mount --bind "/dev/$node" "$devs/$node"
done
mount --move "$devs" /dev
mount -o remount,bind,ro /
export TMPDIR=$dir/.service-tmp HOME=/nonexistent USER=nobody LOGNAME=nobody
exec setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs -- "$@"
"#;

/// The config table of the git repository `packages` in a test's directory, as source `main`.
pub const GIT_SOURCE: &str = "[[source]]\nname = \"main\"\nkind = \"git\"\npath = \"packages\"\n";

/// Starts a test builder `builder-1` and a master on a free port that reads [`GIT_SOURCE`] and
/// follows that builder, with the tables `extra` first. The farm CA must be in `dir/ca`
/// ([`farm_pki`]).
pub async fn master_with_test_builder(
    dir: &Path,
    extra: &str,
) -> (MasterProcess, crate::testbuilder::TestBuilder) {
    let port = quarters_ctl::localfarm::free_ports(1).unwrap()[0];
    let master_url: Url = format!("https://127.0.0.1:{port}/").parse().unwrap();
    let builder =
        crate::testbuilder::TestBuilder::start(&dir.join("ca"), "builder-1", &master_url).await;
    let tables = format!(
        "{extra}\n{GIT_SOURCE}\n[[builder]]\nname = \"builder-1\"\nurl = \"{}\"\n",
        builder.url
    );
    let master = MasterProcess::start(dir, port, &tables).await;
    (master, builder)
}

/// Creates the farm CA in `dir/ca` and the master's certificate; returns the CA directory.
pub fn farm_pki(dir: &Path) -> PathBuf {
    let ca = dir.join("ca");
    pki::init_ca(&ca, false).unwrap();
    let master = NodeName::new("master").unwrap();
    pki::issue_cert(&ca, &ca, &master, &["127.0.0.1".into()], false).unwrap();
    ca
}

impl MasterProcess {
    /// Writes `dir/master.toml` (the given tables appended to the basics) and starts the
    /// master on a free port.
    pub async fn start(dir: &Path, port: u16, tables: &str) -> Self {
        Self::start_as(dir, port, tables, RunAs::Caller).await
    }

    /// [`MasterProcess::start`], run as `run_as` says.
    pub async fn start_as(dir: &Path, port: u16, tables: &str, run_as: RunAs) -> Self {
        let url: Url = format!("https://127.0.0.1:{port}/").parse().unwrap();
        let config = dir.join("master.toml");
        std::fs::write(
            &config,
            format!(
                "name = \"master\"\nlisten = \"127.0.0.1:{port}\"\nurl = \"{url}\"\nstate_dir = \"state\"\narch = [\"{}\"]\n\n[tls]\nca = \"ca/ca.pem\"\ncert = \"ca/master.pem\"\nkey = \"ca/master.key\"\n\n{tables}",
                std::env::consts::ARCH
            ),
        )
        .unwrap();
        let trust = FarmTrust::load(&dir.join("ca/ca.pem")).unwrap();
        let client = PeerClient::new(
            &trust,
            NodeName::new("master").unwrap(),
            url.clone(),
            ClientLimits::default(),
        );
        let mut master = MasterProcess {
            url,
            config,
            state_dir: dir.join("state"),
            log: dir.join("master.log"),
            client,
            run_as,
            child: None,
        };
        master.spawn().await;
        master
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = match self.run_as {
            RunAs::Caller => Command::new(crate::bin("quarters-master")),
            RunAs::Service => {
                let dir = self
                    .config
                    .parent()
                    .expect("the config is in the test's directory");
                let mut cmd = Command::new("unshare");
                cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                    .arg(SERVICE_SETUP)
                    .arg("sh")
                    .arg(dir)
                    .arg(crate::bin("quarters-master"));
                cmd
            }
        };
        let child = cmd
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..200 {
            if self.client.get_bytes("/v1/health", 1 << 16).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the master did not come up:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the master with SIGKILL, as a crash would.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts the master again with the same config.
    pub async fn restart(&mut self) {
        self.kill9().await;
        self.spawn().await;
    }

    /// Waits until the master's state satisfies `done`, and returns that state.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&MasterState) -> bool) -> MasterState {
        crate::wait_for_master(
            &self.client,
            what,
            Duration::from_secs(60),
            || self.log_text(),
            done,
        )
        .await
    }
}

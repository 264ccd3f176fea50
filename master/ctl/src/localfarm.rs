//! A whole farm on one machine: a fresh CA, a master and N builders as real processes on
//! loopback. `quartersctl demo` runs one; the workspace tests start them the same way.

pub mod configs;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use quarters_common::NodeName;
use quarters_common::api::v1::{HEALTH_PATH, Health, MasterState, Role};
use quarters_common::client::{ClientLimits, Fetched, PeerClient};
use quarters_common::pki;
use quarters_common::tls::FarmTrust;
use tokio::process::{Child, Command};
use url::Url;

/// What to start.
#[derive(Clone, Debug)]
pub struct FarmSpec {
    /// Holds the CA, the node certificates, the configs and the logs.
    pub dir: PathBuf,
    pub builders: usize,
    /// Where `quarters-master` and `quarters-builder` are.
    pub bin_dir: PathBuf,
    /// Added to the master's config: its `[[source]]` tables, say ([`configs::MasterExtra`]).
    pub master_extra: toml::Table,
    /// Added to every builder's config: its driver, say ([`configs::BuilderExtra`]).
    pub builder_extra: toml::Table,
    /// Make a farm key and run a signer for the master, as a farm in production does.
    pub signing: bool,
}

/// The farm's signer: a task of the process that started the farm, never of the master, with
/// the key in `DIR/signing`.
#[derive(Debug)]
pub struct LocalSigner {
    pub fingerprint: quarters_master::signing::Fingerprint,
    /// The armored public key, for `pacman-key --add`.
    pub public_key: PathBuf,
    /// The signer's key directory (`quartersctl key ... --dir`).
    pub key_dir: PathBuf,
    pub socket: PathBuf,
    _stop: tokio_util::sync::DropGuard,
}

impl LocalSigner {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        use quarters_master::signing::{FarmKey, daemon, key};
        let key_dir = dir.join("signing");
        let farm_key = FarmKey::init(&key_dir, "Quarters local farm <quarters@localhost>", false)?;
        let socket = dir.join("signer.sock");
        let listener = daemon::bind(&socket)?;
        let stop = tokio_util::sync::CancellationToken::new();
        let fingerprint = farm_key.fingerprint();
        tokio::spawn(daemon::run(
            listener,
            std::sync::Arc::new(daemon::KeyStore::load(&key_dir)?),
            daemon::Policy::default(),
            stop.clone().cancelled_owned(),
        ));
        Ok(LocalSigner {
            fingerprint,
            public_key: key_dir.join(key::PUBLIC_FILE),
            key_dir: key_dir.clone(),
            socket,
            _stop: stop.drop_guard(),
        })
    }
}

/// One node of a local farm.
#[derive(Debug)]
pub struct LocalNode {
    pub name: NodeName,
    pub role: Role,
    pub url: Url,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

/// A running local farm. Dropping it kills whatever is still running.
#[derive(Debug)]
pub struct LocalFarm {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub master: LocalNode,
    pub builders: Vec<LocalNode>,
    /// The signer, when the farm signs.
    pub signer: Option<LocalSigner>,
    trust: FarmTrust,
    bin_dir: PathBuf,
}

impl LocalFarm {
    /// Creates the CA, certificates and configs in `spec.dir`, and starts every node.
    pub async fn start(spec: &FarmSpec) -> anyhow::Result<Self> {
        for bin in ["quarters-master", "quarters-builder"] {
            let path = spec.bin_dir.join(bin);
            if !path.is_file() {
                bail!(
                    "{} is missing; build the workspace first (`cargo build --workspace --bins`)",
                    path.display()
                );
            }
        }
        let (ca_cert, master, builders) = issue(spec)?;
        let signer = match spec.signing {
            true => Some(
                LocalSigner::start(&spec.dir)
                    .await
                    .context("starting the farm's signer")?,
            ),
            false => None,
        };
        write_configs(
            spec,
            &master,
            &builders,
            signer
                .as_ref()
                .map(|s| (s.socket.as_path(), s.public_key.as_path())),
        )?;

        let mut farm = LocalFarm {
            dir: spec.dir.clone(),
            trust: FarmTrust::load(&ca_cert)?,
            ca_cert,
            master,
            builders,
            signer,
            bin_dir: spec.bin_dir.clone(),
        };
        farm.master.spawn(&spec.bin_dir.join("quarters-master"))?;
        for b in &mut farm.builders {
            b.spawn(&spec.bin_dir.join("quarters-builder"))?;
        }
        farm.wait_healthy(Duration::from_secs(30)).await?;
        Ok(farm)
    }

    /// A client that reads `node` with the farm's trust.
    pub fn client(&self, node: &LocalNode) -> PeerClient {
        PeerClient::new(
            &self.trust,
            node.name.clone(),
            node.url.clone(),
            ClientLimits::default(),
        )
    }

    /// What `node` says of itself at `GET /v1/health`, counters included.
    pub async fn health(&self, node: &LocalNode) -> anyhow::Result<Health> {
        let body = self.client(node).get_bytes(HEALTH_PATH, 1 << 20).await?;
        serde_json::from_slice(&body)
            .with_context(|| format!("reading the health of {}", node.name))
    }

    /// Waits until every node answers its health probe.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut nodes: Vec<&mut LocalNode> = std::iter::once(&mut self.master)
            .chain(self.builders.iter_mut())
            .collect();
        let clients: Vec<PeerClient> = nodes
            .iter()
            .map(|n| {
                PeerClient::new(
                    &self.trust,
                    n.name.clone(),
                    n.url.clone(),
                    ClientLimits::default(),
                )
            })
            .collect();
        for (node, client) in nodes.iter_mut().zip(&clients) {
            loop {
                if client.get_bytes(HEALTH_PATH, 1 << 16).await.is_ok() {
                    break;
                }
                if let Some(status) = node.exited()? {
                    bail!(
                        "{} exited ({status}) before serving; the end of {}:\n{}",
                        node.name,
                        node.log.display(),
                        log_tail(&node.log)
                    );
                }
                if tokio::time::Instant::now() > deadline {
                    bail!(
                        "{} did not answer within {timeout:?}; see {}",
                        node.name,
                        node.log.display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Waits until the master's state shows every builder up, and returns that state.
    pub async fn wait_builders_up(&self, timeout: Duration) -> anyhow::Result<MasterState> {
        let client = self.client(&self.master);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut etag: Option<String> = None;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                bail!(
                    "not every builder was up after {timeout:?}; see the logs in {}",
                    self.dir.display()
                );
            }
            let wait = left.min(Duration::from_secs(5));
            match client
                .state::<MasterState>(Role::Master, etag.as_deref(), wait)
                .await?
            {
                Fetched::New { state, etag: e } => {
                    if state.content.builders.iter().all(|b| b.status.is_up()) {
                        return Ok(state.content);
                    }
                    etag = Some(e);
                }
                Fetched::Unchanged => {}
            }
        }
    }

    /// Asks every node to stop (SIGTERM) and waits for them; kills what is left after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<()> {
        for node in self
            .builders
            .iter_mut()
            .chain(std::iter::once(&mut self.master))
        {
            node.stop(grace).await?;
        }
        Ok(())
    }

    /// Stops the builder called `name` as an operator would (SIGTERM), waiting up to `grace`;
    /// then SIGKILL. Returns its exit status.
    pub async fn stop_builder(
        &mut self,
        name: &str,
        grace: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let node = self
            .builders
            .iter_mut()
            .find(|b| b.name.as_str() == name)
            .with_context(|| format!("no builder {name} in this farm"))?;
        node.stop(grace).await
    }

    /// Kills the master with SIGKILL, as a crash would, starts it again with the same config,
    /// and waits until it answers.
    pub async fn crash_and_restart_master(&mut self) -> anyhow::Result<()> {
        self.master.kill().await?;
        self.master.spawn(&self.bin_dir.join("quarters-master"))?;
        self.wait_healthy(Duration::from_secs(30)).await
    }

    /// Fails if any node has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        for node in std::iter::once(&mut self.master).chain(self.builders.iter_mut()) {
            if let Some(status) = node.exited()? {
                bail!(
                    "{} exited ({status}); see {}",
                    node.name,
                    node.log.display()
                );
            }
        }
        Ok(())
    }

    /// The master's state directory: its database, repositories and spool.
    pub fn master_state_dir(&self) -> PathBuf {
        state_dir_of(&self.dir, &self.master.name)
    }

    /// Every node, master first.
    pub fn nodes(&self) -> impl Iterator<Item = &LocalNode> {
        std::iter::once(&self.master).chain(&self.builders)
    }
}

impl LocalNode {
    fn spawn(&mut self, bin: &Path) -> anyhow::Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("creating {}", self.log.display()))?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The running process's `/proc/PID/{name}`, with the pid.
    fn proc_file(&self, name: &str) -> anyhow::Result<(u32, String)> {
        let pid = self
            .pid()
            .with_context(|| format!("{} is not running", self.name))?;
        let text = fs::read_to_string(format!("/proc/{pid}/{name}"))
            .with_context(|| format!("reading /proc/{pid}/{name}"))?;
        Ok((pid, text))
    }

    /// CPU time (user and system) the running process has used, from /proc.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let (pid, stat) = self.proc_file("stat")?;
        // Fields after the command name, which is in parentheses and may hold spaces: utime and
        // stime are the 14th and 15th fields of the whole line, the 12th and 13th after it.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| -> anyhow::Result<u64> {
            Ok(fields
                .get(i)
                .with_context(|| format!("/proc/{pid}/stat has too few fields"))?
                .parse()?)
        };
        let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?
            .filter(|t| *t > 0)
            .unwrap_or(100) as f64;
        Ok(Duration::from_secs_f64(
            (ticks(11)? + ticks(12)?) as f64 / per_second,
        ))
    }

    /// The most memory the running process has held resident (`VmHWM`), in KiB, from /proc.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let (pid, status) = self.proc_file("status")?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("/proc/{pid}/status has no VmHWM"))
    }

    fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        match &mut self.child {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }

    /// Sends SIGTERM and waits up to `grace`; then SIGKILL. Returns the exit status.
    pub async fn stop(
        &mut self,
        grace: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(status) => Ok(Some(status?)),
            Err(_) => {
                tracing::warn!(node = %self.name, "did not stop within {grace:?}; killing it");
                child.kill().await?;
                Ok(Some(child.wait().await?))
            }
        }
    }

    /// Kills the node at once with SIGKILL, as a crash would.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }
}

/// Whether the farm has nothing left to do: every source scanned, and no package waiting, ready
/// or being built (what is left is built, failed or blocked).
pub fn settled(state: &MasterState) -> bool {
    let scanned = !state.sources.is_empty() && state.sources.iter().all(|s| s.revision.is_some());
    let pending: u64 = state
        .counts
        .iter()
        .filter(|(k, _)| k.is_pending())
        .map(|(_, n)| n)
        .sum();
    scanned && !state.counts.is_empty() && pending == 0
}

fn state_dir_of(dir: &Path, name: &NodeName) -> PathBuf {
    dir.join(format!("{name}-state"))
}

/// The last lines of a log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Ports free on 127.0.0.1 right now. They are released before the nodes bind them, so another
/// process could take one in between; on a test machine that is rare, and the node then fails
/// loudly at start-up.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .collect::<Result<Vec<_>, _>>()
        .context("finding free ports on 127.0.0.1")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Makes the farm CA in `DIR/ca`, picks the nodes' ports and issues their certificates:
/// returns the CA certificate, the master and the builders, none started.
fn issue(spec: &FarmSpec) -> anyhow::Result<(PathBuf, LocalNode, Vec<LocalNode>)> {
    let ca_dir = spec.dir.join("ca");
    let ca = pki::init_ca(&ca_dir, false).context("creating the farm CA")?;
    let logs = spec.dir.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;

    let names: Vec<NodeName> = std::iter::once("master".to_owned())
        .chain((1..=spec.builders).map(|i| format!("builder-{i}")))
        .map(|n| NodeName::new(n).expect("fixed names are valid"))
        .collect();
    let ports = free_ports(names.len())?;
    let mut nodes = Vec::new();
    for (name, port) in names.iter().zip(&ports) {
        let sans = ["127.0.0.1".to_owned(), "localhost".to_owned()];
        pki::issue_cert(&ca_dir, &ca_dir, name, &sans, false)
            .with_context(|| format!("issuing the certificate of {name}"))?;
        let role = if nodes.is_empty() {
            Role::Master
        } else {
            Role::Builder
        };
        nodes.push(LocalNode {
            name: name.clone(),
            role,
            url: format!("https://127.0.0.1:{port}/").parse()?,
            config: spec.dir.join(format!("{name}.toml")),
            log: logs.join(format!("{name}.log")),
            child: None,
        });
    }
    let master = nodes.remove(0);
    Ok((ca.cert, master, nodes))
}

/// Writes every node's config. `signer` is the signer's socket and the farm's public key, when
/// the farm signs.
fn write_configs(
    spec: &FarmSpec,
    master: &LocalNode,
    builders: &[LocalNode],
    signer: Option<(&Path, &Path)>,
) -> anyhow::Result<()> {
    let text = configs::master(
        master,
        builders,
        signer.map(|(socket, _)| socket),
        &spec.master_extra,
    )?;
    fs::write(&master.config, text)
        .with_context(|| format!("writing {}", master.config.display()))?;
    // Builders trust the farm key for what they install, as they trust the CA: from their
    // config, never from what the master serves.
    for b in builders {
        let text = configs::builder(
            b,
            master,
            signer.map(|(_, public_key)| public_key),
            &spec.builder_extra,
        )?;
        fs::write(&b.config, text).with_context(|| format!("writing {}", b.config.display()))?;
    }
    Ok(())
}

/// Writes a farm's files as [`LocalFarm::start`] does and starts nothing, for tests of what it
/// writes: a signing farm gets its key, but nothing listens on the socket its master's config
/// names.
#[cfg(test)]
pub(crate) fn write_unstarted(spec: &FarmSpec) -> (LocalNode, Vec<LocalNode>) {
    use quarters_master::signing::{FarmKey, key};
    let (_, master, builders) = issue(spec).unwrap();
    let key_dir = spec.dir.join("signing");
    let socket = spec.dir.join("signer.sock");
    let public_key = key_dir.join(key::PUBLIC_FILE);
    if spec.signing {
        FarmKey::init(&key_dir, "Quarters test farm <quarters@localhost>", false).unwrap();
    }
    let signer = spec
        .signing
        .then_some((socket.as_path(), public_key.as_path()));
    write_configs(spec, &master, &builders, signer).unwrap();
    (master, builders)
}

#[cfg(test)]
mod tests {
    use super::configs::{BuilderExtra, MasterExtra, Source, SourceKind, table};
    use super::*;
    use quarters_builder::config::{BuilderConfig, DriverConfig};
    use quarters_master::config::MasterConfig;

    fn spec(dir: &Path, signing: bool, master_extra: toml::Table) -> FarmSpec {
        FarmSpec {
            dir: dir.to_owned(),
            builders: 2,
            bin_dir: PathBuf::from("/nonexistent"),
            master_extra,
            builder_extra: table(&BuilderExtra::sim(0.005)).unwrap(),
            signing,
        }
    }

    #[test]
    fn the_configs_a_farm_writes_load_with_the_nodes_own_loaders() {
        for signing in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            // A directory with a quote and a space: the serializer quotes it, not we.
            let packages = dir.path().join("the \"packages\"");
            crate::examples::write(&packages).unwrap();
            crate::demo::source::commit_all(&packages, "examples").unwrap();
            let extra = MasterExtra {
                sources: vec![Source {
                    name: "examples".into(),
                    kind: SourceKind::Git {
                        path: packages.clone(),
                    },
                }],
                ..MasterExtra::default()
            };
            let spec = spec(dir.path(), signing, table(&extra).unwrap());
            let (master, builders) = write_unstarted(&spec);

            let m = MasterConfig::load(&master.config).unwrap();
            assert_eq!(m.name, master.name);
            assert_eq!(m.url, master.url);
            assert_eq!(Some(m.listen.port()), master.url.port());
            assert_eq!(m.state_dir, dir.path().join("master-state"));
            assert_eq!(m.identity.name, master.name);
            let followed: Vec<(&NodeName, &Url)> =
                m.builders.iter().map(|b| (&b.name, &b.url)).collect();
            let started: Vec<(&NodeName, &Url)> =
                builders.iter().map(|b| (&b.name, &b.url)).collect();
            assert_eq!(followed, started);
            assert_eq!(m.sources.len(), 1);
            assert_eq!(
                (m.sources[0].name.as_str(), m.sources[0].kind.as_str()),
                ("examples", "git")
            );
            assert_eq!(
                m.sources[0]
                    .options
                    .get("path")
                    .and_then(toml::Value::as_str),
                packages.to_str()
            );
            assert_eq!(
                m.signer,
                signing.then(|| dir.path().join("signer.sock")),
                "{}",
                std::fs::read_to_string(&master.config).unwrap()
            );

            for b in &builders {
                let c = BuilderConfig::load(&b.config).unwrap();
                assert_eq!(c.name, b.name);
                assert_eq!(Some(c.listen.port()), b.url.port());
                assert_eq!((&c.master_name, &c.master_url), (&master.name, &master.url));
                assert_eq!(c.work_dir, dir.path().join(format!("{}-work", b.name)));
                assert_eq!(c.farm_key.is_some(), signing);
                assert!(
                    matches!(c.driver, DriverConfig::Sim { time_scale } if time_scale == 0.005),
                    "{:?}",
                    c.driver
                );
            }
        }
    }

    #[test]
    fn an_extra_key_the_farm_sets_itself_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let extra: toml::Table = toml::from_str("state_dir = \"/elsewhere\"").unwrap();
        let spec = spec(dir.path(), false, extra);
        let (_, master, builders) = issue(&spec).unwrap();
        let e = write_configs(&spec, &master, &builders, None).unwrap_err();
        assert!(e.to_string().contains("`state_dir`"), "{e}");
    }
}

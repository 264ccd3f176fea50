//! A whole farm on one machine: a fresh CA, a master and N builders as real processes on
//! loopback. `quartersctl demo` runs one; the workspace tests start them the same way.

use std::fmt::Write as _;
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
    /// Appended to the master's config: its `[[source]]` tables, say.
    pub master_extra: String,
    /// Inserted into every builder's config before its tables: `driver = "sim"`, say.
    pub builder_extra: String,
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
        let builders = nodes;
        let signer = match spec.signing {
            true => Some(
                LocalSigner::start(&spec.dir)
                    .await
                    .context("starting the farm's signer")?,
            ),
            false => None,
        };
        let mut master_extra = spec.master_extra.clone();
        if let Some(signer) = &signer {
            let _ = write!(
                master_extra,
                "\n[signing]\nsocket = {:?}\n",
                signer.socket.display().to_string()
            );
        }
        fs::write(
            &master.config,
            master_config(&master, &builders, &master_extra),
        )
        .with_context(|| format!("writing {}", master.config.display()))?;
        // Builders trust the farm key for what they install, as they trust the CA: from their
        // config, never from what the master serves.
        let builder_extra = match &signer {
            Some(signer) => format!(
                "farm_key = {:?}\n{}",
                signer.public_key.display().to_string(),
                spec.builder_extra
            ),
            None => spec.builder_extra.clone(),
        };
        for b in &builders {
            fs::write(&b.config, builder_config(b, &master, &builder_extra))
                .with_context(|| format!("writing {}", b.config.display()))?;
        }

        let mut farm = LocalFarm {
            dir: spec.dir.clone(),
            trust: FarmTrust::load(&ca.cert)?,
            ca_cert: ca.cert,
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

    /// CPU time (user and system) the running process has used, from /proc.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let pid = self
            .pid()
            .with_context(|| format!("{} is not running", self.name))?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
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
    let pending: u64 = ["waiting", "ready", "claimed"]
        .iter()
        .filter_map(|k| state.counts.get(*k))
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

fn tls_table(name: &NodeName) -> String {
    format!("[tls]\nca = \"ca/ca.pem\"\ncert = \"ca/{name}.pem\"\nkey = \"ca/{name}.key\"\n")
}

fn listen_of(node: &LocalNode) -> String {
    format!(
        "127.0.0.1:{}",
        node.url.port().expect("local URLs carry a port")
    )
}

fn master_config(master: &LocalNode, builders: &[LocalNode], extra: &str) -> String {
    let mut s = format!(
        "# Written by quartersctl for a local farm.\nname = \"{}\"\nlisten = \"{}\"\nurl = \"{}\"\nstate_dir = \"{}-state\"\n\n{}",
        master.name,
        listen_of(master),
        master.url,
        master.name,
        tls_table(&master.name)
    );
    let _ = write!(s, "\n{extra}\n");
    for b in builders {
        let _ = write!(
            s,
            "\n[[builder]]\nname = \"{}\"\nurl = \"{}\"\n",
            b.name, b.url
        );
    }
    s
}

fn builder_config(builder: &LocalNode, master: &LocalNode, extra: &str) -> String {
    format!(
        "# Written by quartersctl for a local farm.\nname = \"{}\"\nlisten = \"{}\"\nwork_dir = \"{}-work\"\n{extra}\n\n[master]\nname = \"{}\"\nurl = \"{}\"\n\n{}",
        builder.name,
        listen_of(builder),
        builder.name,
        master.name,
        master.url,
        tls_table(&builder.name)
    )
}

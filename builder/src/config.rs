//! The builder's config: `builder.toml` read into [`BuilderFile`], validated into
//! [`BuilderConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quarters_common::NodeName;
use quarters_common::config::{self, ConfigError, PeerSection, TlsSection};
use quarters_common::farm_key::FarmPublicKey;
use quarters_common::tls::Identity;
use serde::Deserialize;

use crate::ids::IdMap;
use url::Url;

/// The file as written (stage one).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct BuilderFile {
    /// This node's name; its certificate must carry it.
    pub name: NodeName,
    /// Address to serve HTTPS on.
    pub listen: SocketAddr,
    /// Architectures built here; by default the machine's own.
    #[serde(default)]
    pub arch: Option<Vec<String>>,
    /// Builds run at once.
    #[serde(default = "one")]
    pub slots: u32,
    /// Where builds, their logs and artifacts, and the source cache live.
    pub work_dir: PathBuf,
    /// `chroot` (real builds in fresh roots) or `sim` (timed stand-ins, for simulations).
    #[serde(default = "default_driver")]
    pub driver: String,
    /// The master this builder follows.
    pub master: PeerSection,
    /// The farm's public signing key (`quartersctl key export`): dependencies are installed
    /// only with a valid signature by it. Without it nothing is checked.
    #[serde(default)]
    pub farm_key: Option<PathBuf>,
    pub tls: TlsSection,
    #[serde(default)]
    pub claims: ClaimsSection,
    #[serde(default)]
    pub chroot: ChrootSection,
    #[serde(default)]
    pub fetch: FetchSection,
    #[serde(default)]
    pub sim: SimSection,
}

/// `[fetch]`: how the builder downloads the sources packages list.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FetchSection {
    /// Allow sources on the machine's loopback (a test farm, a mirror on the builder's own
    /// machine). Off by default: a package must not make the builder reach its own ports.
    #[serde(default)]
    pub allow_loopback: bool,
    /// Largest file a source download may have, in MiB.
    #[serde(default = "default_fetch_size")]
    pub max_size_mib: u64,
    /// Most that one package's sources may take together (repository clones included), in
    /// MiB.
    #[serde(default = "default_fetch_total")]
    pub max_total_mib: u64,
    /// Longest one source may take to fetch, in seconds.
    #[serde(default = "default_fetch_timeout")]
    pub timeout: u64,
}

impl Default for FetchSection {
    fn default() -> Self {
        FetchSection {
            allow_loopback: false,
            max_size_mib: default_fetch_size(),
            max_total_mib: default_fetch_total(),
            timeout: default_fetch_timeout(),
        }
    }
}

fn default_fetch_size() -> u64 {
    8 << 10
}

fn default_fetch_total() -> u64 {
    16 << 10
}

fn default_fetch_timeout() -> u64 {
    3600
}

fn one() -> u32 {
    1
}

fn default_driver() -> String {
    "chroot".to_owned()
}

/// `[claims]`
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ClaimsSection {
    /// Seconds a claim holds without renewal; a dead builder's claims lapse after it.
    #[serde(default = "default_lease")]
    pub lease: u64,
}

impl Default for ClaimsSection {
    fn default() -> Self {
        ClaimsSection {
            lease: default_lease(),
        }
    }
}

fn default_lease() -> u64 {
    30
}

/// `[chroot]`: real builds.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ChrootSection {
    /// The read-only template root every build root is an overlay of
    /// (`quarters-builder mkroot DIR` makes one).
    #[serde(default)]
    pub template: Option<PathBuf>,
    /// Uid and gid builds run as, inside the root (below 65536).
    #[serde(default = "nobody")]
    pub build_uid: u32,
    /// The first of the 65536 host ids a build's user namespace maps its ids to; the
    /// template's files belong to them (`quarters-builder mkroot` and `shift-root`).
    #[serde(default = "default_id_base")]
    pub id_base: u32,
    /// Seconds without a new process and without CPU progress after which a build is hung.
    #[serde(default = "default_hang")]
    pub hang_timeout: u64,
    /// Wall-clock limit of a build, in seconds.
    #[serde(default = "default_wall")]
    pub wall_limit: u64,
    /// CPU-time limit of a build, in seconds.
    #[serde(default = "default_cpu")]
    pub cpu_limit: u64,
    /// Size of a build root's writable layer (a tmpfs), in MiB.
    #[serde(default = "default_root_size")]
    pub root_size_mib: u64,
    /// Size of a build's `/tmp` (a tmpfs), in MiB.
    #[serde(default = "default_tmp_size")]
    pub tmp_size_mib: u64,
    /// Size of a build's `/dev/shm` (a tmpfs), in MiB.
    #[serde(default = "default_shm_size")]
    pub shm_size_mib: u64,
    /// Memory of a build (its cgroup's limit, tmpfs pages included), in MiB. By default
    /// three quarters of the machine's memory shared among the slots.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Processes and threads of a build at once (its cgroup's limit).
    #[serde(default = "default_pids")]
    pub pids_max: u64,
    /// A build's CPU weight against the others (cgroup v2's scale, 1..=10000).
    #[serde(default = "default_cpu_weight")]
    pub cpu_weight: u16,
    /// Most of a stage's output its log keeps, in MiB; the rest is dropped.
    #[serde(default = "default_max_log")]
    pub max_log_mib: u64,
}

impl Default for ChrootSection {
    fn default() -> Self {
        ChrootSection {
            template: None,
            build_uid: nobody(),
            id_base: default_id_base(),
            hang_timeout: default_hang(),
            wall_limit: default_wall(),
            cpu_limit: default_cpu(),
            root_size_mib: default_root_size(),
            tmp_size_mib: default_tmp_size(),
            shm_size_mib: default_shm_size(),
            memory_mib: None,
            pids_max: default_pids(),
            cpu_weight: default_cpu_weight(),
            max_log_mib: default_max_log(),
        }
    }
}

fn default_pids() -> u64 {
    4096
}

fn default_cpu_weight() -> u16 {
    100
}

/// The master's default limit of a log it pulls: more would never be read.
fn default_max_log() -> u64 {
    64
}

/// Three quarters of the machine's memory (the rest stays for the builder and the host),
/// shared among the slots; at least 512 MiB.
fn default_build_memory(slots: u32) -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(4 << 20);
    (total_kib / 1024 * 3 / 4 / u64::from(slots.max(1))).max(512)
}

fn default_root_size() -> u64 {
    16 << 10
}

fn default_tmp_size() -> u64 {
    4 << 10
}

fn default_shm_size() -> u64 {
    1 << 10
}

fn default_id_base() -> u32 {
    crate::ids::DEFAULT_BASE
}

fn nobody() -> u32 {
    65534
}

fn default_hang() -> u64 {
    600
}

fn default_wall() -> u64 {
    4 * 3600
}

fn default_cpu() -> u64 {
    8 * 3600
}

/// `[sim]`: simulated builds.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct SimSection {
    /// A build takes its expected duration times this.
    #[serde(default = "default_scale")]
    pub time_scale: f64,
}

impl Default for SimSection {
    fn default() -> Self {
        SimSection {
            time_scale: default_scale(),
        }
    }
}

fn default_scale() -> f64 {
    0.001
}

/// How builds run.
#[derive(Debug, Clone)]
pub enum DriverConfig {
    Chroot(ChrootConfig),
    Sim { time_scale: f64 },
}

#[derive(Debug, Clone)]
pub struct ChrootConfig {
    pub template: PathBuf,
    /// The build user's id inside (invariant: below 65536, so inside the map).
    pub build_uid: u32,
    pub ids: IdMap,
    pub hang_timeout: Duration,
    pub wall_limit: Duration,
    pub cpu_limit: Duration,
    /// Sizes of the build's tmpfs mounts, in MiB.
    pub root_size_mib: u64,
    pub tmp_size_mib: u64,
    pub shm_size_mib: u64,
    /// What each build's cgroup allows, where the machine gives the builder one.
    pub limits: crate::cgroups::Limits,
    /// Most of a stage's output its log keeps.
    pub max_log_bytes: u64,
    pub fetch: FetchConfig,
}

/// How sources are fetched.
#[derive(Debug, Clone, Copy)]
pub struct FetchConfig {
    pub policy: crate::upstream::NetPolicy,
    pub limits: crate::upstream::Limits,
}

/// The validated config (stage two).
#[derive(Debug)]
pub struct BuilderConfig {
    pub path: PathBuf,
    pub name: NodeName,
    pub listen: SocketAddr,
    pub arch: Vec<String>,
    pub slots: u32,
    pub master_name: NodeName,
    pub master_url: Url,
    pub work_dir: PathBuf,
    /// The farm CA certificate, for tools that reach the master (pacman's curl).
    pub ca: PathBuf,
    /// The farm's signing key, when the farm signs.
    /// The farm's signing keys, when the farm signs: the current one, and retired ones still
    /// listed.
    pub farm_key: Option<Vec<FarmPublicKey>>,
    pub driver: DriverConfig,
    pub lease: Duration,
    pub identity: Identity,
}

impl BuilderConfig {
    /// Reads and validates the config at `path`, loading the TLS identity it names.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file: BuilderFile = config::load(path)?;
        Self::validate(path, file)
    }

    pub fn validate(path: &Path, file: BuilderFile) -> Result<Self, ConfigError> {
        let arch = file
            .arch
            .unwrap_or_else(|| vec![std::env::consts::ARCH.to_owned()]);
        if arch.is_empty() {
            return Err(ConfigError::invalid(path, "arch", "lists no architecture"));
        }
        for (i, a) in arch.iter().enumerate() {
            let machine = quarters_common::Arch::parse(a).is_ok_and(|a| !a.is_any());
            if !machine {
                return Err(ConfigError::invalid(
                    path,
                    &format!("arch[{i}]"),
                    format!(
                        "{a:?} is not a machine architecture (a-z, 0-9, '_'; `any` packages go to every builder)"
                    ),
                ));
            }
        }
        if file.slots == 0 || file.slots > 256 {
            return Err(ConfigError::invalid(
                path,
                "slots",
                format!("{} is outside 1..=256", file.slots),
            ));
        }
        if file.master.name == file.name {
            return Err(ConfigError::invalid(
                path,
                "master.name",
                "is this builder's own name",
            ));
        }
        let master_url = config::https_base_url(path, "master.url", &file.master.url)?;
        let driver = match file.driver.as_str() {
            "chroot" => {
                if !(1..=10000).contains(&file.chroot.cpu_weight) {
                    return Err(ConfigError::invalid(
                        path,
                        "chroot.cpu_weight",
                        format!("{} is outside 1..=10000", file.chroot.cpu_weight),
                    ));
                }
                let template = file.chroot.template.as_ref().ok_or_else(|| {
                    ConfigError::invalid(path, "chroot.template", "the chroot driver needs a template root (quarters-builder mkroot DIR makes one)")
                })?;
                let template = config::resolve(path, template);
                if !template.join("usr/bin").is_dir() {
                    return Err(ConfigError::invalid(
                        path,
                        "chroot.template",
                        format!(
                            "{} is not a root file system (no usr/bin)",
                            template.display()
                        ),
                    ));
                }
                let ids = IdMap::new(file.chroot.id_base)
                    .map_err(|e| ConfigError::invalid(path, "chroot.id_base", e.to_string()))?;
                if file.chroot.build_uid == 0 || file.chroot.build_uid >= IdMap::COUNT {
                    return Err(ConfigError::invalid(
                        path,
                        "chroot.build_uid",
                        format!(
                            "{} is not an unprivileged id a build has (1..65535)",
                            file.chroot.build_uid
                        ),
                    ));
                }
                if !ids.owns(&template).unwrap_or(false) {
                    return Err(ConfigError::invalid(
                        path,
                        "chroot.template",
                        format!(
                            "{} does not belong to the build ids from {} (builds run in a user namespace): run `quarters-builder shift-root {} --id-base {}`",
                            template.display(),
                            ids.base(),
                            template.display(),
                            ids.base()
                        ),
                    ));
                }
                DriverConfig::Chroot(ChrootConfig {
                    template,
                    build_uid: file.chroot.build_uid,
                    ids,
                    hang_timeout: Duration::from_secs(file.chroot.hang_timeout.max(1)),
                    wall_limit: Duration::from_secs(file.chroot.wall_limit.max(1)),
                    cpu_limit: Duration::from_secs(file.chroot.cpu_limit.max(1)),
                    // A tmpfs of size 0 has no limit at all: at least 1 MiB.
                    root_size_mib: file.chroot.root_size_mib.max(1),
                    tmp_size_mib: file.chroot.tmp_size_mib.max(1),
                    shm_size_mib: file.chroot.shm_size_mib.max(1),
                    limits: crate::cgroups::Limits {
                        memory_mib: file
                            .chroot
                            .memory_mib
                            .unwrap_or_else(|| default_build_memory(file.slots))
                            .max(1),
                        pids: file.chroot.pids_max.max(1),
                        cpu_weight: file.chroot.cpu_weight,
                    },
                    max_log_bytes: file.chroot.max_log_mib.max(1) << 20,
                    fetch: FetchConfig {
                        policy: crate::upstream::NetPolicy {
                            allow_loopback: file.fetch.allow_loopback,
                        },
                        limits: crate::upstream::Limits {
                            max_bytes: file.fetch.max_size_mib.max(1) << 20,
                            max_total_bytes: file.fetch.max_total_mib.max(1) << 20,
                            timeout: Duration::from_secs(file.fetch.timeout.max(1)),
                        },
                    },
                })
            }
            "sim" => {
                if !(file.sim.time_scale > 0.0 && file.sim.time_scale.is_finite()) {
                    return Err(ConfigError::invalid(
                        path,
                        "sim.time_scale",
                        "must be a positive number",
                    ));
                }
                DriverConfig::Sim {
                    time_scale: file.sim.time_scale,
                }
            }
            other => {
                return Err(ConfigError::invalid(
                    path,
                    "driver",
                    format!("{other:?} is neither \"chroot\" nor \"sim\""),
                ));
            }
        };
        if file.claims.lease < 2 {
            return Err(ConfigError::invalid(
                path,
                "claims.lease",
                "must be at least 2 seconds",
            ));
        }
        let farm_key = match &file.farm_key {
            None => None,
            Some(key) => Some(
                FarmPublicKey::read_all(&config::resolve(path, key))
                    .map_err(|e| ConfigError::invalid(path, "farm_key", e))?,
            ),
        };
        let identity = file.tls.load_identity(path, &file.name)?;
        Ok(BuilderConfig {
            path: path.to_owned(),
            name: file.name,
            listen: file.listen,
            arch,
            slots: file.slots,
            master_name: file.master.name,
            master_url,
            work_dir: config::resolve(path, &file.work_dir),
            ca: config::resolve(path, &file.tls.ca),
            farm_key,
            driver,
            lease: Duration::from_secs(file.claims.lease),
            identity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_in_contrib_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/builder.toml");
        let file: BuilderFile = config::load(&path).unwrap();
        assert_eq!(file.name.as_str(), "builder-a");
        assert_eq!(file.master.name.as_str(), "master");
        assert!(file.farm_key.is_some());
    }
}

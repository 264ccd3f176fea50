//! The master's config: `master.toml` read into [`MasterFile`], validated into [`MasterConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quarters_common::config::{self, ConfigError, PeerSection, TlsSection};
use quarters_common::tls::Identity;
use quarters_common::{Arch, NodeName};
use quarters_parsers::SourceSpec;
use quarters_parsers::evaluate::Evaluation;
use quarters_parsers::layout::Layout;
use serde::Deserialize;
use url::Url;

/// The file as written (stage one).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct MasterFile {
    /// This node's name; its certificate must carry it.
    pub name: NodeName,
    /// Address to serve HTTPS on.
    pub listen: SocketAddr,
    /// The URL builders and pacman clients reach the master at; its certificate must carry the
    /// host. Download URLs in the ready list start with it.
    pub url: Url,
    /// Where the master keeps its database, scan cache and repositories.
    pub state_dir: PathBuf,
    /// Architectures the farm builds for; the first also resolves `any` builds' dependencies.
    #[serde(default = "default_arch")]
    pub arch: Vec<String>,
    /// Name of the live repository (pacman.conf's `[NAME]`); the build repository is
    /// `NAME-build`.
    #[serde(default = "default_repo_name")]
    pub repo_name: String,
    pub tls: TlsSection,
    #[serde(default)]
    pub build_root: BuildRootSection,
    #[serde(default)]
    pub builds: BuildsSection,
    #[serde(default)]
    pub scan: ScanSection,
    #[serde(default)]
    pub quarantine: QuarantineSection,
    #[serde(default)]
    pub verification: VerificationSection,
    /// Where packages and databases get signed; without it the repositories are unsigned.
    #[serde(default)]
    pub signing: Option<SigningSection>,
    /// The package sources, one `[[source]]` table each.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceSection>,
    /// The builders of the farm, one `[[builder]]` table each.
    #[serde(default, rename = "builder")]
    pub builders: Vec<PeerSection>,
}

/// `[scan]`: how sources are read.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ScanSection {
    /// Evaluate a PKGBUILD that has no .SRCINFO with `makepkg --printsrcinfo`, in a sandbox.
    #[serde(default = "yes")]
    pub evaluate_pkgbuilds: bool,
    /// Seconds a PKGBUILD gets to evaluate.
    #[serde(default = "twenty")]
    pub pkgbuild_timeout: u64,
    /// PKGBUILDs evaluated at once; by default one per core.
    #[serde(default)]
    pub pkgbuild_jobs: Option<usize>,
}

impl Default for ScanSection {
    fn default() -> Self {
        ScanSection {
            evaluate_pkgbuilds: true,
            pkgbuild_timeout: twenty(),
            pkgbuild_jobs: None,
        }
    }
}

/// `[signing]`: the signer that holds the farm's key (`quartersctl key serve`).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct SigningSection {
    /// The signer's Unix socket.
    pub socket: PathBuf,
}

/// `[verification]`: independent rebuilds of accepted versions, compared byte for byte.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct VerificationSection {
    /// `off`, `advisory` (results shown, promotion allowed) or `required` (promotion only of
    /// what an independent build reproduced).
    #[serde(default)]
    pub mode: crate::verify::Mode,
    /// How many independent builds must agree, the accepted one included (2..=5).
    #[serde(default = "default_agree")]
    pub agree: u32,
}

impl Default for VerificationSection {
    fn default() -> Self {
        VerificationSection {
            mode: crate::verify::Mode::default(),
            agree: default_agree(),
        }
    }
}

fn default_agree() -> u32 {
    2
}

/// `[quarantine]`: when a builder that breaks the protocol stops being validated.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct QuarantineSection {
    /// Distinct protocol violations that quarantine a builder; 0 leaves it to operators.
    #[serde(default = "default_quarantine_after")]
    pub after: u32,
    /// Over how many seconds the violations are counted.
    #[serde(default = "default_quarantine_window")]
    pub window: u64,
}

impl Default for QuarantineSection {
    fn default() -> Self {
        QuarantineSection {
            after: default_quarantine_after(),
            window: default_quarantine_window(),
        }
    }
}

fn default_quarantine_after() -> u32 {
    crate::quarantine::Policy::default().after
}

fn default_quarantine_window() -> u64 {
    crate::quarantine::Policy::default().window.as_secs()
}

/// `[build_root]`: what every build root already has, so that dependencies on it are met.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct BuildRootSection {
    /// Package names (and provisions) the build root provides.
    #[serde(default)]
    pub packages: Vec<String>,
    /// A template root whose pacman database (`var/lib/pacman/local`) lists what it has.
    #[serde(default)]
    pub template: Option<PathBuf>,
}

/// `[builds]`: limits on what the master accepts from builders.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct BuildsSection {
    /// Largest package file accepted, in bytes.
    #[serde(default = "default_max_artifact")]
    pub max_artifact_size: u64,
    /// Largest log file kept per stage, in bytes.
    #[serde(default = "default_max_log")]
    pub max_log_size: u64,
    /// Expected duration of a build without history, in seconds.
    #[serde(default = "default_estimate")]
    pub default_estimate: u64,
    /// Seconds between polls of each source (a watched local source is also polled at once on
    /// every change).
    #[serde(default = "default_poll")]
    pub poll_interval: u64,
    /// A build-history CSV (`pkgname` and `duration` in milliseconds, matched against pkgbases)
    /// that seeds expected durations until the farm has accepted builds of its own.
    #[serde(default)]
    pub history: Option<PathBuf>,
    /// How often one version may be refused before it counts as failed.
    #[serde(default = "default_max_refusals")]
    pub max_refusals: u32,
    /// Largest uncompressed size of a package the master reads, in bytes.
    #[serde(default = "default_max_unpacked")]
    pub max_unpacked_size: u64,
    /// The longest lease, in seconds, the master grants a builder's claim: longer ones are
    /// clamped to it and count as protocol violations.
    #[serde(default = "default_max_lease")]
    pub max_lease: u64,
    /// Bytes per second a builder must at least send a build's files at, on average.
    #[serde(default = "default_min_pull_rate")]
    pub min_pull_rate: u64,
    /// Seconds every file of a build gets on top of what its size at `min_pull_rate` takes.
    #[serde(default = "default_pull_grace")]
    pub pull_grace: u64,
    /// Seconds one build's files may take together, however large they are announced.
    #[serde(default = "default_max_pull_time")]
    pub max_pull_time: u64,
}

impl Default for BuildsSection {
    fn default() -> Self {
        BuildsSection {
            max_artifact_size: default_max_artifact(),
            max_log_size: default_max_log(),
            default_estimate: default_estimate(),
            poll_interval: default_poll(),
            history: None,
            max_refusals: default_max_refusals(),
            max_unpacked_size: default_max_unpacked(),
            max_lease: default_max_lease(),
            min_pull_rate: default_min_pull_rate(),
            pull_grace: default_pull_grace(),
            max_pull_time: default_max_pull_time(),
        }
    }
}

fn default_arch() -> Vec<String> {
    vec![std::env::consts::ARCH.to_owned()]
}

fn default_repo_name() -> String {
    "quarters".to_owned()
}

fn default_max_refusals() -> u32 {
    2
}

fn default_max_lease() -> u64 {
    600
}

fn default_min_pull_rate() -> u64 {
    256 << 10
}

fn default_pull_grace() -> u64 {
    30
}

fn default_max_pull_time() -> u64 {
    2 * 3600
}

fn default_max_unpacked() -> u64 {
    64 << 30
}

fn default_max_artifact() -> u64 {
    4 << 30
}

fn default_max_log() -> u64 {
    64 << 20
}

fn default_estimate() -> u64 {
    300
}

fn default_poll() -> u64 {
    60
}

fn yes() -> bool {
    true
}

fn twenty() -> u64 {
    20
}

/// One `[[source]]` table: common keys, and the kind's own (checked by the kind).
#[derive(Deserialize, Debug)]
pub struct SourceSection {
    /// Names the source in logs, URLs and its cache file.
    pub name: NodeName,
    /// `git`, `svn` or `cvs`.
    pub kind: String,
    #[serde(default = "one")]
    pub depth: usize,
    #[serde(default)]
    pub subdir: Option<String>,
    /// Everything else belongs to the kind.
    #[serde(flatten)]
    pub options: toml::Table,
}

fn one() -> usize {
    1
}

/// The validated config (stage two).
#[derive(Debug)]
pub struct MasterConfig {
    pub path: PathBuf,
    pub name: NodeName,
    pub listen: SocketAddr,
    /// Base URL of the master, with a trailing slash.
    pub url: Url,
    pub state_dir: PathBuf,
    /// The machine architectures the farm builds for; never `any`.
    pub arch: Vec<Arch>,
    pub repo_name: String,
    /// Names the build root provides.
    pub build_root: std::collections::HashSet<String>,
    pub max_artifact_size: u64,
    pub max_log_size: u64,
    /// How fast builders must hand over builds and logs.
    pub pull_pace: crate::pull::Pace,
    /// Refusals of one version before it counts as failed (at least 1).
    pub max_refusals: usize,
    /// What the master reads of a package archive at most.
    pub archive_limits: crate::repo::package::Limits,
    /// What the master takes of a builder's state.
    pub builder_limits: quarters_common::peer_input::BuilderLimits,
    /// When a builder is quarantined for protocol violations.
    pub quarantine: crate::quarantine::Policy,
    /// Whether accepted versions are verified, and whether promotion waits for it.
    pub verification: crate::verify::Policy,
    pub default_estimate: Duration,
    /// Expected durations by pkgbase, in milliseconds, from `builds.history`.
    pub history: std::collections::HashMap<String, u64>,
    pub poll_interval: Duration,
    pub identity: Identity,
    pub sources: Vec<SourceSpec>,
    pub evaluation: Evaluation,
    pub builders: Vec<BuilderEntry>,
    /// The signer's socket; `None` leaves the repositories unsigned.
    pub signer: Option<PathBuf>,
}

/// A builder the master follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderEntry {
    pub name: NodeName,
    pub url: Url,
}

impl MasterConfig {
    /// Reads and validates the config at `path`, loading the TLS identity it names.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file: MasterFile = config::load(path)?;
        Self::validate(path, file)
    }

    pub fn validate(path: &Path, file: MasterFile) -> Result<Self, ConfigError> {
        let mut builders: Vec<BuilderEntry> = Vec::with_capacity(file.builders.len());
        for (i, b) in file.builders.iter().enumerate() {
            let key = format!("builder[{i}]");
            if b.name == file.name {
                return Err(ConfigError::invalid(
                    path,
                    &format!("{key}.name"),
                    format!("{:?} is the master's own name", b.name.as_str()),
                ));
            }
            if builders.iter().any(|seen| seen.name == b.name) {
                return Err(ConfigError::invalid(
                    path,
                    &format!("{key}.name"),
                    format!("builder {:?} is listed twice", b.name.as_str()),
                ));
            }
            builders.push(BuilderEntry {
                name: b.name.clone(),
                url: config::https_base_url(path, &format!("{key}.url"), &b.url)?,
            });
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut sources: Vec<SourceSpec> = Vec::with_capacity(file.sources.len());
        for (i, s) in file.sources.into_iter().enumerate() {
            let key = format!("source[{i}]");
            if sources.iter().any(|seen| seen.name == s.name.as_str()) {
                return Err(ConfigError::invalid(
                    path,
                    &format!("{key}.name"),
                    format!("source {:?} is listed twice", s.name.as_str()),
                ));
            }
            let spec = SourceSpec {
                name: s.name.to_string(),
                kind: s.kind,
                layout: Layout {
                    depth: s.depth,
                    subdir: s.subdir,
                },
                options: s.options,
            };
            // Opening checks the kind's options now, so that a typo stops the master at start.
            quarters_parsers::open(&spec, base)
                .map_err(|e| ConfigError::invalid(path, &format!("{key}.{}", e.key), e.message))?;
            sources.push(spec);
        }
        if !(2..=5).contains(&file.verification.agree) {
            return Err(ConfigError::invalid(
                path,
                "verification.agree",
                format!(
                    "{} builds is outside 2..=5 (the accepted build and at least one independent one)",
                    file.verification.agree
                ),
            ));
        }
        if file.scan.pkgbuild_timeout == 0 {
            return Err(ConfigError::invalid(
                path,
                "scan.pkgbuild_timeout",
                "must be at least 1 second",
            ));
        }
        let mut arch = Vec::with_capacity(file.arch.len());
        for a in &file.arch {
            let parsed =
                Arch::parse(a).map_err(|e| ConfigError::invalid(path, "arch", e.to_string()))?;
            if parsed.is_any() {
                return Err(ConfigError::invalid(
                    path,
                    "arch",
                    "must list machine architectures (`any` builds go to all of them)",
                ));
            }
            arch.push(parsed);
        }
        if arch.is_empty() {
            return Err(ConfigError::invalid(
                path,
                "arch",
                "must list machine architectures (`any` builds go to all of them)",
            ));
        }
        if NodeName::new(file.repo_name.as_str()).is_err() {
            return Err(ConfigError::invalid(
                path,
                "repo_name",
                format!("{:?} is not a plain lower-case name", file.repo_name),
            ));
        }
        let mut build_root: std::collections::HashSet<String> =
            file.build_root.packages.iter().cloned().collect();
        if let Some(template) = &file.build_root.template {
            let template = config::resolve(path, template);
            let names = crate::buildroot::installed_names(&template)
                .map_err(|e| ConfigError::invalid(path, "build_root.template", e))?;
            build_root.extend(names);
        }
        let history = match &file.builds.history {
            Some(history) => crate::history::read(&config::resolve(path, history))
                .map_err(|e| ConfigError::invalid(path, "builds.history", e.to_string()))?,
            None => std::collections::HashMap::new(),
        };
        if file.quarantine.after as usize > crate::quarantine::MAX_KEPT {
            return Err(ConfigError::invalid(
                path,
                "quarantine.after",
                format!(
                    "{} offences cannot be counted: at most {} are kept per builder",
                    file.quarantine.after,
                    crate::quarantine::MAX_KEPT
                ),
            ));
        }
        let url = config::https_base_url(path, "url", &file.url)?;
        let identity = file.tls.load_identity(path, &file.name)?;
        Ok(MasterConfig {
            path: path.to_owned(),
            name: file.name,
            listen: file.listen,
            url,
            arch,
            repo_name: file.repo_name,
            build_root,
            max_artifact_size: file.builds.max_artifact_size,
            max_log_size: file.builds.max_log_size,
            pull_pace: crate::pull::Pace {
                min_rate: file.builds.min_pull_rate.max(1),
                grace: Duration::from_secs(file.builds.pull_grace),
                max_time: Duration::from_secs(file.builds.max_pull_time.max(1)),
            },
            max_refusals: usize::try_from(file.builds.max_refusals.max(1)).unwrap_or(usize::MAX),
            builder_limits: quarters_common::peer_input::BuilderLimits {
                max_lease: Duration::from_secs(file.builds.max_lease.max(1)),
                ..quarters_common::peer_input::BuilderLimits::default()
            },
            verification: crate::verify::Policy {
                mode: file.verification.mode,
                agree: file.verification.agree,
            },
            quarantine: crate::quarantine::Policy {
                after: file.quarantine.after,
                window: Duration::from_secs(file.quarantine.window.max(1)),
            },
            archive_limits: crate::repo::package::Limits {
                total_bytes: file.builds.max_unpacked_size,
                ..crate::repo::package::Limits::default()
            },
            default_estimate: Duration::from_secs(file.builds.default_estimate),
            history,
            poll_interval: Duration::from_secs(file.builds.poll_interval.max(1)),
            state_dir: config::resolve(path, &file.state_dir),
            signer: file
                .signing
                .as_ref()
                .map(|s| config::resolve(path, &s.socket)),
            identity,
            sources,
            evaluation: Evaluation {
                enabled: file.scan.evaluate_pkgbuilds,
                timeout: Duration::from_secs(file.scan.pkgbuild_timeout),
                jobs: file
                    .scan
                    .pkgbuild_jobs
                    .unwrap_or_else(quarters_parsers::evaluate::default_jobs)
                    .max(1),
            },
            builders,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_in_contrib_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/master.toml");
        let file: MasterFile = config::load(&path).unwrap();
        assert_eq!(file.name.as_str(), "master");
        assert_eq!(file.builders.len(), 2);
        assert_eq!(file.sources.len(), 1);
        assert_eq!(file.sources[0].kind, "git");
    }
}

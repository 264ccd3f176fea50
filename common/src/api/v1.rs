//! Version 1 of the node state protocol.
//!
//! Every node serves `GET /v1/state`: an [`Envelope`] around its role's content.
//!
//! * `generation` increases by at least one on every change of the content, for the life of the
//!   node and across its restarts: it starts at the node's start time in microseconds since the
//!   Unix epoch, so a reader never mistakes a restarted node's state for one it has already seen.
//! * The `ETag` of a state response is `"<generation>"`; `If-None-Match` with it gets
//!   `304 Not Modified` while the state is unchanged.
//! * Long-poll: `?wait=SECONDS&after=GENERATION` (or `wait` with `If-None-Match`) answers as soon
//!   as the generation differs from the one given, or with 304 when the wait ends. The wait is
//!   capped at [`MAX_WAIT_SECS`].

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

/// The value of [`Envelope::api`] for this module's types.
pub const API_VERSION: &str = "v1";

/// The longest long-poll a node serves; longer waits are shortened to this.
pub const MAX_WAIT_SECS: u64 = 60;

/// Path of the state document.
pub const STATE_PATH: &str = "/v1/state";

/// Path of the liveness probe.
pub const HEALTH_PATH: &str = "/v1/health";

/// Where every builder's makepkg builds (its `BUILDDIR`), and so what every package's
/// `.BUILDINFO` says as `builddir`: the master refuses a package built elsewhere, as Arch's
/// dbscripts refuse one not built in a clean chroot.
pub const BUILDDIR: &str = "/build/work";

/// The packager of builds whose source names none that makepkg would take: the master
/// publishes it in [`ReadyPackage::packager`], and a builder falls back on it.
pub const FARM_PACKAGER: &str = "Quarters build farm <builds@quarters.invalid>";

/// What kind of node published a state.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Master,
    Builder,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Builder => "builder",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The versioned envelope around every node's state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Envelope<T> {
    /// Always [`API_VERSION`].
    pub api: String,
    /// The node's name, as in its certificate.
    pub node: String,
    pub role: Role,
    /// See the module documentation.
    pub generation: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The role's own content: [`MasterState`] or [`BuilderState`].
    pub content: T,
}

/// Answer of `GET /v1/health`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `"ok"` while the node serves.
    pub status: String,
    pub node: String,
    pub role: Role,
    pub generation: u64,
    /// What the node has done since it started: `requests` served, and the role's own counts
    /// (a builder's `claim-attempts` and `peer-reads`, say).
    #[serde(default)]
    pub counters: std::collections::BTreeMap<String, u64>,
}

/// How a node last found one of its peers.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum PeerStatus {
    /// Not read yet since this node started.
    Unknown,
    /// The last read succeeded.
    Up {
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
    },
    /// The last read failed; `error` says why (unreachable, wrong certificate, bad answer).
    Down {
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
        error: String,
    },
}

impl PeerStatus {
    pub fn is_up(&self) -> bool {
        matches!(self, PeerStatus::Up { .. })
    }
}

/// A peer as another node sees it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    pub name: String,
    pub url: Url,
    #[serde(flatten)]
    pub status: PeerStatus,
    /// A builder's build slots, as it last published them: in the master's list of builders,
    /// so that idle builders can share out the ready list without asking each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// Set on a builder the master does not validate: its claims and builds count for
    /// nothing, and other builders ignore its claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<QuarantineView>,
}

impl PeerView {
    /// Whether the master validates this builder (the proposal's "list of validated
    /// builders"): every builder it lists without a quarantine.
    pub fn is_validated(&self) -> bool {
        self.quarantine.is_none()
    }
}

/// Why and since when a builder is quarantined.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct QuarantineView {
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    pub by: QuarantinedBy,
}

/// Who quarantined a builder.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum QuarantinedBy {
    /// `quartersctl builder disable`.
    Operator,
    /// The master, for protocol violations.
    Master,
}

impl QuarantinedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantinedBy::Operator => "operator",
            QuarantinedBy::Master => "master",
        }
    }
}

/// The master's content.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MasterState {
    /// Every builder of the master's config, in config order, with its liveness.
    pub builders: Vec<PeerView>,
    /// Every package source, with the revision the master has scanned.
    #[serde(default)]
    pub sources: Vec<SourceView>,
    /// Packages whose dependencies are all in a binary repository, highest priority first:
    /// the top of the list, a few per builder slot (`counts["ready"]` says how many in all).
    #[serde(default)]
    pub ready: Vec<ReadyPackage>,
    /// Claims the master has seen on builders, committed ones first.
    #[serde(default)]
    pub claims: Vec<ClaimView>,
    /// The master's verdict on every finished build a builder still shows; a builder may
    /// delete a build once it is listed here.
    #[serde(default)]
    pub results: Vec<BuildVerdict>,
    /// How many packages are in each state (`waiting`, `ready`, `claimed`, `built`, `live`,
    /// `failed`, `indirect-failed`, `blocked`).
    #[serde(default)]
    pub counts: std::collections::BTreeMap<PackageState, u64>,
    /// Every package that is failed, indirect-failed or blocked, with the reason.
    #[serde(default)]
    pub problems: Vec<Problem>,
    /// What builders' states break of the protocol, as the master last read them (a few per
    /// builder): the parts named here were ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<ViolationView>,
    /// The longest lease a claim may hold, in seconds: every reader clamps leases to it, and
    /// a builder that publishes a longer one breaks the protocol.
    #[serde(default = "default_max_lease_secs")]
    pub max_lease_secs: u64,
    /// Independent verification: how many versions wait for it, and which differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationSummary>,
}

/// Independent verification at a glance.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct VerificationSummary {
    pub mode: VerificationMode,
    /// Current versions waiting for a verification build.
    pub pending: u64,
    /// Current versions an independent build did not reproduce.
    pub differs: Vec<DiffersView>,
}

/// Whether a farm verifies, and what promotion makes of it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum VerificationMode {
    Off,
    Advisory,
    Required,
}

impl VerificationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationMode::Off => "off",
            VerificationMode::Advisory => "advisory",
            VerificationMode::Required => "required",
        }
    }
}

/// A version an independent build did not reproduce.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DiffersView {
    pub pkgbase: String,
    pub version: String,
    pub arch: String,
    /// A third build is asked for to say which side is the odd one.
    pub deciding: bool,
}

/// The master's default maximum lease, and what a reader assumes before it has read one.
pub const DEFAULT_MAX_LEASE_SECS: u64 = 600;

fn default_max_lease_secs() -> u64 {
    DEFAULT_MAX_LEASE_SECS
}

impl Default for MasterState {
    fn default() -> Self {
        MasterState {
            builders: Vec::new(),
            sources: Vec::new(),
            ready: Vec::new(),
            claims: Vec::new(),
            results: Vec::new(),
            counts: Default::default(),
            problems: Vec::new(),
            violations: Vec::new(),
            max_lease_secs: DEFAULT_MAX_LEASE_SECS,
            verification: None,
        }
    }
}

/// A builder's breach of the protocol.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ViolationView {
    pub builder: String,
    pub what: String,
}

/// Where a package's build stands, in the order a build goes through them.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum PackageState {
    /// Waits for a dependency to be built.
    Waiting,
    /// May be built now.
    Ready,
    /// A builder committed to it.
    Claimed,
    /// In the build repository.
    Built,
    /// In the live repository.
    Live,
    /// Its build failed, or was refused too often.
    Failed,
    /// Something it needs failed.
    IndirectFailed,
    /// It cannot build as things are (a cycle, a dependency nothing provides).
    Blocked,
}

impl std::fmt::Display for PackageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PackageState {
    /// Still to be built: waiting, ready or claimed.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            PackageState::Waiting | PackageState::Ready | PackageState::Claimed
        )
    }

    /// Its stable name, as the wire carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            PackageState::Waiting => "waiting",
            PackageState::Ready => "ready",
            PackageState::Claimed => "claimed",
            PackageState::Built => "built",
            PackageState::Live => "live",
            PackageState::Failed => "failed",
            PackageState::IndirectFailed => "indirect-failed",
            PackageState::Blocked => "blocked",
        }
    }
}

/// A package that will not build as things are.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub pkgbase: String,
    pub version: Option<String>,
    pub arch: Option<String>,
    /// `failed`, `indirect-failed` or `blocked`.
    pub state: PackageState,
    /// Why, in one line; `quartersctl why` gives the whole chain.
    pub reason: String,
    /// For a failed build: its log on the master.
    pub log: Option<Url>,
}

/// A package source as the master last scanned it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SourceView {
    pub name: String,
    pub kind: String,
    pub revision: Option<String>,
    /// Why the last poll failed, if it did.
    pub error: Option<String>,
    /// How far the running evaluation of PKGBUILDs without `.SRCINFO` has got, or how the
    /// last one went (`done == total`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<EvaluationProgress>,
}

/// A scan's evaluation of PKGBUILDs, as it goes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct EvaluationProgress {
    pub done: u64,
    pub total: u64,
    pub failed: u64,
    /// Evaluations running side by side.
    pub jobs: u64,
    pub elapsed_ms: u64,
    /// At the rate so far; absent until the first evaluation finished, and once all did.
    pub left_ms: Option<u64>,
}

/// A package a builder may build now.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ReadyPackage {
    pub pkgbase: String,
    /// `[epoch:]pkgver-pkgrel`.
    pub version: String,
    /// The build's architecture: a machine architecture, or `any`.
    pub arch: String,
    /// Every package the build must produce.
    pub pkgnames: Vec<String>,
    /// Critical-path priority in milliseconds: the build's expected duration plus the longest
    /// chain of expected durations of what waits on it. Higher first.
    pub priority: u64,
    /// Expected duration of the build in milliseconds (from history, or an estimate).
    pub expected_ms: u64,
    /// The package's build files: a tarball the master serves, and its sha256.
    pub source: Download,
    /// Base URL of the master's build repository for this architecture, to install
    /// dependencies from (pacman `Server =`).
    pub repo: Url,
    /// The build repository's database name: the pacman.conf section that `repo` serves.
    pub repo_db: String,
    /// Who answers for the build: the author of the last change to the package.
    pub packager: Option<String>,
    /// The `SOURCE_DATE_EPOCH` every build of this version runs with (the time of the
    /// package's last change in its source): with the packager, the build path and the
    /// environment the same everywhere, two honest builds of it can be the same bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<i64>,
    /// Set when this entry asks for a verification of a version the master has accepted,
    /// not for its first build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyRequest>,
}

/// What a verification asks for: an independent rebuild of an accepted version, which the
/// master compares with the accepted packages.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    /// Builders whose build of this version the master has already: none of them may take it,
    /// as a verification by the same machine proves nothing.
    pub built_by: Vec<String>,
}

/// Why a build is made. Claims and builds carry it, so that a verification never contends
/// with the build it checks.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// The version's first build, for the build repository.
    #[default]
    Build,
    /// An independent rebuild of an accepted version, compared with it byte for byte.
    Verify,
}

impl Purpose {
    pub fn is_build(&self) -> bool {
        *self == Purpose::Build
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Build => "build",
            Purpose::Verify => "verify",
        }
    }
}

impl ReadyPackage {
    /// Whether builder `name` may take this entry: anyone a first build, a verification
    /// only a builder whose build of the version the master does not have.
    pub fn may_be_built_by(&self, name: &str) -> bool {
        self.verify
            .as_ref()
            .is_none_or(|v| !v.built_by.iter().any(|b| b == name))
    }

    /// What this entry asks for.
    pub fn purpose(&self) -> Purpose {
        if self.verify.is_some() {
            Purpose::Verify
        } else {
            Purpose::Build
        }
    }
}

/// Something to download and check.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub url: Url,
    pub sha256: String,
}

/// A claim, as the master shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ClaimView {
    pub builder: String,
    pub pkgbase: String,
    pub version: String,
    pub arch: String,
    pub phase: ClaimPhase,
    #[serde(default, skip_serializing_if = "Purpose::is_build")]
    pub purpose: Purpose,
}

/// The master's verdict on one finished build.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BuildVerdict {
    pub builder: String,
    /// The builder's build id.
    pub build: String,
    pub pkgbase: String,
    pub version: String,
    pub arch: String,
    pub verdict: Verdict,
    /// Why, for a rejection or a failure.
    pub reason: Option<String>,
    /// What was odd about its packages but did not stop them (the alpm schemas' complaints).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The artifacts are in the build repository.
    Accepted,
    /// The artifacts were refused (checksum, metadata, missing package) or not needed (another
    /// build of the same version was accepted first).
    Rejected,
    /// The build failed; the master keeps its logs.
    Failed,
}

/// A builder's content.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BuilderState {
    /// Architectures this builder builds for (`x86_64`, ...); `any` packages go to every builder.
    pub arch: Vec<String>,
    /// How many builds it runs at once.
    pub slots: u32,
    /// The master this builder follows, with its liveness.
    pub master: PeerView,
    /// Its claims on packages.
    #[serde(default)]
    pub claims: Vec<Claim>,
    /// Its builds, running or finished, until the master's verdict lets it drop them.
    #[serde(default)]
    pub builds: Vec<Build>,
    /// What is installed in the template root its builds start from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateView>,
    /// Which machine it runs on: a sha256 of the machine's id, the same for every builder of
    /// one machine, so that a verification goes to another machine where the farm has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
}

/// A template root's identity: the sha256 of its installed packages (`manager name
/// version`, sorted), and how many there are.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TemplateView {
    pub sha256: String,
    pub packages: u32,
}

/// Where a claim stands. See DESIGN.md: `claimed` → `committed` → `done` | `failed`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum ClaimPhase {
    Claimed,
    Committed,
    Done,
    Failed,
}

/// A builder's claim on one package version.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub pkgbase: String,
    pub version: String,
    pub arch: String,
    pub phase: ClaimPhase,
    /// When the builder last renewed the claim, by its own clock.
    #[serde(with = "time::serde::rfc3339")]
    pub renewed_at: OffsetDateTime,
    /// Until when the claim holds, by the builder's clock. Readers count `lease_until -
    /// renewed_at` from when they saw the renewal, so clocks need not agree.
    #[serde(with = "time::serde::rfc3339")]
    pub lease_until: OffsetDateTime,
    /// The build working on it, once started.
    pub build: Option<String>,
    /// A claim on a verification is a claim of its own, beside any on the first build.
    #[serde(default, skip_serializing_if = "Purpose::is_build")]
    pub purpose: Purpose,
}

/// One build on a builder.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// Unique on the builder; names the build in its URLs.
    pub id: String,
    pub pkgbase: String,
    pub version: String,
    pub arch: String,
    pub outcome: BuildOutcome,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Stages that have a log, at `/v1/builds/ID/logs/STAGE`.
    pub logs: Vec<String>,
    /// Packages produced, at `/v1/builds/ID/artifacts/FILE`.
    pub artifacts: Vec<Artifact>,
    pub wall_ms: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub peak_memory_kb: Option<u64>,
    #[serde(default, skip_serializing_if = "Purpose::is_build")]
    pub purpose: Purpose,
}

/// How a build ended, or that it has not.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum BuildOutcome {
    Running {
        stage: String,
    },
    Succeeded,
    /// `stage` failed; `reason` says how (exit status, `hung`, `wall-time limit`, ...).
    Failed {
        stage: String,
        reason: String,
    },
}

/// A file a build produced.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

/// Path of a build's log for one stage.
pub fn log_path(build: &str, stage: &str) -> String {
    format!("/v1/builds/{build}/logs/{stage}")
}

/// Path of a build's artifact.
pub fn artifact_path(build: &str, file: &str) -> String {
    format!("/v1/builds/{build}/artifacts/{file}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_with_flattened_peer_status() {
        let since = time::macros::datetime!(2026-11-21 10:00 UTC);
        let state = Envelope {
            api: API_VERSION.to_owned(),
            node: "master".to_owned(),
            role: Role::Master,
            generation: 7,
            started_at: since,
            content: MasterState {
                builders: vec![PeerView {
                    name: "builder-a".to_owned(),
                    url: "https://127.0.0.1:8444/".parse().unwrap(),
                    status: PeerStatus::Down {
                        since,
                        error: "connection refused".to_owned(),
                    },
                    slots: None,
                    quarantine: None,
                }],
                ..MasterState::default()
            },
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["role"], "master");
        assert_eq!(json["content"]["builders"][0]["status"], "down");
        assert_eq!(
            json["content"]["builders"][0]["error"],
            "connection refused"
        );
        assert_eq!(json["started_at"], "2026-11-21T10:00:00Z");
        let back: Envelope<MasterState> = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
    }
}

/// Requests that `quartersctl` drops into the master's spool directory, and the master's
/// replies. File permissions on the spool are the authorization.
pub mod ctl {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};
    use url::Url;

    use super::{PackageState, PeerStatus, QuarantineView};

    /// `SPOOL/requests/ID.json`.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct Request {
        pub id: String,
        #[serde(flatten)]
        pub command: Command,
    }

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    #[serde(tag = "command", rename_all = "kebab-case")]
    pub enum Command {
        /// Moves packages from the build repository into the live one.
        Promote {
            packages: Vec<String>,
            with_deps: bool,
            /// Promote what no independent build has reproduced yet, where the farm requires
            /// it, for this reason (recorded).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            force: Option<String>,
        },
        /// Puts a failed package back in the ready list.
        Retry {
            package: String,
        },
        Status,
        Why {
            package: String,
        },
        /// Lists the builders, validated or quarantined.
        BuilderList,
        /// Quarantines a builder by hand: its claims and builds count for nothing.
        BuilderDisable {
            builder: String,
            reason: String,
        },
        /// Lifts a builder's quarantine, and forgets its past offences.
        BuilderEnable {
            builder: String,
        },
    }

    /// `SPOOL/replies/ID.json`: what the master did, as data; `quartersctl` renders it.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct Reply {
        pub id: String,
        #[serde(flatten)]
        pub answer: Answer,
    }

    impl Reply {
        /// Whether the master did what was asked.
        pub fn is_ok(&self) -> bool {
            !matches!(self.answer, Answer::Refused { .. })
        }
    }

    /// The answer to each command, or why there is none.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    #[serde(tag = "answer", rename_all = "kebab-case")]
    pub enum Answer {
        /// The master did not do what was asked.
        Refused {
            reason: String,
        },
        Status(Status),
        /// `why` of a package whose metadata cannot be read: it has no build, only an error.
        Unreadable {
            source: String,
            path: String,
            error: String,
        },
        /// `why`: every build of the package (one per architecture).
        Why {
            builds: Vec<WhyBuild>,
        },
        /// `retry`: how many failed or refused builds were cleared.
        Retried {
            pkgbase: String,
            cleared: u64,
        },
        Promoted {
            packages: Vec<Promoted>,
        },
        Builders {
            builders: Vec<BuilderStanding>,
        },
        /// `builder disable`.
        Disabled {
            builder: String,
            quarantine: QuarantineView,
        },
        /// `builder enable`.
        Enabled {
            builder: String,
            was_quarantined: bool,
        },
    }

    /// `status`.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct Status {
        pub sources: Vec<SourceStatus>,
        pub builders: Vec<BuilderStatus>,
        /// Packages by state.
        pub counts: BTreeMap<PackageState, u64>,
        /// The head of the ready list, highest priority first.
        pub ready: Vec<ReadyHead>,
        /// Independent verification: versions reproduced, differing and waiting.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub verification: Option<VerificationCounts>,
    }

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct VerificationCounts {
        pub mode: super::VerificationMode,
        pub reproduced: u64,
        pub differs: u64,
        pub pending: u64,
    }

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct SourceStatus {
        pub name: String,
        pub kind: String,
        /// `None` until the source was read.
        pub revision: Option<String>,
        /// Why the last poll failed, if it did.
        pub error: Option<String>,
    }

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct BuilderStatus {
        pub name: String,
        #[serde(flatten)]
        pub status: PeerStatus,
        pub claims: u64,
        pub quarantine: Option<QuarantineView>,
        /// Protocol violations in its last state, and the first of them.
        pub violations: u64,
        pub first_violation: Option<String>,
    }

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct ReadyHead {
        pub pkgbase: String,
        pub version: String,
        pub arch: String,
        pub priority_ms: u64,
    }

    /// One build of a package, with why it is where it is.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct WhyBuild {
        pub pkgbase: String,
        pub version: String,
        pub arch: String,
        pub state: PackageState,
        pub source: String,
        pub path: String,
        /// The author of the package's last change.
        pub packager: Option<String>,
        pub pkgnames: Vec<String>,
        pub detail: StateDetail,
        /// How a dependency cycle was broken for it, if one was.
        pub bootstrap: Vec<String>,
        /// Its packages in the repositories.
        pub packages: Vec<RepoPackage>,
        /// Its latest builds, newest first.
        pub history: Vec<PastBuild>,
        /// How the independent verification of the version stands, once it is built.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub verification: Option<VerificationView>,
    }

    fn one() -> u32 {
        1
    }

    /// A version's independent verification.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct VerificationView {
        pub status: VerificationStatus,
        /// Two builds differ and a third is asked for, to say which of them is the odd one.
        #[serde(default)]
        pub deciding: bool,
        /// The builder whose build was accepted.
        pub accepted_from: Option<String>,
        /// The identity of the template the accepted build started from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub accepted_template: Option<String>,
        /// Reproductions by other builders that settle the version (`agree` - 1).
        #[serde(default = "one")]
        pub reproductions_needed: u32,
        /// The verification builds of the version, newest first.
        pub builds: Vec<VerifyBuild>,
    }

    #[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
    #[serde(rename_all = "kebab-case")]
    pub enum VerificationStatus {
        /// The farm does not verify.
        Off,
        /// Accepted before the master recorded what it accepted: nothing to compare with.
        NotRecorded,
        /// Waiting for a builder other than those that built it.
        Pending,
        /// An independent build made the same bytes.
        Reproduced,
        /// An independent build made other bytes.
        Differs,
        /// Every verification build so far failed or was refused.
        Unverifiable,
    }

    impl VerificationStatus {
        pub fn as_str(self) -> &'static str {
            match self {
                VerificationStatus::Off => "off",
                VerificationStatus::NotRecorded => "not recorded",
                VerificationStatus::Pending => "pending",
                VerificationStatus::Reproduced => "reproduced",
                VerificationStatus::Differs => "differs",
                VerificationStatus::Unverifiable => "unverifiable",
            }
        }
    }

    /// One verification build and what it came to.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct VerifyBuild {
        pub builder: String,
        pub build: String,
        /// `reproduced`, `differs` or `unverifiable`.
        pub verdict: VerificationStatus,
        pub detail: Option<String>,
        /// The identity of the template it started from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub template: Option<String>,
    }

    /// What its state depends on.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    #[serde(tag = "kind", rename_all = "kebab-case")]
    pub enum StateDetail {
        /// Built or live: nothing to explain.
        Done,
        /// What it waits for, one sentence each.
        Waits {
            waits: Vec<String>,
        },
        Claimed {
            builder: String,
        },
        Failed {
            reason: String,
        },
        /// Blocked or failed through a dependency: the chain, outermost first.
        Chain {
            chain: Vec<String>,
        },
        Ready {
            expected_ms: u64,
            priority_ms: u64,
        },
    }

    /// A package of a build in a repository, and where it came from.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct RepoPackage {
        pub pkgname: String,
        pub version: String,
        /// `build` or `live`.
        pub repo: String,
        pub arch: String,
        pub filename: String,
        /// Its `.PKGINFO`'s packager, which the master checked.
        pub packager: Option<String>,
        /// The builder and build it was accepted from, while the build is listed.
        pub built_on: Option<BuiltOn>,
        pub signature: SignatureStatus,
    }

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct BuiltOn {
        pub builder: String,
        pub build: String,
    }

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    #[serde(tag = "signed", rename_all = "kebab-case")]
    pub enum SignatureStatus {
        Unsigned,
        /// Signed by the key with this fingerprint.
        By {
            key: String,
        },
        /// Signed, by a key the signature does not name.
        Unnamed,
    }

    /// A past build of the package.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct PastBuild {
        pub build: String,
        pub builder: String,
        pub version: String,
        /// The verdict in words.
        pub verdict: String,
        pub reason: Option<String>,
        pub warnings: Vec<String>,
    }

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct Promoted {
        pub pkgname: String,
        pub version: String,
        pub arch: String,
        /// Brought along as a dependency of what was asked for.
        pub dependency: bool,
        /// Promoted without an independent reproduction, for this reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub forced: Option<String>,
    }

    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct BuilderStanding {
        pub name: String,
        pub url: Url,
        /// `None`: validated.
        pub quarantine: Option<QuarantineView>,
    }
}

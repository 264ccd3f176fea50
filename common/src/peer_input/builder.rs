//! A builder's state as another node may use it: every field checked into its type, every
//! list capped, every lease clamped. What does not pass is left out and named as a
//! violation, so that the rest of an honest but buggy builder's state still counts and a
//! hostile one is seen for what it is.

use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;

use super::{Arch, ArtifactName, BuildId, Invalid, PkgName, Sha256, StageName, Text, Version};
use crate::api::v1::{Artifact, Build, BuildOutcome, BuilderState, Claim, ClaimPhase, Purpose};
use crate::{BuildKey, WorkKey};

/// How much of a builder's state a reader takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuilderLimits {
    /// The longest lease a claim may hold; longer ones are clamped to it, and are violations.
    pub max_lease: Duration,
    pub max_claims: usize,
    pub max_builds: usize,
    pub max_logs: usize,
    pub max_artifacts: usize,
    pub max_slots: u32,
}

impl Default for BuilderLimits {
    fn default() -> Self {
        BuilderLimits {
            max_lease: Duration::from_secs(600),
            max_claims: 1024,
            max_builds: 1024,
            // A build has a handful of stages and of split packages; these are far above any.
            max_logs: 32,
            max_artifacts: 256,
            max_slots: 1024,
        }
    }
}

/// Something a builder published that breaks the protocol, in words that name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(String);

impl Violation {
    pub fn new(text: impl Into<String>) -> Self {
        Violation(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A builder's state, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedBuilder {
    pub arch: Vec<Arch>,
    /// At least 1, at most the limit.
    pub slots: u32,
    pub claims: Vec<CheckedClaim>,
    pub builds: Vec<CheckedBuild>,
    /// The identity of its template root, where it published a valid one.
    pub template: Option<Sha256>,
    /// Its machine's identity, where it published a valid one.
    pub machine: Option<Sha256>,
}

/// A claim, checked; its lease no longer than the reader's maximum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedClaim {
    pub pkgbase: PkgName,
    pub version: Version,
    pub arch: Arch,
    pub phase: ClaimPhase,
    /// When the builder says it renewed the claim, by its clock: only compared with the
    /// renewal seen before (`lease::LeaseClock`).
    pub renewed_at: OffsetDateTime,
    /// How long the claim holds from when this renewal was first seen.
    pub lease: Duration,
    pub build: Option<BuildId>,
    pub purpose: Purpose,
}

/// A build, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedBuild {
    pub id: BuildId,
    pub pkgbase: PkgName,
    pub version: Version,
    pub arch: Arch,
    pub outcome: CheckedOutcome,
    pub started_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    pub logs: Vec<StageName>,
    pub artifacts: Vec<CheckedArtifact>,
    pub wall_ms: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub peak_memory_kb: Option<u64>,
    pub purpose: Purpose,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckedOutcome {
    Running { stage: StageName },
    Succeeded,
    Failed { stage: StageName, reason: Text },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedArtifact {
    pub file: ArtifactName,
    pub sha256: Sha256,
    pub size: u64,
}

impl CheckedClaim {
    /// The build the claim is on.
    pub fn key(&self) -> BuildKey {
        BuildKey::new(
            self.pkgbase.as_str(),
            self.version.as_str(),
            self.arch.clone(),
        )
    }

    /// The work the claim is on: the build, or its verification.
    pub fn work(&self) -> WorkKey {
        WorkKey::new(self.key(), self.purpose)
    }
}

impl CheckedBuild {
    /// What the build is of.
    pub fn key(&self) -> BuildKey {
        BuildKey::new(
            self.pkgbase.as_str(),
            self.version.as_str(),
            self.arch.clone(),
        )
    }

    /// The work the build does: the version's first build, or a verification of it.
    pub fn work(&self) -> WorkKey {
        WorkKey::new(self.key(), self.purpose)
    }
}

impl CheckedBuilder {
    /// Checks `state` under `limits`: what passes, and what did not with why.
    pub fn check(state: &BuilderState, limits: &BuilderLimits) -> (Self, Vec<Violation>) {
        let mut violations = Vec::new();
        let mut arch = Vec::new();
        for a in state.arch.iter().take(16) {
            match Arch::parse(a) {
                Ok(a) => arch.push(a),
                Err(e) => violations.push(Violation::new(e.to_string())),
            }
        }
        if state.slots == 0 || state.slots > limits.max_slots {
            violations.push(Violation::new(format!(
                "{} build slots, outside 1..={}",
                state.slots, limits.max_slots
            )));
        }
        let slots = state.slots.clamp(1, limits.max_slots);
        let mut claims = Vec::new();
        over_cap(
            "claims",
            state.claims.len(),
            limits.max_claims,
            &mut violations,
        );
        for claim in state.claims.iter().take(limits.max_claims) {
            match CheckedClaim::check(claim, limits) {
                Ok((claim, clamped)) => {
                    violations.extend(clamped);
                    claims.push(claim);
                }
                Err(e) => violations.push(e),
            }
        }
        let mut builds = Vec::new();
        over_cap(
            "builds",
            state.builds.len(),
            limits.max_builds,
            &mut violations,
        );
        for build in state.builds.iter().take(limits.max_builds) {
            match CheckedBuild::check(build, limits) {
                Ok(build) if builds.iter().any(|b: &CheckedBuild| b.id == build.id) => {
                    violations.push(Violation::new(format!(
                        "build {} is listed twice",
                        build.id
                    )));
                }
                Ok(build) => builds.push(build),
                Err(e) => violations.push(e),
            }
        }
        let template = match &state.template {
            None => None,
            Some(t) => match Sha256::parse(&t.sha256) {
                Ok(sha) => Some(sha),
                Err(e) => {
                    violations.push(Violation::new(format!("its template identity: {e}")));
                    None
                }
            },
        };
        let machine = match &state.machine {
            None => None,
            Some(m) => match Sha256::parse(m) {
                Ok(sha) => Some(sha),
                Err(e) => {
                    violations.push(Violation::new(format!("its machine identity: {e}")));
                    None
                }
            },
        };
        let checked = CheckedBuilder {
            machine,
            template,
            arch,
            slots,
            claims,
            builds,
        };
        (checked, violations)
    }
}

fn over_cap(what: &str, len: usize, max: usize, violations: &mut Vec<Violation>) {
    if len > max {
        violations.push(Violation::new(format!(
            "{len} {what} listed, over the limit of {max}; the rest are ignored"
        )));
    }
}

impl CheckedClaim {
    /// The claim, and a violation if its lease had to be clamped.
    fn check(
        claim: &Claim,
        limits: &BuilderLimits,
    ) -> Result<(Self, Option<Violation>), Violation> {
        let what = |e: Invalid| Violation::new(format!("a claim: {e}"));
        let lease = super::lease::clamped(claim.renewed_at, claim.lease_until, Duration::MAX);
        let clamped = (lease > limits.max_lease).then(|| {
            Violation::new(format!(
                "the claim on {} {} holds a lease of {} s, over the limit of {} s",
                claim.pkgbase,
                claim.version,
                lease.as_secs(),
                limits.max_lease.as_secs()
            ))
        });
        let checked = CheckedClaim {
            pkgbase: PkgName::parse(&claim.pkgbase).map_err(what)?,
            version: Version::parse(&claim.version).map_err(what)?,
            arch: Arch::parse(&claim.arch).map_err(what)?,
            phase: claim.phase,
            renewed_at: claim.renewed_at,
            lease: lease.min(limits.max_lease),
            build: claim
                .build
                .as_deref()
                .map(BuildId::parse)
                .transpose()
                .map_err(what)?,
            purpose: claim.purpose,
        };
        Ok((checked, clamped))
    }
}

impl CheckedBuild {
    /// Checks one build; any field that fails leaves the whole build out, since a build that
    /// cannot be named safely cannot be judged either.
    pub fn check(build: &Build, limits: &BuilderLimits) -> Result<Self, Violation> {
        let id = BuildId::parse(&build.id).map_err(|e| Violation::new(format!("a build: {e}")))?;
        let what = |e: Invalid| Violation::new(format!("build {id}: {e}"));
        let outcome = match &build.outcome {
            BuildOutcome::Running { stage } => CheckedOutcome::Running {
                stage: StageName::parse(stage).map_err(what)?,
            },
            BuildOutcome::Succeeded => CheckedOutcome::Succeeded,
            BuildOutcome::Failed { stage, reason } => CheckedOutcome::Failed {
                stage: StageName::parse(stage).map_err(what)?,
                reason: Text::new(reason),
            },
        };
        if build.logs.len() > limits.max_logs || build.artifacts.len() > limits.max_artifacts {
            return Err(Violation::new(format!(
                "build {id}: {} logs and {} artifacts, over the limits of {} and {}",
                build.logs.len(),
                build.artifacts.len(),
                limits.max_logs,
                limits.max_artifacts
            )));
        }
        let logs = build
            .logs
            .iter()
            .map(|s| StageName::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(what)?;
        let artifacts = build
            .artifacts
            .iter()
            .map(CheckedArtifact::check)
            .collect::<Result<Vec<_>, _>>()
            .map_err(what)?;
        Ok(CheckedBuild {
            pkgbase: PkgName::parse(&build.pkgbase).map_err(what)?,
            version: Version::parse(&build.version).map_err(what)?,
            arch: Arch::parse(&build.arch).map_err(what)?,
            id,
            outcome,
            started_at: build.started_at,
            finished_at: build.finished_at,
            logs,
            artifacts,
            wall_ms: build.wall_ms,
            cpu_ms: build.cpu_ms,
            peak_memory_kb: build.peak_memory_kb,
            purpose: build.purpose,
        })
    }

    pub fn is_running(&self) -> bool {
        matches!(self.outcome, CheckedOutcome::Running { .. })
    }
}

impl CheckedArtifact {
    fn check(artifact: &Artifact) -> Result<Self, Invalid> {
        Ok(CheckedArtifact {
            file: ArtifactName::parse(&artifact.file)?,
            sha256: Sha256::parse(&artifact.sha256)?,
            size: artifact.size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1::PeerView;

    fn claim(pkgbase: &str, lease_secs: i64) -> Claim {
        let now = OffsetDateTime::now_utc();
        Claim {
            pkgbase: pkgbase.to_owned(),
            version: "1.0-1".to_owned(),
            arch: "x86_64".to_owned(),
            phase: ClaimPhase::Committed,
            renewed_at: now,
            lease_until: now + time::Duration::seconds(lease_secs),
            build: None,
            purpose: Purpose::Build,
        }
    }

    fn build(id: &str, stage: &str, reason: &str) -> Build {
        Build {
            id: id.to_owned(),
            pkgbase: "hello".to_owned(),
            version: "1.0-1".to_owned(),
            arch: "x86_64".to_owned(),
            outcome: BuildOutcome::Failed {
                stage: stage.to_owned(),
                reason: reason.to_owned(),
            },
            started_at: OffsetDateTime::now_utc(),
            finished_at: None,
            logs: vec![stage.to_owned()],
            artifacts: Vec::new(),
            wall_ms: None,
            cpu_ms: None,
            peak_memory_kb: None,
            purpose: Purpose::Build,
        }
    }

    fn state(claims: Vec<Claim>, builds: Vec<Build>) -> BuilderState {
        BuilderState {
            arch: vec!["x86_64".to_owned()],
            slots: 2,
            master: PeerView {
                name: "master".to_owned(),
                url: "https://master:1/".parse().unwrap(),
                status: crate::api::v1::PeerStatus::Unknown,
                slots: None,
                quarantine: None,
            },
            claims,
            builds,
            template: None,
            machine: None,
        }
    }

    #[test]
    fn an_honest_state_passes_whole() {
        let s = state(
            vec![claim("hello", 30)],
            vec![build("hello-1-0", "build", "exit status 2")],
        );
        let (checked, violations) = CheckedBuilder::check(&s, &BuilderLimits::default());
        assert!(violations.is_empty(), "{violations:?}");
        assert_eq!(checked.claims.len(), 1);
        assert_eq!(checked.claims[0].lease, Duration::from_secs(30));
        assert_eq!(checked.builds.len(), 1);
    }

    #[test]
    fn hostile_fields_are_left_out_and_named() {
        let s = state(
            vec![claim("hello", 86_400 * 365 * 100), claim("../x", 30)],
            vec![
                build("../../../planted", "build", "x"),
                build("ok-1", "../../evil", "x"),
                build("big-1", "build", &"r".repeat(36 << 20)),
            ],
        );
        let (checked, violations) = CheckedBuilder::check(&s, &BuilderLimits::default());
        let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert_eq!(checked.claims.len(), 1, "{text:?}");
        assert_eq!(checked.claims[0].lease, Duration::from_secs(600));
        assert!(
            text.iter().any(|v| v.contains("over the limit of 600 s")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|v| v.contains("package name \"../x\"")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|v| v.contains("build id \"../../../planted\"")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|v| v.contains("stage \"../../evil\"")),
            "{text:?}"
        );
        assert_eq!(checked.builds.len(), 1);
        let CheckedOutcome::Failed { reason, .. } = &checked.builds[0].outcome else {
            panic!("a failed build stays failed")
        };
        assert!(reason.as_str().len() <= super::super::MAX_TEXT + 4);
    }

    #[test]
    fn lists_over_their_caps_are_cut() {
        let limits = BuilderLimits {
            max_claims: 3,
            ..BuilderLimits::default()
        };
        let claims = (0..10).map(|i| claim(&format!("p{i}"), 30)).collect();
        let (checked, violations) = CheckedBuilder::check(&state(claims, Vec::new()), &limits);
        assert_eq!(checked.claims.len(), 3);
        assert_eq!(
            violations[0].as_str(),
            "10 claims listed, over the limit of 3; the rest are ignored"
        );
    }
}

//! The core's model of the farm: its builders as last read, its sources as last scanned, the
//! plan, and the source tarballs made. Owned by the core alone (see `core.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};

use quarters_common::NodeName;
use quarters_common::client::PeerClient;
use quarters_common::liveness::Liveness;
use quarters_common::peer_input::lease::LeaseClock;
use quarters_common::peer_input::{BuildId, CheckedBuilder, CheckedClaim, Violation};
use quarters_parsers::scan::Scanned;

use crate::db::{Pending, Recorded};
use crate::plan::{Plan, UnitSpec};
use crate::quarantine::{Offences, Quarantine};
use crate::verdict::Verification;
use quarters_common::{BuildKey, WorkKey};

#[derive(Debug, Default)]
pub(super) struct Model {
    pub(super) builders: Vec<BuilderSlot>,
    pub(super) sources: Vec<SourceSlot>,
    pub(super) plan: Plan,
    /// Whether `plan` was made after every source had been scanned: until then it is
    /// incomplete, and no build may be judged against it.
    pub(super) plan_complete: bool,
    pub(super) tarballs: HashMap<TarballKey, Tarball>,
    pub(super) requested: HashSet<TarballKey>,
    /// Every waiting package had its tarball made, as of the sources' last change.
    pub(super) tarballs_ahead_done: bool,
    /// Builds being pulled now (or their logs), by builder.
    pub(super) in_flight: HashSet<(NodeName, BuildId)>,
    /// Accepted versions no verification has settled yet.
    pub(super) pending_verify: BTreeMap<BuildKey, Pending>,
    /// Versions an independent build did not reproduce (and none did).
    pub(super) differing: std::collections::BTreeSet<BuildKey>,
}

/// A finished build's verdict, as the builder is answered with it.
#[derive(Clone, Debug)]
pub(super) enum Judged {
    Build(Recorded),
    Verify {
        verdict: Verification,
        detail: Option<String>,
    },
}

impl Model {
    /// The tarball of `spec` as its source holds it now, if the source lists the package.
    pub(super) fn tarball_key(&self, spec: &UnitSpec) -> Option<TarballKey> {
        let source = self.sources.iter().position(|s| s.name == spec.source)?;
        let content_id = &self.sources[source].packages.get(&spec.path)?.content_id;
        Some(TarballKey {
            source,
            path: spec.path.clone(),
            content_id: content_id.clone(),
        })
    }
}

#[derive(Debug)]
pub(super) struct BuilderSlot {
    pub(super) name: NodeName,
    pub(super) client: PeerClient,
    pub(super) liveness: Liveness,
    /// Its state as last read, checked: nothing else of what it published is used.
    pub(super) state: Option<CheckedBuilder>,
    /// What its last state broke of the protocol.
    pub(super) violations: Vec<Violation>,
    /// Its finished builds that have a verdict: a claim naming one of them no longer holds
    /// its package, however long the builder goes on renewing it.
    pub(super) judged: HashMap<BuildId, Judged>,
    /// When the master first saw each of its live commitments: of two builders committed to
    /// the same package, only the earlier one's build is judged.
    pub(super) committed_since: HashMap<WorkKey, std::time::Instant>,
    /// The renewals seen of its claims: a claim lapses a lease after the read that first
    /// showed its latest renewal, as builders count it (the builder's own clock is never
    /// compared with ours).
    pub(super) leases: LeaseClock<WorkKey>,
    /// When each claim in `state` lapses.
    pub(super) lapses_at: HashMap<WorkKey, std::time::Instant>,
    /// Its recent protocol violations, counted towards a quarantine.
    pub(super) offences: Offences,
    /// Set while the master does not validate it: nothing it publishes counts.
    pub(super) quarantine: Option<Quarantine>,
}

impl BuilderSlot {
    /// The first builds the builder has committed to (or finished), as the plan counts them.
    pub(super) fn committed(&self) -> std::collections::BTreeSet<BuildKey> {
        use quarters_common::api::v1::ClaimPhase;
        self.live_claims()
            .filter(|c| c.phase >= ClaimPhase::Committed && c.purpose.is_build())
            .map(CheckedClaim::key)
            .collect()
    }

    /// Every piece of work, builds and verifications, the builder has committed to (or
    /// finished): what the protocol's order of commitments is about.
    pub(super) fn committed_work(&self) -> std::collections::BTreeSet<WorkKey> {
        use quarters_common::api::v1::ClaimPhase;
        self.live_claims()
            .filter(|c| c.phase >= ClaimPhase::Committed)
            .map(CheckedClaim::work)
            .collect()
    }

    /// The builder's claims that have not lapsed (their leases clamped when they were read)
    /// and whose builds have no verdict yet; none while it is quarantined.
    pub(super) fn live_claims(&self) -> impl Iterator<Item = &CheckedClaim> {
        let now = std::time::Instant::now();
        self.state
            .iter()
            .filter(|_| self.quarantine.is_none())
            .flat_map(|s| &s.claims)
            .filter(move |c| self.lapses_at.get(&c.work()).is_some_and(|at| now < *at))
            .filter(|c| {
                c.phase == quarters_common::api::v1::ClaimPhase::Committed
                    || c.build
                        .as_ref()
                        .is_none_or(|b| !self.judged.contains_key(b))
            })
    }
}

#[derive(Debug, Default)]
pub(super) struct SourceSlot {
    pub(super) name: String,
    pub(super) kind: String,
    /// Whether a poll has succeeded since the master started.
    pub(super) scanned: bool,
    pub(super) revision: Option<String>,
    pub(super) error: Option<String>,
    pub(super) packages: BTreeMap<String, Scanned>,
    /// How the last evaluation of PKGBUILDs without `.SRCINFO` went, or how far the running
    /// one has got.
    pub(super) evaluation: Option<quarters_parsers::evaluate::Progress>,
}

/// A source tarball: one package's files at one content of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TarballKey {
    /// The source's index in the master's list.
    pub(super) source: usize,
    /// The package's path in the source.
    pub(super) path: String,
    /// What the source says identifies the package's files (a tree id, a revision).
    pub(super) content_id: String,
}

#[derive(Clone, Debug)]
pub(crate) struct Tarball {
    pub(super) filename: String,
    pub(super) sha256: String,
    /// What makepkg will record as `pkgbuild_sha256sum` for a build from it.
    pub(super) pkgbuild_sha256: Option<String>,
}

/// First builds a builder has committed to (or finished), by what they build.
pub(super) fn committed_claims(builders: &[BuilderSlot]) -> HashMap<BuildKey, String> {
    use quarters_common::api::v1::ClaimPhase;
    let mut claimed = HashMap::new();
    for b in builders {
        for c in b.live_claims() {
            if c.phase >= ClaimPhase::Committed && c.purpose.is_build() {
                claimed.insert(c.key(), b.name.to_string());
            }
        }
    }
    claimed
}

impl BuilderSlot {
    /// A builder not read yet, quarantined if `quarantined` (read from the database) says so.
    pub(super) fn new(client: PeerClient, quarantined: &mut HashMap<String, Quarantine>) -> Self {
        BuilderSlot {
            quarantine: quarantined.remove(client.name().as_str()),
            name: client.name().clone(),
            client,
            liveness: Liveness::Unknown,
            state: None,
            violations: Vec::new(),
            committed_since: HashMap::new(),
            judged: HashMap::new(),
            leases: LeaseClock::default(),
            lapses_at: HashMap::new(),
            offences: Offences::default(),
        }
    }
}

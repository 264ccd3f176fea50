//! The claim protocol's moving parts: this builder's own claims, and one attempt at claiming a
//! package (publish, read peers, commit, read peers again).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quarters_common::api::v1::{Claim, ClaimPhase};
use quarters_common::peer_input::lease::{self, LeaseClock};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::review::{self, Conflict, Key, Observed, PeerClaims, key_of};

/// Publishes this builder's claims wherever its peers read them.
pub type Publish = Arc<dyn Fn(&[Claim]) + Send + Sync>;

/// This builder's own claims. Every change is published before the method returns, so that a
/// peer reading afterwards sees it: the protocol's safety rests on that.
pub struct ClaimBook {
    claims: Vec<Claim>,
    /// The lease this builder gives its claims: its configured one, no longer than the
    /// farm's maximum (the master publishes it; a longer lease would break the protocol).
    lease: Duration,
    configured_lease: Duration,
    /// Added to this builder's wall clock in its claims' stamps (the simulation skews clocks).
    skew: time::Duration,
    publish: Publish,
}

impl std::fmt::Debug for ClaimBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimBook")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl ClaimBook {
    pub fn new(lease: Duration, skew: time::Duration, publish: Publish) -> Self {
        ClaimBook {
            claims: Vec::new(),
            lease,
            configured_lease: lease,
            skew,
            publish,
        }
    }

    pub fn claims(&self) -> &[Claim] {
        &self.claims
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Keeps this builder's leases within the farm's maximum, from the next renewal on.
    pub fn limit_lease(&mut self, max: Duration) {
        self.lease = self.configured_lease.min(max);
    }

    pub fn holds(&self, key: &Key) -> Option<&Claim> {
        self.claims.iter().find(|c| review::is_on(c, key))
    }

    fn stamp(&self) -> (OffsetDateTime, OffsetDateTime) {
        let now = OffsetDateTime::now_utc() + self.skew;
        (now, now + self.lease)
    }

    /// Publishes a new `claimed` claim on `key`.
    pub fn claim(&mut self, key: &Key) {
        let (renewed_at, lease_until) = self.stamp();
        self.claims.retain(|c| !review::is_on(c, key));
        self.claims.push(Claim {
            pkgbase: key.build.pkgbase.clone(),
            version: key.build.version.clone(),
            arch: key.build.arch.to_string(),
            phase: ClaimPhase::Claimed,
            renewed_at,
            lease_until,
            build: None,
            purpose: key.purpose,
        });
        self.publish();
    }

    /// Moves the claim on `key` to `phase` (renewing it) and publishes.
    pub fn set_phase(&mut self, key: &Key, phase: ClaimPhase, build: Option<String>) {
        let (renewed_at, lease_until) = self.stamp();
        if let Some(c) = self.claims.iter_mut().find(|c| review::is_on(c, key)) {
            c.phase = phase;
            c.renewed_at = renewed_at;
            c.lease_until = lease_until;
            if build.is_some() {
                c.build = build;
            }
        }
        self.publish();
    }

    /// Withdraws (or retires) the claim on `key`.
    pub fn drop_claim(&mut self, key: &Key) {
        let before = self.claims.len();
        self.claims.retain(|c| !review::is_on(c, key));
        if self.claims.len() != before {
            self.publish();
        }
    }

    /// Renews every claim's lease: called while the builder works.
    pub fn renew(&mut self) {
        if self.claims.is_empty() {
            return;
        }
        let (renewed_at, lease_until) = self.stamp();
        for c in &mut self.claims {
            c.renewed_at = renewed_at;
            c.lease_until = lease_until;
        }
        self.publish();
    }

    fn publish(&self) {
        (self.publish)(&self.claims);
    }
}

/// Reading peers.
pub trait PeerReads: Send + Sync {
    /// The peers to read (every builder but this one).
    fn peers(&self) -> Vec<String>;
    /// Reads one peer's claims now.
    fn read(&self, peer: &str) -> impl Future<Output = Result<Vec<Claim>, String>> + Send;
}

/// What this builder remembers of its peers between reads: failed reads since each one's
/// last good one, to tell a dead peer from an unlucky one, and the renewals it has seen, to
/// count every lease from the first sighting of its renewal.
#[derive(Debug)]
pub struct PeerTracker {
    /// `(first failure, failures)` since the peer last answered.
    failing: HashMap<String, (Instant, u32)>,
    leases: LeaseClock<(String, Key)>,
    /// The longest lease a peer's claim is granted, whatever it says.
    max_lease: Duration,
}

impl PeerTracker {
    pub fn new(max_lease: Duration) -> Self {
        PeerTracker {
            failing: HashMap::new(),
            leases: LeaseClock::default(),
            max_lease,
        }
    }

    /// Takes the farm's maximum lease, as the master publishes it.
    pub fn limit_lease(&mut self, max: Duration) {
        self.max_lease = max;
    }

    /// `claims`, read from `peer` at `now`, with when each lapses.
    fn observe(&mut self, peer: &str, claims: Vec<Claim>, now: Instant) -> Vec<Observed> {
        // A claim whose architecture does not parse is on nothing this farm builds: left out.
        let claims: Vec<(Key, Claim)> = claims
            .into_iter()
            .filter_map(|c| Some((key_of(&c)?, c)))
            .collect();
        let shown: std::collections::HashSet<&Key> = claims.iter().map(|(k, _)| k).collect();
        self.leases.retain(|(p, k)| p != peer || shown.contains(k));
        claims
            .into_iter()
            .map(|(key, claim)| {
                let lease = lease::clamped(claim.renewed_at, claim.lease_until, self.max_lease);
                let lapses_at = self.leases.lapses_at(
                    &(peer.to_owned(), key),
                    claim.renewed_at,
                    lease,
                    now.into_std(),
                );
                Observed { claim, lapses_at }
            })
            .collect()
    }
}

/// A peer is taken for dead only after this many failed reads in a row...
const DEAD_AFTER_FAILURES: u32 = 3;
// ...spanning more than a lease: by then its claims have lapsed anyway.

/// Why an attempt gave up. The claim is withdrawn in every case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Withdrawn {
    /// A peer had committed to the package, or claimed it and won the tie-break, before this
    /// builder committed: the peer goes on.
    Conflict(String),
    /// A peer committed at about the same time as this builder (step 3): the peer may have
    /// seen this builder's commit and withdrawn too, so the package may be left unclaimed.
    Collided(String),
    /// A peer could not be read and may still be alive.
    Unreadable(String),
}

/// One attempt at claiming a package: runs steps 1 to 3 of the protocol. On `Ok`, the claim is
/// `committed` and the package may be built; on `Err`, the claim is gone.
pub struct Attempt<'a, R: PeerReads> {
    pub me: &'a str,
    pub book: &'a Mutex<ClaimBook>,
    pub reads: &'a R,
    pub tracker: &'a Mutex<PeerTracker>,
}

impl<R: PeerReads> Attempt<'_, R> {
    pub async fn run(&self, key: &Key) -> Result<(), Withdrawn> {
        self.book().claim(key);
        let result = self.review(key).await;
        if result.is_err() {
            self.book().drop_claim(key);
        }
        result
    }

    async fn review(&self, key: &Key) -> Result<(), Withdrawn> {
        let peers = self.read_all().await?;
        review::after_claiming(self.me, key, &peers, Instant::now().into_std())
            .map_err(conflict)?;
        self.book().set_phase(key, ClaimPhase::Committed, None);
        let peers = self.read_all().await?;
        review::after_committing(self.me, key, &peers, Instant::now().into_std()).map_err(|c| {
            match conflict(c) {
                Withdrawn::Conflict(why) => Withdrawn::Collided(why),
                other => other,
            }
        })?;
        Ok(())
    }

    fn book(&self) -> std::sync::MutexGuard<'_, ClaimBook> {
        self.book
            .lock()
            .expect("no code panics while holding the claim book")
    }

    /// Reads every peer at once. A peer that cannot be read fails the attempt, unless it has
    /// failed every read for longer than a lease: then its claims have lapsed anyway.
    pub async fn read_all(&self) -> Result<Vec<PeerClaims>, Withdrawn> {
        let peers = self.reads.peers();
        let reads =
            futures_util::future::join_all(peers.iter().map(|p| self.read_retrying(p))).await;
        let now = Instant::now();
        let lease = self.book().lease();
        let mut tracker = self
            .tracker
            .lock()
            .expect("no code panics while holding the tracker");
        let mut out = Vec::with_capacity(peers.len());
        for (peer, read) in peers.into_iter().zip(reads) {
            match read {
                Ok(claims) => {
                    tracker.failing.remove(&peer);
                    let claims = tracker.observe(&peer, claims, now);
                    out.push(PeerClaims { peer, claims });
                }
                Err(e) => {
                    let (first, count) = tracker.failing.entry(peer.clone()).or_insert((now, 0));
                    *count += 1;
                    let dead = *count >= DEAD_AFTER_FAILURES && now.duration_since(*first) > lease;
                    if !dead {
                        return Err(Withdrawn::Unreadable(format!("{peer}: {e}")));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Reads of a peer tried per review before its failure counts: one lost reply must not make a
/// live peer look dead.
const READ_TRIES: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(50);

impl<R: PeerReads> Attempt<'_, R> {
    async fn read_retrying(&self, peer: &str) -> Result<Vec<Claim>, String> {
        let mut result = self.reads.read(peer).await;
        for _ in 1..READ_TRIES {
            if result.is_ok() {
                break;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
            result = self.reads.read(peer).await;
        }
        result
    }
}

fn conflict(c: Conflict) -> Withdrawn {
    Withdrawn::Conflict(match c {
        Conflict::Committed { peer } => format!("{peer} has committed to it"),
        Conflict::Outranked { peer } => format!("{peer} claimed it and wins the tie-break"),
    })
}

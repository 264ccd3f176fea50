//! Reviewing peers' claims against one of ours.

use std::time::{Duration, Instant};

use quarters_common::api::v1::{Claim, ClaimPhase};

/// The package version a claim is about: `(pkgbase, version, arch)`.
pub type Key = (String, String, String);

pub fn key_of(c: &Claim) -> Key {
    (c.pkgbase.clone(), c.version.clone(), c.arch.clone())
}

/// A peer's claim as this builder saw it.
#[derive(Clone, Debug)]
pub struct Observed {
    pub claim: Claim,
    /// When the claim lapses by this builder's clock, unless renewed.
    pub lapses_at: Instant,
}

/// One peer's claims, read just now.
#[derive(Clone, Debug)]
pub struct PeerClaims {
    pub peer: String,
    pub claims: Vec<Observed>,
}

impl Observed {
    /// `claim` as seen at `seen_at`: its lease, as long as its builder gave it, runs from then.
    pub fn new(claim: Claim, seen_at: Instant) -> Self {
        let lease = (claim.lease_until - claim.renewed_at)
            .try_into()
            .unwrap_or(Duration::ZERO);
        Observed {
            claim,
            lapses_at: seen_at + lease,
        }
    }

    fn holds(&self, key: &Key, now: Instant) -> bool {
        now < self.lapses_at && key_of(&self.claim) == *key
    }
}

/// Why a claim was withdrawn after a review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// The peer has committed to the package (or built it).
    Committed { peer: String },
    /// The peer claimed it too, and its ticket wins.
    Outranked { peer: String },
}

/// Step 2: may a `claimed` claim with `ticket` by `me` go on to `committed`?
pub fn after_claiming(
    me: &str,
    ticket: u64,
    key: &Key,
    peers: &[PeerClaims],
    now: Instant,
) -> Result<(), Conflict> {
    for p in peers.iter().filter(|p| p.peer != me) {
        for o in p.claims.iter().filter(|o| o.holds(key, now)) {
            if o.claim.phase >= ClaimPhase::Committed {
                return Err(Conflict::Committed {
                    peer: p.peer.clone(),
                });
            }
            if (o.claim.ticket, p.peer.as_str()) < (ticket, me) {
                return Err(Conflict::Outranked {
                    peer: p.peer.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Step 3: may a `committed` claim by `me` be built?
pub fn after_committing(
    me: &str,
    key: &Key,
    peers: &[PeerClaims],
    now: Instant,
) -> Result<(), Conflict> {
    for p in peers.iter().filter(|p| p.peer != me) {
        if p.claims
            .iter()
            .any(|o| o.holds(key, now) && o.claim.phase >= ClaimPhase::Committed)
        {
            return Err(Conflict::Committed {
                peer: p.peer.clone(),
            });
        }
    }
    Ok(())
}

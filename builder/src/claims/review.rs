//! Reviewing peers' claims against one of ours.

use std::time::Instant;

use quarters_common::api::v1::{Claim, ClaimPhase};
use sha2::{Digest, Sha256};

pub use quarters_common::BuildKey as Key;

/// The package version a claim is about; `None` for a peer's claim whose architecture does not
/// parse, which no builder of this farm can be building.
pub fn key_of(c: &Claim) -> Option<Key> {
    let arch = quarters_common::Arch::parse(&c.arch).ok()?;
    Some(Key::new(&c.pkgbase, &c.version, arch))
}

/// Whether `c` is a claim on `key` (without making a key of it).
pub fn is_on(c: &Claim, key: &Key) -> bool {
    c.pkgbase == key.pkgbase && c.version == key.version && c.arch == key.arch.as_str()
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
    fn holds(&self, key: &Key, now: Instant) -> bool {
        now < self.lapses_at && is_on(&self.claim, key)
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

/// A builder's place in the tie-break of step 2 for one package version: the lower wins.
///
/// It is a hash of the builder's name and the package version, so that no builder can choose
/// to win (a random ticket that the builder publishes itself lets a hostile one publish 0 and
/// win every tie), and ties are won by each builder about equally often across packages.
pub fn rank(builder: &str, key: &Key) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [builder, &key.pkgbase, &key.version, key.arch.as_str()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// Step 2: may a `claimed` claim by `me` go on to `committed`?
pub fn after_claiming(
    me: &str,
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
            if (rank(&p.peer, key), p.peer.as_str()) < (rank(me, key), me) {
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

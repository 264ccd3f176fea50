//! Reviewing peers' claims against one of ours.

use std::time::Instant;

use quarters_common::api::v1::{Claim, ClaimPhase};
use sha2::{Digest, Sha256};

use quarters_common::BuildKey;
pub use quarters_common::WorkKey as Key;
use quarters_common::api::v1::Purpose;

/// The work a claim is about (a package version's build, or its verification); `None` for a
/// peer's claim whose architecture does not parse, which no builder of this farm can be
/// building.
pub fn key_of(c: &Claim) -> Option<Key> {
    let arch = quarters_common::Arch::parse(&c.arch).ok()?;
    Some(Key::new(
        BuildKey::new(&c.pkgbase, &c.version, arch),
        c.purpose,
    ))
}

/// Whether `c` is a claim on `key` (without making a key of it).
pub fn is_on(c: &Claim, key: &Key) -> bool {
    let b = &key.build;
    c.pkgbase == b.pkgbase
        && c.version == b.version
        && c.arch == b.arch.as_str()
        && c.purpose == key.purpose
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
    let b = &key.build;
    for part in [builder, &b.pkgbase, &b.version, b.arch.as_str()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    // A first build's rank hashes what it always has, so that builders of both versions
    // agree; a verification's ranks differ from its build's.
    if key.purpose == Purpose::Verify {
        h.update(b"verify\0");
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

#[cfg(test)]
mod tests {
    use super::*;
    use quarters_common::Arch;

    fn observed(phase: ClaimPhase, purpose: Purpose, key: &Key) -> Observed {
        let now = time::OffsetDateTime::now_utc();
        Observed {
            claim: Claim {
                pkgbase: key.build.pkgbase.clone(),
                version: key.build.version.clone(),
                arch: key.build.arch.to_string(),
                phase,
                renewed_at: now,
                lease_until: now + time::Duration::minutes(5),
                build: Some("b1".into()),
                purpose,
            },
            lapses_at: Instant::now() + std::time::Duration::from_secs(300),
        }
    }

    #[test]
    fn a_verification_contends_with_verifications_only() {
        let build = BuildKey::new("hello", "1.0-1", Arch::parse("x86_64").unwrap());
        let verify = Key::new(build.clone(), Purpose::Verify);
        let first = Key::new(build, Purpose::Build);
        let now = Instant::now();
        // The first builder's build is done and its claim still shown: no obstacle.
        let peers = vec![PeerClaims {
            peer: "builder-1".into(),
            claims: vec![observed(ClaimPhase::Done, Purpose::Build, &first)],
        }];
        assert_eq!(after_claiming("builder-2", &verify, &peers, now), Ok(()));
        assert_eq!(after_committing("builder-2", &verify, &peers, now), Ok(()));
        // The same claim stops another first build, as ever.
        assert!(after_claiming("builder-2", &first, &peers, now).is_err());
        // A peer committed to the verification stops this one.
        let peers = vec![PeerClaims {
            peer: "builder-3".into(),
            claims: vec![observed(ClaimPhase::Committed, Purpose::Verify, &verify)],
        }];
        assert!(after_committing("builder-2", &verify, &peers, now).is_err());
        assert_ne!(rank("b", &verify), rank("b", &first));
        assert_eq!(key_of(&peers[0].claims[0].claim), Some(verify));
    }
}

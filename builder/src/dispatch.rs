//! Sharing out the ready list among idle builders without asking anyone.
//!
//! Every builder reads the same master state: the ready list, highest priority first, the
//! builders that are up with their slots, and the claims they hold. From it each one computes
//! the same assignment: each ready package in turn goes to the idle builder that hashes highest
//! with it (rendezvous hashing), until the free slots run out. A builder tries its own packages
//! at once; a package assigned to someone else it tries only after a takeover delay, in case
//! that builder is slow, stuck or sees things differently. So in a healthy farm each newly
//! ready package draws one claim attempt instead of one per idle builder, and the claim
//! protocol stays what keeps two builders from building the same package.

use std::hash::Hasher;
use std::time::Duration;

use quarters_common::api::v1::{ClaimPhase, MasterState, PeerView, ReadyPackage};

/// How long a package assigned to another builder is left to it before this one tries.
pub const TAKEOVER: Duration = Duration::from_millis(500);
/// Added per builder that hashes higher with the package, so that takeovers are staggered
/// rather than simultaneous.
pub const TAKEOVER_STEP: Duration = Duration::from_millis(50);
/// Ranks past this one all wait the same: the stagger only needs to break the first ties.
const MAX_STAGGER: u32 = 20;

/// A builder with free slots, as the master's state shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idle {
    pub name: String,
    pub free: u32,
}

/// The builders the master shows up with free slots: their slots minus the claims they hold
/// (`claimed` or `committed`; a finished build waiting for its verdict holds no slot).
///
/// A builder that has just finished a build knows it is idle before the master shows it. If
/// other builders are idle too, it counts itself with the smaller of `my_free` and what the
/// master shows: sharing out the list with itself counted idle while everyone else still
/// counts it busy, it would take what the others gave to one of them; the master's next
/// state, a few milliseconds later, shows it idle to all. If no other builder is idle, nobody
/// else is given anything, and it goes by its own count at once, as it does when the master
/// does not list it as up.
pub fn idle_builders(master: &MasterState, me: &str, my_free: u32) -> Vec<Idle> {
    let free_of = |b: &PeerView| {
        let held = master
            .claims
            .iter()
            .filter(|c| c.builder == b.name && holds_slot(c.phase))
            .count();
        let held = u32::try_from(held).unwrap_or(u32::MAX);
        b.slots.unwrap_or(1).saturating_sub(held)
    };
    let mut shown_free = None;
    let mut idle = Vec::new();
    // A quarantined builder gets no share: it claims nothing that counts.
    for b in master
        .builders
        .iter()
        .filter(|b| b.status.is_up() && b.is_validated())
    {
        if b.name == me {
            shown_free = Some(free_of(b));
            continue;
        }
        let free = free_of(b);
        if free > 0 {
            idle.push(Idle {
                name: b.name.clone(),
                free,
            });
        }
    }
    let my_free = match shown_free {
        Some(shown) if !idle.is_empty() => my_free.min(shown),
        _ => my_free,
    };
    if my_free > 0 {
        idle.push(Idle {
            name: me.to_owned(),
            free: my_free,
        });
    }
    idle
}

fn holds_slot(phase: ClaimPhase) -> bool {
    matches!(phase, ClaimPhase::Claimed | ClaimPhase::Committed)
}

/// Assigns `candidates` (highest priority first) to `idle` builders: each package in turn goes
/// to the builder with a free slot that hashes highest with it, among those that may build it
/// (a verification never goes to a builder that built the version). Returns the index into `idle`
/// of each candidate's builder, or `None` once the slots have run out.
pub fn assign(candidates: &[&ReadyPackage], idle: &[Idle]) -> Vec<Option<usize>> {
    let mut free: Vec<u32> = idle.iter().map(|b| b.free).collect();
    candidates
        .iter()
        .map(|p| {
            let best = (0..idle.len())
                .filter(|&i| free[i] > 0 && p.may_be_built_by(&idle[i].name))
                .max_by_key(|&i| rendezvous(&idle[i].name, &p.pkgbase, &p.version))?;
            free[best] -= 1;
            Some(best)
        })
        .collect()
}

/// How long after first seeing `package` assigned to another builder `me` waits before trying
/// it: [`TAKEOVER`], plus a step for each idle builder that hashes higher with it.
pub fn takeover_delay(me: &str, package: &ReadyPackage, idle: &[Idle]) -> Duration {
    let mine = rendezvous(me, &package.pkgbase, &package.version);
    let above = idle
        .iter()
        .filter(|b| b.name != me && rendezvous(&b.name, &package.pkgbase, &package.version) > mine)
        .count();
    let above = u32::try_from(above).unwrap_or(u32::MAX).min(MAX_STAGGER);
    TAKEOVER + TAKEOVER_STEP * above
}

/// Rendezvous hashing: a stable, well-spread order of builders per package.
pub fn rendezvous(builder: &str, pkgbase: &str, version: &str) -> u64 {
    // FNV-1a: stable across runs and machines, unlike the standard library's hasher, and every
    // builder must compute the same order.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    for part in [builder, "\0", pkgbase, "\0", version] {
        h.write(part.as_bytes());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarters_common::api::v1::{ClaimView, Download, PeerStatus};

    fn package(name: &str) -> ReadyPackage {
        let url: url::Url = "https://master.test/x".parse().unwrap();
        ReadyPackage {
            pkgbase: name.to_owned(),
            version: "1-1".to_owned(),
            arch: "x86_64".to_owned(),
            pkgnames: vec![name.to_owned()],
            priority: 0,
            expected_ms: 0,
            source: Download {
                url: url.clone(),
                sha256: String::new(),
            },
            repo: url,
            repo_db: "farm-build".to_owned(),
            packager: None,
            source_date_epoch: None,
            verify: None,
        }
    }

    fn builder(name: &str, up: bool, slots: Option<u32>) -> PeerView {
        let since = time::OffsetDateTime::UNIX_EPOCH;
        PeerView {
            name: name.to_owned(),
            url: format!("https://{name}.test/").parse().unwrap(),
            status: if up {
                PeerStatus::Up { since }
            } else {
                PeerStatus::Down {
                    since,
                    error: "gone".to_owned(),
                }
            },
            slots,
            quarantine: None,
        }
    }

    fn claim(builder: &str, pkgbase: &str, phase: ClaimPhase) -> ClaimView {
        ClaimView {
            builder: builder.to_owned(),
            pkgbase: pkgbase.to_owned(),
            version: "1-1".to_owned(),
            arch: "x86_64".to_owned(),
            phase,
            purpose: Default::default(),
        }
    }

    #[test]
    fn idle_builders_are_up_with_slots_their_claims_leave_free() {
        let master = MasterState {
            builders: vec![
                builder("a", true, Some(2)),
                builder("b", true, None),
                builder("c", false, Some(4)),
                builder("d", true, Some(1)),
                builder("me", true, Some(1)),
            ],
            claims: vec![
                claim("a", "x", ClaimPhase::Committed),
                claim("b", "y", ClaimPhase::Done),
                claim("d", "z", ClaimPhase::Claimed),
            ],
            ..MasterState::default()
        };
        let names = |idle: Vec<Idle>| -> Vec<(String, u32)> {
            idle.into_iter().map(|b| (b.name, b.free)).collect()
        };
        let expected = |me: u32| {
            vec![
                ("a".to_owned(), 1),
                ("b".to_owned(), 1),
                ("me".to_owned(), me),
            ]
        };
        // a: one of two slots taken; b: a finished build holds no slot; c: down; d: busy;
        // me: no more than the master shows, so that everyone shares out the same way.
        assert_eq!(names(idle_builders(&master, "me", 3)), expected(1));
        // A quarantined builder gets no share, however idle.
        let mut quarantined = master.clone();
        quarantined.builders[1].quarantine = Some(quarters_common::api::v1::QuarantineView {
            reason: "test".to_owned(),
            since: time::OffsetDateTime::UNIX_EPOCH,
            by: quarters_common::api::v1::QuarantinedBy::Operator,
        });
        assert_eq!(
            names(idle_builders(&quarantined, "me", 3)),
            vec![("a".to_owned(), 1), ("me".to_owned(), 1)]
        );
        // Not listed as up: by my own count.
        let mut unlisted = master.clone();
        unlisted.builders.pop();
        assert_eq!(names(idle_builders(&unlisted, "me", 3)), expected(3));
        // The master still shows me busy while others are idle: I wait for its next state.
        let mut busy = master;
        busy.claims.push(claim("me", "w", ClaimPhase::Committed));
        assert_eq!(
            names(idle_builders(&busy, "me", 1)),
            expected(1)[..2].to_vec()
        );
        // ... but if nobody else is idle, I need not wait.
        busy.claims.push(claim("a", "v", ClaimPhase::Committed));
        busy.claims.push(claim("b", "u", ClaimPhase::Claimed));
        assert_eq!(
            names(idle_builders(&busy, "me", 1)),
            vec![("me".to_owned(), 1)]
        );
    }

    #[test]
    fn a_verification_never_goes_to_a_builder_that_built_the_version() {
        let idle = |names: &[&str]| -> Vec<Idle> {
            names
                .iter()
                .map(|n| Idle {
                    name: (*n).to_owned(),
                    free: 1,
                })
                .collect()
        };
        for i in 0..50 {
            let mut p = package(&format!("p{i}"));
            let first = assign(&[&p], &idle(&["a", "b"]))[0].unwrap();
            let first = ["a", "b"][first];
            p.verify = Some(quarters_common::api::v1::VerifyRequest {
                built_by: vec![first.to_owned()],
            });
            let got = assign(&[&p], &idle(&["a", "b"]))[0].map(|i| ["a", "b"][i]);
            assert!(got.is_some() && got != Some(first), "{i}: {got:?}");
            // Nobody else idle: nobody gets it.
            assert_eq!(assign(&[&p], &idle(&[first]))[0], None);
            assert!(!p.may_be_built_by(first) && p.may_be_built_by("c"));
        }
    }

    #[test]
    fn every_builder_computes_the_same_assignment_and_each_gets_one_package() {
        let packages: Vec<ReadyPackage> = (0..10).map(|i| package(&format!("p{i}"))).collect();
        let refs: Vec<&ReadyPackage> = packages.iter().collect();
        let idle: Vec<Idle> = (0..4)
            .map(|i| Idle {
                name: format!("builder-{i}"),
                free: 1,
            })
            .collect();
        let first = assign(&refs, &idle);
        // The same state read by another builder lists the idle builders in another order.
        let mut reversed = idle.clone();
        reversed.reverse();
        let second: Vec<Option<&str>> = assign(&refs, &reversed)
            .into_iter()
            .map(|i| i.map(|i| reversed[i].name.as_str()))
            .collect();
        let first: Vec<Option<&str>> = first
            .into_iter()
            .map(|i| i.map(|i| idle[i].name.as_str()))
            .collect();
        assert_eq!(first, second);
        // The four highest-priority packages go to four different builders; the rest wait.
        let mut given: Vec<&str> = first[..4].iter().map(|b| b.unwrap()).collect();
        given.sort_unstable();
        given.dedup();
        assert_eq!(given.len(), 4);
        assert!(first[4..].iter().all(Option::is_none));
    }

    #[test]
    fn a_builder_with_more_free_slots_gets_more_packages() {
        let packages: Vec<ReadyPackage> = (0..5).map(|i| package(&format!("p{i}"))).collect();
        let refs: Vec<&ReadyPackage> = packages.iter().collect();
        let idle = vec![
            Idle {
                name: "big".to_owned(),
                free: 3,
            },
            Idle {
                name: "small".to_owned(),
                free: 1,
            },
        ];
        let assigned = assign(&refs, &idle);
        let count = |b: usize| assigned.iter().filter(|a| **a == Some(b)).count();
        assert_eq!((count(0), count(1)), (3, 1));
        assert_eq!(assigned[4], None);
    }

    #[test]
    fn takeovers_are_staggered_by_rank() {
        let p = package("p");
        let idle: Vec<Idle> = (0..30)
            .map(|i| Idle {
                name: format!("builder-{i}"),
                free: 1,
            })
            .collect();
        let mut delays: Vec<Duration> = idle
            .iter()
            .map(|b| takeover_delay(&b.name, &p, &idle))
            .collect();
        delays.sort_unstable();
        assert_eq!(delays[0], TAKEOVER);
        assert_eq!(delays[1], TAKEOVER + TAKEOVER_STEP);
        assert_eq!(delays[29], TAKEOVER + TAKEOVER_STEP * MAX_STAGGER);
    }
}

//! Leases as a reader counts them.
//!
//! A claim says when its builder last renewed it and until when it holds, both by the
//! builder's clock, which no reader compares with its own. A reader counts the lease
//! (`lease_until - renewed_at`, clamped to the farm's maximum) from the moment it *first* saw
//! that renewal. Counting from the latest read instead would let a builder keep a claim alive
//! for ever by publishing the same renewal again and again; counting from the first sighting,
//! only a renewal that is new to the reader extends a claim, which is what renewing means.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// The renewals a reader has seen, one per claim key.
#[derive(Debug)]
pub struct LeaseClock<K> {
    seen: HashMap<K, Sighting>,
}

#[derive(Clone, Copy, Debug)]
struct Sighting {
    renewed_at: OffsetDateTime,
    first_seen: Instant,
}

impl<K> Default for LeaseClock<K> {
    fn default() -> Self {
        LeaseClock {
            seen: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> LeaseClock<K> {
    /// Records that the claim `key`, renewed at `renewed_at`, was seen at `now`, and says when
    /// its `lease` (already clamped) lapses: a lease after the first sighting of this renewal.
    pub fn lapses_at(
        &mut self,
        key: &K,
        renewed_at: OffsetDateTime,
        lease: Duration,
        now: Instant,
    ) -> Instant {
        let sighting = self
            .seen
            .entry(key.clone())
            .and_modify(|s| {
                if s.renewed_at != renewed_at {
                    *s = Sighting {
                        renewed_at,
                        first_seen: now,
                    };
                }
            })
            .or_insert(Sighting {
                renewed_at,
                first_seen: now,
            });
        sighting.first_seen + lease
    }

    /// Forgets the claims `keep` does not name: they were withdrawn, and a new claim on the
    /// same key starts a new lease.
    pub fn retain(&mut self, keep: impl Fn(&K) -> bool) {
        self.seen.retain(|k, _| keep(k));
    }
}

/// `lease_until - renewed_at`, no more than `max` (and zero if the builder's stamps go
/// backwards): the lease a reader grants a claim.
pub fn clamped(renewed_at: OffsetDateTime, lease_until: OffsetDateTime, max: Duration) -> Duration {
    Duration::try_from(lease_until - renewed_at)
        .unwrap_or(Duration::ZERO)
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_seen_again_does_not_extend_the_lease() {
        let mut clock = LeaseClock::default();
        let t0 = Instant::now();
        let renewed = OffsetDateTime::UNIX_EPOCH;
        let lease = Duration::from_secs(10);
        assert_eq!(clock.lapses_at(&"a", renewed, lease, t0), t0 + lease);
        let later = t0 + Duration::from_secs(8);
        assert_eq!(clock.lapses_at(&"a", renewed, lease, later), t0 + lease);
        // A new renewal counts from when it was seen.
        let renewed_again = renewed + time::Duration::seconds(5);
        assert_eq!(
            clock.lapses_at(&"a", renewed_again, lease, later),
            later + lease
        );
    }

    #[test]
    fn a_forgotten_claim_starts_a_new_lease() {
        let mut clock = LeaseClock::default();
        let t0 = Instant::now();
        let renewed = OffsetDateTime::UNIX_EPOCH;
        let lease = Duration::from_secs(10);
        clock.lapses_at(&"a", renewed, lease, t0);
        clock.retain(|k| *k != "a");
        let later = t0 + Duration::from_secs(30);
        assert_eq!(clock.lapses_at(&"a", renewed, lease, later), later + lease);
    }

    #[test]
    fn leases_are_clamped_and_never_negative() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let max = Duration::from_secs(600);
        let forever = at + time::Duration::days(365 * 8000);
        assert_eq!(clamped(at, forever, max), max);
        assert_eq!(
            clamped(at, at - time::Duration::seconds(5), max),
            Duration::ZERO
        );
        assert_eq!(
            clamped(at, at + time::Duration::seconds(30), max),
            Duration::from_secs(30)
        );
    }
}

//! Quarantine: the builders the master no longer validates, and the offences that put a
//! builder there.
//!
//! A builder may be hostile or broken. Every breach of the protocol the master sees (a state
//! field it had to ignore, a build it shows without having claimed it, a package that failed
//! the master's checks through the builder's fault, commitments held without building) is an
//! offence. A builder with `after` distinct offences within `window` is quarantined
//! automatically; an operator can do the same by hand and is the only one who lifts a
//! quarantine. A quarantined builder's claims and builds count for nothing, and the builders,
//! which read the master's list, ignore its claims, so the packages it held are claimable at
//! once.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use quarters_common::api::v1::{QuarantineView, QuarantinedBy};
use time::OffsetDateTime;

/// When a builder is quarantined automatically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Distinct offences that quarantine a builder; 0 never quarantines automatically.
    pub after: u32,
    /// How long an offence counts.
    pub window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            after: 3,
            window: Duration::from_secs(3600),
        }
    }
}

/// Who quarantined a builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// `quartersctl builder disable`.
    Operator,
    /// The master, for protocol violations.
    Master,
}

impl By {
    /// The stable name, in the database and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            By::Operator => "operator",
            By::Master => "master",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operator" => Some(By::Operator),
            "master" => Some(By::Master),
            _ => None,
        }
    }
}

/// A builder's quarantine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantine {
    pub reason: String,
    pub since: OffsetDateTime,
    pub by: By,
}

impl Quarantine {
    /// As the wire shows it.
    pub fn to_view(&self) -> QuarantineView {
        QuarantineView {
            reason: self.reason.clone(),
            since: self.since,
            by: match self.by {
                By::Operator => QuarantinedBy::Operator,
                By::Master => QuarantinedBy::Master,
            },
        }
    }
}

impl fmt::Display for Quarantine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "quarantined by the {} since {}: {}",
            self.by.as_str(),
            self.since
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            self.reason
        )
    }
}

/// The most offences kept per builder.
pub const MAX_KEPT: usize = 256;

/// One builder's recent offences, each counted once however often it is seen again.
#[derive(Debug, Default)]
pub struct Offences {
    recent: VecDeque<(Instant, String)>,
}

impl Offences {
    /// Records `what` at `now`; says why the builder must be quarantined if this offence
    /// reaches the policy's count.
    pub fn record(&mut self, policy: &Policy, what: &str, now: Instant) -> Option<String> {
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > policy.window)
        {
            self.recent.pop_front();
        }
        if self.recent.iter().any(|(_, w)| w == what) {
            return None;
        }
        self.recent.push_back((now, what.to_owned()));
        // Bounded whatever the policy: with `after = 0` nothing ever quarantines, and a
        // builder must not fill the master's memory with distinct offences either.
        if self.recent.len() > MAX_KEPT {
            self.recent.pop_front();
        }
        let count = self.recent.len();
        (policy.after > 0 && count >= policy.after as usize).then(|| {
            format!(
                "{count} protocol violation{} within {} s, the latest: {what}",
                if count == 1 { "" } else { "s" },
                policy.window.as_secs()
            )
        })
    }

    /// Starts counting afresh: an operator enabled the builder again.
    pub fn clear(&mut self) {
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_offences_within_the_window_quarantine() {
        let policy = Policy {
            after: 3,
            window: Duration::from_secs(60),
        };
        let mut o = Offences::default();
        let t0 = Instant::now();
        assert_eq!(o.record(&policy, "a", t0), None);
        // Seen again, the same offence does not count twice.
        assert_eq!(o.record(&policy, "a", t0 + Duration::from_secs(1)), None);
        assert_eq!(o.record(&policy, "b", t0 + Duration::from_secs(2)), None);
        let why = o.record(&policy, "c", t0 + Duration::from_secs(3));
        assert_eq!(
            why.as_deref(),
            Some("3 protocol violations within 60 s, the latest: c")
        );
    }

    #[test]
    fn old_offences_expire_and_zero_never_quarantines() {
        let policy = Policy {
            after: 2,
            window: Duration::from_secs(60),
        };
        let mut o = Offences::default();
        let t0 = Instant::now();
        assert_eq!(o.record(&policy, "a", t0), None);
        assert_eq!(o.record(&policy, "b", t0 + Duration::from_secs(61)), None);
        assert!(
            o.record(&policy, "c", t0 + Duration::from_secs(62))
                .is_some()
        );
        let never = Policy { after: 0, ..policy };
        let mut o = Offences::default();
        for i in 0..10_000 {
            assert_eq!(o.record(&never, &i.to_string(), t0), None);
        }
        assert_eq!(o.recent.len(), MAX_KEPT);
    }
}

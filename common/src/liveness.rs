//! A node's view of one peer's reachability, kept from the events of a follower.

use time::OffsetDateTime;

use crate::api::v1::PeerStatus;
use crate::follow::PeerEvent;

/// Reachability of a peer as this node last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    Unknown,
    Up {
        since: OffsetDateTime,
    },
    Down {
        since: OffsetDateTime,
        error: String,
    },
}

impl Liveness {
    /// Updates the view from a follower's event; returns whether it changed.
    pub fn observe<T>(&mut self, event: &PeerEvent<T>) -> bool {
        let now = OffsetDateTime::now_utc();
        let next = match (event, &*self) {
            (PeerEvent::State(_) | PeerEvent::Alive, Liveness::Up { .. }) => return false,
            (PeerEvent::State(_) | PeerEvent::Alive, _) => Liveness::Up { since: now },
            (PeerEvent::Down(error), Liveness::Down { since, .. }) => Liveness::Down {
                since: *since,
                error: error.clone(),
            },
            (PeerEvent::Down(error), _) => Liveness::Down {
                since: now,
                error: error.clone(),
            },
        };
        let changed = next != *self;
        *self = next;
        changed
    }

    pub fn is_up(&self) -> bool {
        matches!(self, Liveness::Up { .. })
    }

    pub fn to_wire(&self) -> PeerStatus {
        match self {
            Liveness::Unknown => PeerStatus::Unknown,
            Liveness::Up { since } => PeerStatus::Up { since: *since },
            Liveness::Down { since, error } => PeerStatus::Down {
                since: *since,
                error: error.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_only_transitions() {
        let mut l = Liveness::Unknown;
        assert!(l.observe(&PeerEvent::<()>::Alive));
        assert!(!l.observe(&PeerEvent::<()>::Alive));
        assert!(l.observe(&PeerEvent::<()>::Down("refused".into())));
        let Liveness::Down { since, .. } = l.clone() else {
            panic!("down")
        };
        assert!(l.observe(&PeerEvent::<()>::Down("timed out".into())));
        assert_eq!(
            l,
            Liveness::Down {
                since,
                error: "timed out".into()
            }
        );
        assert!(!l.observe(&PeerEvent::<()>::Down("timed out".into())));
        assert!(l.observe(&PeerEvent::<()>::Alive));
        assert!(l.is_up());
    }
}

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
        match event {
            PeerEvent::State(_) | PeerEvent::Alive => self.answered(),
            PeerEvent::Down(error) => self.failed(error),
        }
    }

    /// The peer answered a read; returns whether that changed the view.
    pub fn answered(&mut self) -> bool {
        if self.is_up() {
            return false;
        }
        *self = Liveness::Up {
            since: OffsetDateTime::now_utc(),
        };
        true
    }

    /// A read of the peer failed with `error`; returns whether that changed the view.
    pub fn failed(&mut self, error: &str) -> bool {
        let since = match self {
            Liveness::Down { since, .. } => *since,
            _ => OffsetDateTime::now_utc(),
        };
        let next = Liveness::Down {
            since,
            error: error.to_owned(),
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

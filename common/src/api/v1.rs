//! Version 1 of the node state protocol.
//!
//! Every node serves `GET /v1/state`: an [`Envelope`] around its role's content.
//!
//! * `generation` increases by at least one on every change of the content, for the life of the
//!   node and across its restarts: it starts at the node's start time in microseconds since the
//!   Unix epoch, so a reader never mistakes a restarted node's state for one it has already seen.
//! * The `ETag` of a state response is `"<generation>"`; `If-None-Match` with it gets
//!   `304 Not Modified` while the state is unchanged.
//! * Long-poll: `?wait=SECONDS&after=GENERATION` (or `wait` with `If-None-Match`) answers as soon
//!   as the generation differs from the one given, or with 304 when the wait ends. The wait is
//!   capped at [`MAX_WAIT_SECS`].

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

/// The value of [`Envelope::api`] for this module's types.
pub const API_VERSION: &str = "v1";

/// The longest long-poll a node serves; longer waits are shortened to this.
pub const MAX_WAIT_SECS: u64 = 60;

/// Path of the state document.
pub const STATE_PATH: &str = "/v1/state";

/// Path of the liveness probe.
pub const HEALTH_PATH: &str = "/v1/health";

/// What kind of node published a state.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Master,
    Builder,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Builder => "builder",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The versioned envelope around every node's state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Envelope<T> {
    /// Always [`API_VERSION`].
    pub api: String,
    /// The node's name, as in its certificate.
    pub node: String,
    pub role: Role,
    /// See the module documentation.
    pub generation: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The role's own content: [`MasterState`] or [`BuilderState`].
    pub content: T,
}

/// Answer of `GET /v1/health`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `"ok"` while the node serves.
    pub status: String,
    pub node: String,
    pub role: Role,
    pub generation: u64,
}

/// How a node last found one of its peers.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum PeerStatus {
    /// Not read yet since this node started.
    Unknown,
    /// The last read succeeded.
    Up {
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
    },
    /// The last read failed; `error` says why (unreachable, wrong certificate, bad answer).
    Down {
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
        error: String,
    },
}

impl PeerStatus {
    pub fn is_up(&self) -> bool {
        matches!(self, PeerStatus::Up { .. })
    }
}

/// A peer as another node sees it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    pub name: String,
    pub url: Url,
    #[serde(flatten)]
    pub status: PeerStatus,
}

/// The master's content.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct MasterState {
    /// Every builder of the master's config, in config order, with its liveness.
    pub builders: Vec<PeerView>,
}

/// A builder's content.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BuilderState {
    /// Architectures this builder builds for (`x86_64`, ...); `any` packages go to every builder.
    pub arch: Vec<String>,
    /// How many builds it runs at once.
    pub slots: u32,
    /// The master this builder follows, with its liveness.
    pub master: PeerView,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_with_flattened_peer_status() {
        let since = time::macros::datetime!(2026-11-21 10:00 UTC);
        let state = Envelope {
            api: API_VERSION.to_owned(),
            node: "master".to_owned(),
            role: Role::Master,
            generation: 7,
            started_at: since,
            content: MasterState {
                builders: vec![PeerView {
                    name: "builder-a".to_owned(),
                    url: "https://127.0.0.1:8444/".parse().unwrap(),
                    status: PeerStatus::Down {
                        since,
                        error: "connection refused".to_owned(),
                    },
                }],
            },
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["role"], "master");
        assert_eq!(json["content"]["builders"][0]["status"], "down");
        assert_eq!(
            json["content"]["builders"][0]["error"],
            "connection refused"
        );
        assert_eq!(json["started_at"], "2026-11-21T10:00:00Z");
        let back: Envelope<MasterState> = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
    }
}

//! What every Quarters node shares: the wire types (`api::v1`), the farm's PKI and TLS
//! configuration, the HTTPS server loop, the state publisher with conditional GET and
//! long-poll, the peer client that reads other nodes, and config-loading helpers.
//!
//! Of packages and builds it knows only what two nodes must agree on: the wire types, the
//! build key and the architecture, and the checks every value a peer publishes passes
//! (`peer_input`). Planning, building and repositories live in the master and builder crates.

pub mod api;
pub mod build_key;
pub mod client;
pub mod config;
pub mod conn_guard;
pub mod counters;
pub mod docs;
pub mod follow;
pub mod fsutil;
pub mod liveness;
pub mod name;
pub mod peer_input;
pub mod pki;
pub mod serve;
pub mod shutdown;
pub mod state;
pub mod telemetry;
pub mod tls;

pub use build_key::{BuildKey, WorkKey};
pub use name::NodeName;
pub use peer_input::Arch;
pub mod farm_key;
pub mod files;

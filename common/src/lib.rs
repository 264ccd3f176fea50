//! What every Quarters node shares: the wire types (`api::v1`), the farm's PKI and TLS
//! configuration, the HTTPS server loop, the state publisher with conditional GET and
//! long-poll, the peer client that reads other nodes, and config-loading helpers.
//!
//! Nothing in here knows about packages or builds; that lives in the master and builder crates.

pub mod api;
pub mod client;
pub mod config;
pub mod conn_guard;
pub mod counters;
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

pub use name::NodeName;
pub mod farm_key;
pub mod files;

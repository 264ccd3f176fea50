//! Claims settled by peer review: which builder builds which package version.
//!
//! A builder never asks anyone for permission; it publishes its claim in its own state and reads
//! its peers' states (DESIGN.md):
//!
//! 1. publish the claim as `claimed`;
//! 2. read every peer; withdraw if a peer shows the package `committed` (or done), or `claimed`
//!    and it wins the tie-break (a hash of the builder's name and the package, which no builder
//!    chooses);
//! 3. publish `committed`; read every peer again; withdraw if another peer shows `committed`.
//!
//! Because each builder writes before it reads, of two racing builders at least the later one
//! sees the other's `committed` in step 3: two builders that can read each other never both
//! proceed. A peer that cannot be read makes the attempt fail (and be retried) unless every read
//! of it has failed for longer than a lease: a dead builder stops blocking the farm after a
//! lease, and its own claims lapse after theirs.
//!
//! Leases are compared without comparing clocks: a claim says when it was renewed and until when
//! it holds, both by its builder's clock, and a reader counts the difference, clamped to the
//! farm's maximum lease, from the moment *it* first saw that renewal: a builder that publishes
//! a lease until the year 9999, or shows the same renewal for ever, holds nothing for longer
//! than the maximum. Only the builders the master validates are peers: the claims of a
//! quarantined builder are not read at all.
//!
//! This module is pure: the protocol steps take the peers' states and the time as inputs, so
//! that the real builder and the deterministic simulation (tests/claims_sim.rs) run the same code.

pub mod protocol;
pub mod review;

pub use protocol::{Attempt, ClaimBook, PeerReads, Withdrawn};
pub use review::{Observed, PeerClaims};

//! Signing what the farm publishes: the farm's OpenPGP key ([`key`]), the signer process that
//! alone holds it ([`daemon`]), and the master's way of asking it for signatures ([`client`]).
//!
//! The key never enters the master's process: a master taken over through its HTTPS port can
//! have things signed while it is in the attacker's hands, but cannot carry the key away. See
//! ARCHITECTURE.md, "Signing".

pub mod client;
pub mod daemon;
pub mod key;
pub mod keydir;
pub mod keyring;
mod protocol;

pub use client::{SignError, Signer};
pub use key::{FarmKey, Fingerprint, KeyError, Signature};

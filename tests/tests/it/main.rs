//! Workspace integration tests: one binary, one module per capability.

mod chroot_builds;
mod config_errors;
mod corpus;
mod demo;
mod e2e;
mod e2e_faults;
mod examples;
mod farm_sim;
mod hostile_builder;
mod hostile_clients;
mod hostile_pkgbuilds;
mod install;
mod master_crash;
mod master_flow;
mod pki_cli;
mod readme;
mod refusals;
mod remote_ctl;
mod scan_cli;
mod signing;
mod simulate;
mod state_protocol;
mod tls_trust;
mod verification;

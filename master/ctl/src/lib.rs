//! `quartersctl` and what it runs besides talking to a master: a whole farm on this machine
//! (`localfarm`, also used by the workspace tests), the demo over the embedded example
//! packages, and the scheduling simulator. None of it is the master: it uses the
//! `quarters-master` library from outside (its spool, its config, its database read beside a
//! local master, the signer's daemon and key directory), and starts the nodes as processes.

pub mod demo;
pub mod examples;
pub mod localfarm;
pub mod remote;
pub mod render;
pub mod simulate;

//! Package sources for Quarters: where PKGBUILDs live, what changed, and what each package is.
//!
//! A [`Source`] is one repository of packaging in one version-control system. The kinds are
//! plug-ins: each is one module implementing [`Source`], registered by one line in
//! [`registry::KINDS`]. On top of any source, a [`Scanner`] turns listings into package metadata,
//! parsing only packages whose content changed (a persisted cache keyed by content id).
//!
//! This crate knows nothing of the network or the farm; the master drives it.

pub mod bump;
pub mod cmd;
pub mod cvs;
pub mod evaluate;
pub mod git;
pub mod layout;
pub mod meta;
pub mod printsrcinfo;
pub mod registry;
pub mod scan;
pub mod source;
pub mod svn;
pub mod tarball;
pub mod watch;

pub use meta::PkgBase;
pub use registry::{SourceSpec, open};
pub use scan::{PackageError, Scanner};
pub use source::{Entry, Files, Listing, Revision, Source, SourceError};

//! Wire types: everything a node publishes or reads over HTTPS.
//!
//! Each API version is one module. A change that an older reader could misread gets a new
//! module; adding an optional field does not.

pub mod v1;

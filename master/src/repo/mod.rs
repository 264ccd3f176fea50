//! The build and live repositories: package files, and pacman databases written from the
//! master's SQLite tables.

pub mod package;

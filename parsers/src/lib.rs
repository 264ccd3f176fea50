//! Package source parsers (git, SVN, CVS): listing packages with their metadata, telling what
//! changed, exporting a package at a revision. Filled by the parsers issue; nothing here yet.

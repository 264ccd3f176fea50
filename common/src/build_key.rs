//! What names one build everywhere in the farm: a pkgbase at a version for an architecture.
//! Claims, builds, verdicts, failures and leases are all keyed by it.

use std::fmt;

use crate::api::v1::Purpose;
use crate::peer_input::Arch;

/// One build of a pkgbase: the farm builds each key once (and, for verification, again).
///
/// The fields are the values the sources or a checked peer state gave; the key makes no
/// claim of its own about their syntax.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuildKey {
    pub pkgbase: String,
    /// `[epoch:]pkgver-pkgrel`.
    pub version: String,
    /// A machine architecture, or `any`.
    pub arch: Arch,
}

impl BuildKey {
    pub fn new(pkgbase: impl Into<String>, version: impl Into<String>, arch: Arch) -> Self {
        BuildKey {
            pkgbase: pkgbase.into(),
            version: version.into(),
            arch,
        }
    }
}

/// One piece of work on a package version: its first build, or a verification of it. Claims
/// are about work, so that a verification never contends with the build it checks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkKey {
    pub build: BuildKey,
    pub purpose: Purpose,
}

impl WorkKey {
    pub fn new(build: BuildKey, purpose: Purpose) -> Self {
        WorkKey { build, purpose }
    }
}

/// `pkgbase version (arch)`, and `, verification` for one.
impl fmt::Display for WorkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.purpose {
            Purpose::Build => write!(f, "{}", self.build),
            Purpose::Verify => write!(f, "{}, verification", self.build),
        }
    }
}

/// `pkgbase version (arch)`, as logs and messages name a build.
impl fmt::Display for BuildKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.pkgbase, self.version, self.arch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_any_part_and_name_themselves() {
        let a = BuildKey::new("hello", "1.0-1", Arch::any());
        let x86 = Arch::parse("x86_64").unwrap();
        assert_ne!(a, BuildKey::new("hello", "1.0-1", x86.clone()));
        assert_ne!(a, BuildKey::new("hello", "1.0-2", Arch::any()));
        assert_ne!(a, BuildKey::new("hellp", "1.0-1", Arch::any()));
        assert_eq!(
            BuildKey::new("hello", "1.0-1", x86).to_string(),
            "hello 1.0-1 (x86_64)"
        );
    }
}

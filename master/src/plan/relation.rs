//! Dependency strings (`foo`, `foo>=1.2`, `libfoo.so=1-64`) and what satisfies them, with
//! Arch's own version comparison (alpm-types).

use std::borrow::Cow;
use std::str::FromStr;

use alpm_types::{PackageRelation, Version, VersionRequirement};

/// A dependency: a name, and optionally a version requirement.
#[derive(Clone, Debug)]
pub struct Requirement<'a> {
    pub name: Cow<'a, str>,
    requirement: Option<VersionRequirement>,
}

impl<'a> Requirement<'a> {
    /// Reads a dependency as written in a package. Anything alpm-types cannot read as a
    /// relation (a soname dependency, say) is matched by its name alone.
    pub fn parse(text: &'a str) -> Self {
        // Most dependencies are bare names; only a version constraint needs the parser.
        if !text.contains(['<', '>', '=']) {
            return Requirement {
                name: Cow::Borrowed(text),
                requirement: None,
            };
        }
        match PackageRelation::from_str(text) {
            Ok(relation) => Requirement {
                name: Cow::Owned(relation.name.to_string()),
                requirement: relation.version_requirement,
            },
            Err(_) => Requirement {
                name: Cow::Borrowed(bare_name(text)),
                requirement: None,
            },
        }
    }

    /// Whether a package or provision called `name`, at `version` if it has one, satisfies
    /// this requirement. A provision without a version satisfies only unversioned
    /// requirements, as in pacman.
    pub fn satisfied_by(&self, name: &str, version: Option<&str>) -> bool {
        if name != self.name {
            return false;
        }
        match (&self.requirement, version) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(req), Some(v)) => Version::from_str(v).is_ok_and(|v| req.is_satisfied_by(&v)),
        }
    }
}

impl std::fmt::Display for Requirement<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.requirement {
            Some(req) => write!(f, "{}{req}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What a `provides` entry offers: a name, and the version it provides if it says one.
pub fn provision(text: &str) -> (&str, Option<&str>) {
    match text.split_once('=') {
        Some((name, version)) => (name, Some(version)),
        None => (text, None),
    }
}

fn bare_name(text: &str) -> &str {
    text.split(['<', '>', '=']).next().unwrap_or(text)
}

/// Compares two full versions as pacman does; unreadable versions compare as equal.
pub fn vercmp(a: &str, b: &str) -> std::cmp::Ordering {
    match (
        alpm_types::FullVersion::from_str(a),
        alpm_types::FullVersion::from_str(b),
    ) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => std::cmp::Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_provisions_satisfy_as_in_pacman() {
        let r = Requirement::parse("foo>=1.2");
        assert!(r.satisfied_by("foo", Some("1.10-1")));
        assert!(!r.satisfied_by("foo", Some("1.1-3")));
        assert!(!r.satisfied_by("foo", None));
        assert!(!r.satisfied_by("bar", Some("2")));
        let any = Requirement::parse("foo");
        assert!(any.satisfied_by("foo", None));
        assert_eq!(Requirement::parse("libfoo.so=1-64").name, "libfoo.so");
        assert_eq!(provision("libfoo.so=1-64"), ("libfoo.so", Some("1-64")));
        assert_eq!(vercmp("1:1.0-1", "2.0-1"), std::cmp::Ordering::Greater);
        assert_eq!(vercmp("1.0-2", "1.0-10"), std::cmp::Ordering::Less);
    }
}

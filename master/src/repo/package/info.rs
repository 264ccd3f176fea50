//! The typed view of a package's `.PKGINFO` and `.BUILDINFO`: what the master checks and
//! stores, validated here, plus the alpm-* crates' complaints as lint warnings.

use std::str::FromStr;

use super::fields::Fields;

/// What the master needs of `.PKGINFO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkgInfo {
    pub pkgname: String,
    pub pkgbase: String,
    /// The full version, `[epoch:]pkgver-pkgrel`.
    pub version: String,
    /// A machine architecture, or `any`.
    pub arch: String,
    pub packager: Option<String>,
    pub provides: Vec<String>,
    /// Run-time dependencies (`depend`).
    pub depends: Vec<String>,
    pub fields: Fields,
}

/// What the master needs of `.BUILDINFO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    pub builddir: Option<String>,
    pub pkgbuild_sha256sum: Option<String>,
    pub packager: Option<String>,
    /// What was installed in the root when the package was built, as `.BUILDINFO` lists it.
    pub installed: Vec<Installed>,
    pub fields: Fields,
}

/// One `installed = NAME-PKGVER-PKGREL-ARCH` line of `.BUILDINFO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub name: String,
    /// `[epoch:]pkgver-pkgrel`.
    pub version: String,
    pub arch: String,
}

impl Installed {
    /// Splits from the right, as names may hold `-` and the last three parts may not.
    pub fn parse(entry: &str) -> Option<Installed> {
        let mut parts = entry.rsplitn(4, '-');
        let arch = parts.next()?;
        let pkgrel = parts.next()?;
        let pkgver = parts.next()?;
        let name = parts.next()?;
        (!name.is_empty() && !pkgver.is_empty() && !pkgrel.is_empty()).then(|| Installed {
            name: name.to_owned(),
            version: format!("{pkgver}-{pkgrel}"),
            arch: arch.to_owned(),
        })
    }
}

/// Why `.PKGINFO` cannot be used: only what pacman itself would refuse, or what the farm's
/// invariants need (a pkgbase to match the claim, a name fit to be a file name).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InfoError {
    #[error(".PKGINFO has no {0}")]
    Missing(&'static str),
    #[error(".PKGINFO: {key} {value:?} is not a valid {what}")]
    Invalid {
        key: &'static str,
        value: String,
        what: &'static str,
    },
}

impl PkgInfo {
    /// Reads `.PKGINFO`, and adds to `warnings` whatever is odd but harmless.
    pub fn parse(text: &str, warnings: &mut Vec<String>) -> Result<Self, InfoError> {
        let (fields, malformed) = Fields::parse(text);
        if malformed > 0 {
            warnings.push(format!(
                ".PKGINFO: {malformed} line(s) without `=`, skipped"
            ));
        }
        let required = |key: &'static str| fields.one(key).ok_or(InfoError::Missing(key));
        let pkgname = name(required("pkgname")?, "pkgname")?;
        let pkgbase = name(required("pkgbase")?, "pkgbase")?;
        let version = required("pkgver")?.to_owned();
        // A version goes into file names and database entries: it must be one token, as
        // makepkg's own check of pkgver and pkgrel makes it.
        if version.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(InfoError::Invalid {
                key: "pkgver",
                value: version,
                what: "version",
            });
        }
        let arch = required("arch")?.to_owned();
        if !arch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(InfoError::Invalid {
                key: "arch",
                value: arch,
                what: "architecture",
            });
        }
        lint(
            ".PKGINFO",
            alpm_pkginfo::PackageInfo::from_str(text).err(),
            warnings,
        );
        Ok(PkgInfo {
            packager: fields.one("packager").map(str::to_owned),
            provides: fields.all("provides").map(str::to_owned).collect(),
            depends: fields.all("depend").map(str::to_owned).collect(),
            pkgname,
            pkgbase,
            version,
            arch,
            fields,
        })
    }
}

impl BuildInfo {
    /// Reads `.BUILDINFO`; nothing in it is required here, the checks say what must match.
    pub fn parse(text: &str, warnings: &mut Vec<String>) -> Self {
        let (fields, malformed) = Fields::parse(text);
        if malformed > 0 {
            warnings.push(format!(
                ".BUILDINFO: {malformed} line(s) without `=`, skipped"
            ));
        }
        lint(
            ".BUILDINFO",
            alpm_buildinfo::BuildInfo::from_str(text).err(),
            warnings,
        );
        BuildInfo {
            builddir: fields.one("builddir").map(str::to_owned),
            pkgbuild_sha256sum: fields.one("pkgbuild_sha256sum").map(str::to_owned),
            packager: fields.one("packager").map(str::to_owned),
            installed: fields
                .all("installed")
                .filter_map(Installed::parse)
                .collect(),
            fields,
        }
    }
}

/// A package name as makepkg allows it (alpm-types' `Name` is makepkg's rule): it becomes
/// part of file names in the pool, so it is checked, not trusted.
fn name(value: &str, key: &'static str) -> Result<String, InfoError> {
    alpm_types::Name::from_str(value)
        .map(|n| n.to_string())
        .map_err(|_| InfoError::Invalid {
            key,
            value: value.to_owned(),
            what: "package name",
        })
}

/// The longest lint message kept: the crates' parse errors quote the input, which a builder
/// controls.
const MAX_LINT: usize = 300;

/// A schema crate's complaint, kept as a one-line warning.
fn lint(member: &str, error: Option<impl std::fmt::Display>, warnings: &mut Vec<String>) {
    let Some(error) = error else { return };
    let mut line = format!(
        "{member} does not follow the alpm schema (pacman accepts it): {}",
        error
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
    if line.len() > MAX_LINT {
        let mut end = MAX_LINT;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    warnings.push(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAKEPKG_NO_URL: &str = "# Generated by makepkg 6.0.2\npkgname = a\npkgbase = a\npkgver = 1.0-1\npkgdesc = d\nurl = \nbuilddate = 1700000000\npackager = Unknown Packager\nsize = 10\narch = x86_64\nlicense = my own licence\n";

    #[test]
    fn what_makepkg_writes_for_a_pkgbuild_without_url_is_read_with_warnings() {
        let mut warnings = Vec::new();
        let info = PkgInfo::parse(MAKEPKG_NO_URL, &mut warnings).unwrap();
        assert_eq!(
            (
                info.pkgname.as_str(),
                info.version.as_str(),
                info.arch.as_str()
            ),
            ("a", "1.0-1", "x86_64")
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with(".PKGINFO does not follow"),
            "{warnings:?}"
        );
        assert!(warnings[0].len() <= MAX_LINT + '…'.len_utf8());
    }

    #[test]
    fn only_what_pacman_or_the_farm_needs_is_refused() {
        let mut w = Vec::new();
        let without = |key: &str| {
            MAKEPKG_NO_URL
                .lines()
                .filter(|l| !l.starts_with(key))
                .collect::<Vec<_>>()
                .join("\n")
        };
        for key in ["pkgname", "pkgbase", "pkgver", "arch"] {
            assert_eq!(
                PkgInfo::parse(&without(key), &mut w),
                Err(InfoError::Missing(key))
            );
        }
        let evil = MAKEPKG_NO_URL.replace("pkgname = a", "pkgname = ../../etc");
        assert!(matches!(
            PkgInfo::parse(&evil, &mut w),
            Err(InfoError::Invalid { key: "pkgname", .. })
        ));
        let spaced = MAKEPKG_NO_URL.replace("pkgver = 1.0-1", "pkgver = 1.0 -1");
        assert!(matches!(
            PkgInfo::parse(&spaced, &mut w),
            Err(InfoError::Invalid { key: "pkgver", .. })
        ));
    }
}

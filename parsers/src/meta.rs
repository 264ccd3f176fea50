//! Package metadata, read from .SRCINFO with Arch's own alpm-srcinfo and alpm-types.

use std::collections::BTreeMap;

use alpm_srcinfo::{MergedPackage, SourceInfoV1};
use alpm_types::{Architecture, Architectures};
use serde::{Deserialize, Serialize};

/// Largest .SRCINFO accepted; real ones are a few kilobytes.
pub const MAX_SRCINFO_BYTES: usize = 1 << 20;

/// What the farm knows of one pkgbase at one revision of its source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PkgBase {
    pub pkgbase: String,
    /// Every pkgname the pkgbase builds (more than one for a split package).
    pub pkgnames: Vec<String>,
    /// The full version: `[epoch:]pkgver-pkgrel`.
    pub version: String,
    /// The architectures as declared: `["any"]`, or machine architectures.
    pub arch: Vec<String>,
    /// What a build for each declared architecture needs and produces, with the
    /// architecture-specific fields (`depends_x86_64`, ...) merged in.
    pub targets: BTreeMap<String, Target>,
    /// Author of the last change to the package, who answers for the build.
    pub packager: Option<String>,
    /// When that change was made (Unix seconds): the `SOURCE_DATE_EPOCH` of every build of
    /// this version, so that two honest builds of it can be the same bytes.
    #[serde(default)]
    pub changed_at: Option<i64>,
}

/// The build of a pkgbase for one architecture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub packages: Vec<SplitPackage>,
    pub makedepends: Vec<String>,
    pub checkdepends: Vec<String>,
    pub sources: Vec<SourceFile>,
}

/// One package of a build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitPackage {
    pub pkgname: String,
    /// The package's own architecture: `any` for an `any` package of a machine build.
    pub arch: String,
    pub depends: Vec<String>,
    pub provides: Vec<String>,
    pub conflicts: Vec<String>,
    pub replaces: Vec<String>,
}

/// One entry of `source=()`, with its checksums by algorithm (`sha256`, `b2`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    pub source: String,
    pub checksums: BTreeMap<String, String>,
}

/// Why metadata could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetaError {
    #[error(".SRCINFO is {0} bytes, larger than the limit of {MAX_SRCINFO_BYTES}")]
    TooLarge(usize),
    #[error("malformed .SRCINFO: {0}")]
    Malformed(String),
}

impl PkgBase {
    /// Parses a .SRCINFO. The packager is left empty; the source knows it.
    pub fn from_srcinfo(text: &str) -> Result<Self, MetaError> {
        if text.len() > MAX_SRCINFO_BYTES {
            return Err(MetaError::TooLarge(text.len()));
        }
        let info = SourceInfoV1::from_string(text)
            .map_err(|e| MetaError::Malformed(first_lines(&e.to_string(), 12)))?;
        let base = &info.base;
        let arch: Vec<Architecture> = match &base.architectures {
            Architectures::Any => vec![Architecture::Any],
            Architectures::Some(list) => list.iter().cloned().map(Architecture::Some).collect(),
        };
        let mut targets = BTreeMap::new();
        for a in &arch {
            let packages: Vec<MergedPackage> = info.packages_for_architecture(a.clone()).collect();
            targets.insert(a.to_string(), target(&packages));
        }
        Ok(PkgBase {
            pkgbase: base.name.to_string(),
            pkgnames: info.packages.iter().map(|p| p.name.to_string()).collect(),
            version: base.version.to_string(),
            arch: arch.iter().map(ToString::to_string).collect(),
            targets,
            packager: None,
            changed_at: None,
        })
    }

    /// Every pkgname with everything it provides, for any target.
    pub fn provided_names(&self) -> impl Iterator<Item = &str> {
        self.targets.values().flat_map(|t| {
            t.packages.iter().flat_map(|p| {
                std::iter::once(p.pkgname.as_str()).chain(p.provides.iter().map(String::as_str))
            })
        })
    }
}

fn target(packages: &[MergedPackage]) -> Target {
    let strings = |v: &[_]| -> Vec<String> { v.iter().map(|x: &_| format!("{x}")).collect() };
    let first = packages.first();
    Target {
        packages: packages
            .iter()
            .map(|p| SplitPackage {
                pkgname: p.name.to_string(),
                arch: p.architecture.to_string(),
                depends: p.dependencies.iter().map(ToString::to_string).collect(),
                provides: p.provides.iter().map(ToString::to_string).collect(),
                conflicts: strings(&p.conflicts),
                replaces: strings(&p.replaces),
            })
            .collect(),
        makedepends: first
            .map(|p| strings(&p.make_dependencies))
            .unwrap_or_default(),
        checkdepends: first
            .map(|p| strings(&p.check_dependencies))
            .unwrap_or_default(),
        sources: first
            .map(|p| {
                p.sources
                    .iter()
                    .map(|s| {
                        let mut checksums = BTreeMap::new();
                        let mut put = |algo: &str, value: Option<String>| {
                            if let Some(v) = value {
                                checksums.insert(algo.to_owned(), v);
                            }
                        };
                        put("b2", s.b2_checksum.as_ref().map(ToString::to_string));
                        put("md5", s.md5_checksum.as_ref().map(ToString::to_string));
                        put("sha1", s.sha1_checksum.as_ref().map(ToString::to_string));
                        put(
                            "sha224",
                            s.sha224_checksum.as_ref().map(ToString::to_string),
                        );
                        put(
                            "sha256",
                            s.sha256_checksum.as_ref().map(ToString::to_string),
                        );
                        put(
                            "sha384",
                            s.sha384_checksum.as_ref().map(ToString::to_string),
                        );
                        put(
                            "sha512",
                            s.sha512_checksum.as_ref().map(ToString::to_string),
                        );
                        put("cksum", s.crc_checksum.as_ref().map(ToString::to_string));
                        SourceFile {
                            source: s.source.to_string(),
                            checksums,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn first_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().take(n).collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPLIT: &str = "\
pkgbase = demo
\tpkgdesc = a split package
\tpkgver = 1.0
\tpkgrel = 3
\tepoch = 2
\tarch = x86_64
\tarch = aarch64
\tmakedepends = gcc
\tcheckdepends = check
\tsource = demo-1.0.tar.gz::https://example.org/demo-1.0.tar.gz
\tsha256sums = 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03
\tdepends_x86_64 = glibc>=2.38

pkgname = demo-lib
\tprovides = libdemo.so
\tconflicts = demo-lib-git
\treplaces = old-demo

pkgname = demo-bin
\tdepends = demo-lib=2:1.0-3

pkgname = demo-doc
\tarch = any
";

    #[test]
    fn reads_split_packages_epochs_and_arch_specific_fields() {
        let meta = PkgBase::from_srcinfo(SPLIT).unwrap();
        assert_eq!(meta.pkgbase, "demo");
        assert_eq!(meta.version, "2:1.0-3");
        assert_eq!(meta.pkgnames, ["demo-lib", "demo-bin", "demo-doc"]);
        assert_eq!(meta.arch, ["x86_64", "aarch64"]);

        let x86 = &meta.targets["x86_64"];
        assert_eq!(x86.makedepends, ["gcc"]);
        assert_eq!(x86.checkdepends, ["check"]);
        let lib = &x86.packages[0];
        assert_eq!(lib.depends, ["glibc>=2.38"], "depends_x86_64 is merged in");
        assert_eq!(lib.provides, ["libdemo.so"]);
        assert_eq!(lib.conflicts, ["demo-lib-git"]);
        assert_eq!(lib.replaces, ["old-demo"]);
        // A package overriding `depends` keeps the base's `depends_x86_64`, as makepkg does.
        assert_eq!(x86.packages[1].depends, ["demo-lib=2:1.0-3", "glibc>=2.38"]);
        assert_eq!(x86.packages[2].pkgname, "demo-doc");
        assert_eq!(
            x86.sources[0].checksums["sha256"],
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );

        let arm = &meta.targets["aarch64"];
        assert!(arm.packages[0].depends.is_empty(), "no depends_aarch64");
        let names: Vec<&str> = meta.provided_names().collect();
        assert!(names.contains(&"libdemo.so"));
    }

    #[test]
    fn an_any_package_has_one_any_target() {
        let meta = PkgBase::from_srcinfo(
            "pkgbase = docs\n\tpkgver = 1\n\tpkgrel = 1\n\tarch = any\n\npkgname = docs\n",
        )
        .unwrap();
        assert_eq!(meta.arch, ["any"]);
        assert_eq!(meta.targets.keys().collect::<Vec<_>>(), ["any"]);
        assert_eq!(meta.version, "1-1");
    }

    #[test]
    fn malformed_and_hostile_srcinfo_is_refused_with_a_reason() {
        for (text, why) in [
            ("pkgbase = x\n\tpkgver = 1\n", "SRCINFO"),
            (
                "pkgbase = ../../etc\n\tpkgver = 1\n\tpkgrel = 1\n\tarch = any\n\npkgname = a\n",
                "",
            ),
            ("this is not a srcinfo", ""),
        ] {
            let err = PkgBase::from_srcinfo(text).unwrap_err();
            assert!(matches!(err, MetaError::Malformed(_)), "{text}: {err}");
            assert!(err.to_string().contains(why), "{text}: {err}");
        }
        let huge = "#".repeat(MAX_SRCINFO_BYTES + 1);
        assert_eq!(
            PkgBase::from_srcinfo(&huge).unwrap_err(),
            MetaError::TooLarge(MAX_SRCINFO_BYTES + 1)
        );
    }
}

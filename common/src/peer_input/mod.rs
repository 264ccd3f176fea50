//! What a peer publishes, once checked: the types every field of another node's state is
//! validated into before anything else reads it.
//!
//! A builder may be hostile or broken, so every string in its state is untrusted input. Each
//! kind of value gets a type with a charset and a length limit; free text is truncated. The
//! charsets are those of the tools that make the values (makepkg's names and versions, the
//! builders' own build ids), so no honest peer is refused. None of these values is ever made
//! part of a filesystem path: locations are derived from ids the reader makes.

use std::fmt;

mod builder;
pub mod lease;

pub use builder::{
    BuilderLimits, CheckedArtifact, CheckedBuild, CheckedBuilder, CheckedClaim, CheckedOutcome,
    Violation,
};

/// A value a peer published that is not what its field allows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?}: {reason}")]
pub struct Invalid {
    /// What the value should have been ("build id", "architecture").
    pub what: &'static str,
    /// The value, shortened: it is the peer's, and goes into logs.
    pub value: String,
    pub reason: &'static str,
}

impl Invalid {
    fn new(what: &'static str, value: &str, reason: &'static str) -> Self {
        Invalid {
            what,
            value: shorten(value, 80),
            reason,
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` where it was cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Checks `value` against a length limit and a per-character rule, the first character
/// against its own rule.
fn check(
    what: &'static str,
    value: &str,
    max: usize,
    first: impl Fn(char) -> bool,
    rest: impl Fn(char) -> bool,
) -> Result<(), Invalid> {
    if value.is_empty() {
        return Err(Invalid::new(what, value, "empty"));
    }
    if value.len() > max {
        return Err(Invalid::new(what, value, "too long"));
    }
    let mut chars = value.chars();
    if !chars.next().is_some_and(&first) {
        return Err(Invalid::new(
            what,
            value,
            "starts with a character it may not",
        ));
    }
    if !chars.all(rest) {
        return Err(Invalid::new(what, value, "holds a character it may not"));
    }
    Ok(())
}

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, Invalid> {
                $check($what, value)?;
                Ok($name(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

/// makepkg's rule for package names (alpm-types' `Name`): lowercase letters, digits and
/// `@._+-`, not starting with `-` or `.`.
fn name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || "@._+-".contains(c)
}

checked_string!(
    /// A build id as builders make them (`PKGBASE-MILLIS-N`): letters, digits and `@._+-`, not
    /// starting with `.` or `-`, at most 128 bytes.
    BuildId, "build id", check_build_id
);

checked_string!(
    /// A build stage (`fetch`, `depends`, `build`, ...): lowercase letters, digits and `-`,
    /// starting with a letter, at most 32 bytes.
    StageName, "stage", check_stage
);

checked_string!(
    /// A pkgbase or pkgname, by makepkg's rule, at most 128 bytes.
    PkgName, "package name", check_name
);

checked_string!(
    /// `[epoch:]pkgver-pkgrel` as makepkg allows it: the epoch digits, the pkgver printable
    /// ASCII without whitespace, `:`, `/` and `-` (makepkg's `check_pkgver`), the pkgrel
    /// digits and `.`; at most 128 bytes.
    Version, "version", check_version
);

checked_string!(
    /// An architecture (`x86_64`, `aarch64`, `any`): lowercase letters, digits and `_`, at
    /// most 32 bytes.
    Arch, "architecture", check_arch
);

/// What pacman calls the architecture of a package that runs everywhere.
const ANY: &str = "any";

/// The one place that knows `any`: a package of architecture `any` installs on every machine,
/// goes into every architecture's repository, and is built once for all of them (pacman's and
/// makepkg's rule).
impl Arch {
    /// `any`.
    pub fn any() -> Self {
        Arch(ANY.to_owned())
    }

    pub fn is_any(&self) -> bool {
        self.0 == ANY
    }

    /// Whether a package of this architecture installs on a machine of `machine`'s.
    pub fn runs_on(&self, machine: &str) -> bool {
        self.is_any() || self.0 == machine
    }

    /// The repositories (by architecture) a package of this architecture belongs in, among the
    /// farm's `machines`: all of them for `any`, else its own.
    pub fn repos<'a>(&'a self, machines: &'a [Arch]) -> impl Iterator<Item = &'a Arch> + 'a {
        let all = self.is_any();
        machines
            .iter()
            .filter(move |m| all || *m == self)
            .chain((!all && !machines.contains(self)).then_some(self))
    }
}

checked_string!(
    /// The name of a package file a build announces (`NAME-VER-REL-ARCH.pkg.tar.zst`):
    /// printable ASCII without whitespace and `/` (what names and versions may hold), not
    /// starting with `.` or `-`, at most 255 bytes (a file name's limit).
    /// Whether it matches its `.PKGINFO` is checked once the file is read.
    ArtifactName, "package file name", check_artifact
);

checked_string!(
    /// A sha256 digest: 64 lowercase hexadecimal digits.
    Sha256, "sha256", check_sha256
);

fn check_build_id(what: &'static str, v: &str) -> Result<(), Invalid> {
    check(
        what,
        v,
        128,
        |c| c.is_ascii_alphanumeric() || "@_+".contains(c),
        |c| c.is_ascii_alphanumeric() || "@._+-".contains(c),
    )
}

fn check_stage(what: &'static str, v: &str) -> Result<(), Invalid> {
    check(
        what,
        v,
        32,
        |c| c.is_ascii_lowercase(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
    )
}

fn check_name(what: &'static str, v: &str) -> Result<(), Invalid> {
    check(
        what,
        v,
        128,
        |c| name_char(c) && c != '-' && c != '.',
        name_char,
    )
}

fn check_arch(what: &'static str, v: &str) -> Result<(), Invalid> {
    check(
        what,
        v,
        32,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
    )
}

fn check_sha256(what: &'static str, v: &str) -> Result<(), Invalid> {
    let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    check(what, v, 64, hex, hex)?;
    if v.len() != 64 {
        return Err(Invalid::new(what, v, "not 64 hexadecimal digits"));
    }
    Ok(())
}

fn check_version(what: &'static str, v: &str) -> Result<(), Invalid> {
    if v.len() > 128 {
        return Err(Invalid::new(what, v, "too long"));
    }
    let (epoch, rest) = match v.split_once(':') {
        Some((epoch, rest)) => (Some(epoch), rest),
        None => (None, v),
    };
    if let Some(epoch) = epoch
        && (epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Invalid::new(what, v, "its epoch is not a number"));
    }
    let Some((pkgver, pkgrel)) = rest.rsplit_once('-') else {
        return Err(Invalid::new(what, v, "has no pkgrel"));
    };
    let pkgver_ok = !pkgver.is_empty()
        && pkgver
            .chars()
            .all(|c| c.is_ascii_graphic() && !":/-".contains(c));
    if !pkgver_ok {
        return Err(Invalid::new(
            what,
            v,
            "its pkgver holds a character it may not",
        ));
    }
    let pkgrel_ok = pkgrel.starts_with(|c: char| c.is_ascii_digit())
        && pkgrel.chars().all(|c| c.is_ascii_digit() || c == '.');
    if !pkgrel_ok {
        return Err(Invalid::new(what, v, "its pkgrel is not a number"));
    }
    Ok(())
}

fn check_artifact(what: &'static str, v: &str) -> Result<(), Invalid> {
    check(
        what,
        v,
        255,
        |c| name_char(c) && c != '-' && c != '.',
        |c| c.is_ascii_graphic() && c != '/',
    )?;
    if !v.contains(".pkg.tar") {
        return Err(Invalid::new(what, v, "not a package file (.pkg.tar...)"));
    }
    Ok(())
}

/// Free text a peer wrote (a failure's reason): kept to [`MAX_TEXT`] bytes, control
/// characters other than newlines and tabs replaced, so that it is stored and published once
/// at a size every reader takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(String);

/// The longest free text kept from a peer.
pub const MAX_TEXT: usize = 4096;

impl Text {
    pub fn new(text: &str) -> Self {
        // Cut before cleaning so that a huge text costs no more than the limit, and again
        // after, since a replacement character is longer than what it replaces.
        let cleaned: String = shorten(text, MAX_TEXT)
            .chars()
            .map(|c| {
                if c.is_control() && c != '\n' && c != '\t' {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect();
        Text(shorten(&cleaned, MAX_TEXT))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_builders_and_makepkg_make_is_taken() {
        for id in ["hello-1700000000000-0", "gtk2+extra-1-2", "lib32-glibc-1-0"] {
            BuildId::parse(id).unwrap();
        }
        for stage in ["prepare", "fetch", "depends", "build", "install"] {
            StageName::parse(stage).unwrap();
        }
        for name in ["glibc", "gtk2+extra", "python-pip", "lib32-foo", "r@x"] {
            PkgName::parse(name).unwrap();
        }
        for version in ["1.0-1", "2:1.2.3_rc1+git4~x-1.1", "0-1", "1.0RC@2-3"] {
            Version::parse(version).unwrap();
        }
        for arch in ["x86_64", "any", "aarch64", "armv7h", "i686"] {
            Arch::parse(arch).unwrap();
        }
        for file in [
            "hello-1.0-1-x86_64.pkg.tar.zst",
            "gtk2+extra-2:1.0_a-1-any.pkg.tar",
        ] {
            ArtifactName::parse(file).unwrap();
        }
        Sha256::parse(&"ab".repeat(32)).unwrap();
    }

    #[test]
    fn any_runs_everywhere_and_belongs_in_every_repository() {
        let x86 = Arch::parse("x86_64").unwrap();
        let arm = Arch::parse("aarch64").unwrap();
        let farm = [x86.clone(), arm.clone()];
        assert!(Arch::any().is_any() && !x86.is_any());
        assert!(Arch::any().runs_on("aarch64") && x86.runs_on("x86_64"));
        assert!(!x86.runs_on("aarch64"));
        assert_eq!(Arch::any().repos(&farm).collect::<Vec<_>>(), [&x86, &arm]);
        assert_eq!(arm.repos(&farm).collect::<Vec<_>>(), [&arm]);
        let riscv = Arch::parse("riscv64").unwrap();
        assert_eq!(riscv.repos(&farm).collect::<Vec<_>>(), [&riscv]);
    }

    #[test]
    fn nothing_that_could_become_a_path_or_flood_a_reader_is_taken() {
        let bad_ids = ["../../victim", "..", ".hidden", "a/b", "a\0b", "", "-rf"];
        for id in bad_ids {
            let e = BuildId::parse(id).unwrap_err();
            assert_eq!(e.what, "build id");
        }
        assert!(BuildId::parse(&"a".repeat(129)).is_err());
        for stage in ["../../planted", "Build", "", "a b"] {
            StageName::parse(stage).unwrap_err();
        }
        for name in ["-x", ".x", "A", "a/b", "a b"] {
            PkgName::parse(name).unwrap_err();
        }
        for version in ["1.0", "1:2:3-1", "a/b-1", "1-x", "x:1-1", "1 0-1"] {
            Version::parse(version).unwrap_err();
        }
        for file in ["../x.pkg.tar.zst", "x/y.pkg.tar", "x.tar.gz", ".pkg.tar"] {
            ArtifactName::parse(file).unwrap_err();
        }
        Sha256::parse(&"AB".repeat(32)).unwrap_err();
        Sha256::parse("abc").unwrap_err();
        let long = Invalid::new("x", &"y".repeat(10_000), "z");
        assert!(
            long.value.len() < 100,
            "the peer's value is shortened in errors"
        );
    }

    #[test]
    fn free_text_is_cut_and_cleaned() {
        let text = Text::new(&format!("a\u{1b}[2Jb\n{}", "é".repeat(10_000)));
        assert!(text.as_str().len() <= MAX_TEXT + '…'.len_utf8());
        assert!(text.as_str().starts_with("a\u{fffd}[2Jb\n"));
        assert!(text.as_str().ends_with('…'));
    }
}

//! A small packaging tree, and checks every kind of source must pass on it.

use std::fs;
use std::path::Path;
use std::process::Command;

use quarters_parsers::evaluate::Evaluation;
use quarters_parsers::scan::{PackageError, Scanner};
use quarters_parsers::{PkgBase, Revision};

pub const LIB_A_SRCINFO: &str = "pkgbase = lib-a
\tpkgver = 1.0
\tpkgrel = 1
\tarch = x86_64
\tprovides = liba.so

pkgname = lib-a
";
pub const LIB_A_PKGBUILD: &str = "pkgname=lib-a
pkgver=1.0
pkgrel=1
arch=(x86_64)
provides=(liba.so)
package() { :; }
";

pub fn split_b_srcinfo(pkgrel: u32) -> String {
    format!(
        "pkgbase = split-b
\tpkgver = 2.0
\tpkgrel = {pkgrel}
\tepoch = 1
\tarch = x86_64
\tmakedepends = lib-a
\tdepends_x86_64 = lib-a

pkgname = b-lib

pkgname = b-bin
\tdepends = b-lib
"
    )
}

pub fn split_b_pkgbuild(pkgrel: u32) -> String {
    format!(
        "pkgbase=split-b
pkgname=(b-lib b-bin)
pkgver=2.0
pkgrel={pkgrel}
epoch=1
arch=(x86_64)
makedepends=(lib-a)
depends_x86_64=(lib-a)
package_b-lib() {{ :; }}
package_b-bin() {{ depends=(b-lib); }}
"
    )
}

/// Writes the tree: three good packages and three bad ones.
pub fn write_tree(root: &Path) {
    let put = |path: &str, text: &str| {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    put("lib-a/.SRCINFO", LIB_A_SRCINFO);
    put("lib-a/PKGBUILD", LIB_A_PKGBUILD);
    put("split-b/.SRCINFO", &split_b_srcinfo(1));
    put("split-b/PKGBUILD", &split_b_pkgbuild(1));
    put(
        "any-c/.SRCINFO",
        "pkgbase = any-c\n\tpkgver = 0.1\n\tpkgrel = 1\n\tarch = any\n\npkgname = any-c\n",
    );
    put(
        "any-c/PKGBUILD",
        "pkgname=any-c\npkgver=0.1\npkgrel=1\narch=(any)\n",
    );
    put(
        "broken-d/.SRCINFO",
        "pkgbase = broken-d\n\tthis line is not srcinfo\n",
    );
    put("broken-d/PKGBUILD", "pkgname=broken-d\n");
    put(
        "evil/.SRCINFO",
        "pkgbase = ../../etc\n\tpkgver = 1\n\tpkgrel = 1\n\tarch = any\n\npkgname = passwd\n",
    );
    put(
        "mismatch/.SRCINFO",
        "pkgbase = other\n\tpkgver = 1\n\tpkgrel = 1\n\tarch = any\n\npkgname = other\n",
    );
    put("README", "not a package\n");
}

pub fn no_evaluation() -> Evaluation {
    Evaluation {
        enabled: false,
        ..Evaluation::default()
    }
}

/// The metadata of a package that must have parsed.
pub fn meta<'a>(scanner: &'a Scanner, path: &str) -> &'a PkgBase {
    match &scanner.packages()[path].result {
        Ok(meta) => meta,
        Err(e) => panic!("{path}: {e}"),
    }
}

/// The error of a package that must not have parsed.
pub fn error<'a>(scanner: &'a Scanner, path: &str) -> &'a PackageError {
    match &scanner.packages()[path].result {
        Ok(meta) => panic!("{path} parsed: {meta:?}"),
        Err(e) => e,
    }
}

/// What every kind must report for the tree of [`write_tree`].
pub fn check_first_scan(scanner: &Scanner) {
    let paths: Vec<&str> = scanner.packages().keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        ["any-c", "broken-d", "evil", "lib-a", "mismatch", "split-b"]
    );

    let a = meta(scanner, "lib-a");
    assert_eq!(a.version, "1.0-1");
    assert_eq!(a.targets["x86_64"].packages[0].provides, ["liba.so"]);
    assert!(
        a.packager.is_some(),
        "the packager travels with the metadata"
    );
    // So does the time of the change, from the same change: the fixture is one commit, made
    // just now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = a
        .changed_at
        .expect("the time of the last change travels with the metadata");
    assert!(
        (now - 3600..=now + 60).contains(&at),
        "{at} is not about {now}"
    );
    assert_eq!(meta(scanner, "split-b").changed_at, Some(at));

    let b = meta(scanner, "split-b");
    assert_eq!(b.version, "1:2.0-1");
    assert_eq!(b.pkgnames, ["b-lib", "b-bin"]);
    let x86 = &b.targets["x86_64"];
    assert_eq!(x86.makedepends, ["lib-a"]);
    assert_eq!(x86.packages[1].depends, ["b-lib", "lib-a"]);

    assert_eq!(meta(scanner, "any-c").arch, ["any"]);

    let e = error(scanner, "broken-d").to_string();
    assert!(e.contains("malformed .SRCINFO"), "{e}");
    assert!(matches!(error(scanner, "evil"), PackageError::Metadata(_)));
    let e = error(scanner, "mismatch").to_string();
    assert!(
        e.contains(r#"directory "mismatch" holds pkgbase "other""#),
        "{e}"
    );
}

/// The PKGBUILD of `path` exported at `revision`.
pub fn exported_pkgbuild(scanner: &mut Scanner, revision: &Revision, path: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    scanner.export(revision, path, &dest).unwrap();
    fs::read_to_string(dest.join("PKGBUILD")).unwrap()
}

/// Runs a command and returns its stdout, failing the test with its stderr.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}; is the tool installed?"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

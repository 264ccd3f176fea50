//! Real packages for the tests: PKGBUILDs with their .SRCINFO, git repositories of them, and
//! builds with makepkg as an unprivileged user (makepkg refuses to run as root).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use git2::{Repository, Signature};

/// A package to write: its PKGBUILD, and the .SRCINFO that `makepkg --printsrcinfo` would give.
#[derive(Clone, Debug)]
pub struct Recipe {
    pub pkgbase: String,
    pub pkgbuild: String,
    pub srcinfo: String,
}

/// A one-package recipe: `pkgname=NAME`, `arch=(ARCH)`, run-time `depends`, and a `package()`
/// body in shell.
pub fn recipe(name: &str, version: &str, arch: &str, depends: &[&str], package: &str) -> Recipe {
    let (pkgver, pkgrel) = version.rsplit_once('-').expect("version is pkgver-pkgrel");
    let deps = depends.join(" ");
    let pkgbuild = format!(
        "pkgname={name}\npkgver={pkgver}\npkgrel={pkgrel}\npkgdesc='test package {name}'\narch=({arch})\nurl='https://example.org/{name}'\nlicense=('MIT')\ndepends=({deps})\npackage() {{\n{package}\n}}\n"
    );
    let mut srcinfo = format!(
        "pkgbase = {name}\n\tpkgdesc = test package {name}\n\tpkgver = {pkgver}\n\tpkgrel = {pkgrel}\n\turl = https://example.org/{name}\n\tarch = {arch}\n\tlicense = MIT\n"
    );
    for d in depends {
        srcinfo.push_str(&format!("\tdepends = {d}\n"));
    }
    srcinfo.push_str(&format!("\npkgname = {name}\n"));
    Recipe {
        pkgbase: name.to_owned(),
        pkgbuild,
        srcinfo,
    }
}

/// A library and a program that reads it, for this machine's architecture, in shell (no
/// compiler): `hello` prints "hello from libhello 1.0".
pub fn libhello_and_hello() -> Vec<Recipe> {
    let arch = std::env::consts::ARCH;
    vec![
        recipe(
            "libhello",
            "1.0-1",
            arch,
            &[],
            "install -Dm644 /dev/stdin \"$pkgdir/usr/lib/libhello.txt\" <<<'libhello 1.0'",
        ),
        recipe(
            "hello",
            "1.0-1",
            arch,
            &["libhello"],
            "install -Dm755 /dev/stdin \"$pkgdir/usr/bin/hello\" <<'EOF'\n#!/bin/sh\necho \"hello from $(cat \"$(dirname \"$0\")/../lib/libhello.txt\")\"\nEOF",
        ),
    ]
}

/// Writes recipes as `DIR/PKGBASE/{PKGBUILD,.SRCINFO}`.
pub fn write_tree(dir: &Path, recipes: &[Recipe]) {
    for r in recipes {
        let pkg = dir.join(&r.pkgbase);
        fs::create_dir_all(&pkg).unwrap();
        fs::write(pkg.join("PKGBUILD"), &r.pkgbuild).unwrap();
        fs::write(pkg.join(".SRCINFO"), &r.srcinfo).unwrap();
    }
}

/// Makes `dir` a git repository with everything in it committed; returns the commit id.
pub fn git_commit_all(dir: &Path, message: &str) -> String {
    let repo = Repository::open(dir)
        .or_else(|_| Repository::init(dir))
        .unwrap();
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.update_all(["*"].iter(), None).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = Signature::now("Pat Packager", "pat@example.org").unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .unwrap()
        .to_string()
}

/// Builds `recipe` with makepkg as user 65534 (no dependency checks: the test provides what
/// the package needs) and returns the package file, moved into `out`. It builds as a builder
/// does, in `BUILDDIR` (a private tmpfs at `/build` in a mount namespace of its own) and as
/// packager `Pat Packager`, the author of `git_commit_all`'s commits, so that the master's
/// repository checks pass.
pub fn build(recipe: &Recipe, out: &Path) -> PathBuf {
    let work = tempfile::Builder::new()
        .prefix("quarters-makepkg")
        .tempdir()
        .unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(work.path().join("PKGBUILD"), &recipe.pkgbuild).unwrap();
    let status = in_builddir(
        &["PACKAGER=Pat Packager <pat@example.org>"],
        &["makepkg", "--nodeps", "--noconfirm", "--force"],
    )
    .current_dir(work.path())
    .output()
    .expect("makepkg, unshare and setpriv are installed (contrib/test.sh installs them)");
    assert!(
        status.status.success(),
        "makepkg failed for {}:\n{}\n{}",
        recipe.pkgbase,
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    let built = fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(".pkg.tar"))
        .expect("makepkg wrote a package");
    fs::create_dir_all(out).unwrap();
    let dest = out.join(built.file_name().unwrap());
    fs::copy(&built, &dest).unwrap();
    dest
}

/// `command` as [`as_nobody`] runs it, with makepkg's `BUILDDIR` the farm's: a tmpfs mounted at
/// `/build` in a new mount namespace, so that builds running side by side never meet, and the
/// host keeps only an empty `/build` directory to mount it on.
pub fn in_builddir(env: &[&str], command: &[&str]) -> Command {
    let builddir = quarters_common::api::v1::BUILDDIR;
    fs::create_dir_all("/build").expect("creating /build (the tests run as root)");
    let script = format!(
        "mount -t tmpfs -o mode=0755 quarters-build /build && install -d -m 0777 {builddir} && exec \"$@\""
    );
    let inner = as_nobody(&[env, &[&format!("BUILDDIR={builddir}")]].concat(), command);
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        &script,
        "sh",
    ])
    .arg(inner.get_program())
    .args(inner.get_args());
    c
}

/// `command` as user 65534 with a clean environment plus `env` (`NAME=value`): makepkg refuses
/// to run as root, and must not see the test's environment.
pub fn as_nobody(env: &[&str], command: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
    ])
    .args(["env", "-i", "PATH=/usr/bin:/bin", "HOME=/tmp"])
    .args(env)
    .args(command);
    c
}

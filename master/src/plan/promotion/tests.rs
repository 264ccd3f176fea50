//! The promotion closure over small repository tables, as the planner's tests do it.

use std::collections::HashSet;

use super::*;

fn entry(
    repo: RepoKind,
    pkgname: &str,
    pkgbase: &str,
    version: &str,
    depends: &[&str],
) -> RepoEntry {
    RepoEntry {
        repo,
        arch: "x86_64".into(),
        filename: format!("{pkgname}-{version}-x86_64.pkg.tar.zst"),
        pkgname: pkgname.into(),
        pkgbase: pkgbase.into(),
        version: version.into(),
        pkg_arch: "x86_64".into(),
        sha256: "00".repeat(32),
        size: 1,
        provides: vec![],
        depends: depends.iter().map(|d| (*d).to_owned()).collect(),
        desc: String::new(),
        files: String::new(),
    }
}

fn build(pkgname: &str, version: &str, depends: &[&str]) -> RepoEntry {
    entry(RepoKind::Build, pkgname, pkgname, version, depends)
}

fn live(pkgname: &str, version: &str) -> RepoEntry {
    entry(RepoKind::Live, pkgname, pkgname, version, &[])
}

fn promote<'a>(
    entries: &'a [RepoEntry],
    names: &[&str],
    with_deps: bool,
) -> Result<Promotion<'a>, Refused> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let build_root: HashSet<String> = ["glibc".to_owned()].into();
    closure(
        entries,
        &Request {
            names: &names,
            with_deps,
            build_root: &build_root,
        },
    )
}

fn names(p: &Promotion<'_>) -> Vec<String> {
    let mut names: Vec<String> = p
        .entries
        .iter()
        .map(|e| format!("{} {}", e.pkgname, e.version))
        .collect();
    names.sort();
    names
}

fn need(dep: &str, by: &str) -> Need {
    Need {
        dep: dep.into(),
        by: by.into(),
    }
}

#[test]
fn what_is_not_built_cannot_be_promoted() {
    let entries = [build("hello", "1.0-1", &[]), live("world", "1.0-1")];
    assert_eq!(
        promote(&entries, &["world"], true).unwrap_err(),
        Refused::NotInBuild {
            name: "world".into()
        }
    );
}

#[test]
fn a_dependency_only_built_comes_along_with_deps_only() {
    let entries = [
        build("hello", "1.0-1", &["libhello>=1.0", "glibc"]),
        build("libhello", "1.0-1", &[]),
    ];
    let refused = promote(&entries, &["hello"], false).unwrap_err();
    assert_eq!(
        refused,
        Refused::NeedsDependencies(
            [("libhello".into(), vec![need("libhello>=1.0", "hello")])].into()
        )
    );
    assert!(
        refused
            .to_string()
            .contains("libhello: libhello>=1.0 (needed by hello)")
    );
    let p = promote(&entries, &["hello"], true).unwrap();
    assert_eq!(names(&p), ["hello 1.0-1", "libhello 1.0-1"]);
    assert_eq!(p.requested, ["hello".to_owned()].into());
}

#[test]
fn the_closure_follows_chains_and_provisions() {
    let mut libc = build("libc", "1-1", &[]);
    libc.provides = vec!["libc.so=6-64".into()];
    let entries = [
        build("app", "1-1", &["mid"]),
        build("mid", "1-1", &["libc.so"]),
        libc,
        build("unrelated", "1-1", &[]),
    ];
    let p = promote(&entries, &["app"], true).unwrap();
    assert_eq!(names(&p), ["app 1-1", "libc 1-1", "mid 1-1"]);
}

#[test]
fn a_live_dependency_of_the_right_version_is_enough_and_an_older_one_is_not() {
    let entries = [
        build("hello", "1.0-1", &["libhello>=2.0"]),
        build("libhello", "2.0-1", &[]),
        live("libhello", "1.0-1"),
    ];
    let p = promote(&entries, &["hello"], true).unwrap();
    assert_eq!(names(&p), ["hello 1.0-1", "libhello 2.0-1"]);
    let entries = [
        build("hello", "1.0-1", &["libhello>=1.0"]),
        build("libhello", "2.0-1", &[]),
        live("libhello", "1.0-1"),
    ];
    let p = promote(&entries, &["hello"], true).unwrap();
    assert_eq!(names(&p), ["hello 1.0-1"]);
}

#[test]
fn an_any_package_in_the_build_repository_meets_a_need() {
    let mut docs = build("docs", "1-1", &[]);
    docs.pkg_arch = "any".into();
    let entries = [build("hello", "1-1", &["docs"]), docs];
    let p = promote(&entries, &["hello"], true).unwrap();
    assert_eq!(names(&p), ["docs 1-1", "hello 1-1"]);
}

#[test]
fn needs_nothing_meets_and_downgrades_are_refused() {
    let entries = [build("hello", "1.0-1", &["nowhere"])];
    assert_eq!(
        promote(&entries, &["hello"], true).unwrap_err(),
        Refused::Unavailable(vec![need("nowhere", "hello")])
    );
    let entries = [build("hello", "1.0-1", &[]), live("hello", "2.0-1")];
    let refused = promote(&entries, &["hello"], true).unwrap_err();
    assert_eq!(
        refused,
        Refused::Downgrade {
            pkgname: "hello".into(),
            version: "1.0-1".into(),
            live: "2.0-1".into()
        }
    );
    assert!(refused.to_string().contains("would downgrade"));
}

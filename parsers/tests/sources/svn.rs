//! Subversion sources: a repository made with `svnadmin create`, filled with `svn import`.

use std::fs;
use std::path::Path;
use std::process::Command;

use quarters_parsers::layout::Layout;
use quarters_parsers::scan::Scanner;
use quarters_parsers::{Revision, SourceSpec};

use crate::fixture::*;

fn svn() -> Command {
    let mut cmd = Command::new("svn");
    cmd.args(["--non-interactive", "-q"]);
    cmd
}

#[test]
fn scans_changes_exports_and_bumps_an_svn_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    run(Command::new("svnadmin").arg("create").arg(&repo));
    let import = dir.path().join("import");
    write_tree(&import);
    let url = format!("file://{}/packages", repo.display());
    run(svn()
        .args(["import", "-m", "import", "--username", "alice"])
        .arg(&import)
        .arg(&url));

    let mut options = toml::Table::new();
    options.insert("url".into(), url.clone().into());
    let spec = SourceSpec {
        name: "svn".into(),
        kind: "svn".into(),
        layout: Layout::default(),
        options,
    };
    let source = quarters_parsers::open(&spec, Path::new("/")).unwrap();
    assert_eq!(source.watch_paths(), [repo.join("db")]);
    let mut scanner = Scanner::new("svn", source, None, no_evaluation());
    let report = scanner.poll().unwrap();
    let first = report.revision.unwrap();
    assert_eq!(first, Revision("1".into()));
    check_first_scan(&scanner);
    assert_eq!(meta(&scanner, "lib-a").packager.as_deref(), Some("alice"));
    assert!(!scanner.poll().unwrap().changed());

    let wc = dir.path().join("wc");
    run(svn().arg("checkout").arg(&url).arg(&wc));
    fs::write(wc.join("split-b/.SRCINFO"), split_b_srcinfo(2)).unwrap();
    fs::write(wc.join("split-b/PKGBUILD"), split_b_pkgbuild(2)).unwrap();
    run(svn()
        .args(["commit", "-m", "split-b 2", "--username", "bob"])
        .arg(&wc));

    let report = scanner.poll().unwrap();
    assert_eq!(report.parsed, ["split-b"]);
    assert_eq!(meta(&scanner, "split-b").version, "1:2.0-2");
    assert_eq!(meta(&scanner, "split-b").packager.as_deref(), Some("bob"));
    let (now, changed) = scanner.changed_since(&first).unwrap();
    assert_eq!(now, Revision("2".into()));
    assert_eq!(changed, ["split-b"]);
    assert!(exported_pkgbuild(&mut scanner, &first, "split-b").contains("pkgrel=1"));

    let bumped = scanner.bump_pkgrel("lib-a", "lib-a: rebuild").unwrap();
    assert_eq!(bumped, Revision("3".into()));
    let report = scanner.poll().unwrap();
    assert_eq!(report.parsed, ["lib-a"]);
    assert_eq!(meta(&scanner, "lib-a").version, "1.0-2");
    let log = run(Command::new("svn").args(["log", "-r", "3"]).arg(&url));
    assert!(log.contains("lib-a: rebuild"), "{log}");
}

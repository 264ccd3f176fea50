//! CVS sources: a local CVSROOT made with `cvs init`, filled with `cvs import`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use quarters_parsers::SourceSpec;
use quarters_parsers::layout::Layout;
use quarters_parsers::scan::Scanner;

use crate::fixture::*;

/// A CVS revision is a date a little in the past, so what was just committed shows only after
/// that margin.
fn settle() {
    std::thread::sleep(Duration::from_millis(3100));
}

fn cvs(root: &Path) -> Command {
    let mut cmd = Command::new("cvs");
    cmd.arg("-Q").arg("-d").arg(root);
    cmd
}

#[test]
fn scans_changes_exports_and_bumps_a_cvs_module() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cvsroot");
    run(cvs(&root).arg("init"));
    let import = dir.path().join("import");
    write_tree(&import);
    run(cvs(&root)
        .args(["import", "-m", "import", "packages", "vendor", "start"])
        .current_dir(&import));
    settle();

    let mut options = toml::Table::new();
    options.insert("root".into(), root.to_string_lossy().into_owned().into());
    options.insert("module".into(), "packages".into());
    let spec = SourceSpec {
        name: "cvs".into(),
        kind: "cvs".into(),
        layout: Layout::default(),
        options,
    };
    let source = quarters_parsers::open(&spec, Path::new("/")).unwrap();
    assert_eq!(source.watch_paths(), [root.join("packages")]);
    let mut scanner = Scanner::new("cvs", source, None, no_evaluation());
    let first = scanner.poll().unwrap().revision.unwrap();
    check_first_scan(&scanner);
    assert!(!scanner.poll().unwrap().changed());

    let wc = dir.path().join("wc");
    run(cvs(&root)
        .args(["checkout", "-d", "wc", "packages"])
        .current_dir(dir.path()));
    fs::write(wc.join("split-b/.SRCINFO"), split_b_srcinfo(2)).unwrap();
    fs::write(wc.join("split-b/PKGBUILD"), split_b_pkgbuild(2)).unwrap();
    run(cvs(&root)
        .args(["commit", "-m", "split-b 2"])
        .current_dir(&wc));
    settle();

    let report = scanner.poll().unwrap();
    assert_eq!(report.parsed, ["split-b"]);
    assert_eq!(meta(&scanner, "split-b").version, "1:2.0-2");
    let (_, changed) = scanner.changed_since(&first).unwrap();
    assert_eq!(changed, ["split-b"]);
    assert!(exported_pkgbuild(&mut scanner, &first, "split-b").contains("pkgrel=1"));

    let bumped = scanner.bump_pkgrel("lib-a", "lib-a: rebuild").unwrap();
    settle();
    let report = scanner.poll().unwrap();
    assert_eq!(report.parsed, ["lib-a"]);
    assert_eq!(meta(&scanner, "lib-a").version, "1.0-2");
    assert!(exported_pkgbuild(&mut scanner, &bumped, "lib-a").contains("pkgrel=2"));
    let log = run(cvs(&root).args(["rlog", "-N", "packages/lib-a/PKGBUILD"]));
    assert!(log.contains("lib-a: rebuild"), "{log}");
}

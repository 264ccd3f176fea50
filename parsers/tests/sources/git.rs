//! Git sources, repositories built with git2.

use std::fs;
use std::path::Path;
use std::time::Duration;

use git2::{Repository, Signature};
use quarters_parsers::layout::Layout;
use quarters_parsers::scan::Scanner;
use quarters_parsers::{Revision, SourceSpec};

use crate::fixture::*;

/// Stages everything in the work tree and commits it as `author`.
pub fn commit_all(repo: &Repository, author: (&str, &str), message: &str) -> String {
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.update_all(["*"].iter(), None).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = Signature::now(author.0, author.1).unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .unwrap()
        .to_string()
}

pub fn spec(path: &Path, layout: Layout, extra: &[(&str, toml::Value)]) -> SourceSpec {
    let mut options = toml::Table::new();
    options.insert("path".into(), path.to_string_lossy().into_owned().into());
    for (k, v) in extra {
        options.insert((*k).into(), v.clone());
    }
    SourceSpec {
        name: "test".into(),
        kind: "git".into(),
        layout,
        options,
    }
}

fn scanner(path: &Path, cache: Option<&Path>) -> Scanner {
    let source =
        quarters_parsers::open(&spec(path, Layout::default(), &[]), Path::new("/")).unwrap();
    Scanner::new("test", source, cache.map(Path::to_owned), no_evaluation())
}

#[test]
fn scans_changes_exports_and_bumps_a_git_tree() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("packages");
    write_tree(&work);
    let repo = Repository::init(&work).unwrap();
    let first = Revision(commit_all(&repo, ("Alice", "alice@example.org"), "import"));
    let cache = dir.path().join("cache.json");

    let mut scanner = scanner(&work, Some(&cache));
    let report = scanner.poll().unwrap();
    assert_eq!(report.revision.as_ref(), Some(&first));
    assert_eq!(report.parsed.len(), 6);
    check_first_scan(&scanner);
    assert_eq!(
        meta(&scanner, "lib-a").packager.as_deref(),
        Some("Alice <alice@example.org>")
    );

    // Nothing changed: nothing is read again.
    assert!(!scanner.poll().unwrap().changed());

    // Bob changes one package: only it is parsed again, and it names Bob.
    fs::write(work.join("split-b/.SRCINFO"), split_b_srcinfo(2)).unwrap();
    fs::write(work.join("split-b/PKGBUILD"), split_b_pkgbuild(2)).unwrap();
    let second = Revision(commit_all(&repo, ("Bob", "bob@example.org"), "split-b 2"));
    let report = scanner.poll().unwrap();
    assert_eq!(report.parsed, ["split-b"]);
    assert_eq!(meta(&scanner, "split-b").version, "1:2.0-2");
    assert_eq!(
        meta(&scanner, "split-b").packager.as_deref(),
        Some("Bob <bob@example.org>")
    );
    assert_eq!(
        meta(&scanner, "lib-a").packager.as_deref(),
        Some("Alice <alice@example.org>")
    );

    let (now, changed) = scanner.changed_since(&first).unwrap();
    assert_eq!((now, changed), (second.clone(), vec!["split-b".to_owned()]));

    // Export at the old revision.
    assert!(exported_pkgbuild(&mut scanner, &first, "split-b").contains("pkgrel=1"));
    assert!(exported_pkgbuild(&mut scanner, &second, "split-b").contains("pkgrel=2"));

    // A reproducible tarball for builders.
    let out = dir.path().join("lib-a.tar.gz");
    let content = scanner.packages()["lib-a"].content_id.clone();
    let made = scanner
        .tarball(&second, "lib-a", &content, "lib-a-1.0-1", &out)
        .unwrap();
    assert_eq!(made.sha256.len(), 64);
    let pkgbuild = exported_pkgbuild(&mut scanner, &second, "lib-a");
    assert_eq!(
        made.pkgbuild_sha256.as_deref(),
        Some(sha256_hex(pkgbuild.as_bytes()).as_str())
    );
    let again = scanner
        .tarball(
            &second,
            "lib-a",
            &content,
            "lib-a-1.0-1",
            &dir.path().join("2.tar.gz"),
        )
        .unwrap();
    assert_eq!(made, again);

    // A pkgrel bump round-trips: committed, seen by the next poll, both files agree.
    let bumped = scanner.bump_pkgrel("lib-a", "lib-a: rebuild").unwrap();
    let report = scanner.poll().unwrap();
    assert_eq!(report.revision.as_ref(), Some(&bumped));
    assert_eq!(report.parsed, ["lib-a"]);
    assert_eq!(meta(&scanner, "lib-a").version, "1.0-2");
    assert!(exported_pkgbuild(&mut scanner, &bumped, "lib-a").contains("pkgrel=2"));
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    assert_eq!(head.message(), Ok("lib-a: rebuild"));
    // The work tree follows the branch.
    assert!(
        fs::read_to_string(work.join("lib-a/.SRCINFO"))
            .unwrap()
            .contains("pkgrel = 2")
    );

    // A new scanner on the same cache starts warm.
    drop(scanner);
    let mut warm = self::scanner(&work, Some(&cache));
    let report = warm.poll().unwrap();
    assert!(report.parsed.is_empty(), "{report:?}");
    assert_eq!(meta(&warm, "lib-a").version, "1.0-2");
}

#[test]
fn reads_a_category_layout_with_build_files_in_a_subdirectory() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("ports");
    fs::create_dir_all(work.join("devel/lib-a/trunk")).unwrap();
    fs::write(work.join("devel/lib-a/trunk/.SRCINFO"), LIB_A_SRCINFO).unwrap();
    fs::write(work.join("devel/lib-a/trunk/PKGBUILD"), LIB_A_PKGBUILD).unwrap();
    fs::create_dir_all(work.join("devel/lib-a/repos")).unwrap();
    fs::write(work.join("devel/lib-a/repos/note"), "x").unwrap();
    let repo = Repository::init(&work).unwrap();
    commit_all(&repo, ("Alice", "alice@example.org"), "import");
    let layout = Layout {
        depth: 2,
        subdir: Some("trunk".into()),
    };
    let source = quarters_parsers::open(&spec(&work, layout, &[]), Path::new("/")).unwrap();
    let mut scanner = Scanner::new("ports", source, None, no_evaluation());
    scanner.poll().unwrap();
    assert_eq!(meta(&scanner, "devel/lib-a").version, "1.0-1");

    // A change outside trunk/ does not make the package parse again.
    fs::write(work.join("devel/lib-a/repos/note"), "y").unwrap();
    commit_all(&repo, ("Alice", "alice@example.org"), "note");
    assert!(scanner.poll().unwrap().parsed.is_empty());
    let bumped = scanner.bump_pkgrel("devel/lib-a", "rebuild").unwrap();
    assert_eq!(scanner.poll().unwrap().revision, Some(bumped));
    assert_eq!(meta(&scanner, "devel/lib-a").version, "1.0-2");
}

#[test]
fn reads_one_repository_per_package() {
    let dir = tempfile::tempdir().unwrap();
    let aur = dir.path().join("aur");
    let tree = tempfile::tempdir().unwrap();
    write_tree(tree.path());
    for name in ["lib-a", "split-b"] {
        let work = aur.join(name);
        fs::create_dir_all(&work).unwrap();
        for file in [".SRCINFO", "PKGBUILD"] {
            fs::copy(tree.path().join(name).join(file), work.join(file)).unwrap();
        }
        let repo = Repository::init(&work).unwrap();
        commit_all(&repo, ("Carol", "carol@example.org"), "initial");
    }
    let spec = spec(
        &aur,
        Layout::default(),
        &[("repository_per_package", true.into())],
    );
    let source = quarters_parsers::open(&spec, Path::new("/")).unwrap();
    let mut scanner = Scanner::new("aur", source, None, no_evaluation());
    let first = scanner.poll().unwrap().revision.unwrap();
    assert_eq!(meta(&scanner, "split-b").version, "1:2.0-1");
    assert_eq!(
        meta(&scanner, "lib-a").packager.as_deref(),
        Some("Carol <carol@example.org>")
    );
    assert!(!scanner.poll().unwrap().changed());

    let bumped = scanner.bump_pkgrel("split-b", "rebuild").unwrap();
    let report = scanner.poll().unwrap();
    assert_eq!(report.revision.as_ref(), Some(&bumped));
    assert_eq!(report.parsed, ["split-b"]);
    assert_eq!(scanner.changed_since(&first).unwrap().1, ["split-b"]);
    assert!(exported_pkgbuild(&mut scanner, &first, "split-b").contains("pkgrel=1"));
}

#[test]
fn a_commit_wakes_the_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("packages");
    write_tree(&work);
    let repo = Repository::init(&work).unwrap();
    commit_all(&repo, ("Alice", "alice@example.org"), "import");
    let scanner = scanner(&work, None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let _watch = quarters_parsers::watch::watch(&scanner.source().watch_paths(), tx).unwrap();
        fs::write(work.join("lib-a/PKGBUILD"), "changed").unwrap();
        commit_all(&repo, ("Alice", "alice@example.org"), "change");
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the watcher reports a commit")
            .unwrap();
    });
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

//! The regression net for "accept what pacman accepts": the corpus of `tests/corpus`, PKGBUILDs
//! exercising what makepkg writes for real packaging (no url, no SPDX licence, backup, install
//! scriptlet, changelog, versioned relations, optdepends with descriptions, groups, a split
//! package with per-package overrides, an `any` part in a machine build, an epoch, the debug
//! package of `options=(debug)`, and a PKGBUILD without .SRCINFO), built by a real farm with
//! makepkg in fresh roots, accepted, entered in the repository databases exactly as repo-add
//! enters them, and installed by a stock pacman.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use quarters_master::db::{Db, VerdictKind};
use quarters_master::plan::binaries::RepoKind;
use quarters_tests::pacman::PacmanRoot;
use quarters_tests::start_farm_in;

use crate::e2e::{quartersctl, real_farm_config, wait_until_done};

/// The corpus's pkgbases, and the packages each makes.
const CORPUS: &[(&str, &[&str])] = &[
    ("corpus-nourl", &["corpus-nourl"]),
    ("corpus-licences", &["corpus-licences"]),
    ("corpus-relations", &["corpus-relations"]),
    ("corpus-split", &["corpus-split-a", "corpus-split-b"]),
    ("corpus-epoch", &["corpus-epoch"]),
    ("corpus-debug", &["corpus-debug", "corpus-debug-debug"]),
    ("corpus-pkgbuild-only", &["corpus-pkgbuild-only"]),
];

fn corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every corpus package's committed .SRCINFO is what makepkg prints for its PKGBUILD, so that
/// the corpus tests the farm, not a mistake in the corpus.
#[test]
fn every_corpus_srcinfo_is_what_makepkg_prints() {
    for (pkgbase, _) in CORPUS {
        let dir = corpus_dir().join(pkgbase);
        let Ok(committed) = std::fs::read_to_string(dir.join(".SRCINFO")) else {
            assert_eq!(*pkgbase, "corpus-pkgbuild-only", "{pkgbase} lacks .SRCINFO");
            continue;
        };
        let work = tempfile::tempdir().unwrap();
        copy_dir(&dir, work.path());
        run(Command::new("chmod")
            .arg("-R")
            .arg("a+rwX")
            .arg(work.path()));
        let printed = run(
            quarters_tests::makepkg::as_nobody(&[], &["makepkg", "--printsrcinfo"])
                .current_dir(work.path()),
        );
        assert_eq!(printed, committed, "{pkgbase}/.SRCINFO");
    }
}

/// repo-add's entries for the same package files, by pkgname: `(desc, files)`. repo-add before
/// pacman 6.1 (Debian's) also writes `%MD5SUM%`, which pacman does not read and the farm leaves
/// out, as pacman 6.1's repo-add does.
fn repo_add_entries(pool: &Path, files: &[String]) -> BTreeMap<String, (String, String)> {
    let work = tempfile::tempdir().unwrap();
    for f in files {
        std::fs::copy(pool.join(f), work.path().join(f)).unwrap();
        // repo-add reads a package's signature from FILE.sig beside it, as the farm keeps it.
        let sig = format!("{f}.sig");
        std::fs::copy(pool.join(&sig), work.path().join(&sig))
            .unwrap_or_else(|e| panic!("{sig}: the farm signs every package: {e}"));
    }
    let db = work.path().join("corpus.db.tar.gz");
    run(Command::new("repo-add")
        .arg("-q")
        .arg(&db)
        .args(files.iter().map(|f| work.path().join(f))));
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    run(Command::new("bsdtar")
        .arg("-xf")
        .arg(work.path().join("corpus.files.tar.gz"))
        .arg("-C")
        .arg(&out));
    let mut entries = BTreeMap::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let dir = entry.unwrap().path();
        let desc = std::fs::read_to_string(dir.join("desc")).unwrap();
        let name = desc
            .split("%NAME%\n")
            .nth(1)
            .and_then(|s| s.lines().next())
            .expect("repo-add's desc names the package")
            .to_owned();
        let without_md5 = match desc.split_once("%MD5SUM%\n") {
            Some((before, after)) => {
                format!(
                    "{before}{}",
                    after.split_once("\n\n").map_or("", |(_, r)| r)
                )
            }
            None => desc,
        };
        let files = std::fs::read_to_string(dir.join("files")).unwrap();
        entries.insert(name, (without_md5, files));
    }
    entries
}

#[tokio::test(flavor = "multi_thread")]
async fn the_farm_builds_accepts_and_pacman_installs_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("packages");
    copy_dir(&corpus_dir(), &tree);
    quarters_tests::makepkg::git_commit_all(&tree, "the corpus");
    let source = "[[source]]\nname = \"corpus\"\nkind = \"git\"\npath = \"packages\"\n";
    let (master, builder) = real_farm_config(source, 30);
    let mut farm = start_farm_in(dir.path(), 2, &master, &builder).await;
    let state = wait_until_done(&farm).await;
    assert!(state.problems.is_empty(), "{:#?}", state.problems);
    assert_eq!(
        state
            .counts
            .get(&quarters_common::api::v1::PackageState::Built),
        Some(&(CORPUS.len() as u64)),
        "{:?}",
        state.counts
    );
    // The master published how its evaluation of the PKGBUILD without .SRCINFO went.
    let evaluation = state.sources[0]
        .evaluation
        .as_ref()
        .expect("the master publishes its evaluation of PKGBUILDs");
    assert_eq!(
        (evaluation.done, evaluation.total, evaluation.failed),
        (1, 1, 0)
    );

    // Every pkgbase accepted at its first build, none refused; the schema's complaints kept as
    // warnings where makepkg wrote what the alpm schema refuses.
    let db = Db::open(&dir.path().join("master-state/master.sqlite")).unwrap();
    for (pkgbase, _) in CORPUS {
        let builds = db.builds_of(pkgbase, 10).unwrap();
        assert!(
            builds.len() == 1 && builds[0].verdict == VerdictKind::Accepted,
            "{pkgbase}: {builds:#?}"
        );
    }
    let nourl = &db.builds_of("corpus-nourl", 1).unwrap()[0];
    assert!(
        nourl
            .warnings
            .iter()
            .any(|w| w.contains(".PKGINFO does not follow the alpm schema")),
        "{:?}",
        nourl.warnings
    );
    let (ok, why) = quartersctl(&farm, &["why", "corpus-nourl"]);
    assert!(
        ok && why.contains("warning: corpus-nourl-1.0-1-any.pkg.tar"),
        "{why}"
    );

    // The build repository holds every package, the debug package too, with the entries
    // repo-add writes for the very same files.
    let entries: Vec<_> = db
        .repo_entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.repo == RepoKind::Build && e.arch == std::env::consts::ARCH)
        .collect();
    let names: Vec<&str> = entries.iter().map(|e| e.pkgname.as_str()).collect();
    for (_, pkgnames) in CORPUS {
        for name in *pkgnames {
            assert!(names.contains(name), "{name} not in {names:?}");
        }
    }
    let files: Vec<String> = entries.iter().map(|e| e.filename.clone()).collect();
    let theirs = repo_add_entries(&dir.path().join("master-state/pool"), &files);
    for e in &entries {
        let (desc, files) = &theirs[&e.pkgname];
        assert_eq!(&e.desc, desc, "{}: desc", e.pkgname);
        assert_eq!(&e.files, files, "{}: files", e.pkgname);
    }

    // Promoted with its dependencies, everything installs with a stock pacman (scriptlets off:
    // the scratch root has no shell to run them with).
    for (pkgbase, _) in CORPUS {
        let (ok, text) = quartersctl(&farm, &["promote", pkgbase, "--with-deps"]);
        assert!(ok, "{text}");
    }
    let root = PacmanRoot::new(
        &farm.ca_cert,
        &[("quarters", format!("{}repo/live/$arch", farm.master.url))],
    );
    let all: Vec<&str> = CORPUS
        .iter()
        .flat_map(|(_, names)| names.iter().copied())
        .collect();
    let mut args = vec!["-Sy", "--noscriptlet"];
    args.extend(&all);
    let out = root.pacman(&args);
    assert!(
        out.status.success(),
        "pacman -Sy failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = String::from_utf8_lossy(&root.pacman(&["-Q"]).stdout).into_owned();
    quarters_tests::assert_contains(
        &installed,
        &[
            "corpus-epoch 3:0.9-1",
            "corpus-licences 2.1-3",
            "corpus-pkgbuild-only 4.2-1",
            "corpus-debug-debug 1.0-1",
        ],
    );
    assert!(root.root.join("etc/corpus-licences.conf").is_file());
    let info =
        String::from_utf8_lossy(&root.pacman(&["-Qi", "corpus-relations"]).stdout).into_owned();
    quarters_tests::assert_contains(&info, &["corpus-virtual=2.0", "corpus-group"]);
    farm.stop(std::time::Duration::from_secs(20)).await.unwrap();
}

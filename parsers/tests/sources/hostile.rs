//! Bad and hostile packages: each is one clear per-package error, and the scan goes on.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use git2::Repository;
use quarters_parsers::evaluate::Evaluation;
use quarters_parsers::layout::Layout;
use quarters_parsers::scan::{PackageError, Scanner};
use quarters_parsers::source::{Entry, Files, Listing, Revision, Source, SourceError};

use crate::fixture::*;
use crate::git::{commit_all, spec};

/// Writes `text` at `path` under `root`, making the directories.
fn put_file(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// `work` committed as a git repository and scanned once, PKGBUILDs evaluated two at a time
/// with `timeout` each.
fn evaluated(work: &Path, timeout: Duration) -> Scanner {
    let repo = Repository::init(work).unwrap();
    commit_all(&repo, ("Alice", "alice@example.org"), "import");
    let source =
        quarters_parsers::open(&spec(work, Layout::default(), &[]), Path::new("/")).unwrap();
    let evaluation = Evaluation {
        enabled: true,
        jobs: 2,
        timeout,
    };
    let mut scanner = Scanner::new("hostile", source, None, evaluation);
    scanner.poll().unwrap();
    scanner
}

#[test]
fn pkgbuilds_without_srcinfo_are_evaluated_only_in_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("packages");
    let put = |path: &str, text: &str| put_file(&work, path, text);
    // A secret only its owner may read, as the master's key would be.
    let secret = dir.path().join("secret.key");
    fs::write(&secret, "hunter2").unwrap();
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();

    put(
        "plain/PKGBUILD",
        "pkgname=plain\npkgver=3.1\npkgrel=2\narch=(any)\ndepends=(lib-a)\n",
    );
    put(
        "forever/PKGBUILD",
        "pkgname=forever\nwhile :; do :; done\npkgver=1\npkgrel=1\narch=(any)\n",
    );
    put(
        "network/PKGBUILD",
        &format!(
            "pkgname=network\nexec 3<>/dev/tcp/127.0.0.1/{port} || exit 7\npkgver=1\npkgrel=1\narch=(any)\n"
        ),
    );
    put(
        "snoop/PKGBUILD",
        &format!(
            "pkgname=snoop\npkgver=$(cat {} 2>/dev/null || echo 1)\npkgrel=1\narch=(any)\n",
            secret.display()
        ),
    );
    // A PKGBUILD posing as a sandbox failure, to be evaluated again at every poll.
    put(
        "impostor/PKGBUILD",
        "pkgname=impostor\necho 'setpriv: failed to execute makepkg: Resource temporarily unavailable' >&2\nexit 1\n",
    );
    put("empty/notes.txt", "no package here\n");
    let mut scanner = evaluated(&work, Duration::from_secs(8));

    let plain = meta(&scanner, "plain");
    assert_eq!(plain.version, "3.1-2");
    assert_eq!(plain.targets["any"].packages[0].depends, ["lib-a"]);

    let e = error(&scanner, "forever").to_string();
    assert!(e.contains("did not evaluate within"), "{e}");
    assert!(matches!(
        error(&scanner, "forever"),
        PackageError::Metadata(_)
    ));

    let e = error(&scanner, "network").to_string();
    assert!(e.contains("does not evaluate"), "{e}");
    let mut buf = [0u8; 1];
    match listener.accept() {
        Ok((mut s, _)) => panic!("the PKGBUILD reached the network: {:?}", s.read(&mut buf)),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }

    // The PKGBUILD ran as nobody: the secret stayed secret.
    assert_eq!(meta(&scanner, "snoop").version, "1-1");

    // It is the package's own error, kept: only the sandbox can say the sandbox failed.
    assert!(
        matches!(error(&scanner, "impostor"), PackageError::Metadata(_)),
        "{:?}",
        error(&scanner, "impostor")
    );

    let e = error(&scanner, "empty").to_string();
    assert!(e.contains("neither .SRCINFO nor PKGBUILD"), "{e}");

    // Errors of the package's own making are kept, not evaluated again, until it changes.
    let started = std::time::Instant::now();
    assert!(scanner.poll().unwrap().parsed.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_vanished_repository_fails_the_poll_and_keeps_what_was_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("packages");
    write_tree(&work);
    let repo = Repository::init(&work).unwrap();
    commit_all(&repo, ("Alice", "alice@example.org"), "import");
    let source =
        quarters_parsers::open(&spec(&work, Layout::default(), &[]), Path::new("/")).unwrap();
    let mut scanner = Scanner::new("gone", source, None, no_evaluation());
    scanner.poll().unwrap();
    fs::remove_dir_all(&work).unwrap();
    let err = scanner.poll().unwrap_err().to_string();
    assert!(err.contains(&work.display().to_string()), "{err}");
    assert_eq!(meta(&scanner, "lib-a").version, "1.0-1");
}

/// A real source whose `victim` repository is deleted between listing and reading, as when a
/// repository vanishes in the middle of a scan.
#[derive(Debug)]
struct VanishingDuringScan {
    inner: Box<dyn Source>,
    victim: std::path::PathBuf,
}

impl Source for VanishingDuringScan {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn list(&mut self, known: Option<&Revision>) -> Result<Option<Listing>, SourceError> {
        let listing = self.inner.list(known);
        let _ = fs::remove_dir_all(&self.victim);
        listing
    }
    fn read(&mut self, revision: &Revision, entries: &[Entry]) -> Vec<Result<Files, SourceError>> {
        self.inner.read(revision, entries)
    }
    fn changed_since(&mut self, since: &Revision) -> Result<(Revision, Vec<String>), SourceError> {
        self.inner.changed_since(since)
    }
    fn export(&mut self, revision: &Revision, path: &str, dest: &Path) -> Result<(), SourceError> {
        self.inner.export(revision, path, dest)
    }
    fn bump_pkgrel(&mut self, path: &str, message: &str) -> Result<Revision, SourceError> {
        self.inner.bump_pkgrel(path, message)
    }
    fn watch_paths(&self) -> Vec<std::path::PathBuf> {
        self.inner.watch_paths()
    }
}

#[test]
fn a_repository_vanishing_mid_scan_is_one_package_error() {
    let dir = tempfile::tempdir().unwrap();
    let aur = dir.path().join("aur");
    let tree = tempfile::tempdir().unwrap();
    write_tree(tree.path());
    for name in ["lib-a", "split-b", "any-c"] {
        let work = aur.join(name);
        fs::create_dir_all(&work).unwrap();
        for file in [".SRCINFO", "PKGBUILD"] {
            fs::copy(tree.path().join(name).join(file), work.join(file)).unwrap();
        }
        commit_all(
            &Repository::init(&work).unwrap(),
            ("Carol", "carol@example.org"),
            "initial",
        );
    }
    let spec = spec(
        &aur,
        Layout::default(),
        &[("repository_per_package", true.into())],
    );
    let inner = quarters_parsers::open(&spec, Path::new("/")).unwrap();
    let source = VanishingDuringScan {
        inner,
        victim: aur.join("split-b"),
    };
    let mut scanner = Scanner::new("aur", Box::new(source), None, no_evaluation());
    scanner.poll().unwrap();
    assert_eq!(meta(&scanner, "lib-a").version, "1.0-1");
    assert_eq!(meta(&scanner, "any-c").version, "0.1-1");
    let e = error(&scanner, "split-b");
    assert!(matches!(e, PackageError::Source(_)), "{e:?}");
    assert!(e.to_string().contains("split-b"), "{e}");
}

/// A PKGBUILD that takes every process the evaluations' shared process limit allows starves the
/// evaluations beside it only until its own time limit kills it: they are evaluated in the same
/// scan, not turned into errors of their own.
#[test]
fn a_pkgbuild_holding_the_process_limit_delays_the_others_but_does_not_fail_them() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("packages");
    let put = |path: &str, text: &str| put_file(&work, path, text);
    // Evaluated first ("a" sorts first), side by side with "b"; "c" starts once "b" is done,
    // when the hog holds every process it may have.
    put(
        "a-hog/PKGBUILD",
        "pkgname=a-hog\nfor i in $(seq 400); do sleep 60 & done 2>/dev/null\nwait\npkgver=1\npkgrel=1\narch=(any)\n",
    );
    for name in ["b-plain", "c-plain"] {
        put(
            &format!("{name}/PKGBUILD"),
            &format!("pkgname={name}\nsleep 1\npkgver=2\npkgrel=1\narch=(any)\n"),
        );
    }
    let scanner = evaluated(&work, Duration::from_secs(12));
    assert!(
        error(&scanner, "a-hog")
            .to_string()
            .contains("did not evaluate within")
    );
    for name in ["b-plain", "c-plain"] {
        assert_eq!(meta(&scanner, name).version, "2-1", "{name}");
    }
}

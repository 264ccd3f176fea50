//! `quarters-master scan`: every package of every source, with its metadata or its error.

use std::fs;
use std::path::Path;

use git2::{Repository, Signature};
use quarters_tests::{assert_contains, command};

fn git_tree(dir: &Path) {
    let put = |path: &str, text: &str| {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    put(
        "hello/.SRCINFO",
        "pkgbase = hello\n\tpkgver = 1.2\n\tpkgrel = 1\n\tepoch = 1\n\tarch = x86_64\n\tdepends = glibc\n\npkgname = hello\n",
    );
    put("hello/PKGBUILD", "pkgname=hello\n");
    put("broken/.SRCINFO", "pkgbase = broken\n\tnonsense\n");
    let repo = Repository::init(dir).unwrap();
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = Signature::now("Dana", "dana@example.org").unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "import", &tree, &[])
        .unwrap();
}

fn config(dir: &Path, source: &str) -> std::path::PathBuf {
    quarters_common::pki::init_ca(&dir.join("ca"), false).unwrap();
    let name = quarters_common::NodeName::new("master").unwrap();
    quarters_common::pki::issue_cert(&dir.join("ca"), &dir.join("ca"), &name, &[], false).unwrap();
    let path = dir.join("master.toml");
    fs::write(
        &path,
        format!(
            "name = \"master\"\nlisten = \"127.0.0.1:0\"\nurl = \"https://127.0.0.1:1/\"\nstate_dir = \"state\"\n\n[tls]\nca = \"ca/ca.pem\"\ncert = \"ca/master.pem\"\nkey = \"ca/master.key\"\n\n{source}"
        ),
    )
    .unwrap();
    path
}

#[test]
fn scan_prints_packages_and_errors_as_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    git_tree(&dir.path().join("packages"));
    let config = config(
        dir.path(),
        "[[source]]\nname = \"main\"\nkind = \"git\"\npath = \"packages\"\n",
    );

    let out = command("quarters-master")
        .args(["scan", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_contains(
        &stdout,
        &[
            "source main (git)",
            "2 packages, 1 with errors",
            "hello",
            "1:1.2-1",
            "Dana <dana@example.org>",
            "broken",
            "ERROR malformed .SRCINFO",
        ],
    );
    // The scan left its cache in the state directory.
    assert!(dir.path().join("state/scan/main.json").is_file());

    let out = command("quarters-master")
        .args(["scan", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = json[0]["packages"].as_array().unwrap();
    let hello = packages.iter().find(|p| p["path"] == "hello").unwrap();
    assert_eq!(hello["metadata"]["version"], "1:1.2-1");
    assert_eq!(
        hello["metadata"]["targets"]["x86_64"]["packages"][0]["depends"][0],
        "glibc"
    );
    let broken = packages.iter().find(|p| p["path"] == "broken").unwrap();
    assert_eq!(broken["error"]["kind"], "metadata");
}

#[test]
fn a_bad_source_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "[[source]]\nname = \"main\"\nkind = \"hg\"\npath = \"x\"\n",
    );
    let out = command("quarters-master")
        .args(["scan", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        &[
            "key `source[0].kind`",
            "unknown kind \"hg\"",
            "git, svn, cvs",
        ],
    );

    let config = config_again(
        dir.path(),
        "[[source]]\nname = \"main\"\nkind = \"git\"\npath = \"nowhere\"\n",
    );
    let out = command("quarters-master")
        .args(["scan", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        &["key `source[0].path`", "nowhere", "not a git repository"],
    );

    let config = config_again(
        dir.path(),
        "[[source]]\nname = \"main\"\nkind = \"git\"\npath = \"p\"\nbranch = 3\n",
    );
    let out = command("quarters-master")
        .args(["scan", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        &["key `source[0].branch`", "invalid type"],
    );
}

fn config_again(dir: &Path, source: &str) -> std::path::PathBuf {
    let path = dir.join("master.toml");
    let text = fs::read_to_string(&path).unwrap();
    let head = text.split("[[source]]").next().unwrap();
    fs::write(&path, format!("{head}{source}")).unwrap();
    path
}

/// A tree of PKGBUILDs without `.SRCINFO`: two that evaluate and one that does not.
fn pkgbuild_only_tree(dir: &Path) {
    for name in ["one", "two"] {
        fs::create_dir_all(dir.join(name)).unwrap();
        fs::write(
            dir.join(name).join("PKGBUILD"),
            format!("pkgname={name}\npkgver=1\npkgrel=1\narch=(any)\npackage() {{ :; }}\n"),
        )
        .unwrap();
    }
    fs::create_dir_all(dir.join("bad")).unwrap();
    fs::write(dir.join("bad/PKGBUILD"), "pkgname=bad\nexit 3\n").unwrap();
    quarters_tests::makepkg::git_commit_all(dir, "import");
}

#[test]
fn scan_shows_how_far_the_evaluation_got_on_a_terminal_and_in_plain_lines() {
    let dir = tempfile::tempdir().unwrap();
    pkgbuild_only_tree(&dir.path().join("packages"));
    let config = config(
        dir.path(),
        "[[source]]\nname = \"main\"\nkind = \"git\"\npath = \"packages\"\n\n[scan]\npkgbuild_jobs = 2\n",
    );

    // Not a terminal: plain log lines, the last one saying how the run ended.
    let out = command("quarters-master")
        .args(["scan", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_contains(
        &stderr,
        &["3 of 3 PKGBUILDs evaluated, 1 failed", "on 2 cores"],
    );
    assert!(
        !stderr.contains('\r'),
        "no redrawing without a terminal: {stderr}"
    );

    // On a terminal (script(1) gives the command a pseudo-terminal): one line redrawn in place.
    fs::remove_dir_all(dir.path().join("state")).unwrap();
    let binary = quarters_tests::bin("quarters-master");
    let line = format!(
        "{} scan --config {} >/dev/null",
        binary.display(),
        config.display()
    );
    let out = std::process::Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_contains(
        &shown,
        &["\r\x1b[2Ksource main: 3 of 3 PKGBUILDs evaluated, 1 failed"],
    );
}

/// On a machine where no sandbox can be made (here: bubblewrap hidden), no PKGBUILD runs, and
/// each package without `.SRCINFO` says why, as an error of the source that is tried again.
#[test]
fn without_a_sandbox_no_pkgbuild_runs_and_each_package_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let tree = dir.path().join("packages");
    fs::create_dir_all(tree.join("eager")).unwrap();
    fs::write(
        tree.join("eager/PKGBUILD"),
        format!(
            "pkgname=eager\ntouch {}\npkgver=1\npkgrel=1\narch=(any)\n",
            ran.display()
        ),
    )
    .unwrap();
    quarters_tests::makepkg::git_commit_all(&tree, "import");
    let config = config(
        dir.path(),
        "[[source]]\nname = \"main\"\nkind = \"git\"\npath = \"packages\"\n",
    );
    // The master's own mount namespace, in which bwrap is no program.
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount --bind /dev/null \"$(command -v bwrap)\" && exec \"$@\"")
        .arg("sh")
        .arg(quarters_tests::bin("quarters-master"))
        .args(["scan", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let error = &report[0]["packages"][0]["error"];
    assert_eq!(error["kind"], "source", "{report:#}");
    let message = error["message"].as_str().unwrap();
    assert_contains(
        message,
        &[
            "cannot evaluate PKGBUILD in a sandbox here",
            "`bwrap` is not installed (package bubblewrap)",
        ],
    );
    assert!(!ran.exists(), "the PKGBUILD ran without a sandbox");
}

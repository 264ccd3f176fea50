//! Scan benchmark: a generated tree of N packages (default 15,000) in git, SVN and CVS; a cold
//! scan, a warm poll with nothing changed, a poll after one package changed, and a restart on
//! the persisted cache.
//!
//! `cargo bench -p quarters-parsers --bench scan -- [--packages N] [--kinds git,svn,cvs]`

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use git2::{Oid, Repository, Signature};
use quarters_parsers::layout::Layout;
use quarters_parsers::scan::{Evaluation, Scanner};
use quarters_parsers::{Source, SourceSpec};

fn srcinfo(name: &str, rel: u32) -> String {
    format!(
        "pkgbase = {name}\n\tpkgdesc = generated package {name}\n\tpkgver = 1.{rel}\n\tpkgrel = {rel}\n\tarch = x86_64\n\tmakedepends = gcc\n\tsource = https://example.org/{name}-1.0.tar.gz\n\tsha256sums = 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\n\tdepends = glibc\n\tdepends = lib-{}\n\npkgname = {name}\n",
        name.len()
    )
}

fn pkgbuild(name: &str, rel: u32) -> String {
    format!("pkgname={name}\npkgver=1.{rel}\npkgrel={rel}\narch=(x86_64)\npackage() {{ :; }}\n")
}

fn name(i: usize) -> String {
    format!("pkg-{i:05}")
}

fn write_tree(root: &Path, n: usize) {
    for i in 0..n {
        let dir = root.join(name(i));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(".SRCINFO"), srcinfo(&name(i), 1)).unwrap();
        fs::write(dir.join("PKGBUILD"), pkgbuild(&name(i), 1)).unwrap();
    }
}

/// Builds the repository straight from objects: no work tree, so generating 15,000 packages
/// takes seconds.
fn git_repo(path: &Path, n: usize) -> Repository {
    let repo = Repository::init_bare(path).unwrap();
    let mut root = repo.treebuilder(None).unwrap();
    for i in 0..n {
        let mut pkg = repo.treebuilder(None).unwrap();
        let si = repo.blob(srcinfo(&name(i), 1).as_bytes()).unwrap();
        let pb = repo.blob(pkgbuild(&name(i), 1).as_bytes()).unwrap();
        pkg.insert(".SRCINFO", si, 0o100_644).unwrap();
        pkg.insert("PKGBUILD", pb, 0o100_644).unwrap();
        root.insert(name(i), pkg.write().unwrap(), 0o040_000)
            .unwrap();
    }
    let tree_id = root.write().unwrap();
    drop(root);
    {
        let tree = repo.find_tree(tree_id).unwrap();
        let sig = Signature::now("Bench", "bench@example.org").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "generated", &tree, &[])
            .unwrap();
    }
    repo
}

fn git_change_one(repo: &Repository, i: usize) -> Oid {
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    let tree = head.tree().unwrap();
    let pkg_tree = repo
        .find_tree(tree.get_name(&name(i)).unwrap().id())
        .unwrap();
    let mut pkg = repo.treebuilder(Some(&pkg_tree)).unwrap();
    pkg.insert(
        ".SRCINFO",
        repo.blob(srcinfo(&name(i), 2).as_bytes()).unwrap(),
        0o100_644,
    )
    .unwrap();
    let mut root = repo.treebuilder(Some(&tree)).unwrap();
    root.insert(name(i), pkg.write().unwrap(), 0o040_000)
        .unwrap();
    let new_tree = repo.find_tree(root.write().unwrap()).unwrap();
    let sig = Signature::now("Bench", "bench@example.org").unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "change", &new_tree, &[&head])
        .unwrap()
}

fn spec(kind: &str, options: &[(&str, String)]) -> SourceSpec {
    SourceSpec {
        name: kind.into(),
        kind: kind.into(),
        layout: Layout::default(),
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), toml::Value::String(v.clone())))
            .collect(),
    }
}

fn scanner(spec: &SourceSpec, cache: &Path) -> Scanner {
    let source: Box<dyn Source> = quarters_parsers::open(spec, Path::new("/")).unwrap();
    Scanner::new(
        &spec.name,
        source,
        Some(cache.to_owned()),
        Evaluation::default(),
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Times a cold scan, warm polls, a poll after `change` and a warm restart.
fn measure(
    kind: &str,
    n: usize,
    spec: &SourceSpec,
    dir: &Path,
    change: &mut dyn FnMut(),
    settle: Duration,
) {
    let cache = dir.join(format!("{kind}-cache.json"));
    let mut s = scanner(spec, &cache);
    let started = Instant::now();
    let report = s.poll().unwrap();
    let cold = started.elapsed();
    assert_eq!(report.parsed.len(), n, "every package parsed");
    assert!(s.packages().values().all(|p| p.result.is_ok()));

    let warm = median(
        (0..15)
            .map(|_| {
                let t = Instant::now();
                assert!(!s.poll().unwrap().changed());
                t.elapsed()
            })
            .collect(),
    );

    change();
    std::thread::sleep(settle);
    let t = Instant::now();
    let report = s.poll().unwrap();
    let one = t.elapsed();
    assert_eq!(report.parsed.len(), 1, "{report:?}");
    drop(s);

    let t = Instant::now();
    let mut restarted = scanner(spec, &cache);
    let report = restarted.poll().unwrap();
    let restart = t.elapsed();
    assert!(report.parsed.is_empty());
    println!(
        "| {kind} | {n} | {} | {} | {} | {} |",
        ms(cold),
        ms(warm),
        ms(one),
        ms(restart)
    );
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n: usize = arg("--packages").map_or(15_000, |v| v.parse().unwrap());
    let kinds = arg("--kinds").unwrap_or_else(|| "git,svn,cvs".to_owned());
    let dir = tempfile::tempdir().unwrap();
    println!(
        "| kind | packages | cold scan | warm poll, nothing changed (median of 15) | poll after one package changed | restart on the persisted cache |"
    );
    println!("|---|---|---|---|---|---|");
    for kind in kinds.split(',') {
        match kind {
            "git" => {
                let path = dir.path().join("git");
                let repo = git_repo(&path, n);
                let spec = spec("git", &[("path", path.display().to_string())]);
                measure(
                    "git",
                    n,
                    &spec,
                    dir.path(),
                    &mut || {
                        git_change_one(&repo, n / 2);
                    },
                    Duration::ZERO,
                );
            }
            "svn" => {
                let repo = dir.path().join("svnrepo");
                run(Command::new("svnadmin").arg("create").arg(&repo));
                let tree = dir.path().join("svntree");
                write_tree(&tree, n);
                let url = format!("file://{}/packages", repo.display());
                run(Command::new("svn")
                    .args(["import", "-q", "-m", "generated"])
                    .arg(&tree)
                    .arg(&url));
                let wc = dir.path().join("svnwc");
                run(Command::new("svn")
                    .args(["checkout", "-q", "--depth", "empty"])
                    .arg(&url)
                    .arg(&wc));
                let spec = spec("svn", &[("url", url.clone())]);
                let one = name(n / 2);
                measure(
                    "svn",
                    n,
                    &spec,
                    dir.path(),
                    &mut || {
                        run(Command::new("svn")
                            .args(["update", "-q", &one])
                            .current_dir(&wc));
                        fs::write(wc.join(&one).join(".SRCINFO"), srcinfo(&one, 2)).unwrap();
                        run(Command::new("svn")
                            .args(["commit", "-q", "-m", "change"])
                            .current_dir(&wc));
                    },
                    Duration::ZERO,
                );
            }
            "cvs" => {
                let root = dir.path().join("cvsroot");
                run(Command::new("cvs")
                    .arg("-Q")
                    .arg("-d")
                    .arg(&root)
                    .arg("init"));
                let tree = dir.path().join("cvstree");
                write_tree(&tree, n);
                run(Command::new("cvs")
                    .arg("-Q")
                    .arg("-d")
                    .arg(&root)
                    .args(["import", "-m", "generated", "packages", "vendor", "start"])
                    .current_dir(&tree));
                std::thread::sleep(Duration::from_secs(3));
                let spec = spec(
                    "cvs",
                    &[
                        ("root", root.display().to_string()),
                        ("module", "packages".into()),
                    ],
                );
                let one = name(n / 2);
                let wc_parent = dir.path().join("cvswc");
                fs::create_dir_all(&wc_parent).unwrap();
                measure(
                    "cvs",
                    n,
                    &spec,
                    dir.path(),
                    &mut || {
                        run(Command::new("cvs")
                            .arg("-Q")
                            .arg("-d")
                            .arg(&root)
                            .args(["checkout", "-d", "wc", &format!("packages/{one}")])
                            .current_dir(&wc_parent));
                        fs::write(wc_parent.join("wc/.SRCINFO"), srcinfo(&one, 2)).unwrap();
                        run(Command::new("cvs")
                            .arg("-Q")
                            .arg("-d")
                            .arg(&root)
                            .args(["commit", "-m", "change"])
                            .current_dir(wc_parent.join("wc")));
                    },
                    Duration::from_secs(3),
                );
            }
            other => panic!("unknown kind {other}"),
        }
    }
}

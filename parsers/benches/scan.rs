//! Scan benchmark: a generated tree of N packages (default 15,000) in git, SVN and CVS; a cold
//! scan, a warm poll with nothing changed, a poll after one package changed, and a restart on
//! the persisted cache.
//!
//! `cargo bench -p quarters-parsers --bench scan -- [--packages N] [--kinds git,svn,cvs]`
//!
//! With `--kinds git-history`, a long git history instead: N packages (default 10,000) in
//! `category/pkgbase/` directories (`--categories`, default 40; 0 for `pkgbase/`) and
//! `--commits C` commits (default 100,000), each touching one to four random packages, written
//! with `git fast-import`; a cold scan has to find every package's last author in it.
//!
//! `cargo bench -p quarters-parsers --bench scan -- --kinds git-history [--packages N]
//! [--categories K] [--commits C] [--seed S]`
//!
//! With `--kinds evaluation`, N packages (default 200) with a PKGBUILD and no `.SRCINFO`: plain
//! `makepkg --printsrcinfo` on each, one after the other, against a cold scan that evaluates
//! them in its sandboxes on every core (`--jobs J`, default the cores).
//!
//! `cargo bench -p quarters-parsers --bench scan -- --kinds evaluation [--packages N] [--jobs J]`

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use git2::{Oid, Repository, Signature};
use quarters_parsers::evaluate::Evaluation;
use quarters_parsers::layout::Layout;
use quarters_parsers::scan::Scanner;
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

/// The median of 15 polls of a scanner that finds nothing new.
fn warm_poll(s: &mut Scanner) -> Duration {
    median(
        (0..15)
            .map(|_| {
                let t = Instant::now();
                assert!(!s.poll().unwrap().changed());
                t.elapsed()
            })
            .collect(),
    )
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

    let warm = warm_poll(&mut s);

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

/// A generated long history: what it holds, and who changed each package last.
struct History {
    packages: Vec<String>,
    last_author: BTreeMap<String, String>,
    generated: Duration,
}

/// Packages never changed after the first commit, as every real tree has: the cold scan has to
/// walk the whole history for them.
const DORMANT_PERCENT: usize = 5;

/// `cat-NN/pkg-NNNNN`, or with no categories `pkg-NNNNN`.
fn history_path(i: usize, categories: usize) -> String {
    if categories == 0 {
        name(i)
    } else {
        format!("cat-{:02}/{}", i % categories, name(i))
    }
}

fn author(k: u32) -> (String, String) {
    (format!("Packager {k:02}"), format!("p{k:02}@example.org"))
}

/// Writes `commits` commits over `n` packages into a new bare repository with one
/// `git fast-import`: the first adds every package, each later one changes one to four of them.
fn git_history(path: &Path, n: usize, categories: usize, commits: usize, seed: u64) -> History {
    let started = Instant::now();
    run(Command::new("git")
        .args(["init", "-q", "--bare", "--initial-branch=master"])
        .arg(path));
    let mut child = Command::new("git")
        .arg("-C")
        .arg(path)
        .args(["fast-import", "--quiet", "--done"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufWriter::with_capacity(1 << 20, child.stdin.take().unwrap());
    let mut rng = fastrand::Rng::with_seed(seed);
    let packages: Vec<String> = (0..n).map(|i| history_path(i, categories)).collect();
    let mut rel = vec![1_u32; n];
    let mut last_author = BTreeMap::new();
    let inline = |out: &mut BufWriter<_>, path: &str, content: &str| {
        write!(
            out,
            "M 100644 inline {path}\ndata {}\n{content}\n",
            content.len()
        )
        .unwrap();
    };
    let active = (n * (100 - DORMANT_PERCENT) / 100).max(1);
    for c in 0..commits {
        let (who, email) = if c == 0 {
            ("Importer".to_owned(), "import@example.org".to_owned())
        } else {
            author(rng.u32(..64))
        };
        let touched: Vec<usize> = if c == 0 {
            (0..n).collect()
        } else {
            let k = if rng.u32(..8) == 0 {
                rng.usize(2..=4)
            } else {
                1
            };
            (0..k).map(|_| rng.usize(..active)).collect()
        };
        let message = format!("commit {c}");
        let time = 1_600_000_000 + c as u64 * 60;
        write!(
            out,
            "commit refs/heads/master\nauthor {who} <{email}> {time} +0000\ncommitter {who} <{email}> {time} +0000\ndata {}\n{message}\n",
            message.len()
        )
        .unwrap();
        for i in touched {
            if c > 0 {
                rel[i] += 1;
            }
            let pkg = &packages[i];
            inline(
                &mut out,
                &format!("{pkg}/.SRCINFO"),
                &srcinfo(&name(i), rel[i]),
            );
            inline(
                &mut out,
                &format!("{pkg}/PKGBUILD"),
                &pkgbuild(&name(i), rel[i]),
            );
            last_author.insert(pkg.clone(), format!("{who} <{email}>"));
        }
        out.write_all(b"\n").unwrap();
    }
    out.write_all(b"done\n").unwrap();
    drop(out.into_inner().unwrap());
    assert!(child.wait().unwrap().success(), "git fast-import failed");
    History {
        packages,
        last_author,
        generated: started.elapsed(),
    }
}

/// The tree `tree` with the package at `path` (its components) given a new `.SRCINFO`.
fn with_change(repo: &Repository, tree: &git2::Tree<'_>, path: &[&str], rel: u32) -> Oid {
    let mut b = repo.treebuilder(Some(tree)).unwrap();
    match path {
        [] => unreachable!("a package path has components"),
        [pkg] => {
            let pkg_tree = repo.find_tree(tree.get_name(pkg).unwrap().id()).unwrap();
            let mut p = repo.treebuilder(Some(&pkg_tree)).unwrap();
            p.insert(
                ".SRCINFO",
                repo.blob(srcinfo(pkg, rel).as_bytes()).unwrap(),
                0o100_644,
            )
            .unwrap();
            b.insert(pkg, p.write().unwrap(), 0o040_000).unwrap();
        }
        [dir, rest @ ..] => {
            let sub = repo.find_tree(tree.get_name(dir).unwrap().id()).unwrap();
            b.insert(dir, with_change(repo, &sub, rest, rel), 0o040_000)
                .unwrap();
        }
    }
    b.write().unwrap()
}

/// Commits a change of the package at `path` on HEAD, as `who`.
fn git_change_path(repo: &Repository, path: &str, rel: u32, who: (&str, &str)) -> Oid {
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    let parts: Vec<&str> = path.split('/').collect();
    let tree = with_change(repo, &head.tree().unwrap(), &parts, rel);
    let tree = repo.find_tree(tree).unwrap();
    let sig = Signature::now(who.0, who.1).unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "change", &tree, &[&head])
        .unwrap()
}

/// Every package's packager as the scanner has it, against who changed it last; the count of
/// those that differ.
fn wrong_packagers(s: &Scanner, expected: &BTreeMap<String, String>) -> usize {
    expected
        .iter()
        .filter(|(path, who)| {
            let got = s.packages()[path.as_str()]
                .result
                .as_ref()
                .ok()
                .and_then(|p| p.packager.as_deref());
            got != Some(who.as_str())
        })
        .count()
}

/// Times a cold scan of a long history, warm polls, and a poll after one more commit.
fn measure_history(n: usize, categories: usize, commits: usize, seed: u64, dir: &Path) {
    let path = dir.join("git-history");
    let mut history = git_history(&path, n, categories, commits, seed);
    let spec = SourceSpec {
        name: "git-history".into(),
        kind: "git".into(),
        layout: Layout {
            depth: if categories == 0 { 1 } else { 2 },
            subdir: None,
        },
        options: [(
            "path".to_owned(),
            toml::Value::String(path.display().to_string()),
        )]
        .into_iter()
        .collect(),
    };
    let cache = dir.join("git-history-cache.json");
    let mut s = scanner(&spec, &cache);
    let started = Instant::now();
    let report = s.poll().unwrap();
    let cold = started.elapsed();
    assert_eq!(report.parsed.len(), n, "every package parsed");
    assert!(s.packages().values().all(|p| p.result.is_ok()));
    let wrong_cold = wrong_packagers(&s, &history.last_author);

    let warm = warm_poll(&mut s);

    let repo = Repository::open(&path).unwrap();
    let one = history.packages[n / 3].clone();
    let who = ("Newcomer", "new@example.org");
    git_change_path(&repo, &one, 999, who);
    history
        .last_author
        .insert(one.clone(), format!("{} <{}>", who.0, who.1));
    let t = Instant::now();
    let report = s.poll().unwrap();
    let after_one = t.elapsed();
    assert_eq!(report.parsed, [one], "{report:?}");
    let wrong_after = wrong_packagers(&s, &history.last_author);
    println!(
        "| {n} | {categories} | {commits} | {:.1} s | {} | {:.3} ms | {} |",
        history.generated.as_secs_f64(),
        ms(cold),
        warm.as_secs_f64() * 1000.0,
        ms(after_one),
    );
    assert_eq!(
        (wrong_cold, wrong_after),
        (0, 0),
        "packagers that are not the last author, after the cold scan and after one commit"
    );
}

/// A PKGBUILD shaped like a real one: helper functions, arrays, a split package, so that
/// makepkg's evaluation does the work it does on real trees.
fn real_pkgbuild(name: &str) -> String {
    format!(
        r#"# Maintainer: Bench <bench@example.org>
pkgbase={name}
pkgname=({name} {name}-docs)
pkgver=2.4.1
pkgrel=3
pkgdesc="generated package {name}"
arch=(x86_64 aarch64)
url="https://example.org/{name}"
license=('GPL-3.0-or-later')
depends=(glibc zlib 'openssl>=3')
makedepends=(cmake ninja python)
optdepends=('python: scripts')
source=("https://example.org/$pkgbase-$pkgver.tar.gz" fix.patch)
sha256sums=('5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03' SKIP)
_flags() {{ printf '%s ' -DCMAKE_BUILD_TYPE=None -DWITH_X=ON; }}
prepare() {{ cd $pkgbase-$pkgver; patch -p1 < ../fix.patch; }}
build() {{ cmake -B build -S $pkgbase-$pkgver $(_flags); cmake --build build; }}
package_{name}() {{ DESTDIR="$pkgdir" cmake --install build; }}
package_{name}-docs() {{ pkgdesc+=" (documentation)"; depends=(); arch=(any); install -d "$pkgdir/usr/share/doc"; }}
"#
    )
}

/// Plain makepkg on every package one after the other, against our sandboxed evaluations on
/// every core: the cost per PKGBUILD of each.
fn measure_evaluation(n: usize, jobs: usize, dir: &Path) {
    let path = dir.join("evaluation");
    let repo = Repository::init_bare(&path).unwrap();
    let mut root = repo.treebuilder(None).unwrap();
    let plain = dir.join("plain");
    for i in 0..n {
        let text = real_pkgbuild(&name(i));
        let mut pkg = repo.treebuilder(None).unwrap();
        pkg.insert("PKGBUILD", repo.blob(text.as_bytes()).unwrap(), 0o100_644)
            .unwrap();
        root.insert(name(i), pkg.write().unwrap(), 0o040_000)
            .unwrap();
        fs::create_dir_all(plain.join(name(i))).unwrap();
        fs::write(plain.join(name(i)).join("PKGBUILD"), text).unwrap();
    }
    let tree = repo.find_tree(root.write().unwrap()).unwrap();
    let sig = Signature::now("Bench", "bench@example.org").unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "generated", &tree, &[])
        .unwrap();
    // makepkg refuses to run as root, so as root the baseline drops to nobody as the sandbox
    // does (setpriv's own cost is an exec); it gets the sandbox's clean environment too, since
    // makepkg's start-up costs more in a full login environment (about 2.2 s instead of 1.8 s
    // for this PKGBUILD) and the comparison is of like with like.
    let root_user = nix::unistd::geteuid().is_root();
    if root_user {
        run(Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&plain));
    }
    let started = Instant::now();
    for i in 0..n {
        let mut cmd = if root_user {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "makepkg",
            ]);
            c
        } else {
            Command::new("makepkg")
        };
        let out = cmd
            .arg("--printsrcinfo")
            .current_dir(plain.join(name(i)))
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LC_ALL", "C")
            .env("HOME", "/nonexistent")
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "makepkg --printsrcinfo on {}",
            name(i)
        );
    }
    let makepkg = started.elapsed() / n as u32;

    let spec = spec("git", &[("path", path.display().to_string())]);
    let source: Box<dyn Source> = quarters_parsers::open(&spec, Path::new("/")).unwrap();
    let evaluation = Evaluation {
        jobs,
        ..Evaluation::default()
    };
    let mut scanner = Scanner::new("evaluation", source, None, evaluation).with_progress(
        std::sync::Arc::new(|_: &quarters_parsers::evaluate::Progress| {}),
    );
    let started = Instant::now();
    let report = scanner.poll().unwrap();
    let ours = started.elapsed() / n as u32;
    assert_eq!(report.parsed.len(), n);
    for (path, p) in scanner.packages() {
        let meta = p.result.as_ref().unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.pkgnames.len(), 2, "{path}");
    }
    let target = makepkg / jobs as u32;
    println!(
        "| {n} | {} | {jobs} | {} | {} | {:.2} |",
        ms(makepkg),
        ms(target),
        ms(ours),
        ours.as_secs_f64() / target.as_secs_f64()
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
    let kinds = arg("--kinds").unwrap_or_else(|| "git,svn,cvs".to_owned());
    let dir = tempfile::tempdir().unwrap();
    if kinds == "git-history" {
        let n: usize = arg("--packages").map_or(10_000, |v| v.parse().unwrap());
        let commits: usize = arg("--commits").map_or(100_000, |v| v.parse().unwrap());
        let categories: usize = arg("--categories").map_or(40, |v| v.parse().unwrap());
        let seed: u64 = arg("--seed").map_or(1, |v| v.parse().unwrap());
        println!(
            "| packages | categories | commits | generating (git fast-import) | cold scan | warm poll, nothing new (median of 15) | poll after one commit touching one package |"
        );
        println!("|---|---|---|---|---|---|---|");
        measure_history(n, categories, commits, seed, dir.path());
        return;
    }
    if kinds == "evaluation" {
        let n: usize = arg("--packages").map_or(200, |v| v.parse().unwrap());
        let jobs: usize = arg("--jobs")
            .map_or_else(quarters_parsers::evaluate::default_jobs, |v| {
                v.parse().unwrap()
            });
        println!(
            "| PKGBUILDs | plain makepkg --printsrcinfo, one at a time, per PKGBUILD | cores | makepkg / cores | ours (export, sandbox, evaluation, parse) per PKGBUILD | ours / (makepkg / cores) |"
        );
        println!("|---|---|---|---|---|---|");
        measure_evaluation(n, jobs, dir.path());
        return;
    }
    let n: usize = arg("--packages").map_or(15_000, |v| v.parse().unwrap());
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

//! Repository database rewrite for N packages (default 15,000), side by side with repo-add on
//! the same package files, in the same run.
//!
//! `cargo bench -p quarters-master --bench repo -- [--packages N] [--skip-repo-add-scratch]`
//!
//! repo-add from scratch takes about 20 minutes at 15,000 packages; `--skip-repo-add-scratch`
//! leaves it out, for measuring the Quarters side several times.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use quarters_master::db::RepoEntry;
use quarters_master::plan::binaries::RepoKind;
use std::sync::atomic::AtomicBool;

use quarters_master::repo::Repos;
use quarters_master::repo::package::{FileFacts, Limits, inspect};
use quarters_master::signing::{FarmKey, Signer, daemon};
use sha2::{Digest, Sha256};

fn write_package(dir: &Path, i: usize) -> std::path::PathBuf {
    let name = format!("pkg-{i:05}");
    let pkginfo = format!(
        "pkgname = {name}\npkgbase = {name}\npkgver = 1.0-1\npkgdesc = generated package {i}\nurl = https://example.org/\nbuilddate = 1700000000\npackager = Bench <bench@example.org>\nsize = 6\narch = x86_64\nlicense = MIT\ndepend = glibc\n"
    );
    let path = dir.join(format!("{name}-1.0-1-x86_64.pkg.tar.gz"));
    let file = std::fs::File::create(&path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (p, data, dir) in [
        (".PKGINFO".to_owned(), pkginfo.into_bytes(), false),
        ("usr/".to_owned(), vec![], true),
        ("usr/share/".to_owned(), vec![], true),
        (format!("usr/share/{name}"), b"hello\n".to_vec(), false),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        tar.append_data(&mut h, p, data.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    path
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--packages")
        .and_then(|i| args.get(i + 1))
        .map_or(15_000, |v| v.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let pkgs = dir.path().join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let files: Vec<_> = (0..n).map(|i| write_package(&pkgs, i)).collect();

    // Quarters, from scratch: inspect every package (as pacman reads them), then write the databases.
    let t = Instant::now();
    let entries: Vec<RepoEntry> = files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).unwrap();
            let sha: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let filename = f.file_name().unwrap().to_string_lossy().into_owned();
            let facts = FileFacts {
                file_name: &filename,
                size: bytes.len() as u64,
                sha256: &sha,
                pgpsig: None,
            };
            let p = inspect(f, facts, &Limits::default(), &AtomicBool::new(false)).unwrap();
            RepoEntry {
                repo: RepoKind::Build,
                arch: "x86_64".into(),
                pkgname: p.pkginfo.pkgname,
                pkgbase: p.pkginfo.pkgbase,
                version: p.pkginfo.version,
                pkg_arch: p.pkginfo.arch,
                sha256: sha.clone(),
                size: bytes.len() as u64,
                provides: p.pkginfo.provides,
                depends: p.pkginfo.depends,
                desc: p.desc,
                files: p.files,
                filename,
            }
        })
        .collect();
    let inspect_time = t.elapsed();
    let repos = Repos::new(&dir.path().join("quarters"), "quarters", None).unwrap();
    let t = Instant::now();
    repos.rewrite(RepoKind::Build, "x86_64", &entries).unwrap();
    let scratch_write = t.elapsed();

    // Quarters, per acceptance: a running master that has written the databases for the
    // others accepts one more package, and rewrites them from the entries.
    let running = Repos::new(&dir.path().join("running"), "quarters", None).unwrap();
    running
        .rewrite(RepoKind::Build, "x86_64", &entries[..n - 1])
        .unwrap();
    // repo-add for one more package, starting from the database Quarters wrote for the others:
    // repo-add reads it as its own, which also shows the format is pacman's.
    let repo_dir = dir.path().join("repo-add");
    std::fs::create_dir_all(&repo_dir).unwrap();
    let db = repo_dir.join("bench.db.tar.gz");
    let (head, last) = files.split_at(n - 1);
    let written = dir.path().join("running/repos/build/x86_64");
    std::fs::copy(written.join("quarters-build.db.tar.gz"), &db).unwrap();
    std::fs::copy(
        written.join("quarters-build.files.tar.gz"),
        repo_dir.join("bench.files.tar.gz"),
    )
    .unwrap();
    let t = Instant::now();
    running
        .rewrite(RepoKind::Build, "x86_64", &entries)
        .unwrap();
    let rewrite = t.elapsed();

    // The same, signed: both databases streamed to a signer over its socket and signed, as a
    // master with [signing] does at every rewrite.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let socket = dir.path().join("signer.sock");
    let listener = {
        let _inside = runtime.enter();
        tokio::net::UnixListener::bind(&socket).unwrap()
    };
    let key = FarmKey::generate("Bench <bench@example.org>").unwrap();
    runtime.spawn(daemon::run(
        listener,
        std::sync::Arc::new(daemon::KeyStore::fixed(key)),
        daemon::Policy::default(),
        std::future::pending(),
    ));
    let signed = Repos::new(
        &dir.path().join("signed"),
        "quarters",
        Some(Signer::connect(socket).unwrap()),
    )
    .unwrap();
    signed
        .rewrite(RepoKind::Build, "x86_64", &entries[..n - 1])
        .unwrap();
    let t = Instant::now();
    signed.rewrite(RepoKind::Build, "x86_64", &entries).unwrap();
    let signed_rewrite = t.elapsed();

    let t = Instant::now();
    let status = Command::new("repo-add")
        .arg("-q")
        .arg(&db)
        .args(last)
        .status()
        .expect("repo-add (pacman) is installed");
    let repo_add_one = t.elapsed();
    assert!(status.success());
    let listed = Command::new("tar").arg("-tzf").arg(&db).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|l| l.ends_with("/desc"))
            .count(),
        n,
        "repo-add kept every entry Quarters wrote"
    );

    // repo-add from scratch on the same files.
    let repo_add_scratch = if args.iter().any(|a| a == "--skip-repo-add-scratch") {
        "skipped".to_owned()
    } else {
        let scratch_db = repo_dir.join("scratch.db.tar.gz");
        let t = Instant::now();
        let status = Command::new("repo-add")
            .arg("-q")
            .arg(&scratch_db)
            .args(head)
            .args(last)
            .status()
            .unwrap();
        assert!(status.success());
        secs(t.elapsed())
    };

    println!("| operation, {n} packages | Quarters | repo-add |");
    println!("|---|---|---|");
    println!(
        "| database from scratch (read every package, write .db and .files) | {} ({} reading + {} writing) | {} |",
        secs(inspect_time + scratch_write),
        secs(inspect_time),
        secs(scratch_write),
        repo_add_scratch
    );
    println!(
        "| one more package into a database of {} | {} (the one new entry compressed, the rest reused) | {} |",
        n - 1,
        secs(rewrite),
        secs(repo_add_one)
    );
    println!(
        "| the same, both databases signed by the signer over its socket | {} | |",
        secs(signed_rewrite)
    );
}

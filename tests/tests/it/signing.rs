//! Signed repositories: the farm's key, held by a signer process of its own, signs every
//! accepted package and every database; a stock pacman whose fresh keyring trusts only that
//! key installs with `SigLevel = Required`, and refuses whatever was changed on the way.

use std::path::{Path, PathBuf};

use quarters_common::api::v1::{BuildOutcome, MasterState, Verdict};
use quarters_master::signing::FarmKey;
use quarters_tests::makepkg;
use quarters_tests::master::{farm_pki, master_with_test_builder};
use quarters_tests::pacman::PacmanRoot;
use quarters_tests::signer::SignerProcess;
use quarters_tests::testbuilder::finished_build;

fn accepted(state: &MasterState, id: &str) -> bool {
    state
        .results
        .iter()
        .any(|r| r.build == id && r.verdict == Verdict::Accepted)
}

/// Copies what the live repository serves into `mirror`, as a mirror between the master and
/// its clients would hold it: the current databases with their signatures, and the packages
/// with theirs.
fn mirror(state_dir: &Path, mirror: &Path) {
    let _ = std::fs::remove_dir_all(mirror);
    std::fs::create_dir_all(mirror).unwrap();
    let live = state_dir.join("repos/live").join(std::env::consts::ARCH);
    for entry in std::fs::read_dir(&live).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, mirror.join(path.file_name().unwrap())).unwrap();
    }
    for entry in std::fs::read_dir(state_dir.join("pool")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, mirror.join(path.file_name().unwrap())).unwrap();
    }
}

/// Waits up to `secs` seconds for `done`, polling; fails the test naming `what` after that.
async fn eventually(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {secs} s: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

fn package_file(dir: &Path, name: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let file = p.file_name().unwrap().to_string_lossy();
            file.starts_with(&format!("{name}-")) && !file.ends_with(".sig")
        })
        .unwrap_or_else(|| panic!("no {name} package in {}", dir.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn pacman_trusting_only_the_farm_key_installs_what_the_farm_signed_and_refuses_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let ca = farm_pki(dir.path());
    let signer = SignerProcess::start(dir.path()).await;
    let arch = std::env::consts::ARCH;
    let recipes = makepkg::libhello_and_hello();
    let packages = dir.path().join("packages");
    makepkg::write_tree(&packages, &recipes);
    makepkg::git_commit_all(&packages, "import");
    let (master, builder) = master_with_test_builder(dir.path(), &signer.config_table()).await;

    let out = dir.path().join("built");
    let mut b1 = finished_build("b1", "libhello", "1.0-1", BuildOutcome::Succeeded);
    b1.artifacts = vec![builder.artifact("b1", &makepkg::build(&recipes[0], &out))];
    master
        .wait_for("libhello ready", |s| {
            s.ready.iter().any(|r| r.pkgbase == "libhello")
        })
        .await;
    builder.show(b1);
    master
        .wait_for("hello ready", |s| {
            s.ready
                .iter()
                .any(|r| r.pkgbase == "hello" && r.verify.is_none())
        })
        .await;
    let mut b2 = finished_build("b2", "hello", "1.0-1", BuildOutcome::Succeeded);
    b2.artifacts = vec![builder.artifact("b2", &makepkg::build(&recipes[1], &out))];
    builder.show(b2);
    master
        .wait_for("both accepted", |s| accepted(s, "b1") && accepted(s, "b2"))
        .await;
    let (ok, text) =
        quarters_tests::quartersctl(&master.config, &["promote", "hello", "--with-deps"]);
    assert!(ok, "{text}");
    master
        .wait_for("both live", |s| {
            s.counts.get(&quarters_common::api::v1::PackageState::Live) == Some(&2)
        })
        .await;

    // pacman's own downloader is sent to the version of the database shown now; what it
    // fetches there stays together, whatever is published after.
    let redirected = |path: &str| -> String {
        let out = std::process::Command::new("curl")
            .arg("--cacert")
            .arg(ca.join("ca.pem"))
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-A",
                "pacman/6.0.2",
                "-w",
                "%{http_code} %{redirect_url}",
            ])
            .arg(format!("{}{path}", master.url))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let answer = redirected(&format!("repo/live/{arch}/quarters.db"));
    let (code, location) = answer.split_once(' ').unwrap();
    assert_eq!(code, "307", "{answer}");
    let versioned = location
        .strip_prefix(master.url.as_str())
        .unwrap_or_else(|| panic!("{location}"))
        .to_owned();
    assert!(
        versioned.starts_with(&format!("repo/live/{arch}/v")),
        "{versioned}"
    );
    let held_db = master
        .client
        .get_bytes(&format!("/{versioned}"), 1 << 20)
        .await
        .unwrap();

    // `why` says who packaged, who built and who signed what each repository holds.
    let (ok, text) = quarters_tests::quartersctl(&master.config, &["why", "hello"]);
    assert!(ok, "{text}");
    for repo in ["the build repository", "the live repository"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("hello 1.0-1 in {repo}")))
            .unwrap_or_else(|| panic!("no line for {repo}:\n{text}"));
        assert!(
            line.contains("packaged by Pat Packager <pat@example.org>")
                && line.contains("built on builder-1 (build b2)")
                && line.contains(&format!("signed by the farm key {}", signer.fingerprint)),
            "{line}"
        );
    }

    // A fresh keyring that trusts the farm key and nothing else; every signature required.
    let ca_pem = ca.join("ca.pem");
    let trusting = |server: String| {
        PacmanRoot::trusting(
            &ca_pem,
            &[("quarters", server)],
            &signer.public_key,
            &signer.fingerprint,
        )
    };
    let live = trusting(format!("{}repo/live/$arch", master.url));
    live.install(&["hello"]);
    let ran = std::process::Command::new(live.root.join("usr/bin/hello"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "hello from libhello 1.0\n"
    );
    // The build repository is signed as well.
    let build = PacmanRoot::trusting(
        &ca_pem,
        &[("quarters-build", format!("{}repo/build/$arch", master.url))],
        &signer.public_key,
        &signer.fingerprint,
    );
    build.install(&["hello"]);

    // Each package's detached signature is served beside it, and verifies.
    let pool = master.state_dir.join("pool");
    let hello = package_file(&pool, "hello");
    let file = hello.file_name().unwrap().to_string_lossy().into_owned();
    let served = master
        .client
        .get_bytes(&format!("/repo/live/{arch}/{file}.sig"), 1 << 16)
        .await
        .unwrap();
    let fetched = dir.path().join("fetched.sig");
    std::fs::write(&fetched, &served).unwrap();
    assert!(
        live.verifies(&fetched, &hello),
        "{file}.sig does not verify"
    );
    assert!(!live.verifies(&fetched, &package_file(&pool, "libhello")));

    // Between the master and the client, a mirror: intact, it serves as the master does.
    let mirror_dir = dir.path().join("mirror");
    let from_mirror = || trusting(format!("file://{}", mirror_dir.display()));
    mirror(&master.state_dir, &mirror_dir);
    from_mirror().install(&["hello"]);

    // A package whose bytes changed after signing is refused.
    mirror(&master.state_dir, &mirror_dir);
    let tampered = package_file(&mirror_dir, "hello");
    let mut bytes = std::fs::read(&tampered).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&tampered, bytes).unwrap();
    let text = from_mirror().refuse(&["hello"]);
    assert!(
        text.contains("error: hello: signature from \"Quarters build farm")
            && text.contains("is invalid"),
        "{text}"
    );

    // A database changed after signing is refused.
    let db = mirror_dir.join("quarters.db");
    mirror(&master.state_dir, &mirror_dir);
    let mut bytes = std::fs::read(&db).unwrap();
    bytes.extend_from_slice(b"\0");
    std::fs::write(&db, bytes).unwrap();
    let text = from_mirror().refuse(&["hello"]);
    assert!(
        text.contains("error: quarters: signature from \"Quarters build farm")
            && text.contains("is invalid"),
        "{text}"
    );

    // A database signed by another key is refused, and so is one without a signature.
    mirror(&master.state_dir, &mirror_dir);
    let other = FarmKey::generate("Mallory <mallory@example.org>").unwrap();
    let forged = other.sign(std::fs::File::open(&db).unwrap()).unwrap();
    std::fs::write(mirror_dir.join("quarters.db.sig"), forged.as_bytes()).unwrap();
    let text = from_mirror().refuse(&["hello"]);
    assert!(
        text.contains(&format!("error: quarters: key \"{}", other.fingerprint()))
            && text.contains("is unknown"),
        "{text}"
    );
    mirror(&master.state_dir, &mirror_dir);
    std::fs::remove_file(mirror_dir.join("quarters.db.sig")).unwrap();
    let text = from_mirror().refuse(&["hello"]);
    assert!(
        text.contains("failed retrieving file 'quarters.db.sig'"),
        "{text}"
    );

    // A rotation, in two steps. Staged, the next key is listed at once while the old one
    // goes on signing; a client that takes the export then trusts both.
    let ctl_key = |args: &[&str]| {
        let out = quarters_tests::command("quartersctl")
            .arg("key")
            .args(args)
            .arg("--dir")
            .arg(&signer.key_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        out
    };
    ctl_key(&["rotate"]);
    let exported = ctl_key(&["export"]);
    let stderr = String::from_utf8_lossy(&exported.stderr).into_owned();
    let new_key = stderr
        .lines()
        .find_map(|l| l.strip_prefix("staged, signs after `key rotate --activate`: "))
        .unwrap_or_else(|| panic!("no staged key in:\n{stderr}"))
        .to_owned();
    assert!(
        stderr.contains(&format!("fingerprint: {}", signer.fingerprint)),
        "{stderr}"
    );
    let both = dir.path().join("both.asc");
    std::fs::write(&both, &exported.stdout).unwrap();
    let live_url = format!("{}repo/live/$arch", master.url);
    let updated_client = PacmanRoot::trusting_all(
        &ca_pem,
        &[("quarters", live_url.clone())],
        &both,
        &[&signer.fingerprint, &new_key],
    );
    updated_client.install(&["hello"]);

    // Activated: the running signer signs with the new key from its next request, and the
    // master signs everything in both repositories again with it.
    ctl_key(&["rotate", "--activate"]);
    eventually(
        &format!("everything signed again with {new_key}"),
        60,
        || {
            let (ok, text) = quarters_tests::quartersctl(&master.config, &["why", "hello"]);
            assert!(ok, "{text}");
            text.lines()
                .filter(|l| l.contains("hello 1.0-1 in the"))
                .all(|l| l.contains(&format!("signed by the farm key {new_key}")))
        },
    )
    .await;
    // Databases follow at the turn that recorded the signatures; wait for the live one.
    let live_db_sig = master
        .state_dir
        .join("repos/live")
        .join(arch)
        .join("quarters.db.sig");
    eventually(
        &format!("the live database signed by {new_key}"),
        30,
        || {
            quarters_master::signing::Signature::from_bytes(std::fs::read(&live_db_sig).unwrap())
                .issuer()
                .is_some_and(|k| k.as_str() == new_key)
        },
    )
    .await;

    // The database version handed out before the rotation still has its own signature
    // beside it, after every rewrite since: the pair verifies with the old key.
    let held_sig = master
        .client
        .get_bytes(&format!("/{versioned}.sig"), 1 << 16)
        .await
        .unwrap();
    let (held_db_file, held_sig_file) =
        (dir.path().join("held.db"), dir.path().join("held.db.sig"));
    std::fs::write(&held_db_file, &held_db).unwrap();
    std::fs::write(&held_sig_file, &held_sig).unwrap();
    assert!(live.verifies(&held_sig_file, &held_db_file));
    let (code, location) = redirected(&format!("repo/live/{arch}/quarters.db"))
        .split_once(' ')
        .map(|(c, l)| (c.to_owned(), l.to_owned()))
        .unwrap();
    assert!(
        code == "307" && !location.ends_with(&versioned),
        "{location}"
    );
    // Clients that follow no redirect get the files as they always did.
    let plain = master
        .client
        .get_bytes(&format!("/repo/live/{arch}/quarters.db"), 1 << 20)
        .await
        .unwrap();
    assert!(!plain.is_empty());

    // The export lists the new key first and the old, retired one after it.
    let stderr = String::from_utf8_lossy(&ctl_key(&["export"]).stderr).into_owned();
    assert!(
        stderr.contains(&format!("fingerprint: {new_key}"))
            && stderr.contains(&format!("retired, still listed: {}", signer.fingerprint)),
        "{stderr}"
    );
    let new_only = dir.path().join("new.asc");
    std::fs::copy(
        signer
            .key_dir
            .join(quarters_master::signing::key::PUBLIC_FILE),
        &new_only,
    )
    .unwrap();

    // The client that took the export before the switch goes on installing, unchanged.
    updated_client.install_afresh(&["hello"]);
    // So does a client trusting only the new key; one that never took it cannot.
    PacmanRoot::trusting(
        &ca_pem,
        &[("quarters", live_url.clone())],
        &new_only,
        &new_key,
    )
    .install(&["hello"]);
    let text = trusting(live_url).refuse(&["hello"]);
    assert!(
        text.contains(&format!("error: quarters: key \"{new_key}")) && text.contains("is unknown"),
        "{text}"
    );
}

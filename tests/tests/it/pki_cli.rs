//! `quartersctl ca init` and `quartersctl cert issue`.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use quarters_tests::{assert_contains, command};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_init_and_cert_issue_write_private_keys_and_never_overwrite_silently() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let run = |args: &[&str]| command("quartersctl").args(args).output().unwrap();

    let out = run(&["ca", "init", "--dir", ca.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    let ca_key = fs::read(ca.join("ca.key")).unwrap();

    let out = run(&["ca", "init", "--dir", ca.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        &["ca.pem", "already exists", "--force"],
    );
    assert_eq!(fs::read(ca.join("ca.key")).unwrap(), ca_key);

    let issue = [
        "cert",
        "issue",
        "builder-7",
        "--dir",
        ca.to_str().unwrap(),
        "--san",
        "127.0.0.1",
    ];
    let out = run(&issue);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&ca.join("builder-7.key")), 0o600);
    assert_eq!(mode(&ca.join("builder-7.pem")), 0o644);
    let key = fs::read(ca.join("builder-7.key")).unwrap();

    let out = run(&issue);
    assert!(!out.status.success());
    assert_eq!(fs::read(ca.join("builder-7.key")).unwrap(), key);

    let mut forced = issue.to_vec();
    forced.push("--force");
    let out = run(&forced);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(fs::read(ca.join("builder-7.key")).unwrap(), key);
    assert_eq!(mode(&ca.join("builder-7.key")), 0o600);

    let out = run(&[
        "cert",
        "issue",
        "../etc/passwd",
        "--dir",
        ca.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        &["invalid node name"],
    );
}

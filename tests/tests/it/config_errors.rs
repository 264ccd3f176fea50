//! A node with a bad config stops at once, with an error naming the file, the key and the
//! problem, and a non-zero exit.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use quarters_common::{NodeName, pki};
use quarters_tests::{assert_contains, command};

/// A CA and a certificate for `master` and `builder-1` in `dir`.
fn pki_in(dir: &Path) {
    pki::init_ca(dir, false).unwrap();
    for name in ["master", "builder-1"] {
        let name = NodeName::new(name).unwrap();
        pki::issue_cert(dir, dir, &name, &["127.0.0.1".into()], false).unwrap();
    }
}

const MASTER_OK: &str = r#"
name = "master"
listen = "127.0.0.1:0"
url = "https://127.0.0.1:1/"
state_dir = "state"

[tls]
ca = "ca.pem"
cert = "master.pem"
key = "master.key"
"#;

/// Runs `bin --config FILE` with `text` as the config; returns stderr after checking that the
/// node exited non-zero.
fn fails(bin: &str, dir: &Path, text: &str) -> String {
    let path = dir.join("node.toml");
    fs::write(&path, text).unwrap();
    let out = command(bin).arg("--config").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{bin} accepted the config:\n{text}\n{stderr}"
    );
    assert!(
        stderr.contains(&path.display().to_string()),
        "the error names the file: {stderr}"
    );
    stderr
}

#[test]
fn malformed_toml_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    pki_in(dir.path());
    let err = fails(
        "quarters-master",
        dir.path(),
        "name = \"master\"\nlisten = [\n",
    );
    assert_contains(&err, &["line 2"]);
}

#[test]
fn a_wrong_value_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    pki_in(dir.path());
    let err = fails(
        "quarters-master",
        dir.path(),
        &MASTER_OK.replace("127.0.0.1:0", "everywhere"),
    );
    assert_contains(&err, &["key `listen`", "invalid socket address"]);

    let text =
        format!("{MASTER_OK}\n[[builder]]\nname = \"Builder One\"\nurl = \"https://b:1/\"\n");
    let err = fails("quarters-master", dir.path(), &text);
    assert_contains(&err, &["key `builder[0].name`", "invalid node name"]);

    let text = format!("{MASTER_OK}\n[[builder]]\nname = \"b1\"\nurl = \"http://b:1/\"\n");
    let err = fails("quarters-master", dir.path(), &text);
    assert_contains(&err, &["key `builder[0].url`", "HTTPS only"]);

    let err = fails(
        "quarters-master",
        dir.path(),
        &format!("{MASTER_OK}\nlisten_addr = 1\n"),
    );
    assert_contains(&err, &["unknown field `listen_addr`"]);

    let err = fails(
        "quarters-master",
        dir.path(),
        &format!("{MASTER_OK}\n[verification]\nagree = 1\n"),
    );
    assert_contains(&err, &["key `verification.agree`", "outside 2..=5"]);
    let err = fails(
        "quarters-master",
        dir.path(),
        &format!("{MASTER_OK}\n[verification]\nmode = \"sometimes\"\n"),
    );
    assert_contains(&err, &["unknown variant `sometimes`"]);
}

#[test]
fn missing_certificate_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    pki_in(dir.path());
    fs::remove_file(dir.path().join("master.pem")).unwrap();
    let err = fails("quarters-master", dir.path(), MASTER_OK);
    assert_contains(&err, &["key `tls`", "master.pem", "No such file"]);
}

#[test]
fn a_world_readable_private_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    pki_in(dir.path());
    let key = dir.path().join("master.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let err = fails("quarters-master", dir.path(), MASTER_OK);
    assert_contains(
        &err,
        &["key `tls`", "master.key", "readable by others", "chmod 600"],
    );
}

#[test]
fn a_builder_with_a_bad_config_fails_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    pki_in(dir.path());
    let builder = r#"
name = "builder-1"
listen = "127.0.0.1:0"
slots = 0
work_dir = "work"
driver = "sim"

[master]
name = "master"
url = "https://127.0.0.1:1/"

[tls]
ca = "ca.pem"
cert = "builder-1.pem"
key = "builder-1.key"
"#;
    let err = fails("quarters-builder", dir.path(), builder);
    assert_contains(&err, &["key `slots`", "outside 1..=256"]);

    // A certificate issued for another node.
    let err = fails(
        "quarters-builder",
        dir.path(),
        &builder
            .replace("slots = 0", "slots = 1")
            .replace("builder-1.pem", "master.pem")
            .replace("builder-1.key", "master.key"),
    );
    assert_contains(&err, &["key `tls`", "another node name"]);

    let out = command("quarters-builder")
        .arg("--config")
        .arg(dir.path().join("absent.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        &["absent.toml", "cannot read it"],
    );
}

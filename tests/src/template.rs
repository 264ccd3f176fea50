//! The template root the real builds of the tests run over: made once with
//! `quarters-builder mkroot` (about a minute with debootstrap) and kept in
//! `/var/cache/quarters-test/template`, or `$QUARTERS_TEST_TEMPLATE`.

use std::path::PathBuf;
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

/// The template root, made now if there is none.
pub fn template_root() -> PathBuf {
    let dir = std::env::var_os("QUARTERS_TEST_TEMPLATE").map_or_else(
        || PathBuf::from("/var/cache/quarters-test/template"),
        PathBuf::from,
    );
    let marker = dir.join("etc/quarters-template");
    if marker.is_file() {
        return dir;
    }
    let parent = dir.parent().expect("the template has a parent directory");
    std::fs::create_dir_all(parent).unwrap();
    // Tests run in parallel: one makes the template, the others wait for it.
    let lock = std::fs::File::create(parent.join("template.lock")).unwrap();
    let _lock = Flock::lock(lock, FlockArg::LockExclusive).expect("locking the template");
    if marker.is_file() {
        return dir;
    }
    let partial = parent.join("template.partial");
    let _ = std::fs::remove_dir_all(&partial);
    let out = Command::new(crate::bin("quarters-builder"))
        .arg("mkroot")
        .arg(&partial)
        .output()
        .expect("running quarters-builder mkroot");
    assert!(
        out.status.success(),
        "quarters-builder mkroot failed (it needs root and debootstrap):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &dir).unwrap();
    dir
}

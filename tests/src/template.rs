//! The template root the real builds of the tests run over: made once with
//! `quarters-builder mkroot` (about a minute with debootstrap) and kept in
//! `/var/cache/quarters-test/template`, or `$QUARTERS_TEST_TEMPLATE`.

use std::path::PathBuf;
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

/// A setuid-root copy of `id` that the template holds for the hostile-build tests: run by the
/// build user, it prints `euid=0` if setuid bits take effect in a build.
pub const SETUID_PROBE: &str = "/usr/local/bin/quarters-setuid-probe";

/// The template root, made now if there is none, with [`SETUID_PROBE`] in it.
pub fn template_root() -> PathBuf {
    let dir = made_template();
    let probe = dir.join(SETUID_PROBE.trim_start_matches('/'));
    if !probe.exists() {
        use std::os::unix::fs::PermissionsExt;
        // Made under another name and renamed: tests in parallel see it whole or not at all.
        let partial = probe.with_extension(format!("partial-{}", std::process::id()));
        std::fs::create_dir_all(probe.parent().unwrap()).unwrap();
        std::fs::copy(dir.join("usr/bin/id"), &partial).unwrap();
        // Root's inside the builds, as everything in the template.
        let root_inside = nix::unistd::Uid::from_raw(quarters_builder::ids::DEFAULT_BASE);
        let group_inside = nix::unistd::Gid::from_raw(quarters_builder::ids::DEFAULT_BASE);
        nix::unistd::chown(&partial, Some(root_inside), Some(group_inside)).unwrap();
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::rename(&partial, &probe).unwrap();
    }
    dir
}

fn made_template() -> PathBuf {
    let dir = std::env::var_os("QUARTERS_TEST_TEMPLATE").map_or_else(
        || PathBuf::from("/var/cache/quarters-test/template"),
        PathBuf::from,
    );
    let marker = dir.join("etc/quarters-template");
    if marker.is_file() && shifted(&dir) {
        return dir;
    }
    let parent = dir.parent().expect("the template has a parent directory");
    std::fs::create_dir_all(parent).unwrap();
    // Tests run in parallel: one makes the template, the others wait for it.
    let lock = std::fs::File::create(parent.join("template.lock")).unwrap();
    let _lock = Flock::lock(lock, FlockArg::LockExclusive).expect("locking the template");
    if marker.is_file() {
        if !shifted(&dir) {
            // Made before builds ran in user namespaces: handed to the build ids once.
            run_builder(&[std::ffi::OsStr::new("shift-root"), dir.as_os_str()]);
        }
        return dir;
    }
    let partial = parent.join("template.partial");
    let _ = std::fs::remove_dir_all(&partial);
    run_builder(&[std::ffi::OsStr::new("mkroot"), partial.as_os_str()]);
    std::fs::rename(&partial, &dir).unwrap();
    dir
}

/// Whether the template belongs to the build ids, as the builder requires.
fn shifted(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(dir).is_ok_and(|m| m.uid() == quarters_builder::ids::DEFAULT_BASE)
}

fn run_builder(args: &[&std::ffi::OsStr]) {
    let out = Command::new(crate::bin("quarters-builder"))
        .args(args)
        .output()
        .expect("running quarters-builder");
    assert!(
        out.status.success(),
        "quarters-builder {args:?} failed (it needs root, and debootstrap to make a root):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! The sandbox's init: PID 1 of the build's PID namespace, root of its user namespace.
//!
//! It mounts `/proc`, a minimal `/dev` (null, zero, full, random, urandom, tty, the `fd`,
//! `stdin`, `stdout` and `stderr` links makepkg's bash needs, and a `/dev/shm`) and a `/tmp`
//! inside the build root (the builder bound what the stage needs), and `pivot_root`s into it,
//! detaching the host's tree: from here on nothing of the host exists in this mount namespace
//! but what was bound, so there is nothing for a `chroot` escape to reach. It then runs the
//! command and reaps. When the command ends, any process still alive was left behind: it is
//! named in the report and killed. Everything the mounts and processes leave disappears with
//! the namespaces.
//!
//! Hardened as bubblewrap and systemd-nspawn harden theirs: every mount a build can write or
//! execute from is `nosuid` and `nodev`, every tmpfs has a size, the
//! bounding set keeps only what the command's uid needs ([`super::caps`]), and `no_new_privs`
//! is set before the command starts, so that no setuid binary and no file capability in the
//! root gives a build more than its user has; last, the seccomp filter ([`super::seccomp`]).

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, ExitCode};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::resource::{Resource, UsageWho, getrusage, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, wait, waitpid};
use nix::unistd::{Pid, chdir, sethostname};

use super::{Report, Spec, caps, seccomp};

/// Where the build root is staged before the pivot.
const STAGING: &str = "/tmp";

pub(super) fn run(spec: &Spec) -> Result<ExitCode, String> {
    // If the entry process dies (the builder killed it), the whole namespace goes with this one.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| format!("setting the parent-death signal: {e}"))?;
    let mut report_file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&spec.report)
        .map_err(|e| format!("{}: {e}", spec.report.display()))?;
    // The overlay came from the host's mount namespace, so it is locked here and cannot be the
    // new root of a pivot; a bind of it made in this namespace can. It goes on `/tmp`, as
    // bubblewrap stages its root there: a path this process can reach, where the host's
    // directory is hidden in this namespace only.
    let root = Path::new(STAGING);
    mount(
        Some("."),
        root,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("binding the build root at {STAGING}: {e}"))?;
    mount_fs(
        &root.join("proc"),
        "proc",
        "proc",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    make_dev(&root.join("dev"), spec.shm_mib)?;
    mount_fs(
        &root.join("tmp"),
        "tmpfs",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("mode=1777,size={}m", spec.tmp_mib)),
    )?;
    // The descriptors the entry opened lead to the host's tree: none may reach the command.
    for fd in &spec.inherited_fds {
        nix::unistd::close(*fd).map_err(|e| format!("closing descriptor {fd}: {e}"))?;
    }
    sethostname("quarters-build").map_err(|e| format!("sethostname: {e}"))?;
    enter_root(root)?;
    chdir(spec.workdir.as_path()).map_err(|e| format!("chdir {}: {e}", spec.workdir.display()))?;
    // The limit counts the build user's processes; the command inherits it.
    setrlimit(Resource::RLIMIT_NPROC, spec.nproc, spec.nproc)
        .map_err(|e| format!("limiting processes: {e}"))?;
    // Only what the command's uid needs stays in the bounding set; this process keeps its own
    // capabilities (the bounding set limits what an execve grants), and never execs again.
    caps::limit_bounding_set(spec.uid == 0)?;
    // Inherited by the command and everything it starts: execve never grants privileges again
    // (no setuid, no file capabilities), whatever the mounts say.
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("setting no_new_privs: {e}"))?;
    // The last step: from here on this process and everything it starts is under the filter.
    match seccomp::Filter::new() {
        Ok(filter) => filter.install()?,
        // Only an architecture seccompiler does not know; the builder said so at start-up.
        Err(e) => eprintln!("quarters sandbox: {e}"),
    }

    // This process stays root inside: changing its uid would clear the parent-death signal that
    // ties it, and so the whole namespace, to the entry process. Only the command runs as the
    // build user (std drops the supplementary groups with the uid).
    let (program, args) = spec.command.split_first().ok_or("no command")?;
    let child = Command::new(program)
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .uid(spec.uid)
        .gid(spec.uid)
        .spawn()
        .map_err(|e| format!("starting {program}: {e}"))?;
    let main = Pid::from_raw(i32::try_from(child.id()).map_err(|e| e.to_string())?);
    let mut report = Report::default();
    // As PID 1 this process inherits every orphan; reap them all until the command ends.
    loop {
        match wait() {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => {
                report.exit_code = Some(code);
                break;
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == main => {
                report.signal = Some(signal.to_string());
                break;
            }
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    }
    // Orphans that exited just before the command did are zombies waiting for this process:
    // reaped, they are not taken for processes left running. A process the command told to
    // stop as it ended (fakeroot signals its faked daemon on its way out, and does not wait)
    // may still be exiting: it gets a moment before it counts as left running.
    let grace_ends = std::time::Instant::now() + LEFT_BEHIND_GRACE;
    report.left_behind = loop {
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
        let left = survivors();
        if left.is_empty() || std::time::Instant::now() >= grace_ends {
            break left;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    if !report.left_behind.is_empty() {
        // Everything in this PID namespace but its init (this process).
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        while wait().is_ok() {}
    }
    report.full = full(spec);
    if let Ok(usage) = getrusage(UsageWho::RUSAGE_CHILDREN) {
        let cpu = usage.user_time() + usage.system_time();
        report.cpu_ms = u64::try_from(cpu.tv_sec()).unwrap_or(0) * 1000
            + u64::try_from(cpu.tv_usec()).unwrap_or(0) / 1000;
        report.max_rss_kb = u64::try_from(usage.max_rss()).unwrap_or(0);
    }
    let json = serde_json::to_vec(&report).map_err(|e| e.to_string())?;
    report_file
        .write_all(&json)
        .map_err(|e| format!("writing the report: {e}"))?;
    Ok(match (report.exit_code, report.left_behind.is_empty()) {
        (Some(0), true) => ExitCode::SUCCESS,
        (Some(code), _) if code != 0 => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        _ => ExitCode::FAILURE,
    })
}

fn mount_fs(
    target: &Path,
    source: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    fs::create_dir_all(target).map_err(|e| format!("{}: {e}", target.display()))?;
    mount(Some(source), target, Some(fstype), flags, data)
        .map_err(|e| format!("mounting {fstype} at {}: {e}", target.display()))
}

/// Makes `root` the root of this mount namespace and detaches the host's tree, as
/// `pivot_root(".", ".")` allows: the old root is stacked under the new one and unmounted.
fn enter_root(root: &Path) -> Result<(), String> {
    chdir(root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    rustix::process::pivot_root(".", ".")
        .map_err(|e| format!("pivot_root into {}: {e}", root.display()))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the host's tree: {e}"))?;
    chdir("/").map_err(|e| format!("chdir /: {e}"))
}

/// The size-limited file systems of the root that are (all but) full, named with their limits.
/// Seen from inside the chroot, after the command ended.
fn full(spec: &Spec) -> Vec<String> {
    let mut out = Vec::new();
    // The root is an overlay, whose file system statistics are those of its writable layer.
    for (path, limit) in [
        ("/", spec.root_mib),
        ("/tmp", spec.tmp_mib),
        ("/dev/shm", spec.shm_mib),
    ] {
        let Ok(st) = nix::sys::statvfs::statvfs(path) else {
            continue;
        };
        // A few blocks may stay free: what a writer could not fill is not room to build in.
        if st.blocks_available() * 100 <= st.blocks() {
            out.push(format!("{path} ({limit} MiB)"));
        }
    }
    out
}

/// A minimal /dev: makepkg's bash needs the fd links, fakeroot needs /dev/shm.
fn make_dev(dev: &Path, shm_mib: u64) -> Result<(), String> {
    mount_fs(
        dev,
        "tmpfs",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(node);
        fs::write(&target, b"").map_err(|e| format!("{}: {e}", target.display()))?;
        let host = Path::new("/dev").join(node);
        mount(
            Some(host.as_path()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("binding {}: {e}", host.display()))?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(to, dev.join(link)).map_err(|e| format!("/dev/{link}: {e}"))?;
    }
    mount_fs(
        &dev.join("shm"),
        "tmpfs",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("mode=1777,size={shm_mib}m")),
    )?;
    Ok(())
}

/// Whether the process at `/proc/PID` has exited and only waits to be reaped.
fn is_zombie(proc_dir: &Path) -> bool {
    // The state is the first field after the command name, which is in parentheses and may
    // itself contain spaces and parentheses.
    fs::read_to_string(proc_dir.join("stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// Every process of this PID namespace but init, as `pid command line`.
/// How long processes still running when the command ends get to exit on their own.
const LEFT_BEHIND_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

fn survivors() -> Vec<String> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == 1 || is_zombie(&entry.path()) {
            continue;
        }
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline: String = String::from_utf8_lossy(&cmdline)
            .replace('\0', " ")
            .trim()
            .to_owned();
        out.push(format!("{pid} {cmdline}"));
    }
    out.sort();
    out
}

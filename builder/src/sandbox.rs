//! The inside of a build's sandbox: `quarters-builder sandbox ...`, started by `unshare` in new
//! mount, PID, IPC, UTS (and, for the build itself, network) namespaces, so that it is PID 1
//! there.
//!
//! It mounts `/proc`, a minimal `/dev` (null, zero, full, random, urandom, tty, the `fd`,
//! `stdin`, `stdout` and `stderr` links makepkg's bash needs, and a `/dev/shm`) and a `/tmp`
//! inside the build root, binds what the stage needs, chroots, runs the command as the build
//! user, and reaps. When the command ends, any process still alive was left behind: it
//! is named in the report and killed. Everything the mounts and processes leave disappears
//! with the namespaces.
//!
//! Hardened as bubblewrap and systemd-nspawn harden theirs: every mount a build can write or
//! execute from is `nosuid` and `nodev` (binds are remounted so), every tmpfs has a size, and
//! `no_new_privs` is set before the command starts, so that no setuid binary and no file
//! capability in the root gives a build more than the build user has.
//!
//! nix's safe wrappers are enough for all of it: no `unsafe`, no `pre_exec`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use nix::mount::{MsFlags, mount};
use nix::sys::resource::{Resource, UsageWho, getrusage, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, wait, waitpid};
use nix::unistd::{Pid, chdir, chroot, sethostname};
use serde::{Deserialize, Serialize};

/// What the sandbox is asked to do.
#[derive(Clone, Debug)]
pub struct Spec {
    pub root: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// Directory inside the root to run in.
    pub workdir: PathBuf,
    pub binds: Vec<Bind>,
    /// Size limits of the `/tmp` and `/dev/shm` tmpfs, in MiB; and of the root's writable layer
    /// (a tmpfs the builder mounted), which is only reported.
    pub tmp_mib: u64,
    pub root_mib: u64,
    pub shm_mib: u64,
    pub env: Vec<(String, String)>,
    /// Host path of the report written at the end.
    pub report: PathBuf,
    /// Most processes the build user may have.
    pub nproc: u64,
    pub command: Vec<String>,
}

/// A directory of the host bound into the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub inside: PathBuf,
}

impl Bind {
    /// `HOST:INSIDE`, as the command line gives it.
    pub fn parse(arg: &str) -> Option<Self> {
        let (host, inside) = arg.split_once(':')?;
        Some(Bind {
            host: host.into(),
            inside: inside.into(),
        })
    }
}

/// What the sandbox reports when its command has ended.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Report {
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    /// Processes still running when the command ended (killed since): `pid command line`.
    pub left_behind: Vec<String>,
    pub cpu_ms: u64,
    pub max_rss_kb: u64,
    /// The size-limited file systems the command filled, with their limits (`/tmp (64 MiB)`):
    /// why a build that ran out of space failed.
    #[serde(default)]
    pub full: Vec<String>,
}

/// Runs the sandbox; the process's exit code is the command's.
pub fn run(spec: &Spec) -> ExitCode {
    match run_inner(spec) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("quarters sandbox: {e}");
            ExitCode::from(125)
        }
    }
}

fn run_inner(spec: &Spec) -> Result<ExitCode, String> {
    let mut report_file =
        fs::File::create(&spec.report).map_err(|e| format!("{}: {e}", spec.report.display()))?;
    let root = &spec.root;
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
    for bind in &spec.binds {
        bind_into(root, bind)?;
    }
    sethostname("quarters-build").map_err(|e| format!("sethostname: {e}"))?;
    chroot(root.as_path()).map_err(|e| format!("chroot {}: {e}", root.display()))?;
    chdir(spec.workdir.as_path()).map_err(|e| format!("chdir {}: {e}", spec.workdir.display()))?;
    // The limit counts the build user's processes; the command inherits it.
    setrlimit(Resource::RLIMIT_NPROC, spec.nproc, spec.nproc)
        .map_err(|e| format!("limiting processes: {e}"))?;

    // Inherited by the command and everything it starts: execve never grants privileges again
    // (no setuid, no file capabilities), whatever the mounts say.
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("setting no_new_privs: {e}"))?;

    // This process stays root: changing its uid would clear the parent-death signal with which
    // `unshare --kill-child` ties it, and so the whole namespace, to the builder. Only the
    // command runs as the build user (std drops the supplementary groups with the uid).
    let (program, args) = spec.command.split_first().ok_or("no command")?;
    let child = Command::new(program)
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .uid(spec.uid)
        .gid(spec.gid)
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
    // reaped now, they are not taken for processes left running.
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
    report.left_behind = survivors();
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

/// Binds `bind` into `root`, then remounts it `nosuid,nodev`: the flags of a bind mount can
/// only be set by a remount.
fn bind_into(root: &Path, bind: &Bind) -> Result<(), String> {
    let inside = &bind.inside;
    let target = root.join(inside.strip_prefix("/").unwrap_or(inside));
    fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    mount(
        Some(bind.host.as_path()),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        format!(
            "binding {} at {}: {e}",
            bind.host.display(),
            inside.display()
        )
    })?;
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(None::<&str>, &target, None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("remounting {}: {e}", inside.display()))
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

//! A build's sandbox: `quarters-builder sandbox ...`, which the builder starts for every stage
//! that runs package code.
//!
//! Three processes, as bubblewrap arranges its own:
//!
//! 1. **enter** (this module): started by the builder as host root, it makes a user namespace
//!    and waits; the builder, still in the host's namespace, writes the map ([`IdMap`]: ids
//!    0..65536 inside are unprivileged host ids) and lets it go. It becomes root of that
//!    namespace, makes new mount, PID, IPC, UTS and network namespaces owned by it (no stage
//!    has a network: the builder fetched the sources), and starts
//!    the init.
//! 2. **init** ([`init`]): PID 1 of the new PID namespace. It mounts `/proc`, a minimal `/dev`
//!    and `/tmp` into the build root (which the builder has made, with the directories it binds
//!    into it: [`crate::mounts::BuildRoot`]), `pivot_root`s into it and detaches the host's
//!    tree, limits the bounding set of capabilities, sets `no_new_privs`, runs the command,
//!    reaps, and writes the report.
//! 3. **the command**, as the build user, or as root inside for pacman: an unprivileged host id
//!    in both cases, in a mount namespace that holds nothing of the host but what was bound.
//!
//! Nothing needs `unsafe` or `pre_exec`: the namespaces are made by the processes themselves
//! with nix's safe `unshare`, and the map comes from outside, where writing a map of more than
//! one id is allowed.

mod caps;
mod init;
pub mod seccomp;

use std::ffi::OsString;
use std::io::Read as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use std::os::fd::{AsRawFd as _, OwnedFd};

use nix::fcntl::OFlag;
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use serde::{Deserialize, Serialize};

use crate::ids::IdMap;

/// What the sandbox is asked to do: the arguments of `quarters-builder sandbox`, which the
/// builder makes from this type too ([`Spec::command`]).
#[derive(clap::Args, Clone, Debug)]
pub struct Spec {
    /// The build root (a mount point: the overlay, with the builder's binds in it).
    #[arg(long)]
    pub root: PathBuf,
    /// Uid and gid the command runs as, inside.
    #[arg(long)]
    pub uid: u32,
    /// Directory inside the root to run in.
    #[arg(long)]
    pub workdir: PathBuf,
    /// Size of the build's `/tmp`, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub tmp_mib: u64,
    /// Size of the build's `/dev/shm`, in MiB.
    #[arg(long, default_value_t = 256)]
    pub shm_mib: u64,
    /// Size of the root's writable layer (a tmpfs the builder mounted), in MiB: only reported.
    #[arg(long, default_value_t = 16384)]
    pub root_mib: u64,
    /// `NAME=VALUE`, the command's whole environment.
    #[arg(long = "env", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Host path of the report written at the end. The builder makes the file and gives it to
    /// root inside; the init only writes it.
    #[arg(long)]
    pub report: PathBuf,
    /// Most processes the build user may have.
    #[arg(long, default_value_t = 512)]
    pub nproc: u64,
    /// Internal: this process is the init, not the entry.
    #[arg(long, hide = true)]
    pub init: bool,
    /// Internal: descriptors the entry opened for the init, which closes them before the
    /// command starts.
    #[arg(long = "inherited-fd", hide = true)]
    pub inherited_fds: Vec<i32>,
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
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

impl Spec {
    /// The command line that runs this spec's sandbox with `exe` (this program).
    pub fn command(&self, exe: &Path) -> Command {
        let mut cmd = Command::new(exe);
        cmd.arg("sandbox").args(self.args());
        cmd
    }

    fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut flag = |name: &str, value: OsString| {
            a.push(format!("--{name}").into());
            a.push(value);
        };
        flag("root", self.root.clone().into());
        flag("uid", self.uid.to_string().into());
        flag("workdir", self.workdir.clone().into());
        flag("tmp-mib", self.tmp_mib.to_string().into());
        flag("shm-mib", self.shm_mib.to_string().into());
        flag("root-mib", self.root_mib.to_string().into());
        for (k, v) in &self.env {
            flag("env", format!("{k}={v}").into());
        }
        flag("report", self.report.clone().into());
        flag("nproc", self.nproc.to_string().into());
        if self.init {
            a.push("--init".into());
        }
        for fd in &self.inherited_fds {
            a.push("--inherited-fd".into());
            a.push(fd.to_string().into());
        }
        a.push("--".into());
        a.extend(self.command.iter().map(OsString::from));
        a
    }
}

/// Runs the sandbox; the process's exit code is the command's.
pub fn run(spec: &Spec) -> ExitCode {
    let result = if spec.init {
        init::run(spec)
    } else {
        enter(spec)
    };
    result.unwrap_or_else(|e| {
        eprintln!("quarters sandbox: {e}");
        ExitCode::from(125)
    })
}

/// Step 1: the user namespace, then the others, then the init.
fn enter(spec: &Spec) -> Result<ExitCode, String> {
    // Reached while this process is still the host's root: the builder's work directory may
    // be one no build id may search (mode 0700). The root is the working directory, which
    // follows this process into its namespaces, and the init binds it from there.
    std::env::set_current_dir(&spec.root)
        .map_err(|e| format!("entering {}: {e}", spec.root.display()))?;
    let (init_spec, _report) = opened_for_init(spec)?;
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| format!("making a user namespace: {e}"))?;
    // The builder writes the map from outside, then one byte: until then this process has no
    // ids inside and may do nothing.
    let mut go = [0u8; 1];
    match std::io::stdin().read(&mut go) {
        Ok(1) => {}
        _ => return Err("the builder gave the sandbox no id map".into()),
    }
    let root_inside = (Uid::from_raw(0), Gid::from_raw(0));
    setgroups(&[]).map_err(|e| format!("dropping groups: {e}"))?;
    setresgid(root_inside.1, root_inside.1, root_inside.1)
        .map_err(|e| format!("becoming gid 0 inside: {e}"))?;
    setresuid(root_inside.0, root_inside.0, root_inside.0)
        .map_err(|e| format!("becoming uid 0 inside: {e}"))?;
    // Set after the change of ids, which clears it: if the builder dies, so does the build.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| format!("setting the parent-death signal: {e}"))?;
    // No stage has a network: the builder fetched the sources before any code of the package
    // ran. The builder put this process in the build's cgroup before letting it go on: a new
    // cgroup namespace makes that group the root of what the build could ever name.
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWCGROUP;
    unshare(flags).map_err(|e| format!("making namespaces: {e}"))?;
    // Nothing mounted in here propagates back to the host.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making mounts private: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("locating this program: {e}"))?;
    let status = init_spec
        .command(&exe)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("starting the sandbox's init: {e}"))?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        _ => ExitCode::FAILURE,
    })
}

/// The spec the init gets: the report as a descriptor this process holds open (and the init
/// inherits), named `/proc/self/fd/N`. The report lies in the builder's work directory, which
/// no build id may search.
fn opened_for_init(spec: &Spec) -> Result<(Spec, OwnedFd), String> {
    // No O_CLOEXEC: the init inherits it.
    let fd = nix::fcntl::open(&spec.report, OFlag::O_PATH, Mode::empty())
        .map_err(|e| format!("{}: {e}", spec.report.display()))?;
    let init = Spec {
        init: true,
        report: format!("/proc/self/fd/{}", fd.as_raw_fd()).into(),
        inherited_fds: vec![fd.as_raw_fd()],
        ..spec.clone()
    };
    Ok((init, fd))
}

/// The builder's half of step 1: waits until the sandbox started as `pid` has its user
/// namespace, writes `ids` as its map, and lets it go on by writing to its stdin.
pub async fn map_ids(
    pid: u32,
    ids: IdMap,
    stdin: &mut tokio::process::ChildStdin,
) -> Result<(), String> {
    use tokio::io::AsyncWriteExt as _;
    let own = std::fs::read_link("/proc/self/ns/user").map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::read_link(format!("/proc/{pid}/ns/user")) {
            Ok(ns) if ns != own => break,
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok(_) => return Err("the sandbox made no user namespace within 10 s".into()),
            Err(e) => return Err(format!("the sandbox ended before its id map: {e}")),
        }
    }
    for map in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{pid}/{map}"), ids.proc_line())
            .map_err(|e| format!("writing the sandbox's {map}: {e}"))?;
    }
    stdin
        .write_all(b"1")
        .await
        .map_err(|e| format!("starting the sandbox: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        spec: Spec,
    }

    #[test]
    fn a_spec_survives_its_own_command_line() {
        let spec = Spec {
            root: "/w/root".into(),
            uid: 65534,
            workdir: "/build/hello".into(),
            tmp_mib: 64,
            shm_mib: 32,
            root_mib: 128,
            env: vec![("A".into(), "b=c".into())],
            report: "/w/r.json".into(),
            nproc: 9,
            init: true,
            inherited_fds: vec![3, 4],
            command: vec!["makepkg".into(), "--nodeps".into()],
        };
        let mut argv: Vec<OsString> = vec!["sandbox".into()];
        argv.extend(spec.args());
        let parsed = Cli::try_parse_from(argv).unwrap().spec;
        assert_eq!(parsed.args(), spec.args());
        assert_eq!(parsed.env, spec.env);
    }
}

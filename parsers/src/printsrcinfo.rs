//! Evaluating a PKGBUILD that comes without a .SRCINFO: `makepkg --printsrcinfo`, but never with
//! the caller's privileges.
//!
//! A PKGBUILD is a bash script; sourcing it runs whatever it says. It is therefore run
//!
//! * as an unprivileged user (uid 65534): as root by dropping to it with `setpriv`, otherwise in
//!   a new user namespace in which the caller maps to no one;
//! * in new network and PID namespaces: no network, and every process it starts dies with it;
//! * under a process limit, so that a fork bomb stays small, and a time limit, after which the
//!   whole group is killed.
//!
//! If that cannot be set up (no `unshare`, no user namespaces), evaluation fails with an error
//! that says so; the PKGBUILD is never run unconfined.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::cmd::{self, CmdError};

/// Why a PKGBUILD could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The sandbox is not available here; nothing was run.
    #[error("cannot evaluate PKGBUILD in a sandbox here: {0}")]
    Sandbox(String),
    #[error("PKGBUILD did not evaluate within {0:?} (an endless loop, or waiting on the network?)")]
    TimedOut(Duration),
    #[error("PKGBUILD does not evaluate: {0}")]
    Failed(String),
}

/// What the sandbox prints, as the unprivileged user, just before makepkg starts.
const READY: &str = "quarters-sandbox-ready";

/// Uid and gid the PKGBUILD runs as: `nobody` on Debian and Arch.
const NOBODY: &str = "65534";

/// Runs `makepkg --printsrcinfo` on the PKGBUILD in `dir` and returns the .SRCINFO it prints.
/// `dir` must be a scratch copy: as root, it is handed to the unprivileged user, because
/// makepkg insists on a writable build directory.
pub fn evaluate(dir: &Path, limit: Duration) -> Result<String, EvalError> {
    for tool in ["unshare", "prlimit", "makepkg"] {
        if which(tool).is_none() {
            return Err(EvalError::Sandbox(format!("`{tool}` is not installed")));
        }
    }
    let root = nix::unistd::geteuid().is_root();
    let mut cmd = Command::new("unshare");
    if !root {
        cmd.arg("--user");
    }
    cmd.args(["--net", "--pid", "--fork", "--kill-child", "--"])
        .args(["prlimit", "--nproc=256", "--as=2147483648", "--"]);
    if root {
        if which("setpriv").is_none() {
            return Err(EvalError::Sandbox("`setpriv` is not installed".to_owned()));
        }
        give_to_nobody(dir).map_err(|e| EvalError::Sandbox(format!("{}: {e}", dir.display())))?;
        cmd.args([
            "setpriv",
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            "--clear-groups",
            "--no-new-privs",
            "--",
        ]);
    }
    // The sandbox announces that it stands before makepkg reads the PKGBUILD: output without
    // the announcement means the sandbox failed, and nothing the PKGBUILD prints can say so.
    cmd.args([
        "sh",
        "-c",
        &format!("printf '%s\\n' {READY}; exec makepkg --printsrcinfo"),
    ])
    .current_dir(dir)
    .env_clear()
    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
    .env("LC_ALL", "C")
    .env("HOME", "/nonexistent");
    match cmd::run_command(cmd, "makepkg --printsrcinfo", limit) {
        Ok(out) => match out.strip_prefix(READY).and_then(|o| o.strip_prefix('\n')) {
            Some(srcinfo) => Ok(srcinfo.to_owned()),
            None => Err(EvalError::Sandbox(format!(
                "the sandbox did not announce itself: {out:.200}"
            ))),
        },
        Err(CmdError::TimedOut { limit, .. }) => Err(EvalError::TimedOut(limit)),
        Err(CmdError::NotStarted { reason, .. }) => Err(EvalError::Sandbox(reason)),
        Err(CmdError::Failed {
            stderr,
            stdout_head,
            ..
        }) => {
            if stdout_head.starts_with(READY) {
                Err(EvalError::Failed(stderr))
            } else {
                Err(EvalError::Sandbox(stderr))
            }
        }
    }
}

fn give_to_nobody(path: &Path) -> std::io::Result<()> {
    let nobody = nix::unistd::Uid::from_raw(65534);
    let nogroup = nix::unistd::Gid::from_raw(65534);
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(nobody),
        Some(nogroup),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            give_to_nobody(&entry?.path())?;
        }
    }
    Ok(())
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/bin".into(), "/usr/sbin".into(), "/bin".into()])
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

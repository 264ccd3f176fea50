//! Evaluating a PKGBUILD that comes without a .SRCINFO: `makepkg --printsrcinfo`, in a
//! sandbox that holds nothing of the machine it runs on.
//!
//! A PKGBUILD is a bash script; sourcing it runs whatever it says, with the access of whoever
//! sources it. The master's own files (its TLS key, its state, its config) must be out of
//! reach, and so must the network. The sandbox is bubblewrap (`bwrap`), the unprivileged
//! sandbox Flatpak is built on, rather than one of our own making:
//!
//! * new user, mount, PID, network, IPC, UTS and (where the kernel has them) cgroup
//!   namespaces; the PKGBUILD runs as uid 1000 inside, which is one unprivileged id outside
//!   (the master's own when it runs as a service user; `nobody`, by `setpriv`, when it runs
//!   as root), with no capabilities and no way to make further user namespaces;
//! * `pivot_root` into a fresh root ([`MinimalRoot`]) that holds the host's `/usr` and the few
//!   files of `/etc` makepkg reads, read-only; the package's directory, read-only; a private
//!   `/proc`, a minimal `/dev` and a size-limited `/tmp` for makepkg's scratch directories.
//!   Nothing else of the host exists in there;
//! * under a process and an address-space limit, a time limit after which the whole group is
//!   killed, and a limit on what it may print ([`MAX_SRCINFO`]).
//!
//! What the master publishes of a failure is one line ([`EvalError`]'s `reason`), never
//! makepkg's raw output. If no sandbox can be made here (no `bwrap`, no user namespaces), the
//! evaluation fails with an error that says so; the PKGBUILD is never run unconfined.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cmd::{self, CmdError};

/// Why a PKGBUILD could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The sandbox is not available here; nothing of the PKGBUILD ran.
    #[error("cannot evaluate PKGBUILD in a sandbox here: {0}")]
    Sandbox(String),
    #[error("PKGBUILD did not evaluate within {0:?} (an endless loop, or waiting on the network?)")]
    TimedOut(Duration),
    /// The PKGBUILD ran and failed. `reason` is one line, safe to publish; `stderr_tail` is the
    /// end of what it printed, for the operator's log only.
    #[error("PKGBUILD does not evaluate: {reason}")]
    Failed { reason: String, stderr_tail: String },
}

/// What the sandbox prints, from inside, just before makepkg starts.
const READY: &str = "quarters-sandbox-ready";

/// The uid and gid the PKGBUILD has inside: not 0, which makepkg refuses.
const INSIDE_ID: &str = "1000";

/// The host uid and gid a master running as root drops to before it makes the sandbox, so that
/// the one id mapped into it is an unprivileged one: `nobody` on Debian and Arch.
const NOBODY: &str = "65534";

/// Where the package's directory appears inside.
const STARTDIR: &str = "/startdir";

/// Most a `.SRCINFO` may be. The largest in Arch's repositories are tens of kilobytes.
pub const MAX_SRCINFO: usize = 4 << 20;

/// Size of the sandbox's `/tmp`, where makepkg makes its (empty) scratch directories.
const TMP_BYTES: u64 = 64 << 20;

/// Longest one-line reason published for a PKGBUILD that does not evaluate.
const MAX_REASON: usize = 300;

/// Runs `makepkg --printsrcinfo` on the PKGBUILD in `dir` and returns the .SRCINFO it prints.
/// `dir` is bound read-only; as root, it must be readable by `nobody` (a scratch copy is).
pub fn evaluate(dir: &Path, limit: Duration) -> Result<String, EvalError> {
    let root = nix::unistd::geteuid().is_root();
    let mut needed = vec![("bwrap", "bubblewrap"), ("prlimit", "util-linux")];
    if root {
        needed.push(("setpriv", "util-linux"));
    }
    for (tool, package) in needed {
        if cmd::which(tool).is_none() {
            return Err(EvalError::Sandbox(format!(
                "`{tool}` is not installed (package {package})"
            )));
        }
    }
    let dir = dir
        .canonicalize()
        .map_err(|e| EvalError::Sandbox(format!("{}: {e}", dir.display())))?;
    let mut cmd;
    if root {
        cmd = Command::new("setpriv");
        cmd.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
            .args(["--no-new-privs", "--", "prlimit"]);
    } else {
        cmd = Command::new("prlimit");
    }
    cmd.args(["--as=2147483648", "--", "bwrap"])
        .args(bwrap_args(&dir, &MinimalRoot::of_host()))
        // The process limit is set inside, where the kernel counts it per user namespace: each
        // evaluation has its own 256. Set outside, it would count every process of the one
        // outside id, so a PKGBUILD holding them all would starve the evaluations beside it
        // into time-outs, errors of their own packages.
        .args(["--", "prlimit", "--nproc=256", "--"])
        // The sandbox announces that it stands before makepkg reads the PKGBUILD: output
        // without the announcement means the sandbox failed, and nothing the PKGBUILD prints
        // can say so.
        .args([
            "sh",
            "-c",
            &format!("printf '%s\\n' {READY}; exec makepkg --printsrcinfo"),
        ])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LC_ALL", "C");
    match cmd::run_bounded(cmd, "makepkg --printsrcinfo", limit, MAX_SRCINFO) {
        Ok(out) => match out.strip_prefix(READY).and_then(|o| o.strip_prefix('\n')) {
            Some(srcinfo) => Ok(srcinfo.to_owned()),
            None => Err(EvalError::Sandbox(format!(
                "the sandbox did not announce itself: {}",
                one_line(&out)
            ))),
        },
        Err(CmdError::TimedOut { limit, .. }) => Err(EvalError::TimedOut(limit)),
        Err(CmdError::TooMuchOutput { limit, .. }) => Err(EvalError::Failed {
            reason: format!("it printed more than {} MiB", limit >> 20),
            stderr_tail: String::new(),
        }),
        Err(CmdError::NotStarted { reason, .. }) => Err(EvalError::Sandbox(reason)),
        Err(CmdError::Failed {
            stderr,
            stdout_head,
            ..
        }) => {
            if stdout_head.starts_with(READY) {
                Err(EvalError::Failed {
                    reason: reason(&stderr),
                    stderr_tail: stderr,
                })
            } else {
                Err(EvalError::Sandbox(one_line(&stderr)))
            }
        }
    }
}

/// What of the host the sandbox's root holds, read-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MinimalRoot {
    /// Top-level entries that are links on the host (`/bin -> usr/bin` on a merged-`/usr`
    /// system), made as the same links inside.
    pub links: Vec<(PathBuf, PathBuf)>,
    /// Host directories bound at the same path: `/usr`, and `/bin` or `/lib` where they are
    /// directories of their own.
    pub dirs: Vec<PathBuf>,
}

impl MinimalRoot {
    /// Files of `/etc` that makepkg or the dynamic loader read, bound where the host has them.
    const ETC: [&str; 3] = [
        "/etc/makepkg.conf",
        "/etc/makepkg.conf.d",
        "/etc/ld.so.cache",
    ];

    /// This host's layout of `/usr` and the directories beside it that programs are loaded
    /// from.
    pub fn of_host() -> MinimalRoot {
        let mut root = MinimalRoot {
            links: Vec::new(),
            dirs: vec!["/usr".into()],
        };
        for name in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            let path = Path::new("/").join(name);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(&path) {
                        root.links.push((path, target));
                    }
                }
                Ok(m) if m.is_dir() => root.dirs.push(path),
                _ => {}
            }
        }
        root
    }
}

/// bubblewrap's arguments for evaluating the package in `pkgdir` (an absolute path) in `root`.
fn bwrap_args(pkgdir: &Path, root: &MinimalRoot) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        a.extend(args.iter().map(|s| s.as_ref().to_owned()));
    };
    push(&[
        &"--unshare-user",
        &"--unshare-ipc",
        &"--unshare-pid",
        &"--unshare-net",
        &"--unshare-uts",
        &"--unshare-cgroup-try",
        &"--disable-userns",
        &"--uid",
        &INSIDE_ID,
        &"--gid",
        &INSIDE_ID,
        &"--hostname",
        &"quarters-eval",
        // Killed with the master; and no terminal to push input into (TIOCSTI).
        &"--die-with-parent",
        &"--new-session",
    ]);
    for dir in &root.dirs {
        push(&[&"--ro-bind", dir, dir]);
    }
    for (link, target) in &root.links {
        push(&[&"--symlink", target, link]);
    }
    for file in MinimalRoot::ETC {
        push(&[&"--ro-bind-try", &file, &file]);
    }
    let tmp_size = TMP_BYTES.to_string();
    push(&[
        &"--proc",
        &"/proc",
        &"--dev",
        &"/dev",
        &"--size",
        &tmp_size,
        &"--tmpfs",
        &"/tmp",
        &"--ro-bind",
        &pkgdir,
        &STARTDIR,
        &"--chdir",
        &STARTDIR,
        // The root bubblewrap built is a tmpfs of its own: read-only too, once populated.
        &"--remount-ro",
        &"/",
        &"--clearenv",
        &"--setenv",
        &"PATH",
        &"/usr/bin:/bin",
        &"--setenv",
        &"LC_ALL",
        &"C",
        &"--setenv",
        &"HOME",
        &"/tmp",
    ]);
    // makepkg insists that these be writable, though --printsrcinfo writes nothing; by default
    // they are the package's directory, which is read-only here.
    for (var, dir) in [
        ("BUILDDIR", "/tmp/build"),
        ("PKGDEST", "/tmp/pkgdest"),
        ("SRCDEST", "/tmp/srcdest"),
        ("SRCPKGDEST", "/tmp/srcpkgdest"),
        ("LOGDEST", "/tmp/logdest"),
    ] {
        push(&[&"--setenv", &var, &dir]);
    }
    a
}

/// The one line published for a PKGBUILD that does not evaluate: makepkg's last `ERROR:` line,
/// or else the last line it printed, without control characters and cut short.
fn reason(stderr: &str) -> String {
    let lines: Vec<String> = stderr
        .lines()
        .map(one_line)
        .filter(|l| !l.is_empty())
        .collect();
    let chosen = lines
        .iter()
        .rev()
        .find(|l| l.contains("ERROR:"))
        .or(lines.last());
    match chosen {
        Some(line) => line.clone(),
        None => "makepkg failed and printed nothing".to_owned(),
    }
}

/// `text` as one printable line: escape sequences and control characters dropped, runs of
/// white space made one space, cut at [`MAX_REASON`] characters.
fn one_line(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An ANSI sequence (makepkg's colours): ESC [ parameters final-byte.
            if chars.peek() == Some(&'[') {
                chars.next();
                for p in chars.by_ref() {
                    if ('@'..='~').contains(&p) {
                        break;
                    }
                }
            }
            continue;
        }
        if c.is_whitespace() {
            if !out.ends_with(' ') && !out.is_empty() {
                out.push(' ');
            }
        } else if !c.is_control() {
            out.push(c);
        }
        if out.chars().count() >= MAX_REASON {
            out.push('…');
            break;
        }
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_binds_the_package_and_usr_and_nothing_else_of_the_host() {
        let root = MinimalRoot {
            links: vec![("/bin".into(), "usr/bin".into())],
            dirs: vec!["/usr".into(), "/lib".into()],
        };
        let args: Vec<String> = bwrap_args(Path::new("/var/tmp/x/pkg"), &root)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        // Every host path in the arguments follows a bind; each is one of these.
        let mut bound = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if a == "--ro-bind" || a == "--ro-bind-try" || a == "--bind" {
                bound.push(args[i + 1].as_str());
            }
        }
        assert_eq!(
            bound,
            [
                "/usr",
                "/lib",
                "/etc/makepkg.conf",
                "/etc/makepkg.conf.d",
                "/etc/ld.so.cache",
                "/var/tmp/x/pkg"
            ]
        );
        assert!(!args.contains(&"--bind".to_owned()), "nothing writable");
        for flag in [
            "--unshare-user",
            "--unshare-net",
            "--unshare-pid",
            "--unshare-ipc",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
        ] {
            assert!(args.contains(&flag.to_owned()), "{flag}");
        }
        let uid = args.iter().position(|a| a == "--uid").unwrap();
        assert_eq!(args[uid + 1], INSIDE_ID);
        let ro = args.iter().position(|a| a == "--remount-ro").unwrap();
        assert_eq!(args[ro + 1], "/");
    }

    #[test]
    fn the_published_reason_is_one_clean_line() {
        let stderr = "noise\n\u{1b}[1;31m==> ERROR:\u{1b}[0m pkgver is not allowed to be empty.\n    Aborting...\n";
        assert_eq!(
            reason(stderr),
            "==> ERROR: pkgver is not allowed to be empty."
        );
        assert_eq!(reason("a\n\tb\x07c  d\n\n"), "bc d");
        assert_eq!(reason(""), "makepkg failed and printed nothing");
        let long = "x".repeat(5000);
        let r = reason(&long);
        assert_eq!(r.chars().count(), MAX_REASON + 1);
        assert!(r.ends_with('…'));
    }
}

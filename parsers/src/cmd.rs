//! Running the version-control command-line clients (svn, cvs) and makepkg with a time limit,
//! in their own process group, with errors that say which command failed and what it printed.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Why a command failed; the text names the command.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("`{command}` could not be started: {reason}")]
    NotStarted { command: String, reason: String },
    #[error("`{command}` did not finish within {limit:?} and was killed")]
    TimedOut { command: String, limit: Duration },
    /// It wrote more than it may to its standard output, and was killed.
    #[error("`{command}` printed more than {limit} bytes and was killed")]
    TooMuchOutput { command: String, limit: usize },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
        /// The first bytes the command wrote to its standard output.
        stdout_head: String,
    },
}

/// Runs `program args...` (in `dir`, if given) with `LC_ALL=C`, and returns its standard output.
pub fn run(
    program: &str,
    args: &[&str],
    dir: Option<&Path>,
    limit: Duration,
) -> Result<String, CmdError> {
    let mut cmd = Command::new(program);
    cmd.args(args).env("LC_ALL", "C");
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let what = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    run_command(cmd, &what, limit)
}

/// Most a command's standard output may hold unless its caller says otherwise: far more than
/// any listing or log a client prints, far less than what would take the master's memory.
pub const DEFAULT_MAX_STDOUT: usize = 256 << 20;

/// How much of a failed command's standard error is kept for its error: the end, where the
/// reason is.
const STDERR_TAIL: usize = 2000;

/// Runs a prepared command in a new process group, killing the whole group if it runs longer
/// than `limit`, and returns its standard output. `what` names it in errors.
pub fn run_command(cmd: Command, what: &str, limit: Duration) -> Result<String, CmdError> {
    run_bounded(cmd, what, limit, DEFAULT_MAX_STDOUT)
}

/// [`run_command`], killing the group too once the command has written more than `max_stdout`
/// bytes to its standard output. Standard error is drained whatever its size; only its end is
/// kept.
pub fn run_bounded(
    mut cmd: Command,
    what: &str,
    limit: Duration,
    max_stdout: usize,
) -> Result<String, CmdError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| CmdError::NotStarted {
        command: what.to_owned(),
        reason: e.to_string(),
    })?;
    let pid = child.id();
    let group = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    // Both pipes are drained at once, so that a chatty command never blocks on a full pipe.
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let cap = u64::try_from(max_stdout)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let _ = stdout.take(cap).read_to_end(&mut buf);
        if buf.len() > max_stdout {
            // The rest is never read: the whole group goes, as it would at the time limit.
            let _ = killpg(group, Signal::SIGKILL);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = stderr.read(&mut chunk) {
            tail.extend_from_slice(&chunk[..n]);
            if tail.len() > 2 * STDERR_TAIL {
                tail.drain(..tail.len() - STDERR_TAIL);
            }
        }
        tail
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(limit) {
        Ok(status) => status,
        Err(_) => {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = rx.recv();
            return Err(CmdError::TimedOut {
                command: what.to_owned(),
                limit,
            });
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if stdout.len() > max_stdout {
        return Err(CmdError::TooMuchOutput {
            command: what.to_owned(),
            limit: max_stdout,
        });
    }
    let status = status.map_err(|e| CmdError::NotStarted {
        command: what.to_owned(),
        reason: e.to_string(),
    })?;
    if !status.success() {
        return Err(CmdError::Failed {
            command: what.to_owned(),
            status: status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&stderr), STDERR_TAIL),
            stdout_head: String::from_utf8_lossy(&stdout[..stdout.len().min(256)]).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// Where `tool` is installed: on `PATH`, or in the system directories a service's short `PATH`
/// may leave out.
pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// The last `max` bytes of `text`, trimmed, on a character boundary.
fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_stdout_and_names_failures() {
        let out = run("sh", &["-c", "echo hello"], None, Duration::from_secs(5)).unwrap();
        assert_eq!(out, "hello\n");
        let err = run(
            "sh",
            &["-c", "echo oops >&2; exit 3"],
            None,
            Duration::from_secs(5),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`sh -c echo oops >&2; exit 3` failed"),
            "{err}"
        );
        assert!(err.contains("oops"), "{err}");
        let err = run("no-such-tool-here", &[], None, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, CmdError::NotStarted { .. }), "{err}");
    }

    #[test]
    fn output_is_bounded_on_both_pipes() {
        // Ten megabytes on stderr: drained, only the end kept.
        let err = run(
            "sh",
            &[
                "-c",
                "head -c 10000000 /dev/zero | tr '\\0' x >&2; echo last-words >&2; exit 1",
            ],
            None,
            Duration::from_secs(20),
        )
        .unwrap_err();
        let CmdError::Failed { stderr, .. } = err else {
            panic!("{err}")
        };
        assert!(stderr.ends_with("last-words"), "{stderr:.100}");
        assert!(stderr.len() <= STDERR_TAIL + 3, "{}", stderr.len());
        // Endless stdout: killed once past the bound.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "yes quarters"]);
        let err = run_bounded(cmd, "yes", Duration::from_secs(20), 1 << 16).unwrap_err();
        assert!(
            matches!(err, CmdError::TooMuchOutput { limit: 65536, .. }),
            "{err}"
        );
    }

    #[test]
    fn kills_the_whole_group_after_the_limit() {
        let started = std::time::Instant::now();
        let err = run(
            "sh",
            &["-c", "sleep 30 & sleep 30; wait"],
            None,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, CmdError::TimedOut { .. }), "{err}");
        // The pipes close only once the background sleep is dead too.
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

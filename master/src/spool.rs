//! The spool directory through which `quartersctl` talks to the master: a request is a file
//! dropped into `requests/`, the answer a file in `replies/`. Whoever may write the directory
//! may command the master; there is no other authorization.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use quarters_common::api::v1::ctl::{Answer, Command, Reply, Request};
use quarters_common::files::is_plain_name;
use tokio_util::sync::CancellationToken;

use crate::node::Master;

/// Largest request file read.
const MAX_REQUEST: u64 = 64 * 1024;
/// Largest reply read (a `why` or `status` of a large farm is long).
const MAX_REPLY: u64 = 64 << 20;
/// How often the spool is read even without a file event.
const RESCAN: Duration = Duration::from_secs(1);

/// The spool of a master whose state directory is `state_dir`.
pub fn spool_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("spool")
}

/// Creates the spool with mode 0770, so that a group of operators can use it.
pub fn prepare(spool: &Path) -> io::Result<()> {
    for dir in [
        spool.to_owned(),
        spool.join("requests"),
        spool.join("replies"),
        spool.join("rejected"),
    ] {
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770))?;
    }
    Ok(())
}

/// Answers requests until `cancel` fires.
pub async fn run(master: Arc<Master>, spool: PathBuf, cancel: CancellationToken) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let _watcher = quarters_parsers::watch::watch(&[spool.join("requests")], tx)
        .map_err(|e| tracing::warn!("cannot watch the spool ({e}); reading it every second"))
        .ok();
    loop {
        let (m, s) = (master.clone(), spool.clone());
        let _ = tokio::task::spawn_blocking(move || answer_all(&m, &s)).await;
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = rx.recv() => {}
            () = tokio::time::sleep(RESCAN) => {}
        }
    }
}

fn answer_all(master: &Master, spool: &Path) {
    let Ok(entries) = std::fs::read_dir(spool.join("requests")) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .filter(|id| is_plain_name(id))
            .map(str::to_owned)
        else {
            continue;
        };
        let reply = match read_request(&path) {
            Ok(request) if request.id == id => {
                tracing::info!("quartersctl: {:?}", request.command);
                master.handle_blocking(&id, request.command)
            }
            Ok(request) => refusal(
                &id,
                &format!("request id {:?} does not match its file name", request.id),
            ),
            Err(RequestError::Malformed(e)) => refusal(&id, &e),
            Err(RequestError::NotARequest(e)) => {
                // Not something quartersctl writes: kept aside, out of the way, with the
                // reason, for whoever put it there to find.
                tracing::warn!("spool: {} moved aside: {e}", path.display());
                let aside = spool.join("rejected").join(format!("{id}.json"));
                if let Err(moved) = std::fs::rename(&path, &aside) {
                    tracing::error!("moving {} aside: {moved}", path.display());
                }
                refusal(&id, &e)
            }
        };
        if let Err(e) = write_reply(spool, &reply) {
            tracing::error!("writing the reply to {id}: {e}");
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// Why a request file was not read.
#[derive(Debug)]
enum RequestError {
    /// A regular file that is not a request: answered with the reason.
    Malformed(String),
    /// Not a regular file, too large or unreadable: moved aside and answered.
    NotARequest(String),
}

fn refusal(id: &str, text: &str) -> Reply {
    Reply {
        id: id.to_owned(),
        answer: Answer::Refused {
            reason: text.to_owned(),
        },
    }
}

fn read_request(path: &Path) -> Result<Request, RequestError> {
    let bytes = read_regular(path, MAX_REQUEST).map_err(RequestError::NotARequest)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RequestError::Malformed(format!("malformed request: {e}")))
}

/// Reads `path` only if it is a regular file of at most `max` bytes: opened without
/// following a symlink and without blocking (a FIFO would otherwise hang the reader), checked
/// on the open descriptor, read through the limit.
fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => "a symbolic link, not a request file".to_owned(),
            _ => format!("cannot be opened: {e}"),
        })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("over the limit of {max} bytes"));
    }
    Ok(bytes)
}

fn write_reply(spool: &Path, reply: &Reply) -> io::Result<()> {
    let dir = spool.join("replies");
    let bytes = serde_json::to_vec(reply).map_err(io::Error::other)?;
    quarters_common::fsutil::write_file(
        &dir.join(format!("{}.json", reply.id)),
        &bytes,
        0o660,
        true,
    )
}

/// Sends `command` to the master through `spool` and waits up to `timeout` for its reply.
pub fn submit(spool: &Path, command: Command, timeout: Duration) -> anyhow::Result<Reply> {
    let requests = spool.join("requests");
    if !requests.is_dir() {
        bail!(
            "{} is not a master's spool (no requests/ in it); is the master running, and is this its state directory?",
            spool.display()
        );
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("{nanos}-{}", std::process::id());
    let request = Request {
        id: id.clone(),
        command,
    };
    let bytes = serde_json::to_vec(&request)?;
    let path = requests.join(format!("{id}.json"));
    quarters_common::fsutil::write_file(&path, &bytes, 0o660, true)
        .with_context(|| format!("writing {} (may you write to the spool?)", path.display()))?;
    let reply_path = spool.join("replies").join(format!("{id}.json"));
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Ok(bytes) = read_regular(&reply_path, MAX_REPLY) {
            let reply: Reply = serde_json::from_slice(&bytes)
                .with_context(|| format!("reading the reply {}", reply_path.display()))?;
            let _ = std::fs::remove_file(&reply_path);
            return Ok(reply);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&path);
    bail!(
        "the master did not answer within {timeout:?}; is it running? (spool {})",
        spool.display()
    )
}

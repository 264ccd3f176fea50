//! The spool directory through which `quartersctl` talks to the master: a request is a file
//! dropped into `requests/`, the answer a file in `replies/`. Whoever may write the directory
//! may command the master; there is no other authorization.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use quarters_common::api::v1::ctl::{Command, Reply, Request};
use quarters_common::files::is_plain_name;
use tokio_util::sync::CancellationToken;

use crate::node::Master;

/// Largest request file read.
const MAX_REQUEST: u64 = 64 * 1024;
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
                master.handle(&id, &request.command)
            }
            Ok(request) => refusal(
                &id,
                &format!("request id {:?} does not match its file name", request.id),
            ),
            Err(e) => refusal(&id, &e),
        };
        if let Err(e) = write_reply(spool, &reply) {
            tracing::error!("writing the reply to {id}: {e}");
        }
        let _ = std::fs::remove_file(&path);
    }
}

fn refusal(id: &str, text: &str) -> Reply {
    Reply {
        id: id.to_owned(),
        ok: false,
        text: format!("{text}\n"),
    }
}

fn read_request(path: &Path) -> Result<Request, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_REQUEST {
        return Err(format!(
            "request is {} bytes, over the limit of {MAX_REQUEST}",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("malformed request: {e}"))
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
        if let Ok(bytes) = std::fs::read(&reply_path) {
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

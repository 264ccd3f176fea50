//! Watching a local source with notify, so that a commit is picked up at once rather than at
//! the next poll.

use std::path::PathBuf;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Keeps a watch alive; dropping it stops watching.
pub struct SourceWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for SourceWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceWatcher")
    }
}

/// Watches `paths` recursively and sends on `changed` whenever something under them changes.
/// The channel should hold one message: a burst of file events then coalesces into one poll.
pub fn watch(paths: &[PathBuf], changed: mpsc::Sender<()>) -> notify::Result<SourceWatcher> {
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
            Ok(_) => {
                let _ = changed.try_send(());
            }
            Err(e) => tracing::warn!("source watcher: {e}"),
        })?;
    for path in paths {
        watcher.watch(path, RecursiveMode::Recursive)?;
    }
    Ok(SourceWatcher { _watcher: watcher })
}

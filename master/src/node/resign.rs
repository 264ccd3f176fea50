//! Keeping everything in the repositories signed by the signer's current key: after a key
//! rotation, and for what was accepted before the farm signed at all.
//!
//! The signer's key is watched from outside the core (`lib.rs`); when it is first seen, and
//! whenever it changes, the core lists the package files whose `%PGPSIG%` another key (or no
//! key) made, and a blocking task has each signed again: the signature goes into the pool at
//! once (any farm signature over the same bytes is as good as another), and back to the core
//! in batches, which sets `%PGPSIG%` in SQLite and has the databases written again, signed by
//! the new key as every rewrite is.

use std::collections::BTreeSet;

use crate::signing::{Fingerprint, Signature};

use super::core::{Core, Event};

/// Files signed again per event: a batch is one SQLite transaction and one rewrite.
const BATCH: usize = 64;

/// Signatures made again, by file name.
#[derive(Debug)]
pub(crate) struct Resigned {
    pub(crate) signed: Vec<(String, Signature)>,
    /// The task's last batch.
    pub(crate) finished: bool,
}

impl Core {
    /// The signer signs with `key` now.
    pub(super) fn signing_key(&mut self, key: Fingerprint) {
        if self.resign.key.as_ref() == Some(&key) {
            return;
        }
        tracing::info!(fingerprint = %key, "the signer's key; packages signed by another are signed again");
        self.resign.key = Some(key);
        self.start_resign();
    }

    /// Entries with these `desc`s entered a repository: any signed by another key than the
    /// current one (a pull signed just before a rotation) is signed again.
    pub(super) fn signed_with<'a>(&mut self, descs: impl IntoIterator<Item = &'a str>) {
        let Some(key) = &self.resign.key else {
            return;
        };
        if descs
            .into_iter()
            .any(|d| signed_by(d).as_ref() != Some(key))
        {
            self.start_resign();
        }
    }

    /// Starts signing again every file whose signature is not by the current key, or is
    /// missing from the pool, unless a run is under way (it starts again when that one
    /// finishes).
    fn start_resign(&mut self) {
        let Some(key) = self.resign.key.clone() else {
            return;
        };
        if self.resign.running {
            self.resign.again = true;
            return;
        }
        let Some(signer) = self.repos.signer().cloned() else {
            return;
        };
        let entries = match self.db.repo_entries() {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!("reading the repositories to sign them again: {e}");
                return;
            }
        };
        let pool = self.repos.pool();
        let stale: BTreeSet<String> = entries
            .iter()
            .filter(|e| {
                signed_by(&e.desc).as_ref() != Some(&key)
                    || !pool.join(format!("{}.sig", e.filename)).is_file()
            })
            .map(|e| e.filename.clone())
            .collect();
        if stale.is_empty() {
            return;
        }
        let Some(events) = self.events.upgrade() else {
            return;
        };
        tracing::info!("signing {} package file(s) again with {key}", stale.len());
        self.resign.running = true;
        self.runtime.spawn_blocking(move || {
            let mut batch = Vec::new();
            let files: Vec<String> = stale.into_iter().collect();
            for (i, file) in files.iter().enumerate() {
                let path = pool.join(file);
                match signer.sign_file(&path) {
                    Ok(signature) => {
                        let sig_path = pool.join(format!("{file}.sig"));
                        match quarters_common::fsutil::write_file(
                            &sig_path,
                            signature.as_bytes(),
                            0o644,
                            true,
                        ) {
                            Ok(()) => batch.push((file.clone(), signature)),
                            Err(e) => tracing::error!("{}: {e}", sig_path.display()),
                        }
                    }
                    Err(e) => tracing::error!("signing {file} again: {e}"),
                }
                let finished = i + 1 == files.len();
                if batch.len() == BATCH || finished {
                    let signed = std::mem::take(&mut batch);
                    let event = Event::Resigned(Resigned { signed, finished });
                    // Only a stopping master drops this; the next start signs what is left.
                    if events.blocking_send(event).is_err() {
                        return;
                    }
                }
            }
        });
    }

    /// A batch of signatures made again: into SQLite, and the databases written again.
    pub(super) fn resigned(&mut self, resigned: Resigned) {
        let signed: Vec<(String, String)> = resigned
            .signed
            .into_iter()
            .map(|(file, signature)| (file, signature.to_base64()))
            .collect();
        match self.db.set_pgpsigs(&signed) {
            Ok(changed) => self.rewrite_databases(changed),
            Err(e) => tracing::error!("recording signatures made again: {e}"),
        }
        if resigned.finished {
            self.resign.running = false;
            tracing::info!("the package files listed are signed by the signer's key");
            if std::mem::take(&mut self.resign.again) {
                self.start_resign();
            }
        }
    }
}

/// Where a run of signing again stands.
#[derive(Debug, Default)]
pub(super) struct ResignState {
    /// The key the signer signs with, once seen.
    key: Option<Fingerprint>,
    running: bool,
    /// The key changed while a run was under way.
    again: bool,
}

/// The key a `desc`'s `%PGPSIG%` names.
fn signed_by(desc: &str) -> Option<Fingerprint> {
    crate::repo::package::desc_field(desc, "PGPSIG")
        .and_then(Signature::from_base64)
        .and_then(|s| s.issuer())
}

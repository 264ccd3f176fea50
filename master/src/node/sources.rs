//! Source tasks: polling each scanner (at an interval, and at once when its watcher fires), and
//! making the source tarballs that the ready list points builders to.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quarters_parsers::Scanner;
use quarters_parsers::source::SourceError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Master, Model, Tarball, TarballKey};

/// A request for the tarball of one package at one content id.
#[derive(Debug)]
pub struct TarballRequest {
    pub path: String,
    pub content_id: String,
    /// The file to write, under the master's `sources/NAME/` directory.
    pub filename: String,
}

/// Tarballs asked for at once: the rest are asked for when these are made.
const TARBALLS_AT_ONCE: usize = 64;

/// How long a burst of file events is left to settle before the source is polled.
const SETTLE: Duration = Duration::from_millis(200);

impl Master {
    /// The directory of a source's tarballs.
    pub fn tarball_dir(&self, source: &str) -> PathBuf {
        self.config.state_dir.join("sources").join(source)
    }

    /// Asks the source tasks for the tarballs that are missing: first those of ready packages,
    /// then those of waiting ones, highest priority first. Making them ahead of readiness keeps
    /// tarball-making out of the path from a dependency's acceptance to the next build's start.
    pub(super) fn request_tarballs(&self, model: &mut Model) {
        // Waiting packages are looked at only while some of them lack a tarball, and only when
        // the source tasks have nothing left to do: a plan is made after every event, and going
        // through thousands of waiting packages each time would cost more than the plan.
        let mut waiting: Vec<usize> = Vec::new();
        if !model.tarballs_ahead_done && model.requested.is_empty() {
            waiting = (0..model.plan.units.len())
                .filter(|&i| model.plan.units[i].state == crate::plan::State::Waiting)
                .collect();
            waiting.sort_by_key(|&i| std::cmp::Reverse(model.plan.units[i].priority));
        }
        let looked_ahead = !waiting.is_empty();
        let wanted: Vec<(TarballKey, String)> = model
            .plan
            .ready
            .iter()
            .chain(&waiting)
            .map(|&i| &model.plan.units[i].spec)
            .filter_map(|spec| {
                let key = model.tarball_key(spec)?;
                let filename = tarball_filename(spec, &key.2);
                Some((key, filename))
            })
            .filter(|(key, _)| !model.tarballs.contains_key(key) && !model.requested.contains(key))
            .take(TARBALLS_AT_ONCE)
            .collect();
        if looked_ahead && wanted.is_empty() {
            model.tarballs_ahead_done = true;
        }
        for ((source, path, content_id), filename) in wanted {
            let request = TarballRequest {
                path: path.clone(),
                content_id: content_id.clone(),
                filename,
            };
            // A full queue is not an error: the next plan asks again for what is still missing.
            if self.tarballs[source].try_send(request).is_ok() {
                model.requested.insert((source, path, content_id));
            }
        }
    }

    /// The sha256 of the PKGBUILD the master hands out for `spec` as its sources are now:
    /// from the tarball made this run, or else from the tarball file an earlier run left.
    pub(super) fn handed_out_pkgbuild(&self, spec: &crate::plan::UnitSpec) -> Option<String> {
        let (path, made) = {
            let model = self.model();
            let key = model.tarball_key(spec)?;
            let made = model.tarballs.get(&key).map(|t| t.pkgbuild_sha256.clone());
            let file = self
                .tarball_dir(&spec.source)
                .join(tarball_filename(spec, &key.2));
            (file, made)
        };
        match made {
            Some(sha) => sha,
            None => quarters_parsers::tarball::pkgbuild_sha256_in(&path)
                .ok()
                .flatten(),
        }
    }

    fn tarball_made(&self, key: TarballKey, made: Option<Tarball>) {
        let mut model = self.model();
        model.requested.remove(&key);
        let Some(tarball) = made else { return };
        // Only a ready package's tarball changes what the master publishes; the others are
        // made ahead of time and show up when their package becomes ready.
        let (source, path, _) = &key;
        let name = &model.sources[*source].name;
        let ready = model.plan.ready.iter().any(|&i| {
            let spec = &model.plan.units[i].spec;
            &spec.source == name && &spec.path == path
        });
        model.tarballs.insert(key, tarball);
        drop(model);
        if ready {
            self.request_replan();
        }
    }

    fn source_polled(&self, index: usize, scanner: &Scanner, result: Result<bool, SourceError>) {
        let mut model = self.model();
        let model = &mut *model;
        let slot = &mut model.sources[index];
        slot.revision = scanner.revision().map(ToString::to_string);
        match result {
            Ok(changed) => {
                slot.error = None;
                if changed || !slot.scanned {
                    slot.packages = scanner.packages().clone();
                    model.tarballs_ahead_done = false;
                }
                slot.scanned = true;
            }
            Err(e) => {
                tracing::warn!(source = %slot.name, "poll failed: {e}");
                slot.error = Some(e.to_string());
            }
        }
        self.request_replan();
    }
}

/// Runs one source until `cancel` fires.
pub async fn run_source(
    master: Arc<Master>,
    index: usize,
    scanner: Scanner,
    mut requests: mpsc::Receiver<TarballRequest>,
    cancel: CancellationToken,
) {
    let (changed_tx, mut changed) = mpsc::channel(1);
    let _watcher = match scanner.source().watch_paths() {
        paths if paths.is_empty() => None,
        paths => match quarters_parsers::watch::watch(&paths, changed_tx) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    source = scanner.name(),
                    "cannot watch {paths:?}: {e}; polling only"
                );
                None
            }
        },
    };
    let mut scanner = scanner.with_progress(progress_observer(&master, index));
    let interval = master.config.poll_interval;
    let mut poll_now = true;
    loop {
        if poll_now {
            let (back, result) = tokio::task::spawn_blocking(move || {
                let result = scanner.poll().map(|r| r.changed());
                (scanner, result)
            })
            .await
            .expect("scanning does not panic");
            scanner = back;
            master.source_polled(index, &scanner, result);
        }
        poll_now = tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => true,
            Some(()) = changed.recv() => {
                tokio::time::sleep(SETTLE).await;
                while changed.try_recv().is_ok() {}
                true
            }
            Some(request) = requests.recv() => {
                let dir = master.tarball_dir(scanner.name());
                let key = (index, request.path.clone(), request.content_id.clone());
                let (back, made) = tokio::task::spawn_blocking(move || {
                    let made = make_tarball(&mut scanner, &dir, &request);
                    (scanner, made)
                })
                .await
                .expect("making a tarball does not panic");
                scanner = back;
                master.tarball_made(key, made);
                false
            }
        };
    }
}

/// Logs an evaluation's progress and publishes it in the master's state, so that a cold scan
/// of a large tree is visible to whoever reads the master.
fn progress_observer(master: &Arc<Master>, index: usize) -> quarters_parsers::evaluate::Observer {
    let log = quarters_parsers::evaluate::log_observer(&master.config.sources[index].name);
    // Weak, so that a scanner outliving the master's last user does not keep it alive.
    let master = Arc::downgrade(master);
    Arc::new(move |progress: &quarters_parsers::evaluate::Progress| {
        log(progress);
        if let Some(master) = master.upgrade() {
            master.model().sources[index].evaluation = Some(progress.clone());
            master.request_republish();
        }
    })
}

fn make_tarball(
    scanner: &mut Scanner,
    dir: &std::path::Path,
    request: &TarballRequest,
) -> Option<Tarball> {
    // The package may have changed since it was asked for; the next plan asks again.
    let current = scanner.packages().get(&request.path)?;
    if current.content_id != request.content_id {
        return None;
    }
    let revision = scanner.revision()?.clone();
    let prefix = request
        .path
        .rsplit('/')
        .next()
        .unwrap_or(&request.path)
        .to_owned();
    if let Err(e) = std::fs::create_dir_all(dir) {
        tracing::error!("creating {}: {e}", dir.display());
        return None;
    }
    let out = dir.join(&request.filename);
    match scanner.tarball(&revision, &request.path, &request.content_id, &prefix, &out) {
        Ok(made) => Some(Tarball {
            filename: request.filename.clone(),
            sha256: made.sha256,
            pkgbuild_sha256: made.pkgbuild_sha256,
        }),
        Err(e) => {
            tracing::warn!(source = scanner.name(), package = %request.path, "source tarball: {e}");
            None
        }
    }
}

/// The file name of a package's source tarball: stable for one content, so that a restarted
/// master finds the tarballs it made before.
fn tarball_filename(spec: &crate::plan::UnitSpec, content_id: &str) -> String {
    let short: String = content_id.chars().take(16).collect();
    format!(
        "{}-{}-{short}.tar.gz",
        spec.pkgbase,
        spec.version.replace(':', "_")
    )
}

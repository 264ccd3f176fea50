//! Source tasks: polling each scanner (at an interval, and at once when its watcher fires), and
//! making the source tarballs that the ready list points builders to.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quarters_parsers::Scanner;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::model::{Tarball, TarballKey};
use super::{Core, Event, Master};

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

/// How far down the ready list tarballs are made and looked for. Only the list's head is
/// published (four entries per builder slot, a few dozen), and it is made of these; going
/// through all of a long list (7,000 ready at 33,000 packages) after every turn cost more
/// than the plan.
const READY_LOOKAHEAD: usize = 256;

/// How long a burst of file events is left to settle before the source is polled.
const SETTLE: Duration = Duration::from_millis(200);

/// The sha256 of the PKGBUILD the master handed out for a build, or where to find it.
#[derive(Debug)]
pub(super) enum HandedOut {
    /// From the tarball made this run (`None`: it has no PKGBUILD the master could read).
    Known(Option<String>),
    /// In the tarball file an earlier run left.
    InFile(PathBuf),
    /// The master has no tarball of the package as its sources are now.
    Unknown,
}

impl HandedOut {
    /// The sha256, reading the tarball file if need be (off the async threads: it is
    /// decompressed).
    pub(super) async fn resolve(self) -> Option<String> {
        match self {
            HandedOut::Known(sha) => sha,
            HandedOut::InFile(path) => tokio::task::spawn_blocking(move || {
                quarters_parsers::tarball::pkgbuild_sha256_in(&path)
                    .ok()
                    .flatten()
            })
            .await
            .ok()
            .flatten(),
            HandedOut::Unknown => None,
        }
    }
}

impl Core {
    /// Asks the source tasks for the tarballs that are missing: first those of ready packages,
    /// then those of waiting ones, highest priority first. Making them ahead of readiness keeps
    /// tarball-making out of the path from a dependency's acceptance to the next build's start.
    pub(super) fn request_tarballs(&mut self) {
        let model = &mut self.model;
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
            .take(READY_LOOKAHEAD)
            .chain(&waiting)
            .map(|&i| &model.plan.units[i].spec)
            .filter_map(|spec| {
                let key = model.tarball_key(spec)?;
                let missing = !model.tarballs.contains_key(&key) && !model.requested.contains(&key);
                missing.then_some((key, spec))
            })
            .take(TARBALLS_AT_ONCE)
            .map(|(key, spec)| {
                let filename = tarball_filename(spec, &key.content_id);
                (key, filename)
            })
            .collect();
        if looked_ahead && wanted.is_empty() {
            model.tarballs_ahead_done = true;
        }
        for (key, filename) in wanted {
            let request = TarballRequest {
                path: key.path.clone(),
                content_id: key.content_id.clone(),
                filename,
            };
            // A full queue is not an error: the next plan asks again for what is still missing.
            if self.tarballs[key.source].try_send(request).is_ok() {
                model.requested.insert(key);
            }
        }
    }

    /// The sha256 of the PKGBUILD the master hands out for `spec` as its sources are now:
    /// from the tarball made this run, or else from the tarball file an earlier run left.
    pub(super) fn handed_out_pkgbuild(&self, spec: &crate::plan::UnitSpec) -> HandedOut {
        let Some(key) = self.model.tarball_key(spec) else {
            return HandedOut::Unknown;
        };
        match self.model.tarballs.get(&key) {
            Some(t) => HandedOut::Known(t.pkgbuild_sha256.clone()),
            None => HandedOut::InFile(
                super::tarball_dir(&self.config, &spec.source)
                    .join(tarball_filename(spec, &key.content_id)),
            ),
        }
    }

    pub(super) fn tarball_made(&mut self, key: TarballKey, made: Option<Tarball>) {
        let model = &mut self.model;
        model.requested.remove(&key);
        let Some(tarball) = made else { return };
        // Only a tarball near the ready list's head changes what the master publishes; the
        // others are made ahead of time and show up when their package gets there.
        let name = &model.sources[key.source].name;
        let ready = model.plan.ready.iter().take(READY_LOOKAHEAD).any(|&i| {
            let spec = &model.plan.units[i].spec;
            &spec.source == name && spec.path == key.path
        });
        model.tarballs.insert(key, tarball);
        if ready {
            self.request_replan();
        }
    }

    /// A poll's result: `packages` is set when they changed (or at the first poll).
    pub(super) fn source_polled(
        &mut self,
        index: usize,
        revision: Option<String>,
        result: Result<
            Option<std::collections::BTreeMap<String, quarters_parsers::scan::Scanned>>,
            String,
        >,
    ) {
        let slot = &mut self.model.sources[index];
        slot.revision = revision;
        match result {
            Ok(packages) => {
                slot.error = None;
                slot.scanned = true;
                if let Some(packages) = packages {
                    slot.packages = packages;
                    self.model.tarballs_ahead_done = false;
                    self.sources_changed();
                }
            }
            Err(e) => {
                tracing::warn!(source = %slot.name, "poll failed: {e}");
                slot.error = Some(e);
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
    let mut first = true;
    loop {
        if poll_now {
            let (back, result) = tokio::task::spawn_blocking(move || {
                let result = scanner.poll().map(|r| r.changed());
                (scanner, result)
            })
            .await
            .expect("scanning does not panic");
            scanner = back;
            let revision = scanner.revision().map(ToString::to_string);
            let result = match result {
                Ok(changed) if changed || first => {
                    first = false;
                    Ok(Some(scanner.packages().clone()))
                }
                Ok(_) => Ok(None),
                Err(e) => Err(e.to_string()),
            };
            let _ = master
                .events()
                .send(Event::SourcePolled {
                    index,
                    revision,
                    result,
                })
                .await;
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
                let key = TarballKey {
                    source: index,
                    path: request.path.clone(),
                    content_id: request.content_id.clone(),
                };
                let (back, made) = tokio::task::spawn_blocking(move || {
                    let made = make_tarball(&mut scanner, &dir, &request);
                    (scanner, made)
                })
                .await
                .expect("making a tarball does not panic");
                scanner = back;
                let _ = master.events().send(Event::TarballMade { key, made }).await;
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
            // Evaluations run on blocking threads, where waiting for the core is allowed.
            let _ = master.events().blocking_send(Event::Evaluation {
                index,
                progress: progress.clone(),
            });
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

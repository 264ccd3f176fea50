//! The Quarters master: scans package sources, plans what to build, publishes the ready list,
//! follows the builders, pulls and verifies their builds into the build repository, and
//! promotes packages into the live repository.
//!
//! This crate is only the master: the binary `quarters-master` is thin, and everything it does
//! is here. `quartersctl` (its local farm, demo and simulator) is the crate `quarters-ctl` in
//! `master/ctl`, which uses this library from outside (the spool, the config and database
//! types, the signer's daemon); nothing here knows of it.

pub mod buildroot;
pub mod config;
pub mod db;
pub mod history;
pub mod node;
pub mod plan;
pub mod pull;
pub mod quarantine;
pub mod repo;
pub mod scan;
pub mod server;
pub mod signing;
pub mod spool;
pub mod store;
pub mod verdict;
pub mod verify;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use quarters_common::api::v1::{MasterState, Role};
use quarters_common::client::{ClientLimits, PeerClient};
use quarters_common::serve::serve_node;
use quarters_common::state::StatePublisher;
use std::sync::atomic::AtomicBool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::MasterConfig;
use crate::db::Db;
use crate::node::{Core, CoreParts, Event, Master};
use crate::repo::Repos;

/// How often builds whose pull failed are tried again, and lapsed claims noticed.
const TICK: Duration = Duration::from_secs(2);

/// Runs the master on `listener` until `shutdown` completes.
pub async fn run(
    config: MasterConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let state_dir = config.state_dir.clone();
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    // Pulls a crash interrupted left their halves here; nothing in it was ever accepted.
    let _ = std::fs::remove_dir_all(state_dir.join("staging"));
    let db_path = state_dir.join("master.sqlite");
    let db = Db::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?;
    let signer = match config.signer.clone() {
        // Asked now, so that a signer that is down or refuses the master stops the start with
        // its reason, not the first acceptance.
        Some(socket) => {
            let signer =
                tokio::task::spawn_blocking(move || crate::signing::Signer::connect(socket))
                    .await
                    .context("asking the signer")?
                    .context("the [signing] section names a signer that does not answer")?;
            tracing::info!(socket = %signer.socket().display(), fingerprint = %signer.key().fingerprint, "signing with the farm key");
            Some(signer)
        }
        None => {
            tracing::warn!(
                "no [signing] section: packages and databases are published unsigned, and pacman must be told SigLevel = Never"
            );
            None
        }
    };
    let repos =
        Repos::new(&state_dir, &config.repo_name, signer).context("creating the package pool")?;
    // Whatever a crash interrupted, the repository files now match what SQLite committed.
    repos
        .rewrite_all(
            &config.arch,
            &db.repo_entries().context("reading the repositories")?,
        )
        .context("writing the repository databases")?;
    let scanners = scan::scanners(&config)?;
    let builders: Vec<PeerClient> = config
        .builders
        .iter()
        .map(|b| {
            PeerClient::new(
                &config.identity.trust,
                b.name.clone(),
                b.url.clone(),
                ClientLimits::default(),
            )
        })
        .collect();
    let mut tarball_txs = Vec::new();
    let mut tarball_rxs = Vec::new();
    for _ in &scanners {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tarball_txs.push(tx);
        tarball_rxs.push(rx);
    }
    let sources = scanners
        .iter()
        .map(|s| (s.name().to_owned(), s.source().kind().to_owned()))
        .collect();
    let config = Arc::new(config);
    let repos = Arc::new(repos);
    let publisher = StatePublisher::new(
        config.name.clone(),
        Role::Master,
        &MasterState::default(),
        0,
    );
    let stopping = Arc::new(AtomicBool::new(false));
    let (events_tx, events_rx) = tokio::sync::mpsc::channel(node::EVENT_QUEUE);
    let core = Core::new(CoreParts {
        config: config.clone(),
        db,
        repos: repos.clone(),
        publisher: publisher.clone(),
        builders: builders.clone(),
        sources,
        tarballs: tarball_txs,
        events: &events_tx,
        runtime: tokio::runtime::Handle::current(),
        stopping: stopping.clone(),
    });
    // The core plans and writes files: it runs on a thread of its own, not on the async
    // workers that serve the HTTPS port.
    let core = tokio::task::spawn_blocking(move || core.run(events_rx));
    let master = Master::new(config.clone(), repos, publisher, events_tx, stopping);

    let cancel = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (scanner, rx)) in scanners.into_iter().zip(tarball_rxs).enumerate() {
        tasks.spawn(node::run_source(
            master.clone(),
            index,
            scanner,
            rx,
            cancel.clone(),
        ));
    }
    for (index, client) in builders.into_iter().enumerate() {
        tasks.spawn(node::run_follower(
            master.clone(),
            index,
            client,
            cancel.clone(),
        ));
    }
    tasks.spawn(tick(master.clone(), cancel.clone()));
    if let Some(signer) = master.repos.signer().cloned() {
        tasks.spawn(watch_signing_key(master.clone(), signer, cancel.clone()));
    }
    let spool = spool::spool_dir(&state_dir);
    spool::prepare(&spool).with_context(|| format!("creating the spool {}", spool.display()))?;
    tasks.spawn(spool::run(master.clone(), spool, cancel.clone()));

    let app = server::app(&master);
    serve_node(
        listener,
        &config.identity,
        app,
        master.publisher(),
        &cancel,
        shutdown,
    )
    .await
    .context("serving HTTPS")?;
    // Packages being read stop at once rather than hold the runtime's shutdown.
    master.stop_reading();
    tasks.join_all().await;
    let _ = master.events().send(Event::Stop).await;
    core.await.context("the master's core panicked")?;
    Ok(())
}

/// Tells the core that time passed, now and then: claims lapse with time alone (a dead builder
/// renews nothing), and pulls that were postponed are tried again.
/// How often the signer is asked which key it signs with.
const KEY_CHECK: Duration = Duration::from_secs(5);

/// Tells the core the signer's key at start-up and whenever it changes (a rotation), so that
/// what was signed by another key is signed again. Asked from here, not from the core: a
/// signer that hangs holds up this task, never the core.
async fn watch_signing_key(
    master: Arc<Master>,
    signer: crate::signing::Signer,
    cancel: CancellationToken,
) {
    let mut last = None;
    let mut every = tokio::time::interval(KEY_CHECK);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = every.tick() => {}
        }
        let asked = signer.clone();
        let key = match tokio::task::spawn_blocking(move || asked.current_key()).await {
            Ok(Ok(key)) => key.fingerprint,
            Ok(Err(e)) => {
                tracing::warn!("asking the signer for its key: {e}");
                continue;
            }
            Err(_) => continue,
        };
        if last.as_ref() != Some(&key) {
            last = Some(key.clone());
            if master.events().send(Event::SigningKey(key)).await.is_err() {
                return;
            }
        }
    }
}

async fn tick(master: Arc<Master>, cancel: CancellationToken) {
    let mut every = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = every.tick() => {
                if master.events().send(Event::Tick).await.is_err() {
                    return;
                }
            }
        }
    }
}

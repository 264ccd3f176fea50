//! The running master: one task that owns its model of the farm, and the tasks that feed it.
//!
//! * one task per source polls its scanner (and its file watcher) and makes source tarballs;
//! * one follower per builder long-polls its state and checks it;
//! * pulls of finished builds run in tasks of their own;
//! * the core ([`core::Core`]) owns everything else, takes what those tasks report as
//!   [`Event`]s from one channel, and publishes the master's state.
//!
//! Nothing is shared under a lock: a task that needs the model asks the core with an event,
//! and whoever needs the master's state reads what the core published. The core's state is
//! therefore always a function of the events it has applied, in order.

mod builders;
mod core;
mod ctl;
mod model;
mod resign;
mod sources;
mod standing;
mod verification;
mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use quarters_common::api::v1::ctl::{Answer, Command, Reply};
use quarters_common::state::StatePublisher;
use tokio::sync::{mpsc, oneshot};

use crate::config::MasterConfig;
use crate::repo::Repos;

pub use builders::run_follower;
pub(crate) use core::{Core, CoreParts, Event};
pub use sources::{TarballRequest, run_source};

/// How many events may wait for the core before their senders wait in turn.
pub const EVENT_QUEUE: usize = 4096;

/// The master as its other tasks and the HTTP server see it: where to send events, what it
/// published, and its files. The model itself is the core's alone.
#[derive(Debug)]
pub struct Master {
    pub config: Arc<MasterConfig>,
    pub repos: Arc<Repos>,
    publisher: StatePublisher,
    events: mpsc::Sender<Event>,
    /// Set when the master stops: package reads in progress give up.
    stopping: Arc<AtomicBool>,
}

impl Master {
    pub(crate) fn new(
        config: Arc<MasterConfig>,
        repos: Arc<Repos>,
        publisher: StatePublisher,
        events: mpsc::Sender<Event>,
        stopping: Arc<AtomicBool>,
    ) -> Arc<Self> {
        Arc::new(Master {
            config,
            repos,
            publisher,
            events,
            stopping,
        })
    }

    /// Makes every package read in progress give up: the master is stopping.
    pub fn stop_reading(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn publisher(&self) -> &StatePublisher {
        &self.publisher
    }

    /// Where the core's events go.
    pub(crate) fn events(&self) -> &mpsc::Sender<Event> {
        &self.events
    }

    /// The directory of a source's tarballs.
    pub fn tarball_dir(&self, source: &str) -> PathBuf {
        tarball_dir(&self.config, source)
    }

    /// Answers a question that changes nothing (`status`, `why`), for a reader over HTTPS.
    pub async fn ask(&self, question: Question) -> Answer {
        let command = match question {
            Question::Status => Command::Status,
            Question::Why { package } => Command::Why { package },
        };
        let (tx, rx) = oneshot::channel();
        let asked = self
            .events
            .send(Event::Command {
                id: "https".to_owned(),
                command,
                reply: tx,
            })
            .await;
        match asked {
            Ok(()) => match rx.await {
                Ok(reply) => reply.answer,
                Err(_) => ctl::refused("the master is stopping"),
            },
            Err(_) => ctl::refused("the master is stopping"),
        }
    }

    /// Carries out one `quartersctl` request, from a thread that may block (the spool's).
    pub fn handle_blocking(&self, id: &str, command: Command) -> Reply {
        let (tx, rx) = oneshot::channel();
        let asked = self.events.blocking_send(Event::Command {
            id: id.to_owned(),
            command,
            reply: tx,
        });
        match asked.ok().and_then(|()| rx.blocking_recv().ok()) {
            Some(reply) => reply,
            None => Reply {
                id: id.to_owned(),
                answer: ctl::refused("the master is stopping"),
            },
        }
    }
}

/// What anyone may ask the master over HTTPS: only what changes nothing. Changes go through the
/// spool, whose file permissions are the authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Question {
    Status,
    Why { package: String },
}

/// The directory of a source's tarballs.
fn tarball_dir(config: &MasterConfig, source: &str) -> PathBuf {
    config.state_dir.join("sources").join(source)
}

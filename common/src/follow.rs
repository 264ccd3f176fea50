//! Following a peer: a long-poll loop that reports every new state and every change of
//! reachability, with back-off while the peer is down.

use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::api::v1::{Envelope, Role};
use crate::client::{Fetched, PeerClient};

/// What a follower reports.
#[derive(Debug)]
pub enum PeerEvent<T> {
    /// The peer published a state the follower had not seen.
    State(Box<Envelope<T>>),
    /// The peer answered, with nothing new.
    Alive,
    /// The peer could not be read; the text says why.
    Down(String),
}

/// How a follower polls.
#[derive(Clone, Debug)]
pub struct FollowOptions {
    /// Long-poll wait per request.
    pub wait: Duration,
    /// First delay after a failure; it doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            wait: Duration::from_secs(25),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Follows `client`'s peer, which must be a `role`, until `cancel` fires, calling `on_event`
/// for every read and waiting for it to finish before the next read: a slow reader slows its
/// follower rather than queueing states.
pub async fn follow<T, F, Fut>(
    client: &PeerClient,
    role: Role,
    options: &FollowOptions,
    cancel: &CancellationToken,
    mut on_event: F,
) where
    T: DeserializeOwned,
    F: FnMut(PeerEvent<T>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut etag: Option<String> = None;
    let mut backoff = options.min_backoff;
    loop {
        let read = tokio::select! {
            () = cancel.cancelled() => return,
            read = client.state::<T>(role, etag.as_deref(), options.wait) => read,
        };
        match read {
            Ok(Fetched::New { state, etag: new }) => {
                etag = Some(new);
                backoff = options.min_backoff;
                on_event(PeerEvent::State(Box::new(state))).await;
            }
            Ok(Fetched::Unchanged) => {
                backoff = options.min_backoff;
                on_event(PeerEvent::Alive).await;
            }
            Err(e) => {
                // After a failure the next read is a full one: the peer may have restarted.
                etag = None;
                on_event(PeerEvent::Down(e.to_string())).await;
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(options.max_backoff);
            }
        }
    }
}

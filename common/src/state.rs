//! A node's published state: serialized once per change, served to every reader with
//! conditional GET and long-poll.
//!
//! Readers outnumber changes by far (every builder polls the master, every builder reads its
//! peers), so the JSON is built when the state changes, not when it is read; a read costs a
//! reference-count increment.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::v1::{API_VERSION, Envelope, HEALTH_PATH, Health, MAX_WAIT_SECS, Role, STATE_PATH};
use crate::counters::Counters;
use crate::name::NodeName;

/// One published version of a node's state.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    /// The whole envelope, as served.
    pub body: Bytes,
    etag: HeaderValue,
    /// The content alone, to tell a real change from a republication of the same state.
    content: Box<RawValue>,
}

impl Snapshot {
    pub fn etag(&self) -> &str {
        self.etag.to_str().expect("built from ASCII digits")
    }
}

/// The publishing side of a node's state. Cloning it is cheap; all clones publish the same
/// state.
#[derive(Clone, Debug)]
pub struct StatePublisher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node: NodeName,
    role: Role,
    started_at: OffsetDateTime,
    tx: watch::Sender<Arc<Snapshot>>,
    closed: CancellationToken,
    counters: Counters,
    /// The newest generation some reader has been sent whole.
    served: watch::Sender<u64>,
}

impl StatePublisher {
    /// `snapshot` as a whole answer, counted as served.
    fn full(&self, snapshot: &Snapshot) -> Response {
        self.inner.served.send_if_modified(|g| {
            std::mem::replace(g, (*g).max(snapshot.generation)) < snapshot.generation
        });
        full(snapshot)
    }
}

impl StatePublisher {
    /// Starts publishing `content` for `node`.
    ///
    /// The first generation is the current time in microseconds since the Unix epoch, or
    /// `not_below` if that is larger (a node that persists its last generation passes it here,
    /// so that its generations keep increasing even if the clock went back).
    pub fn new<T: Serialize>(node: NodeName, role: Role, content: &T, not_below: u64) -> Self {
        let started_at = OffsetDateTime::now_utc();
        let now_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let generation = now_micros.max(not_below);
        let content = to_raw(content);
        let snapshot = build_snapshot(&node, role, started_at, generation, content);
        let (tx, _) = watch::channel(Arc::new(snapshot));
        StatePublisher {
            inner: Arc::new(Inner {
                node,
                role,
                started_at,
                tx,
                closed: CancellationToken::new(),
                counters: Counters::default(),
                served: watch::Sender::new(0),
            }),
        }
    }

    /// Publishes `content` if it differs from what is published, and returns the generation now
    /// published.
    pub fn publish<T: Serialize>(&self, content: &T) -> u64 {
        let content = to_raw(content);
        let inner = &self.inner;
        inner.tx.send_if_modified(|current| {
            if current.content.get() == content.get() {
                return false;
            }
            let generation = current.generation + 1;
            *current = Arc::new(build_snapshot(
                &inner.node,
                inner.role,
                inner.started_at,
                generation,
                content,
            ));
            true
        });
        self.current().generation
    }

    /// Waits until some reader has been sent the generation published now (or a newer one),
    /// at most `within`; returns whether one was. A node about to stop uses it so that what it
    /// published last (claims withdrawn) is read before it goes.
    pub async fn wait_served(&self, within: Duration) -> bool {
        let generation = self.current().generation;
        let mut served = self.inner.served.subscribe();
        tokio::time::timeout(within, served.wait_for(|g| *g >= generation))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// What is published now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.inner.tx.borrow().clone()
    }

    /// Waits for a publication after the one a receiver last saw.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.tx.subscribe()
    }

    /// The node's counters, reported by `GET /v1/health`.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    pub fn node(&self) -> &NodeName {
        &self.inner.node
    }

    /// Ends every long-poll at once: called at shutdown, so that waiting readers get an answer
    /// instead of a dropped connection.
    pub fn close(&self) {
        self.inner.closed.cancel();
    }

    /// `GET /v1/state` and `GET /v1/health`.
    pub fn routes(&self) -> Router {
        Router::new()
            .route(STATE_PATH, get(get_state))
            .route(HEALTH_PATH, get(get_health))
            .with_state(self.clone())
    }
}

fn to_raw<T: Serialize>(content: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(content)
        .expect("state content is plain data and always serializes")
}

fn build_snapshot(
    node: &NodeName,
    role: Role,
    started_at: OffsetDateTime,
    generation: u64,
    content: Box<RawValue>,
) -> Snapshot {
    let envelope = Envelope {
        api: API_VERSION.to_owned(),
        node: node.to_string(),
        role,
        generation,
        started_at,
        content: &*content,
    };
    let body = serde_json::to_vec(&envelope).expect("an envelope always serializes");
    Snapshot {
        generation,
        body: Bytes::from(body),
        etag: HeaderValue::from_str(&format!("\"{generation}\"")).expect("digits are ASCII"),
        content,
    }
}

#[derive(Deserialize, Debug)]
struct StateQuery {
    /// Long-poll for up to this many seconds.
    wait: Option<u64>,
    /// The generation the reader has.
    after: Option<u64>,
}

/// What the reader says it already has.
struct Known<'a> {
    after: Option<u64>,
    if_none_match: Option<&'a str>,
}

impl Known<'_> {
    fn has(&self, snapshot: &Snapshot) -> bool {
        if self.after == Some(snapshot.generation) {
            return true;
        }
        self.if_none_match.is_some_and(|tags| {
            tags.split(',').map(str::trim).any(|tag| {
                let tag = tag.strip_prefix("W/").unwrap_or(tag);
                tag == "*" || tag == snapshot.etag()
            })
        })
    }
}

async fn get_state(
    State(publisher): State<StatePublisher>,
    Query(query): Query<StateQuery>,
    headers: HeaderMap,
) -> Response {
    let known = Known {
        after: query.after,
        if_none_match: headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok()),
    };
    let mut rx = publisher.subscribe();
    let snapshot = rx.borrow_and_update().clone();
    if !known.has(&snapshot) {
        return publisher.full(&snapshot);
    }
    let wait = Duration::from_secs(query.wait.unwrap_or(0).min(MAX_WAIT_SECS));
    if wait.is_zero() {
        return not_modified(&snapshot);
    }
    let closed = publisher.inner.closed.clone();
    let changed = async {
        loop {
            if rx.changed().await.is_err() {
                return None;
            }
            let snapshot = rx.borrow_and_update().clone();
            if !known.has(&snapshot) {
                return Some(snapshot);
            }
        }
    };
    tokio::select! {
        Some(snapshot) = changed => publisher.full(&snapshot),
        () = tokio::time::sleep(wait) => not_modified(&publisher.current()),
        () = closed.cancelled() => not_modified(&publisher.current()),
    }
}

fn full(snapshot: &Snapshot) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, snapshot.etag.clone()),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        snapshot.body.clone(),
    )
        .into_response()
}

fn not_modified(snapshot: &Snapshot) -> Response {
    (
        StatusCode::NOT_MODIFIED,
        [
            (header::ETAG, snapshot.etag.clone()),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
    )
        .into_response()
}

async fn get_health(State(publisher): State<StatePublisher>) -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        node: publisher.inner.node.to_string(),
        role: publisher.inner.role,
        generation: publisher.current().generation,
        counters: publisher.inner.counters.snapshot(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;
    use tower::ServiceExt;

    fn publisher() -> StatePublisher {
        StatePublisher::new(
            NodeName::new("master").unwrap(),
            Role::Master,
            &serde_json::json!({"n": 0}),
            0,
        )
    }

    async fn get(p: &StatePublisher, uri: &str, inm: Option<&str>) -> Response {
        let mut req = Request::get(uri);
        if let Some(tag) = inm {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        p.routes()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn generation_moves_only_on_real_changes() {
        let p = publisher();
        let g0 = p.current().generation;
        assert_eq!(p.publish(&serde_json::json!({"n": 0})), g0);
        assert_eq!(p.publish(&serde_json::json!({"n": 1})), g0 + 1);
        let body: serde_json::Value = serde_json::from_slice(&p.current().body).unwrap();
        assert_eq!(body["generation"], g0 + 1);
        assert_eq!(body["content"]["n"], 1);
        assert_eq!(body["api"], "v1");
    }

    #[tokio::test]
    async fn conditional_get_answers_304_while_unchanged() {
        let p = publisher();
        let etag = p.current().etag().to_owned();
        assert_eq!(get(&p, "/v1/state", None).await.status(), StatusCode::OK);
        let resp = get(&p, "/v1/state", Some(&etag)).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(resp.headers()[header::ETAG], etag.as_str());
        let g = p.current().generation;
        let resp = get(&p, &format!("/v1/state?after={g}"), None).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        p.publish(&serde_json::json!({"n": 2}));
        assert_eq!(
            get(&p, "/v1/state", Some(&etag)).await.status(),
            StatusCode::OK
        );
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_answers_on_change_or_304_at_the_end_of_the_wait() {
        let p = publisher();
        let g = p.current().generation;
        let resp = get(&p, &format!("/v1/state?wait=5&after={g}"), None).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

        let waiting = tokio::spawn({
            let p = p.clone();
            async move { get(&p, &format!("/v1/state?wait=30&after={g}"), None).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        p.publish(&serde_json::json!({"n": 3}));
        let resp = waiting.await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()[header::ETAG],
            format!("\"{}\"", g + 1).as_str()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn close_ends_long_polls() {
        let p = publisher();
        let g = p.current().generation;
        let waiting = tokio::spawn({
            let p = p.clone();
            async move { get(&p, &format!("/v1/state?wait=60&after={g}"), None).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        p.close();
        let resp = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("closing answers at once")
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn a_generation_counts_as_served_once_a_reader_got_it_whole() {
        let p = publisher();
        let g = p.current().generation;
        assert!(!p.wait_served(Duration::from_millis(20)).await);
        let etag = p.current().etag().to_owned();
        // A 304 sends nothing new.
        assert_eq!(
            get(&p, "/v1/state", Some(&etag)).await.status(),
            StatusCode::NOT_MODIFIED
        );
        assert!(!p.wait_served(Duration::from_millis(20)).await);
        assert_eq!(get(&p, "/v1/state", None).await.status(), StatusCode::OK);
        assert!(p.wait_served(Duration::from_millis(20)).await);
        // A newer generation waits for its own reader, and a long-poll answers it.
        p.publish(&serde_json::json!({"n": 9}));
        assert!(!p.wait_served(Duration::from_millis(20)).await);
        let resp = get(&p, &format!("/v1/state?after={g}&wait=5"), None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(p.wait_served(Duration::from_millis(20)).await);
    }

    #[tokio::test]
    async fn health_names_the_node() {
        let p = publisher();
        let resp = get(&p, "/v1/health", None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let health: Health = serde_json::from_slice(&body).unwrap();
        assert_eq!(health.node, "master");
        assert_eq!(health.status, "ok");
    }
}

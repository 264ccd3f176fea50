//! Counters a node keeps about its own work (requests served, claims tried, peers read), so that
//! operators and benchmarks can see what the farm costs without reading logs. `GET /v1/health`
//! reports them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Requests a node has served, counted by [`count_requests`].
pub const REQUESTS: &str = "requests";
/// A builder's attempts at claiming a package, and those it won (each won claim starts a build).
pub const CLAIM_ATTEMPTS: &str = "claim-attempts";
pub const CLAIMS_WON: &str = "claims-won";
/// A builder's reads of its peers during claim reviews, and those answered 304 (unchanged).
pub const PEER_READS: &str = "peer-reads";
pub const PEER_READS_UNCHANGED: &str = "peer-reads-unchanged";

/// A set of named, monotonically increasing counters. Clones share the counts.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    // A mutex rather than one atomic per counter: the set of names is open, and the busiest
    // counter (requests) moves at most a few thousand times a second.
    counts: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl Counters {
    pub fn add(&self, name: &'static str, n: u64) {
        *self
            .counts
            .lock()
            .expect("no code panics while holding the counters")
            .entry(name)
            .or_default() += n;
    }

    pub fn get(&self, name: &str) -> u64 {
        self.counts
            .lock()
            .expect("no code panics while holding the counters")
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// Every counter, for the wire.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .expect("no code panics while holding the counters")
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect()
    }
}

/// Counts every request `router` serves under [`REQUESTS`].
pub fn count_requests(router: axum::Router, counters: Counters) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(counters, count))
}

async fn count(State(counters): State<Counters>, request: Request, next: Next) -> Response {
    counters.add(REQUESTS, 1);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn every_request_counts_once_whatever_its_answer() {
        let counters = Counters::default();
        let app = count_requests(
            axum::Router::new().route("/here", get(|| async { "ok" })),
            counters.clone(),
        );
        for uri in ["/here", "/missing", "/here"] {
            let request = http::Request::get(uri).body(Body::empty()).unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        assert_eq!(counters.get(REQUESTS), 3);
        counters.add("claims", 2);
        let all = counters.snapshot();
        assert_eq!(all["requests"], 3);
        assert_eq!(all["claims"], 2);
    }
}

//! Keeping one client from tying up a node's connections: a cap on connections per address,
//! and an idle timeout that counts requests in flight rather than bytes, so that a long-poll
//! or a slow download is never idle and a connection that asks for nothing always is.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::Frame;
use tokio::time::Instant;

/// Connections open per client address.
#[derive(Debug)]
pub struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(PerAddress {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, or `None` if it holds its share already.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut open = self.open.lock().expect("no code panics holding the table");
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }
}

/// One connection's place in its address's share; given back when dropped.
#[derive(Debug)]
pub struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .expect("no code panics holding the table");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// What one connection is doing: requests in flight (until their response bodies are sent)
/// and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        })
    }

    /// Marks a request in flight until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        RequestGuard(self.clone())
    }

    /// Completes once the connection has had no request in flight for `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let since = self.last.lock().expect("no code panics here").elapsed();
            let busy = self.in_flight.load(Ordering::SeqCst) > 0;
            if !busy && since >= timeout {
                return;
            }
            // While busy, look again every quarter of the timeout, so that a connection is
            // closed at most a quarter of it late after its last request ends.
            let wait = if busy { timeout / 4 } else { timeout - since };
            tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
        }
    }
}

/// A request in flight.
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self.0.last.lock().expect("no code panics here") = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request in flight until it is sent or dropped.
pub struct GuardedBody {
    inner: Body,
    _guard: RequestGuard,
}

impl GuardedBody {
    pub fn wrap(inner: Body, guard: RequestGuard) -> Body {
        Body::new(GuardedBody {
            inner,
            _guard: guard,
        })
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_share_and_no_more() {
        let table = PerAddress::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let one = table.admit(a).unwrap();
        let _two = table.admit(a).unwrap();
        assert!(table.admit(a).is_none());
        assert!(table.admit(b).is_some(), "another address is not held back");
        drop(one);
        assert!(
            table.admit(a).is_some(),
            "a closed connection gives its slot back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_without_requests() {
        let activity = Activity::new();
        let guard = activity.start();
        let idle = activity.idle(Duration::from_secs(30));
        tokio::pin!(idle);
        // A long request is never idle.
        assert!(
            tokio::time::timeout(Duration::from_secs(120), &mut idle)
                .await
                .is_err()
        );
        drop(guard);
        let started = tokio::time::Instant::now();
        idle.await;
        assert!(started.elapsed() >= Duration::from_secs(30));
    }
}

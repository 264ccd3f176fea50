//! The HTTPS server loop every node runs: TLS only, bounded, and stoppable.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::conn_guard::{Activity, GuardedBody, PerAddress};

/// Limits that keep one slow or hostile client from tying up a node.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time a client gets to finish its TLS handshake.
    pub handshake_timeout: Duration,
    /// Time an HTTP/1 client gets to send its request headers.
    pub header_timeout: Duration,
    /// Connections served at once from one address: more are closed at once, so that one
    /// client cannot take the slots of all the others.
    pub max_per_address: usize,
    /// How long a connection may go without a request in flight (before its first, between
    /// two) before it is closed. A long-poll or a download in progress is not idle.
    pub idle_timeout: Duration,
    /// HTTP/2: how often an idle connection is pinged, and how long the answer may take.
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
    /// HTTP/2: requests in flight on one connection.
    pub max_streams: u32,
    /// After shutdown, how long open connections get to finish.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            max_per_address: 128,
            idle_timeout: Duration::from_secs(30),
            keep_alive_interval: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(20),
            max_streams: 64,
            grace: Duration::from_secs(5),
        }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then lets open connections
/// finish for the grace period of `limits`.
///
/// The caller binds the listener, so a test can bind `127.0.0.1:0` and learn the port first.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = PerAddress::new(limits.max_per_address);
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keep_alive_interval)
        .keep_alive_timeout(limits.keep_alive_timeout)
        .max_concurrent_streams(limits.max_streams);
    let http = Arc::new(http);
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Running out of file descriptors must not turn into a busy loop.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(address_slot) = per_address.admit(peer.ip()) else {
            tracing::debug!(%peer, "too many connections from this address; closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let http = http.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = limits.handshake_timeout;
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let _address_slot = address_slot;
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let activity = Activity::new();
            let service = {
                let activity = activity.clone();
                hyper::service::service_fn(move |request: http::Request<Incoming>| {
                    let guard = activity.start();
                    let response = app.clone().call(request);
                    async move {
                        let response = response.await?;
                        Ok::<_, std::convert::Infallible>(
                            response.map(|body| GuardedBody::wrap(body, guard)),
                        )
                    }
                })
            };
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                served = watcher.watch(conn.into_owned()) => {
                    if let Err(e) = served {
                        tracing::debug!(%peer, "connection ended with an error: {e}");
                    }
                }
                () = activity.idle(idle_timeout) => {
                    tracing::debug!(%peer, "connection idle for {idle_timeout:?}; closed");
                }
            }
        });
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.grace) => {
            tracing::warn!("connections still open after {:?}; closing them", limits.grace);
        }
    }
    Ok(())
}

/// Serves a node's `app` until `shutdown` completes; then cancels `cancel` (the node's
/// background tasks) and ends the long-polls of `state`, so that readers get a last answer.
pub async fn serve_node(
    listener: TcpListener,
    identity: &crate::tls::Identity,
    app: Router,
    state: &crate::state::StatePublisher,
    cancel: &tokio_util::sync::CancellationToken,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let stop = {
        let cancel = cancel.clone();
        let state = state.clone();
        async move {
            shutdown.await;
            cancel.cancel();
            state.close();
        }
    };
    tracing::info!(node = %identity.name, "serving https://{}/v1/state", listener.local_addr()?);
    let app = crate::counters::count_requests(app, state.counters().clone());
    let served = serve(
        listener,
        identity.server_config(),
        app,
        Limits::default(),
        stop,
    )
    .await;
    cancel.cancel();
    served
}

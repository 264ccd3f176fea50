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

/// Limits that keep one slow or hostile client from tying up a node.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time a client gets to finish its TLS handshake.
    pub handshake_timeout: Duration,
    /// Time an HTTP/1 client gets to send its request headers.
    pub header_timeout: Duration,
    /// After shutdown, how long open connections get to finish.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
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
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
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
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let http = http.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = limits.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
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
            let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
                app.clone().call(request)
            });
            let conn = http.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, "connection ended with an error: {e}");
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

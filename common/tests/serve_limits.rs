//! The server loop against clients that hold connections and ask for nothing: a real TLS
//! server on 127.0.0.1:0 and real TLS clients.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use quarters_common::serve::{Limits, serve};
use quarters_common::tls::{FarmTrust, Identity, TlsFiles};
use quarters_common::{NodeName, pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

struct Server {
    _dir: tempfile::TempDir,
    port: u16,
    connector: TlsConnector,
    h2: TlsConnector,
}

async fn server(limits: Limits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    pki::init_ca(&ca, false).unwrap();
    let name = NodeName::new("node").unwrap();
    let certs = pki::issue_cert(&ca, &ca, &name, &["127.0.0.1".into()], false).unwrap();
    let identity = Identity::load(
        &name,
        &TlsFiles {
            ca: ca.join(pki::CA_CERT_FILE),
            cert: certs.cert,
            key: certs.key,
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().route("/", get(|| async { "hello" }));
    tokio::spawn(serve(
        listener,
        identity.server_config(),
        app,
        limits,
        std::future::pending(),
    ));
    let trust = FarmTrust::load(&ca.join(pki::CA_CERT_FILE)).unwrap();
    let mut http1 = trust.client_config(&name);
    http1.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut h2 = trust.client_config(&name);
    h2.alpn_protocols = vec![b"h2".to_vec()];
    Server {
        _dir: dir,
        port,
        connector: TlsConnector::from(Arc::new(http1)),
        h2: TlsConnector::from(Arc::new(h2)),
    }
}

async fn connect(s: &Server, connector: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", s.port)).await?;
    let name = rustls::pki_types::ServerName::try_from("node").unwrap();
    connector.connect(name, tcp).await
}

/// Reads until the server closes the connection; fails the test if it has not after `within`.
async fn closed_within(stream: &mut TlsStream<TcpStream>, within: Duration) {
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
}

fn limits() -> Limits {
    Limits {
        max_per_address: 4,
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

#[tokio::test]
async fn one_address_gets_its_share_of_connections_and_no_more() {
    let s = server(limits()).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(&s, &s.connector).await.unwrap());
    }
    // The fifth from the same address is closed before its handshake completes.
    assert!(connect(&s, &s.connector).await.is_err());
    // Once one of them goes, there is room again.
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    connect(&s, &s.connector).await.unwrap();
}

#[tokio::test]
async fn connections_that_ask_for_nothing_are_closed() {
    let s = server(limits()).await;
    // HTTP/1.1, nothing sent after the handshake.
    let mut silent = connect(&s, &s.connector).await.unwrap();
    closed_within(&mut silent, Duration::from_secs(10)).await;

    // HTTP/1.1, one request answered, then nothing: keep-alive ends with the idle timeout.
    let mut once = connect(&s, &s.connector).await.unwrap();
    once.write_all(b"GET / HTTP/1.1\r\nHost: node\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    once.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    closed_within(&mut once, Duration::from_secs(10)).await;

    // HTTP/2: the preface and an empty SETTINGS frame, then nothing.
    let mut h2 = connect(&s, &s.h2).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    closed_within(&mut h2, Duration::from_secs(10)).await;
}

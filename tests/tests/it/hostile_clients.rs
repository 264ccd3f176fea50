//! Hostile clients of the master's machine and port: what lands in the spool directory that
//! `quartersctl` did not write.

use quarters_ctl::localfarm::free_ports;
use quarters_tests::master::{MasterProcess, farm_pki};

fn quartersctl(master: &MasterProcess, args: &[&str]) -> std::process::Output {
    quarters_tests::command("quartersctl")
        .args(args)
        .arg("--config")
        .arg(&master.config)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn fifos_symlinks_and_floods_in_the_spool_are_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    farm_pki(dir.path());
    let port = free_ports(1).unwrap()[0];
    let master = MasterProcess::start(dir.path(), port, "").await;
    let requests = master.state_dir.join("spool/requests");
    let rejected = master.state_dir.join("spool/rejected");

    // A FIFO nobody writes to would block whoever opens it for reading.
    nix::unistd::mkfifo(
        &requests.join("fifo.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    // A symlink to an endless device would be read for ever.
    std::os::unix::fs::symlink("/dev/zero", requests.join("zero.json")).unwrap();
    // A request far over the size limit.
    std::fs::write(requests.join("huge.json"), vec![b' '; 1 << 20]).unwrap();

    // The master still answers, and has moved every one of them aside.
    let out = quartersctl(&master, &["status"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        master.log_text()
    );
    for name in ["fifo.json", "zero.json", "huge.json"] {
        assert!(
            rejected.join(name).symlink_metadata().is_ok(),
            "{name} moved aside"
        );
        assert!(
            requests.join(name).symlink_metadata().is_err(),
            "{name} gone"
        );
    }
    quarters_tests::assert_contains(
        &master.log_text(),
        &[
            "fifo.json moved aside: not a regular file",
            "zero.json moved aside: a symbolic link",
            "huge.json moved aside: over the limit of 65536 bytes",
        ],
    );
}

/// Opens up to `n` TLS connections to `port` from `source` and holds them: half speak
/// HTTP/2 (the preface and an empty SETTINGS frame), half HTTP/1.1 (nothing at all).
async fn flood(
    trust: &quarters_common::tls::FarmTrust,
    source: &str,
    port: u16,
    n: usize,
) -> Vec<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use tokio::io::AsyncWriteExt;
    let name = quarters_common::NodeName::new("master").unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let mut config = trust.client_config(&name);
        let h2 = i % 2 == 0;
        config.alpn_protocols = vec![if h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let source: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
        tasks.spawn(async move {
            let attempt = async {
                let socket = tokio::net::TcpSocket::new_v4().ok()?;
                socket.bind(source).ok()?;
                let tcp = socket
                    .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
                    .await
                    .ok()?;
                let server = rustls::pki_types::ServerName::try_from("master").unwrap();
                let mut tls = connector.connect(server, tcp).await.ok()?;
                if h2 {
                    tls.write_all(
                        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
                    )
                    .await
                    .ok()?;
                }
                Some(tls)
            };
            tokio::time::timeout(std::time::Duration::from_secs(20), attempt)
                .await
                .ok()
                .flatten()
        });
    }
    let mut held = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some(stream)) = done {
            held.push(stream);
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_idle_connections_from_one_address_does_not_starve_the_others() {
    let dir = tempfile::tempdir().unwrap();
    farm_pki(dir.path());
    let port = free_ports(1).unwrap()[0];
    let master = MasterProcess::start(dir.path(), port, "").await;

    // 4,096 TLS connections from 127.0.0.2 that ask for nothing: as many as the master serves
    // at once in all.
    let trust = quarters_common::tls::FarmTrust::load(&dir.path().join("ca/ca.pem")).unwrap();
    let held = flood(&trust, "127.0.0.2", port, 4096).await;
    assert!(!held.is_empty(), "the flood connected");

    // A new client (no pooled connection) from another address reads the state while the
    // flood is held. Before connections were capped per address and closed when idle, it
    // waited for as long as the flood was held.
    let client = quarters_common::client::PeerClient::new(
        &trust,
        quarters_common::NodeName::new("master").unwrap(),
        master.url.clone(),
        quarters_common::client::ClientLimits::default(),
    );
    let started = std::time::Instant::now();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.get_bytes("/v1/state", 1 << 20),
    )
    .await;
    let took = started.elapsed();
    assert!(
        matches!(read, Ok(Ok(_))),
        "the state was not served during the flood: {read:?}\n{}",
        master.log_text()
    );
    eprintln!(
        "state read in {:.1} ms with {} flood connections open",
        took.as_secs_f64() * 1000.0,
        held.len()
    );
    drop(held);
}

//! Every node serves HTTPS only, and clients trust only the farm CA and the node name they meant.

use std::time::Duration;

use quarters_common::NodeName;
use quarters_common::api::v1::{BuilderState, MasterState, Role};
use quarters_common::client::{ClientLimits, Fetched, PeerClient};
use quarters_common::pki;
use quarters_common::tls::FarmTrust;
use quarters_tests::{assert_contains, start_farm};

#[tokio::test]
async fn a_client_with_the_farm_ca_reads_master_and_builder_state() {
    let (_dir, mut farm) = start_farm(1).await;
    let master = farm.client(&farm.master);
    let Fetched::New { state, etag } = master
        .state::<MasterState>(Role::Master, None, Duration::ZERO)
        .await
        .unwrap()
    else {
        panic!("a first read returns the state");
    };
    assert_eq!(state.api, "v1");
    assert_eq!(state.node, "master");
    assert_eq!(state.role, Role::Master);
    assert_eq!(etag, format!("\"{}\"", state.generation));
    assert_eq!(state.content.builders.len(), 1);
    assert_eq!(state.content.builders[0].name, "builder-1");

    let builder = farm.client(&farm.builders[0]);
    let Fetched::New { state, .. } = builder
        .state::<BuilderState>(Role::Builder, None, Duration::ZERO)
        .await
        .unwrap()
    else {
        panic!("a first read returns the state");
    };
    assert_eq!(state.node, "builder-1");
    assert_eq!(state.content.master.name, "master");
    assert_eq!(state.content.slots, 1);
    farm.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused() {
    let (_dir, mut farm) = start_farm(1).await;
    let other = tempfile::tempdir().unwrap();
    let other_ca = pki::init_ca(other.path(), false).unwrap();
    let trust = FarmTrust::load(&other_ca.cert).unwrap();
    let client = PeerClient::new(
        &trust,
        farm.master.name.clone(),
        farm.master.url.clone(),
        ClientLimits::default(),
    );
    let err = client
        .state::<MasterState>(Role::Master, None, Duration::ZERO)
        .await
        .unwrap_err()
        .to_string();
    assert_contains(
        &err,
        &[
            "master at https://127.0.0.1:",
            "TLS handshake refused",
            "not signed by the farm CA",
        ],
    );
    farm.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn a_certificate_for_another_node_name_is_refused() {
    let (_dir, mut farm) = start_farm(1).await;
    let trust = FarmTrust::load(&farm.ca_cert).unwrap();
    // The client means to reach builder-1 but the address is the master's.
    let client = PeerClient::new(
        &trust,
        NodeName::new("builder-1").unwrap(),
        farm.master.url.clone(),
        ClientLimits::default(),
    );
    let err = client
        .state::<BuilderState>(Role::Builder, None, Duration::ZERO)
        .await
        .unwrap_err()
        .to_string();
    assert_contains(
        &err,
        &["builder-1 at", "another node name", "\"builder-1\""],
    );
    farm.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn curl_with_the_farm_ca_reads_state_and_without_it_fails() {
    let (_dir, mut farm) = start_farm(1).await;
    let url = format!("{}v1/state", farm.master.url);
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(&farm.ca_cert)
        .arg(&url)
        .output()
        .expect("curl is installed (contrib/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["role"], "master");

    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", &url])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "curl trusted a farm certificate without the farm CA"
    );
    farm.stop(Duration::from_secs(10)).await.unwrap();
}

//! Conditional GET and long-poll on a real farm, with state that changes for real reasons.

use std::time::{Duration, Instant};

use quarters_common::api::v1::{MasterState, PeerStatus, Role};
use quarters_common::client::Fetched;
use quarters_tests::start_farm;

#[tokio::test]
async fn unchanged_state_gives_304_and_a_long_poll_returns_the_next_generation() {
    let (_dir, mut farm) = start_farm(1).await;
    farm.wait_builders_up(Duration::from_secs(30))
        .await
        .unwrap();
    let master = farm.client(&farm.master);
    let Fetched::New { state, etag } = master
        .state::<MasterState>(Role::Master, None, Duration::ZERO)
        .await
        .unwrap()
    else {
        panic!("a first read returns the state");
    };
    assert!(state.content.builders[0].status.is_up());

    // Conditional GET with the ETag just read: nothing changed.
    let again = master
        .state::<MasterState>(Role::Master, Some(&etag), Duration::ZERO)
        .await
        .unwrap();
    assert!(matches!(again, Fetched::Unchanged), "{again:?}");

    // A long-poll with nothing changing ends with 304 when its wait is over.
    let started = Instant::now();
    let waited = master
        .state::<MasterState>(Role::Master, Some(&etag), Duration::from_secs(1))
        .await
        .unwrap();
    assert!(matches!(waited, Fetched::Unchanged), "{waited:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // Stopping the builder changes the master's state; a long-poll waiting on the old
    // generation answers with the new one.
    let poll = {
        let master = master.clone();
        let etag = etag.clone();
        tokio::spawn(async move {
            master
                .state::<MasterState>(Role::Master, Some(&etag), Duration::from_secs(30))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    farm.builders[0]
        .stop(Duration::from_secs(10))
        .await
        .unwrap();
    let Fetched::New { state: next, .. } = poll.await.unwrap().unwrap() else {
        panic!("the long-poll ends with the changed state");
    };
    assert!(next.generation > state.generation);
    match &next.content.builders[0].status {
        PeerStatus::Down { error, .. } => assert!(error.contains("builder-1"), "{error}"),
        other => panic!("builder-1 should be down, is {other:?}"),
    }
    farm.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn the_after_parameter_long_polls_like_if_none_match() {
    let (_dir, mut farm) = start_farm(1).await;
    farm.wait_builders_up(Duration::from_secs(30))
        .await
        .unwrap();
    let url = format!("{}v1/state", farm.master.url);
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&farm.ca_cert)
            .args(args)
            .output()
            .expect("curl is installed");
        String::from_utf8(out.stdout).unwrap()
    };
    let body = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&farm.ca_cert)
        .arg(&url)
        .output()
        .unwrap()
        .stdout;
    let generation = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["generation"]
        .as_u64()
        .unwrap();
    assert_eq!(curl(&[&format!("{url}?after={generation}")]), "304");
    assert_eq!(curl(&[&format!("{url}?wait=1&after={generation}")]), "304");
    assert_eq!(curl(&[&format!("{url}?after={}", generation - 1)]), "200");
    assert_eq!(curl(&[&format!("{url}?wait=1&after=oops")]), "400");
    farm.stop(Duration::from_secs(10)).await.unwrap();
}

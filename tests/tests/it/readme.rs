//! The curl examples in README.md, run against a live farm, so that they stay true.

use std::process::Command;
use std::time::Duration;

use quarters_tests::{assert_contains, start_farm};

fn readme_examples() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md is at the top of the workspace");
    let start = readme
        .find("<!-- readme-curl-examples -->")
        .expect("README.md marks its curl examples");
    let end = readme
        .find("<!-- /readme-curl-examples -->")
        .expect("README.md closes its curl examples");
    let block = &readme[start..end];
    let body = block
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("the examples are one sh block")
        .0;
    body.to_owned()
}

#[tokio::test]
async fn the_readme_curl_examples_work_against_a_live_farm() {
    let (_dir, mut farm) = start_farm(1).await;
    farm.wait_builders_up(Duration::from_secs(30))
        .await
        .unwrap();
    let script = readme_examples();
    assert!(
        script.lines().filter(|l| l.starts_with("curl ")).count() >= 5,
        "{script}"
    );
    let base = |url: &url::Url| url.as_str().trim_end_matches('/').to_owned();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("CA", &farm.ca_cert)
        .env("MASTER", base(&farm.master.url))
        .env("BUILDER", base(&farm.builders[0].url))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_contains(
        &stdout,
        &[
            "\"role\":\"master\"",
            "\"role\":\"builder\"",
            "HTTP/2 304",
            "\"status\":\"ok\"",
        ],
    );
    // Both the conditional GET and the long-poll on an unchanged farm answer 304.
    assert_eq!(stdout.matches("HTTP/2 304").count(), 2, "{stdout}");
    farm.stop(Duration::from_secs(10)).await.unwrap();
}

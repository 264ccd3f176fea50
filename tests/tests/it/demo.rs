//! `quartersctl demo`: the README's first command starts a farm that curl can read, and stops
//! it cleanly on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use quarters_tests::command;

#[test]
fn demo_builds_the_examples_serves_state_to_curl_and_stops_on_ctrl_c() {
    let template = quarters_tests::template::template_root();
    let mut demo = command("quartersctl")
        .args(["demo", "--builders", "2", "--template"])
        .arg(&template)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut curl_line = None;
    let mut lines = Vec::new();
    for line in stdout.by_ref() {
        let line = line.unwrap();
        if line.trim_start().starts_with("curl --cacert") && curl_line.is_none() {
            curl_line = Some(line.trim().to_owned());
        }
        let done = line.contains("Ctrl-C stops it");
        lines.push(line);
        if done {
            break;
        }
    }
    let output = lines.join("\n");
    for expected in [
        "built (7): banner, epoch-demo, hello, hello-data, hello-tools, libhello, split-demo",
        "failed (1):",
        "broken: build: exit status",
        "/v1/logs/builder-",
        "indirect-failed (1):",
        "needs-broken",
        "promoted to the live repository:",
        "split-demo-doc 1.2-1",
    ] {
        assert!(output.contains(expected), "{expected:?} not in:\n{output}");
    }
    let curl_line = curl_line.unwrap_or_else(|| panic!("no curl example in:\n{output}"));
    let args: Vec<&str> = curl_line.split_whitespace().skip(1).collect();
    let out = Command::new("curl")
        .arg("-sS")
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["content"]["builders"].as_array().unwrap().len(), 2);
    assert_eq!(state["content"]["counts"]["live"], 7, "{state}");
    let url = args.last().unwrap().to_string();

    // A new user follows the client setup the demo printed: trust the farm key, require
    // signatures, install from the live repository.
    let after = |prefix: &str| -> String {
        lines
            .iter()
            .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest.trim().to_owned()))
            .unwrap_or_else(|| panic!("{prefix:?} not in:\n{output}"))
    };
    let key = after("pacman-key --add ");
    let fingerprint = after("pacman-key --lsign-key ");
    let ca = after("(the farm CA is ");
    let ca = ca.trim_end_matches("):");
    let live = after("Server = ");
    assert!(
        output.contains("SigLevel = Required") && live.ends_with("repo/live/$arch"),
        "{output}"
    );
    let client = quarters_tests::pacman::PacmanRoot::trusting(
        std::path::Path::new(ca),
        &[("quarters", live)],
        std::path::Path::new(&key),
        &fingerprint,
    );
    client.install(&["hello"]);

    // Keep reading, so that what the demo prints while it stops has somewhere to go.
    let rest = std::thread::spawn(move || stdout.map_while(Result::ok).collect::<Vec<_>>());
    kill(Pid::from_raw(demo.id() as i32), Signal::SIGINT).unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the demo did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let rest = rest.join().unwrap().join("\n");
    assert!(rest.contains("Stopping the farm"), "{rest}");
    let out = Command::new("curl")
        .args(["-sS", "-k", &url])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the master still answers after the demo stopped"
    );
}

//! A fresh build root: overlay over the template with its writable layer on a tmpfs, set up
//! and torn down, side by side with copying the same template with `cp -a` (what devtools does
//! without btrfs), in the same run. Needs root and a template root.
//!
//! `cargo bench -p quarters-builder --bench root -- [--template DIR] [--runs N]`

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use quarters_builder::mounts::BuildRoot;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let template = PathBuf::from(
        arg("--template").unwrap_or_else(|| "/var/cache/quarters-test/template".into()),
    );
    let runs: usize = arg("--runs").map_or(51, |r| r.parse().unwrap());
    assert!(
        template.join("usr/bin").is_dir(),
        "{} is not a template root; make one with quarters-builder mkroot",
        template.display()
    );
    let size = Command::new("du")
        .args(["-sh"])
        .arg(&template)
        .output()
        .unwrap();
    let size = String::from_utf8_lossy(&size.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_owned();
    let work = tempfile::tempdir().unwrap();

    let mut overlay: Vec<Duration> = (0..runs)
        .map(|i| {
            let dir = work.path().join(format!("overlay-{i}"));
            let t = Instant::now();
            let root = BuildRoot::create(&template, &dir, 16 << 10).unwrap();
            std::fs::write(root.root.join("tmp/touched"), b"x").unwrap();
            root.remove().unwrap();
            std::fs::remove_dir(&dir).unwrap();
            t.elapsed()
        })
        .collect();
    overlay.sort();

    let copies = 3;
    let mut copy: Vec<Duration> = (0..copies)
        .map(|i| {
            let dir = work.path().join(format!("copy-{i}"));
            let t = Instant::now();
            let status = Command::new("cp")
                .arg("-a")
                .arg(&template)
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success());
            let status = Command::new("rm").arg("-rf").arg(&dir).status().unwrap();
            assert!(status.success());
            t.elapsed()
        })
        .collect();
    copy.sort();

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let o = overlay[runs / 2];
    let c = copy[copies / 2];
    println!("template {} ({size})", template.display());
    println!("| fresh root, set up and torn down | median | min | max |");
    println!("|---|---|---|---|");
    println!(
        "| overlay on tmpfs ({runs} runs) | {:.2} ms | {:.2} ms | {:.2} ms |",
        ms(o),
        ms(overlay[0]),
        ms(overlay[runs - 1])
    );
    println!(
        "| cp -a and rm -rf ({copies} runs) | {:.0} ms | {:.0} ms | {:.0} ms |",
        ms(c),
        ms(copy[0]),
        ms(copy[copies - 1])
    );
    println!(
        "overlay is {:.0} times faster",
        c.as_secs_f64() / o.as_secs_f64()
    );
}

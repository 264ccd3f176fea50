//! Following the demo farm as it builds: a line per finished build, a status line (redrawn in
//! place on a terminal, printed on change otherwise), then promotion and the summary.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use quarters_common::api::v1::ctl::Command;
use quarters_common::api::v1::{ClaimPhase, MasterState, PackageState, Role, Verdict};
use quarters_common::client::Fetched;

use crate::localfarm::LocalFarm;

/// Where the farm stood when nothing was left to build.
#[derive(Debug)]
pub struct Done {
    pub state: MasterState,
    /// Packages in the build repository.
    pub built: Vec<String>,
    /// From the farm's start to the moment nothing was left to build.
    pub makespan: Duration,
}

/// Prints progress until every package is built, failed or blocked.
pub async fn follow_until_done(farm: &LocalFarm, started: Instant) -> anyhow::Result<Done> {
    let client = farm.client(&farm.master);
    let tty = std::io::stdout().is_terminal();
    let mut etag: Option<String> = None;
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut last_status = String::new();
    loop {
        let state = match client
            .state::<MasterState>(Role::Master, etag.as_deref(), Duration::from_secs(5))
            .await
        {
            Ok(Fetched::New { state, etag: e }) => {
                etag = Some(e);
                state.content
            }
            Ok(Fetched::Unchanged) => continue,
            Err(e) => {
                tracing::debug!("reading the master: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for r in &state.results {
            if seen.insert((r.builder.clone(), r.build.clone())) {
                let what = match r.verdict {
                    Verdict::Accepted => "built   ",
                    Verdict::Rejected => "rejected",
                    Verdict::Failed => "failed  ",
                };
                let why = r
                    .reason
                    .as_deref()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default();
                let line = format!(
                    "  {what} {} {} ({}) on {}{why}",
                    r.pkgbase, r.version, r.arch, r.builder
                );
                if tty {
                    print!("\r\x1b[2K");
                }
                println!("{line}");
            }
        }
        let status = status(&state);
        if tty {
            print!(
                "\r\x1b[2K[{:>6.1} s] {status}",
                started.elapsed().as_secs_f64()
            );
            let _ = std::io::stdout().flush();
        } else if status != last_status {
            println!("[{:>6.1} s] {status}", started.elapsed().as_secs_f64());
        }
        last_status = status;
        if crate::localfarm::settled(&state) {
            if tty {
                println!();
            }
            let built = built_packages(&farm.master_state_dir())?;
            return Ok(Done {
                state,
                built,
                makespan: started.elapsed(),
            });
        }
    }
}

fn status(state: &MasterState) -> String {
    let building: Vec<String> = state
        .claims
        .iter()
        .filter(|c| c.phase == ClaimPhase::Committed)
        .map(|c| format!("{} on {}", c.pkgbase, c.builder))
        .collect();
    let counts: Vec<String> = state
        .counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    format!(
        "{}{}",
        if counts.is_empty() {
            "scanning".to_owned()
        } else {
            counts.join(", ")
        },
        if building.is_empty() {
            String::new()
        } else {
            format!("; building {}", building.join(", "))
        }
    )
}

/// The pkgbases in the build repository, from the master's database (the demo runs beside it).
fn built_packages(state_dir: &Path) -> anyhow::Result<Vec<String>> {
    let db = quarters_master::db::Db::open(&state_dir.join("master.sqlite"))?;
    let mut names: Vec<String> = db
        .repo_entries()?
        .into_iter()
        .filter(|e| e.repo == quarters_master::plan::binaries::RepoKind::Build)
        .map(|e| e.pkgbase)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Promotes everything built, with its dependencies, through the master's spool.
pub async fn promote(farm: &LocalFarm, built: &[String]) -> Result<String, String> {
    if built.is_empty() {
        return Ok("nothing to promote\n".to_owned());
    }
    let spool = quarters_master::spool::spool_dir(&farm.master_state_dir());
    let command = Command::Promote {
        packages: built.to_vec(),
        with_deps: true,
        force: None,
    };
    let reply = tokio::task::spawn_blocking(move || {
        quarters_master::spool::submit(&spool, command, Duration::from_secs(60))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("{e:#}"))?;
    let text = crate::render::render(&reply.answer);
    if reply.is_ok() { Ok(text) } else { Err(text) }
}

/// Prints what happened, and where to look.
pub fn summary(farm: &LocalFarm, done: &Done, promoted: &Result<String, String>) {
    let by_state = |state: PackageState| -> Vec<String> {
        done.state
            .problems
            .iter()
            .filter(|p| p.state == state)
            .map(|p| match &p.log {
                Some(log) => format!("{}: {}\n      log: {log}", p.pkgbase, p.reason),
                None => format!("{}: {}", p.pkgbase, p.reason),
            })
            .collect()
    };
    println!();
    println!(
        "Summary after {:.1} s (makespan):",
        done.makespan.as_secs_f64()
    );
    println!("  built ({}): {}", done.built.len(), done.built.join(", "));
    for state in [
        PackageState::Failed,
        PackageState::IndirectFailed,
        PackageState::Blocked,
    ] {
        let title = state.as_str();
        let list = by_state(state);
        if !list.is_empty() {
            println!("  {title} ({}):", list.len());
            for item in list {
                println!("    {item}");
            }
        }
    }
    match promoted {
        Ok(text) => print!("  {}", text.replace('\n', "\n  ").trim_end_matches("  ")),
        Err(text) => println!("  promotion refused: {text}"),
    }
    println!();
    println!("Look around (the farm CA is {}):", farm.ca_cert.display());
    for node in farm.nodes() {
        println!(
            "  curl --cacert {} {}v1/state",
            farm.ca_cert.display(),
            node.url
        );
    }
    println!(
        "  live repository:  {}repo/live/$arch   ([quarters] in pacman.conf)",
        farm.master.url
    );
    println!(
        "  build repository: {}repo/build/$arch  ([quarters-build])",
        farm.master.url
    );
    println!(
        "  quartersctl status --spool {}",
        quarters_master::spool::spool_dir(&farm.master_state_dir()).display()
    );
    if let Some(signer) = &farm.signer {
        println!();
        println!(
            "Every package and database is signed by the farm key {}.",
            signer.fingerprint
        );
        println!("A pacman client trusts it once, then requires signatures:");
        println!("  pacman-key --add {}", signer.public_key.display());
        println!("  pacman-key --lsign-key {}", signer.fingerprint);
        println!(
            "  and in pacman.conf: [quarters]  SigLevel = Required  Server = {}repo/live/$arch",
            farm.master.url
        );
        println!(
            "  (with the farm CA in the system's trust: cp {} /usr/local/share/ca-certificates/quarters-demo.crt && update-ca-certificates)",
            farm.ca_cert.display()
        );
    }
}

//! The watchdog over a sandboxed stage, after pbulk's process monitor: it watches every process
//! of the stage's PID namespace from outside and kills the whole namespace when the stage is
//! hung (no new process and no CPU progress for a while), over its wall-clock limit, or over
//! its CPU-time limit. It also measures CPU time and peak memory.

use std::collections::HashSet;
use std::fs;
use std::time::{Duration, Instant};

use tokio::process::Child;

/// A stage's limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub hang: Duration,
    pub wall: Duration,
    pub cpu: Duration,
}

/// How the watched stage ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Exited(std::process::ExitStatus),
    Hung(Duration),
    WallLimit(Duration),
    CpuLimit(Duration),
}

/// What the watchdog measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub cpu_ms: u64,
    pub peak_rss_kb: u64,
}

const SAMPLE: Duration = Duration::from_millis(250);

/// Watches `child` (a sandbox's entry process, which makes the stage's PID namespace and waits
/// for its init) until it exits or breaks a limit; killing it kills its namespace, whose init
/// dies with it by its parent-death signal.
pub async fn watch(child: &mut Child, limits: Limits) -> (Ending, Usage) {
    let started = Instant::now();
    let mut usage = Usage::default();
    let host_ns = ns_inode("self");
    let mut ns: Option<String> = None;
    let mut seen: HashSet<u32> = HashSet::new();
    let mut last_cpu_ticks = 0u64;
    let mut last_activity = Instant::now();
    let ticks_per_sec = clock_ticks();
    let page_kb = page_size_kb();
    loop {
        tokio::select! {
            status = child.wait() => {
                let ending = match status {
                    Ok(status) => Ending::Exited(status),
                    Err(_) => Ending::Exited(std::process::ExitStatus::default()),
                };
                return (ending, usage);
            }
            () = tokio::time::sleep(SAMPLE) => {}
        }
        let Some(pid) = child.id() else { continue };
        if ns.is_none() {
            // The entry has made the namespace once its children's namespace differs from ours.
            ns = fs::read_link(format!("/proc/{pid}/ns/pid_for_children"))
                .ok()
                .map(|l| l.to_string_lossy().into_owned())
                .filter(|inode| Some(inode) != host_ns.as_ref());
        }
        if let Some(ns) = &ns {
            let mut cpu_ticks = 0u64;
            let mut rss_pages = 0u64;
            let mut new_process = false;
            for p in processes_in(ns) {
                if seen.insert(p.pid) {
                    new_process = true;
                }
                cpu_ticks += p.cpu_ticks;
                rss_pages += p.rss_pages;
            }
            usage.cpu_ms = usage.cpu_ms.max(cpu_ticks * 1000 / ticks_per_sec);
            usage.peak_rss_kb = usage.peak_rss_kb.max(rss_pages * page_kb);
            if new_process || cpu_ticks > last_cpu_ticks {
                last_activity = Instant::now();
            }
            last_cpu_ticks = last_cpu_ticks.max(cpu_ticks);
        }
        let ending = if last_activity.elapsed() > limits.hang {
            Some(Ending::Hung(limits.hang))
        } else if started.elapsed() > limits.wall {
            Some(Ending::WallLimit(limits.wall))
        } else if Duration::from_millis(usage.cpu_ms) > limits.cpu {
            Some(Ending::CpuLimit(limits.cpu))
        } else {
            None
        };
        if let Some(ending) = ending {
            // Killing every process of the namespace ends it even if its init outlived the
            // parent-death signal that ties it to the entry.
            if let Some(ns) = &ns {
                for p in processes_in(ns) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(i32::try_from(p.pid).unwrap_or(i32::MAX)),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            let _ = child.kill().await;
            return (ending, usage);
        }
    }
}

fn ns_inode(pid: &str) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|l| l.to_string_lossy().into_owned())
}

struct Proc {
    pid: u32,
    cpu_ticks: u64,
    rss_pages: u64,
}

/// Every process whose PID namespace is `ns`.
fn processes_in(ns: &str) -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if ns_inode(&pid.to_string()).as_deref() != Some(ns) {
            continue;
        }
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may contain spaces; fields follow its end.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // After the name: state(0) ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21).
        out.push(Proc {
            pid,
            cpu_ticks: field(11) + field(12) + field(13) + field(14),
            rss_pages: field(21),
        });
    }
    out
}

fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

fn page_size_kb() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .map_or(4, |b| b / 1024)
}

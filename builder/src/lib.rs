//! A Quarters builder: follows the master's ready list, claims packages by peer review, builds
//! them (in a fresh root, or simulated), and serves the logs and artifacts for the master to
//! pull.
//!
//! The binary `quarters-builder` is thin; everything it does is here.

pub mod builds;
pub mod cgroups;
pub mod claims;
pub mod config;
pub mod dispatch;
pub mod driver;
pub mod ids;
pub mod keyring;
pub mod mkroot;
pub mod mounts;
pub mod node;
pub mod peers;
pub mod sandbox;
pub mod server;
pub mod template;
pub mod upstream;
pub mod watchdog;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use quarters_common::api::v1::{MasterState, Role};
use quarters_common::client::{ClientLimits, PeerClient};
use quarters_common::follow::{FollowOptions, follow};
use quarters_common::serve::serve_node;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{BuilderConfig, DriverConfig};
use crate::driver::Driver;
use crate::node::Node;

/// How long running builds get to hand back when the builder stops: a sandbox is killed at once,
/// so this is the time to unmount a root and publish the withdrawn claims.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// How long a stopping builder waits for someone to read its last state.
const SERVED_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the builder on `listener` until `shutdown` completes.
pub async fn run(
    config: BuilderConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let keyring = match (&config.farm_key, &config.driver) {
        (Some(key), DriverConfig::Chroot(_)) => {
            let dir = config.work_dir.join("keyring");
            let keyring = keyring::make(&dir, key)
                .await
                .with_context(|| format!("making the keyring {}", dir.display()))?;
            let trusted: Vec<String> = key.iter().map(|k| k.fingerprint.to_string()).collect();
            tracing::info!(keys = %trusted.join(", "), "dependencies must be signed by the farm key");
            Some(keyring)
        }
        (None, DriverConfig::Chroot(_)) => {
            tracing::warn!(
                "no farm_key in the config: dependencies are installed without checking a signature"
            );
            None
        }
        (_, DriverConfig::Sim { .. }) => None,
    };
    let cgroups = match &config.driver {
        DriverConfig::Chroot(chroot) => confinement(&config, chroot),
        DriverConfig::Sim { .. } => None,
    };
    let driver = match &config.driver {
        DriverConfig::Sim { time_scale } => Driver::Sim(driver::sim::SimDriver {
            time_scale: *time_scale,
        }),
        DriverConfig::Chroot(chroot) => Driver::Chroot(Box::new(driver::chroot::ChrootDriver {
            fetcher: upstream::Fetcher::new(
                chroot.fetch.policy,
                chroot.ids.outside(chroot.build_uid),
                chroot.fetch.limits,
            )
            .context("setting up the source fetcher")?,
            cgroups: cgroups.clone(),
            config: chroot.clone(),
            ca: config.ca.clone(),
            keyring,
            srcdest: config.work_dir.join("sources"),
            exe: std::env::current_exe()
                .context("locating quarters-builder, which is also the sandbox")?,
        })),
    };
    // Roots a crash left mounted go first, before their directories are removed.
    let stale = mounts::unmount_under(&config.work_dir);
    if stale > 0 {
        tracing::info!("unmounted {stale} mount(s) left by an earlier run");
    }
    let master = PeerClient::new(
        &config.identity.trust,
        config.master_name.clone(),
        config.master_url.clone(),
        ClientLimits::default(),
    );
    let node = Node::new(config.clone(), driver, master.clone())
        .with_context(|| format!("opening the work directory {}", config.work_dir.display()))?;
    let cancel = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn({
        let node = node.clone();
        let cancel = cancel.clone();
        async move {
            follow::<MasterState, _, _>(
                &master,
                Role::Master,
                &FollowOptions::default(),
                &cancel,
                |event| {
                    node.master_event(event);
                    std::future::ready(())
                },
            )
            .await;
        }
    });
    tasks.spawn(node.clone().run_scheduler(cancel.clone()));
    let app = server::app(&node);
    // Running builds are handed back while the server still serves, so that the master and the
    // peers, long-polling this builder's state, see the claims withdrawn and take the packages
    // at once instead of waiting for the leases to lapse.
    let shutdown = {
        let node = node.clone();
        async move {
            shutdown.await;
            tracing::info!("stopping: handing the running builds back");
            if !node.stop_builds(STOP_GRACE).await {
                tracing::warn!("builds still running after {STOP_GRACE:?}; stopping anyway");
            }
            // The state that withdraws the claims must be read before the server goes: a
            // reader's next poll comes within moments, and the master long-polls.
            if !node.publisher().wait_served(SERVED_GRACE).await {
                tracing::warn!("nobody read the withdrawn claims within {SERVED_GRACE:?}");
            }
        }
    };
    serve_node(
        listener,
        &config.identity,
        app,
        node.publisher(),
        &cancel,
        shutdown,
    )
    .await
    .context("serving HTTPS")?;
    tasks.join_all().await;
    // Whatever a build could not clean up in time is unmounted now, not left to the next start.
    let left = mounts::unmount_under(&config.work_dir);
    if left > 0 {
        tracing::warn!("unmounted {left} mount(s) left under the work directory");
    }
    if let Some(cgroups) = cgroups {
        cgroups.close();
    }
    Ok(())
}

/// What confines a chroot build beyond its namespaces on this machine, said at start-up: the
/// seccomp filter, and the cgroup each build gets (`None` where the builder can have none).
fn confinement(config: &BuilderConfig, chroot: &config::ChrootConfig) -> Option<cgroups::Builds> {
    match sandbox::seccomp::Filter::new() {
        Ok(_) => tracing::info!(
            "builds run under a seccomp filter (no new namespaces, mounts, keyrings, BPF or modules)"
        ),
        Err(e) => tracing::warn!("{e}: builds run without a seccomp filter"),
    }
    match cgroups::Builds::open(config.name.as_str(), &config.work_dir) {
        Ok(builds) => {
            tracing::info!("{}", builds.notice(&chroot.limits));
            Some(builds)
        }
        Err(reason) => {
            tracing::warn!("{}", cgroups::place::without(&reason));
            None
        }
    }
}

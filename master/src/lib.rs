//! The Quarters master: follows the builders, publishes the farm's state, and (as later parts
//! land) scans sources, keeps the ready list and writes the repositories.
//!
//! The binaries `quarters-master` and `quartersctl` are thin; everything they do is here.

pub mod buildroot;
pub mod config;
pub mod db;
pub mod demo;
pub mod farm;
pub mod localfarm;
pub mod plan;
pub mod pull;
pub mod repo;
pub mod scan;
pub mod server;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use quarters_common::api::v1::{BuilderState, Role};
use quarters_common::client::{ClientLimits, PeerClient};
use quarters_common::follow::{FollowOptions, follow};
use quarters_common::serve::serve_node;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::MasterConfig;
use crate::farm::Farm;

/// Runs the master on `listener` until `shutdown` completes.
pub async fn run(
    config: MasterConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let farm = Farm::new(config.name.clone(), &config.builders);
    let cancel = CancellationToken::new();
    let mut followers = tokio::task::JoinSet::new();
    for builder in &config.builders {
        let client = PeerClient::new(
            &config.identity.trust,
            builder.name.clone(),
            builder.url.clone(),
            ClientLimits::default(),
        );
        followers.spawn(follow_builder(farm.clone(), client, cancel.clone()));
    }

    let app = server::app(farm.publisher());
    serve_node(
        listener,
        &config.identity,
        app,
        farm.publisher(),
        &cancel,
        shutdown,
    )
    .await
    .context("serving HTTPS")?;
    followers.join_all().await;
    Ok(())
}

async fn follow_builder(farm: Arc<Farm>, client: PeerClient, cancel: CancellationToken) {
    let name = client.name().clone();
    follow::<BuilderState, _>(
        &client,
        Role::Builder,
        &FollowOptions::default(),
        &cancel,
        |event| farm.builder_event(&name, &event),
    )
    .await;
}

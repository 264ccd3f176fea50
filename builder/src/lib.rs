//! A Quarters builder: follows the master and publishes its own state; claims, clean-root builds
//! and artifacts land here as the builder issue is done.
//!
//! The binary `quarters-builder` is thin; everything it does is here.

pub mod claims;
pub mod config;
pub mod node;
pub mod server;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use quarters_common::api::v1::{MasterState, Role};
use quarters_common::client::{ClientLimits, PeerClient};
use quarters_common::follow::{FollowOptions, follow};
use quarters_common::serve::serve_node;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::BuilderConfig;
use crate::node::Node;

/// Runs the builder on `listener` until `shutdown` completes.
pub async fn run(
    config: BuilderConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let node = Arc::new(Node::new(&config));
    let cancel = CancellationToken::new();
    let master = PeerClient::new(
        &config.identity.trust,
        config.master_name.clone(),
        config.master_url.clone(),
        ClientLimits::default(),
    );
    let follower = tokio::spawn({
        let node = node.clone();
        let cancel = cancel.clone();
        async move {
            follow::<MasterState, _>(
                &master,
                Role::Master,
                &FollowOptions::default(),
                &cancel,
                |event| node.master_event(&event),
            )
            .await;
        }
    });
    let app = server::app(node.publisher());
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
    follower.await.context("the master follower panicked")?;
    Ok(())
}

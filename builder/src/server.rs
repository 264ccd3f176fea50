//! The builder's HTTP routes: its state, and the logs and artifacts of its builds.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use quarters_common::files::{is_plain_name, serve_file};

use crate::node::Node;

/// Every route the builder serves.
pub fn app(node: &Arc<Node>) -> Router {
    let files = Router::new()
        .route("/v1/builds/{id}/logs/{stage}", get(log))
        .route("/v1/builds/{id}/artifacts/{file}", get(artifact))
        .with_state(node.clone());
    node.publisher().routes().merge(files)
}

async fn log(State(node): State<Arc<Node>>, Path((id, stage)): Path<(String, String)>) -> Response {
    if !is_plain_name(&id) || !is_plain_name(&stage) {
        return StatusCode::NOT_FOUND.into_response();
    }
    serve_file(
        &node.store.logs(&id).join(format!("{stage}.log")),
        "text/plain; charset=utf-8",
    )
    .await
}

async fn artifact(
    State(node): State<Arc<Node>>,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    if !is_plain_name(&id) || !is_plain_name(&file) {
        return StatusCode::NOT_FOUND.into_response();
    }
    serve_file(
        &node.store.artifacts(&id).join(file),
        "application/octet-stream",
    )
    .await
}

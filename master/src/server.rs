//! The master's HTTP routes: its state, the repositories, source tarballs and kept build logs.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use quarters_common::files::{is_plain_name, serve_file};

use crate::node::Master;
use crate::plan::binaries::RepoKind;

/// Every route the master serves.
pub fn app(master: &Arc<Master>) -> Router {
    let files = Router::new()
        .route("/repo/{repo}/{arch}/{file}", get(repo_file))
        .route("/v1/sources/{source}/{file}", get(source_tarball))
        .route("/v1/logs/{builder}/{build}/{stage}", get(build_log))
        .with_state(master.clone());
    master.publisher().routes().merge(files)
}

async fn repo_file(
    State(master): State<Arc<Master>>,
    Path((repo, arch, file)): Path<(String, String, String)>,
) -> Response {
    let repo = match repo.as_str() {
        "build" => RepoKind::Build,
        "live" => RepoKind::Live,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    if !is_plain_name(&arch) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match master.repos.file(repo, &arch, &file) {
        Some(path) => serve_file(&path, "application/octet-stream").await,
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn source_tarball(
    State(master): State<Arc<Master>>,
    Path((source, file)): Path<(String, String)>,
) -> Response {
    if !is_plain_name(&source) || !is_plain_name(&file) || !file.ends_with(".tar.gz") {
        return StatusCode::NOT_FOUND.into_response();
    }
    serve_file(&master.tarball_dir(&source).join(file), "application/gzip").await
}

async fn build_log(
    State(master): State<Arc<Master>>,
    Path((builder, build, stage)): Path<(String, String, String)>,
) -> Response {
    // The location is the digest of the names, as the master stored it: no URL can reach
    // outside the logs directory.
    let dir = crate::store::log_dir(&master.config.state_dir, &builder, &build);
    let path = crate::store::log_file(&dir, &stage);
    serve_file(&path, "text/plain; charset=utf-8").await
}

//! The master's HTTP routes: its state, the repositories, source tarballs and kept build logs.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use quarters_common::files::{is_plain_name, serve_file};

use quarters_common::api::v1::ctl::Answer;

use crate::node::{Master, Question};
use crate::plan::binaries::RepoKind;

/// Every route the master serves.
pub fn app(master: &Arc<Master>) -> Router {
    let files = Router::new()
        .route("/repo/{repo}/{arch}/{file}", get(repo_file))
        .route(
            "/repo/{repo}/{arch}/{version}/{file}",
            get(repo_version_file),
        )
        .route("/v1/sources/{source}/{file}", get(source_tarball))
        .route("/v1/logs/{builder}/{build}/{stage}", get(build_log))
        .route("/v1/status", get(status))
        .route("/v1/why/{package}", get(why))
        .with_state(master.clone());
    master.publisher().routes().merge(files)
}

/// `quartersctl status` for readers anywhere: the same answer as through the spool.
async fn status(State(master): State<Arc<Master>>) -> Response {
    answer(master.ask(Question::Status).await)
}

/// `quartersctl why PACKAGE` for readers anywhere.
async fn why(State(master): State<Arc<Master>>, Path(package): Path<String>) -> Response {
    // No package name is longer; a longer one is not worth the core's time.
    if package.len() > 256 {
        return StatusCode::NOT_FOUND.into_response();
    }
    answer(master.ask(Question::Why { package }).await)
}

/// An answer as JSON: a refusal (no such package, a stopping master) is a 404 with its reason.
fn answer(answer: Answer) -> Response {
    let status = match &answer {
        Answer::Refused { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    };
    (status, axum::Json(answer)).into_response()
}

async fn repo_file(
    State(master): State<Arc<Master>>,
    Path((repo, arch, file)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(repo) = RepoKind::parse(&repo) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !is_plain_name(&arch) {
        return StatusCode::NOT_FOUND.into_response();
    }
    // pacman's own downloader follows redirects and fetches a database's signature beside
    // the URL it ended at: sent to the version shown now, it gets the signature made over the
    // database it got, even if a rewrite comes between its two requests. Other clients (curl
    // as an `XferCommand`, which follows no redirect unless told) get the file as before.
    let from_pacman = headers
        .get(header::USER_AGENT)
        .and_then(|ua| ua.to_str().ok())
        .is_some_and(|ua| ua.starts_with("pacman/"));
    if from_pacman && let Some(location) = master.repos.redirect(repo, &arch, &file) {
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(
                header::LOCATION,
                HeaderValue::from_str(&location).expect("a plain path"),
            )],
        )
            .into_response();
    }
    match master.repos.file(repo, &arch, &file) {
        Some(path) => serve_file(&path, "application/octet-stream").await,
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn repo_version_file(
    State(master): State<Arc<Master>>,
    Path((repo, arch, version, file)): Path<(String, String, String, String)>,
) -> Response {
    let Some(repo) = RepoKind::parse(&repo) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !is_plain_name(&arch) || !is_plain_name(&file) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match master.repos.versioned_file(repo, &arch, &version, &file) {
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

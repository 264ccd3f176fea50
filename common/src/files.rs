//! Serving files over HTTP: streamed from disk, never read whole into memory.

use std::path::Path;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Streams the file at `path` with its length, or answers 404 if it cannot be opened.
pub async fn serve_file(path: &Path, content_type: &'static str) -> Response {
    let Ok(file) = tokio::fs::File::open(path).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(meta) = file.metadata().await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !meta.is_file() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_LENGTH, HeaderValue::from(meta.len())),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Whether `name` is a single, plain path component that can be joined onto a directory
/// without escaping it.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && !name.starts_with('.')
}

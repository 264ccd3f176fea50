//! The builder's HTTP routes.

use axum::Router;
use quarters_common::state::StatePublisher;

/// Every route the builder serves.
pub fn app(state: &StatePublisher) -> Router {
    state.routes()
}

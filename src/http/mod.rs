//! The HTTP edge: one route table, buildable without a socket (`router(state)`), and the one
//! error type every handler answers with.

mod api;
mod error;
mod github;
mod health;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::queue::Queue;

pub use error::ApiError;

/// GitHub's own cap on webhook payloads.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub queue: Queue,
}

pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/webhooks/github", post(github::receive))
        .route("/api/jobs", get(api::list_jobs))
        .route("/api/jobs/{id}", get(api::show_job))
        .route(
            "/api/environments/{app}/{env}/rollback",
            post(api::rollback),
        );
    layers(routes.merge(probe_routes()), state)
}

/// Only the probes: what a `worker`-role replica serves.
pub fn probes(state: AppState) -> Router {
    layers(probe_routes(), state)
}

fn probe_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
}

fn layers(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

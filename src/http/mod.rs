//! The HTTP edge: one route table, buildable without a socket (`router(state)`), and the one
//! error type every handler answers with.

mod api;
mod error;
mod github;
mod health;
mod slack;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::config::Config;
use crate::deploy::source::Mirrors;
use crate::mask::Masker;
use crate::queue::Queue;
use crate::slack::api::SlackApi;
use crate::telemetry::{Metrics, Vitals};

pub use api::ListQuery;
pub use error::ApiError;

/// GitHub's own cap on webhook payloads.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

/// What handlers share, behind one `Arc`: axum clones the state for every request (each
/// `State` extractor and middleware takes its own), so a clone is one reference count, not one
/// per service.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    pub config: Arc<Config>,
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    pub vitals: Arc<Vitals>,
    /// The git mirrors requests resolve refs in (the workers' own, so fetches share locks).
    pub mirrors: Arc<Mirrors>,
    /// Masks configured secrets out of chat answers.
    pub masker: Masker,
    /// Slack's Web API, when `[slack]` is configured.
    pub slack: Option<SlackApi>,
    /// Store reads that concurrent Slack commands share.
    pub slack_reads: crate::slack::execute::Reads,
    /// What a keep's `for` counts from.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// The service's shutdown: long-lived answers (a job's live view) end when it fires, so an
    /// open page never holds up a graceful stop.
    pub shutdown: CancellationToken,
}

pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/webhooks/github", post(github::receive))
        .route(
            "/slack/commands",
            post(slack::command).layer(DefaultBodyLimit::max(slack::MAX_BODY)),
        )
        .route(
            "/slack/interactions",
            post(slack::interaction).layer(DefaultBodyLimit::max(slack::MAX_BODY)),
        )
        .route("/api/jobs", get(api::list_jobs))
        .route("/api/jobs/{id}", get(api::show_job))
        .route("/api/ephemeral", get(api::list_ephemeral))
        .route("/api/ephemeral/{app}/{env}/keep", post(api::keep))
        .route(
            "/api/environments/{app}/{env}/rollback",
            post(api::rollback),
        );
    let dashboard = crate::dashboard::routes(state.clone());
    layers(routes.merge(dashboard).merge(probe_routes()), state)
}

/// Only the probes: what a `worker`-role replica serves.
pub fn probes(state: AppState) -> Router {
    layers(probe_routes(), state)
}

fn probe_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/startupz", get(health::startupz))
        .route("/metrics", get(health::metrics))
}

/// Counts and times every request by its route (the matched pattern, never the raw path, so
/// user input cannot blow up the label set).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .observe_request(&route, response.status().as_u16(), started.elapsed());
    response
}

/// The request's span carries its id (`x-request-id`, set or propagated by the layers below).
fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", request.id = %id, method = %request.method(), path = %request.uri().path())
}

fn layers(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .route_layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(|response: &Response, took: Duration, _: &tracing::Span| {
                    tracing::info!(
                        http.status = response.status().as_u16(),
                        duration_us = took.as_micros() as u64,
                        "request done"
                    );
                }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

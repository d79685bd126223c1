//! The web dashboard under `/ui`: server-rendered pages (maud) over the same store reads as
//! Slack and the API, and forms for the same actions ([`crate::actions`], with its one
//! permission check). No JavaScript is needed except for a job's live log (Server-Sent Events).
//!
//! Boundaries: it reads the store and config, and changes things only through
//! [`crate::actions`]. Access ([`session`]): with `[dashboard] users`, every page needs a login
//! and every action a CSRF token; without, it is read-only and answers loopback peers only.
//! Every value is escaped by maud; nothing secret is rendered (log lines and errors are masked
//! before they are stored).

mod act;
mod audit;
mod envs;
mod jobs;
mod layout;
mod live;
mod login;
mod session;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::http::AppState;
use crate::store::now_ms;

pub use session::Viewer;
use session::{COOKIE, Keys, local_request};

/// The dashboard's routes, to be merged into [`crate::http::router`].
pub fn routes(state: AppState) -> Router<AppState> {
    let guarded = Router::new()
        .route("/ui", get(envs::page))
        .route("/ui/jobs", get(jobs::list))
        .route("/ui/jobs/{id}", get(jobs::page))
        .route("/ui/jobs/{id}/events", get(live::events))
        .route("/ui/audit", get(audit::page))
        .route("/ui/envs/{app}/{env}/rollback", post(act::rollback))
        .route("/ui/envs/{app}/{env}/lock", post(act::lock))
        .route("/ui/envs/{app}/{env}/unlock", post(act::unlock))
        .route("/ui/jobs/{id}/cancel", post(act::cancel))
        .route("/ui/jobs/{id}/approve", post(act::approve))
        .route("/ui/jobs/{id}/reject", post(act::reject))
        .route("/ui/logout", post(login::logout))
        .route_layer(middleware::from_fn_with_state(state, guard));
    Router::new()
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/static/app.css", get(layout::css))
        .route("/ui/static/app.js", get(layout::js))
        .merge(guarded)
        .route_layer(middleware::from_fn(headers))
}

/// Lets a request in as a [`Viewer`] (an extension the handlers read), or answers it: without
/// configured users only loopback peers get in, and not through a proxy (a request without a
/// known peer, as from a router without a socket, is refused); with users, a valid session is
/// needed (pages redirect to the login form, anything else gets 401).
async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let config = &state.config;
    let viewer = if config.dashboard.users.is_empty() {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        if !local_request(peer, request.headers()) {
            tracing::warn!(peer = ?peer, "dashboard request from a non-loopback or forwarded peer refused");
            return layout::refusal(
                StatusCode::FORBIDDEN,
                "Without configured [dashboard] users the dashboard answers only on loopback, \
                 not through a proxy.",
            );
        }
        Viewer::Local
    } else {
        let keys = Keys::new(config);
        let session = request
            .headers()
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|cookies| session::cookie(cookies, COOKIE))
            .and_then(|value| Some((value, keys.verify(config, value, now_ms())?)));
        match session {
            Some((value, user)) => Viewer::User {
                name: user.name.clone(),
                slack_user: user.slack_user.clone(),
                csrf: keys.csrf(value),
            },
            None if request.method() == Method::GET => {
                return Redirect::to("/ui/login").into_response();
            }
            None => {
                return layout::refusal(StatusCode::UNAUTHORIZED, "Log in first.");
            }
        }
    };
    request.extensions_mut().insert(viewer);
    next.run(request).await
}

/// What every dashboard answer carries: only our own scripts, styles and forms, never framed,
/// never cached (pages show live state and CSRF tokens).
async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

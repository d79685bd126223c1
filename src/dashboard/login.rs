//! `GET`/`POST /ui/login` and `POST /ui/logout`. A login is one configured token; it becomes the
//! signed session cookie ([`super::session`]): `HttpOnly` (no script reads it), `SameSite=Strict`
//! (no other site's form or link sends it), `Path=/ui`, and `Secure` when the proxy in front
//! says the request came over HTTPS (`X-Forwarded-Proto: https`).

use axum::Extension;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::Viewer;
use super::layout::{self, Failure};
use super::session::{self, COOKIE, Keys};
use crate::http::AppState;
use crate::store::now_ms;

#[derive(Deserialize)]
pub struct Login {
    #[serde(default)]
    token: String,
}

fn login_page(problem: Option<&str>) -> Markup {
    layout::page(
        "Log in",
        None,
        html! {
            @if let Some(problem) = problem { p.refusal { (problem) } }
            form method="post" action="/ui/login" {
                label { "Your dashboard token " input type="password" name="token" autocomplete="current-password" required autofocus; }
                " " button { "Log in" }
            }
        },
    )
}

pub async fn form(State(state): State<AppState>) -> Response {
    if state.config.dashboard.users.is_empty() {
        return Redirect::to("/ui").into_response();
    }
    login_page(None).into_response()
}

pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(login): Form<Login>,
) -> Response {
    let config = &state.config;
    if config.dashboard.users.is_empty() {
        return Redirect::to("/ui").into_response();
    }
    let Some(user) = session::login(config, &login.token) else {
        tracing::warn!("dashboard login with an unknown token refused");
        return (
            StatusCode::UNAUTHORIZED,
            login_page(Some("That token is not valid.")),
        )
            .into_response();
    };
    let lifetime = config.dashboard.session;
    let expires = now_ms().saturating_add(lifetime.as_millis() as i64);
    let value = Keys::new(config).session(&user.name, expires);
    tracing::info!(user.name = %user.name, user.id = %user.slack_user, "dashboard login");
    let cookie = format!(
        "{COOKIE}={value}; Path=/ui; Max-Age={}; HttpOnly; SameSite=Strict{}",
        lifetime.as_secs(),
        secure(&headers)
    );
    with_cookie(Redirect::to("/ui"), &cookie)
}

#[derive(Deserialize)]
pub struct Logout {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    Extension(viewer): Extension<Viewer>,
    headers: HeaderMap,
    Form(form): Form<Logout>,
) -> Result<Response, Failure> {
    if !viewer.csrf_ok(&form.csrf) {
        return Err(Failure::Refused(
            StatusCode::FORBIDDEN,
            "This form is stale or not from this dashboard (CSRF token mismatch).".into(),
        ));
    }
    let cookie = format!(
        "{COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict{}",
        secure(&headers)
    );
    Ok(with_cookie(Redirect::to("/ui/login"), &cookie))
}

fn secure(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    if https { "; Secure" } else { "" }
}

fn with_cookie(redirect: Redirect, cookie: &str) -> Response {
    let mut response = redirect.into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

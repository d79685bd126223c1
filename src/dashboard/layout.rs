//! The page shell, the one stylesheet and script (compiled into the binary), and the small
//! formatting helpers every page uses.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::Viewer;
use crate::store::{JobState, StoreError};

const CSS: &str = include_str!("static/app.css");
const JS: &str = include_str!("static/app.js");

pub async fn css() -> Response {
    static_file("text/css; charset=utf-8", CSS)
}

pub async fn js() -> Response {
    static_file("text/javascript; charset=utf-8", JS)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// A whole page: the navigation, who is logged in (with a log-out form), then `body`.
pub fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · slipway" }
                link rel="stylesheet" href="/ui/static/app.css";
                script src="/ui/static/app.js" defer {}
            }
            body {
                nav {
                    a.brand href="/ui" { "slipway" }
                    a href="/ui" { "Environments" }
                    a href="/ui/jobs" { "Jobs" }
                    a href="/ui/audit" { "Audit" }
                    span.who {
                        @match viewer {
                            Some(Viewer::User { name, csrf, .. }) => {
                                "Logged in as " strong { (name) }
                                form.inline method="post" action="/ui/logout" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button { "Log out" }
                                }
                            }
                            Some(Viewer::Local) => { "Read-only (no dashboard users configured)" }
                            None => {}
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page that says why a request was refused, with its status.
pub fn refusal(status: StatusCode, why: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Refused");
    (
        status,
        page(
            title,
            None,
            html! { p.refusal { (why) } p { a href="/ui" { "Back to the environments" } } },
        ),
    )
        .into_response()
}

/// Why a page or action was not answered normally.
#[derive(Debug)]
pub enum Failure {
    /// 404 with what was missing.
    NotFound(String),
    /// Refused, with the status and the reason in words (already logged where it was decided).
    Refused(StatusCode, String),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound(what) => refusal(StatusCode::NOT_FOUND, &what),
            Self::Refused(status, why) => refusal(status, &why),
            Self::Store(err) => {
                // Logged here, once; the page says only that the database is unavailable.
                tracing::error!(error = %err, "dashboard request failed on the database");
                refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The database is unavailable; try again shortly.",
                )
            }
        }
    }
}

/// The hidden CSRF field of an action form.
pub fn csrf(viewer: &Viewer) -> Markup {
    html! {
        @if let Some(token) = viewer.csrf() {
            input type="hidden" name="csrf" value=(token);
        }
    }
}

/// A time as `2026-11-22 06:50:12 UTC`.
pub fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// A duration in ms as `850 ms` or `12.3 s`.
pub fn took(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// The first 8 characters of a commit id.
pub fn short(sha: &str) -> &str {
    sha.get(..8).unwrap_or(sha)
}

/// A job state as a coloured label.
pub fn state(state: JobState) -> Markup {
    html! { span class={ "state " (state.as_str()) } { (state.as_str().replace('_', " ")) } }
}

/// A link, if `url` is http(s) (anything else is shown as text, never as a link).
pub fn link(url: &str) -> Markup {
    html! {
        @if url.starts_with("https://") || url.starts_with("http://") {
            a href=(url) rel="noreferrer" { (url) }
        } @else {
            (url)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_only_web_urls_are_links() {
        let hostile = "<script>alert(1)</script>\"'&";
        let html = page(hostile, None, link("javascript:alert(1)")).into_string();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;"),
            "{html}"
        );
        assert!(!html.contains("href=\"javascript"), "{html}");
        let web = link("https://x.test/?a=1&b=\"2\"").into_string();
        assert_eq!(
            web,
            "<a href=\"https://x.test/?a=1&amp;b=&quot;2&quot;\" rel=\"noreferrer\">https://x.test/?a=1&amp;b=&quot;2&quot;</a>"
        );
    }

    #[test]
    fn times_and_durations_read_plainly() {
        assert_eq!(when(1_767_323_045_000), "2026-01-02 03:04:05 UTC");
        assert_eq!(
            (took(850), took(12_345)),
            ("850 ms".into(), "12.3 s".into())
        );
        assert_eq!(short("0123456789abcdef"), "01234567");
        assert_eq!(short("abc"), "abc");
    }
}

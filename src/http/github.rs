//! `POST /webhooks/github`: verify, parse, plan, commit, then answer.
//!
//! Order matters: the signature is checked on the raw bytes before anything reads them, and the
//! answer is sent only after the jobs are committed, so a crash can lose an answer (the delivery
//! shows as failed on GitHub, which does not retry on its own: a redelivery by hand, or for
//! ephemeral environments the scheduled reconcile, heals it; the delivery id makes a
//! redelivery harmless) but never an accepted deploy.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::json;

use super::{ApiError, AppState};
use crate::gitops;
use crate::planner::{self, Plan};
use crate::queue::{Delivery, Enqueued};
use crate::signature;

pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let secret = state
        .config
        .github
        .webhook_secret
        .expose_secret()
        .as_bytes();
    signature::verify_github(secret, &headers, &body)
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;

    if let Some(kind) = headers.get(header::CONTENT_TYPE)
        && !kind.as_bytes().starts_with(b"application/json")
    {
        return Err(ApiError::UnsupportedMediaType(
            "set the webhook's content type to application/json".into(),
        ));
    }
    let event = header_str(&headers, "x-github-event")?;
    let delivery = header_str(&headers, "x-github-delivery")?;

    match event {
        "ping" => {
            let zen = gitops::parse_ping(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            Ok(Json(json!({ "pong": true, "zen": zen })).into_response())
        }
        "push" | "delete" => {
            let push = if event == "push" {
                gitops::parse_push(&body)
            } else {
                gitops::parse_delete(&body)
            };
            let push = push.map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let jobs = match planner::plan_push(&state.config, &push) {
                Plan::Jobs(jobs) => jobs,
                Plan::Ignored(reason) => return Ok(ignored(reason)),
            };
            let delivery = Delivery {
                id: delivery,
                source: "github",
                event,
            };
            let (status, ids, duplicate) = match state.queue.enqueue(Some(delivery), &jobs).await? {
                Enqueued::Created(ids) => (StatusCode::ACCEPTED, ids, false),
                Enqueued::Duplicate(ids) => (StatusCode::OK, ids, true),
                Enqueued::Refused(why) => return Err(ApiError::Conflict(why)),
            };
            let body = json!({ "job_id": ids.first(), "job_ids": ids, "duplicate": duplicate });
            Ok((status, Json(body)).into_response())
        }
        other => Ok(ignored(format!("event {other:?} is not handled"))),
    }
}

fn ignored(reason: String) -> Response {
    tracing::info!(reason = %reason, "webhook ignored");
    (StatusCode::ACCEPTED, Json(json!({ "ignored": reason }))).into_response()
}

/// The one value of header `name`: present once (a second copy could name another event or
/// delivery than the first one a proxy or log saw), ASCII, 1-200 characters.
fn header_str<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, ApiError> {
    let mut values = headers.get_all(name).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(ApiError::BadRequest(format!(
            "exactly one {name} header is required"
        )));
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::BadRequest(format!("{name} header is not ASCII")))?;
    if value.is_empty() || value.len() > 200 {
        return Err(ApiError::BadRequest(format!(
            "{name} header must be 1-200 characters"
        )));
    }
    Ok(value)
}

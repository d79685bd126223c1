//! The JSON API over jobs: the same views `slipway jobs` prints.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::requests::{self, RequestError};
use crate::store::Job;
use crate::store::{EphemeralRow, JobDetail, JobFilter, JobState};

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    app: Option<String>,
    env: Option<String>,
    /// A part of who asked.
    who: Option<String>,
    limit: Option<i64>,
}

impl ListQuery {
    /// The filter it asks for (empty parameters, as an HTML form sends them, filter nothing).
    pub fn filter(&self) -> Result<JobFilter, ApiError> {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        Ok(JobFilter {
            state: given(&self.state)
                .map(|s| {
                    JobState::parse(&s)
                        .ok_or_else(|| ApiError::BadRequest(format!("unknown state {s:?}")))
                })
                .transpose()?,
            app: given(&self.app),
            env: given(&self.env),
            who: given(&self.who),
        })
    }

    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(50).clamp(1, 1000)
    }
}

pub async fn list_jobs(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Job>>, ApiError> {
    let filter = query.filter()?;
    Ok(Json(
        state.queue.store().jobs(&filter, query.limit()).await?,
    ))
}

pub async fn show_job(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<JobDetail>, ApiError> {
    state
        .queue
        .store()
        .job_detail(id, JobDetail::LOG_LINES)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
}

/// `GET /api/ephemeral`: every ephemeral environment that exists, oldest first.
pub async fn list_ephemeral(
    State(state): State<AppState>,
) -> Result<Json<Vec<EphemeralRow>>, ApiError> {
    Ok(Json(state.queue.store().ephemeral_envs().await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    to: Option<String>,
}

/// `POST /api/environments/{app}/{env}/rollback` with an optional `{"to": "<release>"}`:
/// queues a rollback job (behind the environment's running job) and answers 202 with its id.
pub async fn rollback(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    authorize(&state, &headers)?;
    let body: RollbackBody = if body.is_empty() {
        RollbackBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))?
    };
    let id = requests::rollback(
        &state.queue,
        &state.config,
        (&app, &env),
        body.to.as_deref(),
        requests::Origin {
            requested_by: "api",
            source: "api",
            delivery: None,
        },
    )
    .await
    .map_err(|e| match e {
        RequestError::Invalid(why) => ApiError::BadRequest(why),
        RequestError::Store(e) => ApiError::Store(e),
    })?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job_id": id }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepBody {
    /// How long from now, e.g. `"2d"` or `"36h"`.
    #[serde(rename = "for", with = "humantime_serde")]
    duration: std::time::Duration,
}

/// `POST /api/ephemeral/{app}/{env}/keep` with `{"for": "2d"}`: cleanup leaves the environment
/// alone until then (whatever its TTL says).
pub async fn keep(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&state, &headers)?;
    let body: KeepBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))?;
    let until = state
        .clock
        .now_ms()
        .saturating_add(i64::try_from(body.duration.as_millis()).unwrap_or(i64::MAX));
    if !state.queue.store().keep_env(&app, &env, until).await? {
        return Err(ApiError::NotFound(format!(
            "no ephemeral environment {app}/{env}"
        )));
    }
    Ok(Json(json!({ "keep_until": until })))
}

/// Write endpoints need `Authorization: Bearer <api.token>`; without a configured token they are
/// off. The token is compared in constant time.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.config.api.token else {
        return Err(ApiError::Forbidden(
            "write endpoints are off: configure api.token".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
    let expected = token.expose_secret().as_bytes();
    if given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("wrong bearer token".into()))
    }
}

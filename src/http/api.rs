//! The JSON API over jobs: the same views `slipway jobs` prints.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::store::Job;
use crate::store::{JobDetail, JobState};

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
}

pub async fn list_jobs(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Job>>, ApiError> {
    let wanted = query
        .state
        .as_deref()
        .map(|s| {
            JobState::parse(s).ok_or_else(|| ApiError::BadRequest(format!("unknown state {s:?}")))
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    Ok(Json(state.queue.store().jobs(wanted, limit).await?))
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

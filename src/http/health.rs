//! Probes and metrics: `/healthz` says the process answers (no dependencies); `/startupz` that
//! start-up finished; `/readyz` that it can do its work (database reachable, migrations
//! applied, worker pool alive); `/metrics` is the Prometheus text exposition.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, AppState};

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn startupz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.vitals.started() {
        (StatusCode::OK, Json(json!({ "status": "started" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "starting" })),
        )
    }
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let not_ready = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reason": reason })),
        )
    };
    if let Err(reason) = state.queue.store().ready().await {
        return not_ready(reason);
    }
    // The pool ticks every poll interval; three missed ticks (plus slack) mean it is stuck.
    let allowed = 3 * state.config.worker.poll_interval.as_millis() as i64 + 2000;
    if let Some(silence) = state.vitals.worker_silence_ms()
        && silence > allowed
    {
        return not_ready(format!("worker pool silent for {silence} ms"));
    }
    (StatusCode::OK, Json(json!({ "status": "ready" })))
}

pub async fn metrics(State(state): State<AppState>) -> Result<String, ApiError> {
    Ok(state.metrics.render(state.queue.store()).await?)
}

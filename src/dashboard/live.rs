//! `GET /ui/jobs/{id}/events`: a running job's new log lines and step results as Server-Sent
//! Events, until the job ends (then `end`, and the page reloads itself).
//!
//! It polls the store rather than listening to the worker, so it works on any replica, whichever
//! one runs the job, and costs two small indexed reads per open page per [`POLL`]. It resumes
//! after the last line the page has (`?after=`, or the browser's `Last-Event-ID` when it
//! reconnects), so no line is shown twice or lost. Every stream ends at shutdown: an open page
//! must not hold the server's graceful stop.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::jobs::steps;
use super::layout::Failure;
use crate::http::AppState;
use crate::store::Store;

/// How often an open page's stream looks for new lines.
const POLL: Duration = Duration::from_millis(250);
/// Lines read per poll (a chatty step catches up over a few polls).
const BATCH: i64 = 500;

#[derive(Deserialize)]
pub struct After {
    after: Option<i64>,
}

pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(query): Query<After>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Failure> {
    let store = state.queue.store().clone();
    if store.job(id).await?.is_none() {
        return Err(Failure::NotFound(format!("There is no job #{id}.")));
    }
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let live = Live {
        store,
        id,
        after: resumed.or(query.after).unwrap_or(0),
        steps: None,
        pending: VecDeque::new(),
        done: false,
        shutdown: state.shutdown.clone(),
    };
    let stream = futures::stream::unfold(live, |mut live| async move {
        live.next().await.map(|event| (Ok(event), live))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One open stream's place in the job's records.
struct Live {
    store: Store,
    id: i64,
    /// The last log line sent (its id).
    after: i64,
    /// The steps table last sent, rendered.
    steps: Option<String>,
    pending: VecDeque<Event>,
    done: bool,
    shutdown: CancellationToken,
}

impl Live {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            if let Err(err) = self.poll().await {
                // The browser reconnects after its retry delay, from the last line it got.
                tracing::warn!(job.id = self.id, error = %err, "live job view stopped");
                return None;
            }
            if self.pending.is_empty() {
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    () = self.shutdown.cancelled() => return None,
                }
            }
        }
    }

    /// Queues what changed since the last poll; `end` once the job has ended and every line
    /// it wrote was sent.
    async fn poll(&mut self) -> Result<(), crate::store::StoreError> {
        // The state is read before the lines: once it is final, no line is written after it,
        // so the lines read next are all there will be.
        let ended = self
            .store
            .job(self.id)
            .await?
            .is_none_or(|job| job.state.is_final());
        let lines = self.store.job_log_after(self.id, self.after, BATCH).await?;
        let caught_up = (lines.len() as i64) < BATCH;
        for line in lines {
            self.after = line.id;
            let data = json!({ "host": line.host, "step": line.step, "line": line.line });
            self.pending.push_back(
                Event::default()
                    .event("log")
                    .id(line.id.to_string())
                    .data(data.to_string()),
            );
        }
        let rendered = steps(&self.store.step_results(self.id).await?).into_string();
        if self.steps.as_deref() != Some(&rendered) {
            let data = json!({ "html": rendered }).to_string();
            self.steps = Some(rendered);
            self.pending
                .push_back(Event::default().event("steps").data(data));
        }
        if ended && caught_up {
            // With data: browsers drop an event whose data is empty.
            self.pending
                .push_back(Event::default().event("end").data("ended"));
            self.done = true;
        }
        Ok(())
    }
}

//! `GET /ui/jobs` (filtered by app, env, state and who) and `GET /ui/jobs/{id}`: a job's facts,
//! its events, its per-host step results and its log, with the cancel and approve/reject
//! actions while it waits and the stop action while a deploy or rollback runs. A job that has
//! not ended streams new log lines and step results ([`super::live`]); without JavaScript the
//! page shows the log so far.

use axum::Extension;
use axum::extract::{Path, Query, State};
use maud::{Markup, html};

use super::Viewer;
use super::layout::{self, Failure, csrf, short, took, when};
use crate::http::{AppState, ListQuery};
use crate::store::{JobDetail, JobKind, JobState, LogLine, StepResult};

/// How many jobs a listing shows.
const LISTED: i64 = 100;

pub async fn list(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Query(query): Query<ListQuery>,
) -> Result<Markup, Failure> {
    let filter = query
        .filter()
        .map_err(|e| Failure::Refused(axum::http::StatusCode::BAD_REQUEST, e.to_string()))?;
    let jobs = state.queue.store().jobs(&filter, LISTED).await?;
    let states = [
        "queued",
        "awaiting_approval",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "superseded",
        "skipped",
        "rejected",
        "expired",
    ];
    let chosen = filter.state.map(JobState::as_str);
    Ok(layout::page(
        "Jobs",
        Some(&viewer),
        html! {
            form.filters method="get" action="/ui/jobs" {
                label { "App" input type="text" name="app" value=[filter.app.as_deref()] size="10"; }
                label { "Environment" input type="text" name="env" value=[filter.env.as_deref()] size="12"; }
                label { "State" select name="state" {
                    option value="" { "any" }
                    @for s in states { option value=(s) selected[chosen == Some(s)] { (s.replace('_', " ")) } }
                } }
                label { "Who" input type="text" name="who" value=[filter.who.as_deref()] size="12"; }
                button { "Filter" }
            }
            @if jobs.is_empty() { p.muted { "No jobs match." } }
            @else {
                table.jobs {
                    thead { tr {
                        th { "#" } th { "Kind" } th { "Environment" } th { "Ref" } th { "Commit" }
                        th { "State" } th { "Who" } th { "Queued" } th { "Took" }
                    } }
                    tbody {
                        @for job in &jobs {
                            tr {
                                td { a href={ "/ui/jobs/" (job.id) } { "#" (job.id) } }
                                td { (job.kind.as_str()) }
                                td { (job.lane()) }
                                td { code { (job.git_ref) } }
                                td { code { (short(&job.sha)) } }
                                td { (layout::state(job.state)) }
                                td { (job.requested_by) span.muted { " via " (job.source) } }
                                td.nowrap { (when(job.created_at)) }
                                td { @if let Some(ms) = job.duration_ms() { (took(ms)) } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

pub async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<i64>,
) -> Result<Markup, Failure> {
    let detail = state
        .queue
        .store()
        .job_detail(id, JobDetail::LOG_LINES)
        .await?
        .ok_or_else(|| Failure::NotFound(format!("There is no job #{id}.")))?;
    let job = &detail.job;
    let after = detail.log.last().map_or(0, |l| l.id);
    let title = format!("Job #{} · {} {}", job.id, job.kind.as_str(), job.lane());
    // A running deploy or rollback can be stopped (once: a second request changes nothing).
    let stoppable = job.state == JobState::Running
        && matches!(job.kind, JobKind::Deploy | JobKind::Rollback)
        && job.cancel_requested_by.is_none();
    Ok(layout::page(
        &title,
        Some(&viewer),
        html! {
            dl.facts {
                dt { "State" } dd #state { (layout::state(job.state)) " attempt " (job.attempt) " of " (job.max_attempts) }
                dt { "Ref" } dd { code { (job.git_ref) } " " code { (job.sha) } }
                dt { "Release" } dd { code { (detail.release_id) } }
                dt { "Requested by" } dd { (job.requested_by) " via " (job.source) }
                dt { "Queued" } dd { (when(job.created_at)) }
                @if let Some(at) = job.started_at { dt { "Started" } dd { (when(at)) } }
                @if let Some(at) = job.finished_at { dt { "Finished" } dd { (when(at)) } }
                @if let Some(ms) = detail.duration_ms { dt { "Took" } dd { (took(ms)) } }
                @if job.approvals_needed > 0 { dt { "Approvals needed" } dd { (job.approvals_needed) } }
                @if let Some(error) = &job.error { dt { "Error" } dd.lock { (error) } }
                @if let (JobState::Running, Some(by)) = (job.state, &job.cancel_requested_by) {
                    dt { "Stopping" } dd.lock { "cancel requested by " (by) ": it stops before it switches anything" }
                }
            }
            @if viewer.actor().is_some() {
                p.actions {
                    @if job.state == JobState::Queued {
                        form.inline method="post" action={ "/ui/jobs/" (job.id) "/cancel" } {
                            (csrf(&viewer)) button.danger { "Cancel" }
                        }
                    }
                    @if stoppable {
                        form.inline method="post" action={ "/ui/jobs/" (job.id) "/cancel" } {
                            (csrf(&viewer)) button.danger { "Stop" }
                            span.muted { " before it switches anything (a switch under way finishes)" }
                        }
                    }
                    @if job.state == JobState::AwaitingApproval {
                        form.inline method="post" action={ "/ui/jobs/" (job.id) "/approve" } {
                            (csrf(&viewer)) button { "Approve" }
                        }
                        form.inline method="post" action={ "/ui/jobs/" (job.id) "/reject" } {
                            (csrf(&viewer)) button.danger { "Reject" }
                        }
                    }
                }
            }
            h2 { "Steps" }
            div #steps { (steps(&detail.steps)) }
            h2 {
                "Log"
                @if !job.state.is_final() { " " span #live { "(reload for new lines)" } }
            }
            @if job.state.is_final() {
                div #log { @for line in &detail.log { (log_line(line)) } }
            } @else {
                div #log data-live={ "/ui/jobs/" (job.id) "/events?after=" (after) } {
                    @for line in &detail.log { (log_line(line)) }
                }
            }
            h2 { "Events" }
            table.events {
                @for e in &detail.events {
                    tr { td.nowrap { (when(e.at)) } td { (e.state) } td { (e.message) } }
                }
            }
        },
    ))
}

/// One log line, as the live view appends them too.
fn log_line(line: &LogLine) -> Markup {
    html! { div.line { span.src { (line.host) " " (line.step) } " " (line.line) } }
}

/// The per-host, per-step results table (also sent, rendered, by the live view).
pub fn steps(steps: &[StepResult]) -> Markup {
    html! {
        @if steps.is_empty() { p.muted { "No step has finished yet." } }
        @else {
            table {
                thead { tr { th { "Attempt" } th { "Host" } th { "Step" } th { "Status" } th { "Exit" } th { "Took" } } }
                tbody {
                    @for s in steps {
                        tr {
                            td { (s.attempt) } td { (s.host) } td { code { (s.name) } }
                            td { span class={ "state " (step_class(&s.status)) } { (s.status) } }
                            td { @if let Some(code) = s.exit_code { (code) } }
                            td { (took(s.duration_ms)) }
                        }
                    }
                }
            }
        }
    }
}

/// The colour of a step status: `ok` green, anything else that ended red.
fn step_class(status: &str) -> &'static str {
    match status {
        "ok" => "succeeded",
        "running" => "running",
        _ => "failed",
    }
}

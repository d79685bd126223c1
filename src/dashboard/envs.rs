//! `GET /ui`: every environment — what is live (release, ref, commit, who, since when), its URL,
//! its lock, an ephemeral one's branch and time left, and its running and waiting jobs — with
//! the actions on it (roll back, lock, unlock) for a logged-in user.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::State;
use maud::{Markup, html};

use super::Viewer;
use super::layout::{self, Failure, csrf, link, short, when};
use crate::http::AppState;
use crate::overview::{self, LiveRelease};
use crate::store::{EphemeralRow, Job, JobState, Lock, now_ms};

/// One row of the page.
struct Row {
    app: String,
    env: String,
    url: Option<String>,
    live: Vec<LiveRelease>,
    /// Whether an earlier release exists to roll back to.
    earlier: bool,
    lock: Option<Lock>,
    ephemeral: Option<(EphemeralRow, Option<i64>)>,
    /// Running and waiting jobs, oldest first.
    active: Vec<Job>,
}

pub async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Markup, Failure> {
    let store = state.queue.store();
    let config = &state.config;
    let now = now_ms();
    let rows = store.ephemeral_envs().await?;
    let mut active: BTreeMap<String, Vec<Job>> = BTreeMap::new();
    for job in store.active_jobs(None).await? {
        active.entry(job.lane()).or_default().push(job);
    }
    let mut envs = Vec::new();
    for (app, env) in overview::lanes(config, &rows) {
        let ephemeral = rows
            .iter()
            .find(|r| r.app == app && r.env == env)
            .map(|row| (row.clone(), overview::ephemeral(config, row, now)));
        let url = match &ephemeral {
            Some((_, view)) => view.url.clone(),
            None => config.environment(&app, &env).and_then(|e| e.url.clone()),
        };
        envs.push(Row {
            live: overview::live_releases(store, &app, &env).await?,
            earlier: store.release_history(&app, &env, 2).await?.len() > 1,
            lock: store.env_lock(&app, &env, now).await?,
            active: active.remove(&format!("{app}/{env}")).unwrap_or_default(),
            ephemeral: ephemeral.map(|(row, view)| (row, view.left_ms)),
            url,
            app,
            env,
        });
    }
    Ok(layout::page(
        "Environments",
        Some(&viewer),
        html! {
            table.envs {
                thead { tr {
                    th { "Environment" } th { "Live" } th { "URL" } th { "Lock" }
                    th { "Jobs" } th { "Actions" }
                } }
                tbody {
                    @for row in &envs { (env_row(row, &viewer, now)) }
                }
            }
        },
    ))
}

fn env_row(row: &Row, viewer: &Viewer, now: i64) -> Markup {
    let lane = format!("{}/{}", row.app, row.env);
    let base = format!("/ui/envs/{}/{}", row.app, row.env);
    html! {
        tr id={ "env-" (row.app) "-" (row.env) } {
            td {
                a href={ "/ui/jobs?app=" (row.app) "&env=" (row.env) } { strong { (lane) } }
                @if let Some((eph, left_ms)) = &row.ephemeral {
                    div.muted {
                        "branch " code { (eph.branch) } ", " (eph.state.as_str().replace('_', " "))
                    }
                    div.muted {
                        @match left_ms {
                            Some(ms) => { (overview::left(*ms)) }
                            None => { "its template is no longer configured" }
                        }
                    }
                }
            }
            td {
                @if row.live.is_empty() { span.muted { "nothing deployed yet" } }
                @for r in &row.live {
                    div.live {
                        code { (r.release) } " of " code { (r.git_ref) } " (" code { (short(&r.sha)) } ")"
                        div.muted {
                            @if let Some(by) = &r.by { "by " (by) ", " }
                            "since " (when(r.since))
                            @if row.live.len() > 1 { " on " (r.hosts.join(", ")) }
                            " · " a href={ "/ui/jobs/" (r.job) } { "job #" (r.job) }
                        }
                    }
                }
            }
            td { @if let Some(url) = &row.url { (link(url)) } }
            td {
                @if let Some(lock) = &row.lock {
                    div.lock {
                        "locked by " (lock.holder) ": " (lock.reason)
                        @if let Some(until) = lock.expires_at { div.muted { "until " (when(until)) } }
                    }
                }
            }
            td {
                @for (i, job) in row.active.iter().enumerate() {
                    div {
                        a href={ "/ui/jobs/" (job.id) } { "#" (job.id) } " " (job.kind.as_str()) " "
                        (layout::state(job.state))
                        @if job.state != JobState::Running {
                            span.muted { " · " (i) " ahead" }
                        }
                    }
                }
            }
            td.actions {
                @if viewer.actor().is_some() {
                    @if row.earlier {
                        form.inline method="post" action={ (base) "/rollback" } {
                            (csrf(viewer))
                            input type="hidden" name="rendered" value=(now);
                            button.danger title="Back to the release live before this one" { "Roll back" }
                        }
                    }
                    @if row.lock.is_some() {
                        form.inline method="post" action={ (base) "/unlock" } {
                            (csrf(viewer))
                            button { "Unlock" }
                        }
                    } @else {
                        form.lockform method="post" action={ (base) "/lock" } {
                            (csrf(viewer))
                            input type="text" name="reason" placeholder="reason" required maxlength="200";
                            input type="text" name="for" placeholder="for, e.g. 2h";
                            button { "Lock" }
                        }
                    }
                }
            }
        }
    }
}

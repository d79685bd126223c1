//! `GET /ui/audit`: the newest job events of every environment — who asked for what and
//! through which channel, approvals and rejections, cancels, outcomes — newest first.

use axum::Extension;
use axum::extract::State;
use maud::{Markup, html};

use super::Viewer;
use super::layout::{self, Failure, when};
use crate::http::AppState;

/// How many events the page shows.
const EVENTS: i64 = 300;

pub async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Markup, Failure> {
    let events = state.queue.store().recent_events(EVENTS).await?;
    Ok(layout::page(
        "Audit",
        Some(&viewer),
        html! {
            p.muted { "The newest " (EVENTS) " job events. Locks and unlocks are in the service's log." }
            table.audit {
                thead { tr { th { "When" } th { "Job" } th { "Environment" } th { "Event" } th { "Message" } } }
                tbody {
                    @for e in &events {
                        tr {
                            td.nowrap { (when(e.at)) }
                            td.nowrap { a href={ "/ui/jobs/" (e.job_id) } { "#" (e.job_id) } " " (e.kind.as_str()) }
                            td { (e.lane) }
                            td { (e.state) }
                            td { (e.message) }
                        }
                    }
                }
            }
        },
    ))
}

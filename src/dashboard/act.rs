//! The dashboard's actions (`POST` forms): roll back, lock, unlock, cancel (a running deploy or
//! rollback: stop), approve, reject.
//! Each checks the form's CSRF token, then goes through [`crate::actions`] as the logged-in
//! user, with the same deployers check as Slack. A success redirects (303) to the page that
//! shows its effect; a refusal is a page saying why, logged here once.

use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Redirect;
use serde::Deserialize;

use super::Viewer;
use super::layout::Failure;
use crate::actions::Actions;
use crate::http::AppState;
use crate::queue::{Decision, Delivery};
use crate::requests::RequestError;

#[derive(Deserialize)]
pub struct Plain {
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub struct LockForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    /// How long, e.g. `2h`; empty: until unlocked.
    #[serde(default, rename = "for")]
    duration: String,
}

/// The actions of this viewer, if it may act and the form is theirs.
fn actions<'a>(
    state: &'a AppState,
    viewer: &'a Viewer,
    csrf: &str,
) -> Result<Actions<'a>, Failure> {
    let Some(actor) = viewer.actor() else {
        return Err(Failure::Refused(
            StatusCode::FORBIDDEN,
            "The dashboard is read-only: no [dashboard] users are configured.".into(),
        ));
    };
    if !viewer.csrf_ok(csrf) {
        tracing::warn!(
            user.id = actor.id,
            "dashboard action with a wrong CSRF token refused"
        );
        return Err(Failure::Refused(
            StatusCode::FORBIDDEN,
            "This form is stale or not from this dashboard (CSRF token mismatch): reload the page and try again.".into(),
        ));
    }
    Ok(Actions {
        config: &state.config,
        queue: &state.queue,
        actor,
        delivery: None,
        clock: state.clock.as_ref(),
    })
}

/// A refusal from [`crate::actions`], logged once, as the user's page.
fn refused(actions: &Actions<'_>, err: RequestError) -> Failure {
    match err {
        RequestError::Invalid(why) => {
            tracing::info!(user.id = actions.actor.id, reason = %why, "dashboard request refused");
            Failure::Refused(StatusCode::FORBIDDEN, why)
        }
        RequestError::Store(err) => Failure::Store(err),
    }
}

#[derive(Deserialize)]
pub struct RollbackForm {
    #[serde(default)]
    csrf: String,
    /// When the page with the form was rendered (ms): with the user and the environment, it
    /// names this request, so a double submit queues one rollback.
    #[serde(default)]
    rendered: String,
}

pub async fn rollback(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path((app, env)): Path<(String, String)>,
    Form(form): Form<RollbackForm>,
) -> Result<Redirect, Failure> {
    let mut actions = actions(&state, &viewer, &form.csrf)?;
    // The user's id is part of it: whatever they put in the form, it can only name a request
    // of their own (and then they are shown that request's job).
    let delivery = (!form.rendered.is_empty() && form.rendered.len() <= 20).then(|| {
        format!(
            "dashboard:{}:rollback:{app}/{env}:{}",
            actions.actor.id, form.rendered
        )
    });
    actions.delivery = delivery.as_deref().map(|id| Delivery {
        id,
        source: "dashboard",
        event: "rollback",
    });
    let id = actions
        .rollback(&app, &env, None)
        .await
        .map_err(|e| refused(&actions, e))?;
    Ok(Redirect::to(&format!("/ui/jobs/{id}")))
}

pub async fn lock(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path((app, env)): Path<(String, String)>,
    Form(form): Form<LockForm>,
) -> Result<Redirect, Failure> {
    let actions = actions(&state, &viewer, &form.csrf)?;
    let reason = form.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(Failure::Refused(
            StatusCode::BAD_REQUEST,
            "Say why you lock it (up to 200 characters).".into(),
        ));
    }
    let duration = match form.duration.trim() {
        "" => None,
        text => Some(humantime::parse_duration(text).map_err(|e| {
            Failure::Refused(
                StatusCode::BAD_REQUEST,
                format!("{text:?} is not a duration such as 2h: {e}"),
            )
        })?),
    };
    actions
        .lock(&app, &env, reason.to_owned(), duration)
        .await
        .map_err(|e| refused(&actions, e))?;
    Ok(Redirect::to("/ui"))
}

pub async fn unlock(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path((app, env)): Path<(String, String)>,
    Form(form): Form<Plain>,
) -> Result<Redirect, Failure> {
    let actions = actions(&state, &viewer, &form.csrf)?;
    actions
        .unlock(&app, &env)
        .await
        .map_err(|e| refused(&actions, e))?;
    Ok(Redirect::to("/ui"))
}

pub async fn cancel(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<i64>,
    Form(form): Form<Plain>,
) -> Result<Redirect, Failure> {
    let actions = actions(&state, &viewer, &form.csrf)?;
    actions.cancel(id).await.map_err(|e| refused(&actions, e))?;
    Ok(Redirect::to(&format!("/ui/jobs/{id}")))
}

pub async fn approve(
    state: State<AppState>,
    viewer: Extension<Viewer>,
    id: Path<i64>,
    form: Form<Plain>,
) -> Result<Redirect, Failure> {
    decide(state, viewer, id, form, true).await
}

pub async fn reject(
    state: State<AppState>,
    viewer: Extension<Viewer>,
    id: Path<i64>,
    form: Form<Plain>,
) -> Result<Redirect, Failure> {
    decide(state, viewer, id, form, false).await
}

async fn decide(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<i64>,
    Form(form): Form<Plain>,
    approve: bool,
) -> Result<Redirect, Failure> {
    let actions = actions(&state, &viewer, &form.csrf)?;
    let (_, decision) = actions
        .decide(id, approve)
        .await
        .map_err(|e| refused(&actions, e))?;
    match decision {
        Decision::Approved { .. } | Decision::Rejected => {
            Ok(Redirect::to(&format!("/ui/jobs/{id}")))
        }
        Decision::Expired => Err(Failure::Refused(
            StatusCode::CONFLICT,
            format!("Job #{id} waited too long for approval and expired."),
        )),
        Decision::AlreadyDecided => Err(Failure::Refused(
            StatusCode::CONFLICT,
            format!("You already decided on job #{id}."),
        )),
        Decision::NotAwaiting(state) => Err(Failure::Refused(
            StatusCode::CONFLICT,
            format!(
                "Job #{id} is not waiting for approval: it is {}.",
                state.as_str()
            ),
        )),
        Decision::Missing => Err(Failure::NotFound(format!("There is no job #{id}."))),
    }
}

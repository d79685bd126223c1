//! `POST /slack/commands` (a slash command) and `POST /slack/interactions` (a click on a
//! message's button): verify, parse, check the team, carry out, answer.
//!
//! Order matters, as for GitHub's webhooks: the signature and its timestamp's freshness are
//! checked on the raw bytes before anything parses them (with the real clock), the team before
//! anything reads the store, and a job is committed before the answer says it is queued. The
//! request's timestamp and signature name it as a delivery, so a retry of a request already
//! handled (`X-Slack-Retry-Num`) finds the job the first one queued and queues nothing new.
//!
//! A command is answered in the HTTP response, as a message only its user sees; one still at
//! work after `slack.answer_within` (Slack waits 3 s) is answered "working on it", and its
//! result follows through the `response_url` Slack sent (the command is not abandoned: it runs
//! to its end either way). Slack ignores the response body of a button click, so that answer
//! goes to the `response_url` too.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::config::Slack;
use crate::queue::Delivery;
use crate::slack::api::SlackApi;
use crate::slack::execute::{Context, User};
use crate::slack::messages::{APPROVE_ACTION, REJECT_ACTION, RETRY_ACTION, ROLLBACK_ACTION};
use crate::slack::signature::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Slack's requests are small forms; a bigger body is refused before it is hashed.
pub const MAX_BODY: usize = 1024 * 1024;

/// How long answering a click through its `response_url` may take. The job is queued by then;
/// Slack wants the click's own answer within 3 s.
const RESPOND_TIMEOUT: Duration = Duration::from_secs(2);

/// The fields of a slash command slipway reads (Slack sends more).
#[derive(Deserialize)]
struct CommandForm {
    team_id: String,
    user_id: String,
    #[serde(default)]
    user_name: String,
    channel_id: String,
    command: String,
    text: String,
    /// Where an answer that takes longer than `slack.answer_within` is sent.
    #[serde(default)]
    response_url: String,
}

/// The answer of a command still at work when `slack.answer_within` is up.
const STILL_WORKING: &str =
    ":hourglass_flowing_sand: Working on it: the answer will follow here in a moment.";

pub async fn command(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (slack, api) = verify(&state, &headers, &body)?;
    let mut form: CommandForm = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid slash command form: {e}")))?;
    same_team(slack, &form.team_id, &form.user_id)?;
    tracing::info!(
        slack.user = %form.user_id,
        slack.channel = %form.channel_id,
        slack.command = %form.command,
        slack.text = ?form.text,
        "slack command"
    );
    let delivery = delivery_id(&headers);
    let response_url = std::mem::take(&mut form.response_url);
    let user_id = form.user_id.clone();
    // Owns what it uses, so it can go on after the answer if it runs late (a slow fetch).
    let mut work = Box::pin({
        let state = state.clone();
        async move {
            let user = User {
                id: &form.user_id,
                name: &form.user_name,
            };
            context(&state, user, &delivery, "command")
                .command(&form.text)
                .await
        }
    });
    let text = match tokio::time::timeout(slack.answer_within, &mut work).await {
        Ok(answer) => answer?,
        Err(_) => {
            let (api, masker) = (api.clone(), state.masker.clone());
            tokio::spawn(async move {
                let text = match work.await {
                    Ok(text) => text,
                    Err(err) => {
                        tracing::error!(slack.user = %user_id, error = %err, "slack command failed on the database");
                        ":x: That failed: the database is unavailable. Try again in a moment."
                            .into()
                    }
                };
                follow_up(&api, &response_url, &masker.mask(&text), &user_id).await;
            });
            STILL_WORKING.to_owned()
        }
    };
    Ok(Json(json!({
        "response_type": "ephemeral",
        "text": state.masker.mask(&text),
    })))
}

/// Sends `text` to a command's or a click's `response_url`; a failure is logged (the request
/// is answered already, or is being).
async fn follow_up(api: &SlackApi, response_url: &str, text: &str, user_id: &str) {
    let answered = tokio::time::timeout(RESPOND_TIMEOUT, api.respond(response_url, text))
        .await
        .map_err(|_| format!("no answer within {} s", RESPOND_TIMEOUT.as_secs()))
        .and_then(|sent| sent.map_err(|e| e.to_string()));
    if let Err(err) = answered {
        tracing::warn!(slack.user = %user_id, error = %err, "could not answer through the response_url");
    }
}

#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

pub async fn interaction(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let (slack, api) = verify(&state, &headers, &body)?;
    let form: InteractionForm = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid interaction form: {e}")))?;
    // Read as JSON values, not slack-morphism's types: those reject block and element types
    // they do not know, and only these few fields matter here.
    let payload: Value = serde_json::from_str(&form.payload)
        .map_err(|e| ApiError::BadRequest(format!("invalid interaction payload: {e}")))?;
    let field = |pointer: &str| payload.pointer(pointer).and_then(Value::as_str);
    let user_id = field("/user/id").unwrap_or_default();
    same_team(slack, field("/team/id").unwrap_or_default(), user_id)?;
    if field("/type") != Some("block_actions") {
        // Our messages only have buttons; anything else is acknowledged and ignored.
        return Ok(StatusCode::OK);
    }
    let Some(actions) = payload["actions"].as_array() else {
        return Err(ApiError::BadRequest("block_actions without actions".into()));
    };
    let known = [ROLLBACK_ACTION, RETRY_ACTION, APPROVE_ACTION, REJECT_ACTION];
    let Some((action, value)) = actions.iter().find_map(|a| {
        let action = known.into_iter().find(|k| a["action_id"] == *k)?;
        Some((action, a["value"].as_str()?))
    }) else {
        return Ok(StatusCode::OK);
    };
    let Some(response_url) = field("/response_url").filter(|_| !user_id.is_empty()) else {
        return Err(ApiError::BadRequest(
            "block_actions without user.id or response_url".into(),
        ));
    };
    tracing::info!(slack.user = %user_id, slack.action = action, slack.value = ?value, "slack button");
    let delivery = delivery_id(&headers);
    let user = User {
        id: user_id,
        name: field("/user/username")
            .or(field("/user/name"))
            .unwrap_or(user_id),
    };
    let context = context(&state, user, &delivery, "block_actions");
    let text = match action {
        ROLLBACK_ACTION => context.rollback_button(value).await?,
        RETRY_ACTION => context.retry_button(value).await?,
        _ => {
            context
                .approval_button(value, action == APPROVE_ACTION)
                .await?
        }
    };
    // Answered before the click is: waiting keeps no task running past the request, and the
    // job this answer describes is already committed.
    follow_up(api, response_url, &state.masker.mask(&text), user_id).await;
    Ok(StatusCode::OK)
}

fn context<'a>(
    state: &'a AppState,
    user: User<'a>,
    delivery: &'a str,
    event: &'static str,
) -> Context<'a> {
    Context {
        config: &state.config,
        queue: &state.queue,
        mirrors: &state.mirrors,
        reads: &state.slack_reads,
        clock: state.clock.as_ref(),
        user,
        delivery: Delivery {
            id: delivery,
            source: "slack",
            event,
        },
    }
}

/// The Slack config and client, once the request's signature checked out.
fn verify<'s>(
    state: &'s AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(&'s Slack, &'s SlackApi), ApiError> {
    let (Some(slack), Some(api)) = (&state.config.slack, &state.slack) else {
        return Err(ApiError::NotFound(
            "Slack is not configured here (no [slack] section)".into(),
        ));
    };
    let secret = slack.signing_secret.expose_secret().as_bytes();
    signature::verify(secret, headers, body, chrono::Utc::now().timestamp())
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    Ok((slack, api))
}

/// Requests from any workspace but the configured one are refused, even correctly signed ones
/// (one Slack app can be installed in several workspaces).
fn same_team(slack: &Slack, team: &str, user: &str) -> Result<(), ApiError> {
    if team == slack.team_id {
        return Ok(());
    }
    tracing::warn!(slack.team = %team, slack.user = %user, "slack request from another team refused");
    Err(ApiError::Forbidden(
        "this slipway does not answer requests from this Slack workspace".into(),
    ))
}

/// The request's identity as a delivery: its timestamp and signature (both checked already).
fn delivery_id(headers: &HeaderMap) -> String {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    format!(
        "slack:{}:{}",
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER)
    )
}

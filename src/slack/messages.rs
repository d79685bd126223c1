//! What slipway says in Slack, built from records: the replies to commands and the channel
//! message that follows a job. Pure, so every wording is tested here.
//!
//! Text that came from a person or a repository (refs, names, errors) goes through [`escape`]:
//! Slack reads `<...>` as links and mentions, so a branch named `demo/<!channel>` would otherwise
//! ping the whole channel. App and environment names are validated names and need no escaping.

use slack_morphism::blocks::{
    SlackActionsBlock, SlackBlockButtonElement, SlackBlockButtonStyle, SlackSectionBlock,
};
use slack_morphism::{SlackActionId, SlackMessageContent, md, pt};

use crate::deploy::journal::Progress;
use crate::overview::{LiveRelease, left};
use crate::queue::Outcome;
use crate::store::{AHEAD_COUNTED, Job, JobKind, JobState};

/// The `action_id` of the Roll back button on a finished deploy's message; its value is the
/// environment, `app/env`.
pub const ROLLBACK_ACTION: &str = "rollback";

/// The `action_id` of the Retry button on a failed deploy's message; its value is the job id.
pub const RETRY_ACTION: &str = "retry";

/// Lines of a failing step's log shown in the thread reply, and at most this many characters
/// of them (Slack's section blocks take 3000).
const LOG_LINES: usize = 30;
const LOG_CHARS: usize = 2800;

/// Longest excerpt of an error shown in a message (Slack's section blocks take 3000 characters).
const ERROR_EXCERPT: usize = 300;

/// `text` with the three characters Slack's message formatting gives a meaning escaped, as
/// Slack documents (`&amp;`, `&lt;`, `&gt;`).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack's limit on a section block's text, in characters.
const SECTION_CHARS: usize = 3000;

/// An announcement (a release and its notes) as plain text: nothing in it can ping or link.
/// Escaped, then cut to fit a section block; a cut never splits an escape (`&lt;`) and ends
/// in `…`, so the end of the text is what goes (a release's notes come last).
pub fn announcement(text: &str) -> String {
    let escaped = escape(text);
    if escaped.chars().count() <= SECTION_CHARS {
        return escaped;
    }
    let mut cut = String::new();
    let mut chars = 0;
    let mut buf = [0; 4];
    for c in text.chars() {
        let piece = escape(c.encode_utf8(&mut buf));
        chars += piece.chars().count();
        if chars > SECTION_CHARS - 1 {
            break;
        }
        cut.push_str(&piece);
    }
    cut.push('…');
    cut
}

/// `text` as inline code, escaped; a backtick (which would end the span) is shown as `ˋ`.
pub fn code(text: &str) -> String {
    format!("`{}`", escape(text).replace('`', "ˋ"))
}

/// A time that Slack shows in each reader's own time zone; the UTC text is the fallback.
fn when(ms: i64) -> String {
    let utc = chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{utc}>",
        ms.div_euclid(1000)
    )
}

fn short(sha: &str) -> &str {
    sha.get(..8).unwrap_or(sha)
}

/// `` (`1a2b3c4d`)``, the commit after a ref; nothing before a deploy queued by a ref's name
/// has looked its commit up (it does as it starts).
fn commit(sha: &str) -> String {
    match sha {
        "" => String::new(),
        sha => format!(" ({})", code(short(sha))),
    }
}

fn lane(job: &Job) -> String {
    format!("{}/{}", job.app, job.env)
}

fn took(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// What a job does, in a few words: ``deploy `main` (`1a2b3c4d`) → shop/staging``.
pub fn describe(job: &Job) -> String {
    match job.kind {
        JobKind::Deploy => format!(
            "deploy {}{} → {}",
            code(&job.git_ref),
            commit(&job.sha),
            lane(job)
        ),
        JobKind::Rollback => format!(
            "roll back {} to release {}",
            lane(job),
            code(job.release_id().as_str())
        ),
        JobKind::Teardown => format!("tear down {}", lane(job)),
        JobKind::Cleanup => format!("clean up the ephemeral environments of {}", job.app),
        JobKind::Reconcile => format!("reconcile {} with GitHub", job.app),
        JobKind::Release => format!("release {} of {}", code(&job.git_ref), job.app),
    }
}

/// The answer to a request that queued job `job` with `ahead` jobs of its environment before it.
pub fn queued(job: &Job, ahead: i64) -> String {
    let ahead = match ahead {
        0 => "nothing ahead of you".to_owned(),
        n if n > AHEAD_COUNTED => format!("more than {AHEAD_COUNTED} ahead of you"),
        n => format!("{n} ahead of you"),
    };
    format!("Queued #{}: {} ({ahead})", job.id, describe(job))
}

/// What runs in one environment: nothing, one release, or (after a partial failure) several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneStatus {
    pub lane: String,
    pub live: Vec<LiveRelease>,
}

/// `status`: what is live where, then what is running and queued (oldest first).
pub fn status(lanes: &[LaneStatus], active: &[Job]) -> String {
    let mut out = Vec::new();
    for lane in lanes {
        match lane.live.as_slice() {
            [] => out.push(format!("*{}*: nothing deployed yet", lane.lane)),
            [only] => out.push(format!("*{}*: {}", lane.lane, live(only, false))),
            several => {
                out.push(format!("*{}*: hosts differ", lane.lane));
                out.extend(several.iter().map(|r| format!("    • {}", live(r, true))));
            }
        }
    }
    if active.is_empty() {
        out.push("Nothing running or queued.".into());
    }
    for job in active {
        let state = match job.state {
            JobState::Running => format!(
                "running since {}",
                when(job.started_at.unwrap_or(job.created_at))
            ),
            _ => format!("queued {}", when(job.created_at)),
        };
        out.push(format!(
            "#{} {} by {}: {state}",
            job.id,
            describe(job),
            escape(&job.requested_by)
        ));
    }
    out.join("\n")
}

fn live(r: &LiveRelease, hosts: bool) -> String {
    let mut line = format!(
        "release {} of {} ({})",
        code(&r.release),
        code(&r.git_ref),
        code(short(&r.sha))
    );
    if let Some(by) = &r.by {
        line.push_str(&format!(" by {}", escape(by)));
    }
    line.push_str(&format!(", live since {}", when(r.since)));
    if hosts {
        line.push_str(&format!(" on {}", escape(&r.hosts.join(", "))));
    }
    line
}

/// A configured environment, for `envs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvLine {
    pub lane: String,
    pub url: Option<String>,
}

/// An ephemeral environment, for `envs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralLine {
    pub lane: String,
    pub branch: String,
    pub url: Option<String>,
    /// Its state, as stored (`live`, `provisioning`...).
    pub state: String,
    /// Until cleanup may tear it down (negative: overdue); `None` when its template is no
    /// longer configured.
    pub left_ms: Option<i64>,
}

/// `envs`: the configured environments, then the ephemeral ones.
pub fn envs(configured: &[EnvLine], ephemeral: &[EphemeralLine]) -> String {
    let mut out = vec!["*Environments*".to_owned()];
    for env in configured {
        out.push(match &env.url {
            Some(url) => format!("• {} — {}", env.lane, escape(url)),
            None => format!("• {}", env.lane),
        });
    }
    if ephemeral.is_empty() {
        out.push("No ephemeral environments.".into());
    } else {
        out.push("*Ephemeral*".into());
    }
    for env in ephemeral {
        let url = env
            .url
            .as_deref()
            .map(|u| format!(" — {}", escape(u)))
            .unwrap_or_default();
        out.push(format!(
            "• {} — branch {}{url} — {}, {}",
            env.lane,
            code(&env.branch),
            env.state.replace('_', " "),
            env.left_ms
                .map_or_else(|| "its template is no longer configured".into(), left)
        ));
    }
    out.join("\n")
}

/// `history ENV`: the environment's newest jobs, newest first, each with how it ended.
pub fn history(lane: &str, jobs: &[Job]) -> String {
    if jobs.is_empty() {
        return format!("Nothing was deployed to {lane} yet.");
    }
    let mut out = vec![format!("*{lane}*, newest first:")];
    for job in jobs {
        out.push(format!(
            "• #{} {} by {} — {}",
            job.id,
            describe(job),
            escape(&job.requested_by),
            outcome(job)
        ));
    }
    out.join("\n")
}

fn outcome(job: &Job) -> String {
    let at = when(job.finished_at.unwrap_or(job.created_at));
    let took = job
        .duration_ms()
        .map(|ms| format!(", took {}", took(ms)))
        .unwrap_or_default();
    match job.state {
        JobState::Queued => format!("queued {}", when(job.created_at)),
        JobState::Running => format!(
            "running since {}",
            when(job.started_at.unwrap_or(job.created_at))
        ),
        JobState::Succeeded => format!("succeeded {at}{took}"),
        JobState::Failed => format!(
            "failed {at}{took}: {}",
            excerpt(job.error.as_deref().unwrap_or("no reason recorded"))
        ),
        JobState::AwaitingApproval => format!("awaiting approval since {}", when(job.created_at)),
        JobState::Superseded
        | JobState::Cancelled
        | JobState::Skipped
        | JobState::Rejected
        | JobState::Expired => format!("{} {at}", job.state.as_str()),
    }
}

/// An error's first line, escaped and shortened.
fn excerpt(error: &str) -> String {
    let first = error.lines().next().unwrap_or_default();
    let mut text: String = first.chars().take(ERROR_EXCERPT).collect();
    if text.len() < error.len() {
        text.push('…');
    }
    escape(&text)
}

/// The channel message of a job that just started.
pub fn started(job: &Job) -> String {
    let head = match job.kind {
        JobKind::Deploy => format!(
            ":rocket: Deploying {}{} to {}",
            code(&job.git_ref),
            commit(&job.sha),
            lane(job)
        ),
        JobKind::Rollback => format!(
            ":rewind: Rolling back {} to release {}{}",
            lane(job),
            code(job.release_id().as_str()),
            commit(&job.sha)
        ),
        JobKind::Teardown => format!(":wastebasket: Tearing down {}", lane(job)),
        JobKind::Cleanup | JobKind::Reconcile => format!(":broom: Starting to {}", describe(job)),
        JobKind::Release => format!(":package: Starting the {}", describe(job)),
    };
    let attempt = match job.attempt {
        ..=1 => String::new(),
        n => format!(" (attempt {n})"),
    };
    format!("{head} — {}{attempt}", signature(job))
}

fn signature(job: &Job) -> String {
    format!(
        "job #{}, requested by {}",
        job.id,
        escape(&job.requested_by)
    )
}

/// The channel message of a job that ended: what it did, how it ended, and where to look.
pub fn finished(job: &Job, outcome: &Outcome, url: Option<&str>, took_ms: Option<i64>) -> String {
    let lane = lane(job);
    let (git_ref, sha) = (code(&job.git_ref), commit(&job.sha));
    let release = code(job.release_id().as_str());
    let head = match (job.kind, outcome) {
        (_, Outcome::Cancelled { .. }) => format!(":no_entry_sign: Cancelled: {}", describe(job)),
        (JobKind::Deploy, Outcome::Succeeded { .. }) => {
            format!(":white_check_mark: Deployed {git_ref}{sha} to {lane}")
        }
        (JobKind::Deploy, Outcome::Failed { .. }) => {
            format!(":x: Deploy of {git_ref}{sha} to {lane} failed")
        }
        (JobKind::Rollback, Outcome::Succeeded { .. }) => {
            format!(":white_check_mark: Rolled back {lane} to release {release}{sha}")
        }
        (JobKind::Rollback, Outcome::Failed { .. }) => {
            format!(":x: Rollback of {lane} to release {release} failed")
        }
        (JobKind::Teardown, Outcome::Succeeded { .. }) => {
            format!(":white_check_mark: Tore down {lane}")
        }
        (JobKind::Teardown, Outcome::Failed { .. }) => format!(":x: Teardown of {lane} failed"),
        (JobKind::Release, Outcome::Succeeded { message }) => {
            format!(":package: {}", escape(message))
        }
        (JobKind::Release, Outcome::Failed { .. }) => format!(":x: The {} failed", describe(job)),
        (JobKind::Cleanup | JobKind::Reconcile, Outcome::Succeeded { .. }) => {
            format!(":white_check_mark: Done: {}", describe(job))
        }
        (JobKind::Cleanup | JobKind::Reconcile, Outcome::Failed { .. }) => {
            format!(":x: Failed to {}", describe(job))
        }
    };
    let took = took_ms
        .map(|ms| format!(" in {}", took(ms)))
        .unwrap_or_default();
    let mut text = format!("{head}{took} — {}", signature(job));
    match outcome {
        Outcome::Succeeded { message } => {
            text.push_str(&format!("\n{}", escape(message)));
            if let Some(url) = url.filter(|_| job.kind != JobKind::Teardown) {
                text.push_str(&format!("\n{}", escape(url)));
            }
        }
        Outcome::Failed { error, .. } => text.push_str(&format!("\n> {}", excerpt(error))),
        Outcome::Cancelled { message } => text.push_str(&format!("\n{}", escape(message))),
    }
    text
}

/// The button under a finished job's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Roll back this environment (`app/env`), after a successful deploy.
    RollBack(String),
    /// Deploy the same ref and commit again, after a failed deploy (the job id).
    Retry(i64),
}

/// A job's channel message: `text`, and the button of `action` when given. `text` is also the
/// notification's and the fallback's text.
pub fn job_message(text: String, action: Option<Action>) -> SlackMessageContent {
    let mut blocks = vec![SlackSectionBlock::new().with_text(md!(text.clone())).into()];
    let button = match action {
        Some(Action::RollBack(lane)) => Some(("Roll back", ROLLBACK_ACTION, lane)),
        Some(Action::Retry(id)) => Some(("Retry", RETRY_ACTION, id.to_string())),
        None => None,
    };
    if let Some((label, action, value)) = button {
        let button = SlackBlockButtonElement::new(pt!(label.to_owned()))
            .with_action_id(SlackActionId(action.into()))
            .with_value(value);
        blocks.push(SlackActionsBlock::new(vec![button.into()]).into());
    }
    SlackMessageContent::new()
        .with_text(text)
        .with_blocks(blocks)
}

/// The message of a running job: how it started, then each host's steps so far.
pub fn progress(job: &Job, progress: &Progress) -> String {
    let mut text = started(job);
    for (host, p) in &progress.hosts {
        let steps = if p.done == 1 { "step" } else { "steps" };
        text.push_str(&format!(
            "\n• {}: {} {steps} done, last {} ({})",
            code(host),
            p.done,
            code(&p.last),
            p.status.replace('_', " ")
        ));
    }
    text
}

/// The thread reply under a failed job's message: where it failed and the end of that step's
/// log, in a code block. `result` is the job's stored failure (`host`, `step`, `reason`,
/// `log_tail`, masked when recorded); `None` when there is no log to show.
pub fn failure_log(result: &serde_json::Value) -> Option<String> {
    let lines: Vec<&str> = result["log_tail"]
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    if lines.is_empty() {
        return None;
    }
    // The last lines that fit, newest kept: the error is usually at the end.
    let mut kept: Vec<&str> = Vec::new();
    let mut size = 0;
    for line in lines.iter().rev().take(LOG_LINES) {
        let line_size = line.chars().count() + 1;
        if size + line_size > LOG_CHARS {
            break;
        }
        size += line_size;
        kept.push(line);
    }
    kept.reverse();
    let cut = if kept.len() < lines.len() {
        format!(" (last {} of {} lines)", kept.len(), lines.len())
    } else {
        String::new()
    };
    let at = match (result["host"].as_str(), result["step"].as_str()) {
        (Some(host), Some(step)) => format!("Step {} on {} failed", code(step), code(host)),
        (Some(host), None) => format!("{} failed", code(host)),
        _ => "It failed".to_owned(),
    };
    // Inside a code block Slack still reads `<...>` and would end the block at a "```".
    let log = escape(&kept.join("\n")).replace("```", "ˋˋˋ");
    Some(format!("{at}; its log{cut}:\n```\n{log}\n```"))
}

/// The direct message to the person who asked for a job that failed.
pub fn failed_dm(job: &Job, error: &str) -> String {
    format!(
        ":x: Your {} failed (job #{}): {}",
        describe(job),
        job.id,
        excerpt(error)
    )
}

/// The Slack user id of the person who asked for `job`, when they asked in Slack (jobs record
/// them as `name (U0123ABCD)`).
pub fn slack_requester(job: &Job) -> Option<&str> {
    if job.source != "slack" {
        return None;
    }
    let id = job.requested_by.strip_suffix(')')?.rsplit_once('(')?.1;
    let valid = id.starts_with(['U', 'W'])
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    valid.then_some(id)
}

/// The `action_id`s of the Approve and Reject buttons; their value is the job id.
pub const APPROVE_ACTION: &str = "approve";
pub const REJECT_ACTION: &str = "reject";

/// The channel message asking for a job's approvals.
pub fn approval_needed(job: &Job) -> String {
    let within = job
        .approve_by
        .map_or(String::new(), |by| format!(" before {}", when(by)));
    format!(
        ":raised_hand: Approval needed: {} — {}. {} approval(s) from its deployers{within}; \
         not from the requester.",
        describe(job),
        signature(job),
        job.approvals_needed
    )
}

/// `text` with Approve and Reject buttons for job `id`.
pub fn approval_message(text: String, id: i64) -> SlackMessageContent {
    let button = |label: &str, action: &str, style: SlackBlockButtonStyle| {
        SlackBlockButtonElement::new(pt!(label.to_owned()))
            .with_action_id(SlackActionId(action.into()))
            .with_value(id.to_string())
            .with_style(style)
            .into()
    };
    let blocks = vec![
        SlackSectionBlock::new().with_text(md!(text.clone())).into(),
        SlackActionsBlock::new(vec![
            button("Approve", APPROVE_ACTION, SlackBlockButtonStyle::Primary),
            button("Reject", REJECT_ACTION, SlackBlockButtonStyle::Danger),
        ])
        .into(),
    ];
    SlackMessageContent::new()
        .with_text(text)
        .with_blocks(blocks)
}

/// The answer to `help`.
pub fn help() -> String {
    crate::slack::command::USAGE.to_owned()
}

#[cfg(test)]
mod tests;

//! Carrying out what a Slack user asked: a parsed command, or a click on a message's button
//! (Roll back, Retry, Approve, Reject). Rollbacks, retries, cancels, approvals, locks and keeps
//! go through [`crate::actions`] (with its one permission check, shared with the dashboard),
//! deploys through [`crate::requests`] like the CLI's and the API's; status, envs and history
//! are reads of the store; every text comes from [`super::messages`].
//!
//! A refusal (the text did not parse, an unknown environment, not a deployer, a request
//! `requests` turned down) is the user's answer, and is logged here, once, with their user id.

use crate::actions::Cancelled;
use crate::actions::{Actions, Actor};
use crate::clock::Clock;
use crate::coalesce::Latest;
use crate::config::{App, Config};
use crate::deploy::source::Mirrors;
use crate::domain::{GitRef, Name};
use crate::overview;
use crate::queue::{Decision, Delivery, Queue};
use crate::requests::{self, RequestError, Target};
use crate::store::{EphemeralRow, StoreError, now_ms};

use super::command::{self, Command, Known, KnownApp, Lane, Refusal};
use super::messages::{self, EnvLine, EphemeralLine, LaneStatus};

/// How many jobs `history` shows.
const HISTORY: i64 = 10;

/// The Slack user behind a request.
#[derive(Debug, Clone, Copy)]
pub struct User<'a> {
    pub id: &'a str,
    /// Their user name, as Slack sent it (display only: the id is what permissions check).
    pub name: &'a str,
}

/// The ephemeral environments as one read of them returned them.
type Rows = std::sync::Arc<Vec<EphemeralRow>>;

/// Reads that concurrent Slack requests share ([`Latest`]): a burst of commands reads the
/// environments once, and a burst of `status` reads the store once, each as fresh as a read of
/// its own would have been.
#[derive(Debug, Default)]
pub struct Reads {
    /// Every ephemeral environment, which the parser may name.
    envs: Latest<Vec<EphemeralRow>>,
    /// The answer to `status` for every environment.
    status: Latest<String>,
}

/// What carrying out one request needs.
pub struct Context<'a> {
    pub config: &'a Config,
    pub queue: &'a Queue,
    pub mirrors: &'a Mirrors,
    pub reads: &'a Reads,
    pub user: User<'a>,
    /// This request, so that Slack's retry of it queues nothing new.
    pub delivery: Delivery<'a>,
    pub clock: &'a dyn Clock,
}

/// Why a request was not carried out.
enum Failure {
    /// In words for the user.
    Refused(String),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

impl From<RequestError> for Failure {
    fn from(err: RequestError) -> Self {
        match err {
            RequestError::Invalid(why) => Self::Refused(why),
            RequestError::Store(err) => Self::Store(err),
        }
    }
}

fn refused(why: impl Into<String>) -> Failure {
    Failure::Refused(why.into())
}

impl Context<'_> {
    /// Carries out the text after the slash command and returns the answer for the user.
    pub async fn command(&self, text: &str) -> Result<String, StoreError> {
        let (parsed, rows) = self.parse(text).await?;
        let answer = match parsed {
            // Boxed, as are the large commands in `run`: a future holds the state of every
            // command it may run, and an inline one is copied whole at each level it is
            // awaited through (axum boxes the handler's, too), so `status` would pay for
            // `deploy`'s size.
            Ok(command) => Box::pin(self.run(command, rows)).await,
            Err(refusal) => Err(refused(refusal.to_string())),
        };
        self.answer(answer)
    }

    /// Parses `text` against the environments it may name: the configured ones and the
    /// ephemeral ones that exist now (a read of the store, shared by concurrent commands), which
    /// are returned when they were read. With one app the ephemeral environments only add names
    /// to that same app, and a name that resolves without them resolves the same with them (a
    /// configured one comes first; a property test of the parser says so), so a text the
    /// configured ones parse costs no read (BENCHMARKS.md, "Queuing /deploy", session 11).
    async fn parse(
        &self,
        text: &str,
    ) -> Result<(Result<Command, Refusal>, Option<Rows>), StoreError> {
        if self.config.apps.len() == 1
            && let Ok(command) = command::parse(text, &known(self.config, &[]))
        {
            return Ok((Ok(command), None));
        }
        let rows = self.ephemeral_rows().await?;
        Ok((command::parse(text, &known(self.config, &rows)), Some(rows)))
    }

    /// Every ephemeral environment, read as fresh as a read of this request's own would be.
    async fn ephemeral_rows(&self) -> Result<Rows, StoreError> {
        let store = self.queue.store();
        self.reads.envs.get(|| store.ephemeral_envs()).await
    }

    /// A click on a finished deploy's Roll back button, whose value is `app/env`.
    pub async fn rollback_button(&self, value: &str) -> Result<String, StoreError> {
        let answer = match value.split_once('/') {
            Some((app, env)) => self.rollback(app, env, None).await,
            None => Err(refused(format!("{value:?} is not an environment"))),
        };
        self.answer(answer)
    }

    /// A click on a failed deploy's Retry button (value: the job id): the same ref and commit
    /// again, checked and queued as a deploy command is.
    pub async fn retry_button(&self, value: &str) -> Result<String, StoreError> {
        let answer = self.retry(value).await;
        self.answer(answer)
    }

    async fn retry(&self, value: &str) -> Result<String, Failure> {
        let id = job_id(value)?;
        let id = self.actions().retry(id).await?;
        self.queued(id).await
    }

    /// A click on Approve or Reject of a job awaiting approval (value: the job id). Only the
    /// environment's deployers decide, and never on their own request.
    pub async fn approval_button(&self, value: &str, approve: bool) -> Result<String, StoreError> {
        let answer = self.decide(value, approve).await;
        self.answer(answer)
    }

    async fn decide(&self, value: &str, approve: bool) -> Result<String, Failure> {
        let id = job_id(value)?;
        let (job, decision) = self.actions().decide(id, approve).await?;
        let lane = job.lane();
        Ok(match decision {
            Decision::Approved { queued: true, .. } => {
                format!(":white_check_mark: You approved job #{id} ({lane}): it is queued.")
            }
            Decision::Approved { have, need, .. } => format!(
                ":white_check_mark: You approved job #{id} ({lane}): {have} of {need} approvals."
            ),
            Decision::Rejected => {
                format!(":no_entry: You rejected job #{id} ({lane}): it will not run.")
            }
            Decision::Expired => format!("Job #{id} waited too long for approval and expired."),
            Decision::AlreadyDecided => format!("You already decided on job #{id}."),
            Decision::NotAwaiting(state) => {
                format!(
                    "Job #{id} is not waiting for approval: it is {}.",
                    state.as_str()
                )
            }
            Decision::Missing => format!("There is no job #{id}."),
        })
    }

    fn answer(&self, answer: Result<String, Failure>) -> Result<String, StoreError> {
        match answer {
            Ok(text) => Ok(text),
            Err(Failure::Refused(why)) => {
                tracing::info!(slack.user = self.user.id, reason = %why, "slack request refused");
                Ok(why)
            }
            Err(Failure::Store(err)) => Err(err),
        }
    }

    /// Carries out `command`; `rows` are the ephemeral environments, if the parse read them.
    async fn run(&self, command: Command, rows: Option<Rows>) -> Result<String, Failure> {
        match command {
            Command::Deploy { app, git_ref, env } => {
                Box::pin(self.deploy(&app, git_ref, &env)).await
            }
            Command::Rollback { app, env, to } => {
                Box::pin(self.rollback(app.as_str(), env.as_str(), to.as_deref())).await
            }
            Command::Status { env: Some(lane) } => Ok(self.status(Some(&lane)).await?),
            Command::Status { env: None } => {
                let all = self.reads.status.get(|| self.status(None)).await?;
                Ok(all.as_str().to_owned())
            }
            Command::Envs => {
                let rows = match rows {
                    Some(rows) => rows,
                    None => self.ephemeral_rows().await?,
                };
                Ok(self.envs(&rows))
            }
            Command::History { app, env } => {
                let lane = format!("{app}/{env}");
                let jobs = self.queue.store().lane_jobs(&lane, HISTORY).await?;
                Ok(messages::history(&lane, &jobs))
            }
            Command::Cancel { job } => self.cancel(job).await,
            Command::Lock {
                app,
                env,
                reason,
                duration,
            } => self.lock(&app, &env, reason, duration).await,
            Command::Unlock { app, env } => self.unlock(&app, &env).await,
            Command::Keep { app, env, duration } => self.keep(&app, &env, duration).await,
            Command::Help => Ok(messages::help()),
        }
    }

    /// The shared actions, carried out as this Slack user.
    fn actions(&self) -> Actions<'_> {
        Actions {
            config: self.config,
            queue: self.queue,
            actor: Actor {
                id: self.user.id,
                name: self.user.name,
                source: "slack",
            },
            delivery: Some(self.delivery),
            clock: self.clock,
        }
    }

    async fn deploy(
        &self,
        app: &Name,
        git_ref: Option<GitRef>,
        env: &Name,
    ) -> Result<String, Failure> {
        let actions = self.actions();
        let target = requests::target(self.queue, self.config, app.as_str(), env.as_str()).await?;
        let (app_config, _) = actions.authorize(&target)?;
        let git_ref = match git_ref {
            Some(git_ref) => git_ref,
            None => default_ref(app_config, &target).map_err(Failure::Refused)?,
        };
        let by = actions.actor.requested_by();
        let id = requests::deploy(
            self.queue,
            self.config,
            self.mirrors,
            (app.as_str(), env.as_str()),
            git_ref.as_str(),
            actions.origin(&by),
        )
        .await?;
        self.queued(id).await
    }

    async fn rollback(&self, app: &str, env: &str, to: Option<&str>) -> Result<String, Failure> {
        let id = self.actions().rollback(app, env, to).await?;
        self.queued(id).await
    }

    async fn lock(
        &self,
        app: &Name,
        env: &Name,
        reason: String,
        duration: Option<std::time::Duration>,
    ) -> Result<String, Failure> {
        let lock = self
            .actions()
            .lock(app.as_str(), env.as_str(), reason, duration)
            .await?;
        Ok(format!(":lock: {}", lock.describe()))
    }

    async fn unlock(&self, app: &Name, env: &Name) -> Result<String, Failure> {
        let lock = self.actions().unlock(app.as_str(), env.as_str()).await?;
        Ok(format!(
            ":unlock: {app}/{env} is unlocked (was held by {}: {})",
            lock.holder, lock.reason
        ))
    }

    async fn keep(
        &self,
        app: &Name,
        env: &Name,
        duration: std::time::Duration,
    ) -> Result<String, Failure> {
        let until = self
            .actions()
            .keep(app.as_str(), env.as_str(), duration)
            .await?;
        let at = chrono::DateTime::from_timestamp_millis(until).unwrap_or_default();
        Ok(format!(
            ":hourglass: {app}/{env} is kept until {} (cleanup leaves it alone until then)",
            at.format("%Y-%m-%d %H:%M UTC")
        ))
    }

    /// The answer for a queued job (or, for a retried request, the job it queued the first time).
    async fn queued(&self, id: i64) -> Result<String, Failure> {
        let (job, ahead) = self
            .queue
            .queued_answer(id)
            .await?
            .ok_or_else(|| refused(format!("job #{id} vanished")))?;
        tracing::info!(slack.user = self.user.id, job.id = id, "queued from slack");
        Ok(messages::queued(&job, ahead))
    }

    /// The answer to `status`: of one environment, or of all. For all, it reads the ephemeral
    /// environments itself rather than taking the rows the command was parsed against: the
    /// answer of all is shared with the requests that arrived before this read started, and
    /// those rows may be older than some of them.
    async fn status(&self, only: Option<&Lane>) -> Result<String, StoreError> {
        let store = self.queue.store();
        let lanes: Vec<(String, String)> = match only {
            Some(lane) => vec![(lane.app.to_string(), lane.env.to_string())],
            None => overview::lanes(self.config, &store.ephemeral_envs().await?),
        };
        let mut statuses = Vec::with_capacity(lanes.len());
        for (app, env) in &lanes {
            let live = overview::live_releases(store, app, env).await?;
            statuses.push(LaneStatus {
                lane: format!("{app}/{env}"),
                live,
            });
        }
        let only = only.map(|lane| format!("{}/{}", lane.app, lane.env));
        let active = store.active_jobs(only.as_deref()).await?;
        Ok(messages::status(&statuses, &active))
    }

    fn envs(&self, rows: &[EphemeralRow]) -> String {
        let configured: Vec<EnvLine> = self
            .config
            .apps
            .values()
            .flat_map(|app| {
                app.environments.values().map(move |env| EnvLine {
                    lane: format!("{}/{}", app.name, env.name),
                    url: env.url.clone(),
                })
            })
            .collect();
        let now = now_ms();
        let ephemeral: Vec<EphemeralLine> = rows
            .iter()
            .map(|row| {
                let view = overview::ephemeral(self.config, row, now);
                EphemeralLine {
                    lane: format!("{}/{}", row.app, row.env),
                    branch: row.branch.clone(),
                    url: view.url,
                    state: row.state.as_str().to_owned(),
                    left_ms: view.left_ms,
                }
            })
            .collect();
        messages::envs(&configured, &ephemeral)
    }

    async fn cancel(&self, id: i64) -> Result<String, Failure> {
        let (job, cancel) = self.actions().cancel(id).await?;
        let job = messages::describe(&job);
        Ok(match cancel {
            Cancelled::Withdrawn => format!("Cancelled #{id}: {job}"),
            Cancelled::Stopping => format!(
                "Stopping #{id}: {job}. It stops before it switches anything (if it is switching \
                 already, it finishes); its message in the channel says how it ended."
            ),
        })
    }
}

/// The job a button's value names.
fn job_id(value: &str) -> Result<i64, Failure> {
    value
        .parse()
        .map_err(|_| refused(format!("{value:?} is not a job")))
}

/// What the parser may name: every configured environment, and the ephemeral ones that exist.
fn known(config: &Config, rows: &[EphemeralRow]) -> Known {
    Known {
        apps: config
            .apps
            .values()
            .map(|app| KnownApp {
                name: app.name.clone(),
                envs: app
                    .environments
                    .keys()
                    .cloned()
                    .chain(
                        rows.iter()
                            .filter(|row| row.app == app.name.as_str())
                            .filter_map(|row| Name::parse(&row.env).ok()),
                    )
                    .collect(),
            })
            .collect(),
        configured_default: config.slack.as_ref().and_then(|s| s.default_app.clone()),
    }
}

/// The ref `/deploy ENV` deploys: an ephemeral environment's own branch, or the branch of the
/// one trigger that deploys a configured environment. Otherwise which ref is for the user to say.
fn default_ref(app: &App, target: &Target) -> Result<GitRef, String> {
    let env = match target {
        Target::Ephemeral { row, .. } => {
            return GitRef::parse(&row.branch).map_err(|e| e.to_string());
        }
        Target::Static { env, .. } => env,
    };
    let mut patterns: Vec<&str> = Vec::new();
    for trigger in app.triggers.iter().filter(|t| &t.deploy == env) {
        let pattern = trigger.push.glob().glob();
        if !patterns.contains(&pattern) {
            patterns.push(pattern);
        }
    }
    let lane = format!("{}/{env}", app.name);
    let ask = |why: String| format!("{why}: say which ref, as in `/deploy REF to {env}`.");
    match patterns.as_slice() {
        [branch] if !branch.contains(['*', '?', '[', '{', '\\']) => {
            GitRef::parse(branch).map_err(|e| e.to_string())
        }
        [] => Err(ask(format!(
            "No trigger deploys {lane}, so it has no default ref"
        ))),
        [pattern] => Err(ask(format!(
            "{lane} is deployed from the branches matching {}, not from one branch",
            messages::code(pattern)
        ))),
        several => {
            let list: Vec<String> = several.iter().map(|p| messages::code(p)).collect();
            Err(ask(format!(
                "{lane} is deployed from several branches ({})",
                list.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests;

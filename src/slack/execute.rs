//! Carrying out what a Slack user asked: a parsed command, or a click on a message's button
//! (Roll back, Retry, Approve, Reject). Deploys and rollbacks go through [`crate::requests`], like the CLI's and the API's;
//! status, envs and history are reads of the store; every text comes from [`super::messages`].
//!
//! Who may act: an environment's `deployers` (Slack user ids; for an ephemeral environment, its
//! template's), or anyone in the configured team when it lists none. A refusal (the text did
//! not parse, an unknown environment, not a deployer, a request `requests` turned down) is the
//! user's answer, and is logged here, once, with their user id.

use crate::config::{App, Config, Environment};
use crate::deploy::source::Mirrors;
use crate::domain::{GitRef, Name};
use crate::queue::{Cancel, Decision, Delivery, Queue};
use crate::requests::{self, Origin, RequestError, Target};
use crate::store::{EphemeralRow, Job, JobKind, JobState, Lock, Locked, StoreError, now_ms};

use super::command::{self, Command, Known, KnownApp, Lane};
use super::messages::{self, EnvLine, EphemeralLine, LaneStatus, LiveRelease};

/// How many jobs `history` shows.
const HISTORY: i64 = 10;

/// The Slack user behind a request.
#[derive(Debug, Clone, Copy)]
pub struct User<'a> {
    pub id: &'a str,
    /// Their user name, as Slack sent it (display only: the id is what permissions check).
    pub name: &'a str,
}

/// What carrying out one request needs.
pub struct Context<'a> {
    pub config: &'a Config,
    pub queue: &'a Queue,
    pub mirrors: &'a Mirrors,
    pub user: User<'a>,
    /// This request, so that Slack's retry of it queues nothing new.
    pub delivery: Delivery<'a>,
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
        let rows = self.queue.store().ephemeral_envs().await?;
        let answer = match command::parse(text, &known(self.config, &rows)) {
            Ok(command) => self.run(command, &rows).await,
            Err(refusal) => Err(refused(refusal.to_string())),
        };
        self.answer(answer)
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
        let job = self.button_job(value).await?;
        let by = self.requested_by();
        let id = requests::redeploy(self.queue, self.config, &job, self.origin(&by)).await?;
        self.queued(id).await
    }

    /// The job a button's value names, if this user may act on its environment.
    async fn button_job(&self, value: &str) -> Result<Job, Failure> {
        let id: i64 = value
            .parse()
            .map_err(|_| refused(format!("{value:?} is not a job")))?;
        let job = self
            .queue
            .store()
            .job(id)
            .await?
            .ok_or_else(|| refused(format!("there is no job #{id}")))?;
        let target = requests::target(self.queue, self.config, &job.app, &job.env).await?;
        self.authorize(&target)?;
        Ok(job)
    }

    /// A click on Approve or Reject of a job awaiting approval (value: the job id). Only the
    /// environment's deployers decide, and never on their own request.
    pub async fn approval_button(&self, value: &str, approve: bool) -> Result<String, StoreError> {
        let answer = self.decide(value, approve).await;
        self.answer(answer)
    }

    async fn decide(&self, value: &str, approve: bool) -> Result<String, Failure> {
        let job = self.button_job(value).await?;
        let id = job.id;
        if job.requested_by.ends_with(&format!("({})", self.user.id)) {
            return Err(refused(format!(
                "You asked for job #{id}: someone else must approve or reject it."
            )));
        }
        let who = self.requested_by();
        let lane = job.lane();
        let decision = self.queue.decide(id, &who, approve).await?;
        tracing::info!(slack.user = self.user.id, job.id = id, approve, decision = ?decision, "approval decision");
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

    async fn run(&self, command: Command, rows: &[EphemeralRow]) -> Result<String, Failure> {
        match command {
            Command::Deploy { app, git_ref, env } => self.deploy(&app, git_ref, &env).await,
            Command::Rollback { app, env, to } => {
                self.rollback(app.as_str(), env.as_str(), to.as_deref())
                    .await
            }
            Command::Status { env } => self.status(env, rows).await,
            Command::Envs => Ok(self.envs(rows)),
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

    /// How jobs record who asked: the name to read, the id to be sure.
    fn requested_by(&self) -> String {
        format!("{} ({})", self.user.name, self.user.id)
    }

    async fn deploy(
        &self,
        app: &Name,
        git_ref: Option<GitRef>,
        env: &Name,
    ) -> Result<String, Failure> {
        let target = requests::target(self.queue, self.config, app.as_str(), env.as_str()).await?;
        let (app_config, _) = self.authorize(&target)?;
        let git_ref = match git_ref {
            Some(git_ref) => git_ref,
            None => default_ref(app_config, &target).map_err(Failure::Refused)?,
        };
        let by = self.requested_by();
        let id = requests::deploy(
            self.queue,
            self.config,
            self.mirrors,
            (app.as_str(), env.as_str()),
            git_ref.as_str(),
            self.origin(&by),
        )
        .await?;
        self.queued(id).await
    }

    async fn rollback(&self, app: &str, env: &str, to: Option<&str>) -> Result<String, Failure> {
        let target = requests::target(self.queue, self.config, app, env).await?;
        self.authorize(&target)?;
        let by = self.requested_by();
        let id =
            requests::rollback(self.queue, self.config, (app, env), to, self.origin(&by)).await?;
        self.queued(id).await
    }

    /// A hold: while it lasts, deploys and rollbacks asked for by people are refused with its
    /// reason, and automatic ones are skipped.
    async fn lock(
        &self,
        app: &Name,
        env: &Name,
        reason: String,
        duration: Option<std::time::Duration>,
    ) -> Result<String, Failure> {
        let target = requests::target(self.queue, self.config, app.as_str(), env.as_str()).await?;
        self.authorize(&target)?;
        let now = now_ms();
        let lock = Lock {
            app: app.to_string(),
            env: env.to_string(),
            holder: self.requested_by(),
            reason,
            created_at: now,
            expires_at: duration.map(|d| now.saturating_add(d.as_millis() as i64)),
        };
        match self.queue.store().lock_env(&lock).await? {
            Locked::Held(lock) => {
                tracing::info!(slack.user = self.user.id, lane = %format!("{app}/{env}"), reason = %lock.reason, "locked from slack");
                Ok(format!(":lock: {}", lock.describe()))
            }
            Locked::HeldBy(other) => Err(refused(format!(
                "{}; they (or the expiry) must release it first",
                other.describe()
            ))),
        }
    }

    async fn unlock(&self, app: &Name, env: &Name) -> Result<String, Failure> {
        let target = requests::target(self.queue, self.config, app.as_str(), env.as_str()).await?;
        self.authorize(&target)?;
        match self
            .queue
            .store()
            .unlock_env(app.as_str(), env.as_str())
            .await?
        {
            Some(lock) => {
                tracing::info!(slack.user = self.user.id, lane = %format!("{app}/{env}"), holder = %lock.holder, "unlocked from slack");
                Ok(format!(
                    ":unlock: {app}/{env} is unlocked (was held by {}: {})",
                    lock.holder, lock.reason
                ))
            }
            None => Err(refused(format!("{app}/{env} is not locked"))),
        }
    }

    /// Extends an ephemeral environment's life: cleanup leaves it alone until then.
    async fn keep(
        &self,
        app: &Name,
        env: &Name,
        duration: std::time::Duration,
    ) -> Result<String, Failure> {
        let target = requests::target(self.queue, self.config, app.as_str(), env.as_str()).await?;
        self.authorize(&target)?;
        let until = now_ms().saturating_add(duration.as_millis() as i64);
        if self
            .queue
            .store()
            .keep_env(app.as_str(), env.as_str(), until)
            .await?
        {
            let at = chrono::DateTime::from_timestamp_millis(until).unwrap_or_default();
            Ok(format!(
                ":hourglass: {app}/{env} is kept until {} (cleanup leaves it alone until then)",
                at.format("%Y-%m-%d %H:%M UTC")
            ))
        } else {
            Err(refused(format!(
                "{app}/{env} is not an ephemeral environment: only those expire"
            )))
        }
    }

    fn origin<'b>(&'b self, requested_by: &'b str) -> Origin<'b> {
        Origin {
            requested_by,
            source: "slack",
            delivery: Some(self.delivery),
        }
    }

    /// The answer for a queued job (or, for a retried request, the job it queued the first time).
    async fn queued(&self, id: i64) -> Result<String, Failure> {
        let store = self.queue.store();
        let job = store
            .job(id)
            .await?
            .ok_or_else(|| refused(format!("job #{id} vanished")))?;
        let ahead = store
            .active_jobs(Some(&job.lane()))
            .await?
            .iter()
            .filter(|j| j.id < id)
            .count();
        tracing::info!(slack.user = self.user.id, job.id = id, "queued from slack");
        Ok(messages::queued(&job, ahead))
    }

    /// The target's settings, if this user may deploy, roll back and cancel there.
    fn authorize(&self, target: &Target) -> Result<(&App, &Environment), Failure> {
        let lane = format!("{}/{}", target.app(), target.env());
        let (app, env) = settings(self.config, target)
            .ok_or_else(|| refused(format!("{lane} is no longer configured")))?;
        if may_act(env.deployers.as_deref(), self.user.id) {
            Ok((app, env))
        } else {
            Err(refused(format!(
                "You are not one of the deployers of {lane}: only they may deploy, roll back or \
                 cancel jobs there."
            )))
        }
    }

    async fn status(&self, env: Option<Lane>, rows: &[EphemeralRow]) -> Result<String, Failure> {
        let store = self.queue.store();
        let lanes: Vec<(String, String)> = match &env {
            Some(lane) => vec![(lane.app.to_string(), lane.env.to_string())],
            None => lanes(self.config, rows),
        };
        let mut statuses = Vec::with_capacity(lanes.len());
        for (app, env) in &lanes {
            let mut live: Vec<LiveRelease> = Vec::new();
            for d in store.live_deployments(app, env).await? {
                match live.iter_mut().find(|r| r.release == d.release_id) {
                    Some(release) => {
                        release.hosts.push(d.host);
                        release.since = release.since.max(d.switched_at);
                    }
                    None => live.push(LiveRelease {
                        by: store.job(d.job_id).await?.map(|j| j.requested_by),
                        release: d.release_id,
                        git_ref: d.git_ref,
                        sha: d.sha,
                        since: d.switched_at,
                        hosts: vec![d.host],
                    }),
                }
            }
            statuses.push(LaneStatus {
                lane: format!("{app}/{env}"),
                live,
            });
        }
        let only = env.map(|lane| format!("{}/{}", lane.app, lane.env));
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
                let template = self.config.app(&row.app).and_then(|app| {
                    let template = app.ephemeral.get(&Name::parse(&row.template).ok()?)?;
                    Some((app, template))
                });
                // Its URL as its deploys render it, from the names its branch gives it.
                let url = template.and_then(|(app, template)| {
                    let id = crate::ephemeral::identify(template, &row.branch).ok()?;
                    let port = row.port().unwrap_or(0);
                    template
                        .environment(&app.name, &id.env, &id.slug, &row.hostname, port)
                        .url
                });
                EphemeralLine {
                    lane: format!("{}/{}", row.app, row.env),
                    branch: row.branch.clone(),
                    url,
                    state: row.state.as_str().to_owned(),
                    left_ms: template.map(|(_, template)| {
                        let ttl = i64::try_from(template.ttl.as_millis()).unwrap_or(i64::MAX);
                        messages::ttl_end(row.last_push_at, ttl, row.keep_until) - now
                    }),
                }
            })
            .collect();
        messages::envs(&configured, &ephemeral)
    }

    async fn cancel(&self, id: i64) -> Result<String, Failure> {
        let Some(job) = self.queue.store().job(id).await? else {
            return Err(refused(format!("There is no job #{id}.")));
        };
        let target = requests::target(self.queue, self.config, &job.app, &job.env).await?;
        self.authorize(&target)?;
        if job.state.is_final() || job.state == JobState::AwaitingApproval {
            return Err(not_cancellable(id, job.state));
        }
        // An ephemeral environment's state moves with its deploys and teardowns: withdrawing
        // a queued one would leave the environment waiting for a job that never comes. (A
        // running one that is stopped settles the environment as a failure would.)
        if job.state == JobState::Queued
            && matches!(target, Target::Ephemeral { .. })
            && job.kind != JobKind::Rollback
        {
            return Err(refused(format!(
                "#{id} would create, update or remove the ephemeral environment {}, which cannot \
                 be cancelled while it waits.",
                job.lane()
            )));
        }
        // Only a deploy or rollback has a switch to stop before; the others run to their end.
        if job.state == JobState::Running
            && !matches!(job.kind, JobKind::Deploy | JobKind::Rollback)
        {
            return Err(refused(format!(
                "#{id} is a running {}: only deploys and rollbacks can be stopped.",
                job.kind.as_str()
            )));
        }
        let by = format!("{} via slack", self.requested_by());
        let cancel = self.queue.cancel(id, &by).await?;
        tracing::info!(slack.user = self.user.id, job.id = id, cancel = ?cancel, "cancel from slack");
        match cancel {
            Cancel::Cancelled => Ok(format!("Cancelled #{id}: {}", messages::describe(&job))),
            Cancel::Stopping => Ok(format!(
                "Stopping #{id}: {}. It stops before it switches anything (if it is switching \
                 already, it finishes); its message in the channel says how it ended.",
                messages::describe(&job)
            )),
            Cancel::Not(state) => Err(not_cancellable(id, state)),
            Cancel::Missing => Err(refused(format!("There is no job #{id}."))),
        }
    }
}

fn not_cancellable(id: i64, state: JobState) -> Failure {
    match state {
        JobState::AwaitingApproval => refused(format!(
            "#{id} is awaiting approval: a deployer rejects it with the Reject button instead."
        )),
        state => refused(format!("#{id} has already ended: {}.", state.as_str())),
    }
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

/// Every environment, configured ones first, as `(app, env)`.
fn lanes(config: &Config, rows: &[EphemeralRow]) -> Vec<(String, String)> {
    config
        .apps
        .values()
        .flat_map(|app| {
            app.environments
                .keys()
                .map(move |env| (app.name.to_string(), env.to_string()))
        })
        .chain(rows.iter().map(|row| (row.app.clone(), row.env.clone())))
        .collect()
}

/// A target's app and the settings it runs with: its own, or its template's when ephemeral.
fn settings<'c>(config: &'c Config, target: &Target) -> Option<(&'c App, &'c Environment)> {
    let app = config.app(target.app().as_str())?;
    let env = match target {
        Target::Static { env, .. } => app.environments.get(env)?,
        Target::Ephemeral { row, .. } => {
            &app.ephemeral
                .get(&Name::parse(&row.template).ok()?)?
                .template
        }
    };
    Some((app, env))
}

/// Whether `user` may deploy, roll back and cancel where these are the `deployers`.
fn may_act(deployers: Option<&[String]>, user: &str) -> bool {
    deployers.is_none_or(|ids| ids.iter().any(|id| id == user))
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

//! What a person may do to an environment or a job — roll back, retry, cancel (or stop),
//! approve or reject, lock, unlock, keep — with the one permission check, whichever channel
//! they use (Slack's `/deploy` and buttons, the dashboard's forms). Deploys and rollbacks are
//! then queued through [`crate::requests`], like the CLI's and the API's.
//!
//! Who may act: an environment's `deployers` (Slack user ids; for an ephemeral environment, its
//! template's), or anyone the channel let in when it lists none. A dashboard user acts as the
//! Slack user id its config names, so one list says who may act everywhere.
//!
//! Refusals are [`RequestError::Invalid`] with the reason in words; the channel answers and
//! logs them.

use std::time::Duration;

use crate::clock::Clock;
use crate::config::{App, Config, Environment};
use crate::domain::Name;
use crate::queue::{Cancel, Decision, Delivery, Queue};
use crate::requests::{self, Origin, RequestError, Target};
use crate::store::{Job, JobKind, JobState, Lock, Locked, now_ms};

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The job was queued: it never runs.
    Withdrawn,
    /// The job runs: its worker stops it at its next heartbeat, before it switches anything (a
    /// switch already under way finishes).
    Stopping,
}

/// The person behind a request.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// Their Slack user id: what `deployers` lists.
    pub id: &'a str,
    /// Their name (display only: the id is what permissions check).
    pub name: &'a str,
    /// The channel they use (`slack`, `dashboard`), as jobs record it.
    pub source: &'static str,
}

impl Actor<'_> {
    /// How jobs, locks and decisions record who asked: the name to read, the id to be sure.
    pub fn requested_by(&self) -> String {
        format!("{} ({})", self.name, self.id)
    }

    /// Whether `requested_by` (as [`Actor::requested_by`] wrote it) names this person.
    fn asked_for(&self, requested_by: &str) -> bool {
        requested_by.ends_with(&format!("({})", self.id))
    }
}

fn refused(why: impl Into<String>) -> RequestError {
    RequestError::Invalid(why.into())
}

/// What carrying out one action needs.
pub struct Actions<'a> {
    pub config: &'a Config,
    pub queue: &'a Queue,
    pub actor: Actor<'a>,
    /// The request as its channel identifies it, so that a retry queues nothing new.
    pub delivery: Option<Delivery<'a>>,
    /// What a keep counts from: the clock cleanup compares `keep_until` with.
    pub clock: &'a dyn Clock,
}

impl Actions<'_> {
    /// The target's settings, if the actor may deploy, roll back, cancel, lock and keep there.
    pub fn authorize(&self, target: &Target) -> Result<(&App, &Environment), RequestError> {
        let lane = format!("{}/{}", target.app(), target.env());
        let (app, env) = settings(self.config, target)
            .ok_or_else(|| refused(format!("{lane} is no longer configured")))?;
        if may_act(env.deployers.as_deref(), self.actor.id) {
            Ok((app, env))
        } else {
            Err(refused(format!(
                "You are not one of the deployers of {lane}: only they may deploy, roll back or \
                 cancel jobs there."
            )))
        }
    }

    /// Resolves and authorizes `app`/`env`.
    pub async fn target(&self, app: &str, env: &str) -> Result<Target, RequestError> {
        let target = requests::target(self.queue, self.config, app, env).await?;
        self.authorize(&target)?;
        Ok(target)
    }

    /// The origin jobs record; `requested_by` is [`Actor::requested_by`].
    pub fn origin<'b>(&'b self, requested_by: &'b str) -> Origin<'b> {
        Origin {
            requested_by,
            source: self.actor.source,
            delivery: self.delivery,
        }
    }

    /// Queues a rollback of `app`/`env` to `to`, or to the release before the live one.
    pub async fn rollback(
        &self,
        app: &str,
        env: &str,
        to: Option<&str>,
    ) -> Result<i64, RequestError> {
        self.target(app, env).await?;
        let by = self.actor.requested_by();
        requests::rollback(self.queue, self.config, (app, env), to, self.origin(&by)).await
    }

    /// Approves or rejects job `id`. Only the environment's deployers decide, and never on
    /// their own request.
    pub async fn decide(&self, id: i64, approve: bool) -> Result<(Job, Decision), RequestError> {
        let job = self.job(id).await?;
        self.target(&job.app, &job.env).await?;
        if self.actor.asked_for(&job.requested_by) {
            return Err(refused(format!(
                "You asked for job #{id}: someone else must approve or reject it."
            )));
        }
        let decision = self
            .queue
            .decide(id, &self.actor.requested_by(), approve)
            .await?;
        tracing::info!(user.id = self.actor.id, source = self.actor.source, job.id = id, approve, decision = ?decision, "approval decision");
        Ok((job, decision))
    }

    /// Cancels job `id`: a queued one is withdrawn, a running deploy or rollback stops before
    /// it switches anything. Returns the job as it was and which of the two happened.
    pub async fn cancel(&self, id: i64) -> Result<(Job, Cancelled), RequestError> {
        let job = self.job(id).await?;
        let target = self.target(&job.app, &job.env).await?;
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
        let by = format!("{} via {}", self.actor.requested_by(), self.actor.source);
        let cancel = self.queue.cancel(id, &by).await?;
        tracing::info!(user.id = self.actor.id, source = self.actor.source, job.id = id, cancel = ?cancel, "cancel");
        match cancel {
            Cancel::Cancelled => Ok((job, Cancelled::Withdrawn)),
            Cancel::Stopping => Ok((job, Cancelled::Stopping)),
            Cancel::Not(state) => Err(not_cancellable(id, state)),
            Cancel::Missing => Err(refused(format!("There is no job #{id}."))),
        }
    }

    /// Queues deploy `id`'s ref and commit again (a retry of a failed deploy), checked as any
    /// deploy is.
    pub async fn retry(&self, id: i64) -> Result<i64, RequestError> {
        let job = self.job(id).await?;
        self.target(&job.app, &job.env).await?;
        let by = self.actor.requested_by();
        requests::redeploy(self.queue, self.config, &job, self.origin(&by)).await
    }

    /// A hold: while it lasts, deploys and rollbacks asked for by people are refused with its
    /// reason, and automatic ones are skipped.
    pub async fn lock(
        &self,
        app: &str,
        env: &str,
        reason: String,
        duration: Option<Duration>,
    ) -> Result<Lock, RequestError> {
        let target = self.target(app, env).await?;
        let now = now_ms();
        let lock = Lock {
            app: target.app().to_string(),
            env: target.env().to_string(),
            holder: self.actor.requested_by(),
            reason,
            created_at: now,
            expires_at: duration.map(|d| now.saturating_add(d.as_millis() as i64)),
        };
        match self.queue.store().lock_env(&lock).await? {
            Locked::Held(lock) => {
                tracing::info!(user.id = self.actor.id, source = self.actor.source, lane = %format!("{app}/{env}"), reason = %lock.reason, "locked");
                Ok(lock)
            }
            Locked::HeldBy(other) => Err(refused(format!(
                "{}; they (or the expiry) must release it first",
                other.describe()
            ))),
        }
    }

    /// Removes `app`/`env`'s lock; returns the lock it was.
    pub async fn unlock(&self, app: &str, env: &str) -> Result<Lock, RequestError> {
        self.target(app, env).await?;
        match self.queue.store().unlock_env(app, env).await? {
            Some(lock) => {
                tracing::info!(user.id = self.actor.id, source = self.actor.source, lane = %format!("{app}/{env}"), holder = %lock.holder, "unlocked");
                Ok(lock)
            }
            None => Err(refused(format!("{app}/{env} is not locked"))),
        }
    }

    /// Extends an ephemeral environment's life: cleanup leaves it alone until the returned time.
    pub async fn keep(
        &self,
        app: &str,
        env: &str,
        duration: Duration,
    ) -> Result<i64, RequestError> {
        self.target(app, env).await?;
        let until = self
            .clock
            .now_ms()
            .saturating_add(duration.as_millis() as i64);
        if self.queue.store().keep_env(app, env, until).await? {
            Ok(until)
        } else {
            Err(refused(format!(
                "{app}/{env} is not an ephemeral environment: only those expire"
            )))
        }
    }

    async fn job(&self, id: i64) -> Result<Job, RequestError> {
        self.queue
            .store()
            .job(id)
            .await?
            .ok_or_else(|| refused(format!("There is no job #{id}.")))
    }
}

fn not_cancellable(id: i64, state: JobState) -> RequestError {
    match state {
        JobState::AwaitingApproval => refused(format!(
            "#{id} is awaiting approval: a deployer rejects it with the Reject button instead."
        )),
        state => refused(format!("#{id} has already ended: {}.", state.as_str())),
    }
}

/// A target's app and the settings it runs with: its own, or its template's when ephemeral.
pub fn settings<'c>(config: &'c Config, target: &Target) -> Option<(&'c App, &'c Environment)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployers_limit_who_may_act() {
        let ids = vec!["U1".to_owned(), "W2".to_owned()];
        assert!(may_act(None, "U9"));
        assert!(may_act(Some(&ids), "U1") && may_act(Some(&ids), "W2"));
        assert!(!may_act(Some(&ids), "U9"));
        assert!(!may_act(Some(&ids), "u1"));
        assert!(!may_act(Some(&[]), "U1"));
    }

    #[test]
    fn an_actor_is_recognised_by_id_in_what_it_requested() {
        let alice = Actor {
            id: "U0ALICE",
            name: "alice",
            source: "dashboard",
        };
        assert_eq!(alice.requested_by(), "alice (U0ALICE)");
        assert!(alice.asked_for("al (U0ALICE)"));
        assert!(!alice.asked_for("alice (U0ALICE2)"));
        assert!(!alice.asked_for("github push"));
    }
}

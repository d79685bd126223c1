//! The durable job queue: every state transition of a job happens here, in SQL.
//!
//! - **Enqueue** commits the jobs, their first event and the webhook delivery id in one
//!   transaction, so an answer is only ever given for work that is stored, and a redelivery
//!   finds the original jobs instead of adding new ones.
//! - **Claim** is one `UPDATE .. WHERE id = (SELECT ..) RETURNING`: the oldest queued job whose
//!   lane (app/env) has nothing running. A partial unique index makes "one running job per lane"
//!   a database fact even if two claimers race.
//! - **Leases, not long transactions.** A claim sets `lease_until`; the worker's heartbeat renews
//!   it. A job whose lease lapsed (its worker died) goes back to the queue, or fails once it has
//!   used `max_attempts` claims.
//! - **Fencing.** `attempt` is incremented by every claim and every later write checks it, so a
//!   worker that lost its lease cannot finish (or switch) a job someone else now owns.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Sqlite, Transaction};
use tokio::sync::Notify;

use crate::domain::{GitRef, Name, ReleaseId, Sha};
use crate::store::JOB_COLUMNS;
use crate::store::{Job, JobKind, JobState, Store, StoreError, now_ms};

/// A job to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub kind: JobKind,
    pub app: Name,
    pub env: Name,
    pub git_ref: GitRef,
    pub sha: Sha,
    pub requested_by: String,
    pub source: &'static str,
    /// Rollbacks: the release to go back to.
    pub target_release: Option<ReleaseId>,
}

/// The webhook delivery a set of jobs came from.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub event: &'a str,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Enqueued {
    Created(Vec<i64>),
    /// The delivery was seen before; these are the jobs it created then.
    Duplicate(Vec<i64>),
}

#[derive(Debug)]
pub enum Claim {
    Job(Box<Lease>),
    Empty,
}

/// A claimed job. `job.attempt` is the fencing token of this claim.
#[derive(Debug, Clone)]
pub struct Lease {
    pub job: Job,
    pub owner: String,
}

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    Succeeded {
        message: String,
    },
    Failed {
        error: String,
        result: serde_json::Value,
    },
}

#[derive(Clone, Debug)]
pub struct Queue {
    store: Store,
    wake: Arc<Notify>,
    max_attempts: u32,
}

impl Queue {
    pub fn new(store: Store, max_attempts: u32) -> Self {
        Self {
            store,
            wake: Arc::new(Notify::new()),
            max_attempts,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Resolves when a job was enqueued in this process (workers also poll, for other writers).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Stores `jobs` (and `delivery`, if any) in one transaction.
    pub async fn enqueue(
        &self,
        delivery: Option<Delivery<'_>>,
        jobs: &[NewJob],
    ) -> Result<Enqueued, StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        if let Some(d) = delivery {
            let inserted = sqlx::query(
                "INSERT INTO deliveries (id, source, event, received_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(d.id)
            .bind(d.source)
            .bind(d.event)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                let ids =
                    sqlx::query_scalar("SELECT id FROM jobs WHERE delivery_id = $1 ORDER BY id")
                        .bind(d.id)
                        .fetch_all(&mut *tx)
                        .await?;
                return Ok(Enqueued::Duplicate(ids));
            }
        }
        let mut ids = Vec::with_capacity(jobs.len());
        for job in jobs {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO jobs (kind, app, env, lane, git_ref, sha, requested_by, source, \
                 delivery_id, state, max_attempts, created_at, target_release) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $11, $12) RETURNING id",
            )
            .bind(job.kind)
            .bind(job.app.as_str())
            .bind(job.env.as_str())
            .bind(format!("{}/{}", job.app, job.env))
            .bind(job.git_ref.as_str())
            .bind(job.sha.as_str())
            .bind(&job.requested_by)
            .bind(job.source)
            .bind(delivery.map(|d| d.id))
            .bind(i64::from(self.max_attempts))
            .bind(now)
            .bind(job.target_release.as_ref().map(ReleaseId::as_str))
            .fetch_one(&mut *tx)
            .await?;
            let message = format!(
                "{} {} ({}) to {}/{} requested by {} via {}",
                job.kind.as_str(),
                job.git_ref,
                job.sha.short(),
                job.app,
                job.env,
                job.requested_by,
                job.source
            );
            event(&mut tx, id, now, JobState::Queued, &message).await?;
            ids.push(id);
        }
        tx.commit().await?;
        self.wake.notify_waiters();
        Ok(Enqueued::Created(ids))
    }

    /// Claims the oldest runnable job for `owner`.
    pub async fn claim(&self, owner: &str, lease: Duration) -> Result<Claim, StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        // Scanning queued jobs oldest first and skipping lanes with a running job is enough for
        // FIFO within a lane: an older queued job of the same lane would have been met first and
        // skipped for the same reason.
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_owner = $1, \
             lease_until = $2, started_at = COALESCE(started_at, $3) \
             WHERE id = (SELECT j.id FROM jobs j WHERE j.state = 'queued' AND NOT EXISTS \
                (SELECT 1 FROM jobs r WHERE r.lane = j.lane AND r.state = 'running') \
                ORDER BY j.id LIMIT 1) RETURNING {JOB_COLUMNS}"
        );
        let job: Option<Job> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(job) = job else {
            return Ok(Claim::Empty);
        };
        let message = format!("attempt {} claimed by {owner}", job.attempt);
        event(&mut tx, job.id, now, JobState::Running, &message).await?;
        tx.commit().await?;
        Ok(Claim::Job(Box::new(Lease {
            job,
            owner: owner.to_owned(),
        })))
    }

    /// Renews the lease. `false` means it is no longer ours: stop and do not switch anything.
    pub async fn heartbeat(&self, lease: &Lease, duration: Duration) -> Result<bool, StoreError> {
        let until = now_ms() + duration.as_millis() as i64;
        let updated = sqlx::query(
            "UPDATE jobs SET lease_until = $1 \
             WHERE id = $2 AND attempt = $3 AND state = 'running' AND lease_until >= $4",
        )
        .bind(until)
        .bind(lease.job.id)
        .bind(lease.job.attempt)
        .bind(now_ms())
        .execute(self.store.pool())
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Records how the job ended. `false` means the lease was lost and nothing was written.
    pub async fn finish(&self, lease: &Lease, outcome: &Outcome) -> Result<bool, StoreError> {
        let now = now_ms();
        let (state, message, error, result) = match outcome {
            Outcome::Succeeded { message } => (JobState::Succeeded, message.as_str(), None, None),
            Outcome::Failed { error, result } => (
                JobState::Failed,
                error.as_str(),
                Some(error.as_str()),
                Some(result.to_string()),
            ),
        };
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE jobs SET state = $1, finished_at = $2, error = $3, result = $4, \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = $5 AND attempt = $6 AND state = 'running'",
        )
        .bind(state)
        .bind(now)
        .bind(error)
        .bind(result)
        .bind(lease.job.id)
        .bind(lease.job.attempt)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        event(&mut tx, lease.job.id, now, state, message).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Returns jobs whose lease lapsed to the queue (or fails them once out of attempts).
    /// Returns how many were recovered.
    pub async fn reap_expired(&self) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let reaped: Vec<(i64, JobState, i64)> = sqlx::query_as(
            "UPDATE jobs SET \
               state = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END, \
               finished_at = CASE WHEN attempt >= max_attempts THEN $1 ELSE NULL END, \
               error = CASE WHEN attempt >= max_attempts \
                 THEN 'lease expired on the last attempt (worker lost)' ELSE NULL END, \
               lease_owner = NULL, lease_until = NULL \
             WHERE state = 'running' AND lease_until < $1 \
             RETURNING id, state, attempt",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for (id, state, attempt) in &reaped {
            let message = format!("lease of attempt {attempt} expired (worker lost)");
            event(&mut tx, *id, now, *state, &message).await?;
        }
        tx.commit().await?;
        if !reaped.is_empty() {
            self.wake.notify_waiters();
        }
        Ok(reaped.len())
    }

    /// A write transaction. SQLite needs `BEGIN IMMEDIATE` so a writer waits on the busy timeout
    /// instead of failing when it upgrades a read lock.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.store.pool().begin_with("BEGIN IMMEDIATE").await?)
    }
}

async fn event(
    tx: &mut Transaction<'static, Sqlite>,
    job_id: i64,
    at: i64,
    state: JobState,
    message: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO job_events (job_id, at, state, message) VALUES ($1, $2, $3, $4)")
        .bind(job_id)
        .bind(at)
        .bind(state)
        .bind(message)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests;

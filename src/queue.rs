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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use batch::Batcher;
use vacuum::Vacuum;

use crate::domain::{GitRef, Name, ReleaseId, Sha};
use crate::store::{
    AHEAD_COUNTED, Backend, JOB_COLUMNS, Job, JobKind, JobState, Store, StoreError, WriteTx,
    now_ms, on_pool, on_reader,
};

/// A job to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub kind: JobKind,
    pub app: Name,
    pub env: Name,
    /// What to deploy (a teardown names the branch; scheduled jobs have none).
    pub git_ref: Option<GitRef>,
    /// Deploys: the commit; teardowns: what was live, if anything.
    pub sha: Option<Sha>,
    pub requested_by: String,
    pub source: &'static str,
    /// Rollbacks: the release to go back to.
    pub target_release: Option<ReleaseId>,
    /// Deploys and teardowns of an ephemeral environment: the environment they create, update
    /// or remove, recorded in the same transaction as the job.
    pub ephemeral: Option<EphemeralEnv>,
    /// Continuous delivery: this job replaces the environment's older queued deploys that
    /// slipway queued itself (for an ephemeral environment: all of them), so at most one
    /// automatic deploy waits per environment and it is the newest.
    pub supersede: bool,
    /// Approvals the job needs before it is queued, and how long they may take (the
    /// environment's `approvals` and `approval_timeout`).
    pub approval: Option<(u32, Duration)>,
}

/// An ephemeral environment as a push names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralEnv {
    pub template: Name,
    pub branch: GitRef,
    pub hostname: String,
}

impl NewJob {
    /// `env`'s approval rule, for a deploy or rollback of it.
    pub fn approval_of(env: &crate::config::Environment) -> Option<(u32, Duration)> {
        (env.approvals > 0).then_some((env.approvals, env.approval_timeout))
    }

    /// Queued by slipway itself (a webhook, a release, a reconcile, a schedule), not by a person
    /// (the CLI, the API, Slack): a locked environment skips it instead of refusing it.
    pub fn is_automatic(&self) -> bool {
        matches!(self.source, "github" | "release" | "reconcile" | "schedule")
    }

    /// How the job's first event describes it.
    fn describe(&self) -> String {
        let what = match (&self.git_ref, &self.sha) {
            (Some(r), Some(s)) => format!("{} {r} ({})", self.kind.as_str(), s.short()),
            (Some(r), None) => format!("{} {r}", self.kind.as_str()),
            _ => self.kind.as_str().to_owned(),
        };
        format!(
            "{what} to {}/{} requested by {} via {}",
            self.app, self.env, self.requested_by, self.source
        )
    }
}

/// The webhook delivery a set of jobs came from.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub event: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// The jobs that will carry the request out: stored now, or (a teardown already on its
    /// way) stored before.
    Created(Vec<i64>),
    /// The delivery was seen before; these are the jobs it created then.
    Duplicate(Vec<i64>),
    /// Nothing was stored (not even the delivery), for this reason.
    Refused(String),
}

#[derive(Debug)]
pub enum Claim {
    Job(Box<Lease>),
    Empty,
}

/// How a decision on a job awaiting approval went.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Approved; `queued` once it has all the approvals it needs.
    Approved {
        have: i64,
        need: i64,
        queued: bool,
    },
    Rejected,
    /// Too late: the job expired (now, or before).
    Expired,
    /// This person decided on it already.
    AlreadyDecided,
    /// It is not waiting for approval (any more): its state.
    NotAwaiting(JobState),
    Missing,
}

/// What [`Queue::upkeep`] did.
#[derive(Debug, Default)]
pub struct Upkeep {
    /// Jobs whose lapsed lease returned them to the queue (or failed them).
    pub reaped: usize,
    /// Jobs awaiting approval this caller must ask for.
    pub ask_approvals: Vec<Job>,
}

/// A claimed job. `job.attempt` is the fencing token of this claim.
#[derive(Debug, Clone)]
pub struct Lease {
    pub job: Job,
    pub owner: String,
}

/// What asking to cancel a job did.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancel {
    /// It was queued: it never runs.
    Cancelled,
    /// It runs: its worker stops it at its next heartbeat, before it switches anything (a
    /// switch already under way finishes).
    Stopping,
    /// It had ended already, in this state.
    Not(JobState),
    Missing,
}

/// What a heartbeat found.
#[derive(Debug, PartialEq, Eq)]
pub enum Beat {
    /// The lease is renewed.
    Ours,
    /// The lease is renewed, and this person asked to cancel the job.
    CancelRequested(String),
    /// The job is no longer ours: stop and switch nothing.
    Lost,
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
    /// Stopped by a person before it switched anything (`message` says who).
    Cancelled {
        message: String,
    },
}

#[derive(Clone, Debug)]
pub struct Queue {
    store: Store,
    wake: Arc<Notify>,
    max_attempts: u32,
    batches: Batches,
    /// PostgreSQL: vacuums `jobs` after a burst of claims ([`vacuum`]).
    vacuum: Option<Arc<Vacuum>>,
}

/// The group commits of the hot writes ([`batch`]): enqueues, claims, finishes; and the reads
/// that answer the requests that queued jobs.
#[derive(Clone, Debug)]
struct Batches {
    enqueue: Arc<Batcher<enqueue::Pending, Enqueued>>,
    /// Jobs just queued, each with the count of jobs ahead of it ([`Queue::queued_answer`]).
    answers: Arc<Batcher<i64, Option<(Job, i64)>>>,
    /// Claimers' owner and lease; the job each gets, if any.
    claim: Arc<Batcher<(String, Duration), Option<Job>>>,
    /// Whether each finish was still the job's owner's.
    finish: Arc<Batcher<Finished, bool>>,
}

/// A job's end as its finish batch carries it.
#[derive(Debug, serde::Serialize)]
struct Finished {
    id: i64,
    attempt: i64,
    state: &'static str,
    summary: String,
    error: Option<String>,
    result: Option<String>,
}

impl Queue {
    pub fn new(store: Store, max_attempts: u32) -> Self {
        let vacuum = match store.backend() {
            Backend::Postgres(pool) => Some(Arc::new(Vacuum::new(pool.clone()))),
            Backend::Sqlite(_) => None,
        };
        Self {
            vacuum,
            store,
            wake: Arc::new(Notify::new()),
            max_attempts,
            batches: Batches {
                enqueue: Arc::new(Batcher::new(enqueue::MAX_BATCH)),
                answers: Arc::new(Batcher::new(enqueue::MAX_BATCH)),
                claim: Arc::new(Batcher::new(MAX_CLAIMS)),
                finish: Arc::new(Batcher::new(MAX_CLAIMS)),
            },
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Resolves when a job was enqueued in this process (workers also poll, for other writers).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Job `id` as the request that queued it is answered, with how many older jobs of its lane
    /// are queued or running: those ahead of it, counted up to more than [`AHEAD_COUNTED`] (a
    /// larger answer says only "more than that"), so an answer costs the same however long the
    /// queue is (two index lookups, `jobs_queued_by_lane` and `jobs_one_running_per_lane`, that
    /// read at most that many entries). `None` if there is no such job. The answers asked for
    /// meanwhile are read together, in one read: each job with its count (on SQLite every read
    /// is a hand-off to a connection's thread and back, and costs more than the counts).
    pub async fn queued_answer(&self, id: i64) -> Result<Option<(Job, i64)>, StoreError> {
        let queue = self.clone();
        self.batches
            .answers
            .submit(id, move |ids| queue.clone().answer_batch(ids))
            .await
    }

    async fn answer_batch(self, ids: Vec<i64>) -> Result<Vec<Option<(Job, i64)>>, StoreError> {
        /// A job with the count ahead of it.
        #[derive(sqlx::FromRow)]
        struct Answer {
            #[sqlx(flatten)]
            job: Job,
            ahead: i64,
        }
        let store = &self.store;
        let sql = format!(
            "SELECT {JOB_COLUMNS}, \
               (SELECT COUNT(*) FROM (SELECT 1 FROM jobs q WHERE q.lane = j.lane \
                  AND q.state = 'queued' AND q.id < j.id LIMIT {cap}) AS q) \
               + (SELECT COUNT(*) FROM jobs r WHERE r.lane = j.lane AND r.state = 'running' \
                  AND r.id < j.id) AS ahead \
             FROM jobs j WHERE j.id IN (SELECT CAST(value ->> 0 AS BIGINT) FROM {rows})",
            cap = AHEAD_COUNTED + 1,
            rows = json_rows(store.reader())
        );
        let list = json(&ids.iter().map(|id| [id]).collect::<Vec<_>>())?;
        let answers: Vec<Answer> = on_reader!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&list)
            .fetch_all(pool)
            .await?);
        let answers: HashMap<i64, (Job, i64)> = answers
            .into_iter()
            .map(|a| (a.job.id, (a.job, a.ahead)))
            .collect();
        Ok(ids.iter().map(|id| answers.get(id).cloned()).collect())
    }

    /// Whether a worker has anything to do: a queued job, a lapsed lease to reap, approvals to
    /// ask for or expire (a read: idle workers ask this before claiming, which writes).
    pub async fn has_work(&self) -> Result<bool, StoreError> {
        Ok(on_reader!(self.store, pool => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued') \
             OR EXISTS (SELECT 1 FROM jobs WHERE state = 'running' AND lease_until < $1) \
             OR EXISTS (SELECT 1 FROM jobs WHERE state = 'awaiting_approval' \
                        AND (approval_requested = 0 OR approve_by < $1))",
        )
        .bind(now_ms())
        .fetch_one(pool)
        .await?))
    }

    /// Records `approver`'s decision on job `id` (the caller checked they may decide, and that
    /// it is not their own request). Enough approvals queue the job; a rejection ends it.
    pub async fn decide(
        &self,
        id: i64,
        approver: &str,
        approve: bool,
    ) -> Result<Decision, StoreError> {
        let now = now_ms();
        let decision = on_pool!(self.store, pool => {
            let mut tx = WriteTx::begin(pool).await?;
            let row: Option<(JobState, i64, Option<i64>)> = sqlx::query_as(
                "SELECT state, approvals_needed, approve_by FROM jobs WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(tx.conn().await?)
            .await?;
            let decision = match row {
                None => Decision::Missing,
                Some((state, _, _)) if state != JobState::AwaitingApproval => {
                    Decision::NotAwaiting(state)
                }
                Some((_, _, Some(by))) if by < now => {
                    sqlx::query(
                        "UPDATE jobs SET state = 'expired', finished_at = $1, \
                         summary = 'no approval in the time allowed' WHERE id = $2",
                    )
                    .bind(now)
                    .bind(id)
                    .execute(tx.conn().await?)
                    .await?;
                    Decision::Expired
                }
                Some((_, need, _)) => {
                    let verb = if approve { "approve" } else { "reject" };
                    let inserted = sqlx::query(
                        "INSERT INTO approvals (job_id, approver, decision, at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (job_id, approver) DO NOTHING",
                    )
                    .bind(id)
                    .bind(approver)
                    .bind(verb)
                    .bind(now)
                    .execute(tx.conn().await?)
                    .await?
                    .rows_affected();
                    if inserted == 0 {
                        Decision::AlreadyDecided
                    } else if !approve {
                        sqlx::query(
                            "UPDATE jobs SET state = 'rejected', finished_at = $1, summary = $2 \
                             WHERE id = $3",
                        )
                        .bind(now)
                        .bind(format!("rejected by {approver}"))
                        .bind(id)
                        .execute(tx.conn().await?)
                        .await?;
                        Decision::Rejected
                    } else {
                        let have: i64 = sqlx::query_scalar(
                            "SELECT COUNT(*) FROM approvals WHERE job_id = $1 AND decision = 'approve'",
                        )
                        .bind(id)
                        .fetch_one(tx.conn().await?)
                        .await?;
                        let message = format!("approved by {approver} ({have} of {need})");
                        insert_event!(tx, id, now, "approved", &message);
                        let queued = have >= need;
                        if queued {
                            sqlx::query("UPDATE jobs SET state = 'queued' WHERE id = $1")
                                .bind(id)
                                .execute(tx.conn().await?)
                                .await?;
                            insert_event!(tx, id, now, JobState::Queued, "approved: queued");
                        }
                        Decision::Approved { have, need, queued }
                    }
                }
            };
            tx.commit().await?;
            decision
        });
        if let Decision::Approved { queued: true, .. } = decision {
            self.wake.notify_waiters();
            if let Backend::Postgres(pool) = self.store.backend() {
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(NOTIFY_CHANNEL)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(decision)
    }

    /// Claims the oldest runnable job for `owner` (the replica; recorded on the job). Claims
    /// made meanwhile in this process go together: one statement takes a job for each.
    pub async fn claim(&self, owner: &str, lease: Duration) -> Result<Claim, StoreError> {
        let queue = self.clone();
        let claimed = self
            .batches
            .claim
            .submit((owner.to_owned(), lease), move |claimers| {
                queue.clone().claim_batch(claimers)
            })
            .await?;
        Ok(match claimed {
            Some(job) => Claim::Job(Box::new(Lease {
                job,
                owner: owner.to_owned(),
            })),
            None => Claim::Empty,
        })
    }

    /// One statement per owner and lease among `claimers`, taking up to as many jobs as they
    /// are; the jobs go to the claimers oldest first, the rest get none.
    async fn claim_batch(
        self,
        claimers: Vec<(String, Duration)>,
    ) -> Result<Vec<Option<Job>>, StoreError> {
        let now = now_ms();
        // The oldest queued jobs that are the heads of their lanes (so two claimers racing on
        // one lane cannot take its jobs out of order, and one statement takes at most one job
        // of a lane) and whose lanes have nothing running. Both checks are index lookups per
        // candidate (`jobs_queued_by_lane`, `jobs_one_running_per_lane`). On PostgreSQL the
        // candidate rows are locked and rows other claimers hold are skipped; SQLite has one
        // writer at a time, so the same statement needs no lock clause. The `running` events
        // are written by the `jobs_claimed` trigger in the same statement, with the database
        // clock after the rows were won: one round trip, and the event log never shows two
        // jobs of a lane overlapping.
        //
        // SQLite 3.51's planner, left alone, scans `jobs_queued_by_lane` and sorts, which makes
        // every claim cost a pass over the whole queue; `INDEXED BY` pins the id-ordered index
        // so the scan ends once it has its candidates.
        let (candidates, lock) = match self.store.backend() {
            Backend::Sqlite(_) => ("jobs j INDEXED BY jobs_queued", ""),
            Backend::Postgres(_) => ("jobs j", "FOR UPDATE SKIP LOCKED"),
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_owner = $1, \
             lease_until = $2, started_at = COALESCE(started_at, $3) \
             WHERE id IN (SELECT j.id FROM {candidates} WHERE j.state = 'queued' \
                AND j.id = (SELECT MIN(o.id) FROM jobs o WHERE o.lane = j.lane AND o.state = 'queued') \
                AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.lane = j.lane AND r.state = 'running') \
                ORDER BY j.id LIMIT $4 {lock}) RETURNING {JOB_COLUMNS}"
        );
        let mut answers: Vec<Option<Job>> = claimers.iter().map(|_| None).collect();
        let mut groups: Vec<(&str, Duration, Vec<usize>)> = Vec::new();
        for (i, (owner, lease)) in claimers.iter().enumerate() {
            match groups.iter_mut().find(|(o, l, _)| o == owner && l == lease) {
                Some((_, _, members)) => members.push(i),
                None => groups.push((owner, *lease, vec![i])),
            }
        }
        for (owner, lease, members) in groups {
            let mut jobs: Vec<Job> = on_pool!(self.store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(owner)
                .bind(now + lease.as_millis() as i64)
                .bind(now)
                .bind(members.len() as i64)
                .fetch_all(pool)
                .await?);
            if let Some(vacuum) = &self.vacuum {
                vacuum.claimed(jobs.len());
            }
            jobs.sort_unstable_by_key(|job| job.id);
            for (member, job) in members.into_iter().zip(jobs) {
                answers[member] = Some(job);
            }
        }
        Ok(answers)
    }

    /// Renews the lease, and reads whether someone asked to cancel the job meanwhile (the flag
    /// is on the row, so a cancel reaches the worker on whichever replica runs the job).
    pub async fn heartbeat(&self, lease: &Lease, duration: Duration) -> Result<Beat, StoreError> {
        let now = now_ms();
        let until = now + duration.as_millis() as i64;
        let beat: Option<(Option<String>,)> = on_pool!(self.store, pool => sqlx::query_as(
            "UPDATE jobs SET lease_until = $1 \
             WHERE id = $2 AND attempt = $3 AND state = 'running' AND lease_until >= $4 \
             RETURNING cancel_requested_by",
        )
        .bind(until)
        .bind(lease.job.id)
        .bind(lease.job.attempt)
        .bind(now)
        .fetch_optional(pool)
        .await?);
        Ok(match beat {
            None => Beat::Lost,
            Some((None,)) => Beat::Ours,
            Some((Some(by),)) => Beat::CancelRequested(by),
        })
    }

    /// Records the commit a deploy queued by a ref's name looked up as it started. `false`
    /// means the lease was lost and nothing was written.
    pub async fn pin_commit(&self, lease: &Lease, sha: &Sha) -> Result<bool, StoreError> {
        let pinned = on_pool!(self.store, pool => sqlx::query(
            "UPDATE jobs SET sha = $1 \
             WHERE id = $2 AND attempt = $3 AND state = 'running' AND sha = ''",
        )
        .bind(sha.as_str())
        .bind(lease.job.id)
        .bind(lease.job.attempt)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(pinned == 1)
    }

    /// Records how the job ended. `false` means the lease was lost and nothing was written.
    /// Finishes recorded meanwhile in this process go together, in one statement.
    pub async fn finish(&self, lease: &Lease, outcome: &Outcome) -> Result<bool, StoreError> {
        let (state, summary, error, result) = match outcome {
            Outcome::Succeeded { message } => (JobState::Succeeded, message, None, None),
            Outcome::Failed { error, result } => (
                JobState::Failed,
                error,
                Some(error.clone()),
                Some(result.to_string()),
            ),
            Outcome::Cancelled { message } => (JobState::Cancelled, message, None, None),
        };
        let finished = Finished {
            id: lease.job.id,
            attempt: lease.job.attempt,
            state: state.as_str(),
            summary: summary.clone(),
            error,
            result,
        };
        let queue = self.clone();
        self.batches
            .finish
            .submit(finished, move |rows| queue.clone().finish_batch(rows))
            .await
    }

    async fn finish_batch(self, rows: Vec<Finished>) -> Result<Vec<bool>, StoreError> {
        // The terminal events are written by the `jobs_finished` trigger (on `summary`).
        let sql = format!(
            "UPDATE jobs SET state = v.state, finished_at = $2, error = v.error, \
             result = v.result, summary = v.summary, lease_owner = NULL, lease_until = NULL \
             FROM (SELECT CAST(value ->> 'id' AS BIGINT) AS job_id, \
                   CAST(value ->> 'attempt' AS BIGINT) AS job_attempt, \
                   value ->> 'state' AS state, value ->> 'summary' AS summary, \
                   value ->> 'error' AS error, value ->> 'result' AS result \
                   FROM {}) AS v \
             WHERE id = v.job_id AND attempt = v.job_attempt AND jobs.state = 'running' \
             RETURNING id, attempt",
            json_rows(self.store.backend())
        );
        let finished: Vec<(i64, i64)> = on_pool!(self.store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(json(&rows)?)
            .bind(now_ms())
            .fetch_all(pool)
            .await?);
        Ok(rows
            .iter()
            .map(|row| finished.contains(&(row.id, row.attempt)))
            .collect())
    }

    /// Cancels job `id` for `by` (who, and through what). A queued job is withdrawn at once. A
    /// running one is flagged: its worker reads the flag with its next heartbeat and stops the
    /// job before the switch (see `worker.rs`); the request is an event of the job.
    pub async fn cancel(&self, id: i64, by: &str) -> Result<Cancel, StoreError> {
        let now = now_ms();
        // One statement: a claim racing with it either took the row first (and this matches
        // nothing) or finds it cancelled. The `jobs_finished` trigger writes the event.
        let updated = on_pool!(self.store, pool => sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1, summary = $2 \
             WHERE id = $3 AND state = 'queued'",
        )
        .bind(now)
        .bind(format!("cancelled by {by}"))
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected());
        if updated == 1 {
            return Ok(Cancel::Cancelled);
        }
        let flagged = on_pool!(self.store, pool => {
            let mut tx = WriteTx::begin(pool).await?;
            let updated = sqlx::query(
                "UPDATE jobs SET cancel_requested_by = $1 \
                 WHERE id = $2 AND state = 'running' AND cancel_requested_by IS NULL",
            )
            .bind(by)
            .bind(id)
            .execute(tx.conn().await?)
            .await?
            .rows_affected();
            if updated == 1 {
                let message = format!("cancel requested by {by}");
                insert_event!(tx, id, now, "cancel_requested", &message);
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            updated == 1
        });
        if flagged {
            return Ok(Cancel::Stopping);
        }
        Ok(match self.store.job(id).await? {
            // Asked before: it is stopping already.
            Some(job) if job.state == JobState::Running => Cancel::Stopping,
            Some(job) => Cancel::Not(job.state),
            None => Cancel::Missing,
        })
    }

    /// Gives a job back to the queue at once (shutdown), instead of letting its lease lapse.
    /// `false` means the lease was already lost.
    pub async fn release(&self, lease: &Lease, message: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let released = on_pool!(self.store, pool => {
            let mut tx = WriteTx::begin(pool).await?;
            let updated = sqlx::query(
                "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL \
                 WHERE id = $1 AND attempt = $2 AND state = 'running'",
            )
            .bind(lease.job.id)
            .bind(lease.job.attempt)
            .execute(tx.conn().await?)
            .await?
            .rows_affected();
            if updated == 1 {
                insert_event!(tx, lease.job.id, now, "interrupted", message);
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            updated == 1
        });
        if released {
            self.wake.notify_waiters();
        }
        Ok(released)
    }

    /// What a worker does before each claim: ends jobs nobody approved in time, returns jobs
    /// whose lease lapsed to the queue (or fails them once out of attempts), and takes the jobs
    /// awaiting approval that nobody asked for yet (each goes to exactly one caller across
    /// replicas, which asks: posts the message with the buttons).
    pub async fn upkeep(&self) -> Result<Upkeep, StoreError> {
        let now = now_ms();
        // One read first: every worker calls this before every claim, and a write that finds
        // nothing still takes SQLite's write lock (starving other writers, such as a
        // `slipway cleanup` run beside the server).
        let (lapsed, overdue, unasked): (bool, bool, bool) = on_reader!(self.store, pool => sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'running' AND lease_until < $1), \
             EXISTS (SELECT 1 FROM jobs WHERE state = 'awaiting_approval' AND approve_by < $1), \
             EXISTS (SELECT 1 FROM jobs WHERE state = 'awaiting_approval' \
                     AND approval_requested = 0)",
        )
        .bind(now)
        .fetch_one(pool)
        .await?);
        let mut upkeep = Upkeep::default();
        if overdue {
            // Nobody approved in time: the job ends (the trigger records the summary).
            on_pool!(self.store, pool => sqlx::query(
                "UPDATE jobs SET state = 'expired', finished_at = $1, \
                 summary = 'no approval in the time allowed' \
                 WHERE state = 'awaiting_approval' AND approve_by < $1",
            )
            .bind(now)
            .execute(pool)
            .await
            .map(drop)?);
        }
        if unasked {
            let sql = format!(
                "UPDATE jobs SET approval_requested = 1 WHERE state = 'awaiting_approval' \
                 AND approval_requested = 0 RETURNING {JOB_COLUMNS}"
            );
            upkeep.ask_approvals = on_pool!(self.store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await?);
        }
        if !lapsed {
            return Ok(upkeep);
        }
        upkeep.reaped = on_pool!(self.store, pool => {
            let mut tx = WriteTx::begin(pool).await?;
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
            .fetch_all(tx.conn().await?)
            .await?;
            for (id, state, attempt) in &reaped {
                let message = format!("lease of attempt {attempt} expired (worker lost)");
                insert_event!(tx, *id, now, *state, &message);
            }
            tx.commit().await?;
            reaped.len()
        });
        if upkeep.reaped > 0 {
            self.wake.notify_waiters();
        }
        Ok(upkeep)
    }

    /// Wakes this process's idle workers whenever another replica enqueues (PostgreSQL
    /// `LISTEN`); returns at once on SQLite, where one process owns the database. If the
    /// connection drops, workers still poll, and listening resumes on reconnect.
    pub async fn listen(&self, shutdown: tokio_util::sync::CancellationToken) {
        let Backend::Postgres(pool) = self.store.backend() else {
            return;
        };
        while !shutdown.is_cancelled() {
            let listener = async {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(NOTIFY_CHANNEL).await?;
                loop {
                    listener.recv().await?;
                    self.wake.notify_waiters();
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                result = listener => {
                    if let Err(err) = result {
                        tracing::warn!(error = %err, "LISTEN connection lost; polling until it is back");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// The most claims (and finishes) one statement carries.
const MAX_CLAIMS: usize = 64;

/// The rows of the JSON array bound as `$1`, one `value` each (a batch's rows: one SQL text
/// whatever the batch size, so the prepared statement is reused). SQLite's `jsonb_each` gives
/// each row's `value` in SQLite's binary JSON, which `value ->> N` reads without parsing text
/// again (`json_each` gave text, parsed anew for each row): pushes went about 8 % faster.
fn json_rows(backend: &Backend) -> &'static str {
    match backend {
        Backend::Sqlite(_) => "jsonb_each($1)",
        Backend::Postgres(_) => "jsonb_array_elements(CAST($1 AS jsonb)) AS r(value)",
    }
}

fn json(rows: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|e| StoreError::Sql(sqlx::Error::Encode(Box::new(e))))
}

/// The PostgreSQL channel enqueues notify.
const NOTIFY_CHANNEL: &str = "slipway_jobs";

/// Appends a row to a job's event log inside transaction `$tx`.
macro_rules! insert_event {
    ($tx:ident, $job_id:expr, $at:expr, $state:expr, $message:expr) => {
        sqlx::query("INSERT INTO job_events (job_id, at, state, message) VALUES ($1, $2, $3, $4)")
            .bind($job_id)
            .bind($at)
            .bind($state)
            .bind($message)
            .execute($tx.conn().await?)
            .await?
    };
}
use insert_event;

mod batch;
mod enqueue;
#[cfg(test)]
mod tests;
mod vacuum;

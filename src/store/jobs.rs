//! Read side of jobs: the rows and the queries that show them.

use serde::Serialize;
use sqlx::FromRow;

use super::{Store, StoreError, on_pool, on_reader};
use crate::domain::ReleaseId;

/// How far [`crate::queue::Queue::queued_answer`] counts the jobs ahead: past it, "more than
/// this many ahead" is the answer.
pub const AHEAD_COUNTED: i64 = 100;

/// Where a job is in its life. Terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "TEXT", rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    /// Replaced, while still queued, by a newer job of its environment (a newer push).
    Superseded,
    /// Withdrawn by a person: while queued, or while running (stopped before its switch).
    Cancelled,
    /// An automatic deploy that arrived while its environment was locked: recorded, never run.
    Skipped,
    /// Waits for `approvals` people to approve it before it is queued.
    AwaitingApproval,
    /// Someone with the right to approve it said no.
    Rejected,
    /// Nobody approved it in time.
    Expired,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }

    /// The job will never change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded
                | Self::Failed
                | Self::Superseded
                | Self::Cancelled
                | Self::Skipped
                | Self::Rejected
                | Self::Expired
        )
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Superseded,
            Self::Cancelled,
            Self::Skipped,
            Self::AwaitingApproval,
            Self::Rejected,
            Self::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "TEXT", rename_all = "snake_case")]
pub enum JobKind {
    /// Ship a commit and switch to it.
    Deploy,
    /// Switch back to a release already on the hosts.
    Rollback,
    /// Remove an ephemeral environment: stop it, drop its route, delete its directories.
    Teardown,
    /// Queue teardowns of an app's ephemeral environments idle past their TTL.
    Cleanup,
    /// Converge an app's ephemeral environments with its branches on GitHub.
    Reconcile,
    /// Publish a GitHub Release of a tag (and queue its deploy).
    Release,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Rollback => "rollback",
            Self::Teardown => "teardown",
            Self::Cleanup => "cleanup",
            Self::Reconcile => "reconcile",
            Self::Release => "release",
        }
    }
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub app: String,
    pub env: String,
    pub git_ref: String,
    pub sha: String,
    pub requested_by: String,
    pub source: String,
    pub delivery_id: Option<String>,
    pub state: JobState,
    pub attempt: i64,
    pub max_attempts: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    #[serde(skip)]
    pub result: Option<String>,
    /// Rollbacks: the release to switch to.
    pub target_release: Option<String>,
    /// The GitHub Deployment this job reports to.
    pub github_deployment_id: Option<i64>,
    /// The Slack channel and message (`ts`) that show this job's progress.
    pub slack_channel: Option<String>,
    pub slack_ts: Option<String>,
    /// Approvals it needs before it runs (0: none).
    pub approvals_needed: i64,
    /// When a job awaiting approval expires.
    pub approve_by: Option<i64>,
    /// Who asked to cancel this job while it ran (its worker stops it before the switch).
    pub cancel_requested_by: Option<String>,
}

impl Job {
    /// The release this job makes live. A deploy ships into a directory derived from its id and
    /// queue time, so every attempt (and every host) uses the same one; a rollback names its own.
    pub fn release_id(&self) -> ReleaseId {
        match &self.target_release {
            Some(target) => ReleaseId::from_stored(target.clone()),
            None => {
                let queued_at =
                    chrono::DateTime::from_timestamp_millis(self.created_at).unwrap_or_default();
                ReleaseId::new(queued_at, self.id)
            }
        }
    }

    /// `app/env`: the lane the job runs in.
    pub fn lane(&self) -> String {
        format!("{}/{}", self.app, self.env)
    }

    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.finished_at? - self.started_at?)
    }

    /// The failure details stored by the worker, as JSON.
    pub fn result_json(&self) -> Option<serde_json::Value> {
        self.result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
    }
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct JobEvent {
    pub at: i64,
    pub state: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct LogLine {
    /// Its place in the log (increasing; where a live view resumes).
    #[serde(skip)]
    pub id: i64,
    pub at: i64,
    pub host: String,
    pub step: String,
    pub line: String,
}

/// Which jobs a listing shows; `None` lets any through.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub app: Option<String>,
    pub env: Option<String>,
    /// A part of `requested_by` (a name, a user id, `api`...).
    pub who: Option<String>,
}

/// A `LIKE` pattern matching any text that contains `part` literally (`\` escapes); the
/// query lower-cases both sides, so it ignores ASCII case on both databases alike.
fn contains_pattern(part: &str) -> String {
    let mut pattern = String::from("%");
    for c in part.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A job event with the job it belongs to, for the audit view.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct AuditEvent {
    pub job_id: i64,
    pub lane: String,
    pub kind: JobKind,
    pub at: i64,
    pub state: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct StepResult {
    pub attempt: i64,
    pub host: String,
    pub idx: i64,
    pub name: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub started_at: i64,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Deployment {
    pub host: String,
    pub release_id: String,
    pub sha: String,
    pub git_ref: String,
    pub job_id: i64,
    pub switched_at: i64,
    pub kind: String,
    pub slot: Option<String>,
}

/// The jobs the delivery `$1` queued, oldest first (none when it is new or queued nothing): by
/// the delivery's number, whose index takes a batch's entries on its last page (migration 10).
pub(crate) const DELIVERY_JOBS: &str = "SELECT id FROM jobs \
     WHERE delivery_seq = (SELECT seq FROM deliveries WHERE id = $1) ORDER BY id";

pub(crate) const JOB_COLUMNS: &str = "id, kind, app, env, git_ref, sha, requested_by, source, \
    delivery_id, state, attempt, max_attempts, created_at, started_at, finished_at, error, result, \
    target_release, github_deployment_id, slack_channel, slack_ts, approvals_needed, approve_by, \
    cancel_requested_by";

impl Store {
    pub async fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        on_reader!(self, pool => Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(pool)
            .await?))
    }

    /// Newest first, those `filter` lets through.
    pub async fn jobs(&self, filter: &JobFilter, limit: i64) -> Result<Vec<Job>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 IS NULL OR state = $1) \
             AND ($2 IS NULL OR app = $2) AND ($3 IS NULL OR env = $3) \
             AND ($4 IS NULL OR LOWER(requested_by) LIKE LOWER($4) ESCAPE '\\') ORDER BY id DESC LIMIT $5"
        );
        on_reader!(self, pool => Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(filter.state)
            .bind(filter.app.as_deref())
            .bind(filter.env.as_deref())
            .bind(filter.who.as_deref().map(contains_pattern))
            .bind(limit)
            .fetch_all(pool)
            .await?))
    }

    /// The newest `limit` events of all jobs, newest first: who asked for what, approvals,
    /// cancels and outcomes.
    pub async fn recent_events(&self, limit: i64) -> Result<Vec<AuditEvent>, StoreError> {
        on_reader!(self, pool => Ok(sqlx::query_as(
            "SELECT e.job_id, j.lane, j.kind, e.at, e.state, e.message FROM job_events e \
             JOIN jobs j ON j.id = e.job_id ORDER BY e.id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }

    pub async fn job_events(&self, job_id: i64) -> Result<Vec<JobEvent>, StoreError> {
        on_reader!(self, pool => Ok(sqlx::query_as(
            "SELECT at, state, message FROM job_events WHERE job_id = $1 ORDER BY id",
        )
        .bind(job_id)
        .fetch_all(pool)
        .await?))
    }

    /// A job's log lines after line `after` (an id; 0: from the start), oldest first, at most
    /// `limit`: what a live view has not shown yet.
    pub async fn job_log_after(
        &self,
        job_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogLine>, StoreError> {
        on_reader!(self, pool => Ok(sqlx::query_as(
            "SELECT id, at, host, step, line FROM job_logs WHERE job_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3",
        )
        .bind(job_id)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }

    /// The last `limit` log lines of a job, oldest first.
    pub async fn job_log(&self, job_id: i64, limit: i64) -> Result<Vec<LogLine>, StoreError> {
        on_reader!(self, pool => Ok(sqlx::query_as(
            "SELECT id, at, host, step, line FROM \
             (SELECT id, at, host, step, line FROM job_logs WHERE job_id = $1 ORDER BY id DESC LIMIT $2) AS recent \
             ORDER BY id",
        )
        .bind(job_id)
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }

    pub async fn step_results(&self, job_id: i64) -> Result<Vec<StepResult>, StoreError> {
        on_reader!(self, pool => Ok(sqlx::query_as(
            "SELECT attempt, host, idx, name, status, exit_code, started_at, duration_ms \
             FROM step_results WHERE job_id = $1 ORDER BY attempt, host, idx",
        )
        .bind(job_id)
        .fetch_all(pool)
        .await?))
    }

    /// Records the GitHub Deployment job `id` reports to.
    pub async fn set_github_deployment(&self, id: i64, deployment: u64) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("UPDATE jobs SET github_deployment_id = $1 WHERE id = $2")
            .bind(deployment as i64)
            .bind(id)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Records the Slack message that shows job `id`'s progress.
    pub async fn set_slack_message(
        &self,
        id: i64,
        channel: &str,
        ts: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("UPDATE jobs SET slack_channel = $1, slack_ts = $2 WHERE id = $3")
            .bind(channel)
            .bind(ts)
            .bind(id)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Queued and running jobs, oldest first: of one lane (`app/env`), or of all.
    pub async fn active_jobs(&self, lane: Option<&str>) -> Result<Vec<Job>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('queued', 'running') \
             AND ($1 IS NULL OR lane = $1) ORDER BY id"
        );
        on_reader!(self, pool => Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(lane)
            .fetch_all(pool)
            .await?))
    }

    /// The jobs a delivery queued, oldest first (none when it is new or queued nothing).
    pub async fn delivery_jobs(&self, delivery: &str) -> Result<Vec<i64>, StoreError> {
        on_reader!(self, pool => Ok(sqlx::query_scalar(DELIVERY_JOBS)
        .bind(delivery)
        .fetch_all(pool)
        .await?))
    }

    /// The newest `limit` jobs of a lane (`app/env`), newest first.
    pub async fn lane_jobs(&self, lane: &str, limit: i64) -> Result<Vec<Job>, StoreError> {
        let sql =
            format!("SELECT {JOB_COLUMNS} FROM jobs WHERE lane = $1 ORDER BY id DESC LIMIT $2");
        on_reader!(self, pool => Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(lane)
            .bind(limit)
            .fetch_all(pool)
            .await?))
    }

    /// The GitHub Deployment of the environment's latest deploy or rollback that made one.
    pub async fn last_github_deployment(
        &self,
        app: &str,
        env: &str,
    ) -> Result<Option<u64>, StoreError> {
        let id: Option<i64> = on_reader!(self, pool => sqlx::query_scalar(
            "SELECT github_deployment_id FROM jobs WHERE lane = $1 \
             AND github_deployment_id IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .bind(format!("{app}/{env}"))
        .fetch_optional(pool)
        .await?);
        Ok(id.map(|id| id as u64))
    }

    /// What each host of an environment runs now: its latest switch.
    pub async fn live_deployments(
        &self,
        app: &str,
        env: &str,
    ) -> Result<Vec<Deployment>, StoreError> {
        on_reader!(self, pool => Ok(sqlx::query_as(
            "SELECT host, release_id, sha, git_ref, job_id, switched_at, kind, slot FROM deployments d \
             WHERE app = $1 AND env = $2 AND id = \
               (SELECT MAX(id) FROM deployments WHERE app = d.app AND env = d.env AND host = d.host) \
             ORDER BY host",
        )
        .bind(app)
        .bind(env)
        .fetch_all(pool)
        .await?))
    }
}

impl Store {
    /// The releases an environment ran, newest switch first, each once: `[0]` is live, `[1]` the
    /// one a rollback goes back to.
    pub async fn release_history(
        &self,
        app: &str,
        env: &str,
        limit: i64,
    ) -> Result<Vec<Deployment>, StoreError> {
        on_reader!(self, pool => Ok(sqlx::query_as(
            "SELECT host, release_id, sha, git_ref, job_id, switched_at, kind, slot FROM deployments d \
             WHERE app = $1 AND env = $2 AND id = \
               (SELECT MAX(id) FROM deployments WHERE app = d.app AND env = d.env AND release_id = d.release_id) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(app)
        .bind(env)
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }
}

/// Everything known about one job: what `jobs show` prints and `GET /api/jobs/ID` returns.
#[derive(Debug, Clone, Serialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: Job,
    pub release_id: String,
    pub duration_ms: Option<i64>,
    pub result: Option<serde_json::Value>,
    pub events: Vec<JobEvent>,
    pub steps: Vec<StepResult>,
    pub log: Vec<LogLine>,
}

impl JobDetail {
    /// Log lines included in a detail view (the newest ones).
    pub const LOG_LINES: i64 = 2000;
}

impl Store {
    pub async fn job_detail(
        &self,
        id: i64,
        log_lines: i64,
    ) -> Result<Option<JobDetail>, StoreError> {
        let Some(job) = self.job(id).await? else {
            return Ok(None);
        };
        Ok(Some(JobDetail {
            release_id: job.release_id().to_string(),
            duration_ms: job.duration_ms(),
            result: job.result_json(),
            events: self.job_events(id).await?,
            steps: self.step_results(id).await?,
            log: self.job_log(id, log_lines).await?,
            job,
        }))
    }
}

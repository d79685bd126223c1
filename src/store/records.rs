//! Write side of a running job's records: log lines, step results and switches. State
//! transitions are not here: they belong to [`crate::queue`].

use super::{Store, StoreError, WriteTx, now_ms, on_pool};

/// A captured output line waiting to be stored.
#[derive(Debug, Clone)]
pub struct NewLogLine {
    pub at: i64,
    pub host: String,
    pub step: String,
    pub line: String,
}

#[derive(Debug, Clone)]
pub struct NewStepResult<'a> {
    pub job_id: i64,
    pub attempt: i64,
    pub host: &'a str,
    pub idx: i64,
    pub name: &'a str,
    pub status: &'a str,
    pub exit_code: Option<i32>,
    pub started_at: i64,
    pub duration_ms: i64,
}

impl Store {
    /// Appends lines in one statement (the log writer batches them).
    pub async fn append_log(&self, job_id: i64, lines: &[NewLogLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        on_pool!(self, pool => {
            let mut query =
                sqlx::QueryBuilder::new("INSERT INTO job_logs (job_id, at, host, step, line) ");
            query.push_values(lines, |mut row, line| {
                row.push_bind(job_id)
                    .push_bind(line.at)
                    .push_bind(&line.host)
                    .push_bind(&line.step)
                    .push_bind(&line.line);
            });
            query.build().execute(pool).await?;
        });
        Ok(())
    }

    pub async fn record_step(&self, r: &NewStepResult<'_>) -> Result<(), StoreError> {
        on_pool!(self, pool => {
        sqlx::query(
            "INSERT INTO step_results (job_id, attempt, host, idx, name, status, exit_code, \
             started_at, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (job_id, attempt, host, idx) DO UPDATE SET status = excluded.status, \
             exit_code = excluded.exit_code, duration_ms = excluded.duration_ms",
        )
        .bind(r.job_id)
        .bind(r.attempt)
        .bind(r.host)
        .bind(r.idx)
        .bind(r.name)
        .bind(r.status)
        .bind(r.exit_code.map(i64::from))
        .bind(r.started_at)
        .bind(r.duration_ms)
        .execute(pool)
        .await?;
        });
        Ok(())
    }

    /// Records that `hosts` (each with its blue/green slot, if any) now serve `release`.
    pub async fn record_switch(
        &self,
        job: &super::Job,
        release: &crate::domain::ReleaseId,
        hosts: &[(String, Option<&str>)],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        on_pool!(self, pool => {
        let mut tx = WriteTx::begin(pool).await?;
        for (host, slot) in hosts {
            sqlx::query(
                "INSERT INTO deployments (app, env, host, release_id, sha, git_ref, job_id, \
                 switched_at, kind, slot) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&job.app)
            .bind(&job.env)
            .bind(host)
            .bind(release.as_str())
            .bind(&job.sha)
            .bind(&job.git_ref)
            .bind(job.id)
            .bind(now)
            .bind(job.kind.as_str())
            .bind(*slot)
            .execute(tx.conn().await?)
            .await?;
        }
        tx.commit().await?;
        });
        Ok(())
    }
}

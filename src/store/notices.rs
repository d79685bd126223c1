//! The messages slipway sends about a job besides its channel message: the thread reply with a
//! failure's log and the requester's DM. Each is a row claimed before it is sent, so that it
//! is sent at most once per job across restarts, retried attempts and replicas; a send that
//! fails gives its claim back, for a later attempt to try again.

use super::{Store, StoreError, now_ms, on_pool};

/// A kind of message sent once per job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The thread reply under the job's channel message with the failing step's log.
    Thread,
    /// The direct message to the person who asked for the job.
    Dm,
}

impl Notice {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thread => "thread",
            Self::Dm => "dm",
        }
    }
}

impl Store {
    /// Claims `notice` of job `id` for the caller: `false` when someone claimed it before (it
    /// was sent, or is being sent).
    pub async fn claim_notice(&self, id: i64, notice: Notice) -> Result<bool, StoreError> {
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO job_notices (job_id, kind, at) VALUES ($1, $2, $3) \
             ON CONFLICT (job_id, kind) DO NOTHING",
        )
        .bind(id)
        .bind(notice.as_str())
        .bind(now_ms())
        .execute(pool)
        .await?
        .rows_affected());
        Ok(inserted == 1)
    }

    /// Records where a claimed notice was sent (`ts`), or, with `None`, gives the claim back
    /// because sending failed.
    pub async fn settle_notice(
        &self,
        id: i64,
        notice: Notice,
        ts: Option<&str>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => match ts {
            Some(ts) => sqlx::query("UPDATE job_notices SET ts = $1 WHERE job_id = $2 AND kind = $3")
                .bind(ts)
                .bind(id)
                .bind(notice.as_str())
                .execute(pool)
                .await
                .map(drop)?,
            None => sqlx::query("DELETE FROM job_notices WHERE job_id = $1 AND kind = $2")
                .bind(id)
                .bind(notice.as_str())
                .execute(pool)
                .await
                .map(drop)?,
        });
        Ok(())
    }
}

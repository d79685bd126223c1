//! Human holds on environments (`/deploy lock ENV REASON [for 2h]`). The hold is a row; it is
//! checked inside the enqueue transaction ([`crate::queue`]), so it holds across replicas.

use serde::Serialize;
use sqlx::FromRow;

use super::{Store, StoreError, WriteTx, on_pool, on_reader};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct Lock {
    pub app: String,
    pub env: String,
    pub holder: String,
    pub reason: String,
    pub created_at: i64,
    /// Until unlocked when `None`.
    pub expires_at: Option<i64>,
}

impl Lock {
    /// In words, for refusals: `shop/production is locked by alice: migration (until ...)`.
    pub fn describe(&self) -> String {
        let until = self.expires_at.map_or(String::new(), |at| {
            let at = chrono::DateTime::from_timestamp_millis(at).unwrap_or_default();
            format!(" (until {})", at.format("%Y-%m-%d %H:%M UTC"))
        });
        format!(
            "{}/{} is locked by {}: {}{until}",
            self.app, self.env, self.holder, self.reason
        )
    }
}

/// How a lock request went.
#[derive(Debug, PartialEq, Eq)]
pub enum Locked {
    /// Held now by the requester (new, or theirs already and renewed).
    Held(Lock),
    /// Someone else holds it.
    HeldBy(Lock),
}

/// The unexpired lock of app `$1`, env `$2` at time `$3`.
const HELD_LOCK: &str = "SELECT app, env, holder, reason, created_at, expires_at \
    FROM env_locks WHERE app = $1 AND env = $2 AND (expires_at IS NULL OR expires_at > $3)";

/// Every lock unexpired at time `$1` (read by the enqueue transaction).
pub(crate) const HELD_LOCKS: &str = "SELECT app, env, holder, reason, created_at, expires_at \
    FROM env_locks WHERE expires_at IS NULL OR expires_at > $1";

impl Store {
    /// The unexpired lock of `app`/`env` at `now`, if any.
    pub async fn env_lock(
        &self,
        app: &str,
        env: &str,
        now: i64,
    ) -> Result<Option<Lock>, StoreError> {
        on_reader!(self, pool => Ok(sqlx::query_as(HELD_LOCK)
            .bind(app)
            .bind(env)
            .bind(now)
            .fetch_optional(pool)
            .await?))
    }

    /// Locks `app`/`env` for `holder`, unless someone else holds an unexpired lock on it.
    pub async fn lock_env(&self, lock: &Lock) -> Result<Locked, StoreError> {
        on_pool!(self, pool => {
            let mut tx = WriteTx::begin(pool).await?;
            let held: Option<Lock> = sqlx::query_as(HELD_LOCK)
                .bind(&lock.app)
                .bind(&lock.env)
                .bind(lock.created_at)
                .fetch_optional(tx.conn().await?)
                .await?;
            if let Some(held) = held.filter(|h| h.holder != lock.holder) {
                tx.rollback().await?;
                return Ok(Locked::HeldBy(held));
            }
            sqlx::query(
                "INSERT INTO env_locks (app, env, holder, reason, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app, env) DO UPDATE SET \
                 holder = excluded.holder, reason = excluded.reason, \
                 created_at = excluded.created_at, expires_at = excluded.expires_at",
            )
            .bind(&lock.app)
            .bind(&lock.env)
            .bind(&lock.holder)
            .bind(&lock.reason)
            .bind(lock.created_at)
            .bind(lock.expires_at)
            .execute(tx.conn().await?)
            .await?;
            tx.commit().await?;
            Ok(Locked::Held(lock.clone()))
        })
    }

    /// Removes the lock of `app`/`env`; the one that was there (expired or not), if any.
    pub async fn unlock_env(&self, app: &str, env: &str) -> Result<Option<Lock>, StoreError> {
        let sql = "DELETE FROM env_locks WHERE app = $1 AND env = $2 \
            RETURNING app, env, holder, reason, created_at, expires_at";
        on_pool!(self, pool => Ok(sqlx::query_as(sql)
            .bind(app)
            .bind(env)
            .fetch_optional(pool)
            .await?))
    }
}

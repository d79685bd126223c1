//! Ephemeral environments' rows: created and marked for teardown with their jobs (in
//! [`crate::queue`]), moved through their lifecycle here by the worker and the scheduled jobs.

use serde::Serialize;
use sqlx::FromRow;

use super::{Store, StoreError, WriteTx, on_pool, on_reader};

/// Where an ephemeral environment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "TEXT", rename_all = "snake_case")]
pub enum EnvState {
    /// Created by a push; its first deploy has not succeeded yet.
    Provisioning,
    Live,
    /// Live, with a newer deploy running.
    Updating,
    TearingDown,
    Gone,
    /// Its first deploy or its teardown failed.
    Failed,
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct EphemeralRow {
    pub id: i64,
    pub app: String,
    pub template: String,
    pub env: String,
    pub branch: String,
    pub hostname: String,
    pub port: Option<i64>,
    pub state: EnvState,
    /// What is live.
    pub sha: Option<String>,
    pub last_push_at: i64,
    pub keep_until: Option<i64>,
    pub warned_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl EnvState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Live => "live",
            Self::Updating => "updating",
            Self::TearingDown => "tearing_down",
            Self::Gone => "gone",
            Self::Failed => "failed",
        }
    }
}

impl EphemeralRow {
    pub fn port(&self) -> Option<u16> {
        self.port.and_then(|p| u16::try_from(p).ok())
    }

    /// The slug in its name (`<template>-<slug>`).
    pub fn slug(&self) -> &str {
        self.env
            .strip_prefix(self.template.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .unwrap_or(&self.env)
    }
}

const COLUMNS: &str = "id, app, template, env, branch, hostname, port, state, sha, last_push_at, \
    keep_until, warned_at, created_at, updated_at";

/// The ports an environment may take and how many of its template may hold one.
pub struct PortPolicy<'a> {
    pub template: &'a str,
    pub range: std::ops::RangeInclusive<u16>,
    pub max: usize,
}

impl Store {
    /// The environment `app`/`env` unless it is gone.
    pub async fn ephemeral_env(
        &self,
        app: &str,
        env: &str,
    ) -> Result<Option<EphemeralRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM ephemeral_envs WHERE app = $1 AND env = $2 AND state <> 'gone'"
        );
        on_reader!(self, pool => Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(app)
            .bind(env)
            .fetch_optional(pool)
            .await?))
    }

    /// Every environment that exists (not gone), oldest first.
    pub async fn ephemeral_envs(&self) -> Result<Vec<EphemeralRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM ephemeral_envs WHERE state <> 'gone' ORDER BY id");
        on_reader!(self, pool => Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await?))
    }

    /// Gives environment `id` a port, unless it has one: the lowest free one of the range
    /// (across every existing environment), within the template's maximum count.
    /// `Ok(Err(why))`: no port can be had, in words for the job's error.
    pub async fn allocate_port(
        &self,
        id: i64,
        policy: &PortPolicy<'_>,
    ) -> Result<Result<u16, String>, StoreError> {
        // Two replicas can pick the same port at once on PostgreSQL; the unique index refuses
        // the second, which then picks again.
        for _ in 0..5 {
            let picked: Result<Result<u16, String>, StoreError> = on_pool!(self, pool => async {
                let mut tx = WriteTx::begin(pool).await?;
                let (own, row_app): (Option<i64>, String) =
                    sqlx::query_as("SELECT port, app FROM ephemeral_envs WHERE id = $1")
                        .bind(id)
                        .fetch_one(tx.conn().await?)
                        .await?;
                if let Some(port) = own.and_then(|p| u16::try_from(p).ok()) {
                    tx.rollback().await?;
                    return Ok(Ok(port));
                }
                let used: Vec<(i64, String, String)> = sqlx::query_as(
                    "SELECT port, app, template FROM ephemeral_envs \
                     WHERE state <> 'gone' AND port IS NOT NULL",
                )
                .fetch_all(tx.conn().await?)
                .await?;
                let holding = used
                    .iter()
                    .filter(|(_, app, template)| *app == row_app && template == policy.template)
                    .count();
                if holding >= policy.max {
                    tx.rollback().await?;
                    return Ok(Err(format!(
                        "{} already has its maximum of {} environments; tear one down or raise `max`",
                        policy.template, policy.max
                    )));
                }
                let ports: Vec<u16> = used.iter().filter_map(|(p, ..)| u16::try_from(*p).ok()).collect();
                let Some(port) = crate::ephemeral::free_port(policy.range.clone(), &ports) else {
                    tx.rollback().await?;
                    return Ok(Err(format!(
                        "every port of {}-{} is in use; tear an environment down or widen `ports`",
                        policy.range.start(),
                        policy.range.end()
                    )));
                };
                sqlx::query("UPDATE ephemeral_envs SET port = $1 WHERE id = $2")
                    .bind(i64::from(port))
                    .bind(id)
                    .execute(tx.conn().await?)
                    .await?;
                tx.commit().await?;
                Ok(Ok(port))
            }
            .await);
            match picked {
                Err(StoreError::Sql(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                    continue;
                }
                other => return other,
            }
        }
        Ok(Err(
            "could not allocate a port: too many environments starting at once".into(),
        ))
    }

    /// Records that cleanup warned about environment `id` (once per idle spell: a push clears it).
    pub async fn mark_warned(&self, id: i64, now: i64) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("UPDATE ephemeral_envs SET warned_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(pool)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Keeps environment `app`/`env` from cleanup until `until`; `false` if it does not exist.
    pub async fn keep_env(&self, app: &str, env: &str, until: i64) -> Result<bool, StoreError> {
        let updated = on_pool!(self, pool => sqlx::query(
            "UPDATE ephemeral_envs SET keep_until = $1, warned_at = NULL \
             WHERE app = $2 AND env = $3 AND state <> 'gone'",
        )
        .bind(until)
        .bind(app)
        .bind(env)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(updated == 1)
    }

    /// Moves environment `id` to `state`; `sha`, when given, is what is live now. Only from
    /// one of `from`, so that a push or a teardown that came in meanwhile is not overwritten.
    pub async fn set_env_state(
        &self,
        id: i64,
        from: &[EnvState],
        state: EnvState,
        sha: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let from: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let sql = format!(
            "UPDATE ephemeral_envs SET state = $1, sha = COALESCE($2, sha), updated_at = $3 \
             WHERE id = $4 AND state IN ({})",
            from.join(", ")
        );
        let updated = on_pool!(self, pool => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state)
            .bind(sha)
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(updated == 1)
    }
}

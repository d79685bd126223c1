//! Persistence: the connection pool, migrations, and the read queries behind `jobs list/show`
//! and the API. Writes that move a job between states live in [`crate::queue`], so the state
//! machine has one home.
//!
//! Two backends, one SQL text where the dialects agree (SQLite accepts `$1` parameters): SQLite
//! is the embedded default; PostgreSQL lets several replicas share the queue. [`on_pool!`] runs
//! a block once per backend's concrete pool type, so each query is written once and compiled
//! twice; the few places that differ (the claim's row locking, transaction start) say so.
//! Both schemas (`migrations/sqlite`, `migrations/postgres`) are kept in step by running the
//! whole store/queue test suite against both. Times are UTC milliseconds (`INTEGER`/`BIGINT`).

mod ephemeral;
mod jobs;
mod locks;
mod notices;
mod records;
mod write;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use ephemeral::{EnvState, EphemeralRow, PortPolicy};
pub use jobs::{
    AHEAD_COUNTED, AuditEvent, Deployment, Job, JobDetail, JobEvent, JobFilter, JobKind, JobState,
    LogLine, StepResult,
};
pub(crate) use jobs::{DELIVERY_JOBS, JOB_COLUMNS};
pub(crate) use locks::HELD_LOCKS;
pub use locks::{Lock, Locked};
pub use notices::Notice;
pub use records::{NewLogLine, NewStepResult};
pub use write::{Arg, Statement, WriteBackend, WriteTx};

/// SQLite's read-only connections (see [`Store::open`]).
const SQLITE_READERS: u32 = 2;

pub(crate) static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
pub(crate) static POSTGRES_MIGRATOR: sqlx::migrate::Migrator =
    sqlx::migrate!("migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unsupported database URL {0}: use sqlite://PATH or postgres://...")]
    Unsupported(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// The batch of writes a request went into failed (see [`crate::queue`]'s enqueue).
    #[error("{0}")]
    Batch(#[source] Arc<StoreError>),
}

/// The concrete pool behind a [`Store`].
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the store's concrete pool (`&SqlitePool` or `&PgPool`).
/// The body is compiled once per backend; it must be valid SQL for both.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store.backend() {
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// As [`on_pool!`], for a read outside any write transaction: on SQLite it runs on the readers'
/// pool, so it never waits behind the writer's transaction (WAL lets readers read while the one
/// writer writes, and each read sees everything committed before it started); on PostgreSQL on
/// the one pool.
macro_rules! on_reader {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store.reader() {
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_reader;

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// Where reads outside a transaction go: SQLite's read-only connections, or PostgreSQL's
    /// one pool again.
    reader: Backend,
}

impl Store {
    /// Opens (creating a SQLite file if missing) and migrates the database at `url`.
    ///
    /// SQLite runs in WAL mode with `synchronous = FULL`: a commit returns after the WAL is
    /// fsynced, so an answered request (a 202 to GitHub, which does not redeliver on its own)
    /// survives an OS crash or power loss, not only a crash of this process. The group commit
    /// (`queue::batch`) makes that one fsync per batch of requests, not per request. The busy
    /// timeout makes concurrent writers wait instead of failing.
    /// PostgreSQL's migrator takes an advisory lock, so replicas starting together are safe.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            url: redact_url(url),
            source,
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(open_err)?;
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await
                .map_err(open_err)?;
            POSTGRES_MIGRATOR.run(&pool).await?;
            return Ok(Self {
                reader: Backend::Postgres(pool.clone()),
                backend: Backend::Postgres(pool),
            });
        }
        if !url.starts_with("sqlite:") {
            return Err(StoreError::Unsupported(redact_url(url)));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        // One connection: SQLite has one writer at a time anyway, and writers queued in the
        // pool (first come, first served) beat writers racing in SQLite's busy handler, which
        // sleeps up to 100 ms between tries: under 32 concurrent webhooks p99 fell from 248 ms
        // to 21 ms at the same throughput (bench/webhooks/run.sh). Never hold a transaction
        // while acquiring another connection: it would wait forever.
        // Handed out untested: sqlx's test before each checkout (a ping) finds a PostgreSQL
        // connection its server dropped, but a SQLite connection has no server to lose, and the
        // ping is one more hand-off to its thread per checkout.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(open_err)?;
        SQLITE_MIGRATOR.run(&pool).await?;
        // Reads outside a transaction (`on_reader!`) have connections of their own, opened
        // when first needed: in WAL mode they read while the writer writes, instead of
        // waiting in the pool behind its transaction and the fsync of its commit. Read-only,
        // so a write sent there by mistake fails instead of racing the writer. Two: one per
        // core of the small box this is sized for.
        let readers = SqlitePoolOptions::new()
            .max_connections(SQLITE_READERS)
            .min_connections(0)
            .test_before_acquire(false)
            .connect_lazy_with(options.read_only(true));
        Ok(Self {
            backend: Backend::Sqlite(pool),
            reader: Backend::Sqlite(readers),
        })
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Where reads outside a transaction go (see [`on_reader!`]).
    pub fn reader(&self) -> &Backend {
        &self.reader
    }

    /// Readiness: the database answers and every migration this binary knows is applied.
    pub async fn ready(&self) -> Result<(), String> {
        let (applied, known): (Result<i64, sqlx::Error>, usize) = on_pool!(self, pool => {
            let migrator = match self.backend() {
                Backend::Sqlite(_) => &SQLITE_MIGRATOR,
                Backend::Postgres(_) => &POSTGRES_MIGRATOR,
            };
            (
                sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                    .fetch_one(pool)
                    .await,
                migrator.iter().count(),
            )
        });
        let applied = applied.map_err(|e| format!("database unreachable: {e}"))?;
        if applied < known as i64 {
            return Err(format!("{applied} of {known} migrations applied"));
        }
        Ok(())
    }
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:****{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Milliseconds since the Unix epoch, UTC.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    proptest::proptest! {
        // Whatever the password holds (`@`, `:`, `/`, `%`...), only `****` is printed in its
        // place; URLs without a password are printed as they are.
        #[test]
        fn database_passwords_are_never_printed(
            user in "[a-z][a-z0-9_]{0,11}",
            password in "[!-~]{1,24}",
            host in "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
            db in "[a-z0-9_]{1,12}",
        ) {
            let url = format!("postgres://{user}:{password}@{host}/{db}");
            proptest::prop_assert_eq!(redact_url(&url), format!("postgres://{user}:****@{host}/{db}"));
            let plain = format!("postgres://{user}@{host}/{db}");
            proptest::prop_assert_eq!(redact_url(&plain), plain.clone());
        }
    }

    /// `.cargo/config.toml` builds SQLite with a page cache per connection and no memory
    /// statistics: the readers and the writer share no lock at every page and allocation.
    #[tokio::test]
    async fn sqlite_is_built_without_its_global_locks() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
            .await
            .unwrap();
        let super::Backend::Sqlite(pool) = store.backend() else {
            unreachable!("a SQLite URL")
        };
        let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
            .fetch_all(pool)
            .await
            .unwrap();
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }

    #[test]
    fn sqlite_paths_are_printed_as_they_are() {
        assert_eq!(
            redact_url("sqlite://var/slipway.db"),
            "sqlite://var/slipway.db"
        );
    }
}

//! The write transaction every store write goes through, [`WriteTx`].
//!
//! On SQLite every statement is a hand-off to sqlx's connection thread and back, and sqlx's own
//! `BEGIN` and `COMMIT` cost two each (the thread waits until the answer is taken). The
//! connection thread runs a text of several statements in one hand-off, so here `BEGIN
//! IMMEDIATE` goes in the same text as the transaction's first statement, and the statements
//! whose results nobody reads go with `COMMIT` ([`WriteTx::commit_with`]). A push's batch is four
//! texts instead of seven statements, and pushes went about 9 % faster (BENCHMARKS.md, "Webhook
//! ingest", session 9). PostgreSQL's prepared statements take one statement each, so there each
//! is sent on its own.
//!
//! sqlx calls several statements in one query text a SQLite-only behaviour it may drop
//! (launchbadge/sqlx#3108); should an upgrade drop it, every batch fails at once and
//! `a_write_transaction_is_committed_whole_or_not_at_all_on_both_backends` says so.
//!
//! A transaction dropped before its commit (an error, a cancelled request) closes its connection
//! instead of returning it to the pool: the database rolls back what it had not committed, and
//! no connection goes back to the pool inside a transaction.

use sqlx::pool::PoolConnection;
use sqlx::{Database, Executor, Postgres, Sqlite};

use super::StoreError;

/// What a backend's write transaction starts with, and whether statements may share a text.
pub trait WriteBackend: Database {
    /// SQLite's `BEGIN IMMEDIATE` takes the write lock at once, so a writer waits on the busy
    /// timeout instead of failing when it would upgrade a read lock.
    const BEGIN: &'static str;
    /// Whether one text may carry several statements with parameters.
    const SHARES_TEXT: bool;
}

impl WriteBackend for Sqlite {
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const SHARES_TEXT: bool = true;
}

impl WriteBackend for Postgres {
    const BEGIN: &'static str = "BEGIN";
    const SHARES_TEXT: bool = false;
}

/// A parameter of a statement run with the commit.
#[derive(Debug, Clone)]
pub enum Arg {
    Int(i64),
    Text(String),
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<String> for Arg {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

/// A statement whose result is not read, with its parameters (`$1`, `$2`... in its own text).
#[derive(Debug)]
pub struct Statement {
    pub sql: String,
    pub args: Vec<Arg>,
}

/// A write transaction on a pooled connection (see the module's documentation).
pub struct WriteTx<DB: WriteBackend> {
    conn: PoolConnection<DB>,
    /// `BEGIN` is still to be sent, with the first statement.
    begin_pending: bool,
    /// Committed or rolled back: the connection may go back to the pool.
    ended: bool,
}

impl<DB: WriteBackend> WriteTx<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    /// Starts a write transaction on a connection of `pool`.
    pub async fn begin(pool: &sqlx::Pool<DB>) -> Result<Self, StoreError> {
        let mut tx = Self {
            conn: pool.acquire().await?,
            begin_pending: true,
            ended: false,
        };
        if !DB::SHARES_TEXT {
            tx.conn().await?;
        }
        Ok(tx)
    }

    /// `sql` to run as the transaction's first statement: with `BEGIN` in front of it when the
    /// backend takes both in one text and `BEGIN` was not sent yet. Run it through
    /// [`Self::conn`] at once.
    pub fn first(&mut self, sql: String) -> String {
        if self.begin_pending && DB::SHARES_TEXT {
            self.begin_pending = false;
            format!("{}; {sql}", DB::BEGIN)
        } else {
            sql
        }
    }

    /// The connection, inside the transaction (`BEGIN` is sent now if it has not been).
    pub async fn conn(&mut self) -> Result<&mut DB::Connection, StoreError> {
        if self.begin_pending {
            sqlx::raw_sql(DB::BEGIN).execute(&mut *self.conn).await?;
            self.begin_pending = false;
        }
        Ok(&mut *self.conn)
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.commit_with(Vec::new()).await
    }

    /// Runs `statements` in order, then commits; on SQLite all of it is one text.
    pub async fn commit_with(mut self, statements: Vec<Statement>) -> Result<(), StoreError> {
        if DB::SHARES_TEXT {
            let mut sql = String::new();
            let mut args = Vec::new();
            for statement in statements {
                sql.push_str(&shift_params(&statement.sql, args.len()));
                sql.push_str("; ");
                args.extend(statement.args);
            }
            sql.push_str("COMMIT");
            let sql = self.first(sql);
            run(&mut self.conn, sql, args).await?;
        } else {
            for statement in statements {
                run(self.conn().await?, statement.sql, statement.args).await?;
            }
            sqlx::raw_sql("COMMIT").execute(self.conn().await?).await?;
        }
        self.ended = true;
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<(), StoreError> {
        if !self.begin_pending {
            sqlx::raw_sql("ROLLBACK").execute(&mut *self.conn).await?;
        }
        self.ended = true;
        Ok(())
    }
}

async fn run<DB: WriteBackend>(
    conn: &mut DB::Connection,
    sql: String,
    args: Vec<Arg>,
) -> Result<(), StoreError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
    for arg in args {
        query = match arg {
            Arg::Int(value) => query.bind(value),
            Arg::Text(value) => query.bind(value),
        };
    }
    query.execute(conn).await?;
    Ok(())
}

impl<DB: WriteBackend> Drop for WriteTx<DB> {
    fn drop(&mut self) {
        if !self.ended && !self.begin_pending {
            self.conn.close_on_drop();
        }
    }
}

/// `sql` with each parameter `$N` renumbered `$N+by`, for texts of several statements. Only
/// for this crate's own SQL, which has no `$` in its string literals.
fn shift_params(sql: &str, by: usize) -> String {
    if by == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::shift_params;

    #[test]
    fn parameters_are_renumbered_past_the_statements_before() {
        assert_eq!(
            shift_params("SELECT $1, $2 FROM jsonb_each($1) WHERE x = $10", 3),
            "SELECT $4, $5 FROM jsonb_each($4) WHERE x = $13"
        );
        assert_eq!(shift_params("SELECT $1", 0), "SELECT $1");
        assert_eq!(shift_params("no parameters", 2), "no parameters");
    }
}

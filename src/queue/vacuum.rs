//! PostgreSQL only: `jobs` vacuumed after a burst of claims.
//!
//! A claim scans the queued jobs in id order (`jobs_queued`) and reads past the index entries of
//! every job claimed since the table was last vacuumed: PostgreSQL marks such an entry dead once
//! a scan finds its row gone, but keeps it, and the leaf page holding it, until a vacuum removes
//! them (SQLite removes an entry when its row changes). So a burst of claims makes each next
//! claim slower: while a queue of 100,000 jobs drained, a claim's scan grew from 306 page reads
//! (20,000 claimed) to 1,254 (89,000 claimed); after a vacuum, 20 (BENCHMARKS.md).
//!
//! Autovacuum comes late for a burst: it looks once a minute, and waits for a fifth of the table
//! to change. So after every [`EVERY`] claims in this process the queue runs `VACUUM
//! (SKIP_LOCKED) jobs` on a task of its own: one at a time, skipped while another replica's
//! vacuum holds the table, and never sooner after the last one than ten times as long as that
//! one took, so that it keeps a tenth of one connection busy at most, however large the table
//! has grown.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::PgPool;

/// Jobs claimed in this process between two vacuums.
pub(super) const EVERY: u64 = 5_000;

#[derive(Debug)]
pub(super) struct Vacuum {
    pool: PgPool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Jobs claimed since the last vacuum started.
    claimed: u64,
    running: bool,
    /// The end of the last vacuum's rest.
    not_before: Option<Instant>,
}

impl Vacuum {
    pub(super) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still holds consistent data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts `jobs` more claimed jobs, and starts a vacuum when one is due.
    pub(super) fn claimed(self: &Arc<Self>, jobs: usize) {
        let due = {
            let mut state = self.state();
            state.claimed += jobs as u64;
            let due = !state.running
                && state.claimed >= EVERY
                && state.not_before.is_none_or(|t| Instant::now() >= t);
            if due {
                state.running = true;
                state.claimed = 0;
            }
            due
        };
        if due {
            tokio::spawn(Arc::clone(self).run());
        }
    }

    async fn run(self: Arc<Self>) {
        let started = Instant::now();
        // The simple query protocol: VACUUM cannot run inside a transaction block.
        match sqlx::raw_sql("VACUUM (SKIP_LOCKED) jobs")
            .execute(&self.pool)
            .await
        {
            Ok(_) => tracing::debug!(
                took_ms = started.elapsed().as_millis() as u64,
                "vacuumed the jobs table after a burst of claims"
            ),
            Err(err) => tracing::warn!(error = %err, "could not vacuum the jobs table"),
        }
        let rest: Duration = started.elapsed() * 10;
        let mut state = self.state();
        state.running = false;
        state.not_before = Some(Instant::now() + rest);
    }
}

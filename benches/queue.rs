//! Queue throughput: claim + finish of no-op jobs, and claim latency with many finished jobs in
//! the table. Run (release build):
//!
//! ```sh
//! cargo bench --bench queue -- sqlite                      # one process, one claimer
//! cargo bench --bench queue -- postgres postgres://postgres@127.0.0.1:5432/postgres 3x4
//! ```
//!
//! Arguments: BACKEND [ADMIN_URL] [REPLICAS[xWORKERS]] [JOBS] [PREFILL]. Each replica has its
//! own queue and connection pool, as a replica process would, and WORKERS claimers (default 1)
//! sharing it, as a replica's worker pool does (claims and finishes made at once go in one
//! statement). PREFILL finished jobs are inserted first (default 1,000,000) so the claim has to
//! find queued jobs through indexes, not scans. On PostgreSQL the run has a database of its own
//! (`slipway_bench_<pid>`), dropped at the end.

use std::time::{Duration, Instant};

use slipway::domain::{GitRef, Name, Sha};
use slipway::queue::{Claim, NewJob, Outcome, Queue};
use slipway::store::{Backend, JobKind, Store};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let backend = args.first().map(String::as_str).unwrap_or("sqlite");
    let shape = args.get(2).map_or("1", String::as_str);
    let (replicas, workers): (usize, usize) = match shape.split_once('x') {
        Some((r, w)) => (r.parse().unwrap(), w.parse().unwrap()),
        None => (shape.parse().unwrap(), 1),
    };
    let jobs: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let prefill: usize = args
        .get(4)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let admin = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let url = match backend {
        "sqlite" => format!("sqlite://{}", dir.path().join("bench.db").display()),
        "postgres" => fresh_database(&admin).await,
        other => panic!("unknown backend {other}"),
    };
    let store = Store::open(&url).await.unwrap();
    let started = Instant::now();
    prefill_finished(&store, prefill).await;
    println!(
        "{backend}: prefilled {prefill} finished jobs in {:.1?}",
        started.elapsed()
    );

    // The floor under every statement: one round trip through the pool.
    let t = Instant::now();
    for _ in 0..2000 {
        match store.backend() {
            Backend::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Backend::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        }
        .unwrap();
    }
    println!(
        "{backend}: one statement round trip: {:.0?}",
        t.elapsed() / 2000
    );

    let queue = Queue::new(store, 3);
    let lanes = 1000;
    let batch: Vec<NewJob> = (0..500)
        .map(|i| NewJob {
            kind: JobKind::Deploy,
            app: Name::parse("bench").unwrap(),
            env: Name::parse(&format!("e{}", i % lanes)).unwrap(),
            git_ref: Some(GitRef::parse("main").unwrap()),
            sha: Some(Sha::parse(&"a".repeat(40)).unwrap()),
            requested_by: "bench".into(),
            source: "bench",
            target_release: None,
            ephemeral: None,
            supersede: false,
            approval: None,
        })
        .collect();
    for _ in 0..jobs / batch.len() {
        queue.enqueue(None, &batch).await.unwrap();
    }

    let mut queues = Vec::new();
    for n in 0..replicas {
        queues.push((
            Queue::new(Store::open(&url).await.unwrap(), 3),
            format!("bench:{n}"),
        ));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (queue, owner) in queues {
        for _ in 0..workers {
            let (queue, owner) = (queue.clone(), owner.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let t = Instant::now();
                    let claim = queue.claim(&owner, Duration::from_secs(60)).await.unwrap();
                    latencies.push(t.elapsed());
                    let Claim::Job(lease) = claim else { break };
                    let done = Outcome::Succeeded {
                        message: "no-op".into(),
                    };
                    assert!(queue.finish(&lease, &done).await.unwrap());
                }
                latencies
            }));
        }
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let done = jobs / batch.len() * batch.len();
    println!(
        "{backend}: {replicas} replica(s) x {workers} worker(s), {done} jobs claimed+finished in {elapsed:.2?}: {:.0} jobs/s; claim p50 {:.2?}, p99 {:.2?}",
        done as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    );
    if backend == "postgres" {
        drop_database(&admin).await;
    }
}

/// This run's database on the PostgreSQL server at `admin`.
fn database_name() -> String {
    format!("slipway_bench_{}", std::process::id())
}

async fn fresh_database(admin: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    let name = database_name();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

/// Drops this run's database (its pools may still hold connections: `FORCE` ends them).
async fn drop_database(admin: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    let name = database_name();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

/// Inserts `count` finished jobs in one statement per backend.
async fn prefill_finished(store: &Store, count: usize) {
    let columns = "INSERT INTO jobs (kind, app, env, lane, git_ref, sha, requested_by, source, state, \
                   attempt, max_attempts, created_at, started_at, finished_at)";
    match store.backend() {
        Backend::Sqlite(pool) => {
            let sql = format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
                 {columns} SELECT 'deploy', 'old', 'e' || (i % 100), 'old/e' || (i % 100), 'main', \
                 'aaaa', 'bench', 'bench', 'succeeded', 1, 3, i, i, i FROM n"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(pool)
                .await
                .unwrap();
        }
        Backend::Postgres(pool) => {
            let sql = format!(
                "{columns} SELECT 'deploy', 'old', 'e' || (i % 100), 'old/e' || (i % 100), 'main', \
                 'aaaa', 'bench', 'bench', 'succeeded', 1, 3, i, i, i FROM generate_series(1, {count}) AS i"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("ANALYZE jobs").execute(pool).await.unwrap();
        }
    }
}

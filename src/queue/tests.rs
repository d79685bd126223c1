use super::*;
use crate::store::{AHEAD_COUNTED, Notice};

struct Fixture {
    /// The SQLite file's directory (kept as long as the queue).
    _dir: Option<tempfile::TempDir>,
    queue: Queue,
}

/// The same queue on each backend: a fresh SQLite file, and a fresh database on the PostgreSQL
/// server at `SLIPWAY_TEST_POSTGRES` (default: the local one, as `scripts/test` provides).
async fn fixtures(max_attempts: u32) -> Vec<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("q.db").display());
    let mut out = Vec::new();
    for (url, dir) in [(sqlite, Some(dir)), (fresh_postgres_database().await, None)] {
        let store = Store::open(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        out.push(Fixture {
            _dir: dir,
            queue: Queue::new(store, max_attempts),
        });
    }
    out
}

async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let admin = std::env::var("SLIPWAY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (scripts/test starts one): {e}"));
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "slipway_unit_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        now_ms()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

fn job(env: &str) -> NewJob {
    NewJob {
        kind: JobKind::Deploy,
        app: Name::parse("shop").unwrap(),
        env: Name::parse(env).unwrap(),
        git_ref: Some(GitRef::parse("main").unwrap()),
        sha: Some(Sha::parse(&"ab".repeat(20)).unwrap()),
        requested_by: "octocat".into(),
        source: "test",
        target_release: None,
        ephemeral: None,
        supersede: false,
        approval: None,
    }
}

async fn claim(queue: &Queue, lease: Duration) -> Option<Lease> {
    match queue.claim("w1", lease).await.unwrap() {
        Claim::Job(lease) => Some(*lease),
        Claim::Empty => None,
    }
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn one_running_job_per_lane_fifo_within_it() {
    for f in fixtures(3).await {
        let Enqueued::Created(ids) = f
            .queue
            .enqueue(None, &[job("staging"), job("staging"), job("prod")])
            .await
            .unwrap()
        else {
            panic!("created")
        };
        let first = claim(&f.queue, LONG).await.unwrap();
        assert_eq!(first.job.id, ids[0]);
        assert_eq!(first.job.attempt, 1);
        // staging is busy, so the next claim skips the second staging job and takes prod.
        let second = claim(&f.queue, LONG).await.unwrap();
        assert_eq!(second.job.id, ids[2]);
        assert!(claim(&f.queue, LONG).await.is_none());
        let done = Outcome::Succeeded {
            message: "ok".into(),
        };
        assert!(f.queue.finish(&first, &done).await.unwrap());
        let third = claim(&f.queue, LONG).await.unwrap();
        assert_eq!(third.job.id, ids[1]);
        let stored = f.queue.store().job(ids[0]).await.unwrap().unwrap();
        assert_eq!(stored.state, JobState::Succeeded);
        let events = f.queue.store().job_events(ids[0]).await.unwrap();
        let states: Vec<_> = events.iter().map(|e| e.state.as_str()).collect();
        assert_eq!(states, ["queued", "running", "succeeded"]);
    }
}

/// A job's first event says what was asked for: the ref and the commit where it has them.
#[tokio::test]
async fn the_queued_event_says_what_was_asked_for_on_both_backends() {
    for f in fixtures(3).await {
        let teardown = NewJob {
            kind: JobKind::Teardown,
            sha: None,
            ..job("demo-x")
        };
        let cleanup = NewJob {
            kind: JobKind::Cleanup,
            git_ref: None,
            sha: None,
            requested_by: "schedule".into(),
            source: "schedule",
            ..job("staging")
        };
        let Enqueued::Created(ids) = f
            .queue
            .enqueue(None, &[job("staging"), teardown, cleanup])
            .await
            .unwrap()
        else {
            panic!("created")
        };
        let mut messages = Vec::new();
        for id in ids {
            let events = f.queue.store().job_events(id).await.unwrap();
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].state, "queued");
            messages.push(events[0].message.clone());
        }
        assert_eq!(
            messages,
            [
                "deploy main (abababab) to shop/staging requested by octocat via test",
                "teardown main to shop/demo-x requested by octocat via test",
                "cleanup to shop/staging requested by schedule via schedule",
            ]
        );
    }
}

#[tokio::test]
async fn a_delivery_enqueues_once() {
    for f in fixtures(3).await {
        let d = Delivery {
            id: "d-1",
            source: "github",
            event: "push",
        };
        let first = f.queue.enqueue(Some(d), &[job("staging")]).await.unwrap();
        let Enqueued::Created(ids) = first else {
            panic!("created")
        };
        let again = f.queue.enqueue(Some(d), &[job("staging")]).await.unwrap();
        assert_eq!(again, Enqueued::Duplicate(ids));
        assert_eq!(
            f.queue
                .store()
                .jobs(&Default::default(), 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

/// Deliveries and jobs stored before deliveries were numbered (migration 10) are found by their
/// redelivery as they were before.
#[tokio::test]
async fn deliveries_stored_before_they_were_numbered_still_find_their_jobs_on_both_backends() {
    const OLD_DELIVERY: &str = "INSERT INTO deliveries (id, source, event, received_at) \
         VALUES ($1, 'github', 'push', 1)";
    const OLD_JOB: &str = "INSERT INTO jobs (kind, app, env, lane, git_ref, sha, requested_by, \
         source, delivery_id, state, max_attempts, created_at) \
         VALUES ('deploy', 'shop', 'staging', 'shop/staging', 'main', '', 'octocat', 'github', \
         $1, 'queued', 3, 1) RETURNING id";
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("q.db").display());
    for url in [sqlite, fresh_postgres_database().await] {
        // The schema and rows as migration 9 left them: two deliveries, the first with two
        // jobs, the second with none.
        macro_rules! migrated_to_9 {
            ($pool:expr, $migrator:expr) => {{
                let pool = $pool;
                $migrator.run_to(9, &pool).await.unwrap();
                for id in ["d-old", "d-none"] {
                    sqlx::query(OLD_DELIVERY)
                        .bind(id)
                        .execute(&pool)
                        .await
                        .unwrap();
                }
                let mut ids: Vec<i64> = Vec::new();
                for _ in 0..2 {
                    ids.push(
                        sqlx::query_scalar(OLD_JOB)
                            .bind("d-old")
                            .fetch_one(&pool)
                            .await
                            .unwrap(),
                    );
                }
                pool.close().await;
                ids
            }};
        }
        let old = if url.starts_with("sqlite:") {
            let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
                .unwrap()
                .create_if_missing(true);
            migrated_to_9!(
                sqlx::SqlitePool::connect_with(options).await.unwrap(),
                crate::store::SQLITE_MIGRATOR
            )
        } else {
            migrated_to_9!(
                sqlx::PgPool::connect(&url).await.unwrap(),
                crate::store::POSTGRES_MIGRATOR
            )
        };
        let queue = Queue::new(Store::open(&url).await.unwrap(), 3);
        let delivery = |id| Delivery {
            id,
            source: "github",
            event: "push",
        };
        assert_eq!(
            queue.store().delivery_jobs("d-old").await.unwrap(),
            old,
            "{url}"
        );
        let queue = &queue;
        let enqueue = |id| async move {
            queue
                .enqueue(Some(delivery(id)), &[job("staging")])
                .await
                .unwrap()
        };
        assert_eq!(
            enqueue("d-old").await,
            Enqueued::Duplicate(old.clone()),
            "{url}"
        );
        assert_eq!(
            enqueue("d-none").await,
            Enqueued::Duplicate(Vec::new()),
            "{url}"
        );
        // A delivery stored now is numbered after them, and finds its own job only.
        let Enqueued::Created(new) = enqueue("d-new").await else {
            panic!("created")
        };
        assert_eq!(
            queue.store().delivery_jobs("d-new").await.unwrap(),
            new,
            "{url}"
        );
        assert_eq!(
            queue.store().delivery_jobs("d-old").await.unwrap(),
            old,
            "{url}"
        );
    }
}

#[tokio::test]
async fn concurrent_redeliveries_create_one_job() {
    for f in fixtures(3).await {
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let queue = f.queue.clone();
                tokio::spawn(async move {
                    let d = Delivery {
                        id: "same",
                        source: "github",
                        event: "push",
                    };
                    queue.enqueue(Some(d), &[job("staging")]).await.unwrap()
                })
            })
            .collect();
        let mut created = 0;
        for task in tasks {
            if let Enqueued::Created(_) = task.await.unwrap() {
                created += 1;
            }
        }
        assert_eq!(created, 1);
        assert_eq!(
            f.queue
                .store()
                .jobs(&Default::default(), 100)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn an_expired_lease_returns_the_job_and_fences_the_old_owner() {
    for f in fixtures(3).await {
        f.queue.enqueue(None, &[job("staging")]).await.unwrap();
        let stale = claim(&f.queue, Duration::from_millis(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(f.queue.upkeep().await.unwrap().reaped, 1);
        let fresh = claim(&f.queue, LONG).await.unwrap();
        assert_eq!(fresh.job.id, stale.job.id);
        assert_eq!(fresh.job.attempt, 2);
        // The old owner can neither renew nor finish.
        assert_eq!(f.queue.heartbeat(&stale, LONG).await.unwrap(), Beat::Lost);
        let failed = Outcome::Failed {
            error: "x".into(),
            result: serde_json::json!({}),
        };
        assert!(!f.queue.finish(&stale, &failed).await.unwrap());
        assert_eq!(f.queue.heartbeat(&fresh, LONG).await.unwrap(), Beat::Ours);
        assert_eq!(
            f.queue
                .store()
                .job(fresh.job.id)
                .await
                .unwrap()
                .unwrap()
                .state,
            JobState::Running
        );
    }
}

#[tokio::test]
async fn a_job_out_of_attempts_fails() {
    for f in fixtures(1).await {
        f.queue.enqueue(None, &[job("staging")]).await.unwrap();
        let lease = claim(&f.queue, Duration::from_millis(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(f.queue.upkeep().await.unwrap().reaped, 1);
        let stored = f.queue.store().job(lease.job.id).await.unwrap().unwrap();
        assert_eq!(stored.state, JobState::Failed);
        assert!(stored.error.unwrap().contains("lease expired"));
        assert!(claim(&f.queue, LONG).await.is_none());
    }
}

#[tokio::test]
async fn live_leases_are_not_reaped() {
    for f in fixtures(3).await {
        f.queue.enqueue(None, &[job("staging")]).await.unwrap();
        let lease = claim(&f.queue, LONG).await.unwrap();
        assert_eq!(f.queue.upkeep().await.unwrap().reaped, 0);
        assert_eq!(f.queue.heartbeat(&lease, LONG).await.unwrap(), Beat::Ours);
    }
}

#[tokio::test]
async fn every_read_query_answers_the_same_on_both_backends() {
    let mut answers = Vec::new();
    for f in fixtures(3).await {
        let store = f.queue.store();
        f.queue.enqueue(None, &[job("staging")]).await.unwrap();
        let lease = claim(&f.queue, LONG).await.unwrap();
        let line = crate::store::NewLogLine {
            at: 1,
            host: "h1".into(),
            step: "build".into(),
            line: "hello".into(),
        };
        store
            .append_log(lease.job.id, &[line.clone(), line])
            .await
            .unwrap();
        store
            .record_step(&crate::store::NewStepResult {
                job_id: lease.job.id,
                attempt: lease.job.attempt,
                host: "h1",
                idx: 0,
                name: "build",
                status: "ok",
                exit_code: Some(0),
                started_at: 1,
                duration_ms: 2,
            })
            .await
            .unwrap();
        let release = lease.job.release_id();
        store
            .record_switch(&lease.job, &release, &[("h1".into(), Some("blue"))])
            .await
            .unwrap();
        let done = Outcome::Succeeded {
            message: "ok".into(),
        };
        assert!(f.queue.finish(&lease, &done).await.unwrap());

        let detail = store.job_detail(lease.job.id, 10).await.unwrap().unwrap();
        let live = store.live_deployments("shop", "staging").await.unwrap();
        let history = store.release_history("shop", "staging", 10).await.unwrap();
        let listed = store
            .jobs(
                &crate::store::JobFilter {
                    state: Some(JobState::Succeeded),
                    ..Default::default()
                },
                10,
            )
            .await
            .unwrap();
        let count = |state, env: &str, who: &str| {
            let filter = crate::store::JobFilter {
                state,
                app: Some("shop".into()),
                env: Some(env.into()),
                who: Some(who.into()),
            };
            async move { store.jobs(&filter, 10).await.unwrap().len() }
        };
        // `who` is a part of requested_by, any case; LIKE's wildcards are taken literally.
        let filtered = (
            count(Some(JobState::Succeeded), "staging", "CTOC").await,
            count(None, "staging", "o%t").await,
            count(None, "staging", "_").await,
            count(None, "prod", "octocat").await,
            count(Some(JobState::Queued), "staging", "octocat").await,
        );
        assert_eq!(filtered, (1, 0, 0, 0, 0));
        let first = detail.log[0].id;
        let after = store.job_log_after(lease.job.id, first, 10).await.unwrap();
        assert_eq!(after.len(), 1);
        assert!(after[0].id > first);
        assert!(
            store
                .job_log_after(lease.job.id, after[0].id, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let audit = store.recent_events(2).await.unwrap();
        assert_eq!(audit.len(), 2);
        assert!(audit[0].at >= audit[1].at && audit[0].lane == "shop/staging");
        store.ready().await.unwrap();
        answers.push((
            detail.job.state,
            detail.events.len(),
            detail.steps.len(),
            detail
                .log
                .iter()
                .map(|l| l.line.clone())
                .collect::<Vec<_>>(),
            live.iter()
                .map(|d| (d.host.clone(), d.slot.clone()))
                .collect::<Vec<_>>(),
            history.len(),
            listed.len(),
        ));
    }
    assert_eq!(answers[0], answers[1], "SQLite and PostgreSQL disagree");
    assert_eq!(answers[0].3, ["hello", "hello"]);
    assert_eq!(answers[0].4, [("h1".to_owned(), Some("blue".to_owned()))]);
}

fn ephemeral_job(env: &str, branch: &str, deploy: bool) -> NewJob {
    NewJob {
        kind: if deploy {
            JobKind::Deploy
        } else {
            JobKind::Teardown
        },
        sha: deploy.then(|| Sha::parse(&"cd".repeat(20)).unwrap()),
        ephemeral: Some(EphemeralEnv {
            template: Name::parse("demo").unwrap(),
            branch: GitRef::parse(branch).unwrap(),
            hostname: format!("{env}.example.test"),
        }),
        supersede: true,
        ..job(env)
    }
}

#[tokio::test]
async fn ephemeral_environments_come_and_go_with_their_jobs_on_both_backends() {
    use crate::store::{EnvState, PortPolicy};
    for f in fixtures(3).await {
        let store = f.queue.store();
        let Enqueued::Created(first) = f
            .queue
            .enqueue(None, &[ephemeral_job("demo-a", "demo/a", true)])
            .await
            .unwrap()
        else {
            panic!("not created")
        };
        let Enqueued::Created(second) = f
            .queue
            .enqueue(None, &[ephemeral_job("demo-a", "demo/a", true)])
            .await
            .unwrap()
        else {
            panic!("not created")
        };
        // The newer push supersedes the queued one, and says so.
        let old = store.job(first[0]).await.unwrap().unwrap();
        assert_eq!(old.state, JobState::Superseded);
        let events = store.job_events(first[0]).await.unwrap();
        assert_eq!(
            events.last().unwrap().message,
            format!("superseded by job {} (deploy)", second[0])
        );
        let row = store
            .ephemeral_env("shop", "demo-a")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((row.state, row.port), (EnvState::Provisioning, None));

        // Another branch cannot take an existing environment's name.
        let refused = f
            .queue
            .enqueue(None, &[ephemeral_job("demo-a", "demo/A", true)])
            .await
            .unwrap();
        assert_eq!(
            refused,
            Enqueued::Refused("environment demo-a already belongs to branch demo/a".into())
        );

        // Ports: the lowest free one, kept by its environment, within the template's maximum.
        let policy = PortPolicy {
            template: "demo",
            range: 30000..=30001,
            max: 2,
        };
        assert_eq!(
            store.allocate_port(row.id, &policy).await.unwrap(),
            Ok(30000)
        );
        assert_eq!(
            store.allocate_port(row.id, &policy).await.unwrap(),
            Ok(30000)
        );
        for env in ["demo-b", "demo-c"] {
            f.queue
                .enqueue(None, &[ephemeral_job(env, &format!("demo/{env}"), true)])
                .await
                .unwrap();
        }
        let b = store
            .ephemeral_env("shop", "demo-b")
            .await
            .unwrap()
            .unwrap();
        let c = store
            .ephemeral_env("shop", "demo-c")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(store.allocate_port(b.id, &policy).await.unwrap(), Ok(30001));
        let full = store
            .allocate_port(c.id, &policy)
            .await
            .unwrap()
            .unwrap_err();
        assert!(full.contains("maximum of 2"), "{full}");
        let wider = PortPolicy { max: 5, ..policy };
        let none = store
            .allocate_port(c.id, &wider)
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            none.contains("every port of 30000-30001 is in use"),
            "{none}"
        );

        // A teardown marks the environment, supersedes its queued deploy; once gone, its port
        // is free again.
        let Enqueued::Created(down) = f
            .queue
            .enqueue(None, &[ephemeral_job("demo-a", "demo/a", false)])
            .await
            .unwrap()
        else {
            panic!("not created")
        };
        assert_eq!(
            store.job(second[0]).await.unwrap().unwrap().state,
            JobState::Superseded
        );
        // Asked again while it waits (a deleted branch is a push and a delete event): the
        // request is answered with the same teardown.
        let again = f
            .queue
            .enqueue(None, &[ephemeral_job("demo-a", "demo/a", false)])
            .await
            .unwrap();
        assert_eq!(again, Enqueued::Created(down.clone()));
        // Twice in one batch (the test's runtime has one thread: both requests are pending
        // before the writer runs): one teardown, both answered with it.
        let teardown_b = [ephemeral_job("demo-b", "demo/demo-b", false)];
        let (one, two) = tokio::join!(
            f.queue.enqueue(None, &teardown_b),
            f.queue.enqueue(None, &teardown_b),
        );
        let (one, two) = (one.unwrap(), two.unwrap());
        assert_eq!(one, two);
        let Enqueued::Created(ids) = one else {
            panic!("not created: {one:?}")
        };
        assert_eq!(
            store.job(ids[0]).await.unwrap().unwrap().kind,
            JobKind::Teardown
        );
        let row = store
            .ephemeral_env("shop", "demo-a")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.state, EnvState::TearingDown);
        assert!(
            store
                .set_env_state(
                    row.id,
                    &[EnvState::TearingDown],
                    EnvState::Gone,
                    None,
                    now_ms()
                )
                .await
                .unwrap()
        );
        assert!(
            store
                .ephemeral_env("shop", "demo-a")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.allocate_port(c.id, &wider).await.unwrap(), Ok(30000));
        // Tearing down what does not exist queues nothing.
        let nothing = f
            .queue
            .enqueue(None, &[ephemeral_job("demo-zz", "demo/zz", false)])
            .await
            .unwrap();
        assert_eq!(nothing, Enqueued::Created(vec![]));
        assert_eq!(
            store.job(down[0]).await.unwrap().unwrap().kind,
            JobKind::Teardown
        );
    }
}

#[tokio::test]
async fn a_running_job_is_flagged_for_its_heartbeat_and_ends_cancelled_on_both_backends() {
    for f in fixtures(3).await {
        let Enqueued::Created(ids) = f.queue.enqueue(None, &[job("staging")]).await.unwrap() else {
            panic!("not created")
        };
        let lease = claim(&f.queue, LONG).await.unwrap();
        assert_eq!(f.queue.heartbeat(&lease, LONG).await.unwrap(), Beat::Ours);
        assert_eq!(
            f.queue.cancel(ids[0], "bob via slack").await.unwrap(),
            Cancel::Stopping
        );
        // Asked twice: still stopping, and the first asker is the one on record.
        assert_eq!(
            f.queue.cancel(ids[0], "carol via slack").await.unwrap(),
            Cancel::Stopping
        );
        // The worker holding it sees who asked with its next beat (on whichever replica).
        assert_eq!(
            f.queue.heartbeat(&lease, LONG).await.unwrap(),
            Beat::CancelRequested("bob via slack".into())
        );
        let store = f.queue.store();
        assert_eq!(
            store.job(ids[0]).await.unwrap().unwrap().state,
            JobState::Running
        );
        let message = "cancelled by bob via slack while running; nothing was switched";
        let outcome = Outcome::Cancelled {
            message: message.into(),
        };
        assert!(f.queue.finish(&lease, &outcome).await.unwrap());
        let ended = store.job(ids[0]).await.unwrap().unwrap();
        assert_eq!(
            (
                ended.state,
                ended.cancel_requested_by.as_deref(),
                ended.error
            ),
            (JobState::Cancelled, Some("bob via slack"), None)
        );
        let events: Vec<(String, String)> = store
            .job_events(ids[0])
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.state, e.message))
            .skip(2)
            .collect();
        assert_eq!(
            events,
            [
                (
                    "cancel_requested".to_owned(),
                    "cancel requested by bob via slack".to_owned()
                ),
                ("cancelled".to_owned(), message.to_owned()),
            ]
        );
        assert_eq!(
            f.queue.cancel(ids[0], "late").await.unwrap(),
            Cancel::Not(JobState::Cancelled)
        );
        // The notices of a job are sent once: the second claim is refused, a failed send
        // gives the claim back.
        assert!(store.claim_notice(ids[0], Notice::Thread).await.unwrap());
        assert!(!store.claim_notice(ids[0], Notice::Thread).await.unwrap());
        assert!(store.claim_notice(ids[0], Notice::Dm).await.unwrap());
        store
            .settle_notice(ids[0], Notice::Thread, Some("1700000000.000200"))
            .await
            .unwrap();
        store.settle_notice(ids[0], Notice::Dm, None).await.unwrap();
        assert!(!store.claim_notice(ids[0], Notice::Thread).await.unwrap());
        assert!(store.claim_notice(ids[0], Notice::Dm).await.unwrap());
    }
}

#[tokio::test]
async fn only_queued_jobs_can_be_cancelled_and_the_claim_skips_them() {
    for f in fixtures(3).await {
        let Enqueued::Created(ids) = f
            .queue
            .enqueue(None, &[job("staging"), job("staging"), job("prod")])
            .await
            .unwrap()
        else {
            panic!("not created")
        };
        let store = f.queue.store();
        let active: Vec<i64> = store
            .active_jobs(None)
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(active, ids);
        let running = claim(&f.queue, LONG).await.unwrap();
        assert_eq!(running.job.id, ids[0]);
        assert_eq!(
            f.queue.cancel(ids[1], "alice via slack").await.unwrap(),
            Cancel::Cancelled
        );
        assert_eq!(
            f.queue.cancel(ids[1], "again").await.unwrap(),
            Cancel::Not(JobState::Cancelled)
        );
        assert_eq!(f.queue.cancel(9999, "none").await.unwrap(), Cancel::Missing);
        let cancelled = store.job(ids[1]).await.unwrap().unwrap();
        assert!(cancelled.state.is_final() && cancelled.finished_at.is_some());
        let events = store.job_events(ids[1]).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(
            (last.state.as_str(), last.message.as_str()),
            ("cancelled", "cancelled by alice via slack")
        );
        // The lane's running job is still there; the cancelled one is never claimed.
        let staging: Vec<i64> = store
            .active_jobs(Some("shop/staging"))
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(staging, [ids[0]]);
        assert_eq!(claim(&f.queue, LONG).await.unwrap().job.id, ids[2]);
        assert!(claim(&f.queue, LONG).await.is_none());
        let history: Vec<(i64, JobState)> = store
            .lane_jobs("shop/staging", 10)
            .await
            .unwrap()
            .iter()
            .map(|j| (j.id, j.state))
            .collect();
        assert_eq!(
            history,
            [(ids[1], JobState::Cancelled), (ids[0], JobState::Running)]
        );
        store
            .set_slack_message(ids[0], "C1", "1700000000.000100")
            .await
            .unwrap();
        let job = store.job(ids[0]).await.unwrap().unwrap();
        assert_eq!(
            (job.slack_channel.as_deref(), job.slack_ts.as_deref()),
            (Some("C1"), Some("1700000000.000100"))
        );
    }
}

#[tokio::test]
async fn a_lock_refuses_manual_jobs_and_skips_automatic_ones_on_both_backends() {
    use crate::store::{Lock, Locked};
    for f in fixtures(3).await {
        let store = f.queue.store();
        let now = now_ms();
        let lock = Lock {
            app: "shop".into(),
            env: "staging".into(),
            holder: "alice".into(),
            reason: "db migration".into(),
            created_at: now,
            expires_at: Some(now + 60_000),
        };
        assert_eq!(
            store.lock_env(&lock).await.unwrap(),
            Locked::Held(lock.clone())
        );
        let bob = Lock {
            holder: "bob".into(),
            ..lock.clone()
        };
        assert_eq!(
            store.lock_env(&bob).await.unwrap(),
            Locked::HeldBy(lock.clone())
        );

        let manual = NewJob {
            source: "cli",
            ..job("staging")
        };
        let refused = f
            .queue
            .enqueue(None, std::slice::from_ref(&manual))
            .await
            .unwrap();
        let Enqueued::Refused(why) = refused else {
            panic!("not refused: {refused:?}")
        };
        assert!(
            why.starts_with("shop/staging is locked by alice: db migration (until "),
            "{why}"
        );
        let automatic = NewJob {
            source: "github",
            ..job("staging")
        };
        let Enqueued::Created(ids) = f
            .queue
            .enqueue(None, &[automatic, job("qa")])
            .await
            .unwrap()
        else {
            panic!("not created")
        };
        let skipped = store.job(ids[0]).await.unwrap().unwrap();
        assert_eq!(skipped.state, JobState::Skipped);
        let events = store.job_events(ids[0]).await.unwrap();
        assert!(
            events
                .last()
                .unwrap()
                .message
                .starts_with("skipped: shop/staging is locked by alice")
        );
        // Other environments are not held; a skipped job is never claimed.
        let lease = claim(&f.queue, LONG).await.unwrap();
        assert_eq!(lease.job.id, ids[1]);
        assert!(claim(&f.queue, LONG).await.is_none());

        // An expired lock holds nothing; unlocking removes it.
        assert_eq!(
            store
                .env_lock("shop", "staging", now + 120_000)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store.unlock_env("shop", "staging").await.unwrap(),
            Some(lock)
        );
        assert!(matches!(
            f.queue.enqueue(None, &[manual]).await.unwrap(),
            Enqueued::Created(_)
        ));
    }
}

#[tokio::test]
async fn the_newest_automatic_deploy_replaces_waiting_ones_but_not_a_persons() {
    for f in fixtures(3).await {
        let store = f.queue.store();
        let push = |sha: &str| NewJob {
            source: "github",
            supersede: true,
            sha: Some(Sha::parse(&sha.repeat(40)).unwrap()),
            ..job("staging")
        };
        let manual = NewJob {
            source: "cli",
            ..job("staging")
        };
        let every = NewJob {
            supersede: false,
            ..push("c")
        };
        let mut ids = Vec::new();
        for j in [push("a"), manual, push("b"), every] {
            let Enqueued::Created(created) = f.queue.enqueue(None, &[j]).await.unwrap() else {
                panic!("not created")
            };
            ids.extend(created);
        }
        let states: Vec<JobState> = futures::future::join_all(ids.iter().map(|id| store.job(*id)))
            .await
            .into_iter()
            .map(|j| j.unwrap().unwrap().state)
            .collect();
        // b replaced a (both automatic); the person's job stays; a `queue = "every"` push
        // replaces nothing.
        assert_eq!(
            states,
            [
                JobState::Superseded,
                JobState::Queued,
                JobState::Queued,
                JobState::Queued
            ]
        );
        let events = store.job_events(ids[0]).await.unwrap();
        assert_eq!(
            events.last().unwrap().message,
            format!("superseded by job {} (deploy)", ids[2])
        );
    }
}

/// Each job's state, whether it has finished, and its events' states, by position.
async fn outcome(store: &Store, ids: &[i64]) -> Vec<(JobState, bool, Vec<String>)> {
    let mut out = Vec::new();
    for &id in ids {
        let job = store.job(id).await.unwrap().unwrap();
        let events = store.job_events(id).await.unwrap();
        let events = events.into_iter().map(|e| e.state).collect();
        out.push((job.state, job.finished_at.is_some(), events));
    }
    out
}

#[tokio::test]
async fn a_batch_replaces_its_own_older_waiting_deploys_as_one_by_one_on_both_backends() {
    let push = |sha: &str| NewJob {
        source: "github",
        supersede: true,
        sha: Some(Sha::parse(&sha.repeat(40)).unwrap()),
        ..job("staging")
    };
    let requests = [
        push("a"),
        NewJob {
            source: "cli",
            ..job("staging")
        },
        NewJob {
            approval: Some((1, Duration::from_secs(600))),
            ..push("b")
        },
        NewJob {
            supersede: false,
            ..push("c")
        },
        NewJob {
            source: "cli",
            ..job("production")
        },
        push("d"),
    ];
    let (one_by_one, batched) = (fixtures(3).await, fixtures(3).await);
    for (alone, together) in one_by_one.iter().zip(&batched) {
        // One waiting push stored before, in each.
        let mut stored = Vec::new();
        for f in [alone, together] {
            let Enqueued::Created(ids) = f.queue.enqueue(None, &[push("0")]).await.unwrap() else {
                panic!("not created")
            };
            stored.push(ids[0]);
        }
        assert_eq!(stored[0], stored[1]);

        let mut ids = vec![stored[0]];
        for r in &requests {
            let Enqueued::Created(created) = alone
                .queue
                .enqueue(None, std::slice::from_ref(r))
                .await
                .unwrap()
            else {
                panic!("not created")
            };
            ids.extend(created);
        }
        // The test's runtime has one thread: all are pending before the writer runs.
        let answers = futures::future::join_all(
            requests
                .iter()
                .map(|r| together.queue.enqueue(None, std::slice::from_ref(r))),
        )
        .await;
        let mut batch_ids = vec![stored[1]];
        for answer in answers {
            let Enqueued::Created(created) = answer.unwrap() else {
                panic!("not created")
            };
            batch_ids.extend(created);
        }
        assert_eq!(ids, batch_ids);
        let store = together.queue.store();
        let created: std::collections::HashSet<i64> =
            futures::future::join_all(batch_ids[1..].iter().map(|id| store.job(*id)))
                .await
                .into_iter()
                .map(|j| j.unwrap().unwrap().created_at)
                .collect();
        assert_eq!(created.len(), 1, "the requests were one batch");

        let expected = outcome(alone.queue.store(), &ids).await;
        let states: Vec<JobState> = expected.iter().map(|(s, _, _)| *s).collect();
        // d replaced every waiting automatic deploy of staging, the stored one, the one
        // awaiting approval and the `queue = "every"` push included; the people's jobs stay.
        use JobState::{Queued, Superseded};
        assert_eq!(
            states,
            [
                Superseded, Superseded, Queued, Superseded, Superseded, Queued, Queued
            ]
        );
        assert_eq!(outcome(store, &batch_ids).await, expected);
        assert_eq!(expected[3].2, ["queued", "awaiting_approval", "superseded"]);
        // One by one, each push replaced the ones before it; in a batch, its newest did.
        for (i, (state, finished, _)) in expected.iter().enumerate() {
            if *state == Superseded {
                assert!(finished);
                let events = store.job_events(batch_ids[i]).await.unwrap();
                assert_eq!(
                    events.last().unwrap().message,
                    format!("superseded by job {} (deploy)", ids[6])
                );
            }
        }
        // What the workers see: the person's job, then the newest push, then production's.
        let first = claim(&together.queue, LONG).await.unwrap();
        assert_eq!(first.job.id, ids[2]);
    }
}

#[tokio::test]
async fn approvals_gate_jobs_on_both_backends() {
    for f in fixtures(3).await {
        let q = &f.queue;
        let needs = |n, within| NewJob {
            approval: Some((n, within)),
            ..job("production")
        };
        let Enqueued::Created(ids) = q.enqueue(None, &[needs(1, LONG)]).await.unwrap() else {
            panic!("not created")
        };
        let one = ids[0];
        assert_eq!(
            q.store().job(one).await.unwrap().unwrap().state,
            JobState::AwaitingApproval
        );
        assert!(
            claim(q, LONG).await.is_none(),
            "a job awaiting approval never runs"
        );
        // Asked for once, across every caller.
        let asked: Vec<i64> = q
            .upkeep()
            .await
            .unwrap()
            .ask_approvals
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(asked, [one]);
        assert!(q.upkeep().await.unwrap().ask_approvals.is_empty());
        assert_eq!(
            q.decide(one, "carol", true).await.unwrap(),
            Decision::Approved {
                have: 1,
                need: 1,
                queued: true
            }
        );
        assert_eq!(claim(q, LONG).await.unwrap().job.id, one);

        let Enqueued::Created(ids) = q.enqueue(None, &[needs(2, LONG)]).await.unwrap() else {
            panic!("not created")
        };
        let two = ids[0];
        assert_eq!(
            q.decide(two, "carol", true).await.unwrap(),
            Decision::Approved {
                have: 1,
                need: 2,
                queued: false
            }
        );
        assert_eq!(
            q.decide(two, "carol", true).await.unwrap(),
            Decision::AlreadyDecided
        );
        assert_eq!(
            q.decide(two, "dave", false).await.unwrap(),
            Decision::Rejected
        );
        assert_eq!(
            q.decide(two, "erin", true).await.unwrap(),
            Decision::NotAwaiting(JobState::Rejected)
        );
        let events = q.store().job_events(two).await.unwrap();
        let said: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
        assert!(said.contains(&"approved by carol (1 of 2)"), "{said:?}");
        assert_eq!(*said.last().unwrap(), "rejected by dave");

        // Nobody in time: a click says so, and the reaper ends the others.
        let Enqueued::Created(ids) = q
            .enqueue(None, &[needs(1, Duration::ZERO), needs(1, Duration::ZERO)])
            .await
            .unwrap()
        else {
            panic!("not created")
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            q.decide(ids[0], "carol", true).await.unwrap(),
            Decision::Expired
        );
        q.upkeep().await.unwrap();
        assert_eq!(
            q.store().job(ids[1]).await.unwrap().unwrap().state,
            JobState::Expired
        );
        assert_eq!(
            q.decide(99_999, "carol", true).await.unwrap(),
            Decision::Missing
        );
    }
}

/// A burst of concurrent requests goes through the group commit: each keeps its own outcome
/// (created, duplicate of a sibling in the same burst, refused by a hold, skipped by it), a
/// refused one stores nothing, and automatic pushes still leave only the newest queued.
#[tokio::test]
async fn a_burst_of_requests_keeps_each_outcome_on_both_backends() {
    use crate::store::Lock;
    for f in fixtures(3).await {
        let store = f.queue.store();
        let now = now_ms();
        let lock = Lock {
            app: "shop".into(),
            env: "prod".into(),
            holder: "alice".into(),
            reason: "freeze".into(),
            created_at: now,
            expires_at: None,
        };
        store.lock_env(&lock).await.unwrap();
        // i % 4: 0 a push to staging (each its own delivery; 4 repeat one delivery id),
        // 1 a person's deploy to the held prod (refused), 2 an automatic one there (skipped),
        // 3 a person's deploy to qa.
        let tasks: Vec<_> = (0..200)
            .map(|i: usize| {
                let queue = f.queue.clone();
                tokio::spawn(async move {
                    let (id, job) = match i % 4 {
                        0 if i < 16 => (
                            "repeated".to_owned(),
                            NewJob {
                                source: "github",
                                supersede: true,
                                ..job("staging")
                            },
                        ),
                        0 => (
                            format!("push-{i}"),
                            NewJob {
                                source: "github",
                                supersede: true,
                                ..job("staging")
                            },
                        ),
                        1 => (
                            format!("manual-{i}"),
                            NewJob {
                                source: "cli",
                                ..job("prod")
                            },
                        ),
                        2 => (
                            format!("auto-{i}"),
                            NewJob {
                                source: "github",
                                ..job("prod")
                            },
                        ),
                        _ => (format!("qa-{i}"), job("qa")),
                    };
                    let d = Delivery {
                        id: &id,
                        source: "github",
                        event: "push",
                    };
                    (i, id.clone(), queue.enqueue(Some(d), &[job]).await.unwrap())
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let mut repeated_created = Vec::new();
        let mut repeated_duplicates = Vec::new();
        let mut staging = Vec::new();
        for (i, delivery, outcome) in &outcomes {
            match (i % 4, outcome) {
                (0, Enqueued::Created(ids)) if *i < 16 => repeated_created.push(ids.clone()),
                (0, Enqueued::Duplicate(ids)) if *i < 16 => repeated_duplicates.push(ids.clone()),
                (0 | 2 | 3, Enqueued::Created(ids)) => {
                    assert_eq!(ids.len(), 1, "{delivery}");
                    let stored = store.job(ids[0]).await.unwrap().unwrap();
                    assert_eq!(stored.delivery_id.as_deref(), Some(delivery.as_str()));
                    let first = &store.job_events(ids[0]).await.unwrap()[0];
                    assert_eq!(first.state, "queued");
                    assert!(first.message.contains("shop/"), "{}", first.message);
                    if i % 4 == 2 {
                        assert_eq!(stored.state, JobState::Skipped, "{delivery}");
                    }
                    if i % 4 == 0 {
                        staging.push(ids[0]);
                    }
                }
                (1, Enqueued::Refused(why)) => {
                    assert!(
                        why.starts_with("shop/prod is locked by alice: freeze"),
                        "{why}"
                    );
                }
                other => panic!("request {i} ({delivery}): unexpected {other:?}"),
            }
        }
        // One of the four requests with one delivery id created the job; the others got it.
        assert_eq!(repeated_created.len(), 1, "{outcomes:?}");
        assert_eq!(repeated_duplicates.len(), 3);
        assert!(
            repeated_duplicates
                .iter()
                .all(|ids| *ids == repeated_created[0])
        );
        staging.extend(&repeated_created[0]);
        // 50 refused; stored: 47 pushes to staging (46 + the repeated one), 50 skipped, 50 to
        // qa. Of the pushes to staging only the newest waits.
        assert_eq!(staging.len(), 47);
        assert_eq!(
            store.jobs(&Default::default(), 1000).await.unwrap().len(),
            147
        );
        let newest = *staging.iter().max().unwrap();
        for id in &staging {
            let state = store.job(*id).await.unwrap().unwrap().state;
            let want = if *id == newest {
                JobState::Queued
            } else {
                JobState::Superseded
            };
            assert_eq!(state, want, "job {id}");
        }
        // A refused request left no delivery behind: once unlocked, it goes through.
        store.unlock_env("shop", "prod").await.unwrap();
        let d = Delivery {
            id: "manual-1",
            source: "github",
            event: "push",
        };
        let manual = NewJob {
            source: "cli",
            ..job("prod")
        };
        assert!(matches!(
            f.queue.enqueue(Some(d), &[manual]).await.unwrap(),
            Enqueued::Created(_)
        ));
    }
}

/// The superseding update runs in every batch of pushes: it must find its rows through the
/// partial indexes, not by walking every older job (a plan that made ingest slow down as the
/// table grew).
#[tokio::test]
async fn superseding_searches_the_partial_indexes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    let store = Store::open(&url).await.unwrap();
    let Backend::Sqlite(pool) = store.backend() else {
        unreachable!("a sqlite:// URL")
    };
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {}",
        enqueue::supersede_sql(super::json_rows(store.backend()))
    )))
    .bind(r#"[["shop/staging", 10, "deploy", false]]"#)
    .bind(0_i64)
    .fetch_all(pool)
    .await
    .unwrap();
    let plan: Vec<String> = plan.into_iter().map(|(_, _, _, detail)| detail).collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("INDEX jobs_queued_by_lane (lane=? AND id<?)"),
        "{plan}"
    );
    assert!(
        plan.contains("INDEX jobs_awaiting_approval (id<?)"),
        "{plan}"
    );
    assert!(
        !plan.contains("rowid<?") && !plan.contains("SCAN jobs"),
        "{plan}"
    );
}

/// Claims and finishes made at once share statements, and each still gets its own answer: a
/// distinct job (at most one per lane, the lane's oldest), or none; a finish with a stale
/// fencing token is refused while the others in its batch go through.
#[tokio::test]
async fn concurrent_claims_and_finishes_each_get_their_own_answer_on_both_backends() {
    for f in fixtures(3).await {
        // 6 lanes with two jobs each: 12 claimers at once can take 6 jobs, the oldest per lane.
        let jobs: Vec<NewJob> = (0..12).map(|i| job(&format!("e{}", i % 6))).collect();
        let Enqueued::Created(ids) = f.queue.enqueue(None, &jobs).await.unwrap() else {
            panic!("not created")
        };
        let claims: Vec<_> = (0..12)
            .map(|_| {
                let queue = f.queue.clone();
                tokio::spawn(async move { claim(&queue, LONG).await })
            })
            .collect();
        let mut leases = Vec::new();
        for c in claims {
            leases.extend(c.await.unwrap());
        }
        let mut claimed: Vec<i64> = leases.iter().map(|l| l.job.id).collect();
        claimed.sort_unstable();
        assert_eq!(claimed, ids[..6], "the oldest job of each lane, once each");
        let mut lanes: Vec<String> = leases.iter().map(|l| l.job.env.clone()).collect();
        lanes.sort_unstable();
        lanes.dedup();
        assert_eq!(lanes.len(), 6);

        let stale = Lease {
            job: Job {
                attempt: leases[0].job.attempt + 1,
                ..leases[0].job.clone()
            },
            owner: "w1".into(),
        };
        let finishes: Vec<_> = std::iter::once(stale)
            .chain(leases)
            .map(|lease| {
                let (queue, done) = (
                    f.queue.clone(),
                    Outcome::Succeeded {
                        message: format!("done {}", lease.job.id),
                    },
                );
                tokio::spawn(
                    async move { (lease.job.id, queue.finish(&lease, &done).await.unwrap()) },
                )
            })
            .collect();
        let mut results = Vec::new();
        for finish in finishes {
            results.push(finish.await.unwrap());
        }
        assert!(!results[0].1, "a stale token finishes nothing");
        assert!(results[1..].iter().all(|(_, ok)| *ok), "{results:?}");
        for (id, _) in &results[1..] {
            let stored = f.queue.store().job(*id).await.unwrap().unwrap();
            assert_eq!(stored.state, JobState::Succeeded);
            let events = f.queue.store().job_events(*id).await.unwrap();
            assert_eq!(events.last().unwrap().message, format!("done {id}"));
        }
        // The lanes are free again: their second jobs come next.
        let next = claim(&f.queue, LONG).await.unwrap();
        assert_eq!(next.job.id, ids[6]);
    }
}

/// "N ahead of you" counts the lane's older queued and running jobs, on both backends.
#[tokio::test]
async fn jobs_ahead_counts_older_queued_and_running_jobs_of_the_lane_on_both_backends() {
    for f in fixtures(3).await {
        let jobs = [job("staging"), job("staging"), job("qa"), job("staging")];
        let Enqueued::Created(ids) = f.queue.enqueue(None, &jobs).await.unwrap() else {
            panic!("not created")
        };
        let queue = &f.queue;
        let ahead = |id: i64| async move { queue.queued_answer(id).await.unwrap().unwrap().1 };
        assert_eq!(ahead(ids[0]).await, 0);
        assert_eq!(ahead(ids[3]).await, 2);
        // Only its own lane's: the older staging jobs are not ahead of qa's.
        assert_eq!(ahead(ids[2]).await, 0);
        // Running counts; finished does not.
        let lease = claim(&f.queue, LONG).await.unwrap();
        assert_eq!(lease.job.id, ids[0]);
        assert_eq!(ahead(ids[3]).await, 2);
        let done = Outcome::Succeeded {
            message: "done".into(),
        };
        assert!(f.queue.finish(&lease, &done).await.unwrap());
        assert_eq!(ahead(ids[3]).await, 1);

        // Counted up to more than AHEAD_COUNTED: a long queue answers as fast as a short one.
        let many = vec![job("qa"); AHEAD_COUNTED as usize + 5];
        let Enqueued::Created(ids) = f.queue.enqueue(None, &many).await.unwrap() else {
            panic!("not created")
        };
        // The qa job queued before these is ahead of them too.
        assert_eq!(ahead(ids[AHEAD_COUNTED as usize - 1]).await, AHEAD_COUNTED);
        assert_eq!(ahead(ids[AHEAD_COUNTED as usize]).await, AHEAD_COUNTED + 1);
        assert_eq!(ahead(ids[ids.len() - 1]).await, AHEAD_COUNTED + 1);
    }
}

/// The answers read together say what each request alone would: the job, and the count ahead
/// of it in its lane (running counted, finished not; a job asked for twice, both times; one that
/// does not exist, none), on both backends.
#[tokio::test]
async fn answers_read_together_count_ahead_as_one_by_one_on_both_backends() {
    for f in fixtures(3).await {
        let jobs = [
            job("staging"),
            job("qa"),
            job("staging"),
            job("staging"),
            job("qa"),
        ];
        let Enqueued::Created(ids) = f.queue.enqueue(None, &jobs).await.unwrap() else {
            panic!("not created")
        };
        let first = claim(&f.queue, LONG).await.unwrap();
        assert_eq!(first.job.id, ids[0]);
        let done = Outcome::Succeeded {
            message: "done".into(),
        };
        // qa's first runs; staging's first has finished.
        let running = claim(&f.queue, LONG).await.unwrap();
        assert_eq!(running.job.id, ids[1]);
        assert!(f.queue.finish(&first, &done).await.unwrap());
        let asked = [ids[4], ids[2], ids[3], ids[3], ids[0], ids[1], ids[4] + 100];
        let answers =
            futures::future::join_all(asked.iter().map(|&id| f.queue.queued_answer(id))).await;
        let store = f.queue.store();
        for (&id, answer) in asked.iter().zip(answers) {
            let answer = answer.unwrap();
            match store.job(id).await.unwrap() {
                None => assert!(answer.is_none(), "#{id}"),
                Some(job) => {
                    let (got, ahead) = answer.expect("a job that exists is answered");
                    assert_eq!((got.id, &got.lane()), (id, &job.lane()));
                    // Asked alone, it is a batch of its own.
                    let (_, alone) = f.queue.queued_answer(id).await.unwrap().unwrap();
                    assert_eq!(ahead, alone, "#{id} of {}", job.lane());
                }
            }
        }
        // What they are: 1 and 2 ahead in staging, the running one ahead in qa.
        let ahead = |i: usize| f.queue.queued_answer(ids[i]);
        assert_eq!(ahead(3).await.unwrap().unwrap().1, 1);
        assert_eq!(ahead(4).await.unwrap().unwrap().1, 1);
    }
}

/// One batch that pushes and tears down the same environments ends where the same requests
/// one by one would: the batch reads the rows once and writes them once, so the order inside
/// it is kept in memory.
#[tokio::test]
async fn pushes_and_teardowns_in_one_batch_leave_the_environments_as_one_by_one_on_both_backends() {
    use crate::store::EnvState;
    for f in fixtures(3).await {
        let store = f.queue.store();
        // demo-live exists, live and warned about its idleness.
        f.queue
            .enqueue(None, &[ephemeral_job("demo-live", "demo/live", true)])
            .await
            .unwrap();
        let live = store
            .ephemeral_env("shop", "demo-live")
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .set_env_state(live.id, &[EnvState::Provisioning], EnvState::Live, None, 1)
                .await
                .unwrap()
        );
        store.mark_warned(live.id, 2).await.unwrap();

        // Four requests in one batch (the test's runtime has one thread: all are pending
        // before the writer runs).
        let requests = [
            // New, then torn down: it exists (its push is recorded), being torn down.
            ephemeral_job("demo-new", "demo/new", true),
            ephemeral_job("demo-new", "demo/new", false),
            // Torn down, then pushed again: it comes back after the teardown.
            ephemeral_job("demo-live", "demo/live", false),
            ephemeral_job("demo-live", "demo/live", true),
        ];
        let answers = futures::future::join_all(
            requests
                .iter()
                .map(|r| f.queue.enqueue(None, std::slice::from_ref(r))),
        )
        .await;
        let mut batch = std::collections::HashSet::new();
        for answer in answers {
            let Enqueued::Created(ids) = answer.unwrap() else {
                panic!("not created")
            };
            assert_eq!(ids.len(), 1);
            batch.insert(store.job(ids[0]).await.unwrap().unwrap().created_at);
        }
        assert_eq!(batch.len(), 1, "the four requests were one batch");

        let new = store
            .ephemeral_env("shop", "demo-new")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(new.state, EnvState::TearingDown);
        assert!(new.last_push_at > 0);
        let again = store
            .ephemeral_env("shop", "demo-live")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.id, live.id);
        assert_eq!(again.state, EnvState::Provisioning);
        // The push dropped the idle warning and moved the idle clock.
        assert_eq!(again.warned_at, None);
        assert!(again.last_push_at >= live.last_push_at);
        assert!(again.updated_at > 1);

        // A push alone keeps a live environment live and records the push.
        store
            .set_env_state(again.id, &[EnvState::Provisioning], EnvState::Live, None, 3)
            .await
            .unwrap();
        store.mark_warned(again.id, 4).await.unwrap();
        f.queue
            .enqueue(None, &[ephemeral_job("demo-live", "demo/live", true)])
            .await
            .unwrap();
        let pushed = store
            .ephemeral_env("shop", "demo-live")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((pushed.state, pushed.warned_at), (EnvState::Live, None));
    }
}

/// PostgreSQL: a burst of claims has the queue vacuum `jobs` (each claim reads past the dead
/// index entries of the jobs claimed before it, until a vacuum removes them).
#[tokio::test]
async fn a_burst_of_claims_vacuums_the_jobs_table_on_postgres() {
    let url = fresh_postgres_database().await;
    let queue = Queue::new(Store::open(&url).await.unwrap(), 3);
    let Backend::Postgres(pool) = queue.store().backend() else {
        unreachable!("a postgres:// URL")
    };
    let vacuumed = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'jobs'",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    };
    let jobs: Vec<NewJob> = (0..vacuum::EVERY)
        .map(|i| job(&format!("e{}", i % 500)))
        .collect();
    let Enqueued::Created(_) = queue.enqueue(None, &jobs).await.unwrap() else {
        panic!("not created")
    };
    let done = Outcome::Succeeded {
        message: "ok".into(),
    };
    // Rounds of claims made at once (one statement each), then their finishes.
    let mut claimed = 0;
    for round in [50; 99].into_iter().chain([49, 1]) {
        let leases = futures::future::join_all((0..round).map(|_| claim(&queue, LONG))).await;
        for lease in leases {
            assert!(queue.finish(&lease.unwrap(), &done).await.unwrap());
            claimed += 1;
        }
        if claimed == vacuum::EVERY - 1 {
            assert!(
                !vacuumed().await,
                "vacuumed before {} claims",
                vacuum::EVERY
            );
        }
    }
    assert_eq!(claimed, vacuum::EVERY);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !vacuumed().await {
        assert!(
            std::time::Instant::now() < deadline,
            "no vacuum 30 s after the burst"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A write transaction is committed whole or not at all, on both backends, though SQLite gets
/// its `BEGIN` with the first statement and its last statements with the `COMMIT`: a statement
/// failing at the commit, or a transaction dropped before it, leaves nothing behind, and the
/// pool's next write is not caught in what was left open.
#[tokio::test]
async fn a_write_transaction_is_committed_whole_or_not_at_all_on_both_backends() {
    use crate::store::Statement;
    const INSERT: &str =
        "INSERT INTO deliveries (id, source, event, received_at) VALUES ($1, 'test', 'e', 0)";
    // The transaction's first statement, sent as a caller sends one (`first`, then `conn`).
    macro_rules! insert {
        ($tx:ident, $id:expr) => {
            let sql = $tx.first(INSERT.into());
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind($id)
                .execute($tx.conn().await.unwrap())
                .await
                .unwrap();
        };
    }
    let delivery = |id: &str| Statement {
        sql: INSERT.into(),
        args: vec![id.into()],
    };
    for f in fixtures(3).await {
        let store = f.queue.store();
        let stored = || async {
            on_pool!(store, pool => sqlx::query_scalar::<_, String>("SELECT id FROM deliveries ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap())
        };
        on_pool!(store, pool => {
            // The last of the statements sent with the commit fails (the id is taken).
            let mut tx = WriteTx::begin(pool).await.unwrap();
            insert!(tx, "a");
            let failed = tx.commit_with(vec![delivery("b"), delivery("a")]).await;
            assert!(failed.is_err(), "a duplicate id must fail the commit");
            // Dropped before its commit.
            let mut tx = WriteTx::begin(pool).await.unwrap();
            insert!(tx, "c");
            drop(tx);
            // The next write is a transaction of its own, and commits.
            let mut tx = WriteTx::begin(pool).await.unwrap();
            insert!(tx, "d");
            tx.commit_with(vec![delivery("e")]).await.unwrap();
        });
        assert_eq!(stored().await, ["d", "e"]);
    }
}

/// A read outside a transaction does not wait for the writer: it is answered while a write
/// transaction is open, from what was committed before it started, on both backends (SQLite
/// reads on connections of their own).
#[tokio::test]
async fn reads_are_answered_while_a_write_transaction_is_open_on_both_backends() {
    for f in fixtures(3).await {
        let Enqueued::Created(ids) = f.queue.enqueue(None, &[job("staging")]).await.unwrap() else {
            panic!("not queued");
        };
        let store = f.queue.store();
        let asked = job("staging").requested_by;
        on_pool!(store, pool => {
            let mut tx = WriteTx::begin(pool).await.unwrap();
            let sql = tx.first("UPDATE jobs SET requested_by = 'uncommitted' WHERE id = $1".into());
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ids[0])
                .execute(tx.conn().await.unwrap())
                .await
                .unwrap();
            let read = tokio::time::timeout(Duration::from_secs(5), store.job(ids[0]))
                .await
                .expect("the read waited for the writer's transaction")
                .unwrap()
                .unwrap();
            assert_eq!(read.requested_by, asked);
            tx.commit().await.unwrap();
        });
        let read = store.job(ids[0]).await.unwrap().unwrap();
        assert_eq!(
            read.requested_by, "uncommitted",
            "a read after the commit sees it"
        );
    }
}

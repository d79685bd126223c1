//! Several `slipway serve` processes sharing one PostgreSQL database: nothing lost, nothing run
//! twice, one running job per environment across replicas, and a killed replica's job finished
//! by another.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::PgPool;

use crate::helpers::{GitRepo, REPO, SECRET, fresh_postgres_database, push_to, serve};

/// One config file per replica (each has its own data directory, as separate machines would).
fn replica_configs(
    dir: &Path,
    db: &str,
    repo: &GitRepo,
    lease: &str,
    poll: &str,
    envs: &[(&str, &str)],
    count: usize,
) -> Vec<PathBuf> {
    let mut apps = format!(
        "[apps.shop]\nrepo = \"{REPO}\"\nclone_url = \"{}\"\n",
        repo.clone_url()
    );
    for (env, steps) in envs {
        apps.push_str(&format!(
            "[apps.shop.environments.{env}]\nhosts = [\"local\"]\ndeploy_path = \"{}/srv/{env}\"\nkeep_releases = 2\nsteps = {steps}\n",
            dir.display()
        ));
    }
    for (env, _) in envs {
        apps.push_str(&format!(
            "[[apps.shop.triggers]]\npush = \"{env}\"\ndeploy = \"{env}\"\nqueue = \"every\"\n"
        ));
    }
    (0..count)
        .map(|n| {
            let path = dir.join(format!("replica{n}.toml"));
            std::fs::write(
                &path,
                format!(
                    "[server]\nlisten = \"127.0.0.1:0\"\n[github]\nwebhook_secret = \"{SECRET}\"\n\
                     [database]\nurl = \"{db}\"\n[worker]\ndata_dir = \"{}/replica{n}\"\nlease = \"{lease}\"\n\
                     poll_interval = \"{poll}\"\n{apps}",
                    dir.display()
                ),
            )
            .unwrap();
            path
        })
        .collect()
}

async fn wait_all_done(pool: &PgPool, total: i64) {
    for _ in 0..1800 {
        let done: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state IN ('succeeded', 'failed')")
                .fetch_one(pool)
                .await
                .unwrap();
        if done == total {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("jobs did not finish in 180 s");
}

#[tokio::test]
async fn three_replicas_run_300_jobs_once_each_one_at_a_time_per_environment() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let db = fresh_postgres_database().await;
    let names: Vec<String> = (0..20).map(|i| format!("e{i:02}")).collect();
    let envs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "[\"true\"]")).collect();
    let configs = replica_configs(dir.path(), &db, &repo, "30s", "200ms", &envs, 3);
    let mut replicas: Vec<_> = configs.iter().map(|c| serve(c, "all")).collect();

    let http = reqwest::Client::new();
    for chunk in (0..300).collect::<Vec<usize>>().chunks(30) {
        let sends = chunk.iter().map(|&i| {
            let base = &replicas[i % 3].1;
            let (http, sha, env) = (&http, &sha, &names[i % 20]);
            async move { push_to(http, base, &format!("d-{i}"), env, sha).await }
        });
        for answer in futures::future::join_all(sends).await {
            assert!(answer["job_id"].is_i64(), "{answer}");
        }
    }
    let pool = PgPool::connect(&db).await.unwrap();
    wait_all_done(&pool, 300).await;
    for (child, _) in &mut replicas {
        child.kill().unwrap();
        child.wait().unwrap();
    }

    let states: Vec<(i64, String, String, i64)> =
        sqlx::query_as("SELECT id, lane, state, attempt FROM jobs ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(states.len(), 300, "one job per delivery");
    for (id, _, state, attempt) in &states {
        assert_eq!((state.as_str(), *attempt), ("succeeded", 1), "job {id}");
    }
    let switches: Vec<(i64, i64)> =
        sqlx::query_as("SELECT job_id, COUNT(*) FROM deployments GROUP BY job_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(switches.len(), 300);
    assert!(
        switches.iter().all(|(_, n)| *n == 1),
        "a release was switched twice"
    );

    // From the event log: per lane, each job ran after the previous one ended. Taken in the
    // order they started, not by id: ids are drawn when a replica's batch begins, so a job of a
    // batch that commits later can carry a lower id than one already running (the queue is
    // FIFO in commit order; one replica's order is tested in the queue's own tests).
    let spans: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT j.id, j.lane, \
           (SELECT MIN(at) FROM job_events e WHERE e.job_id = j.id AND e.state = 'running'), \
           (SELECT MAX(at) FROM job_events e WHERE e.job_id = j.id AND e.state = 'succeeded') \
         FROM jobs j ORDER BY j.id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut lanes: BTreeMap<String, Vec<(i64, i64, i64)>> = BTreeMap::new();
    for (id, lane, start, end) in spans {
        lanes.entry(lane).or_default().push((id, start, end));
    }
    assert_eq!(lanes.len(), 20);
    for (lane, jobs) in &mut lanes {
        jobs.sort_by_key(|&(_, start, _)| start);
        for pair in jobs.windows(2) {
            let ((a, _, a_end), (b, b_start, _)) = (pair[0], pair[1]);
            assert!(
                b_start >= a_end,
                "{lane}: job {b} started before job {a} ended"
            );
        }
    }
    let claimers: Vec<String> =
        sqlx::query_scalar("SELECT message FROM job_events WHERE state = 'running'")
            .fetch_all(&pool)
            .await
            .unwrap();
    // "attempt 1 claimed by HOST:PID": the replica.
    let processes: HashSet<&str> = claimers
        .iter()
        .filter_map(|m| m.rsplit(' ').next())
        .collect();
    assert!(
        processes.len() >= 2,
        "the work was not shared: {processes:?}"
    );
    let left: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_killed_replicas_job_is_finished_by_another_and_switched_once() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let db = fresh_postgres_database().await;
    let marker = dir.path().join("attempts");
    let step = format!("[\"echo attempt >> {}; sleep 3\"]", marker.display());
    let configs = replica_configs(
        dir.path(),
        &db,
        &repo,
        "2s",
        "200ms",
        &[("staging", &step)],
        2,
    );
    let mut replicas: Vec<_> = configs.iter().map(|c| serve(c, "all")).collect();

    let http = reqwest::Client::new();
    let answer = push_to(&http, &replicas[0].1, "kill", "staging", &sha).await;
    let id = answer["job_id"].as_i64().unwrap();
    for _ in 0..200 {
        if std::fs::read_to_string(&marker).is_ok_and(|m| m.lines().count() == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pool = PgPool::connect(&db).await.unwrap();
    let owner: String = sqlx::query_scalar("SELECT lease_owner FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    let pid: u32 = owner.split(':').nth(1).unwrap().parse().unwrap();
    let victim = replicas
        .iter()
        .position(|(c, _)| c.id() == pid)
        .expect("the owner is one of ours");
    replicas[victim].0.kill().unwrap();
    replicas[victim].0.wait().unwrap();

    wait_all_done(&pool, 1).await;
    let (state, attempt): (String, i64) =
        sqlx::query_as("SELECT state, attempt FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), attempt), ("succeeded", 2));
    let switches: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deployments WHERE job_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(switches, 1);
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 2);
    let survivor: String = sqlx::query_scalar("SELECT message FROM job_events WHERE job_id = $1 AND state = 'running' ORDER BY id DESC LIMIT 1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!survivor.contains(&format!(":{pid}:")), "{survivor}");
    for (child, _) in &mut replicas {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[tokio::test]
async fn web_and_worker_roles_split_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let db = fresh_postgres_database().await;
    let configs = replica_configs(
        dir.path(),
        &db,
        &repo,
        "30s",
        "200ms",
        &[("staging", "[\"true\"]")],
        2,
    );
    let (mut web, web_base) = serve(&configs[0], "web");
    let http = reqwest::Client::new();
    let answer = push_to(&http, &web_base, "roles", "staging", &sha).await;
    let id = answer["job_id"].as_i64().unwrap();
    // Nobody runs it until a worker replica starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let job: serde_json::Value = http
        .get(format!("{web_base}/api/jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "queued", "{job}");

    let (mut worker, worker_base) = serve(&configs[1], "worker");
    let job = crate::helpers::wait_for_job(&http, &web_base, id).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    // A worker replica serves probes only.
    assert_eq!(
        http.get(format!("{worker_base}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        http.get(format!("{worker_base}/api/jobs/{id}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    for child in [&mut web, &mut worker] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// Idle workers of another replica wake on LISTEN/NOTIFY: with a one-minute poll interval, a job
/// queued through a web replica still starts within seconds.
#[tokio::test]
async fn notify_wakes_idle_workers_of_other_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let db = fresh_postgres_database().await;
    let configs = replica_configs(
        dir.path(),
        &db,
        &repo,
        "30s",
        "60s",
        &[("staging", "[\"true\"]")],
        2,
    );
    let (mut worker, _) = serve(&configs[1], "worker");
    let (mut web, web_base) = serve(&configs[0], "web");
    // Let the worker finish its start-up claim and go idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let http = reqwest::Client::new();
    let queued = std::time::Instant::now();
    let id = push_to(&http, &web_base, "notify", "staging", &sha).await["job_id"]
        .as_i64()
        .unwrap();
    let job = crate::helpers::wait_for_job(&http, &web_base, id).await;
    let took = queued.elapsed();
    for child in [&mut web, &mut worker] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert!(
        took < Duration::from_secs(20),
        "the job waited {took:?}: the worker was not woken"
    );
}

#[tokio::test]
async fn a_scheduled_tick_is_queued_once_across_three_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_postgres_database().await;
    let repo = GitRepo::new(dir.path());
    let mut configs = replica_configs(dir.path(), &db, &repo, "5s", "200ms", &[], 3);
    // Every second; plus an app with ephemeral environments for the cleanup to be about.
    let extra = format!(
        "[apps.shop.ephemeral.demo]\nbranches = \"demo/*\"\nhostname = \"demo-{{slug}}.example.test\"\n\
         ports = \"21400-21409\"\nhosts = [\"local\"]\ndeploy_path = \"{}/envs\"\n\
         [[schedules]]\ncron = \"* * * * * *\"\njob = \"cleanup\"\n",
        dir.path().display()
    );
    for path in &mut configs {
        let text = std::fs::read_to_string(&*path).unwrap();
        std::fs::write(&*path, format!("{text}{extra}")).unwrap();
    }
    let mut replicas: Vec<_> = configs.iter().map(|c| serve(c, "scheduler").0).collect();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for replica in &mut replicas {
        replica.kill().unwrap();
        replica.wait().unwrap();
    }
    let pool = PgPool::connect(&db).await.unwrap();
    let per_tick: Vec<(String, i64)> = sqlx::query_as(
        "SELECT d.id, COUNT(j.id) FROM deliveries d LEFT JOIN jobs j ON j.delivery_id = d.id \
         WHERE d.source = 'schedule' GROUP BY d.id ORDER BY d.id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(per_tick.len() >= 2, "ticks: {per_tick:?}");
    for (tick, jobs) in &per_tick {
        assert!(tick.starts_with("schedule:cleanup:"), "{tick}");
        assert_eq!(*jobs, 1, "tick {tick} queued {jobs} jobs");
    }
    let (jobs, kinds): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT kind) FROM jobs WHERE kind = 'cleanup' AND app = 'shop' \
         AND env = 'housekeeping' AND state = 'queued'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((jobs, kinds), (per_tick.len() as i64, 1));
}

//! Faults outside slipway: a host that accepts TCP and then says nothing, a host whose key
//! changed, a host whose disk fills up during the unpack, and the database vanishing while a job
//! runs. In each, the job fails (or recovers) clearly and `current` never moves by accident.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::deploy::{current, releases, ssh_config};
use crate::helpers::{GitRepo, REPO, SECRET, TestApp, fresh_postgres_database, job_id};
use crate::sshd::{Fleet, keygen};

/// A loopback port that accepts connections and never sends a byte (no SSH banner).
async fn silent_host() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (format!("root@{addr}"), task)
}

#[tokio::test]
async fn a_host_that_accepts_and_hangs_fails_the_job_within_the_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 0);
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let (host, listener) = silent_host().await;
    let config = ssh_config(dir.path(), &repo, &fleet, "[\"true\"]", 5)
        .replace("hosts = []", &format!("hosts = [\"{host}\"]"))
        .replace("connect_timeout = \"5s\"", "connect_timeout = \"2s\"");
    let app = TestApp::spawn(dir, &config).await;
    let started = Instant::now();
    let (_, answer) = app.push("d1", "main", &sha).await;
    let job = app.finished(job_id(&answer)).await;
    let took = started.elapsed();
    assert_eq!(job["state"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("{host}: cannot connect")),
        "{error}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "failed after {took:?}"
    );
    listener.abort();
    app.stop().await;
}

#[tokio::test]
async fn a_changed_host_key_is_refused_naming_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 1);
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    // known_hosts pins another key for the host's address, as after a host was replaced (or
    // while someone sits in the middle).
    let other = dir.path().join("other_host_key");
    keygen(&other);
    let public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let pinned = std::fs::read_to_string(&fleet.known_hosts).unwrap();
    let (address, _) = pinned.split_once(' ').unwrap();
    let mut fields = public.split_whitespace();
    let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
    std::fs::write(&fleet.known_hosts, format!("{address} {kind} {key}\n")).unwrap();
    let config = ssh_config(dir.path(), &repo, &fleet, "[\"true\"]", 5);
    let app = TestApp::spawn(dir, &config).await;
    let (_, answer) = app.push("d1", "main", &sha).await;
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap();
    let spec = &fleet.hosts[0].spec;
    assert!(
        error.starts_with(&format!("{spec}: cannot connect")),
        "{error}"
    );
    assert!(error.contains("Host key verification failed"), "{error}");
    assert!(
        !fleet.hosts[0].srv.join("shop").exists(),
        "nothing was shipped"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_full_disk_during_the_unpack_fails_the_job_and_leaves_current_alone() {
    let dir = tempfile::tempdir().unwrap();
    // The host's /srv/shop is a 2 MiB tmpfs, inside the host only.
    let fleet = Fleet::start_with(
        dir.path(),
        1,
        "mkdir -p /srv/shop && mount -t tmpfs -o size=2m tmpfs /srv/shop",
    );
    let repo = GitRepo::new(dir.path());
    let small = repo.commit("small", "main");
    let config = ssh_config(dir.path(), &repo, &fleet, "[\"./bin/build\"]", 5);
    let app = TestApp::spawn(dir, &config).await;
    let (_, answer) = app.push("small", "main", &small).await;
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let live = job["release_id"].as_str().unwrap().to_owned();

    // 4 MiB that do not compress: more than the host's disk holds.
    let mut noise = vec![0u8; 4 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for byte in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = x as u8;
    }
    repo.write("big.bin", &noise);
    let big = repo.commit("big", "main");
    let (_, answer) = app.push("big", "main", &big).await;
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap();
    let spec = &fleet.hosts[0].spec;
    assert!(error.starts_with(spec.as_str()), "{error}");
    let log = job["log"].to_string();
    assert!(log.contains("No space left on device"), "{log}");

    let srv = fleet.hosts[0].root().join("srv");
    assert_eq!(current(&srv), format!("releases/{live}"));
    assert_eq!(
        releases(&srv),
        std::slice::from_ref(&live),
        "the partial release is removed"
    );
    assert!(srv.join("shop/current/BUILD_INFO").exists());
    app.stop().await;
}

/// A local-target app on PostgreSQL whose deploys wait at `<dir>/gate-<sha>` (after touching
/// `<dir>/waiting-<sha>`).
fn gated_config(dir: &Path, db: &str, repo: &GitRepo) -> String {
    let d = dir.display();
    format!(
        "[github]\nwebhook_secret = \"{SECRET}\"\n[database]\nurl = \"{db}\"\n\
         [worker]\ndata_dir = \"{d}/var\"\nlease = \"3s\"\npoll_interval = \"200ms\"\n\
         [apps.shop]\nrepo = \"{REPO}\"\nclone_url = \"{clone}\"\n\
         [apps.shop.environments.staging]\nhosts = [\"local\"]\ndeploy_path = \"{d}/srv/shop\"\n\
         steps = [\"touch {d}/waiting-$SLIPWAY_SHA; while [ ! -e {d}/gate-$SLIPWAY_SHA ]; do sleep 0.05; done\"]\n\
         [[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"staging\"\n",
        clone = repo.clone_url(),
    )
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("waited 30 s for {what}");
}

#[tokio::test]
async fn the_database_vanishing_mid_job_never_switches_and_a_blip_heals() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let repo = GitRepo::new(&d);
    let first = repo.commit("first", "main");
    let db = fresh_postgres_database().await;
    let (admin_base, name) = db.rsplit_once('/').unwrap();
    let mut admin = sqlx::PgConnection::connect(&format!("{admin_base}/postgres"))
        .await
        .unwrap();
    let config = gated_config(&d, &db, &repo);
    let app = TestApp::spawn(tempfile::tempdir().unwrap(), &config).await;
    let srv = d.join("srv");

    // A blip: every connection of slipway's is killed while the job runs; it carries on.
    let (_, answer) = app.push("first", "main", &first).await;
    let id = job_id(&answer);
    wait_for("the first job to start", || {
        d.join(format!("waiting-{first}")).exists()
    })
    .await;
    let killed: Vec<(bool,)> =
        sqlx::query_as("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(name)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert!(
        !killed.is_empty() && killed.iter().all(|(ok,)| *ok),
        "{killed:?}"
    );
    std::fs::write(d.join(format!("gate-{first}")), "").unwrap();
    let job = app.finished(id).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let live = job["release_id"].as_str().unwrap().to_owned();
    assert_eq!(current(&srv), format!("releases/{live}"));

    // Gone for good: the database is dropped while the next job runs. The job cannot prove it
    // still owns its lease, so it does not switch; it removes its release and the service
    // stays up.
    let second = repo.commit("second", "main");
    let (_, answer) = app.push("second", "main", &second).await;
    job_id(&answer);
    wait_for("the second job to start", || {
        d.join(format!("waiting-{second}")).exists()
    })
    .await;
    assert_eq!(releases(&srv).len(), 2);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    std::fs::write(d.join(format!("gate-{second}")), "").unwrap();
    wait_for("the second release to be removed", || {
        releases(&srv).len() == 1
    })
    .await;
    assert_eq!(current(&srv), format!("releases/{live}"));
    assert_eq!(releases(&srv), [live]);
    assert_eq!(app.status_of("/healthz").await, 200);
    assert_eq!(app.status_of("/readyz").await, 503);
    app.stop().await;
}

//! What operators see: probes, metrics, masked logs, and a database outage survived without a
//! restart.

use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::helpers::{
    GitRepo, REPO, SECRET, TestApp, config_head, fresh_postgres_database, job_id, push_to,
    serve_logging_to,
};

fn local_env(dir: &std::path::Path, repo: &GitRepo, steps: &str) -> String {
    format!(
        "[apps.shop]\nrepo = \"{REPO}\"\nclone_url = \"{}\"\n\
         [apps.shop.environments.staging]\nhosts = [\"local\"]\ndeploy_path = \"{}/srv/shop\"\nsteps = {steps}\n\
         [[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"staging\"\n",
        repo.clone_url(),
        dir.display()
    )
}

#[tokio::test]
async fn probes_and_metrics_report_requests_jobs_and_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let config = format!(
        "{}{}",
        config_head(dir.path()),
        local_env(dir.path(), &repo, "[\"./bin/build\"]")
    );
    let app = TestApp::spawn(dir, &config).await;
    let (_, answer) = app.push("m-1", "main", &sha).await;
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "succeeded");
    let (status, _) = app.webhook("push", "m-2", b"{}", Some("sha256=00")).await;
    assert_eq!(status, 401);

    for probe in ["/healthz", "/startupz", "/readyz"] {
        let res = app
            .http
            .get(format!("{}{probe}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{probe}");
    }
    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "slipway_http_requests_total{route=\"/webhooks/github\",status=\"202\"} 1",
        "slipway_http_requests_total{route=\"/webhooks/github\",status=\"401\"} 1",
        "slipway_http_request_duration_seconds_bucket{route=\"/webhooks/github\"",
        "slipway_job_duration_seconds_count{app=\"shop\",env=\"staging\",outcome=\"succeeded\"} 1",
        "slipway_step_duration_seconds_count{status=\"ok\"}",
        "slipway_lease_expiries_total 0",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    app.stop().await;
}

#[test]
fn secrets_are_masked_in_logs_and_step_output() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let d = dir.path().display();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[github]\nwebhook_secret = \"{SECRET}\"\n\
         [database]\nurl = \"sqlite://{d}/slipway.db\"\n[worker]\ndata_dir = \"{d}/var\"\n{}",
        local_env(
            dir.path(),
            &repo,
            &format!("[\"echo the secret is {SECRET}; exit 3\"]")
        )
    );
    let path = dir.path().join("slipway.toml");
    std::fs::write(&path, config).unwrap();
    let log_path = dir.path().join("stderr.log");
    let (child, base) = serve_logging_to(&path, &log_path);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let job = runtime.block_on(async {
        let http = reqwest::Client::new();
        let id = job_id(&push_to(&http, &base, "secret-1", "main", &sha).await);
        crate::helpers::wait_for_job(&http, &base, id).await
    });
    drop(child);

    assert_eq!(job["state"], "failed");
    let shown = job.to_string();
    assert!(
        !shown.contains(SECRET),
        "the API showed the secret: {shown}"
    );
    assert!(shown.contains("the secret is ****"), "{shown}");
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(!logs.contains(SECRET), "the logs showed the secret");
    // JSON logs, with the request id on request spans and the job fields on job spans.
    let lines: Vec<serde_json::Value> = BufReader::new(logs.as_bytes())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).expect("every log line is JSON"))
        .collect();
    assert!(lines.iter().any(|l| {
        l["span"]["name"] == "request"
            && l["duration_us"].is_u64()
            && l["http.status"].is_u64()
            && l["span"]["request.id"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
    }));
    assert!(lines.iter().any(|l| l["span"]["name"] == "job"
        && l["span"]["job.id"].is_i64()
        && l["duration_ms"].is_i64()));
}

/// A TCP proxy in front of PostgreSQL that the test can cut and restore: a real network outage.
struct Outage {
    addr: String,
    upstream: String,
    state: Arc<Mutex<Option<JoinHandle<()>>>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Outage {
    async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let outage = Self {
            addr,
            upstream: upstream.to_owned(),
            state: Arc::default(),
            connections: Arc::default(),
        };
        outage.serve(listener).await;
        outage
    }

    async fn serve(&self, listener: TcpListener) {
        let (upstream, connections) = (self.upstream.clone(), self.connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                connections.lock().await.push(pipe);
            }
        });
        *self.state.lock().await = Some(task);
    }

    /// Refuses new connections and drops the open ones.
    async fn cut(&self) {
        if let Some(task) = self.state.lock().await.take() {
            task.abort();
            let _ = task.await;
        }
        for pipe in self.connections.lock().await.drain(..) {
            pipe.abort();
        }
    }

    async fn restore(&self) {
        let listener = TcpListener::bind(&self.addr).await.unwrap();
        self.serve(listener).await;
    }
}

#[tokio::test]
async fn a_database_outage_answers_503_and_heals_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let db = fresh_postgres_database().await;
    let (prefix, rest) = db.split_once('@').unwrap();
    let (real, name) = rest.split_once('/').unwrap();
    let outage = Outage::start(real).await;
    let via_proxy = format!("{prefix}@{}/{name}", outage.addr);
    let config = format!(
        "[github]\nwebhook_secret = \"{SECRET}\"\n[database]\nurl = \"{via_proxy}\"\n\
         [worker]\ndata_dir = \"{}/var\"\npoll_interval = \"200ms\"\n{}",
        dir.path().display(),
        local_env(dir.path(), &repo, "[\"true\"]")
    );
    let app = TestApp::spawn(tempfile::tempdir().unwrap(), &config).await;
    let (status, answer) = app.push("before", "main", &sha).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(app.finished(job_id(&answer)).await["state"], "succeeded");

    outage.cut().await;
    let (status, answer) = app.push("during", "main", &sha).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("database unavailable"))
    );
    assert_eq!(app.status_of("/readyz").await, 503);
    assert_eq!(
        app.status_of("/healthz").await,
        200,
        "liveness does not depend on the database"
    );

    outage.restore().await;
    let mut healed = None;
    for _ in 0..100 {
        let (status, answer) = app.push("after", "main", &sha).await;
        if status == 202 {
            healed = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = healed.expect("webhooks accepted again after the outage");
    assert_eq!(app.finished(job_id(&answer)).await["state"], "succeeded");
    assert_eq!(app.status_of("/readyz").await, 200);
    app.stop().await;
}

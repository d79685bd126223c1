//! Cleanup and reconcile ticks over many tracked ephemeral environments: process CPU per tick
//! (user + system, from /proc/self/stat). No host work: ticks only decide and queue jobs.
//! Run (release build):
//!
//! ```sh
//! cargo bench --bench housekeeping            # 1000 environments
//! cargo bench --bench housekeeping -- 5000
//! ```
//!
//! The reconcile tick reads the branch list (10 pages of 100 for 1000 environments) from a fake
//! GitHub served by this same process, so its figure includes the fake's CPU: an upper bound.

use std::time::Instant;

use serde_json::json;
use slipway::config::Config;
use slipway::domain::{GitRef, Sha};
use slipway::ephemeral;
use slipway::github::GitHub;
use slipway::planner::ephemeral_job;
use slipway::queue::Queue;
use slipway::store::{EnvState, JobKind, Store, now_ms};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// CPU time of the whole process so far, in milliseconds.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks * 10.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let fake = MockServer::start().await;
    let config_path = dir.path().join("slipway.toml");
    std::fs::write(
        &config_path,
        format!(
            "[github]\nwebhook_secret = \"bench-webhook-secret\"\napi_url = \"{}\"\ntoken = \"ghp_bench\"\n\
             [database]\nurl = \"sqlite://{}/bench.db\"\n\
             [apps.shop]\nrepo = \"acme/shop\"\nclone_url = \"file:///nonexistent\"\n\
             [apps.shop.ephemeral.demo]\nbranches = \"demo/*\"\nhostname = \"demo-{{slug}}.example.test\"\n\
             ports = \"20000-29999\"\nmax = 100000\nhosts = [\"local\"]\ndeploy_path = \"/srv/demo\"\nttl = \"7d\"\n",
            fake.uri(),
            dir.path().display()
        ),
    )
    .unwrap();
    let config = Config::load(&config_path).unwrap();
    let app = config.app("shop").unwrap();
    let template = app.ephemeral.values().next().unwrap();
    let store = Store::open(&config.database.url).await.unwrap();
    let queue = Queue::new(store.clone(), 3);
    let github = GitHub::from_config(&config.github).unwrap();

    // `count` live environments, each at its branch head.
    let sha = Sha::parse(&"a".repeat(40)).unwrap();
    let jobs: Vec<_> = (0..count)
        .map(|i| {
            let branch = GitRef::parse(&format!("demo/feature-{i}")).unwrap();
            let id = ephemeral::identify(template, branch.as_str()).unwrap();
            ephemeral_job(app, id, &branch, Some(sha.clone()), "bench", "bench")
        })
        .collect();
    queue.enqueue(None, &jobs).await.unwrap();
    for row in store.ephemeral_envs().await.unwrap() {
        store
            .set_env_state(
                row.id,
                &[EnvState::Provisioning],
                EnvState::Live,
                Some(sha.as_str()),
                now_ms(),
            )
            .await
            .unwrap();
    }
    let branches: Vec<_> = (0..count)
        .map(|i| {
            json!({ "name": format!("demo/feature-{i}"), "protected": false,
                         "commit": { "sha": sha.as_str(), "url": "https://api.github.com/x" } })
        })
        .collect();
    let pages = branches.chunks(100).count();
    for (n, chunk) in branches.chunks(100).enumerate() {
        let mut answer = ResponseTemplate::new(200).set_body_json(chunk);
        if n + 1 < pages {
            answer = answer.insert_header(
                "link",
                format!(
                    "<{}/repositories/1/branches?per_page=100&page={}>; rel=\"next\"",
                    fake.uri(),
                    n + 2
                )
                .as_str(),
            );
        }
        let path_of = if n == 0 {
            "/repos/acme/shop/branches"
        } else {
            "/repositories/1/branches"
        };
        let mut mock = Mock::given(method("GET")).and(path(path_of));
        if n > 0 {
            mock = mock.and(query_param("page", (n + 1).to_string().as_str()));
        }
        mock.respond_with(answer).mount(&fake).await;
    }

    let now = now_ms();
    let measure = |name: &'static str, rounds: usize| (name, rounds, cpu_ms(), Instant::now());
    let report = |(name, rounds, cpu, wall): (&str, usize, f64, Instant), lines: usize| {
        println!(
            "{name}: {count} environments, {:.1} ms CPU per tick, {:.1} ms wall per tick ({lines} actions)",
            (cpu_ms() - cpu) / rounds as f64,
            wall.elapsed().as_secs_f64() * 1000.0 / rounds as f64,
        );
    };

    let m = measure("cleanup, nothing idle", 20);
    let mut lines = 0;
    for _ in 0..20 {
        lines = slipway::housekeeping::run(&queue, None, app, JobKind::Cleanup, None, now, false)
            .await
            .unwrap()
            .lines
            .len();
    }
    report(m, lines);

    let m = measure("reconcile, all up to date", 10);
    for _ in 0..10 {
        lines = slipway::housekeeping::run(
            &queue,
            None,
            app,
            JobKind::Reconcile,
            github.as_ref(),
            now,
            false,
        )
        .await
        .unwrap()
        .lines
        .len();
    }
    report(m, lines);

    let m = measure("cleanup, all idle (queues every teardown)", 1);
    let lines = slipway::housekeeping::run(
        &queue,
        None,
        app,
        JobKind::Cleanup,
        None,
        now + 8 * 86_400_000,
        false,
    )
    .await
    .unwrap()
    .lines
    .len();
    report(m, lines);
}

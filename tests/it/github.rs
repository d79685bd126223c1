//! What slipway tells GitHub, checked against a fake GitHub API (wiremock) that records every
//! request: Deployments and their statuses, and (reconcile) the branch listing it reads.

use std::path::Path;

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{GitRepo, REPO, TestApp, config_head, job_id, push_body, run_slipway};

pub const TOKEN: &str = "ghp_integrationTestToken0123456789";

/// A fake GitHub answering deployment and status creation (ids 100, 101, ... in order).
pub async fn fake_github() -> MockServer {
    let server = MockServer::start().await;
    let counter = std::sync::atomic::AtomicU64::new(100);
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/acme/shop/deployments$"))
        .respond_with(move |_: &wiremock::Request| {
            let id = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ResponseTemplate::new(201).set_body_json(deployment(id))
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/acme/shop/deployments/\d+/statuses$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(status()))
        .mount(&server)
        .await;
    server
}

fn deployment(id: u64) -> Value {
    let repo = "https://api.github.com/repos/acme/shop";
    json!({
        "url": format!("{repo}/deployments/{id}"), "id": id, "node_id": "MDEwOkRlcGxveW1lbnQx",
        "sha": "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d", "ref": "main", "task": "deploy",
        "payload": {}, "original_environment": "x", "environment": "x", "description": "",
        "creator": null, "created_at": "2026-11-02T10:00:00Z", "updated_at": "2026-11-02T10:00:00Z",
        "statuses_url": format!("{repo}/deployments/{id}/statuses"), "repository_url": repo,
        "transient_environment": false, "production_environment": false
    })
}

fn status() -> Value {
    let repo = "https://api.github.com/repos/acme/shop";
    json!({
        "url": format!("{repo}/deployments/1/statuses/1"), "id": 1,
        "node_id": "MDE2OkRlcGxveW1lbnRTdGF0dXMx", "state": "success", "creator": null,
        "description": "", "environment": "x", "target_url": "", "log_url": "",
        "environment_url": "", "created_at": "2026-11-02T10:00:00Z",
        "updated_at": "2026-11-02T10:00:00Z",
        "deployment_url": format!("{repo}/deployments/1"), "repository_url": repo
    })
}

/// The requests the fake received, as (method path, JSON body).
pub async fn received(server: &MockServer) -> Vec<(String, Value)> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            assert_eq!(
                r.headers.get("authorization").unwrap(),
                &format!("Bearer {TOKEN}"),
                "every request carries the token"
            );
            (
                format!("{} {}", r.method, r.url.path()),
                serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// `[github]` pointing at the fake, then an app with a local ephemeral template and a static
/// staging environment.
pub fn config(dir: &Path, repo: &GitRepo, api: &str) -> String {
    let head = config_head(dir).replace(
        "[github]\n",
        &format!(
            "[github]\napi_url = \"{api}\"\ntoken = \"{TOKEN}\"\npublic_url = \"http://slipway.test\"\n"
        ),
    );
    format!(
        "{head}[apps.shop]\nrepo = \"acme/shop\"\nclone_url = \"{}\"\n\
         [apps.shop.environments.staging]\nhosts = [\"local\"]\ndeploy_path = \"{d}/staging\"\n\
         url = \"https://staging.example.test\"\n\
         [[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"staging\"\n\
         [apps.shop.ephemeral.demo]\nbranches = \"demo/*\"\nhostname = \"demo-{{slug}}.app.example.test\"\n\
         ports = \"21300-21309\"\nhosts = [\"local\"]\ndeploy_path = \"{d}/envs\"\n\
         route = {{ file = \"{d}/routes/{{env}}.conf\", check = \"true\", reload = \"true\" }}\n",
        repo.clone_url(),
        d = dir.display(),
    )
}

#[tokio::test]
async fn every_deploy_and_teardown_is_a_github_deployment_with_statuses() {
    let github = fake_github().await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let main_sha = repo.commit("first", "main");
    let demo_sha = repo.commit("demo", "demo/xyz");
    let config = config(dir.path(), &repo, &github.uri());
    let app = TestApp::spawn(dir, &config).await;

    let (_, answer) = app.push("gh-1", "main", &main_sha).await;
    let staging = app.finished(job_id(&answer)).await;
    assert_eq!(staging["state"], "succeeded", "{staging:#}");
    let (_, answer) = app.push("gh-2", "demo/xyz", &demo_sha).await;
    let demo = app.finished(job_id(&answer)).await;
    assert_eq!(demo["state"], "succeeded", "{demo:#}");
    let body = push_body(REPO, "refs/heads/demo/xyz", &"0".repeat(40), true);
    let (_, answer) = app.webhook("push", "gh-3", &body, None).await;
    let teardown = app.finished(job_id(&answer)).await;
    assert_eq!(teardown["state"], "succeeded", "{teardown:#}");
    let (s, d) = (
        staging["id"].as_i64().unwrap(),
        demo["id"].as_i64().unwrap(),
    );
    app.stop().await;

    let log = |id: i64| format!("http://slipway.test/api/jobs/{id}");
    let expected = vec![
        (
            "POST /repos/acme/shop/deployments".to_owned(),
            json!({ "ref": main_sha, "environment": "staging",
                    "description": "deploy main by Codertocat", "transient_environment": false,
                    "production_environment": false, "auto_merge": false, "required_contexts": [] }),
        ),
        (
            "POST /repos/acme/shop/deployments/100/statuses".to_owned(),
            json!({ "state": "in_progress", "environment_url": "https://staging.example.test",
                    "log_url": log(s), "description": format!("job {s} running") }),
        ),
        (
            "POST /repos/acme/shop/deployments/100/statuses".to_owned(),
            json!({ "state": "success", "environment_url": "https://staging.example.test",
                    "log_url": log(s), "description": "<summary>", "auto_inactive": true }),
        ),
        (
            "POST /repos/acme/shop/deployments".to_owned(),
            json!({ "ref": demo_sha, "environment": "demo-xyz",
                    "description": "deploy demo/xyz by Codertocat", "transient_environment": true,
                    "production_environment": false, "auto_merge": false, "required_contexts": [] }),
        ),
        (
            "POST /repos/acme/shop/deployments/101/statuses".to_owned(),
            json!({ "state": "in_progress", "environment_url": "https://demo-xyz.app.example.test",
                    "log_url": log(d), "description": format!("job {d} running") }),
        ),
        (
            "POST /repos/acme/shop/deployments/101/statuses".to_owned(),
            json!({ "state": "success", "environment_url": "https://demo-xyz.app.example.test",
                    "log_url": log(d), "description": "<summary>", "auto_inactive": true }),
        ),
        (
            "POST /repos/acme/shop/deployments/101/statuses".to_owned(),
            json!({ "state": "inactive", "log_url": log(teardown["id"].as_i64().unwrap()),
                    "description": "demo-xyz torn down" }),
        ),
    ];
    let mut got = received(&github).await;
    for (_, body) in &mut got {
        if body["state"] == "success" {
            let said = body["description"].as_str().unwrap();
            assert!(
                said.starts_with("release ") && said.contains(" live on "),
                "{said}"
            );
            body["description"] = "<summary>".into();
        }
    }
    assert_eq!(got, expected);
}

/// GitHub's branch listing over two pages, as `GET /repos/acme/shop/branches` answers it. A
/// listing mounted later with a lower `priority` number answers instead.
async fn list_branches(server: &MockServer, pages: [&[(&str, &str)]; 2], priority: u8) {
    use wiremock::matchers::{path, query_param, query_param_is_missing};
    let page = |branches: &[(&str, &str)]| {
        Value::Array(
            branches
                .iter()
                .map(|(name, sha)| {
                    json!({ "name": name, "protected": false, "commit": {
                        "sha": sha, "url": format!("https://api.github.com/repos/acme/shop/commits/{sha}") } })
                })
                .collect(),
        )
    };
    let next = format!(
        "<{}/repositories/42/branches?per_page=100&page=2>; rel=\"next\"",
        server.uri()
    );
    Mock::given(method("GET"))
        .and(path("/repos/acme/shop/branches"))
        .and(query_param_is_missing("page"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(page(pages[0]))
                .insert_header("link", next.as_str()),
        )
        .with_priority(priority)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repositories/42/branches"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(pages[1])))
        .with_priority(priority)
        .mount(server)
        .await;
}

async fn wait_for(app: &TestApp, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..300 {
        let envs: Vec<Value> = app
            .http
            .get(format!("{}/api/ephemeral", app.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&envs) {
            return envs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the environments never got there");
}

#[tokio::test]
async fn reconcile_brings_up_lost_branches_and_removes_vanished_ones() {
    let github = fake_github().await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let main_sha = repo.commit("first", "main");
    let vanished_sha = repo.commit("vanished", "demo/vanished");
    let lost_sha = repo.commit("lost", "demo/lost");
    let config = config(dir.path(), &repo, &github.uri());
    let path = dir.path().join("slipway.toml");
    let app = TestApp::spawn(dir, &config).await;

    // demo/vanished's push arrived; demo/lost's never did.
    let (_, answer) = app.push("r-1", "demo/vanished", &vanished_sha).await;
    assert_eq!(app.finished(job_id(&answer)).await["state"], "succeeded");
    // Now GitHub lists main and demo/lost (on its second page); demo/vanished was deleted.
    list_branches(
        &github,
        [
            &[("main", &main_sha), ("feature/x", &main_sha)],
            &[("demo/lost", &lost_sha)],
        ],
        5,
    )
    .await;

    let dry = run_slipway(&path, &["reconcile", "--dry-run"]);
    assert_eq!(
        dry,
        format!(
            "shop: would deploy demo/lost ({}): the branch has no environment (a lost webhook?)\n\
             shop: would tear down demo-vanished: branch demo/vanished no longer exists\n",
            &lost_sha[..8]
        )
    );
    assert_eq!(
        wait_for(&app, |e| e.len() == 1).await[0]["env"],
        "demo-vanished"
    );

    let done = run_slipway(&path, &["reconcile"]);
    assert!(done.contains("shop: deploy demo/lost"), "{done}");
    assert!(done.contains("shop: tear down demo-vanished"), "{done}");
    let envs = wait_for(&app, |e| {
        e.len() == 1 && e[0]["env"] == "demo-lost" && e[0]["state"] == "live"
    })
    .await;
    assert_eq!(envs[0]["sha"], lost_sha.as_str());
    // Converged: a second pass has nothing to do.
    assert_eq!(run_slipway(&path, &["reconcile"]), "shop: nothing to do\n");
    app.stop().await;
}

#[tokio::test]
async fn scheduled_reconcile_run_by_the_workers_brings_environments_to_their_branch_heads() {
    let github = fake_github().await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let main_sha = repo.commit("first", "main");
    let sha1 = repo.commit("one", "demo/head");
    // demo/head's push never arrived; GitHub lists it.
    list_branches(
        &github,
        [&[("main", &main_sha)], &[("demo/head", &sha1)]],
        5,
    )
    .await;
    // A reconcile tick every second, run by the service's own scheduler and workers.
    let config = config(dir.path(), &repo, &github.uri())
        + "[[schedules]]\nname = \"reconcile\"\ncron = \"* * * * * *\"\njob = \"reconcile\"\n";
    let app = TestApp::spawn(dir, &config).await;

    let envs = wait_for(&app, |e| e.len() == 1 && e[0]["state"] == "live").await;
    assert_eq!(
        (&envs[0]["env"], &envs[0]["sha"]),
        (&Value::from("demo-head"), &Value::from(sha1.as_str()))
    );
    // The branch moves on without a webhook: its environment follows the head.
    let sha2 = repo.commit("two", "demo/head");
    list_branches(
        &github,
        [&[("main", &main_sha)], &[("demo/head", &sha2)]],
        1,
    )
    .await;
    wait_for(&app, |e| {
        e.len() == 1 && e[0]["state"] == "live" && e[0]["sha"] == sha2.as_str()
    })
    .await;
    // The environment is settled as live before its deploy job is recorded as ended.
    for job in app.jobs().await {
        if job["kind"] == "deploy" {
            app.finished(job["id"].as_i64().unwrap()).await;
        }
    }
    let jobs = app.jobs().await;
    app.stop().await;

    let reconciles: Vec<&Value> = jobs.iter().filter(|j| j["kind"] == "reconcile").collect();
    assert!(
        reconciles
            .iter()
            .any(|j| j["state"] == "succeeded" && j["source"] == "schedule"),
        "{reconciles:#?}"
    );
    let deploys: Vec<(&str, &str, &str)> = jobs
        .iter()
        .filter(|j| j["kind"] == "deploy" && j["state"] == "succeeded")
        .map(|j| {
            let field = |k: &str| j[k].as_str().unwrap();
            (field("env"), field("sha"), field("requested_by"))
        })
        .collect();
    assert!(
        deploys.contains(&("demo-head", sha1.as_str(), "reconcile"))
            && deploys.contains(&("demo-head", sha2.as_str(), "reconcile")),
        "{deploys:?}"
    );
    assert!(jobs.iter().all(|j| j["state"] != "failed"), "{jobs:#?}");
}

#[tokio::test]
async fn an_ephemeral_deploy_that_gets_no_port_is_a_failed_github_deployment() {
    let github = fake_github().await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha_a = repo.commit("a", "demo/a");
    let sha_b = repo.commit("b", "demo/b");
    // One port for the template: demo/a takes it.
    let config = config(dir.path(), &repo, &github.uri())
        .replace("ports = \"21300-21309\"", "ports = \"21310-21310\"");
    let app = TestApp::spawn(dir, &config).await;
    let (_, answer) = app.push("port-1", "demo/a", &sha_a).await;
    assert_eq!(app.finished(job_id(&answer)).await["state"], "succeeded");
    let (_, answer) = app.push("port-2", "demo/b", &sha_b).await;
    let job = app.finished(job_id(&answer)).await;
    let why = "every port of 21310-21310 is in use; tear an environment down or widen `ports`";
    assert_eq!(
        (&job["state"], &job["error"]),
        (&Value::from("failed"), &Value::from(why))
    );
    let id = job["id"].as_i64().unwrap();
    app.stop().await;

    let log = format!("http://slipway.test/api/jobs/{id}");
    let got = received(&github).await;
    assert_eq!(
        got[3..],
        [
            (
                "POST /repos/acme/shop/deployments".to_owned(),
                json!({ "ref": sha_b, "environment": "demo-b",
                        "description": "deploy demo/b by Codertocat", "transient_environment": true,
                        "production_environment": false, "auto_merge": false, "required_contexts": [] }),
            ),
            (
                "POST /repos/acme/shop/deployments/101/statuses".to_owned(),
                json!({ "state": "in_progress", "environment_url": "https://demo-b.app.example.test",
                        "log_url": log, "description": format!("job {id} running") }),
            ),
            (
                "POST /repos/acme/shop/deployments/101/statuses".to_owned(),
                json!({ "state": "failure", "log_url": log, "description": why }),
            ),
        ]
    );
}

#[tokio::test]
async fn an_environment_named_production_is_a_production_deployment() {
    let github = fake_github().await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "release");
    let config = config(dir.path(), &repo, &github.uri())
        + &format!(
            "[apps.shop.environments.production]\nhosts = [\"local\"]\ndeploy_path = \"{}/prod\"\n\
             [[apps.shop.triggers]]\npush = \"release\"\ndeploy = \"production\"\n",
            dir.path().display()
        );
    let app = TestApp::spawn(dir, &config).await;
    let (_, answer) = app.push("prod-1", "release", &sha).await;
    assert_eq!(app.finished(job_id(&answer)).await["state"], "succeeded");
    app.stop().await;
    let got = received(&github).await;
    assert_eq!(
        got[0],
        (
            "POST /repos/acme/shop/deployments".to_owned(),
            json!({ "ref": sha, "environment": "production",
                    "description": "deploy release by Codertocat", "transient_environment": false,
                    "production_environment": true, "auto_merge": false, "required_contexts": [] }),
        )
    );
}

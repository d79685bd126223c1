//! Strategies, health checks and rollback on real sshd hosts, with a real nginx for blue/green.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::apps::{add_web_app, page};
use crate::helpers::{GitRepo, TestApp, config_head, job_id};
use crate::nginx::Nginx;
use crate::sshd::Fleet;

const TOKEN: &str = "strategy-test-token";

fn config(dir: &Path, repo: &GitRepo, fleet: &Fleet, env: &str) -> String {
    format!(
        "{}[api]\ntoken = \"{TOKEN}\"\n[apps.shop]\nrepo = \"acme/shop\"\nclone_url = \"{}\"\n\
         [apps.shop.environments.prod]\nhosts = {}\ndeploy_path = \"/srv/shop\"\nssh = {}\n{env}\n\
         [[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"prod\"\n",
        config_head(dir),
        repo.clone_url(),
        fleet.hosts_toml(),
        fleet.ssh_toml(),
    )
}

const HEALTH: &str =
    "health = { path = \"/\", port = 8000, interval = \"100ms\", timeout = \"1s\", retries = 30 }";
const RESTART: &str = "steps.build = [\"./bin/build\"]\nsteps.after_switch = [\"./bin/app start\"]";

async fn get(url: &str) -> Result<(u16, String), reqwest::Error> {
    let res = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    Ok((res.status().as_u16(), res.text().await?))
}

async fn deploy(app: &TestApp, repo: &GitRepo, delivery: &str) -> Value {
    let sha = repo.commit(delivery, "main");
    let (status, answer) = app.push(delivery, "main", &sha).await;
    assert_eq!(status, 202, "{answer}");
    app.finished(job_id(&answer)).await
}

fn release(job: &Value) -> String {
    job["release_id"].as_str().unwrap().to_owned()
}

fn current(srv: &Path) -> String {
    let link = std::fs::read_link(srv.join("shop/current")).unwrap();
    link.file_name().unwrap().to_str().unwrap().to_owned()
}

async fn serves(fleet: &Fleet, i: usize) -> String {
    let (status, body) = get(&format!("http://{}:8000/", fleet.hosts[i].addr()))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (release, _sha) = body
        .strip_prefix("release ")
        .unwrap()
        .split_once(" of ")
        .unwrap();
    release.to_owned()
}

async fn rollback(app: &TestApp, body: Value) -> (u16, Value) {
    let res = app
        .http
        .post(format!("{}/api/environments/shop/prod/rollback", app.base))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn blue_green_switches_without_a_failed_request_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 1);
    let host = &fleet.hosts[0];
    let upstream = host.srv.join("shop/upstream.conf");
    let nginx = Nginx::start(dir.path(), host.addr(), 8080, &upstream);
    let (check, reload) = nginx.commands();
    let repo = GitRepo::new(dir.path());
    add_web_app(&repo);
    let env = format!(
        "steps.build = [\"./bin/build\"]\nsteps.start = [\"./bin/app start\"]\nsteps.stop = [\"./bin/app stop\"]\n\
         health = {{ path = \"/\", interval = \"100ms\", timeout = \"1s\", retries = 30 }}\n\
         strategy = {{ blue_green = {{ blue_port = 8001, green_port = 8002, upstream_file = \"/srv/shop/upstream.conf\", \
         upstream_template = \"server {}:{{port}};\\n\", check = \"{check}\", reload = \"{reload}\", drain = \"1s\" }} }}",
        host.addr()
    );
    let app = TestApp::spawn(
        tempfile::tempdir().unwrap(),
        &config(dir.path(), &repo, &fleet, &env),
    )
    .await;

    let first = deploy(&app, &repo, "v1").await;
    assert_eq!(first["state"], "succeeded", "{first:#}");
    let r1 = release(&first);
    assert_eq!(get(&nginx.url).await.unwrap(), (200, page(&first)));

    // A client hits nginx without pause while the next release goes live.
    let stop = Arc::new(AtomicBool::new(false));
    let client = tokio::spawn({
        let (stop, url) = (stop.clone(), nginx.url.clone());
        async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let answer = get(&url).await.map_err(|e| e.to_string());
                seen.push(answer);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        }
    });
    let second = deploy(&app, &repo, "v2").await;
    assert_eq!(second["state"], "succeeded", "{second:#}");
    let after: Vec<_> = futures::future::join_all((0..20).map(|_| get(&nginx.url))).await;
    stop.store(true, Ordering::Relaxed);
    let seen = client.await.unwrap();

    assert!(seen.len() > 20, "the client made {} requests", seen.len());
    let failed: Vec<_> = seen.iter().filter(|a| !matches!(a, Ok((200, _)))).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        seen.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        seen.iter()
            .any(|a| matches!(a, Ok((_, b)) if *b == page(&first)))
    );
    for answer in after {
        assert_eq!(answer.unwrap(), (200, page(&second)));
    }
    // Green is live; blue was stopped after the drain.
    assert!(
        get(&format!("http://{}:8001/", host.addr())).await.is_err(),
        "the old slot still runs"
    );
    assert!(
        std::fs::read_to_string(&upstream)
            .unwrap()
            .contains(":8002;")
    );

    // Rollback: the previous release starts in the idle slot and the proxy goes back to it.
    let (status, answer) = rollback(&app, serde_json::json!({})).await;
    assert_eq!(status, 202, "{answer}");
    let back = app.finished(job_id(&answer)).await;
    assert_eq!(back["state"], "succeeded", "{back:#}");
    assert_eq!(back["kind"], "rollback");
    assert_eq!(get(&nginx.url).await.unwrap(), (200, page(&first)));
    assert_eq!(current(&host.srv), r1);
    app.stop().await;
}

#[tokio::test]
async fn rolling_stops_at_a_failing_batch_and_rolls_back_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 3);
    let repo = GitRepo::new(dir.path());
    add_web_app(&repo);
    let env = format!(
        "{RESTART}\n{HEALTH}\nstrategy = {{ rolling = {{ batch = 1, max_failures = 0 }} }}"
    );
    let app = TestApp::spawn(
        tempfile::tempdir().unwrap(),
        &config(dir.path(), &repo, &fleet, &env),
    )
    .await;

    let first = deploy(&app, &repo, "v1").await;
    assert_eq!(first["state"], "succeeded", "{first:#}");
    let r1 = release(&first);

    // The next release is unhealthy on the second host only.
    repo.write("unhealthy", fleet.hosts[1].addr());
    let second = deploy(&app, &repo, "v2").await;
    assert_eq!(second["state"], "failed", "{second:#}");
    let error = second["error"].as_str().unwrap();
    let url = format!("http://{}:8000/", fleet.hosts[1].addr());
    assert!(
        error.starts_with(&format!(
            "{}: step `health` failed: health check GET {url} failed: status 503",
            fleet.hosts[1].spec
        )),
        "{error}"
    );
    let rolled: Vec<_> = second["result"]["rolled_back"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(rolled.contains(&fleet.hosts[0].spec.as_str()), "{rolled:?}");
    assert!(rolled.contains(&fleet.hosts[1].spec.as_str()), "{rolled:?}");
    for (i, host) in fleet.hosts.iter().enumerate() {
        assert_eq!(current(&host.srv), r1, "host {i}");
        assert_eq!(serves(&fleet, i).await, r1, "host {i}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unhealthy_canary_rolls_back_and_a_healthy_one_proceeds() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 3);
    let repo = GitRepo::new(dir.path());
    add_web_app(&repo);
    // The canary's checks run on the hosts themselves (curl over SSH).
    let health = HEALTH.replace("retries = 30", "retries = 30, from = \"host\"");
    let env =
        format!("{RESTART}\n{health}\nstrategy = {{ canary = {{ hosts = 1, observe = \"1s\" }} }}");
    let app = TestApp::spawn(
        tempfile::tempdir().unwrap(),
        &config(dir.path(), &repo, &fleet, &env),
    )
    .await;

    let r1 = release(&deploy(&app, &repo, "v1").await);
    repo.write("unhealthy", fleet.hosts[0].addr());
    let bad = deploy(&app, &repo, "v2").await;
    assert_eq!(bad["state"], "failed", "{bad:#}");
    assert_eq!(bad["result"]["host"], fleet.hosts[0].spec.as_str());
    let reason = bad["result"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "health check GET http://{}:8000/ failed: status 503",
            fleet.hosts[0].addr()
        )),
        "{reason}"
    );
    assert_eq!(
        bad["result"]["rolled_back"],
        serde_json::json!([fleet.hosts[0].spec])
    );
    for (i, host) in fleet.hosts.iter().enumerate() {
        assert_eq!(current(&host.srv), r1, "host {i}");
        assert_eq!(serves(&fleet, i).await, r1, "host {i}");
    }
    // The switch steps show only the canary was touched.
    let switched: Vec<_> = bad["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "switch")
        .map(|s| s["host"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        switched.iter().all(|h| *h == fleet.hosts[0].spec),
        "{switched:?}"
    );

    repo.write("unhealthy", "");
    let good = deploy(&app, &repo, "v3").await;
    assert_eq!(good["state"], "succeeded", "{good:#}");
    let r3 = release(&good);
    for (i, host) in fleet.hosts.iter().enumerate() {
        assert_eq!(current(&host.srv), r3, "host {i}");
        assert_eq!(serves(&fleet, i).await, r3, "host {i}");
    }
    app.stop().await;
}

#[tokio::test]
async fn rollback_goes_to_the_previous_release_and_refuses_pruned_ones() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 2);
    let repo = GitRepo::new(dir.path());
    add_web_app(&repo);
    let env = format!("{RESTART}\n{HEALTH}\nkeep_releases = 2");
    let app = TestApp::spawn(
        tempfile::tempdir().unwrap(),
        &config(dir.path(), &repo, &fleet, &env),
    )
    .await;

    let (status, answer) = rollback(&app, serde_json::json!({})).await;
    assert_eq!(
        (status, answer["error"].as_str().unwrap()),
        (400, "nothing was deployed to shop/prod yet")
    );

    let r1 = release(&deploy(&app, &repo, "v1").await);
    let r2 = release(&deploy(&app, &repo, "v2").await);
    let r3 = release(&deploy(&app, &repo, "v3").await);

    let (status, answer) = rollback(&app, serde_json::json!({})).await;
    assert_eq!(status, 202, "{answer}");
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["release_id"], r2.as_str());
    for (i, host) in fleet.hosts.iter().enumerate() {
        assert_eq!(current(&host.srv), r2, "host {i}");
        assert_eq!(serves(&fleet, i).await, r2, "host {i}");
    }

    // r1 was pruned (keep_releases = 2): a clear failure, and nothing moves.
    let (status, answer) = rollback(&app, serde_json::json!({ "to": r1 })).await;
    assert_eq!(status, 202, "{answer}");
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("`verify release` failed: exit code 1"),
        "{error}"
    );
    let tail = job["result"]["log_tail"].to_string();
    assert!(
        tail.contains(&format!("release {r1} is not on this host (pruned?)")),
        "{tail}"
    );
    assert!(tail.contains(&r3), "the kept releases are listed: {tail}");
    for host in &fleet.hosts {
        assert_eq!(current(&host.srv), r2);
    }

    let (status, _) = rollback(&app, serde_json::json!({ "to": "nope" })).await;
    assert_eq!(status, 400);
    // No token, a wrong one of the same length, a longer one: 401, nothing queued.
    let jobs = app.jobs().await.len();
    for bearer in [
        None,
        Some("x".repeat(TOKEN.len())),
        Some(format!("{TOKEN}x")),
    ] {
        let mut req = app
            .http
            .post(format!("{}/api/environments/shop/prod/rollback", app.base))
            .json(&serde_json::json!({}));
        if let Some(bearer) = &bearer {
            req = req.bearer_auth(bearer);
        }
        assert_eq!(
            req.send().await.unwrap().status().as_u16(),
            401,
            "{bearer:?}"
        );
    }
    assert_eq!(app.jobs().await.len(), jobs);
    app.stop().await;
}

//! Ephemeral environments from `demo/*` branches: real sshd, git and nginx (the lifecycle and
//! routing), or the local target where only the bookkeeping is under test.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use slipway::clock::{Clock, SystemClock};

use crate::apps::{add_web_app, page};
use crate::helpers::{
    GitRepo, REPO, ShiftedClock, TestApp, config_head, hostile_branch_names, job_id, push_body,
    run_slipway,
};
use crate::nginx::Nginx;
use crate::slack::{
    BOT_TOKEN, CHANNEL, SIGNING_SECRET, TEAM, command_body, fake_slack, json_answer,
    now as slack_now, post_to, signed,
};
use crate::sshd::Fleet;

const PROXY_PORT: u16 = 8080;

/// GET `http://addr:8080/` as `hostname`, until it answers `status` (nginx applies a reload
/// asynchronously: old workers finish with the old routes) or 5 s passed; the last answer.
async fn via_proxy_until(addr: &str, hostname: &str, status: u16) -> (u16, String) {
    let mut answer = via_proxy(addr, hostname).await;
    for _ in 0..50 {
        if answer.0 == status {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = via_proxy(addr, hostname).await;
    }
    answer
}

/// GET `http://addr:8080/` as `hostname`.
async fn via_proxy(addr: &str, hostname: &str) -> (u16, String) {
    let res = reqwest::Client::new()
        .get(format!("http://{addr}:{PROXY_PORT}/"))
        .header("host", hostname)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn delete_branch(app: &TestApp, delivery: &str, branch: &str) -> (u16, Value) {
    let body = push_body(REPO, &format!("refs/heads/{branch}"), &"0".repeat(40), true);
    app.webhook("push", delivery, &body, None).await
}

async fn environments(app: &TestApp) -> Vec<Value> {
    app.http
        .get(format!("{}/api/ephemeral", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn environment(app: &TestApp, env: &str) -> Option<Value> {
    environments(app)
        .await
        .into_iter()
        .find(|e| e["env"] == env)
}

/// Waits (up to 10 s) until environment `env` (`None`: it does not exist) is as `done` wants.
async fn environment_when(app: &TestApp, env: &str, done: impl Fn(Option<&Value>) -> bool) {
    for _ in 0..100 {
        if done(environment(app, env).await.as_ref()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("environment {env} never got there");
}

async fn wait_until_running(app: &TestApp, id: i64) {
    for _ in 0..200 {
        match app.state(id).await.as_str() {
            "running" => return,
            state => assert_eq!(state, "queued", "job {id}"),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {id} never started");
}

async fn pushed(app: &TestApp, delivery: &str, branch: &str, sha: &str) -> Value {
    let (status, answer) = app.push(delivery, branch, sha).await;
    assert_eq!(status, 202, "{branch}: {answer}");
    app.finished(job_id(&answer)).await
}

/// A template over `fleet` routed by the test's nginx; `route` is the server block template.
fn template(name: &str, branches: &str, fleet: &Fleet, nginx: &Nginx, route: &str) -> String {
    let (check, reload) = nginx.commands();
    format!(
        "[apps.shop.ephemeral.{name}]\nbranches = \"{branches}\"\n\
         hostname = \"{name}-{{slug}}.app.example.test\"\nports = \"21000-21009\"\n\
         hosts = {}\nssh = {}\ndeploy_path = \"/srv/{name}\"\n\
         steps.build = [\"./bin/build\"]\nsteps.after_switch = [\"./bin/app start\"]\n\
         steps.stop = [\"./bin/app stop\"]\n\
         health = {{ path = \"/\", interval = \"100ms\", timeout = \"1s\", retries = 30 }}\n\
         route = {{ file = \"/srv/routes/{{env}}.conf\", template = \"{route}\", check = \"{check}\", reload = \"{reload}\" }}\n",
        fleet.hosts_toml(),
        fleet.ssh_toml(),
    )
}

#[tokio::test]
async fn a_demo_branch_gets_its_own_routed_environment_until_it_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 1);
    let host = &fleet.hosts[0];
    let addr = host.addr().to_owned();
    let nginx = Nginx::with_routes(dir.path(), &addr, PROXY_PORT, &host.srv.join("routes"));
    let repo = GitRepo::new(dir.path());
    add_web_app(&repo);
    let route = format!(
        "server {{ listen {addr}:{PROXY_PORT}; server_name {{hostname}}; \
         location / {{ proxy_pass http://{addr}:{{port}}; }} }}\\n"
    );
    let config = format!(
        "{}[apps.shop]\nrepo = \"acme/shop\"\nclone_url = \"{}\"\n{}{}",
        config_head(dir.path()),
        repo.clone_url(),
        template("demo", "demo/*", &fleet, &nginx, &route),
        template(
            "broken",
            "broken/*",
            &fleet,
            &nginx,
            "server { this is not nginx }"
        ),
    );
    let srv = host.srv.clone();
    let app = TestApp::spawn(dir, &config).await;
    let hostname = "demo-xyz.app.example.test";

    // Before anything: nginx does not know the hostname.
    assert_eq!(via_proxy(&addr, hostname).await.0, 404);

    // First push: the environment is created, deployed and routed.
    let sha1 = repo.commit("first", "demo/xyz");
    let job = pushed(&app, "demo-1", "demo/xyz", &sha1).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["env"], "demo-xyz");
    assert_eq!(job["sha"], sha1.as_str());
    let release1 = job["release_id"].as_str().unwrap().to_owned();
    // The release the hostname serves was built from the pushed commit (bin/build records it).
    let built = |release: &str| {
        std::fs::read_to_string(srv.join(format!("demo/demo-xyz/releases/{release}/BUILD_INFO")))
            .unwrap()
    };
    assert_eq!(built(&release1), format!("{release1}|{sha1}|demo/xyz\n"));
    // The hostname serves the app's page, which names the pushed commit.
    let (status, body) = via_proxy_until(&addr, hostname, 200).await;
    assert_eq!((status, body.as_str()), (200, page(&job).as_str()));
    assert!(body.contains(&sha1), "{body}");
    let env = environment(&app, "demo-xyz").await.expect("recorded");
    assert_eq!(
        (&env["state"], &env["branch"], &env["sha"], &env["hostname"]),
        (
            &Value::from("live"),
            &Value::from("demo/xyz"),
            &Value::from(sha1.as_str()),
            &Value::from(hostname)
        )
    );
    let port = env["port"].as_i64().unwrap();
    assert!((21000..=21009).contains(&port), "{env}");

    // Second push: the same environment (same port) now serves the new commit.
    let sha2 = repo.commit("second", "demo/xyz");
    let job = pushed(&app, "demo-2", "demo/xyz", &sha2).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let release2 = job["release_id"].as_str().unwrap().to_owned();
    assert_eq!(built(&release2), format!("{release2}|{sha2}|demo/xyz\n"));
    let second = page(&job);
    assert_eq!(second, format!("release {release2} of {sha2}\n"));
    assert_eq!(
        via_proxy_until(&addr, hostname, 200).await,
        (200, second.clone())
    );
    let env = environment(&app, "demo-xyz").await.unwrap();
    assert_eq!(
        (env["port"].as_i64(), env["sha"].as_str()),
        (Some(port), Some(sha2.as_str()))
    );

    // A route nginx rejects fails the job; no route file is left and the others keep serving.
    let job = pushed(&app, "broken-1", "broken/x", &sha2).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(job["error"].as_str().unwrap().contains("route"), "{job:#}");
    assert!(!srv.join("routes/broken-x.conf").exists());
    assert_eq!(
        environment(&app, "broken-x").await.unwrap()["state"],
        "failed"
    );
    assert_eq!(via_proxy(&addr, hostname).await, (200, second));

    // Deleting the branch tears the environment down: no route, no directory, port freed.
    let (status, answer) = delete_branch(&app, "demo-3", "demo/xyz").await;
    assert_eq!(status, 202, "{answer}");
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["kind"], "teardown");
    assert_eq!(via_proxy_until(&addr, hostname, 404).await.0, 404);
    assert!(!srv.join("routes/demo-xyz.conf").exists());
    assert!(!srv.join("demo/demo-xyz").exists());
    assert!(environment(&app, "demo-xyz").await.is_none());
    // Its app was stopped by the `stop` phase.
    let direct = reqwest::Client::new()
        .get(format!("http://{addr}:{port}/"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(direct.is_err(), "the app still answers: {direct:?}");

    // The freed port goes to the next environment.
    let job = pushed(&app, "demo-4", "demo/abc", &sha2).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let env = environment(&app, "demo-abc").await.unwrap();
    assert_eq!(env["port"].as_i64(), Some(port));
    assert_eq!(
        via_proxy_until(&addr, "demo-abc.app.example.test", 200)
            .await
            .0,
        200
    );
    app.stop().await;
}

/// A template on the local target whose proxy commands always pass: only the bookkeeping
/// (states, ports, supersede, names) is under test.
fn local_config(dir: &Path, repo: &GitRepo, ports: &str, build: &str) -> String {
    format!(
        "{}[apps.shop]\nrepo = \"acme/shop\"\nclone_url = \"{}\"\n\
         [apps.shop.ephemeral.demo]\nbranches = \"demo/*\"\nhostname = \"demo-{{slug}}.app.example.test\"\n\
         ports = \"{ports}\"\nmax = 50\nhosts = [\"local\"]\ndeploy_path = \"{}/envs\"\nsteps.build = [{build}]\n\
         route = {{ file = \"{}/routes/{{env}}.conf\", check = \"true\", reload = \"true\" }}\n",
        config_head(dir),
        repo.clone_url(),
        dir.display(),
        dir.display(),
    )
}

/// A service on the local target ([`local_config`] with `ports` and `build`, then `extra`;
/// `{dir}` in them is the test's directory) reading `clock`: it, that directory, its repository.
async fn local_app(
    ports: &str,
    build: &str,
    extra: &str,
    clock: Arc<dyn Clock>,
) -> (TestApp, PathBuf, GitRepo) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let repo = GitRepo::new(&root);
    let at_root = |text: &str| text.replace("{dir}", &root.display().to_string());
    let config = local_config(&root, &repo, ports, &at_root(build)) + &at_root(extra);
    let app = TestApp::spawn_with_clock(dir, &config, clock).await;
    (app, root, repo)
}

#[tokio::test]
async fn newer_pushes_supersede_queued_ones_and_exhausted_ports_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let repo = GitRepo::new(&root);
    let config = local_config(&root, &repo, "21100-21100", "\"sleep 2\"");
    let app = TestApp::spawn(dir, &config).await;

    let shas: Vec<String> = (0..3)
        .map(|i| repo.commit(&format!("c{i}"), "demo/a"))
        .collect();
    let mut ids = Vec::new();
    for (i, sha) in shas.iter().enumerate() {
        let (status, answer) = app.push(&format!("a-{i}"), "demo/a", sha).await;
        assert_eq!(status, 202, "{answer}");
        ids.push(job_id(&answer));
        if i == 0 {
            // The first deploy is running (its step sleeps) before the next two arrive.
            wait_until_running(&app, ids[0]).await;
        }
    }
    let first = app.finished(ids[0]).await;
    let second = app.finished(ids[1]).await;
    let third = app.finished(ids[2]).await;
    assert_eq!(first["state"], "succeeded", "{first:#}");
    assert_eq!(second["state"], "superseded", "{second:#}");
    assert_eq!(third["state"], "succeeded", "{third:#}");
    let events = app
        .http
        .get(format!("{}/api/jobs/{}", app.base, ids[1]))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let said = events["events"].to_string();
    assert!(
        said.contains(&format!("superseded by job {}", ids[2])),
        "{said}"
    );
    let env = environment(&app, "demo-a").await.unwrap();
    assert_eq!(env["sha"], shas[2].as_str());
    assert!(root.join("routes/demo-a.conf").exists());

    // One port, already taken: the next environment fails with a reason and leaves nothing.
    let job = pushed(&app, "b-1", "demo/b", &shas[0]).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("every port of 21100-21100 is in use"),
        "{job:#}"
    );
    let env = environment(&app, "demo-b").await.unwrap();
    assert_eq!(
        (env["state"].as_str(), env["port"].as_i64()),
        (Some("failed"), None)
    );
    assert!(!root.join("routes/demo-b.conf").exists());
    assert!(!root.join("envs/demo-b").exists());
    app.stop().await;
}

fn found(dir: &Path, name: &str) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        let path = e.path();
        e.file_name() == name || (path.is_dir() && !path.is_symlink() && found(&path, name))
    })
}

#[tokio::test]
async fn hostile_branch_names_get_safe_environments_and_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let repo = GitRepo::new(&root);
    let sha = repo.commit("first", "main");
    // An injected command would run in the step's directory (or the bot's): look everywhere.
    let c = "pwned";
    let config = local_config(
        &root,
        &repo,
        "21200-21299",
        "\"printf '%s' \\\"$SLIPWAY_REF\\\" > REF\"",
    );
    let app = TestApp::spawn(dir, &config).await;
    let mut names = hostile_branch_names();
    names.extend(
        [
            format!("demo/$(touch {c})"),
            format!("demo/`touch {c}`"),
            format!("demo/';touch {c};'"),
            format!("demo/\";touch {c};\""),
            format!("demo/a$(touch${{IFS}}{c})"),
            "demo/--help".to_owned(),
            "demo/-rf".to_owned(),
            "demo/UPPER_case".to_owned(),
            "demo/a/b/c".to_owned(),
            "demo/%s%n".to_owned(),
            "demo/{a,b}".to_owned(),
        ]
        .into_iter()
        .filter(|n| !n.contains("//")),
    );
    assert!(names.len() >= 20, "{}", names.len());
    for (i, branch) in names.iter().enumerate() {
        let job = pushed(&app, &format!("hostile-{i}"), branch, &sha).await;
        assert_eq!(job["state"], "succeeded", "{branch}: {job:#}");
        let env = job["env"].as_str().unwrap();
        assert!(
            env.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{branch} -> {env}"
        );
        let dir = root.join("envs").join(env);
        let release = job["release_id"].as_str().unwrap();
        let seen = std::fs::read_to_string(dir.join("releases").join(release).join("REF")).unwrap();
        assert_eq!(seen, *branch, "the step saw the branch verbatim");
        assert!(root.join(format!("routes/{env}.conf")).exists());
    }
    assert!(
        !found(&root, c) && !Path::new(c).exists(),
        "a branch name ran a command"
    );
    assert_eq!(environments(&app).await.len(), names.len());
    app.stop().await;
}

#[tokio::test]
async fn cleanup_warns_then_tears_down_idle_environments_but_not_kept_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let repo = GitRepo::new(&root);
    let sha = repo.commit("first", "demo/idle");
    let config = local_config(&root, &repo, "21500-21509", "\"true\"")
        + "ttl = \"7d\"\nwarn_before = \"1d\"\n[api]\ntoken = \"cleanup-test-token\"\n";
    let path = root.join("slipway.toml");
    let app = TestApp::spawn(dir, &config).await;
    for (i, branch) in ["demo/idle", "demo/kept"].iter().enumerate() {
        let job = pushed(&app, &format!("c-{i}"), branch, &sha).await;
        assert_eq!(job["state"], "succeeded", "{job:#}");
    }
    let keep = app
        .http
        .post(format!("{}/api/ephemeral/shop/demo-kept/keep", app.base))
        .bearer_auth("cleanup-test-token")
        .json(&serde_json::json!({ "for": "30d" }))
        .send()
        .await
        .unwrap();
    assert_eq!(keep.status(), 200);
    let later = |days: f64| {
        let at = chrono::Utc::now() + chrono::Duration::milliseconds((days * 86_400_000.0) as i64);
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let cleanup = |args: &[&str]| run_slipway(&path, &[&["cleanup"], args].concat());

    assert_eq!(cleanup(&["--at", &later(1.0)]), "shop: nothing to do\n");
    let warned = cleanup(&["--at", &later(6.5)]);
    assert!(
        warned.starts_with("shop: warn demo-idle: idle for 6days 12h"),
        "{warned}"
    );
    // Warned once: the next pass says nothing more.
    assert_eq!(cleanup(&["--at", &later(6.6)]), "shop: nothing to do\n");
    let dry = cleanup(&["--dry-run", "--at", &later(8.0)]);
    assert!(
        dry.starts_with("shop: would tear down demo-idle: idle for 8days"),
        "{dry}"
    );
    assert_eq!(
        environments(&app).await.len(),
        2,
        "a dry run changes nothing"
    );

    let done = cleanup(&["--at", &later(8.0)]);
    assert!(
        done.starts_with("shop: tear down demo-idle: idle for 8days"),
        "{done}"
    );
    assert!(done.contains("(job "), "{done}");
    environment_when(&app, "demo-idle", |e| e.is_none()).await;
    assert!(!root.join("envs/demo-idle").exists());
    assert_eq!(
        environment(&app, "demo-kept").await.unwrap()["state"],
        "live"
    );
    app.stop().await;
}

#[tokio::test]
async fn cleanup_sweeps_hosts_for_directories_and_routes_of_no_environment() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 2);
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "demo/live");
    let config = format!(
        "{}[apps.shop]\nrepo = \"acme/shop\"\nclone_url = \"{}\"\n\
         [apps.shop.ephemeral.demo]\nbranches = \"demo/*\"\nhostname = \"demo-{{slug}}.app.example.test\"\n\
         ports = \"21600-21609\"\nhosts = {}\nssh = {}\ndeploy_path = \"/srv/demo\"\nsweep = \"remove\"\n\
         route = {{ file = \"/srv/routes/{{env}}.conf\", check = \"true\", reload = \"true\" }}\n",
        config_head(dir.path()),
        repo.clone_url(),
        fleet.hosts_toml(),
        fleet.ssh_toml(),
    );
    let path = dir.path().join("slipway.toml");
    let app = TestApp::spawn(dir, &config).await;
    let job = pushed(&app, "s-1", "demo/live", &sha).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    // Leftovers: on host 0 a directory and a route of environments that do not exist; on both,
    // things slipway did not make.
    let srv0 = &fleet.hosts[0].srv;
    std::fs::create_dir_all(srv0.join("demo/demo-stray/releases")).unwrap();
    std::fs::write(srv0.join("routes/demo-ghost.conf"), "server {}\n").unwrap();
    for host in &fleet.hosts {
        std::fs::create_dir_all(host.srv.join("demo/unrelated")).unwrap();
        std::fs::write(host.srv.join("routes/other.conf"), "").unwrap();
    }
    let cleanup = |args: &[&str]| run_slipway(&path, &[&["cleanup"], args].concat());
    let host0 = &fleet.hosts[0].spec;
    let found = format!(
        "shop: orphan directory /srv/demo/demo-stray on {host0}\n\
         shop: orphan route file /srv/routes/demo-ghost.conf on {host0}\n"
    );
    assert_eq!(
        cleanup(&["--dry-run"]),
        format!("{found}shop: left 2 orphan(s) in place (dry run)\n")
    );
    assert!(srv0.join("demo/demo-stray").exists());
    assert_eq!(cleanup(&[]), format!("{found}shop: removed 2 orphan(s)\n"));
    assert!(!srv0.join("demo/demo-stray").exists());
    assert!(!srv0.join("routes/demo-ghost.conf").exists());
    for host in &fleet.hosts {
        assert!(host.srv.join("demo/demo-live/current").exists());
        assert!(host.srv.join("routes/demo-live.conf").exists());
        assert!(host.srv.join("demo/unrelated").exists());
        assert!(host.srv.join("routes/other.conf").exists());
    }
    assert_eq!(cleanup(&[]), "shop: nothing to do\n");
    app.stop().await;
}

/// GitHub's `delete` event for `branch` (its documented shape; fields we do not read left out).
fn delete_event(branch: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "ref": branch, "ref_type": "branch", "pusher_type": "user",
        "repository": { "full_name": REPO, "fork": false }, "sender": { "login": "octocat" }
    });
    serde_json::to_vec(&body).unwrap()
}

#[tokio::test]
async fn a_deleted_branch_is_torn_down_once_for_its_push_and_delete_events() {
    // While `hold` exists, a build waits for `gate`: it keeps the environment's lane busy, so
    // the teardown waits in the queue when the second event arrives.
    let build = "\"while [ -e {dir}/hold ] && [ ! -e {dir}/gate ]; do sleep 0.05; done\"";
    let (app, root, repo) = local_app("21800-21809", build, "", Arc::new(SystemClock)).await;
    let sha1 = repo.commit("first", "demo/bye");
    assert_eq!(
        pushed(&app, "bye-1", "demo/bye", &sha1).await["state"],
        "succeeded"
    );
    std::fs::write(root.join("hold"), "").unwrap();
    let sha2 = repo.commit("second", "demo/bye");
    let (status, answer) = app.push("bye-2", "demo/bye", &sha2).await;
    assert_eq!(status, 202, "{answer}");
    let deploy = job_id(&answer);
    wait_until_running(&app, deploy).await;

    // The branch is deleted: GitHub sends a push with `deleted: true`, then a `delete` event.
    let (status, answer) = delete_branch(&app, "bye-3", "demo/bye").await;
    assert_eq!(status, 202, "{answer}");
    let teardown = job_id(&answer);
    let (status, answer) = app
        .webhook("delete", "bye-4", &delete_event("demo/bye"), None)
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        (&answer["job_ids"], &answer["duplicate"]),
        (&serde_json::json!([teardown]), &Value::Bool(false)),
        "the second event is answered with the teardown on its way"
    );

    std::fs::write(root.join("gate"), "").unwrap();
    assert_eq!(app.finished(deploy).await["state"], "succeeded");
    let job = app.finished(teardown).await;
    assert_eq!(
        (job["state"].as_str(), job["kind"].as_str()),
        (Some("succeeded"), Some("teardown")),
        "{job:#}"
    );
    assert!(environment(&app, "demo-bye").await.is_none());
    assert!(!root.join("envs/demo-bye").exists());
    // Once it is gone, another delete event has nothing to queue.
    let (status, answer) = app
        .webhook("delete", "bye-5", &delete_event("demo/bye"), None)
        .await;
    assert_eq!((status, &answer["job_ids"]), (202, &serde_json::json!([])));

    let jobs = app.jobs().await;
    let kinds: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| (j["kind"].as_str().unwrap(), j["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds.iter().filter(|(kind, _)| *kind == "teardown").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        kinds.iter().all(|(_, state)| *state == "succeeded"),
        "{kinds:?}"
    );
    app.stop().await;
}

/// Waits (up to 30 s) until `more` cleanup jobs beyond those queued so far have succeeded.
/// None may fail.
async fn more_cleanups_done(app: &TestApp, more: usize) {
    let cleanups = |jobs: Vec<Value>| -> Vec<Value> {
        let cleanups: Vec<Value> = jobs
            .into_iter()
            .filter(|j| j["kind"] == "cleanup")
            .collect();
        for job in &cleanups {
            assert_ne!(job["state"], "failed", "{job:#}");
        }
        cleanups
    };
    let want = cleanups(app.jobs().await).len() + more;
    for _ in 0..300 {
        let done = cleanups(app.jobs().await);
        if done.iter().filter(|j| j["state"] == "succeeded").count() >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{more} more cleanup jobs never succeeded");
}

/// The texts slipway posted to Slack that contain `part`.
async fn posted(fake: &wiremock::MockServer, part: &str) -> Vec<String> {
    let requests = fake.received_requests().await.unwrap();
    requests
        .into_iter()
        .filter(|r| r.url.path() == "/api/chat.postMessage")
        .filter_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).ok()?;
            let text = body["text"].as_str()?.to_owned();
            text.contains(part).then_some(text)
        })
        .collect()
}

/// A fake Slack Web API that accepts every message, and the `[slack]` section pointing at it.
async fn slack_fake() -> (wiremock::MockServer, String) {
    let fake = fake_slack(json_answer(include_str!(
        "../fixtures/slack/chat.postMessage.ok.json"
    )))
    .await;
    let section = format!(
        "[slack]\nsigning_secret = \"{SIGNING_SECRET}\"\nbot_token = \"{BOT_TOKEN}\"\n\
         api_url = \"{}/api\"\nteam_id = \"{TEAM}\"\nchannel = \"{CHANNEL}\"\n",
        fake.uri()
    );
    (fake, section)
}

#[tokio::test]
async fn scheduled_cleanup_tells_the_team_once_before_it_tears_down() {
    let (fake, slack) = slack_fake().await;
    // A cleanup tick every second, run by the service's own scheduler and workers.
    let extra = format!(
        "ttl = \"7d\"\nwarn_before = \"1d\"\n{slack}\
         [[schedules]]\nname = \"cleanup\"\ncron = \"* * * * * *\"\njob = \"cleanup\"\n"
    );
    let clock = Arc::new(ShiftedClock::default());
    let (app, root, repo) = local_app("21900-21909", "\"true\"", &extra, clock.clone()).await;
    let sha = repo.commit("first", "demo/idle");
    assert_eq!(
        pushed(&app, "idle-1", "demo/idle", &sha).await["state"],
        "succeeded"
    );
    more_cleanups_done(&app, 1).await;
    assert_eq!(posted(&fake, "idle for").await, Vec::<String>::new());

    // Six and a half days later: warned, once, however many ticks pass.
    clock.ahead_by_days(6.5);
    environment_when(&app, "demo-idle", |e| {
        e.is_some_and(|e| !e["warned_at"].is_null())
    })
    .await;
    more_cleanups_done(&app, 2).await;
    assert_eq!(
        posted(&fake, "idle for").await,
        [
            "shop/demo-idle (branch demo/idle, demo-idle.app.example.test): idle for 6days 12h; \
          torn down in 12h unless pushed to or kept"
        ]
    );

    // Past the TTL: the next tick queues the teardown, and it runs.
    clock.ahead_by_days(8.0);
    environment_when(&app, "demo-idle", |e| e.is_none()).await;
    assert!(!root.join("envs/demo-idle").exists());
    let jobs = app.jobs().await;
    let teardown = jobs.iter().find(|j| j["kind"] == "teardown").unwrap();
    // The environment is settled as gone before its teardown is recorded as ended.
    let teardown = app.finished(teardown["id"].as_i64().unwrap()).await;
    assert_eq!(
        (&teardown["state"], &teardown["requested_by"]),
        (&Value::from("succeeded"), &Value::from("housekeeping"))
    );
    assert_eq!(posted(&fake, "idle for").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_branch_that_names_no_environment_is_ignored_with_the_reason() {
    let (app, _root, repo) = local_app("22000-22009", "\"true\"", "", Arc::new(SystemClock)).await;
    let sha = repo.commit("first", "demo/___");
    let (status, answer) = app.push("nameless-1", "demo/___", &sha).await;
    assert_eq!(
        (status, answer),
        (
            202,
            serde_json::json!({ "ignored": "branch \"demo/___\" has no letters or digits \
                after \"demo/\" to name an environment after" })
        )
    );
    assert!(app.jobs().await.is_empty());
    assert!(environments(&app).await.is_empty());
    app.stop().await;
}

/// A keep asked for in Slack counts from the clock cleanup compares it with, as the API's does:
/// with the service's clock days ahead of the system's, `keep ... 2h` lasts two hours of it.
#[tokio::test]
async fn a_keep_from_slack_counts_from_the_services_clock() {
    let (_fake, extra) = slack_fake().await;
    let clock = Arc::new(ShiftedClock::default());
    clock.ahead_by_days(10.0);
    let (app, _root, repo) = local_app("22100-22109", "\"true\"", &extra, clock.clone()).await;
    let sha = repo.commit("first", "demo/kept");
    assert_eq!(
        pushed(&app, "kept-1", "demo/kept", &sha).await["state"],
        "succeeded"
    );
    let before = clock.now_ms();
    let request = signed(
        command_body(TEAM, "U0KEEPER", "keep shop/demo-kept 2h"),
        slack_now(),
    );
    let (status, answer) = post_to(&app.http, &app.base, "/slack/commands", &request, &[]).await;
    assert_eq!(status, 200, "{answer}");
    let after = clock.now_ms();
    let kept = environment(&app, "demo-kept").await.unwrap();
    let until = kept["keep_until"]
        .as_i64()
        .unwrap_or_else(|| panic!("{kept} {answer}"));
    let two_hours = 2 * 3_600_000;
    assert!(
        (before + two_hours..=after + two_hours).contains(&until),
        "keep_until {until} is not two hours after the service's clock ({before}..{after}): {answer}"
    );
    app.stop().await;
}

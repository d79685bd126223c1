//! Tags: a GitHub Release (checked against a fake GitHub API) and a deploy of the tag.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::github::{TOKEN, fake_github, received};
use crate::helpers::{GitRepo, REPO, TestApp, config_head, job_id, push_body};

pub fn release(id: u64, tag: &str, prerelease: bool) -> Value {
    let repo = "https://api.github.com/repos/acme/shop";
    json!({
        "url": format!("{repo}/releases/{id}"), "html_url": format!("https://github.com/acme/shop/releases/tag/{tag}"),
        "assets_url": format!("{repo}/releases/{id}/assets"),
        "upload_url": format!("https://uploads.github.com/repos/acme/shop/releases/{id}/assets{{?name,label}}"),
        "tarball_url": null, "zipball_url": null, "id": id, "node_id": "MDc6UmVsZWFzZTE=",
        "tag_name": tag, "target_commitish": "main", "name": tag, "body": "notes", "draft": false,
        "prerelease": prerelease, "created_at": "2026-11-22T10:00:00Z",
        "published_at": "2026-11-22T10:00:00Z", "author": null, "assets": []
    })
}

/// The fake answers: no release exists for any tag until one is created; generated notes.
pub async fn fake_releases(server: &MockServer) {
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(
            r"^/repos/acme/shop/releases/tags/.+$",
        ))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found" })))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/shop/releases/generate-notes"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "name": "generated", "body": "## What's Changed\n* Faster deploys" }),
        ))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/shop/releases"))
        .respond_with(|req: &wiremock::Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let tag = body["tag_name"].as_str().unwrap();
            ResponseTemplate::new(201).set_body_json(release(7, tag, body["prerelease"] == true))
        })
        .mount(server)
        .await;
}

fn config(dir: &std::path::Path, repo: &GitRepo, api: &str) -> String {
    let head = config_head(dir).replace(
        "[github]\n",
        &format!("[github]\napi_url = \"{api}\"\ntoken = \"{TOKEN}\"\n"),
    );
    format!(
        "{head}[apps.shop]\nrepo = \"acme/shop\"\nclone_url = \"{}\"\n\
         [apps.shop.environments.production]\nhosts = [\"local\"]\ndeploy_path = \"{}/production\"\n\
         [apps.shop.releases]\ntags = \"v*\"\ndeploy = \"production\"\nbranch = \"main\"\n",
        repo.clone_url(),
        dir.display(),
    )
}

async fn tag_pushed(app: &TestApp, delivery: &str, tag: &str, sha: &str) -> Value {
    let body = push_body(REPO, &format!("refs/tags/{tag}"), sha, false);
    let (status, answer) = app.webhook("push", delivery, &body, None).await;
    assert_eq!(status, 202, "{answer}");
    app.finished(job_id(&answer)).await
}

#[tokio::test]
async fn a_tag_makes_a_github_release_with_notes_then_deploys_it() {
    let github = fake_github().await;
    fake_releases(&github).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let first = repo.commit("first", "main");
    repo.tag("v1.0.0", &first);
    let second = repo.commit("faster deploys", "main");
    repo.tag("v1.1.0", &second);
    let side = repo.commit("experiment", "experiment");
    repo.tag("v9.9.9", &side);
    let config = config(dir.path(), &repo, &github.uri());
    let app = TestApp::spawn(dir, &config).await;

    let job = tag_pushed(&app, "t-1", "v1.1.0", &second).await;
    assert_eq!(
        (job["kind"].as_str(), job["state"].as_str()),
        (Some("release"), Some("succeeded")),
        "{job:#}"
    );
    // The release job queued the deploy of the tag to production.
    let deploy = app
        .jobs()
        .await
        .into_iter()
        .find(|j| j["kind"] == "deploy")
        .expect("a deploy");
    let deploy = app.finished(deploy["id"].as_i64().unwrap()).await;
    assert_eq!(
        (
            deploy["env"].as_str(),
            deploy["git_ref"].as_str(),
            deploy["sha"].as_str(),
            deploy["state"].as_str()
        ),
        (
            Some("production"),
            Some("v1.1.0"),
            Some(second.as_str()),
            Some("succeeded")
        )
    );

    // Redelivered: nothing new.
    let body = push_body(REPO, "refs/tags/v1.1.0", &second, false);
    let (status, again) = app.webhook("push", "t-1", &body, None).await;
    assert_eq!(
        (status, &again["duplicate"]),
        (200, &Value::Bool(true)),
        "{again}"
    );

    // A pre-release tag; and a tag on a commit main does not contain, refused.
    let rc = tag_pushed(&app, "t-2", "v1.2.0-rc.1", &second).await;
    assert_eq!(rc["state"], "succeeded", "{rc:#}");
    let side_job = tag_pushed(&app, "t-3", "v9.9.9", &side).await;
    assert_eq!(side_job["state"], "failed", "{side_job:#}");
    assert!(
        side_job["error"]
            .as_str()
            .unwrap()
            .contains("not on branch main"),
        "{side_job:#}"
    );
    app.stop().await;

    let releases: Vec<(String, Value)> = received(&github)
        .await
        .into_iter()
        .filter(|(r, _)| r.contains("/releases"))
        .collect();
    let paths: Vec<&str> = releases.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        paths,
        [
            "GET /repos/acme/shop/releases/tags/v1.1.0",
            "POST /repos/acme/shop/releases/generate-notes",
            "POST /repos/acme/shop/releases",
            "GET /repos/acme/shop/releases/tags/v1.2.0-rc.1",
            "POST /repos/acme/shop/releases/generate-notes",
            "POST /repos/acme/shop/releases",
        ]
    );
    assert_eq!(
        releases[1].1,
        json!({ "tag_name": "v1.1.0", "previous_tag_name": "v1.0.0", "target_commitish": second })
    );
    assert_eq!(
        releases[2].1,
        json!({ "tag_name": "v1.1.0", "target_commitish": second, "name": "v1.1.0",
                "body": "## What's Changed\n* Faster deploys", "draft": false, "prerelease": false })
    );
    assert_eq!(releases[5].1["prerelease"], true);
    assert_eq!(releases[4].1["previous_tag_name"], "v1.1.0");
}

#[tokio::test]
async fn an_existing_release_is_not_created_again() {
    let github = fake_github().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/shop/releases/tags/v2.0.0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(release(9, "v2.0.0", false)))
        .mount(&github)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    repo.tag("v2.0.0", &sha);
    let config = config(dir.path(), &repo, &github.uri());
    let app = TestApp::spawn(dir, &config).await;
    let job = tag_pushed(&app, "e-1", "v2.0.0", &sha).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    app.stop().await;
    let posts: Vec<String> = received(&github)
        .await
        .into_iter()
        .map(|(r, _)| r)
        .filter(|r| r.starts_with("POST /repos/acme/shop/releases"))
        .collect();
    assert!(posts.is_empty(), "{posts:?}");
}

#[tokio::test]
async fn a_published_release_is_announced_in_slack_with_its_notes() {
    // One fake answers for both GitHub (releases, deployments) and Slack (`/api/...`).
    let fake = fake_github().await;
    fake_releases(&fake).await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            include_str!("../fixtures/slack/chat.postMessage.ok.json").as_bytes(),
            "application/json",
        ))
        .mount(&fake)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            include_str!("../fixtures/slack/chat.update.ok.json").as_bytes(),
            "application/json",
        ))
        .mount(&fake)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let first = repo.commit("first", "main");
    repo.tag("v1.0.0", &first);
    let second = repo.commit("faster <!channel> deploys", "main");
    repo.tag("v1.1.0", &second);
    let config = config(dir.path(), &repo, &fake.uri()).replace(
        "branch = \"main\"\n",
        "branch = \"main\"\nnotes = \"commits\"\n",
    ) + &format!(
        "[slack]\nsigning_secret = \"slack-signing-secret-for-tests\"\nbot_token = \"xoxb-test\"\n\
             api_url = \"{}/api\"\nteam_id = \"T0TEAM\"\nchannel = \"C0DEPLOYS\"\n",
        fake.uri()
    );
    let app = TestApp::spawn(dir, &config).await;
    let job = tag_pushed(&app, "a-1", "v1.1.0", &second).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let deploy = app
        .jobs()
        .await
        .into_iter()
        .find(|j| j["kind"] == "deploy")
        .unwrap();
    let deploy_id = deploy["id"].as_i64().unwrap();
    app.finished(deploy_id).await;
    app.stop().await;

    let posts: Vec<String> = fake
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/api/chat.postMessage")
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let announced = posts
        .iter()
        .find(|t| t.starts_with(":package:"))
        .unwrap_or_else(|| panic!("no announcement in {posts:#?}"));
    assert_eq!(
        *announced,
        format!(
            ":package: shop release: `v1.1.0` (since v1.0.0) ({})\n\
             https://github.com/acme/shop/releases/tag/v1.1.0\nChanges since v1.0.0:\n\n\
             * faster &lt;!channel&gt; deploys ({})\n\nqueued the deploy of v1.1.0 to production (job {deploy_id})",
            &second[..8],
            &second[..7],
        )
    );
}

/// Issue #6 end to end, on a real sshd host: a tag push publishes the release, its production
/// deploy waits for a deployer's approval in Slack, then deploys; a redelivery adds nothing; and
/// pushes to main while a staging deploy runs leave only the newest one waiting.
#[tokio::test]
async fn a_tag_waits_for_approval_then_deploys_over_ssh_and_main_pushes_supersede() {
    use crate::sshd::Fleet;
    use slipway::slack::signature::sign;
    const SIGNING: &str = "slack-signing-secret-for-tests";
    let fake = fake_github().await;
    fake_releases(&fake).await;
    for method_path in ["/api/chat.postMessage", "/api/chat.update"] {
        let answer = if method_path.ends_with("postMessage") {
            include_str!("../fixtures/slack/chat.postMessage.ok.json")
        } else {
            include_str!("../fixtures/slack/chat.update.ok.json")
        };
        Mock::given(method("POST"))
            .and(path(method_path))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(answer.as_bytes(), "application/json"),
            )
            .mount(&fake)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/actions/response"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&fake)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 1);
    let repo = GitRepo::new(dir.path());
    let first = repo.commit("first", "main");
    repo.tag("v1.0.0", &first);
    let second = repo.commit("faster deploys", "main");
    repo.tag("v1.1.0", &second);
    let head = config_head(dir.path()).replace(
        "[github]\n",
        &format!(
            "[github]\napi_url = \"{}\"\ntoken = \"{TOKEN}\"\n",
            fake.uri()
        ),
    );
    let config = format!(
        "{head}[slack]\nsigning_secret = \"{SIGNING}\"\nbot_token = \"xoxb-test\"\napi_url = \"{api}/api\"\n\
         team_id = \"T0TEAM\"\nchannel = \"C0DEPLOYS\"\n\
         [apps.shop]\nrepo = \"acme/shop\"\nclone_url = \"{clone}\"\n\
         [apps.shop.environments.production]\nhosts = {hosts}\nssh = {ssh}\ndeploy_path = \"/srv/prod\"\n\
         steps = [\"./bin/build\"]\ndeployers = [\"U0CAROL\"]\napprovals = 1\n\
         [apps.shop.environments.staging]\nhosts = {hosts}\nssh = {ssh}\ndeploy_path = \"/srv/staging\"\n\
         steps = [\"sleep 2\"]\n\
         [[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"staging\"\n\
         [apps.shop.releases]\ntags = \"v*\"\ndeploy = \"production\"\nbranch = \"main\"\n",
        api = fake.uri(),
        clone = repo.clone_url(),
        hosts = fleet.hosts_toml(),
        ssh = fleet.ssh_toml(),
    );
    let srv = fleet.hosts[0].srv.clone();
    let app = TestApp::spawn(dir, &config).await;

    let release = tag_pushed(&app, "t-1", "v1.1.0", &second).await;
    assert_eq!(release["state"], "succeeded", "{release:#}");
    let deploy = app
        .jobs()
        .await
        .into_iter()
        .find(|j| j["kind"] == "deploy")
        .unwrap();
    let id = deploy["id"].as_i64().unwrap();
    assert_eq!(deploy["state"], "awaiting_approval", "{deploy:#}");
    // Redelivered: nothing new.
    let body = push_body(REPO, "refs/tags/v1.1.0", &second, false);
    let (status, _) = app.webhook("push", "t-1", &body, None).await;
    assert_eq!(status, 200);
    assert_eq!(app.jobs().await.len(), 2);

    // Carol approves in Slack; the tag deploys to the sshd host.
    let payload = json!({
        "type": "block_actions", "team": { "id": "T0TEAM" },
        "user": { "id": "U0CAROL", "username": "carol", "team_id": "T0TEAM" },
        "response_url": format!("{}/actions/response", fake.uri()),
        "actions": [{ "action_id": "approve", "value": id.to_string(), "type": "button" }]
    });
    let click = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let now = chrono::Utc::now().timestamp();
    let res = app
        .http
        .post(format!("{}/slack/interactions", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", now.to_string())
        .header(
            "x-slack-signature",
            sign(SIGNING.as_bytes(), now, click.as_bytes()),
        )
        .body(click)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let deployed = app.finished(id).await;
    assert_eq!(deployed["state"], "succeeded", "{deployed:#}");
    assert_eq!(deployed["git_ref"], "v1.1.0");
    let current = std::fs::read_link(srv.join("prod/current")).unwrap();
    assert!(
        current.ends_with(deployed["release_id"].as_str().unwrap()),
        "{current:?}"
    );

    // Three pushes to main while the first staging deploy runs: the second never runs.
    let mut ids = Vec::new();
    for i in 0..3 {
        let sha = repo.commit(&format!("main {i}"), "main");
        let (status, answer) = app.push(&format!("m-{i}"), "main", &sha).await;
        assert_eq!(status, 202, "{answer}");
        ids.push(job_id(&answer));
        if i == 0 {
            while app.state(ids[0]).await == "queued" {
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        }
    }
    let states: Vec<Value> = futures::future::join_all(ids.iter().map(|id| app.finished(*id)))
        .await
        .into_iter()
        .map(|j| j["state"].clone())
        .collect();
    assert_eq!(
        states,
        [json!("succeeded"), json!("superseded"), json!("succeeded")]
    );
    app.stop().await;
}

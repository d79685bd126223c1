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

/// GitHub's compare of `base...head` (commit ids) listing `commits` (id, message), each by
/// @octocat; asserted to be asked exactly once.
async fn fake_compare(server: &MockServer, base: &str, head: &str, commits: &[(&str, &str)]) {
    let commits: Vec<Value> = commits
        .iter()
        .map(|(sha, message)| {
            json!({
                "sha": sha, "node_id": "C_1",
                "html_url": format!("https://github.com/acme/shop/commit/{sha}"),
                "commit": { "message": message, "author": { "name": "Octo Cat", "email": "o@example.com", "date": "2026-11-22T10:00:00Z" } },
                "author": { "login": "octocat", "id": 1 }, "committer": null, "parents": []
            })
        })
        .collect();
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/shop/compare/{base}...{head}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "url": format!("https://api.github.com/repos/acme/shop/compare/{base}...{head}"),
            "html_url": format!("https://github.com/acme/shop/compare/{base}...{head}"),
            "status": "ahead", "ahead_by": commits.len(), "behind_by": 0,
            "total_commits": commits.len(), "commits": commits, "files": []
        })))
        .expect(1)
        .named("compare")
        .mount(server)
        .await;
}

/// The bodies of the requests ("POST /path") a fake serving both GitHub and Slack got, each
/// checked to carry the GitHub token.
async fn bodies(server: &MockServer, request: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| format!("{} {}", r.method, r.url.path()) == request)
        .map(|r| {
            let auth = r.headers.get("authorization").unwrap();
            assert_eq!(auth, &format!("Bearer {TOKEN}"), "{request}");
            serde_json::from_slice(&r.body).unwrap()
        })
        .collect()
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

/// A repository whose main has one commit, tagged v2.0.0; the app (releasing to production)
/// and the finished release job of the tag's push; the commit.
async fn release_v2(github: &MockServer) -> (TestApp, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    repo.tag("v2.0.0", &sha);
    let config = config(dir.path(), &repo, &github.uri());
    let app = TestApp::spawn(dir, &config).await;
    let job = tag_pushed(&app, "v2-1", "v2.0.0", &sha).await;
    (app, job, sha)
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
    let (app, job, _) = release_v2(&github).await;
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
    fake_compare(
        &fake,
        &first,
        &second,
        &[(&second, "faster <!channel> deploys\n\nthe details")],
    )
    .await;
    // The app has its own channel: the announcement goes there, not to slack.channel.
    let config = config(dir.path(), &repo, &fake.uri())
        .replace(
            "branch = \"main\"\n",
            "branch = \"main\"\nnotes = \"commits\"\n",
        )
        .replace(
            "[github]\n",
            "[github]\npublic_url = \"https://slipway.example.test\"\n",
        )
        .replace(
            "repo = \"acme/shop\"\n",
            "repo = \"acme/shop\"\nchannel = \"C0SHOP\"\n",
        )
        + &format!(
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

    let posts: Vec<(String, String)> = fake
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/api/chat.postMessage")
        .map(|r| {
            let body = serde_json::from_slice::<Value>(&r.body).unwrap();
            let field = |name: &str| body[name].as_str().unwrap().to_owned();
            (field("channel"), field("text"))
        })
        .collect();
    let announced = posts
        .iter()
        .find(|(_, t)| t.starts_with(":package:"))
        .unwrap_or_else(|| panic!("no announcement in {posts:#?}"));
    assert_eq!(
        *announced,
        (
            "C0SHOP".to_owned(),
            format!(
                ":package: shop release: `v1.1.0` (since v1.0.0) ({})\n\
                 https://github.com/acme/shop/releases/tag/v1.1.0\n\
                 queued the deploy of v1.1.0 to production (job {deploy_id}); its progress: \
                 https://slipway.example.test/api/jobs/{deploy_id}\n\
                 Changes since v1.0.0:\n\n\
                 * faster &lt;!channel&gt; deploys ([`{}`](https://github.com/acme/shop/commit/{second})) by @octocat\n",
                &second[..8],
                &second[..7],
            )
        )
    );
}

/// Issue #6 end to end, on a real sshd host: an annotated tag's push (GitHub names the tag
/// object, not the commit) publishes the release with the commits GitHub's compare lists since
/// the previous one, its production deploy of the tag's commit waits for a deployer's approval
/// in Slack, then deploys; a redelivery adds nothing; and pushes to main while a staging deploy
/// runs leave only the newest one waiting.
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
    let tag_object = crate::helpers::git(&repo.bare, &["rev-parse", "refs/tags/v1.1.0"]);
    let tag_object = tag_object.trim();
    assert_ne!(tag_object, second, "an annotated tag");
    fake_compare(&fake, &first, &second, &[(&second, "faster deploys")]).await;
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
         [apps.shop.releases]\ntags = \"semver\"\ndeploy = \"production\"\nbranch = \"main\"\n\
         notes = \"commits\"\n",
        api = fake.uri(),
        clone = repo.clone_url(),
        hosts = fleet.hosts_toml(),
        ssh = fleet.ssh_toml(),
    );
    let srv = fleet.hosts[0].srv.clone();
    let app = TestApp::spawn(dir, &config).await;

    let release = tag_pushed(&app, "t-1", "v1.1.0", tag_object).await;
    assert_eq!(release["state"], "succeeded", "{release:#}");
    assert_eq!(
        bodies(&fake, "POST /repos/acme/shop/releases").await,
        [json!({
            "tag_name": "v1.1.0", "target_commitish": second, "name": "v1.1.0",
            "body": format!(
                "Changes since v1.0.0:\n\n* faster deploys ([`{}`](https://github.com/acme/shop/commit/{second})) by @octocat\n",
                &second[..7]
            ),
            "draft": false, "prerelease": false
        })]
    );
    let deploy = app
        .jobs()
        .await
        .into_iter()
        .find(|j| j["kind"] == "deploy")
        .unwrap();
    let id = deploy["id"].as_i64().unwrap();
    assert_eq!(
        (deploy["state"].as_str(), deploy["sha"].as_str()),
        (Some("awaiting_approval"), Some(second.as_str())),
        "{deploy:#}"
    );
    // Redelivered: nothing new.
    let body = push_body(REPO, "refs/tags/v1.1.0", tag_object, false);
    let (status, _) = app.webhook("push", "t-1", &body, None).await;
    assert_eq!(status, 200);
    assert_eq!(app.jobs().await.len(), 2);
    let created = bodies(&fake, "POST /repos/acme/shop/releases").await;
    assert_eq!(created.len(), 1, "{created:?}");

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
    // The steps and GitHub's Deployment name the commit, not the tag object.
    let built = std::fs::read_to_string(srv.join("prod/current/BUILD_INFO")).unwrap();
    assert!(built.ends_with(&format!("|{second}|v1.1.0\n")), "{built}");
    let deployments = bodies(&fake, "POST /repos/acme/shop/deployments").await;
    assert_eq!(deployments.len(), 1, "{deployments:?}");
    assert_eq!(deployments[0]["ref"], second);

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

#[tokio::test]
async fn a_release_someone_creates_meanwhile_is_left_as_it_is_and_still_deploys() {
    let github = fake_github().await;
    // The look-up finds none; the create loses a race (422 already_exists); the second
    // look-up finds theirs.
    Mock::given(method("GET"))
        .and(path("/repos/acme/shop/releases/tags/v2.0.0"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found" })))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/shop/releases/tags/v2.0.0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(release(9, "v2.0.0", false)))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/shop/releases/generate-notes"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "name": "v2.0.0", "body": "notes" })),
        )
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/shop/releases"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "message": "Validation Failed",
            "errors": [{ "resource": "Release", "code": "already_exists", "field": "tag_name" }],
            "status": "422"
        })))
        .expect(1)
        .mount(&github)
        .await;
    let (app, job, sha) = release_v2(&github).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert!(
        job.to_string()
            .contains("GitHub Release v2.0.0 was created meanwhile (id 9): left as it is"),
        "{job:#}"
    );
    let deploy = app.jobs().await.into_iter().find(|j| j["kind"] == "deploy");
    assert_eq!(deploy.expect("a deploy")["sha"], sha);
    app.stop().await;
}

#[tokio::test]
async fn deleted_and_unmatched_tags_queue_nothing_and_say_why() {
    let github = fake_github().await;
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let config = config(dir.path(), &repo, &github.uri());
    let app = TestApp::spawn(dir, &config).await;
    let deleted = "tag v1.0.0 was deleted: releases are left as they are";
    let cases = [
        (
            "push",
            push_body(REPO, "refs/tags/v1.0.0", &"0".repeat(40), true),
            deleted,
        ),
        (
            "delete",
            json!({ "ref": "v1.0.0", "ref_type": "tag", "pusher_type": "user",
                    "repository": { "full_name": REPO }, "sender": { "login": "octocat" } })
            .to_string()
            .into_bytes(),
            deleted,
        ),
        (
            "push",
            push_body(REPO, "refs/tags/nightly-1", &sha, false),
            "tag nightly-1 does not match apps.shop.releases.tags",
        ),
    ];
    for (i, (event, body, why)) in cases.iter().enumerate() {
        let (status, answer) = app.webhook(event, &format!("d-{i}"), body, None).await;
        assert_eq!(
            (status, &answer),
            (202, &json!({ "ignored": why })),
            "{event}"
        );
    }
    assert_eq!(app.jobs().await, Vec::<Value>::new());
    app.stop().await;
    assert_eq!(received(&github).await, []);
}

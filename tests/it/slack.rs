//! Slack ChatOps end to end: the service in-process on the local target with a real git
//! repository, signed slash commands and button clicks in the shapes Slack sends, and a fake of
//! Slack's Web API (wiremock) that records what slipway posts.

use std::path::Path;

use serde_json::{Value, json};
use slipway::slack::signature::sign;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{GitRepo, REPO, TestApp, config_head, job_id};

pub(crate) const SIGNING_SECRET: &str = "slack-signing-secret-for-tests";
pub(crate) const BOT_TOKEN: &str = "xoxb-test-bot-token";
pub(crate) const TEAM: &str = "T0TEAM";
pub(crate) const CHANNEL: &str = "C0DEPLOYS";
pub(crate) const ALICE: &str = "U0ALICE";
pub(crate) const BOSS: &str = "U0BOSS";

/// The fake's answer to `chat.postMessage`: its channel and ts are what slipway must store and
/// edit later.
const POSTED_CHANNEL: &str = "C1H9RESGL";
const POSTED_TS: &str = "1503435956.000247";

pub(crate) struct Slack {
    pub(crate) app: TestApp,
    pub(crate) fake: MockServer,
    pub(crate) repo: GitRepo,
    sha: String,
    /// Where the `qa` environment's deploys wait: they finish once this file exists.
    gate: std::path::PathBuf,
}

/// Slack's Web API: the two chat methods answer as Slack does (if the token is the bot's), and
/// response URLs accept anything.
pub(crate) async fn fake_slack(post_message: ResponseTemplate) -> MockServer {
    let fake = MockServer::start().await;
    let bearer = format!("Bearer {BOT_TOKEN}");
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(post_message)
        .mount(&fake)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(json_answer(include_str!(
            "../fixtures/slack/chat.update.ok.json"
        )))
        .mount(&fake)
        .await;
    Mock::given(method("POST"))
        .and(path("/actions/T0TEAM/1/response"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&fake)
        .await;
    fake
}

/// A deployer of `live` (see [`live`]) besides BOSS.
pub(crate) const CAROL: &str = "U0CAROL";

/// `live`, for the config's end: an environment whose deploys wait for the approval of one
/// of its deployers (BOSS and CAROL) other than the one who asked; `more` adds its own keys.
pub(crate) fn live(more: &str) -> String {
    format!(
        "[apps.shop.environments.live]\nhosts = [\"local\"]\ndeploy_path = \"srv/live\"\n\
         steps = [\"./bin/build\"]\ndeployers = [\"{BOSS}\", \"{CAROL}\"]\napprovals = 1\n{more}"
    )
}

pub(crate) fn json_answer(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

/// `shop` with `staging` (deployed from `main`, anyone may deploy), `production` (only BOSS),
/// `qa` (no trigger; its deploys wait for the gate file) and `demo/*` ephemeral environments.
pub(crate) fn config(dir: &Path, repo: &GitRepo, fake: &MockServer) -> String {
    let d = dir.display();
    format!(
        "{head}[slack]\nsigning_secret = \"{SIGNING_SECRET}\"\nbot_token = \"{BOT_TOKEN}\"\n\
         api_url = \"{fake}/api\"\nteam_id = \"{TEAM}\"\nchannel = \"{CHANNEL}\"\n\
         [apps.shop]\nrepo = \"{REPO}\"\nclone_url = \"{clone}\"\n\
         [apps.shop.environments.staging]\nhosts = [\"local\"]\ndeploy_path = \"{d}/srv/staging\"\n\
         steps = [\"./bin/build\"]\nurl = \"https://staging.example.test\"\n\
         [apps.shop.environments.production]\nhosts = [\"local\"]\ndeploy_path = \"{d}/srv/prod\"\n\
         steps = [\"./bin/build\"]\ndeployers = [\"{BOSS}\"]\n\
         [apps.shop.environments.qa]\nhosts = [\"local\"]\ndeploy_path = \"{d}/srv/qa\"\n\
         steps = [\"while [ ! -e {d}/gate ]; do sleep 0.05; done\"]\n\
         [[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"staging\"\n\
         [apps.shop.ephemeral.demo]\nbranches = \"demo/*\"\nhostname = \"demo-{{slug}}.example.test\"\n\
         ports = \"21200-21209\"\nhosts = [\"local\"]\ndeploy_path = \"{d}/envs\"\n\
         steps.build = [\"./bin/build\"]\n\
         route = {{ file = \"{d}/routes/{{env}}.conf\", check = \"true\", reload = \"true\" }}\n",
        head = config_head(dir),
        fake = fake.uri(),
        clone = repo.clone_url(),
    )
}

async fn start(post_message: ResponseTemplate) -> Slack {
    start_with(post_message, "").await
}

/// As [`start`], with `extra` TOML appended to the config (`{dir}` in it: the test's directory).
pub(crate) async fn start_with(post_message: ResponseTemplate, extra: &str) -> Slack {
    start_configured(post_message, |config, dir| {
        config + &extra.replace("{dir}", &dir.display().to_string())
    })
    .await
}

/// As [`start`], with the config as `edit` makes it from [`config`] and the test's directory.
async fn start_configured(
    post_message: ResponseTemplate,
    edit: impl FnOnce(String, &Path) -> String,
) -> Slack {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let fake = fake_slack(post_message).await;
    let gate = dir.path().join("gate");
    let config = edit(config(dir.path(), &repo, &fake), dir.path());
    let app = TestApp::spawn(dir, &config).await;
    Slack {
        app,
        fake,
        repo,
        sha,
        gate,
    }
}

pub(crate) async fn start_ok() -> Slack {
    start_ok_with("").await
}

/// As [`start_ok`], with `extra` TOML appended to the config.
pub(crate) async fn start_ok_with(extra: &str) -> Slack {
    start_with(
        json_answer(include_str!("../fixtures/slack/chat.postMessage.ok.json")),
        extra,
    )
    .await
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A signed POST as Slack sends it; the headers are returned so a test can replay them.
pub(crate) struct Signed {
    pub(crate) timestamp: i64,
    pub(crate) signature: String,
    pub(crate) body: Vec<u8>,
}

pub(crate) fn signed(body: Vec<u8>, timestamp: i64) -> Signed {
    Signed {
        signature: sign(SIGNING_SECRET.as_bytes(), timestamp, &body),
        timestamp,
        body,
    }
}

/// A new `trigger_id`, as Slack gives every invocation: two identical commands typed within the
/// same second are still two requests.
fn trigger_id() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{n}.222.{}", std::process::id())
}

/// Slack's slash command form (every field it sends) for `text`, from `user` of `team`.
pub(crate) fn command_body(team: &str, user: &str, text: &str) -> Vec<u8> {
    let fields: Vec<(String, String)> =
        serde_urlencoded::from_str(include_str!("../fixtures/slack/slash-command.bolt-js.txt"))
            .unwrap();
    let fields: Vec<(String, String)> = fields
        .into_iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "team_id" => team.to_owned(),
                "user_id" => user.to_owned(),
                "user_name" => user.to_lowercase(),
                "command" => "/deploy".to_owned(),
                "text" => text.to_owned(),
                "trigger_id" => trigger_id(),
                _ => v,
            };
            (k, v)
        })
        .collect();
    serde_urlencoded::to_string(fields).unwrap().into_bytes()
}

/// A click on a button with `action_id`/`value`, from `user` of `team`, answered at the fake.
pub(crate) fn click_body(
    fake: &MockServer,
    team: &str,
    user: &str,
    action: &str,
    value: &str,
) -> Vec<u8> {
    let mut payload: Value = serde_json::from_str(include_str!(
        "../fixtures/slack/block_actions.bolt-python.json"
    ))
    .unwrap();
    payload["team"]["id"] = team.into();
    payload["user"]["id"] = user.into();
    payload["user"]["team_id"] = team.into();
    payload["response_url"] = format!("{}/actions/T0TEAM/1/response", fake.uri()).into();
    payload["actions"][0]["action_id"] = action.into();
    payload["actions"][0]["value"] = value.into();
    payload["trigger_id"] = trigger_id().into();
    serde_urlencoded::to_string([("payload", payload.to_string())])
        .unwrap()
        .into_bytes()
}

/// POSTs a signed Slack request to `route` of the service at `base`, with `extra` headers.
pub(crate) async fn post_to(
    http: &reqwest::Client,
    base: &str,
    route: &str,
    request: &Signed,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = http
        .post(format!("{base}{route}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", request.timestamp.to_string())
        .header("x-slack-signature", &request.signature)
        .body(request.body.clone());
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

impl Slack {
    pub(crate) async fn post(
        &self,
        route: &str,
        request: &Signed,
        extra: &[(&str, &str)],
    ) -> (u16, Value) {
        post_to(&self.app.http, &self.app.base, route, request, extra).await
    }

    /// `/deploy TEXT` from `user`: the ephemeral answer's text.
    pub(crate) async fn say(&self, user: &str, text: &str) -> String {
        let (status, answer) = self
            .post(
                "/slack/commands",
                &signed(command_body(TEAM, user, text), now()),
                &[],
            )
            .await;
        assert_eq!(status, 200, "{text}: {answer}");
        assert_eq!(answer["response_type"], "ephemeral", "{answer}");
        answer["text"].as_str().unwrap().to_owned()
    }

    /// The fake's requests to `path`, as JSON bodies.
    pub(crate) async fn sent(&self, to: &str) -> Vec<Value> {
        self.fake
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path() == to)
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }
}

/// The job number in a "Queued #N: ..." answer.
pub(crate) fn queued_id(text: &str) -> i64 {
    text.strip_prefix("Queued #")
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not queued: {text}"))
}

/// A command still at work when `slack.answer_within` is up is answered at once, and its
/// result follows through the command's `response_url`: Slack gives up on an answer after 3 s,
/// and a fetch from GitHub can take longer.
#[tokio::test]
async fn a_late_command_is_answered_at_once_and_its_result_follows_through_the_response_url() {
    // `0s`: every command runs late (a deploy waits at least for its fetch).
    let s = start_configured(
        json_answer(include_str!("../fixtures/slack/chat.postMessage.ok.json")),
        |config, _| config.replacen("[apps.shop]\n", "answer_within = \"0s\"\n[apps.shop]\n", 1),
    )
    .await;
    let response_url = format!("{}/actions/T0TEAM/1/response", s.fake.uri());
    let fields: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&command_body(TEAM, ALICE, "main to staging")).unwrap();
    let fields: Vec<(String, String)> = fields
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "response_url" => (k, response_url.clone()),
            _ => (k, v),
        })
        .collect();
    let body = serde_urlencoded::to_string(&fields).unwrap().into_bytes();
    let (status, answer) = s.post("/slack/commands", &signed(body, now()), &[]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({
            "response_type": "ephemeral",
            "text": ":hourglass_flowing_sand: Working on it: the answer will follow here in a moment.",
        })
    );
    let mut followed = Vec::new();
    for _ in 0..200 {
        followed = s.sent("/actions/T0TEAM/1/response").await;
        if !followed.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let [answer] = &followed[..] else {
        panic!("one follow-up expected, got {followed:?}")
    };
    let sha8 = &s.sha[..8];
    assert_eq!(
        answer["text"],
        format!("Queued #1: deploy `main` (`{sha8}`) → shop/staging (nothing ahead of you)")
    );
    assert_eq!(s.app.finished(1).await["state"], "succeeded");
}

#[tokio::test]
async fn a_signed_deploy_is_answered_run_and_followed_in_the_channel() {
    let s = start_ok().await;
    let sha8 = &s.sha[..8];
    let request = signed(command_body(TEAM, ALICE, "main to staging"), now());
    let (status, answer) = s.post("/slack/commands", &request, &[]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({
            "response_type": "ephemeral",
            "text": format!("Queued #1: deploy `main` (`{sha8}`) → shop/staging (nothing ahead of you)"),
        })
    );
    // Slack's retry of the same request answers the same and queues nothing new.
    let (status, retried) = s
        .post("/slack/commands", &request, &[("x-slack-retry-num", "1")])
        .await;
    assert_eq!((status, &retried["text"]), (200, &answer["text"]));
    assert_eq!(s.app.jobs().await.len(), 1);

    let job = s.app.finished(1).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["requested_by"], "u0alice (U0ALICE)");
    assert_eq!(job["source"], "slack");
    assert_eq!(job["slack_channel"], POSTED_CHANNEL);
    assert_eq!(job["slack_ts"], POSTED_TS);

    // The notifier told Slack before the job was recorded as finished.
    let posted = s.sent("/api/chat.postMessage").await;
    assert_eq!(posted.len(), 1, "{posted:#?}");
    assert_eq!(posted[0]["channel"], CHANNEL);
    let started = format!(
        ":rocket: Deploying `main` (`{sha8}`) to shop/staging — job #1, requested by u0alice (U0ALICE)"
    );
    assert_eq!(posted[0]["text"], started.as_str());
    assert_eq!(posted[0]["blocks"][0]["text"]["text"], started.as_str());
    assert_eq!(posted[0]["blocks"].as_array().unwrap().len(), 1);

    // Edited in place: progress (if the deploy took a second or more), then the end.
    let updated = s.sent("/api/chat.update").await;
    for update in &updated {
        assert_eq!(
            (&update["channel"], &update["ts"]),
            (&json!(POSTED_CHANNEL), &json!(POSTED_TS))
        );
    }
    let update = updated.last().unwrap();
    let text = update["text"].as_str().unwrap();
    let release = job["release_id"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            ":white_check_mark: Deployed `main` (`{sha8}`) to shop/staging in "
        )),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "— job #1, requested by u0alice (U0ALICE)\nrelease {release} ({sha8}) live on local\n\
             https://staging.example.test"
        )),
        "{text}"
    );
    let button = &update["blocks"][1]["elements"][0];
    assert_eq!(button["action_id"], "rollback");
    assert_eq!(button["value"], "shop/staging");
    assert_eq!(button["text"]["text"], "Roll back");
    s.app.stop().await;
}

/// A branch slipway has fetched before is queued by its name, so the answer waits for no
/// fetch, and its deploy ships what the branch is when it starts. A ref not seen yet is looked
/// up at once (a typo is refused then: see `bad_requests_are_refused_and_store_nothing`).
#[tokio::test]
async fn a_branch_seen_before_is_deployed_as_it_is_when_its_deploy_starts() {
    let s = start_ok_with(&live("")).await;
    let sha8 = &s.sha[..8];
    // Nothing fetched yet: `main` is looked up now, and its commit named in the answer. qa's
    // deploys wait for the gate, so this one holds the lane.
    let first = s.say(BOSS, "main to qa").await;
    assert!(
        first.starts_with(&format!("Queued #1: deploy `main` (`{sha8}`) → shop/qa")),
        "{first}"
    );
    s.app.wait_for_state(1, "running").await;
    s.repo.commit("feature", "feature");
    let feature = s.say(BOSS, "feature to qa").await;
    assert!(feature.contains("deploy `feature` ("), "{feature}");

    // Both are known now: queued by name, no commit named yet.
    let later = s.say(ALICE, "main to qa").await;
    assert_eq!(later, "Queued #3: deploy `main` → shop/qa (2 ahead of you)");
    let gone = s.say(ALICE, "feature to qa").await;
    assert_eq!(
        gone,
        "Queued #4: deploy `feature` → shop/qa (3 ahead of you)"
    );
    let queued: Vec<Value> = s.app.jobs().await;
    let third = queued.iter().find(|j| j["id"] == 3).unwrap();
    assert_eq!(
        (&third["state"], &third["sha"]),
        (&json!("queued"), &json!("")),
        "{third:#}"
    );

    // `main` moves on and `feature` goes before either deploy starts.
    let newer = s.repo.commit("second", "main");
    crate::helpers::git(&s.repo.bare, &["update-ref", "-d", "refs/heads/feature"]);
    std::fs::write(&s.gate, "").unwrap();
    assert_eq!(s.app.finished(1).await["sha"], s.sha.as_str());
    let job = s.app.finished(3).await;
    assert_eq!(
        (&job["state"], &job["sha"]),
        (&json!("succeeded"), &json!(newer)),
        "{job:#}"
    );
    let job = s.app.finished(4).await;
    assert_eq!(
        (&job["state"], &job["sha"]),
        (&json!("failed"), &json!("")),
        "{job:#}"
    );
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .starts_with("feature is not a branch, tag or commit of"),
        "{job:#}"
    );
    // The channel heard of each: #3 by the commit it deployed, #4 by the ref alone.
    let mut sent = s.sent("/api/chat.postMessage").await;
    sent.extend(s.sent("/api/chat.update").await);
    let texts: Vec<String> = sent
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    let newer8 = &newer[..8];
    assert!(
        texts.iter().any(|t| t.starts_with(&format!(
            ":white_check_mark: Deployed `main` (`{newer8}`) to shop/qa in "
        ))),
        "{texts:#?}"
    );
    assert!(
        texts.iter().any(
            |t| t.starts_with(":x: Deploy of `feature` to shop/qa failed")
                && t.contains("feature is not a branch, tag or commit")
        ),
        "{texts:#?}"
    );

    // Its Retry deploys the ref again, looked up as that deploy starts.
    let back = s.repo.commit("feature again", "feature");
    let retry = signed(click_body(&s.fake, TEAM, BOSS, "retry", "4"), now());
    assert_eq!(s.post("/slack/interactions", &retry, &[]).await.0, 200);
    let answers = s.sent("/actions/T0TEAM/1/response").await;
    assert_eq!(
        answers.last().unwrap()["text"],
        "Queued #5: deploy `feature` → shop/qa (nothing ahead of you)",
        "{answers:#?}"
    );
    let job = s.app.finished(5).await;
    assert_eq!(
        (&job["state"], &job["sha"]),
        (&json!("succeeded"), &json!(back)),
        "{job:#}"
    );

    // Approvers approve a commit: a job that never found one is not retried where they decide
    // (here: #4's row as if `live` had been its environment, one config change ago).
    use sqlx::Connection;
    let db = s.gate.parent().unwrap().join("slipway.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET env = 'live', lane = 'shop/live' WHERE id = 4")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let retry = signed(click_body(&s.fake, TEAM, BOSS, "retry", "4"), now());
    assert_eq!(s.post("/slack/interactions", &retry, &[]).await.0, 200);
    let answers = s.sent("/actions/T0TEAM/1/response").await;
    assert_eq!(
        answers.last().unwrap()["text"],
        "job #4 never looked its commit up, and the approvers of shop/live approve a commit: \
         deploy feature again",
        "{answers:#?}"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn bad_requests_are_refused_and_store_nothing() {
    let s = start_ok().await;
    let body = command_body(TEAM, ALICE, "main to staging");
    let good = signed(body.clone(), now());
    let cases: Vec<(&str, Signed, u16, &str)> = vec![
        (
            "wrong signature",
            Signed {
                signature: format!("v0={}", "0".repeat(64)),
                ..signed(body.clone(), now())
            },
            401,
            "does not match",
        ),
        (
            "other secret",
            Signed {
                signature: sign(b"another-secret", good.timestamp, &body),
                ..signed(body.clone(), now())
            },
            401,
            "does not match",
        ),
        (
            "body changed after signing",
            Signed {
                body: command_body(TEAM, ALICE, "main to production"),
                ..signed(body.clone(), now())
            },
            401,
            "does not match",
        ),
        (
            "stale timestamp",
            signed(body.clone(), now() - 600),
            401,
            "s ago",
        ),
        (
            "future timestamp",
            signed(body.clone(), now() + 600),
            401,
            "in the future",
        ),
        (
            "other team",
            signed(command_body("T0OTHER", ALICE, "main to staging"), now()),
            403,
            "does not answer requests from this Slack workspace",
        ),
        (
            "not a slash command",
            signed(b"team_id=T0TEAM".to_vec(), now()),
            400,
            "invalid slash command form",
        ),
    ];
    for (what, request, status, reason) in cases {
        let (got, answer) = s.post("/slack/commands", &request, &[]).await;
        assert_eq!(got, status, "{what}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{what}: {answer}");
    }
    // No signature at all.
    let res = s
        .app
        .http
        .post(format!("{}/slack/commands", s.app.base))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);

    // Correctly signed, but not allowed or not possible: answered to the user alone.
    for (user, text, expected) in [
        (
            ALICE,
            "main to production",
            "You are not one of the deployers of shop/production: only they may deploy, roll \
             back or cancel jobs there.",
        ),
        (
            ALICE,
            "rollback production",
            "You are not one of the deployers",
        ),
        (ALICE, "main to stagin", "Did you mean `staging`?"),
        (
            ALICE,
            "qa",
            "No trigger deploys shop/qa, so it has no default ref: say which ref",
        ),
        (
            ALICE,
            "nope to staging",
            "nope is not a branch, tag or commit",
        ),
        (
            BOSS,
            "rollback production",
            "nothing was deployed to shop/production yet",
        ),
        (
            ALICE,
            "lock production deploy freeze",
            "You are not one of the deployers of shop/production",
        ),
        (
            ALICE,
            "keep staging 2h",
            "shop/staging is not an ephemeral environment",
        ),
        (ALICE, "unlock staging", "shop/staging is not locked"),
    ] {
        let answer = s.say(user, text).await;
        assert!(answer.contains(expected), "{text}: {answer}");
    }
    assert!(
        s.app.jobs().await.is_empty(),
        "a refused request stored a job"
    );
    // Nothing reached Slack's API either.
    assert!(s.fake.received_requests().await.unwrap().is_empty());
    s.app.stop().await;
}

#[tokio::test]
async fn status_envs_history_and_cancel() {
    let s = start_ok().await;
    let sha8 = &s.sha[..8];
    let help = s.say(ALICE, "help").await;
    assert!(
        help.starts_with("Usage:") && help.contains("/deploy unlock ENV"),
        "{help}"
    );

    // `staging` alone deploys its trigger's branch.
    let first = s.say(ALICE, "staging").await;
    assert!(first.starts_with("Queued #1: deploy `main`"), "{first}");
    let release = s.app.finished(1).await["release_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // qa's deploys wait for the gate: one runs, the next queues behind it.
    let running = queued_id(&s.say(BOSS, "main to qa").await);
    // `main` is known now, so the deploy looks its commit up as it starts.
    s.app
        .wait_for(running, "looked its commit up", |job| {
            job["sha"] == s.sha.as_str()
        })
        .await;
    let queued_text = s.say(ALICE, "deploy main to qa").await;
    assert!(queued_text.ends_with("(1 ahead of you)"), "{queued_text}");
    let queued = queued_id(&queued_text);

    let status = s.say(ALICE, "status").await;
    let lines: Vec<&str> = status.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "*shop/staging*: release `{}` of `main` (`{sha8}`) by u0alice (U0ALICE), live since <!date^",
            release
        ))),
        "{status}"
    );
    assert!(
        lines.contains(&"*shop/production*: nothing deployed yet"),
        "{status}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "#{running} deploy `main` (`{sha8}`) → shop/qa by u0boss (U0BOSS): running since"
        ))),
        "{status}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("#{queued} deploy `main`"))
                && l.contains(": queued <!date^")),
        "{status}"
    );
    let one = s.say(ALICE, "status staging").await;
    assert!(one.starts_with("*shop/staging*: release"), "{one}");
    assert!(one.ends_with("Nothing running or queued."), "{one}");

    // Cancelling a queued job withdraws it, once (running ones: see below).
    let answer = s.say(ALICE, &format!("cancel #{queued}")).await;
    assert_eq!(
        answer,
        format!("Cancelled #{queued}: deploy `main` → shop/qa")
    );
    let answer = s.say(ALICE, &format!("cancel {queued}")).await;
    assert_eq!(answer, format!("#{queued} has already ended: cancelled."));
    assert_eq!(s.say(ALICE, "cancel 999").await, "There is no job #999.");
    std::fs::write(&s.gate, "").unwrap();
    assert_eq!(s.app.finished(running).await["state"], "succeeded");
    let cancelled = s.app.finished(queued).await;
    assert_eq!(cancelled["state"], "cancelled");
    let events = cancelled["events"].as_array().unwrap();
    assert_eq!(
        events.last().unwrap()["message"],
        "cancelled by u0alice (U0ALICE) via slack"
    );

    let history = s.say(ALICE, "history qa").await;
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines[0], "*shop/qa*, newest first:");
    assert!(
        lines[1].starts_with(&format!("• #{queued} deploy")) && lines[1].contains("— cancelled"),
        "{history}"
    );
    assert!(
        lines[2].starts_with(&format!("• #{running} deploy")) && lines[2].contains("— succeeded"),
        "{history}"
    );
    assert_eq!(
        s.say(ALICE, "history production").await,
        "Nothing was deployed to shop/production yet."
    );

    // An ephemeral environment (made by a push) is listed, deployable by name, and only with
    // its own branch.
    let demo_sha = s.repo.commit("demo", "demo/x");
    let (status, answer) = s.app.push("demo-1", "demo/x", &demo_sha).await;
    assert_eq!(status, 202, "{answer}");
    s.app.finished(job_id(&answer)).await;
    let envs = s.say(ALICE, "envs").await;
    assert!(
        envs.contains("• shop/staging — https://staging.example.test"),
        "{envs}"
    );
    assert!(envs.contains("• shop/production\n"), "{envs}");
    assert!(
        envs.contains(
            "• shop/demo-x — branch `demo/x` — https://demo-x.example.test — live, 6d 23h left"
        ),
        "{envs}"
    );
    let redeploy = s.say(ALICE, "demo-x").await;
    assert!(
        redeploy.starts_with("Queued #") && redeploy.contains("deploy `demo/x`"),
        "{redeploy}"
    );
    assert_eq!(
        s.app.finished(queued_id(&redeploy)).await["state"],
        "succeeded"
    );
    let wrong = s.say(ALICE, "main to demo-x").await;
    assert!(wrong.contains("deploys only that branch"), "{wrong}");
    s.app.stop().await;
}

#[tokio::test]
async fn the_roll_back_button_queues_a_rollback_for_deployers() {
    let s = start_ok().await;
    let first = queued_id(&s.say(ALICE, "main to staging").await);
    let first_release = s.app.finished(first).await["release_id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.repo.commit("second", "main");
    let second = queued_id(&s.say(ALICE, "main to staging").await);
    assert_eq!(s.app.finished(second).await["state"], "succeeded");

    let click = signed(
        click_body(&s.fake, TEAM, ALICE, "rollback", "shop/staging"),
        now(),
    );
    let (status, answer) = s.post("/slack/interactions", &click, &[]).await;
    assert_eq!(status, 200, "{answer}");
    let responses = s.sent("/actions/T0TEAM/1/response").await;
    assert_eq!(responses.len(), 1, "{responses:#?}");
    let text = responses[0]["text"].as_str().unwrap();
    let rollback = queued_id(text);
    assert_eq!(
        text,
        format!(
            "Queued #{rollback}: roll back shop/staging to release `{first_release}` (nothing ahead of you)"
        )
    );
    assert_eq!(responses[0]["replace_original"], false);
    let job = s.app.finished(rollback).await;
    assert_eq!(
        (&job["kind"], &job["state"], &job["target_release"]),
        (
            &json!("rollback"),
            &json!("succeeded"),
            &json!(first_release)
        )
    );
    // A retried click queues nothing new.
    let (status, _) = s
        .post("/slack/interactions", &click, &[("x-slack-retry-num", "1")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.app.jobs().await.len(), 3);
    let responses = s.sent("/actions/T0TEAM/1/response").await;
    assert_eq!(responses.len(), 2);
    assert_eq!(
        responses[1]["text"], responses[0]["text"],
        "the retry answers the same"
    );
    // The rollback's own message has no button: rolling back a rollback is not offered.
    let updates = s.sent("/api/chat.update").await;
    let last = updates.last().unwrap();
    assert!(
        last["text"]
            .as_str()
            .unwrap()
            .starts_with(":white_check_mark: Rolled back shop/staging"),
        "{last}"
    );
    assert_eq!(last["blocks"].as_array().unwrap().len(), 1, "{last}");

    // Not a deployer of production: refused, through the response URL.
    let click = signed(
        click_body(&s.fake, TEAM, ALICE, "rollback", "shop/production"),
        now(),
    );
    assert_eq!(s.post("/slack/interactions", &click, &[]).await.0, 200);
    let responses = s.sent("/actions/T0TEAM/1/response").await;
    assert!(
        responses.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .starts_with("You are not one of the deployers of shop/production"),
        "{responses:#?}"
    );
    // Another workspace, a stale click, or a button we did not make: nothing happens.
    let other = signed(
        click_body(&s.fake, "T0OTHER", ALICE, "rollback", "shop/staging"),
        now(),
    );
    assert_eq!(s.post("/slack/interactions", &other, &[]).await.0, 403);
    let stale = signed(
        click_body(&s.fake, TEAM, ALICE, "rollback", "shop/staging"),
        now() - 301,
    );
    assert_eq!(s.post("/slack/interactions", &stale, &[]).await.0, 401);
    let unknown = signed(click_body(&s.fake, TEAM, ALICE, "a", "click_me_123"), now());
    assert_eq!(s.post("/slack/interactions", &unknown, &[]).await.0, 200);
    assert_eq!(s.app.jobs().await.len(), 3);
    assert_eq!(s.sent("/actions/T0TEAM/1/response").await.len(), 3);
    s.app.stop().await;
}

#[tokio::test]
async fn slack_errors_never_fail_the_deploy() {
    let s = start(json_answer(include_str!(
        "../fixtures/slack/chat.error.channel_not_found.json"
    )))
    .await;
    let id = queued_id(&s.say(ALICE, "main to staging").await);
    let job = s.app.finished(id).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["slack_ts"], Value::Null);
    // Both the start's post and the end's (there was no message to edit) were tried.
    assert_eq!(s.sent("/api/chat.postMessage").await.len(), 2);
    let metrics = s.app.metrics().await;
    assert!(
        metrics.contains("notifier_failures_total{notifier=\"slack\"} 2"),
        "{metrics}"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_lock_refuses_people_and_skips_automatic_deploys_until_unlocked() {
    let s = start_ok().await;
    let locked = s.say(ALICE, "lock staging \"db migration\" for 2h").await;
    assert!(
        locked.starts_with(":lock: shop/staging is locked by")
            && locked.contains(": db migration (until "),
        "{locked}"
    );
    // A person's deploy is refused with the holder and the reason; so is another's lock.
    let refused = s.say(BOSS, "main to staging").await;
    assert!(
        refused.contains("shop/staging is locked by")
            && refused.contains("db migration")
            && refused.ends_with("it must be unlocked first"),
        "{refused}"
    );
    let taken = s.say(BOSS, "lock staging mine").await;
    assert!(
        taken.contains("they (or the expiry) must release it first"),
        "{taken}"
    );
    assert!(
        s.app.jobs().await.is_empty(),
        "a refused deploy stored a job"
    );
    // A push (automatic) is recorded as skipped, with why, and never runs.
    let (status, answer) = s.app.push("lock-1", "main", &s.sha).await;
    assert_eq!(status, 202, "{answer}");
    let skipped = s.app.finished(job_id(&answer)).await;
    assert_eq!(skipped["state"], "skipped", "{skipped:#}");
    assert!(
        skipped["events"]
            .to_string()
            .contains("skipped: shop/staging is locked by"),
        "{skipped:#}"
    );
    assert!(skipped["started_at"].is_null());

    let unlocked = s.say(BOSS, "unlock staging").await;
    assert!(
        unlocked.starts_with(":unlock: shop/staging is unlocked (was held by")
            && unlocked.ends_with(": db migration)"),
        "{unlocked}"
    );
    let queued = s.say(ALICE, "main to staging").await;
    let job = s.app.finished(queued_id(&queued)).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    s.app.stop().await;
}

/// The `n`th answer sent to clicks' response URL (asserting there are `n`).
pub(crate) async fn last_answer(s: &Slack, n: usize) -> String {
    let sent = s.sent("/actions/T0TEAM/1/response").await;
    assert_eq!(sent.len(), n, "{sent:#?}");
    sent[n - 1]["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn production_waits_for_another_deployers_approval() {
    let s = start_ok_with(&live("")).await;
    let click = |user: &str, action: &str, id: i64| {
        signed(
            click_body(&s.fake, TEAM, user, action, &id.to_string()),
            now(),
        )
    };

    let id = queued_id(&s.say(BOSS, "main to live").await);
    // The job waits; the channel is asked, with buttons.
    for _ in 0..100 {
        if !s.sent("/api/chat.postMessage").await.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let asked = s.sent("/api/chat.postMessage").await;
    let text = asked[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(":raised_hand: Approval needed: deploy `main`"),
        "{text}"
    );
    let buttons = asked[0]["blocks"][1]["elements"].to_string();
    assert!(
        buttons.contains("\"action_id\":\"approve\"")
            && buttons.contains(&format!("\"value\":\"{id}\"")),
        "{buttons}"
    );
    let job: Value = s
        .app
        .http
        .get(format!("{}/api/jobs/{id}", s.app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "awaiting_approval");
    assert_eq!(
        s.say(BOSS, &format!("cancel {id}")).await,
        format!(
            "#{id} is awaiting approval: a deployer rejects it with the Reject button instead."
        )
    );

    // Not the requester, not someone outside the deployers.
    s.post("/slack/interactions", &click(BOSS, "approve", id), &[])
        .await;
    assert_eq!(
        last_answer(&s, 1).await,
        format!("You asked for job #{id}: someone else must approve or reject it.")
    );
    s.post("/slack/interactions", &click(ALICE, "approve", id), &[])
        .await;
    assert!(
        last_answer(&s, 2)
            .await
            .starts_with("You are not one of the deployers of shop/live")
    );
    s.post("/slack/interactions", &click(CAROL, "approve", id), &[])
        .await;
    assert_eq!(
        last_answer(&s, 3).await,
        format!(":white_check_mark: You approved job #{id} (shop/live): it is queued.")
    );
    let job = s.app.finished(id).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert!(
        job["events"].to_string().contains("(U0CAROL) (1 of 1)"),
        "{job:#}"
    );

    // A rejection ends the next one.
    let next = queued_id(&s.say(CAROL, "main to live").await);
    s.post("/slack/interactions", &click(BOSS, "reject", next), &[])
        .await;
    assert_eq!(
        last_answer(&s, 4).await,
        format!(":no_entry: You rejected job #{next} (shop/live): it will not run.")
    );
    assert_eq!(s.app.finished(next).await["state"], "rejected");
    s.app.stop().await;
}

#[tokio::test]
async fn pull_request_refs_and_their_commits_cannot_be_deployed() {
    let s = start_ok().await;
    // A fork's commit, reachable on the repository only as GitHub serves pull requests.
    let fork = s.repo.commit("fork's code", "fork-tmp");
    let bare = s.repo.bare.clone();
    crate::helpers::git(&bare, &["update-ref", "refs/pull/1/head", &fork]);
    crate::helpers::git(&bare, &["update-ref", "-d", "refs/heads/fork-tmp"]);
    let by_ref = s.say(ALICE, "pull/1/head to staging").await;
    assert!(
        by_ref.contains("pull/1/head is not a branch, tag or commit"),
        "{by_ref}"
    );
    let by_sha = s.say(ALICE, &format!("{fork} to staging")).await;
    assert!(
        by_sha.contains("is not a branch, tag or commit"),
        "{by_sha}"
    );
    assert!(s.app.jobs().await.is_empty());
    // Branches still deploy.
    let queued = s.say(ALICE, "main to staging").await;
    assert_eq!(
        s.app.finished(queued_id(&queued)).await["state"],
        "succeeded"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_rate_limited_post_is_retried_after_slacks_retry_after() {
    let s = start_ok().await;
    // Slack's first answer to chat.postMessage: 429 with Retry-After: 1.
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_raw(
                    br#"{"ok":false,"error":"ratelimited"}"#.to_vec(),
                    "application/json",
                ),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&s.fake)
        .await;
    let started = std::time::Instant::now();
    let id = queued_id(&s.say(ALICE, "main to staging").await);
    let job = s.app.finished(id).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    // Posted on the second try (a second later), then edited in place: nothing failed.
    assert_eq!(s.sent("/api/chat.postMessage").await.len(), 2);
    assert_eq!(s.sent("/api/chat.update").await.len(), 1);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    let metrics = s.app.metrics().await;
    assert!(
        !metrics.contains("notifier_failures_total{notifier=\"slack\"}"),
        "{metrics}"
    );
    s.app.stop().await;
}

/// Where `current` of `env` points, under the test's directory.
fn current(s: &Slack, env: &str) -> std::path::PathBuf {
    let dir = s.gate.parent().unwrap();
    std::fs::read_link(dir.join("srv").join(env).join("current")).unwrap()
}

#[tokio::test]
async fn cancelling_a_running_deploy_stops_it_before_the_switch() {
    let s = start_ok().await;
    let sha8 = &s.sha[..8];
    // A first deploy of qa goes through the open gate.
    std::fs::write(&s.gate, "").unwrap();
    let first = queued_id(&s.say(BOSS, "main to qa").await);
    let live = s.app.finished(first).await;
    assert_eq!(live["state"], "succeeded", "{live:#}");
    let release = live["release_id"].as_str().unwrap().to_owned();
    assert_eq!(current(&s, "qa"), Path::new("releases").join(&release));

    // The next one waits at the closed gate until it is cancelled.
    std::fs::remove_file(&s.gate).unwrap();
    let running = queued_id(&s.say(BOSS, "main to qa").await);
    // `main` is known now, so the deploy looks its commit up as it starts.
    s.app
        .wait_for(running, "looked its commit up", |job| {
            job["sha"] == s.sha.as_str()
        })
        .await;
    let answer = s.say(ALICE, &format!("cancel {running}")).await;
    assert_eq!(
        answer,
        format!(
            "Stopping #{running}: deploy `main` (`{sha8}`) → shop/qa. It stops before it switches \
             anything (if it is switching already, it finishes); its message in the channel \
             says how it ended."
        )
    );
    let job = s.app.finished(running).await;
    assert_eq!(job["state"], "cancelled", "{job:#}");
    assert_eq!(job["cancel_requested_by"], "u0alice (U0ALICE) via slack");
    let events: Vec<(&str, &str)> = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["state"].as_str().unwrap(), e["message"].as_str().unwrap()))
        .collect();
    assert!(
        events.contains(&(
            "cancel_requested",
            "cancel requested by u0alice (U0ALICE) via slack"
        )),
        "{events:?}"
    );
    assert_eq!(
        events.last().unwrap(),
        &(
            "cancelled",
            "cancelled by u0alice (U0ALICE) via slack while running; nothing was switched"
        )
    );
    // `current` is untouched and the stopped release was removed.
    assert_eq!(current(&s, "qa"), Path::new("releases").join(&release));
    let stopped = job["release_id"].as_str().unwrap();
    let dir = s.gate.parent().unwrap();
    assert!(!dir.join("srv/qa/releases").join(stopped).exists());
    // Its message says so, without buttons; asking again is answered as for any ended job.
    let updated = s.sent("/api/chat.update").await;
    let last = updated.last().unwrap();
    let text = last["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            ":no_entry_sign: Cancelled: deploy `main` (`{sha8}`) → shop/qa in "
        )) && text.ends_with(
            "\ncancelled by u0alice (U0ALICE) via slack while running; nothing was switched"
        ),
        "{text}"
    );
    assert_eq!(last["blocks"].as_array().unwrap().len(), 1);
    assert_eq!(
        s.say(ALICE, &format!("cancel {running}")).await,
        format!("#{running} has already ended: cancelled.")
    );
    s.app.stop().await;
}

/// `broken`: its own channel, ALICE its only deployer, and a build that prints the bot token,
/// a channel ping and a code fence, then fails.
const BROKEN: &str = "[apps.shop.environments.broken]\nhosts = [\"local\"]\n\
    deploy_path = \"{dir}/srv/broken\"\nchannel = \"C0BROKEN\"\ndeployers = [\"U0ALICE\"]\n\
    steps = [\"echo compiling; echo 'token xoxb-test-bot-token <!channel> ```'; exit 3\"]\n";

#[tokio::test]
async fn a_failed_deploy_gets_its_log_in_the_thread_a_dm_and_a_retry_button_once() {
    let s = start_with(
        json_answer(include_str!("../fixtures/slack/chat.postMessage.ok.json")),
        BROKEN,
    )
    .await;
    let (sha, sha8) = (s.sha.clone(), &s.sha[..8]);
    let db = s.gate.parent().unwrap().join("slipway.db");
    let id = queued_id(&s.say(ALICE, "main to broken").await);
    let job = s.app.finished(id).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let posted = s.sent("/api/chat.postMessage").await;
    assert_eq!(posted.len(), 3, "{posted:#?}");
    // The job's message goes to the environment's channel.
    assert_eq!(posted[0]["channel"], "C0BROKEN");
    // The thread reply: the failing step's log, masked and escaped, in a code block.
    let reply = &posted[1];
    assert_eq!(
        (&reply["channel"], &reply["thread_ts"]),
        (&json!(POSTED_CHANNEL), &json!(POSTED_TS))
    );
    let log = reply["text"].as_str().unwrap();
    assert!(
        log.starts_with("Step `echo compiling; echo 'token ****")
            && log.contains(
                "failed; its log:\n```\ncompiling\ntoken **** &lt;!channel&gt; ˋˋˋ\nslipway: "
            )
            && log.ends_with("exit code 3\n```"),
        "{log}"
    );
    // The DM to the requester.
    let dm = &posted[2];
    assert_eq!(dm["channel"], ALICE);
    let text = dm["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            ":x: Your deploy `main` (`{sha8}`) → shop/broken failed (job #{id}): local: step"
        )),
        "{text}"
    );
    assert!(!format!("{posted:?}").contains(BOT_TOKEN));
    // The final message has a Retry button for this job.
    let last = s.sent("/api/chat.update").await.pop().unwrap();
    assert!(
        last["text"].as_str().unwrap().starts_with(&format!(
            ":x: Deploy of `main` (`{sha8}`) to shop/broken failed in "
        )),
        "{last:#}"
    );
    let button = &last["blocks"][1]["elements"][0];
    assert_eq!(
        (&button["action_id"], &button["value"]),
        (&json!("retry"), &json!(id.to_string()))
    );

    // Another attempt of the same job (as after a lost lease, on any replica) edits the same
    // message and sends neither the thread reply nor the DM again.
    let updates = s.sent("/api/chat.update").await.len();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "UPDATE jobs SET state = 'queued', finished_at = NULL, summary = NULL WHERE id = $1",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let again = s.app.finished(id).await;
    assert_eq!(
        (&again["state"], &again["attempt"]),
        (&json!("failed"), &json!(2))
    );
    assert_eq!(s.sent("/api/chat.postMessage").await.len(), 3);
    assert!(s.sent("/api/chat.update").await.len() >= updates + 2);

    // Retry: checked as a deploy is (only broken's deployers), then the same ref and commit.
    let click = |user| {
        signed(
            click_body(&s.fake, TEAM, user, "retry", &id.to_string()),
            now(),
        )
    };
    assert_eq!(
        s.post("/slack/interactions", &click(BOSS), &[]).await.0,
        200
    );
    assert_eq!(
        s.post("/slack/interactions", &click(ALICE), &[]).await.0,
        200
    );
    let answers = s.sent("/actions/T0TEAM/1/response").await;
    assert_eq!(answers.len(), 2, "{answers:#?}");
    assert!(
        answers[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("You are not one of the deployers of shop/broken"),
        "{answers:#?}"
    );
    let retried = queued_id(answers[1]["text"].as_str().unwrap());
    assert_eq!(
        answers[1]["text"],
        format!("Queued #{retried}: deploy `main` (`{sha8}`) → shop/broken (nothing ahead of you)")
    );
    let retry = s.app.finished(retried).await;
    assert_eq!(
        (
            &retry["git_ref"],
            &retry["sha"],
            &retry["requested_by"],
            &retry["source"]
        ),
        (
            &json!("main"),
            &json!(sha),
            &json!("primary-owner (U0ALICE)"),
            &json!("slack")
        )
    );
    assert_eq!(s.app.jobs().await.len(), 2);
    s.app.stop().await;
}

#[tokio::test]
async fn progress_edits_the_message_at_most_once_a_second() {
    let steps = "[apps.shop.environments.slow]\nhosts = [\"local\"]\ndeploy_path = \"{dir}/srv/slow\"\n\
        steps = [\"sleep 0.4\", \"sleep 0.4\", \"sleep 0.4\", \"sleep 0.4\", \"sleep 0.4\", \"sleep 0.4\", \
        \"sleep 0.4\", \"sleep 0.4\"]\n";
    let s = start_with(
        json_answer(include_str!("../fixtures/slack/chat.postMessage.ok.json")),
        steps,
    )
    .await;
    let id = queued_id(&s.say(ALICE, "main to slow").await);
    let job = s.app.finished(id).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let took_ms = job["finished_at"].as_i64().unwrap() - job["started_at"].as_i64().unwrap();
    let updates = s.sent("/api/chat.update").await;
    let texts: Vec<&str> = updates
        .iter()
        .map(|u| u["text"].as_str().unwrap())
        .collect();
    // Eight build steps of 0.4 s in one remote command: progress was shown as they ended (not
    // once per command), never more than once a second after the start's post, and the end is
    // the last edit.
    let (last, progress) = texts.split_last().unwrap();
    assert!(
        last.starts_with(":white_check_mark: Deployed `main`"),
        "{texts:#?}"
    );
    assert!(progress.len() >= 2, "{texts:#?}");
    assert!(
        progress.len() as i64 <= took_ms / 1000,
        "{took_ms} ms: {texts:#?}"
    );
    for text in progress {
        assert!(text.starts_with(":rocket: Deploying `main`"), "{text}");
        assert!(text.contains("\n• `local`: "), "{text}");
    }
    // Steps only move forward.
    let done: Vec<usize> = progress
        .iter()
        .map(|t| {
            let after = t.split("\n• `local`: ").nth(1).unwrap();
            after.split(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(done.windows(2).all(|w| w[0] < w[1]), "{done:?}");
    s.app.stop().await;
}

#[tokio::test]
async fn a_cancel_sent_to_one_replica_stops_the_job_another_runs() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let fake = fake_slack(json_answer(include_str!(
        "../fixtures/slack/chat.postMessage.ok.json"
    )))
    .await;
    let db = crate::helpers::fresh_postgres_database().await;
    let sqlite = format!("sqlite://{}/slipway.db", dir.path().display());
    let runs = config(dir.path(), &repo, &fake).replace(&sqlite, &db);
    // The other replica: its own data directory, the same database, hosts and Slack.
    let answers = runs.replace(
        &format!("data_dir = \"{}/var\"", dir.path().display()),
        &format!("data_dir = \"{}/var\"", other.path().display()),
    );
    assert_ne!(runs, answers);
    let gate = dir.path().join("gate");
    let runner = Slack {
        gate,
        app: TestApp::spawn(dir, &runs).await,
        fake,
        repo,
        sha,
    };
    // The job is claimed before the other replica exists, so this replica runs it.
    let id = queued_id(&runner.say(BOSS, "main to qa").await);
    runner.app.wait_for_state(id, "running").await;
    let answerer = TestApp::spawn(other, &answers).await;
    let cancel = signed(command_body(TEAM, ALICE, &format!("cancel {id}")), now());
    let (status, answer) = post_to(
        &answerer.http,
        &answerer.base,
        "/slack/commands",
        &cancel,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Stopping #{id}:")),
        "{answer}"
    );
    let job = runner.app.finished(id).await;
    assert_eq!(job["state"], "cancelled", "{job:#}");
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["cancel_requested_by"], "u0alice (U0ALICE) via slack");
    answerer.stop().await;
    runner.app.stop().await;
}

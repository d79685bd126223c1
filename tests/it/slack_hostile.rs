//! Slack's edge under hostile or unlucky input: malformed forms, oversized bodies, a request
//! replayed 100 times at once, and a click on an approval that has expired. Uses the service,
//! signatures and Slack fake of `slack.rs`.

use serde_json::Value;

use crate::helpers::log_lines;
use crate::slack::{
    ALICE, BOSS, BOT_TOKEN, CAROL, SIGNING_SECRET, Signed, TEAM, click_body, command_body,
    last_answer, live, now, queued_id, signed, start_ok, start_ok_with,
};

/// Slack's limit in `src/http/slack.rs` (`MAX_BODY`).
const SLACK_MAX_BODY: usize = 1024 * 1024;

#[tokio::test]
async fn hostile_forms_are_answered_and_store_nothing() {
    let s = start_ok().await;
    let with = |extra: &str| {
        let mut body = command_body(TEAM, ALICE, "main to staging");
        body.extend_from_slice(extra.as_bytes());
        body
    };
    // A command padded with a field slipway ignores to `len` bytes.
    let padded = |len: usize| {
        let mut body = with("&pad=");
        body.resize(len, b'x');
        body
    };
    let other_team = {
        let mut body = command_body("T0OTHER", ALICE, "main to staging");
        body.extend_from_slice(format!("&team_id={TEAM}").as_bytes());
        body
    };
    let mut deep = "[".repeat(100_000);
    deep.push_str(&"]".repeat(100_000));
    let deep_click = serde_urlencoded::to_string([("payload", deep)]).unwrap();
    let click = click_body(&s.fake, TEAM, ALICE, "rollback", "shop/staging");
    let mut two_clicks = click.clone();
    two_clicks.push(b'&');
    two_clicks.extend_from_slice(&click);
    // (what, route, body, status, reason)
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "a second text",
            "/slack/commands",
            with("&text=main%20to%20production"),
            400,
            "duplicate field `text`",
        ),
        (
            "a second team_id after another team's",
            "/slack/commands",
            other_team,
            400,
            "duplicate field `team_id`",
        ),
        (
            "two payloads",
            "/slack/interactions",
            two_clicks,
            400,
            "duplicate field `payload`",
        ),
        (
            "100,000 nested arrays as the payload",
            "/slack/interactions",
            deep_click.into_bytes(),
            400,
            "invalid interaction payload",
        ),
        (
            "one byte over 1 MiB",
            "/slack/commands",
            padded(SLACK_MAX_BODY + 1),
            413,
            "",
        ),
    ];
    for (what, route, body, status, reason) in cases {
        let (got, answer) = s.post(route, &signed(body, now()), &[]).await;
        assert_eq!(got, status, "{what}: {answer}");
        let text = answer["error"].as_str().unwrap_or_default();
        assert!(
            text.contains(reason) && !text.contains('\n'),
            "{what}: {answer}"
        );
    }

    // Forged (signed for another body) and not a form: the signature is checked first (401).
    for route in ["/slack/commands", "/slack/interactions"] {
        let forged = Signed {
            body: b"%%%\xff not a form".to_vec(),
            ..signed(b"another body".to_vec(), now())
        };
        let (status, answer) = s.post(route, &forged, &[]).await;
        assert_eq!(status, 401, "{route}: {answer}");
    }

    // Bytes that are not UTF-8, raw or percent-encoded, in the command text: read as U+FFFD
    // (the form decoder is lossy), which names no environment: an answer, no job.
    for text in [&b"text=\xff\xfe"[..], b"text=%FF%FE%20to%20staging"] {
        let mut body = command_body(TEAM, ALICE, "");
        let at = body.windows(6).position(|w| w == b"&text=").unwrap();
        body.splice(at + 1..at + 6, text.iter().copied());
        let (status, answer) = s.post("/slack/commands", &signed(body, now()), &[]).await;
        assert_eq!(status, 200, "{answer}");
        assert!(
            !answer["text"].as_str().unwrap().starts_with("Queued"),
            "{answer}"
        );
    }
    assert!(s.app.jobs().await.is_empty(), "hostile input stored a job");
    assert!(s.sent("/api/chat.postMessage").await.is_empty());

    // A command of exactly 1 MiB is read and queued.
    let (status, answer) = s
        .post(
            "/slack/commands",
            &signed(padded(SLACK_MAX_BODY), now()),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(queued_id(answer["text"].as_str().unwrap()), 1, "{answer}");
    s.app.stop().await;
}

#[tokio::test]
async fn one_slack_request_sent_100_times_at_once_queues_one_job() {
    let s = start_ok().await;
    let request = signed(command_body(TEAM, ALICE, "main to staging"), now());
    let answers: Vec<(u16, Value)> =
        futures::future::join_all((0..100).map(|_| s.post("/slack/commands", &request, &[]))).await;
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        let text = answer["text"].as_str().unwrap();
        assert!(text.starts_with("Queued #1: deploy `main`"), "{text}");
    }
    assert_eq!(s.app.jobs().await.len(), 1);
    assert_eq!(s.app.finished(1).await["state"], "succeeded");
    s.app.stop().await;
}

#[tokio::test]
async fn a_repeated_command_is_answered_from_its_job_without_asking_git() {
    let s = start_ok().await;
    let request = signed(command_body(TEAM, ALICE, "main to staging"), now());
    let (status, first) = s.post("/slack/commands", &request, &[]).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(s.app.finished(1).await["state"], "succeeded");
    // The repository is gone: a new command cannot look up a ref not seen before...
    std::fs::rename(&s.repo.bare, s.repo.bare.with_extension("gone")).unwrap();
    let new = s.say(ALICE, "hotfix to staging").await;
    assert!(
        new.starts_with("fetching ") && new.contains("Could not read from remote"),
        "{new}"
    );
    // ...but the repeat of the first one is answered from the job it queued.
    let (status, again) = s.post("/slack/commands", &request, &[]).await;
    assert_eq!((status, &again), (200, &first));
    assert_eq!(s.app.jobs().await.len(), 1);
    s.app.stop().await;
}

/// Deploy commands looked up when asked (here: to an environment with approvals, whose
/// approvers approve one commit) that queue behind one fetch share the next one, and each still
/// gets what its branch named when it arrived, or newer: never an older commit.
#[tokio::test]
async fn deploy_commands_arriving_together_share_a_fetch_and_see_the_newest_commit() {
    let s = start_ok_with(&live("")).await;
    queued_id(&s.say(ALICE, "main to staging").await);
    let newer = s.repo.commit("second", "main");
    // Four distinct requests (an ignored field differs), so none is a retry of another. (Each
    // job's request for approval is a post to the channel, which Slack allows once a second:
    // the worker posts them one by one.)
    let requests: Vec<Signed> = (0..4)
        .map(|i| {
            let mut body = command_body(TEAM, BOSS, "main to live");
            body.extend_from_slice(format!("&attempt_of_bench={i}").as_bytes());
            signed(body, now())
        })
        .collect();
    let answers = futures::future::join_all(
        requests
            .iter()
            .map(|request| s.post("/slack/commands", request, &[])),
    )
    .await;
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        queued_id(answer["text"].as_str().unwrap());
    }
    let jobs = s.app.jobs().await;
    assert_eq!(jobs.len(), 5, "{jobs:#?}");
    let fresh = jobs.iter().filter(|j| j["sha"] == newer.as_str()).count();
    assert_eq!(
        fresh, 4,
        "every command after the push deploys it: {jobs:#?}"
    );
    // Read from the fetch's ref list: an annotated tag names its commit; a commit id, whole or
    // abbreviated, still resolves through git.
    s.repo.tag("v9.9.9", &newer);
    for text in [
        "v9.9.9 to staging".to_owned(),
        format!("{} to staging", &newer[..10]),
    ] {
        let id = queued_id(&s.say(ALICE, &text).await);
        let job = s
            .app
            .jobs()
            .await
            .into_iter()
            .find(|j| j["id"] == id)
            .unwrap();
        assert_eq!(job["sha"], newer.as_str(), "{text}: {job:#}");
    }
    s.app.stop().await;
}

#[tokio::test]
async fn an_approval_clicked_after_it_expired_is_refused_and_never_runs() {
    let s = start_ok_with(&live("approval_timeout = \"1s\"\n")).await;
    let id = queued_id(&s.say(BOSS, "main to live").await);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let click = click_body(&s.fake, TEAM, CAROL, "approve", &id.to_string());
    let (status, _) = s
        .post("/slack/interactions", &signed(click, now()), &[])
        .await;
    assert_eq!(status, 200);
    let answer = last_answer(&s, 1).await;
    assert!(
        answer == format!("Job #{id} waited too long for approval and expired.")
            || answer.starts_with(&format!(
                "Job #{id} is not waiting for approval: it is expired"
            )),
        "{answer}"
    );
    let job = s.app.finished(id).await;
    assert_eq!(job["state"], "expired", "{job:#}");
    assert!(job["steps"].as_array().is_none_or(Vec::is_empty), "{job:#}");
    s.app.stop().await;
}

#[tokio::test]
async fn secrets_in_a_steps_command_and_output_are_masked_in_slack_and_the_api() {
    // The step's command names the signing secret, so its default name does too.
    let extra = format!(
        "[apps.shop.environments.leaky]\nhosts = [\"local\"]\ndeploy_path = \"srv/leaky\"\n\
         steps = [\"echo {SIGNING_SECRET} {BOT_TOKEN}; exit 3\"]\n"
    );
    let s = start_ok_with(&extra).await;
    // A command's own answer: the text names the "ref", masked.
    let answer = s.say(ALICE, &format!("{SIGNING_SECRET} to staging")).await;
    assert!(
        answer.starts_with("**** is not a branch") && !answer.contains(SIGNING_SECRET),
        "{answer}"
    );
    let id = queued_id(&s.say(ALICE, "main to leaky").await);
    let job = s.app.finished(id).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let step = "echo **** ****; exit 3";
    assert_eq!(
        job["error"],
        format!("local: step `{step}` failed: exit code 3")
    );
    assert!(
        log_lines(&job).contains(&"local: **** ****".to_owned()),
        "{job:#}"
    );
    let record = job.to_string();
    let update = s.sent("/api/chat.update").await;
    let said = format!("{:?}{update:?}", s.sent("/api/chat.postMessage").await);
    assert!(said.contains(step), "{said}");
    for text in [&record, &said] {
        assert!(
            !text.contains(SIGNING_SECRET) && !text.contains(BOT_TOKEN),
            "{text}"
        );
    }
    s.app.stop().await;
}

//! The audit trail in the log: every refusal leaves a line saying who was refused and why, and
//! hostile text stays inside its JSON field (it cannot end the line or forge another field).
//! The real binary, its JSON log on stderr, signed Slack requests and a fake of Slack's API.

use serde_json::Value;

use crate::helpers::{GitRepo, push_to, serve_logging_to, wait_for_job};
use crate::slack::{
    ALICE, BOSS, TEAM, click_body, command_body, config, fake_slack, json_answer, now, post_to,
    signed,
};

const CAROL: &str = "U0CAROL";

#[tokio::test]
async fn refusals_are_logged_with_who_and_why_and_hostile_refs_stay_in_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let fake = fake_slack(json_answer(include_str!(
        "../fixtures/slack/chat.postMessage.ok.json"
    )))
    .await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}\
         [apps.shop.environments.live]\nhosts = [\"local\"]\ndeploy_path = \"srv/live\"\n\
         steps = [\"true\"]\ndeployers = [\"{BOSS}\", \"{CAROL}\"]\napprovals = 1\n\
         [[apps.shop.triggers]]\npush = \"audit/*\"\ndeploy = \"staging\"\n",
        config(dir.path(), &repo, &fake)
    );
    let path = dir.path().join("slipway.toml");
    std::fs::write(&path, text).unwrap();
    let log = dir.path().join("stderr.log");
    let (child, base) = serve_logging_to(&path, &log);
    let http = reqwest::Client::new();
    let command =
        |team: &str, user: &str, text: &str| signed(command_body(team, user, text), now());
    let say = |user: &'static str, text: &'static str| {
        let (http, base) = (&http, &base);
        async move {
            let request = command(TEAM, user, text);
            let (status, answer) = post_to(http, base, "/slack/commands", &request, &[]).await;
            assert_eq!(status, 200, "{text}: {answer}");
            answer["text"].as_str().unwrap().to_owned()
        }
    };

    // A branch name written to forge log fields, deployed.
    let hostile = "audit/x\",\"message\":\"forged\",\"level\":\"ERROR\",\"x\":\"\\";
    let id = push_to(&http, &base, "audit-1", hostile, &sha).await["job_id"]
        .as_i64()
        .unwrap();
    assert_eq!(wait_for_job(&http, &base, id).await["state"], "succeeded");

    // Refused: a non-deployer, another workspace, a locked environment, a self-approval.
    say(ALICE, "main to production").await;
    let other = command("T0OTHER", ALICE, "main to staging");
    let (status, _) = post_to(&http, &base, "/slack/commands", &other, &[]).await;
    assert_eq!(status, 403);
    say(BOSS, "lock staging audit").await;
    say(ALICE, "main to staging").await;
    let queued = say(BOSS, "main to live").await;
    let live: i64 = queued[8..queued.find(':').unwrap()].parse().unwrap();
    let click = signed(
        click_body(&fake, TEAM, BOSS, "approve", &live.to_string()),
        now(),
    );
    let (status, _) = post_to(&http, &base, "/slack/interactions", &click, &[]).await;
    assert_eq!(status, 200);
    drop(child);

    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON line ({e}): {l}")))
        .collect();
    let refused = |user: &str, why: &str| {
        lines.iter().any(|l| {
            l["message"] == "slack request refused"
                && l["slack.user"] == user
                && l["reason"].as_str().is_some_and(|r| r.contains(why))
        })
    };
    assert!(refused(
        ALICE,
        "You are not one of the deployers of shop/production"
    ));
    assert!(refused(ALICE, "shop/staging is locked by"));
    assert!(refused(
        BOSS,
        &format!("You asked for job #{live}: someone else must approve")
    ));
    assert!(lines.iter().any(
        |l| l["message"] == "slack request from another team refused"
            && l["slack.team"] == "T0OTHER"
            && l["slack.user"] == ALICE
    ));
    // The name is one field's value, exactly; it forged nothing.
    assert!(
        lines.iter().any(|l| l["git_ref"] == hostile),
        "no line names the ref"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l["message"] == "forged" || l.get("x").is_some())
    );
}

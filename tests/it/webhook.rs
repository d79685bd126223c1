//! The webhook edge: every bad input gets its answer and stores nothing.

use serde_json::Value;

use crate::helpers::{GitRepo, REPO, SECRET, TestApp, config_head, job_id, push_body};

async fn local_app() -> (TestApp, String) {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let config = format!(
        "{}[apps.shop]\nrepo = \"{REPO}\"\nclone_url = \"{}\"\n\
         [apps.shop.environments.staging]\nhosts = [\"local\"]\ndeploy_path = \"{}/srv/shop\"\n\
         steps = [\"./bin/build\"]\n[[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"staging\"\n",
        config_head(dir.path()),
        repo.clone_url(),
        dir.path().display()
    );
    (TestApp::spawn(dir, &config).await, sha)
}

#[tokio::test]
async fn bad_input_is_answered_and_nothing_is_stored() {
    let (app, sha) = local_app().await;
    let good = push_body(REPO, "refs/heads/main", &sha, false);
    let bad_sig = format!("sha256={}", "0".repeat(64));
    let big = vec![b' '; slipway::http::MAX_BODY + 1];
    // (what, event, body, signature override, status, reason)
    type Case<'a> = (&'a str, &'a str, Vec<u8>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "missing signature",
            "push",
            good.clone(),
            Some(""),
            401,
            "missing x-hub-signature-256",
        ),
        (
            "wrong signature",
            "push",
            good.clone(),
            Some(&bad_sig),
            401,
            "does not match",
        ),
        (
            "sha1 signature",
            "push",
            good.clone(),
            Some("sha1=0000"),
            401,
            "malformed",
        ),
        (
            "not json",
            "push",
            b"not json".to_vec(),
            None,
            400,
            "invalid push payload",
        ),
        (
            "wrong shape",
            "push",
            br#"{"ref": 1}"#.to_vec(),
            None,
            400,
            "invalid push payload",
        ),
        (
            "bad sha",
            "push",
            push_body(REPO, "refs/heads/main", "xyz", false),
            None,
            400,
            "not a full commit id",
        ),
        (
            "unhandled event",
            "issues",
            b"{}".to_vec(),
            None,
            202,
            "event \"issues\" is not handled",
        ),
        (
            "other repo",
            "push",
            push_body("acme/other", "refs/heads/main", &sha, false),
            None,
            202,
            "no app is configured for repository acme/other",
        ),
        (
            "other branch",
            "push",
            push_body(REPO, "refs/heads/feature/x", &sha, false),
            None,
            202,
            "no trigger of app shop matches branch feature/x",
        ),
        (
            "deleted branch",
            "push",
            push_body(REPO, "refs/heads/main", &"0".repeat(40), true),
            None,
            202,
            "branch main was deleted",
        ),
        ("over 25 MiB", "push", big, None, 413, ""),
    ];
    for (what, event, body, sig, status, reason) in cases {
        let (got, answer) = app.webhook(event, &format!("d-{what}"), &body, sig).await;
        assert_eq!(got, status, "{what}: {answer}");
        let text = answer["ignored"]
            .as_str()
            .or(answer["error"].as_str())
            .unwrap_or_default();
        assert!(text.contains(reason), "{what}: {answer}");
        if status == 202 {
            assert!(answer["ignored"].is_string(), "{what}: {answer}");
        } else if status != 413 {
            assert!(answer["error"].is_string(), "{what}: {answer}");
        }
    }
    assert!(app.jobs().await.is_empty(), "bad input stored a job");
    app.stop().await;
}

#[tokio::test]
async fn ping_is_answered() {
    let (app, _) = local_app().await;
    let ping = include_bytes!("../fixtures/github/ping.json");
    let (status, answer) = app.webhook("ping", "ping-1", ping, None).await;
    assert_eq!(status, 200);
    assert_eq!(answer["pong"], true);
    app.stop().await;
}

#[tokio::test]
async fn a_redelivery_answers_200_with_the_same_job_and_enqueues_nothing() {
    let (app, sha) = local_app().await;
    let (status, first) = app.push("same-delivery", "main", &sha).await;
    assert_eq!(status, 202);
    assert_eq!(first["duplicate"], false);
    let id = job_id(&first);
    let again: Vec<(u16, Value)> =
        futures::future::join_all((0..10).map(|_| app.push("same-delivery", "main", &sha))).await;
    for (status, answer) in again {
        assert_eq!(status, 200, "{answer}");
        assert_eq!(job_id(&answer), id);
        assert_eq!(answer["duplicate"], true);
    }
    assert_eq!(app.jobs().await.len(), 1);
    let job = app.finished(id).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    app.stop().await;
}

#[tokio::test]
async fn probes_and_api_answer() {
    let (app, _) = local_app().await;
    for (path, status) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/api/jobs/999", 404),
        ("/api/jobs?state=nope", 400),
    ] {
        let res = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{path}");
        assert!(res.headers().contains_key("x-request-id"), "{path}");
    }
    // The secret never comes back in any answer.
    let (_, answer) = app.webhook("push", "x", b"{}", None).await;
    assert!(!answer.to_string().contains(SECRET));
    app.stop().await;
}

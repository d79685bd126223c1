//! The webhook edge: every bad input gets its answer and stores nothing.

use serde_json::Value;
use slipway::signature::sign_github;

use crate::helpers::{
    GitRepo, REPO, SECRET, TestApp, config_head, fresh_postgres_database, job_id, push_body,
};

async fn local_app() -> (TestApp, String) {
    local_app_on(None).await
}

/// The app on SQLite, or on the PostgreSQL database `postgres`.
async fn local_app_on(postgres: Option<&str>) -> (TestApp, String) {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let mut head = config_head(dir.path());
    if let Some(url) = postgres {
        let sqlite = format!("url = \"sqlite://{}/slipway.db\"", dir.path().display());
        head = head.replace(&sqlite, &format!("url = \"{url}\""));
    }
    let config = format!(
        "{head}[apps.shop]\nrepo = \"{REPO}\"\nclone_url = \"{}\"\n\
         [apps.shop.environments.staging]\nhosts = [\"local\"]\ndeploy_path = \"{}/srv/shop\"\n\
         steps = [\"./bin/build\"]\n[[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"staging\"\n",
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
    // Without `api.token`, the write endpoints are off, whatever token is sent.
    for path in [
        "environments/shop/staging/rollback",
        "ephemeral/shop/demo-x/keep",
    ] {
        let res = app
            .http
            .post(format!("{}/api/{path}", app.base))
            .bearer_auth("any-token-at-all")
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 403, "{path}");
    }
    app.stop().await;
}

/// POSTs `body` signed with the test secret and exactly the `headers` given (repeats allowed).
async fn post_signed(app: &TestApp, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
    let mut req = app
        .http
        .post(format!("{}/webhooks/github", app.base))
        .header("x-hub-signature-256", sign_github(SECRET.as_bytes(), &body));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = req.body(body).send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn hostile_shapes_are_answered_and_nothing_is_stored() {
    let (app, sha) = local_app().await;
    let good = push_body(REPO, "refs/heads/main", &sha, false);
    let mut fork: Value = serde_json::from_slice(&good).unwrap();
    fork["repository"]["fork"] = true.into();
    let fork = serde_json::to_vec(&fork).unwrap();
    // 100,000 levels of arrays, where slipway reads nothing and where it expects an object.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let text = String::from_utf8(good.clone()).unwrap();
    let deep_ignored = text.replacen('{', &format!("{{\"deep\": {deep},"), 1);
    let deep_repository =
        format!(r#"{{"ref": "refs/heads/main", "after": "{sha}", "repository": {deep}}}"#);
    let mut bad_utf8 = text
        .replacen("refs/heads/main", "refs/heads/m\u{1}ain", 1)
        .into_bytes();
    let at = bad_utf8.iter().position(|&b| b == 1).unwrap();
    bad_utf8[at] = 0xff;
    let json = ("content-type", "application/json");
    let push = ("x-github-event", "push");
    let delivery = ("x-github-delivery", "d-1");
    // (what, headers, body, status, reason)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "a push to a fork",
            vec![json, push, delivery],
            fork,
            202,
            "repository acme/shop is a fork",
        ),
        (
            "deep nesting, read field",
            vec![json, push, delivery],
            deep_repository.into_bytes(),
            400,
            "invalid push payload",
        ),
        (
            "not UTF-8 at all",
            vec![json, push, delivery],
            b"\xff\xfe{}".to_vec(),
            400,
            "invalid push payload",
        ),
        (
            "not UTF-8 in the ref",
            vec![json, push, delivery],
            bad_utf8,
            400,
            "invalid push payload",
        ),
        (
            "two events",
            vec![json, push, ("x-github-event", "ping"), delivery],
            good.clone(),
            400,
            "exactly one x-github-event header",
        ),
        (
            "two deliveries",
            vec![json, push, delivery, ("x-github-delivery", "d-2")],
            good.clone(),
            400,
            "exactly one x-github-delivery header",
        ),
        (
            "no delivery",
            vec![json, push],
            good.clone(),
            400,
            "exactly one x-github-delivery header",
        ),
        (
            "a form, not JSON",
            vec![
                ("content-type", "application/x-www-form-urlencoded"),
                push,
                delivery,
            ],
            good.clone(),
            415,
            "application/json",
        ),
    ];
    for (what, headers, body, status, reason) in cases {
        let (got, answer) = post_signed(&app, &headers, body).await;
        assert_eq!(got, status, "{what}: {answer}");
        let text = answer["ignored"]
            .as_str()
            .or(answer["error"].as_str())
            .unwrap_or_default();
        assert!(
            text.contains(reason) && !text.contains('\n'),
            "{what}: {answer}"
        );
    }
    // Forged, with everything else wrong too (not JSON, a text content type, no event, no
    // delivery): the signature is checked first, so the answer is 401, not 400 or 415.
    let res = app
        .http
        .post(format!("{}/webhooks/github", app.base))
        .header("content-type", "text/plain")
        .header(
            "x-hub-signature-256",
            sign_github(SECRET.as_bytes(), b"other"),
        )
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert!(app.jobs().await.is_empty(), "hostile input stored a job");

    // Deep nesting where slipway reads nothing is skipped without recursion: the push is
    // queued. A push of exactly the size limit (padded with JSON whitespace) is read and queued;
    // one byte more is refused unread (413, in `bad_input_is_answered_and_nothing_is_stored`).
    let mut at_limit = good.clone();
    at_limit.resize(slipway::http::MAX_BODY, b' ');
    for (n, body) in [deep_ignored.into_bytes(), at_limit]
        .into_iter()
        .enumerate()
    {
        let delivery = (
            "x-github-delivery",
            if n == 0 { "deep" } else { "at-limit" },
        );
        let (status, answer) = post_signed(&app, &[json, push, delivery], body).await;
        assert_eq!(status, 202, "{answer}");
    }
    assert_eq!(app.jobs().await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn one_delivery_sent_100_times_at_once_queues_one_job_on_both_backends() {
    let postgres = fresh_postgres_database().await;
    for backend in [None, Some(postgres.as_str())] {
        let (app, sha) = local_app_on(backend).await;
        let answers: Vec<(u16, Value)> =
            futures::future::join_all((0..100).map(|_| app.push("one-delivery", "main", &sha)))
                .await;
        let ids: std::collections::BTreeSet<i64> = answers.iter().map(|(_, a)| job_id(a)).collect();
        let created = answers
            .iter()
            .filter(|(s, a)| *s == 202 && a["duplicate"] == false);
        let duplicates = answers
            .iter()
            .filter(|(s, a)| *s == 200 && a["duplicate"] == true);
        assert_eq!(
            (created.count(), duplicates.count()),
            (1, 99),
            "{backend:?}: {answers:?}"
        );
        assert_eq!(ids.len(), 1, "{backend:?}: {ids:?}");
        assert_eq!(app.jobs().await.len(), 1, "{backend:?}");
        let job = app.finished(*ids.first().unwrap()).await;
        assert_eq!(job["state"], "succeeded", "{backend:?}: {job:#}");
        app.stop().await;
    }
}

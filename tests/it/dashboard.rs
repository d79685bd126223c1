//! The web dashboard in a real headless Chromium (tests/it/browser.rs) against the real service:
//! logging in, an environment a real deploy made live, a job's log lines arriving over SSE while
//! it runs on a real sshd host, locks with hostile text, and refused actions (no session, a
//! wrong CSRF token, not a deployer, a read-only dashboard). Each browser test saves screenshots
//! under `$CARGO_TARGET_TMPDIR/dashboard-screenshots/`.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::helpers::{GitRepo, REPO, TestApp, config_head, hostile_branch_names, job_id};
use crate::sshd::Fleet;

const ALICE_TOKEN: &str = "alice-dashboard-token-0123";
const BOB_TOKEN: &str = "bob-dashboard-token-456789";

const USERS: &str = "[dashboard]\nusers = [\
    { name = \"alice\", slack_user = \"U0ALICE\", token = \"alice-dashboard-token-0123\" },\
    { name = \"bob\", slack_user = \"U0BOB\", token = \"bob-dashboard-token-456789\" }]\n";

/// `shop` with `staging` (deployed from `main`, `hosts`/`steps` as given, anyone may act) and
/// `production` (only alice may act), on the local target unless `staging` says otherwise.
fn config(dir: &Path, repo: &GitRepo, staging: &str, users: bool) -> String {
    let d = dir.display();
    format!(
        "{head}{users}[apps.shop]\nrepo = \"{REPO}\"\nclone_url = \"{clone}\"\n\
         [apps.shop.environments.staging]\n{staging}\nurl = \"https://staging.example.test\"\n\
         [apps.shop.environments.production]\nhosts = [\"local\"]\ndeploy_path = \"{d}/srv/prod\"\n\
         steps = [\"./bin/build\"]\ndeployers = [\"U0ALICE\"]\n\
         [[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"staging\"\n",
        head = config_head(dir),
        users = if users { USERS } else { "" },
        clone = repo.clone_url(),
    )
}

fn local_staging(dir: &Path) -> String {
    format!(
        "hosts = [\"local\"]\ndeploy_path = \"{}/srv/staging\"\nsteps = [\"./bin/build\"]",
        dir.display()
    )
}

/// Logs `browser` in with `token` through the login form; it lands on the environments page.
async fn log_in(browser: &Browser, base: &str, token: &str) {
    browser.goto(&format!("{base}/ui")).await;
    assert_eq!(
        browser.url().await,
        format!("{base}/ui/login"),
        "pages need a login"
    );
    browser.type_into("input[name=token]", token).await;
    browser.click("form[action='/ui/login'] button").await;
    browser
        .wait_for_text("nav .who", |t| t.contains("Logged in as"))
        .await;
    assert_eq!(browser.url().await, format!("{base}/ui"));
}

#[tokio::test]
async fn the_environments_page_lists_a_deployed_environment() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let config = config(dir.path(), &repo, &local_staging(dir.path()), true);
    let app = TestApp::spawn(dir, &config).await;
    let (status, answer) = app.push("dash-1", "main", &sha).await;
    assert_eq!(status, 202, "{answer}");
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let release = job["release_id"].as_str().unwrap();

    let browser = Browser::start().await;
    browser.goto(&format!("{}/ui/login", app.base)).await;
    browser.screenshot("login").await;
    browser
        .type_into("input[name=token]", BOB_TOKEN.trim_end_matches('9'))
        .await;
    browser.click("form[action='/ui/login'] button").await;
    browser
        .wait_for_text("main", |t| t.contains("That token is not valid."))
        .await;
    browser.screenshot("login-refused").await;
    log_in(&browser, &app.base, ALICE_TOKEN).await;
    let row = browser.text("#env-shop-staging").await;
    for expected in [
        "shop/staging",
        release,
        &sha[..8],
        "main",
        "https://staging.example.test",
        &format!("job #{}", job["id"]),
    ] {
        assert!(row.contains(expected), "{expected:?} not in {row:?}");
    }
    // One release so far: nothing to roll back to, so no button.
    let rollback = "#env-shop-staging form[action$='/rollback']";
    assert!(browser.find(rollback).await.is_none());
    let production = browser.text("#env-shop-production").await;
    assert!(production.contains("nothing deployed yet"), "{production}");
    browser.screenshot("environments").await;

    // A lock through the page, with a reason that would be markup if it were not escaped.
    let hostile = "<img src=x onerror=alert(1)> freeze";
    browser
        .type_into("#env-shop-staging input[name=reason]", hostile)
        .await;
    browser
        .type_into("#env-shop-staging input[name=for]", "2h")
        .await;
    browser
        .click("#env-shop-staging form[action$='/lock'] button")
        .await;
    let row = browser
        .wait_for_text("#env-shop-staging", |t| t.contains("freeze"))
        .await;
    assert!(
        row.contains(&format!("alice (U0ALICE): {hostile}")),
        "{row}"
    );
    assert!(browser.find("#env-shop-staging img").await.is_none());
    assert!(
        browser
            .find("#env-shop-staging form[action$='/unlock']")
            .await
            .is_some()
    );
    browser.screenshot("environments-locked").await;

    // The lock holds for the service, not only on the page: a push is skipped.
    let sha2 = repo.commit("second", "main");
    let (_, answer) = app.push("dash-2", "main", &sha2).await;
    assert_eq!(app.finished(job_id(&answer)).await["state"], "skipped");
    app.stop().await;
}

#[tokio::test]
async fn a_job_page_shows_log_lines_while_the_deploy_runs() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 1);
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let (gate1, gate2) = (dir.path().join("gate1"), dir.path().join("gate2"));
    let step = format!(
        "echo first-line; while [ ! -e {} ]; do sleep 0.05; done; echo second-line; \
         while [ ! -e {} ]; do sleep 0.05; done; echo last-line",
        gate1.display(),
        gate2.display()
    );
    let staging = format!(
        "hosts = {}\nssh = {}\ndeploy_path = \"/srv/shop\"\nsteps = [{{ run = {step:?}, name = \"gated\" }}]",
        fleet.hosts_toml(),
        fleet.ssh_toml()
    );
    let config = config(dir.path(), &repo, &staging, true);
    let app = TestApp::spawn(dir, &config).await;
    let (_, answer) = app.push("live-1", "main", &sha).await;
    let id = job_id(&answer);
    let api = format!("{}/api/jobs/{id}", app.base);
    let job_now = || async {
        app.http
            .get(&api)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let mut waited = 0;
    while !job_now().await["log"].to_string().contains("first-line") {
        waited += 1;
        assert!(waited < 300, "the step never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let browser = Browser::start().await;
    log_in(&browser, &app.base, ALICE_TOKEN).await;
    browser.goto(&format!("{}/ui/jobs/{id}", app.base)).await;
    let log = browser.text("#log").await;
    assert!(
        log.contains("first-line") && !log.contains("second-line"),
        "{log}"
    );
    browser.wait_for_text("#live", |t| t == "live").await;
    // Marks this page: a reload would forget it, so a line that appears while it is still set
    // came over the live stream.
    browser.script("window.slipwayMark = 42;", json!([])).await;

    std::fs::write(&gate1, "").unwrap();
    let released = std::time::Instant::now();
    let log = browser
        .wait_for_text("#log", |t| t.contains("second-line"))
        .await;
    // Measured, not asserted (machine-dependent): the step's poll of the gate, the journal's
    // batching, the stream's poll and this test's 100 ms polling of the page.
    println!(
        "a new log line was on the page {} ms after its step was released",
        released.elapsed().as_millis()
    );
    assert!(!log.contains("last-line"), "{log}");
    assert_eq!(
        browser
            .script("return window.slipwayMark;", json!([]))
            .await,
        42,
        "the page reloaded instead of streaming"
    );
    assert_eq!(job_now().await["state"], "running");
    assert!(browser.text("#state").await.contains("running"));
    browser.screenshot("job-live").await;

    std::fs::write(&gate2, "").unwrap();
    // At the end the stream says so and the page reloads with the outcome and the step table.
    browser
        .wait_for_text("#state", |t| t.contains("succeeded"))
        .await;
    let log = browser.text("#log").await;
    let order: Vec<_> = ["first-line", "second-line", "last-line"]
        .iter()
        .map(|l| log.find(l).unwrap_or_else(|| panic!("{l} not in {log}")))
        .collect();
    assert!(order.is_sorted(), "{log}");
    assert_eq!(log.matches("second-line").count(), 1, "{log}");
    let steps = browser.text("#steps").await;
    assert!(steps.contains("gated") && steps.contains("ok"), "{steps}");
    browser.screenshot("job-finished").await;
    app.stop().await;
}

#[tokio::test]
async fn hostile_branch_names_are_shown_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    // Pushes of demo/* deploy staging; eph/* branches get their own ephemeral environment.
    let ephemeral = format!(
        "[apps.shop.ephemeral.eph]\nbranches = \"eph/*\"\nhostname = \"eph-{{slug}}.example.test\"\n\
         ports = \"21400-21409\"\nhosts = [\"local\"]\ndeploy_path = \"{d}/envs\"\n\
         steps.build = [\"./bin/build\"]\nttl = \"3d\"\n\
         route = {{ file = \"{d}/routes/{{env}}.conf\", check = \"true\", reload = \"true\" }}\n",
        d = dir.path().display()
    );
    let config = config(dir.path(), &repo, &local_staging(dir.path()), true)
        .replace("push = \"main\"", "push = \"demo/*\"")
        + &ephemeral;
    let app = TestApp::spawn(dir, &config).await;
    let mut names = hostile_branch_names();
    names.push("demo/<img/src=x/onerror=window.pwned=1>".into());
    names.push("demo/</td></tr><script>window.pwned=1</script>".into());
    names.push("eph/<img/src=x/onerror=window.pwned=1>".into());
    names.push("eph/$(id)".into());
    let mut ids = Vec::new();
    for (i, branch) in names.iter().enumerate() {
        let (status, answer) = app.push(&format!("hostile-{i}"), branch, &sha).await;
        assert_eq!(status, 202, "{branch}: {answer}");
        ids.push(job_id(&answer));
    }
    for id in &ids {
        app.finished(*id).await;
    }

    let browser = Browser::start().await;
    log_in(&browser, &app.base, ALICE_TOKEN).await;
    let no_injection = "return [document.querySelectorAll('img').length, \
        document.querySelectorAll('script').length, window.pwned === undefined];";
    let staging = browser.text("#env-shop-staging").await;
    assert!(staging.contains(&names[names.len() - 3]), "{staging}");
    let envs = browser.text("table.envs").await;
    for branch in &names[names.len() - 2..] {
        let shown = format!("branch {branch}, live");
        assert!(envs.contains(&shown), "{shown:?} not in {envs}");
    }
    assert!(envs.contains("2d 23h left"), "{envs}");
    browser.screenshot("environments-ephemeral").await;
    assert_eq!(
        browser.script(no_injection, json!([])).await,
        json!([0, 1, true])
    );
    browser.goto(&format!("{}/ui/jobs", app.base)).await;
    let listed = browser.text("table.jobs").await;
    for branch in &names {
        assert!(
            listed.contains(branch.as_str()),
            "{branch:?} not in {listed}"
        );
    }
    assert_eq!(
        browser.script(no_injection, json!([])).await,
        json!([0, 1, true])
    );
    browser.screenshot("jobs").await;
    browser
        .goto(&format!("{}/ui/jobs/{}", app.base, ids.last().unwrap()))
        .await;
    assert!(
        browser
            .text("dl.facts")
            .await
            .contains(names.last().unwrap())
    );
    assert_eq!(
        browser.script(no_injection, json!([])).await,
        json!([0, 1, true])
    );
    browser.goto(&format!("{}/ui/audit", app.base)).await;
    let audit = browser.text("table.audit").await;
    assert!(audit.contains(&format!("deploy {} (", names[0])), "{audit}");
    assert_eq!(
        browser.script(no_injection, json!([])).await,
        json!([0, 1, true])
    );
    browser.screenshot("audit").await;
    // The filter form keeps what was typed, escaped too.
    let who = "\"><script>window.pwned=1</script>";
    browser
        .goto(&format!(
            "{}/ui/jobs?who={}",
            app.base,
            serde_urlencoded::to_string([("", who)])
                .unwrap()
                .trim_start_matches('=')
        ))
        .await;
    assert_eq!(
        browser.script(no_injection, json!([])).await,
        json!([0, 1, true])
    );
    assert!(browser.text("main").await.contains("No jobs match."));
    app.stop().await;
}

/// The session cookie of a login with `token`, as `name=value`.
async fn session(http: &reqwest::Client, base: &str, token: &str) -> String {
    let res = http
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("token", token)]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

/// The page at `path` with `cookie`, and the CSRF token its forms carry.
async fn page(http: &reqwest::Client, base: &str, path: &str, cookie: &str) -> (String, String) {
    let html = http
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token in {html}"))
        .to_owned();
    (html, csrf)
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, String) {
    let mut req = http
        .post(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap());
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn an_unauthenticated_action_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let staging = local_staging(dir.path());
    let config = config(dir.path(), &repo, &staging, true);
    let app = TestApp::spawn(dir, &config).await;
    let (_, answer) = app.push("refuse-1", "main", &sha).await;
    assert_eq!(app.finished(job_id(&answer)).await["state"], "succeeded");

    // In the browser, without logging in: a form posted to an action gets the refusal page.
    let browser = Browser::start().await;
    browser.goto(&format!("{}/ui/login", app.base)).await;
    browser
        .script(
            "const f = document.createElement('form'); f.method = 'post'; \
             f.action = '/ui/envs/shop/staging/lock'; \
             const r = document.createElement('input'); r.name = 'reason'; r.value = 'sneaky'; \
             f.appendChild(r); document.body.appendChild(f); f.submit();",
            json!([]),
        )
        .await;
    browser
        .wait_for_text("main", |t| t.contains("Log in first."))
        .await;
    browser.screenshot("refused-unauthenticated").await;

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = &app.base;
    let alice = session(&http, base, ALICE_TOKEN).await;
    let bob = session(&http, base, BOB_TOKEN).await;
    let lock = "/ui/envs/shop/staging/lock";
    // No session at all, a forged one, a wrong token at login.
    let (status, _) = post(&http, base, lock, None, &[("reason", "x")]).await;
    assert_eq!(status, 401);
    let forged = alice.replace("alice.", "bob.");
    let (status, _) = post(&http, base, lock, Some(&forged), &[("reason", "x")]).await;
    assert_eq!(status, 401);
    let (status, _) = post(
        &http,
        base,
        "/ui/login",
        None,
        &[("token", "alice-dashboard-token-012")],
    )
    .await;
    assert_eq!(status, 401);
    // A session without (or with another session's) CSRF token.
    let (html, alice_csrf) = page(&http, base, "/ui", &alice).await;
    assert!(
        !html.contains("sneaky"),
        "the unauthenticated lock was stored"
    );
    let (_, bob_csrf) = page(&http, base, "/ui", &bob).await;
    let (status, body) = post(&http, base, lock, Some(&alice), &[("reason", "x")]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let (status, _) = post(
        &http,
        base,
        lock,
        Some(&alice),
        &[("csrf", &bob_csrf), ("reason", "x")],
    )
    .await;
    assert_eq!(status, 403);
    // Not a deployer of production: the same refusal Slack gives.
    let (status, body) = post(
        &http,
        base,
        "/ui/envs/shop/production/lock",
        Some(&bob),
        &[("csrf", &bob_csrf), ("reason", "mine")],
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body.contains("You are not one of the deployers of shop/production"),
        "{body}"
    );
    // Nothing above took effect; the same request with alice's own token does.
    let (html, _) = page(&http, base, "/ui", &alice).await;
    assert!(!html.contains("locked by"), "{html}");
    let (status, _) = post(
        &http,
        base,
        lock,
        Some(&alice),
        &[("csrf", &alice_csrf), ("reason", "real")],
    )
    .await;
    assert_eq!(status, 303);
    let (html, _) = page(&http, base, "/ui", &alice).await;
    assert!(html.contains("locked by alice (U0ALICE): real"), "{html}");
    app.stop().await;
}

#[tokio::test]
async fn without_users_the_dashboard_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let staging = local_staging(dir.path());
    let config = config(dir.path(), &repo, &staging, false);
    let app = TestApp::spawn(dir, &config).await;
    let (_, answer) = app.push("ro-1", "main", &sha).await;
    let id = job_id(&answer);
    assert_eq!(app.finished(id).await["state"], "succeeded");

    // Loopback peers (this test) may look, without logging in.
    let res = app
        .http
        .get(format!("{}/ui", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let html = res.text().await.unwrap();
    assert!(
        html.contains("Read-only") && html.contains(&sha[..8]),
        "{html}"
    );
    assert!(
        !html.contains("<form method=\"post\""),
        "no action forms: {html}"
    );
    let res = app
        .http
        .get(format!("{}/ui/jobs/{id}", app.base))
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("built shop/staging"));
    // Not through a proxy on this machine (it would connect from loopback for anyone).
    let res = app
        .http
        .get(format!("{}/ui", app.base))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // And not act.
    let (status, body) = post(
        &app.http,
        &app.base,
        "/ui/envs/shop/staging/lock",
        None,
        &[("reason", "x")],
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("read-only"), "{body}");
    app.stop().await;
}

/// Posts `csrf` to an action; the `Location` its 303 answer sends the browser to.
async fn act(http: &reqwest::Client, base: &str, path: &str, cookie: &str, csrf: &str) -> String {
    act_with(http, base, path, cookie, &[("csrf", csrf)]).await
}

async fn act_with(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> String {
    let res = http
        .post(format!("{base}{path}"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    let body = res.text().await.unwrap();
    assert_eq!(status, 303, "{path}: {body}");
    location.unwrap()
}

#[tokio::test]
async fn rollback_approve_reject_and_cancel_go_through_the_shared_actions() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha1 = repo.commit("first", "main");
    let gate = dir.path().join("gate");
    let qa = format!(
        "[apps.shop.environments.qa]\nhosts = [\"local\"]\ndeploy_path = \"{d}/srv/qa\"\n\
         steps = [\"while [ ! -e {gate} ]; do sleep 0.05; done\"]\n\
         deployers = [\"U0ALICE\", \"U0BOB\"]\napprovals = 1\n\
         [[apps.shop.triggers]]\npush = \"release\"\ndeploy = \"qa\"\n",
        d = dir.path().display(),
        gate = gate.display(),
    );
    let config = config(dir.path(), &repo, &local_staging(dir.path()), true) + &qa;
    let app = TestApp::spawn(dir, &config).await;
    let (base, http) = (
        &app.base,
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    );
    let alice = session(&http, base, ALICE_TOKEN).await;
    let bob = session(&http, base, BOB_TOKEN).await;
    let (_, alice_csrf) = page(&http, base, "/ui", &alice).await;
    let (_, bob_csrf) = page(&http, base, "/ui", &bob).await;

    // Roll back staging to the first of two deploys.
    let (_, a) = app.push("act-1", "main", &sha1).await;
    let first = app.finished(job_id(&a)).await;
    let sha2 = repo.commit("second", "main");
    let (_, a) = app.push("act-2", "main", &sha2).await;
    assert_eq!(app.finished(job_id(&a)).await["state"], "succeeded");
    // The form names its request: submitted twice (a double click), it queues one rollback.
    let (envs, _) = page(&http, base, "/ui", &alice).await;
    let rendered = envs
        .split("name=\"rendered\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let form = [
        ("csrf", alice_csrf.as_str()),
        ("rendered", rendered.as_str()),
    ];
    let rollback = "/ui/envs/shop/staging/rollback";
    let to = act_with(&http, base, rollback, &alice, &form).await;
    assert_eq!(act_with(&http, base, rollback, &alice, &form).await, to);
    let id: i64 = to.strip_prefix("/ui/jobs/").unwrap().parse().unwrap();
    let rollback = app.finished(id).await;
    assert_eq!(
        (
            &rollback["kind"],
            &rollback["state"],
            &rollback["release_id"]
        ),
        (
            &json!("rollback"),
            &json!("succeeded"),
            &first["release_id"]
        )
    );
    assert_eq!(rollback["requested_by"], "alice (U0ALICE)");
    assert_eq!(rollback["source"], "dashboard");
    let rollbacks = app.jobs().await;
    assert_eq!(
        rollbacks.iter().filter(|j| j["kind"] == "rollback").count(),
        1
    );

    // qa waits for approval: alice approves the first push (it runs, held by the gate), bob
    // rejects the second, approves the third (queued behind the first), which alice cancels.
    let sha3 = repo.commit("third", "release");
    let mut ids = Vec::new();
    for n in 0..3 {
        let (_, a) = app.push(&format!("qa-{n}"), "release", &sha3).await;
        let id = job_id(&a);
        assert_eq!(app.state(id).await, "awaiting_approval");
        match n {
            0 => {
                act(
                    &http,
                    base,
                    &format!("/ui/jobs/{id}/approve"),
                    &alice,
                    &alice_csrf,
                )
                .await
            }
            1 => {
                act(
                    &http,
                    base,
                    &format!("/ui/jobs/{id}/reject"),
                    &bob,
                    &bob_csrf,
                )
                .await
            }
            _ => {
                act(
                    &http,
                    base,
                    &format!("/ui/jobs/{id}/approve"),
                    &bob,
                    &bob_csrf,
                )
                .await
            }
        };
        ids.push(id);
        if n == 0 {
            app.wait_for_state(id, "running").await;
        }
    }
    assert_eq!(app.state(ids[1]).await, "rejected");
    assert_eq!(app.state(ids[2]).await, "queued");
    // The environments page shows the running job and the waiting one's place.
    let (envs, _) = page(&http, base, "/ui", &alice).await;
    let qa = envs.split("id=\"env-shop-qa\"").nth(1).unwrap();
    for expected in [
        format!(
            "#{}</a> deploy <span class=\"state running\">running</span>",
            ids[0]
        ),
        format!(
            "#{}</a> deploy <span class=\"state queued\">queued</span><span class=\"muted\"> · 1 ahead</span>",
            ids[2]
        ),
    ] {
        assert!(qa.contains(&expected), "{expected} not in {qa}");
    }
    act(
        &http,
        base,
        &format!("/ui/jobs/{}/cancel", ids[2]),
        &alice,
        &alice_csrf,
    )
    .await;
    assert_eq!(app.state(ids[2]).await, "cancelled");
    // A running deploy is stopped through the same cancel as Slack's: its page offers it once,
    // and it ends cancelled before its switch, recorded as alice's through the dashboard.
    let running = format!("/ui/jobs/{}", ids[0]);
    let (before, _) = page(&http, base, &running, &alice).await;
    assert!(
        before.contains("Stop</button>")
            && before.contains("before it switches anything (a switch under way finishes)"),
        "{before}"
    );
    act(
        &http,
        base,
        &format!("{running}/cancel"),
        &alice,
        &alice_csrf,
    )
    .await;
    let stopped = app.finished(ids[0]).await;
    assert_eq!(stopped["state"], "cancelled", "{stopped:#}");
    assert_eq!(
        stopped["cancel_requested_by"],
        "alice (U0ALICE) via dashboard"
    );
    let (after, _) = page(&http, base, &running, &alice).await;
    assert!(
        after.contains("cancel requested by alice (U0ALICE) via dashboard")
            && !after.contains("Stop</button>"),
        "{after}"
    );
    // Asking again is refused as Slack refuses it, as a page.
    let (status, body) = post(
        &http,
        base,
        &format!("{running}/cancel"),
        Some(&alice),
        &[("csrf", &alice_csrf)],
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body.contains(&format!("#{} has already ended: cancelled.", ids[0])),
        "{body}"
    );

    // The audit page shows who did what, through which channel.
    let (audit, _) = page(&http, base, "/ui/audit", &alice).await;
    for expected in [
        "to shop/staging requested by alice (U0ALICE) via dashboard",
        "cancelled by alice (U0ALICE) via dashboard",
        "bob (U0BOB)",
    ] {
        assert!(
            audit.contains(expected),
            "{expected:?} not in the audit page"
        );
    }
    app.stop().await;
}

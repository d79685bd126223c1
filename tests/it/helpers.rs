//! Test harness: a git repository with commits, the app started in-process, signed pushes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::Value;
use slipway::app::Role;
use slipway::clock::{Clock, SystemClock};
use slipway::config::Config;
use slipway::signature::sign_github;

pub const SECRET: &str = "integration-test-secret";
pub const REPO: &str = "acme/shop";

/// A bare repository (the "remote" the bot clones) and a work tree to commit in.
pub struct GitRepo {
    pub bare: PathBuf,
    work: PathBuf,
}

impl GitRepo {
    pub fn new(root: &Path) -> Self {
        let bare = root.join("shop.git");
        let work = root.join("shop-work");
        git(root, &["init", "--quiet", "--bare", bare.to_str().unwrap()]);
        git(
            root,
            &["init", "--quiet", "-b", "main", work.to_str().unwrap()],
        );
        let repo = Self { bare, work };
        repo.write("bin/build", "#!/bin/sh\nset -eu\nprintf '%s|%s|%s\\n' \"$SLIPWAY_RELEASE\" \"$SLIPWAY_SHA\" \"$SLIPWAY_REF\" > BUILD_INFO\necho \"built $SLIPWAY_APP/$SLIPWAY_ENV\"\n");
        repo.make_executable("bin/build");
        repo
    }

    pub fn make_executable(&self, path: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.work.join(path), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }

    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) {
        let file = self.work.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, contents).unwrap();
    }

    /// Commits everything and pushes it to `branch` of the bare repository; returns the sha.
    pub fn commit(&self, message: &str, branch: &str) -> String {
        git(&self.work, &["add", "--all"]);
        git(
            &self.work,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        let refspec = format!("HEAD:refs/heads/{branch}");
        git(
            &self.work,
            &[
                "push",
                "--quiet",
                "--force",
                self.bare.to_str().unwrap(),
                &refspec,
            ],
        );
        git(&self.work, &["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// Tags `sha` as `tag` (annotated) and pushes the tag to the bare repository.
    pub fn tag(&self, tag: &str, sha: &str) {
        git(&self.work, &["tag", "-a", "-m", tag, tag, sha]);
        let refspec = format!("refs/tags/{tag}:refs/tags/{tag}");
        git(
            &self.work,
            &["push", "--quiet", self.bare.to_str().unwrap(), &refspec],
        );
    }

    pub fn clone_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The system's clock moved ahead by what the test says (days, to make environments idle).
#[derive(Default)]
pub struct ShiftedClock {
    ahead_ms: AtomicI64,
}

impl ShiftedClock {
    /// From now on, the clock reads `days` ahead of the system's.
    pub fn ahead_by_days(&self, days: f64) {
        let ms = (days * 86_400_000.0) as i64;
        self.ahead_ms.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::Duration::milliseconds(self.ahead_ms.load(Ordering::SeqCst))
    }
}

/// Everything one test owns: its directory, config and running service.
pub struct TestApp {
    /// Kept so the test's files live as long as the service.
    _dir: tempfile::TempDir,
    pub base: String,
    pub http: reqwest::Client,
    running: Option<slipway::app::Running>,
}

/// The `[github]`, `[database]` and `[worker]` sections every test config starts with.
pub fn config_head(dir: &Path) -> String {
    format!(
        "[github]\nwebhook_secret = \"{SECRET}\"\n[database]\nurl = \"sqlite://{}/slipway.db\"\n\
         [worker]\ndata_dir = \"{}/var\"\nlease = \"5s\"\npoll_interval = \"200ms\"\n",
        dir.display(),
        dir.display()
    )
}

impl TestApp {
    /// Starts the service with `config` (a full TOML text) written to the test's directory.
    pub async fn spawn(dir: tempfile::TempDir, config: &str) -> Self {
        Self::spawn_with_clock(dir, config, Arc::new(SystemClock)).await
    }

    /// As [`TestApp::spawn`], with housekeeping, the scheduler and keeps reading `clock`.
    pub async fn spawn_with_clock(
        dir: tempfile::TempDir,
        config: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let path = dir.path().join("slipway.toml");
        std::fs::write(&path, config).unwrap();
        let config = Config::load(&path).unwrap_or_else(|e| panic!("test config: {e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = slipway::app::start_as(config, listener, Role::All, clock)
            .await
            .unwrap();
        Self {
            base: format!("http://{}", running.addr),
            _dir: dir,
            http: reqwest::Client::new(),
            running: Some(running),
        }
    }

    pub async fn stop(mut self) {
        self.running.take().unwrap().stop().await.unwrap();
    }

    /// POSTs a webhook with the given headers, signed with the test secret unless `signature`
    /// overrides it.
    pub async fn webhook(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        signature: Option<&str>,
    ) -> (u16, Value) {
        let sig = signature
            .map(str::to_owned)
            .unwrap_or_else(|| sign_github(SECRET.as_bytes(), body));
        let mut req = self
            .http
            .post(format!("{}/webhooks/github", self.base))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .body(body.to_vec());
        if !sig.is_empty() {
            req = req.header("x-hub-signature-256", sig);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A signed push of `sha` to `branch`, in the shape of GitHub's real payload.
    pub async fn push(&self, delivery: &str, branch: &str, sha: &str) -> (u16, Value) {
        self.webhook(
            "push",
            delivery,
            &push_body(REPO, &format!("refs/heads/{branch}"), sha, false),
            None,
        )
        .await
    }

    pub async fn jobs(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/api/jobs?limit=1000", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Job `id` now, as the API shows it.
    pub async fn job(&self, id: i64) -> Value {
        self.http
            .get(format!("{}/api/jobs/{id}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Job `id`'s state now.
    pub async fn state(&self, id: i64) -> String {
        self.job(id).await["state"].as_str().unwrap().to_owned()
    }

    /// Waits (up to 30 s) until job `id` is in `state`.
    pub async fn wait_for_state(&self, id: i64, state: &str) {
        self.wait_for(id, &format!("became {state}"), |job| job["state"] == state)
            .await;
    }

    /// Waits (up to 30 s) until job `id` is as `test` wants; `what` says how, should it never be.
    pub async fn wait_for(&self, id: i64, what: &str, test: impl Fn(&Value) -> bool) {
        for _ in 0..600 {
            if test(&self.job(id).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} never {what}");
    }

    /// The status of `GET path`.
    pub async fn status_of(&self, path: &str) -> u16 {
        let res = self.http.get(format!("{}{path}", self.base)).send().await;
        res.unwrap().status().as_u16()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let res = self.http.get(format!("{}/metrics", self.base)).send().await;
        res.unwrap().text().await.unwrap()
    }

    /// Waits until job `id` is in a terminal state and returns it.
    pub async fn finished(&self, id: i64) -> Value {
        wait_for_job(&self.http, &self.base, id).await
    }
}

pub async fn wait_for_job(http: &reqwest::Client, base: &str, id: i64) -> Value {
    for _ in 0..1200 {
        if let Ok(res) = http.get(format!("{base}/api/jobs/{id}")).send().await {
            let job: Value = res.json().await.unwrap();
            if matches!(
                job["state"].as_str(),
                Some(
                    "succeeded"
                        | "failed"
                        | "superseded"
                        | "cancelled"
                        | "skipped"
                        | "rejected"
                        | "expired"
                )
            ) {
                return job;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} did not finish in 120 s");
}

/// GitHub's push payload (`tests/fixtures/github/push.branch.json`), rewritten to our repo.
pub fn push_body(repo: &str, git_ref: &str, sha: &str, deleted: bool) -> Vec<u8> {
    let mut payload: Value =
        serde_json::from_str(include_str!("../fixtures/github/push.branch.json")).unwrap();
    payload["ref"] = git_ref.into();
    payload["after"] = sha.into();
    payload["deleted"] = deleted.into();
    payload["repository"]["full_name"] = repo.into();
    payload["repository"]["name"] = repo.split('/').nth(1).unwrap().into();
    serde_json::to_vec(&payload).unwrap()
}

/// The branch names of `tests/fixtures/hostile-branch-names.txt`, one per line.
pub fn hostile_branch_names() -> Vec<String> {
    include_str!("../fixtures/hostile-branch-names.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn job_id(answer: &Value) -> i64 {
    answer["job_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no job id in {answer}"))
}

/// The log lines of a job as `host: line` strings.
pub fn log_lines(job: &Value) -> Vec<String> {
    job["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{}: {}",
                l["host"].as_str().unwrap(),
                l["line"].as_str().unwrap()
            )
        })
        .collect()
}

/// Starts `slipway serve --role ROLE` and returns it with the base URL it listens on (parsed
/// from its `listening` log line, so `server.listen` can use port 0).
/// Runs `slipway ARGS --config CONFIG` to its end; asserts it succeeded; its stdout.
pub fn run_slipway(config: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A `slipway serve` child process, killed when dropped (so a failing test leaves none behind).
pub struct Served(std::process::Child);

impl std::ops::Deref for Served {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a child's output until `pick` finds what it waits for in a line (its "listening"
/// line), then keeps draining the rest in a thread so the child never blocks on a full pipe.
pub fn first_line<R: std::io::Read + Send + 'static>(
    output: R,
    what: &str,
    mut pick: impl FnMut(&str) -> Option<String>,
) -> String {
    use std::io::{BufRead, BufReader};
    let mut lines = BufReader::new(output).lines();
    let found = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("{what} exited before listening"))
            .unwrap();
        if let Some(found) = pick(&line) {
            break found;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    found
}

pub fn serve(config: &Path, role: &str) -> (Served, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["serve", "--role", role, "--config"])
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = first_line(child.stderr.take().unwrap(), "serve", |line| {
        let log: Value = serde_json::from_str(line).unwrap_or_default();
        (log["message"] == "listening").then(|| log["addr"].as_str().unwrap().to_owned())
    });
    (Served(child), format!("http://{addr}"))
}

/// Starts `slipway serve --config CONFIG` with its JSON log written to `log`; returns it with
/// the base URL from its `listening` line (so `server.listen` can use port 0).
pub fn serve_logging_to(config: &Path, log: &Path) -> (Served, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["serve", "--config"])
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let served = Served(child);
    for _ in 0..500 {
        let text = std::fs::read_to_string(log).unwrap();
        if let Some(line) = text.lines().find(|l| l.contains("\"listening\"")) {
            let v: Value = serde_json::from_str(line).unwrap();
            return (served, format!("http://{}", v["addr"].as_str().unwrap()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("serve did not log `listening` in 10 s");
}

/// A fresh, empty database on the PostgreSQL server at `SLIPWAY_TEST_POSTGRES` (default: the
/// local one; `scripts/test` starts a throwaway server when there is none).
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let admin = std::env::var("SLIPWAY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (scripts/test starts one): {e}"));
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "slipway_it_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// A signed push sent to `base` (a server started with [`serve`]).
pub async fn push_to(
    http: &reqwest::Client,
    base: &str,
    delivery: &str,
    branch: &str,
    sha: &str,
) -> Value {
    let body = push_body(REPO, &format!("refs/heads/{branch}"), sha, false);
    http.post(format!("{base}/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", sign_github(SECRET.as_bytes(), &body))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

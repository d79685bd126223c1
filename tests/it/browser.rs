//! A real headless Chromium, driven through chromedriver's W3C WebDriver HTTP API with reqwest.
//! Each [`Browser`] starts its own chromedriver (on a port it picks itself) with its own
//! profile directory, so tests run in parallel; dropping it ends the session and kills the
//! driver's process group (chromedriver and the Chromium it started).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::first_line;

pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Self {
        use std::os::unix::process::CommandExt;
        let mut driver = Command::new("/usr/bin/chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver (scripts/test installs chromium-driver)");
        let port = first_line(driver.stdout.take().unwrap(), "chromedriver", |line| {
            let rest = line.split("started successfully on port ").nth(1)?;
            Some(rest.trim_end_matches('.').to_owned())
        });
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let answer: Value = http
            .post(format!("http://127.0.0.1:{port}/session"))
            .json(&json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--window-size=1300,900",
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                },
            } } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"));
        Self {
            session: format!("http://127.0.0.1:{port}/session/{id}"),
            driver,
            http,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        let answer = self
            .call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
        assert!(answer.is_null(), "navigating to {url}: {answer}");
    }

    pub async fn url(&self) -> String {
        let url = self.call(reqwest::Method::GET, "/url", None).await;
        url.as_str().unwrap().to_owned()
    }

    /// The element `css` selects (its WebDriver reference), or WebDriver's error.
    async fn lookup(&self, css: &str) -> Result<String, Value> {
        let body = json!({ "using": "css selector", "value": css });
        let answer = self
            .call(reqwest::Method::POST, "/element", Some(body))
            .await;
        // A found element is `{"element-6066-...": "<id>"}`.
        let found = answer.as_object().and_then(|object| {
            object
                .iter()
                .find(|(key, _)| key.starts_with("element-"))
                .and_then(|(_, id)| id.as_str())
                .map(str::to_owned)
        });
        found.ok_or(answer)
    }

    /// The element `css` selects, if any. An error other than "no such element" is the test's
    /// problem, not an absent element.
    pub async fn find(&self, css: &str) -> Option<String> {
        match self.lookup(css).await {
            Ok(id) => Some(id),
            Err(answer) if answer["error"] == "no such element" => None,
            Err(answer) => panic!("finding {css}: {answer}"),
        }
    }

    async fn element(&self, css: &str) -> String {
        match self.find(css).await {
            Some(id) => id,
            None => panic!("no element {css} on {}", self.url().await),
        }
    }

    /// The rendered text of the element `css` selects.
    pub async fn text(&self, css: &str) -> String {
        match self.try_text(css).await {
            Some(text) => text,
            None => panic!("no element {css} on {}", self.url().await),
        }
    }

    /// The rendered text of the element `css` selects, or `None` when there is none (yet), or
    /// it went stale because the page was being replaced.
    async fn try_text(&self, css: &str) -> Option<String> {
        let id = self.lookup(css).await.ok()?;
        let text = self
            .call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await;
        text.as_str().map(str::to_owned)
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; its return value.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Polls the text of `css` until `done` accepts it (30 s at most: generous, for a loaded
    /// machine); returns it.
    pub async fn wait_for_text(&self, css: &str, done: impl Fn(&str) -> bool) -> String {
        let mut text = String::new();
        for _ in 0..300 {
            // A page being replaced (after a click or a reload) has the element, then not.
            if let Some(now) = self.try_text(css).await {
                if done(&now) {
                    return now;
                }
                text = now;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never showed what was expected; last text: {text:?}");
    }

    /// Saves a PNG of the viewport as `dashboard-screenshots/NAME.png` under the target's tmp
    /// directory (a test artifact) and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        println!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session first (chromedriver then quits Chromium), then the whole group:
        // chromedriver and any Chromium process still in it.
        let _ = Command::new("curl")
            .args(["-s", "-m", "5", "-X", "DELETE", &self.session])
            .stdout(Stdio::null())
            .status();
        // The whole group: chromedriver and the Chromium processes it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}

//! `slipway demo`: the whole path on the embedded default, on one machine. It commits the example
//! app (`examples/hello`, built into the binary) to the local repository the config's first app
//! clones from, starts the service, sends the signed push GitHub would send, follows the job and
//! prints where the release went.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::signature::sign_github;

const EXAMPLE: &[(&str, &str)] = &[
    ("app.py", include_str!("../examples/hello/app.py")),
    ("bin/build", include_str!("../examples/hello/bin/build")),
    ("README.md", include_str!("../examples/hello/README.md")),
];

pub async fn run(config: Config) -> anyhow::Result<()> {
    let (app, env, branch) = config
        .apps
        .values()
        .find_map(|app| {
            let trigger = app.triggers.first()?;
            Some((
                app,
                &app.environments[&trigger.deploy],
                trigger.push.glob().glob().to_owned(),
            ))
        })
        .context("the config has no app with a push trigger to demonstrate")?;
    if branch.contains(['*', '?', '[', '{']) {
        bail!("the demo pushes to a named branch; the first trigger's pattern is {branch:?}");
    }
    let bare = std::path::absolute(local_path(&app.clone_url)?)?;
    let sha = commit_example(&bare, &branch).await?;
    println!(
        "committed the example app to {} ({branch} @ {})",
        bare.display(),
        &sha[..8]
    );

    let repo = app.repo.clone();
    let secret = config.github.webhook_secret.expose_secret().to_owned();
    let current = env.deploy_path.join("current");
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let running = crate::app::start(config, listener).await?;
    let base = format!("http://{}", running.addr);
    println!("slipway is serving on {base}");

    let result = push_and_follow(&base, &secret, &repo, &branch, &sha).await;
    running.stop().await?;
    let state = result?;
    if state != "succeeded" {
        bail!("the deploy ended {state}");
    }
    let info = std::fs::read_to_string(current.join("BUILD_INFO")).unwrap_or_default();
    println!(
        "\ndeployed: {} -> {}",
        current.display(),
        std::fs::read_link(&current)?.display()
    );
    println!("BUILD_INFO: {}", info.trim());
    println!(
        "try: python3 {}/app.py 8000 & curl localhost:8000",
        current.display()
    );
    Ok(())
}

async fn push_and_follow(
    base: &str,
    secret: &str,
    repo: &str,
    branch: &str,
    sha: &str,
) -> anyhow::Result<String> {
    let payload = json!({
        "ref": format!("refs/heads/{branch}"),
        "before": "0".repeat(40),
        "after": sha,
        "created": false,
        "deleted": false,
        "repository": { "full_name": repo },
        "pusher": { "name": "slipway-demo" },
        "sender": { "login": "slipway-demo" },
    })
    .to_string();
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{base}/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header(
            "x-github-delivery",
            format!("demo-{sha}-{}", crate::store::now_ms()),
        )
        .header(
            "x-hub-signature-256",
            sign_github(secret.as_bytes(), payload.as_bytes()),
        )
        .body(payload)
        .send()
        .await?;
    let status = answer.status();
    let body: Value = answer.json().await?;
    println!("POST /webhooks/github -> {status} {body}");
    let id = body["job_id"]
        .as_i64()
        .with_context(|| format!("no job was queued: {body}"))?;

    let mut printed = 0;
    for _ in 0..1200 {
        let job: Value = http
            .get(format!("{base}/api/jobs/{id}"))
            .send()
            .await?
            .json()
            .await?;
        let log = job["log"].as_array().cloned().unwrap_or_default();
        for line in log.iter().skip(printed) {
            println!(
                "  [{}] {}: {}",
                line["host"].as_str().unwrap_or(""),
                line["step"].as_str().unwrap_or(""),
                line["line"].as_str().unwrap_or("")
            );
        }
        printed = printed.max(log.len());
        let state = job["state"].as_str().unwrap_or("").to_owned();
        if state == "succeeded" || state == "failed" {
            println!(
                "job {id} {state}{}",
                job["error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
            return Ok(state);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("job {id} did not finish within two minutes")
}

/// The demo only works with a repository on this machine.
fn local_path(clone_url: &str) -> anyhow::Result<PathBuf> {
    let path = clone_url.strip_prefix("file://").unwrap_or(clone_url);
    if path.contains("://") || path.contains(':') && !path.starts_with('/') {
        bail!("the demo needs a local clone_url (a path or file://), not {clone_url}");
    }
    Ok(PathBuf::from(path))
}

/// Writes the example into a work tree beside the bare repository, commits, and pushes.
async fn commit_example(bare: &Path, branch: &str) -> anyhow::Result<String> {
    let work = bare.with_extension("work");
    if !bare.join("HEAD").exists() {
        git(None, &["init", "--quiet", "--bare", "--", path_str(bare)?]).await?;
    }
    if !work.join(".git").exists() {
        git(None, &["init", "--quiet", "--", path_str(&work)?]).await?;
    }
    for (name, text) in EXAMPLE {
        let file = work.join(name);
        std::fs::create_dir_all(file.parent().expect("files are in the work tree"))?;
        std::fs::write(&file, text)?;
        if name.starts_with("bin/") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    std::fs::write(
        work.join("DEMO_RUN"),
        format!("{}\n", chrono::Utc::now().to_rfc3339()),
    )?;
    let w = Some(work.as_path());
    git(w, &["add", "--all"]).await?;
    git(w, &["commit", "--quiet", "-m", "slipway demo run"]).await?;
    git(
        w,
        &[
            "push",
            "--quiet",
            "--force",
            "--",
            path_str(bare)?,
            &format!("HEAD:refs/heads/{branch}"),
        ],
    )
    .await?;
    Ok(git(w, &["rev-parse", "HEAD"]).await?.trim().to_owned())
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

async fn git(dir: Option<&Path>, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    let out = cmd
        .args([
            "-c",
            "user.name=slipway demo",
            "-c",
            "user.email=demo@slipway.invalid",
        ])
        .args(args)
        .output()
        .await
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

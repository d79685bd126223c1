//! The bot ships the code: it keeps a bare mirror of each app's repository, fetches only when a
//! wanted commit is missing, and produces one `git archive` per deploy that is streamed to every
//! host. Hosts need no access to the repository.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::config::App;
use crate::domain::{GitRef, Sha};

pub struct Mirrors {
    dir: PathBuf,
    /// One fetch at a time per app; different apps fetch in parallel.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Mirrors {
    pub fn new(data_dir: &std::path::Path) -> Self {
        Self {
            dir: data_dir.join("mirrors"),
            locks: Mutex::default(),
        }
    }

    /// A tar archive of `sha`'s tree, fetching the app's repository first if needed.
    pub async fn archive(&self, app: &App, sha: &Sha) -> anyhow::Result<Vec<u8>> {
        let lock = self.lock(app);
        let _guard = lock.lock().await;
        let mirror = self.ensure(app).await?;
        if !has_commit(&mirror, sha.as_str()).await {
            fetch(&mirror, app).await?;
            if !has_commit(&mirror, sha.as_str()).await {
                bail!("commit {sha} is not in {}", app.clone_url);
            }
        }
        git(Some(&mirror), &["archive", "--format=tar", sha.as_str()])
            .run()
            .await
            .with_context(|| format!("archiving {sha}"))
    }

    /// The commit a branch, tag or commit id names now, after fetching.
    pub async fn resolve(&self, app: &App, name: &GitRef) -> anyhow::Result<Sha> {
        let lock = self.lock(app);
        let _guard = lock.lock().await;
        let mirror = self.ensure(app).await?;
        fetch(&mirror, app).await?;
        for candidate in [
            format!("refs/heads/{name}^{{commit}}"),
            format!("refs/tags/{name}^{{commit}}"),
            format!("{name}^{{commit}}"),
        ] {
            let out = git(
                Some(&mirror),
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "--end-of-options",
                    &candidate,
                ],
            )
            .run()
            .await;
            if let Ok(out) = out
                && let Ok(sha) = Sha::parse(String::from_utf8_lossy(&out).trim())
            {
                return Ok(sha);
            }
        }
        bail!("{name} is not a branch, tag or commit of {}", app.clone_url)
    }

    fn lock(&self, app: &App) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("mirror lock map poisoned");
        locks.entry(app.name.to_string()).or_default().clone()
    }

    /// The app's mirror, cloned if it does not exist yet.
    async fn ensure(&self, app: &App) -> anyhow::Result<PathBuf> {
        let mirror = self.dir.join(format!("{}.git", app.name));
        if !mirror.join("HEAD").exists() {
            tokio::fs::create_dir_all(&self.dir)
                .await
                .with_context(|| format!("creating {}", self.dir.display()))?;
            let _ = tokio::fs::remove_dir_all(&mirror).await;
            git(
                None,
                &["clone", "--mirror", "--quiet", "--", &app.clone_url],
            )
            .arg(&mirror)
            .run()
            .await
            .with_context(|| format!("cloning {}", app.clone_url))?;
        }
        Ok(mirror)
    }
}

async fn fetch(mirror: &std::path::Path, app: &App) -> anyhow::Result<()> {
    // The clone URL may have changed in config since the mirror was made.
    git(
        Some(mirror),
        &["remote", "set-url", "origin", "--", &app.clone_url],
    )
    .run()
    .await?;
    git(Some(mirror), &["fetch", "--prune", "--quiet", "origin"])
        .run()
        .await
        .with_context(|| format!("fetching {}", app.clone_url))?;
    Ok(())
}

async fn has_commit(mirror: &std::path::Path, sha: &str) -> bool {
    let object = format!("{sha}^{{commit}}");
    git(Some(mirror), &["cat-file", "-e", &object])
        .run()
        .await
        .is_ok()
}

struct Git(Command);

fn git(dir: Option<&std::path::Path>, args: &[&str]) -> Git {
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    Git(cmd)
}

impl Git {
    fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.0.arg(arg);
        self
    }

    async fn run(mut self) -> anyhow::Result<Vec<u8>> {
        let out = self.0.output().await.context("running git")?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            bail!("git failed ({}): {}", out.status, stderr.trim());
        }
        Ok(out.stdout)
    }
}

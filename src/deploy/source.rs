//! The bot ships the code: it keeps a bare mirror of each app's repository, fetches only when a
//! wanted commit is missing, and produces one `git archive` per deploy that is streamed to every
//! host. Hosts need no access to the repository.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::config::App;
use crate::domain::{GitRef, Sha};

/// See [`Mirrors::release_info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInfo {
    pub previous: Option<String>,
    pub commits: Vec<String>,
    pub on_branch: Option<bool>,
}

pub struct Mirrors {
    dir: PathBuf,
    /// One fetch at a time per app; different apps fetch in parallel. The lock holds what the
    /// app's last successful fetch found.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Fetched>>>>>,
}

/// A successful fetch: when it started, and the commits its branches and tags named then.
struct Fetched {
    started: Instant,
    /// `refs/heads/..` and `refs/tags/..` to the commit each names (tags peeled).
    commits: HashMap<String, Sha>,
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
        let mut fetched = lock.lock().await;
        let mirror = self.ensure(app).await?;
        if !has_commit(&mirror, sha.as_str()).await {
            fetch_since(&mut fetched, None, &mirror, app).await?;
            if !has_commit(&mirror, sha.as_str()).await {
                bail!("commit {sha} is not in {}", app.clone_url);
            }
        }
        git(Some(&mirror), &["archive", "--format=tar", sha.as_str()])
            .run()
            .await
            .with_context(|| format!("archiving {sha}"))
    }

    /// The commit a branch, tag or commit id names now, after fetching. Requests that wait
    /// for the app's lock together share one fetch: a fetch that started after a request
    /// arrived has everything that request could see.
    pub async fn resolve(&self, app: &App, name: &GitRef) -> anyhow::Result<Sha> {
        let arrived = Instant::now();
        let lock = self.lock(app);
        let mut fetched = lock.lock().await;
        let mirror = self.ensure(app).await?;
        let commits = fetch_since(&mut fetched, Some(arrived), &mirror, app).await?;
        for kind in ["heads", "tags"] {
            if let Some(sha) = commits.get(&format!("refs/{kind}/{name}")) {
                return Ok(sha.clone());
            }
        }
        // A commit id, whole or abbreviated.
        let out = git(
            Some(&mirror),
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &format!("{name}^{{commit}}"),
            ],
        )
        .run()
        .await;
        if let Ok(out) = out
            && let Ok(sha) = Sha::parse(String::from_utf8_lossy(&out).trim())
        {
            return Ok(sha);
        }
        bail!("{name} is not a branch, tag or commit of {}", app.clone_url)
    }

    /// What a release of `tag` at `sha` needs from the repository, after fetching: the nearest
    /// earlier tag matching `pattern` (a glob) that `sha` contains, the subjects of the commits
    /// since (at most 100), and whether `branch` (if given) contains `sha`.
    pub async fn release_info(
        &self,
        app: &App,
        tag: &GitRef,
        sha: &Sha,
        pattern: &str,
        branch: Option<&GitRef>,
    ) -> anyhow::Result<ReleaseInfo> {
        let arrived = Instant::now();
        let lock = self.lock(app);
        let mut fetched = lock.lock().await;
        let mirror = self.ensure(app).await?;
        fetch_since(&mut fetched, Some(arrived), &mirror, app).await?;
        if !has_commit(&mirror, sha.as_str()).await {
            bail!("commit {sha} is not in {}", app.clone_url);
        }
        let on_branch = match branch {
            None => None,
            Some(branch) => {
                let head = format!("refs/heads/{branch}");
                let is = git(
                    Some(&mirror),
                    &["merge-base", "--is-ancestor", sha.as_str(), &head],
                )
                .run()
                .await;
                Some(is.is_ok())
            }
        };
        let previous = git(
            Some(&mirror),
            &[
                "describe",
                "--tags",
                "--abbrev=0",
                &format!("--match={pattern}"),
                &format!("--exclude={tag}"),
                sha.as_str(),
            ],
        )
        .run()
        .await
        .ok()
        .map(|out| String::from_utf8_lossy(&out).trim().to_owned())
        .filter(|t| !t.is_empty());
        let range = match &previous {
            Some(previous) => format!("refs/tags/{previous}..{sha}"),
            None => sha.to_string(),
        };
        let log = git(
            Some(&mirror),
            &["log", "--max-count=100", "--format=%s (%h)", &range, "--"],
        )
        .run()
        .await
        .with_context(|| format!("listing the commits of {range}"))?;
        Ok(ReleaseInfo {
            previous,
            commits: String::from_utf8_lossy(&log)
                .lines()
                .map(str::to_owned)
                .collect(),
            on_branch,
        })
    }

    fn lock(&self, app: &App) -> Arc<tokio::sync::Mutex<Option<Fetched>>> {
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
            git(None, &["clone", "--bare", "--quiet", "--", &app.clone_url])
                .arg(&mirror)
                .run()
                .await
                .with_context(|| format!("cloning {}", app.clone_url))?;
        }
        Ok(mirror)
    }
}

/// Fetches, unless a fetch that started after `arrived` has succeeded since (`last`: the app's
/// last successful fetch; with no `arrived` it always fetches), and returns the commits the
/// branches and tags named at that fetch. Requests that queue behind one fetch thus share the
/// next one, and read its refs without running git again.
async fn fetch_since<'f>(
    last: &'f mut Option<Fetched>,
    arrived: Option<Instant>,
    mirror: &std::path::Path,
    app: &App,
) -> anyhow::Result<&'f HashMap<String, Sha>> {
    let fresh = matches!((&*last, arrived), (Some(f), Some(arrived)) if f.started >= arrived);
    if !fresh {
        let started = Instant::now();
        fetch(mirror, app).await?;
        *last = Some(Fetched {
            started,
            commits: ref_commits(mirror).await?,
        });
    }
    Ok(&last.as_ref().expect("set above or fresh").commits)
}

/// Every branch and tag of the mirror and the commit it names (annotated tags peeled; refs
/// that name no commit are left out), in one `git for-each-ref`.
async fn ref_commits(mirror: &std::path::Path) -> anyhow::Result<HashMap<String, Sha>> {
    let out = git(
        Some(mirror),
        &[
            "for-each-ref",
            "--format=%(refname)%00%(objecttype)%00%(objectname)%00%(*objecttype)%00%(*objectname)",
            "refs/heads",
            "refs/tags",
        ],
    )
    .run()
    .await
    .context("listing the mirror's refs")?;
    let mut commits = HashMap::new();
    for line in String::from_utf8_lossy(&out).lines() {
        let fields: Vec<&str> = line.split('\0').collect();
        let sha = match fields.as_slice() {
            [name, "commit", sha, ..] => Some((*name, *sha)),
            [name, "tag", _, "commit", peeled] => Some((*name, *peeled)),
            _ => None,
        };
        if let Some((name, sha)) = sha
            && let Ok(sha) = Sha::parse(sha)
        {
            commits.insert(name.to_owned(), sha);
        }
    }
    Ok(commits)
}

async fn fetch(mirror: &std::path::Path, app: &App) -> anyhow::Result<()> {
    // The clone URL may have changed in config since the mirror was made.
    git(
        Some(mirror),
        &["remote", "set-url", "origin", "--", &app.clone_url],
    )
    .run()
    .await?;
    // Branches and tags only: GitHub also serves `refs/pull/*` (pull requests, forks' code
    // included), which must never be deployable by name.
    git(
        Some(mirror),
        &[
            "fetch",
            "--prune",
            "--quiet",
            "origin",
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ],
    )
    .run()
    .await
    .with_context(|| format!("fetching {}", app.clone_url))?;
    // A mirror cloned with everything (or by an older slipway) drops the rest.
    let refs = git(Some(mirror), &["for-each-ref", "--format=%(refname)"])
        .run()
        .await?;
    for name in String::from_utf8_lossy(&refs).lines() {
        if !(name.starts_with("refs/heads/") || name.starts_with("refs/tags/")) {
            git(Some(mirror), &["update-ref", "-d", name]).run().await?;
        }
    }
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

//! The bot ships the code: it keeps a bare mirror of each app's repository, fetches only when a
//! wanted commit is missing, and produces one `git archive` per deploy that is streamed to every
//! host. Hosts need no access to the repository.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::config::App;
use crate::domain::{GitRef, Sha};
use crate::releases::tags::{self, Tag, TagMatcher};

/// See [`Mirrors::release_info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInfo {
    /// The commit released: the pushed sha, peeled (a push of an annotated tag names the tag
    /// object, not its commit).
    pub commit: Sha,
    /// The release the notes start from ([`tags::previous`]).
    pub previous: Option<Tag>,
    pub on_branch: Option<bool>,
}

pub struct Mirrors {
    dir: PathBuf,
    apps: Mutex<HashMap<String, Arc<AppMirror>>>,
}

/// One app's mirror. One fetch at a time per app; different apps fetch in parallel.
#[derive(Default)]
struct AppMirror {
    /// Held by whoever fetches or reads the mirror; holds what the last successful fetch found.
    fetched: tokio::sync::Mutex<Option<Fetched>>,
    /// The commits of the last successful fetch again, readable while the next fetch runs.
    seen: Mutex<Arc<HashMap<String, Sha>>>,
}

/// A successful fetch: when it started, and the commits its branches and tags named then.
struct Fetched {
    started: Instant,
    /// `refs/heads/..` and `refs/tags/..` to the commit each names (tags peeled).
    commits: Arc<HashMap<String, Sha>>,
}

impl Mirrors {
    pub fn new(data_dir: &std::path::Path) -> Self {
        Self {
            dir: data_dir.join("mirrors"),
            apps: Mutex::default(),
        }
    }

    /// A tar archive of `sha`'s tree, fetching the app's repository first if needed.
    pub async fn archive(&self, app: &App, sha: &Sha) -> anyhow::Result<Vec<u8>> {
        let entry = self.entry(app);
        let mut fetched = entry.fetched.lock().await;
        let mirror = self.ensure(app).await?;
        if commit_of(&mirror, sha.as_str()).await.is_none() {
            entry.fetch_since(&mut fetched, None, &mirror, app).await?;
            if commit_of(&mirror, sha.as_str()).await.is_none() {
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
        let entry = self.entry(app);
        let mut fetched = entry.fetched.lock().await;
        let mirror = self.ensure(app).await?;
        let commits = entry
            .fetch_since(&mut fetched, Some(arrived), &mirror, app)
            .await?;
        for kind in ["heads", "tags"] {
            if let Some(sha) = commits.get(&format!("refs/{kind}/{name}")) {
                return Ok(sha.clone());
            }
        }
        // A commit id, whole or abbreviated.
        if let Some(sha) = commit_of(&mirror, name.as_str()).await {
            return Ok(sha);
        }
        bail!("{name} is not a branch, tag or commit of {}", app.clone_url)
    }

    /// What a release of `tag` at `sha` (a commit or an annotated tag object) needs from the
    /// repository, after fetching: the commit, the previous release among the tags `matcher`
    /// accepts, and whether `branch` (if given) contains the commit.
    pub async fn release_info(
        &self,
        app: &App,
        tag: &GitRef,
        sha: &Sha,
        matcher: &TagMatcher,
        branch: Option<&GitRef>,
    ) -> anyhow::Result<ReleaseInfo> {
        let arrived = Instant::now();
        let entry = self.entry(app);
        let mut fetched = entry.fetched.lock().await;
        let mirror = self.ensure(app).await?;
        entry
            .fetch_since(&mut fetched, Some(arrived), &mirror, app)
            .await?;
        let Some(commit) = commit_of(&mirror, sha.as_str()).await else {
            bail!("commit {sha} is not in {}", app.clone_url);
        };
        let on_branch = match branch {
            None => None,
            Some(branch) => {
                let head = format!("refs/heads/{branch}");
                let is = git(
                    Some(&mirror),
                    &["merge-base", "--is-ancestor", commit.as_str(), &head],
                )
                .run()
                .await;
                Some(is.is_ok())
            }
        };
        let tags = tags_of(&mirror, &commit).await?;
        Ok(ReleaseInfo {
            previous: tags::previous(matcher, tag.as_str(), &tags).cloned(),
            commit,
            on_branch,
        })
    }

    /// Whether the app's last fetch saw `name` as a branch or a tag. Reads no repository and
    /// waits for no fetch: `false` for an app not fetched yet.
    pub fn has_seen(&self, app: &App, name: &GitRef) -> bool {
        let seen = self
            .entry(app)
            .seen
            .lock()
            .expect("mirror refs poisoned")
            .clone();
        ["heads", "tags"]
            .iter()
            .any(|kind| seen.contains_key(&format!("refs/{kind}/{name}")))
    }

    fn entry(&self, app: &App) -> Arc<AppMirror> {
        let mut apps = self.apps.lock().expect("mirror map poisoned");
        apps.entry(app.name.to_string()).or_default().clone()
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

impl AppMirror {
    /// Fetches, unless a fetch that started after `arrived` has succeeded since (`last`: the
    /// app's last successful fetch, under [`AppMirror::fetched`]; with no `arrived` it always
    /// fetches), and returns the commits the branches and tags named at that fetch. Requests
    /// that queue behind one fetch thus share the next one, and read its refs without running
    /// git again.
    async fn fetch_since<'f>(
        &self,
        last: &'f mut Option<Fetched>,
        arrived: Option<Instant>,
        mirror: &std::path::Path,
        app: &App,
    ) -> anyhow::Result<&'f HashMap<String, Sha>> {
        let fresh = matches!((&*last, arrived), (Some(f), Some(arrived)) if f.started >= arrived);
        if !fresh {
            let started = Instant::now();
            let commits = Arc::new(fetch(mirror, app).await?);
            *self.seen.lock().expect("mirror refs poisoned") = commits.clone();
            *last = Some(Fetched { started, commits });
        }
        Ok(&last.as_ref().expect("set above or fresh").commits)
    }
}

/// What [`parse_ref`] reads: a ref's name, its object and, for an annotated tag, the object it
/// points at, and when it was made.
const REF_FORMAT: &str = "%(refname)%00%(objecttype)%00%(objectname)%00%(*objecttype)%00%(*objectname)%00%(creatordate:unix)";

/// A [`REF_FORMAT`] line: the ref's name, the commit it names (an annotated tag peeled) and its
/// creation time; `None` for a ref that names no commit.
fn parse_ref(line: &str) -> Option<(&str, Sha, i64)> {
    let fields: Vec<&str> = line.split('\0').collect();
    let (name, sha, created) = match fields.as_slice() {
        [name, "commit", sha, _, _, created] => (*name, *sha, *created),
        [name, "tag", _, "commit", peeled, created] => (*name, *peeled, *created),
        _ => return None,
    };
    Some((name, Sha::parse(sha).ok()?, created.parse().unwrap_or(0)))
}

/// The mirror's tags that name commits, each marked with whether `commit` contains it.
async fn tags_of(mirror: &std::path::Path, commit: &Sha) -> anyhow::Result<Vec<Tag>> {
    let all = git(
        Some(mirror),
        &[
            "for-each-ref",
            &format!("--format={REF_FORMAT}"),
            "refs/tags",
        ],
    )
    .run()
    .await
    .context("listing the mirror's tags")?;
    let merged = git(
        Some(mirror),
        &[
            "for-each-ref",
            "--format=%(refname)",
            &format!("--merged={commit}"),
            "refs/tags",
        ],
    )
    .run()
    .await
    .with_context(|| format!("listing the tags {} contains", commit.short()))?;
    let merged = String::from_utf8_lossy(&merged);
    let contained: HashSet<&str> = merged.lines().collect();
    Ok(String::from_utf8_lossy(&all)
        .lines()
        .filter_map(parse_ref)
        .filter_map(|(name, commit, created)| {
            Some(Tag {
                name: name.strip_prefix("refs/tags/")?.to_owned(),
                contained: contained.contains(name),
                commit,
                created,
            })
        })
        .collect())
}

/// Fetches the app's branches and tags into its mirror and returns the commit each one names
/// (annotated tags peeled; refs that name no commit are left out): two git processes.
///
/// Only branches and tags: GitHub also serves `refs/pull/*` (pull requests, forks' code
/// included), which must never be deployable by name, so any other ref (a mirror cloned with
/// everything, or by an older slipway, has them) is dropped. The fetch names the clone URL as
/// configured now, so a URL changed in config since the mirror was made needs no `remote
/// set-url`; `--prune` drops the branches and tags the repository no longer has.
async fn fetch(mirror: &std::path::Path, app: &App) -> anyhow::Result<HashMap<String, Sha>> {
    git(
        Some(mirror),
        &[
            "fetch",
            "--prune",
            "--quiet",
            "--",
            &app.clone_url,
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ],
    )
    .run()
    .await
    .with_context(|| format!("fetching {}", app.clone_url))?;
    let out = git(
        Some(mirror),
        &["for-each-ref", &format!("--format={REF_FORMAT}")],
    )
    .run()
    .await
    .context("listing the mirror's refs")?;
    let mut commits = HashMap::new();
    for line in String::from_utf8_lossy(&out).lines() {
        let name = line.split('\0').next().unwrap_or_default();
        if !(name.starts_with("refs/heads/") || name.starts_with("refs/tags/")) {
            git(Some(mirror), &["update-ref", "-d", name]).run().await?;
        } else if let Some((name, sha, _)) = parse_ref(line) {
            commits.insert(name.to_owned(), sha);
        }
    }
    Ok(commits)
}

/// The commit `rev` (a commit id, whole or abbreviated, or a tag object's) names, if the
/// mirror has it.
async fn commit_of(mirror: &std::path::Path, rev: &str) -> Option<Sha> {
    let out = git(
        Some(mirror),
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .run()
    .await
    .ok()?;
    Sha::parse(String::from_utf8_lossy(&out).trim()).ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// Runs git in `dir` as a fixed author; returns its output, trimmed.
    fn run(dir: &std::path::Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=Ada", "-c", "user.email=ada@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn commit(work: &std::path::Path, message: &str) -> String {
        run(work, &["commit", "--quiet", "--allow-empty", "-m", message]);
        run(work, &["rev-parse", "HEAD"])
    }

    /// An annotated tag; returns the tag object's id (what GitHub's push event names).
    fn tag(work: &std::path::Path, name: &str) -> String {
        run(work, &["tag", "-a", "-m", name, name]);
        run(work, &["rev-parse", name])
    }

    #[tokio::test]
    async fn release_info_peels_annotated_tags_and_finds_the_previous_release() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        run(&work, &["init", "--quiet", "-b", "main"]);
        let v110 = commit(&work, "first");
        tag(&work, "v1.1.0");
        let v120 = commit(&work, "second");
        tag(&work, "v1.2.0-rc.1");
        let v120_object = tag(&work, "v1.2.0");
        // A backport on a maintenance branch from v1.1.0.
        run(&work, &["checkout", "--quiet", "-b", "maint", "v1.1.0"]);
        let v111 = commit(&work, "backport");
        let v111_object = tag(&work, "v1.1.1");
        let toml = dir.path().join("slipway.toml");
        std::fs::write(
            &toml,
            format!(
                "[github]\nwebhook_secret = \"a-long-enough-secret\"\n[apps.shop]\n\
                 repo = \"acme/shop\"\nclone_url = \"file://{}\"\n",
                work.display()
            ),
        )
        .unwrap();
        let config = Config::load(&toml).unwrap();
        let app = config.app("shop").unwrap();
        let mirrors = Mirrors::new(&dir.path().join("data"));
        let sha = |s: &str| Sha::parse(s).unwrap();
        let info = |tag: &str, pushed: &str, matcher: &str, branch: Option<&str>| {
            let (tag, pushed) = (GitRef::parse(tag).unwrap(), sha(pushed));
            let matcher = TagMatcher::parse(matcher).unwrap();
            let branch = branch.map(|b| GitRef::parse(b).unwrap());
            let mirrors = &mirrors;
            async move {
                mirrors
                    .release_info(app, &tag, &pushed, &matcher, branch.as_ref())
                    .await
                    .unwrap()
            }
        };
        assert_ne!(v120_object, v120);
        for matcher in ["semver", "v*"] {
            let released = info("v1.2.0", &v120_object, matcher, Some("main")).await;
            assert_eq!(released.commit, sha(&v120));
            assert_eq!(released.on_branch, Some(true));
            // The highest lower final version (the rc on the same commit skipped), although on
            // another branch: its compare lists what v1.2.0 has and it has not.
            let previous = released.previous.unwrap();
            assert_eq!(
                (previous.name.as_str(), &previous.commit),
                ("v1.1.1", &sha(&v111))
            );

            let backport = info("v1.1.1", &v111_object, matcher, Some("main")).await;
            assert_eq!(backport.commit, sha(&v111));
            assert_eq!(backport.on_branch, Some(false));
            let previous = backport.previous.unwrap();
            assert_eq!(
                (previous.name.as_str(), &previous.commit),
                ("v1.1.0", &sha(&v110))
            );
        }
        // Tags that are not versions follow history: build-side (on maint) is not contained.
        run(&work, &["tag", "build-a", &v110]);
        run(&work, &["tag", "build-side", &v111]);
        run(&work, &["tag", "build-b", &v120]);
        let build = info("build-b", &v120, "build-*", None).await;
        assert_eq!(build.previous.unwrap().name, "build-a");
        // The first release: no earlier matching tag.
        let first = info("v1.1.0", &v110, "semver", None).await;
        assert_eq!((first.previous, first.on_branch), (None, None));
    }
}

//! Tags become releases: a tag push matching `[apps.<app>.releases] tags` queues a `release`
//! job, which peels the pushed sha to its commit (an annotated tag's push names the tag
//! object), checks the commit is on the release branch (if configured), publishes a GitHub
//! Release with notes since the previous release ([`tags::previous`]; GitHub's generated notes,
//! or the commits GitHub's compare lists, [`notes`]), marks semver pre-releases
//! (`v1.4.0-rc.1`), then queues the deploy of the commit (if configured). A redelivered tag push
//! is a duplicate delivery; a release that already exists on GitHub, or that someone creates
//! while the job runs, is left as it is.

use crate::config::{App, Notes};
use crate::deploy::source::{Mirrors, ReleaseInfo};
use crate::domain::{GitRef, Name, Sha};
use crate::github::{GitHub, NewRelease};
use crate::queue::{Delivery, Enqueued, NewJob, Queue};
use crate::store::{Job, JobKind};

pub mod notes;
pub mod tags;

use tags::is_prerelease;

/// The env of release jobs: one release at a time per app, apart from its environments.
pub const RELEASES_ENV: &str = "releases";

/// The release job for a pushed tag, or `None` when the app does not release such tags.
pub fn job(app: &App, tag: &GitRef, sha: &Sha, pushed_by: &str) -> Option<NewJob> {
    let releases = app.releases.as_ref()?;
    releases.tags.is_match(tag.as_str()).then(|| NewJob {
        kind: JobKind::Release,
        app: app.name.clone(),
        env: Name::parse(RELEASES_ENV).expect("a valid name"),
        git_ref: Some(tag.clone()),
        sha: Some(sha.clone()),
        requested_by: pushed_by.to_owned(),
        source: "github",
        target_release: None,
        ephemeral: None,
        supersede: false,
        approval: None,
    })
}

/// What a release job did.
#[derive(Debug, Default)]
pub struct Released {
    /// One line per thing done, for the job's log.
    pub lines: Vec<String>,
    /// For the team's chat, when this job published the release (not when it existed already).
    pub announcement: Option<String>,
}

/// Runs a release job. `links` says where a job's progress can be read (`github.public_url`).
pub async fn run(
    job: &Job,
    app: &App,
    mirrors: &Mirrors,
    github: Option<&GitHub>,
    queue: &Queue,
    links: &crate::config::Github,
) -> anyhow::Result<Released> {
    let releases = app
        .releases
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("releases of {} are no longer configured", app.name))?;
    let tag = GitRef::parse(&job.git_ref)?;
    let pushed = Sha::parse(&job.sha)?;
    let info = mirrors
        .release_info(app, &tag, &pushed, &releases.tags, releases.branch.as_ref())
        .await?;
    let sha = &info.commit;
    if let (Some(false), Some(branch)) = (info.on_branch, &releases.branch) {
        anyhow::bail!(
            "tag {tag} is on commit {}, which is not on branch {branch}: no release \
             (apps.{}.releases.branch)",
            sha.short(),
            app.name
        );
    }
    let mut lines = Vec::new();
    if *sha != pushed {
        lines.push(format!(
            "tag {tag} is annotated: tag object {} names commit {}",
            pushed.short(),
            sha.short()
        ));
    }
    let published = match github {
        None => {
            lines.push("no github.token: no GitHub Release published".to_owned());
            None
        }
        Some(github) => publish(github, app, releases.notes, &tag, &info, &mut lines).await?,
    };
    let deployed = match &releases.deploy {
        None => None,
        Some(env) => {
            let (line, id) = deploy(job, app, env, &tag, sha, queue).await?;
            lines.push(line.clone());
            let progress = match id.map(|id| links.job_url(id)) {
                None => String::new(),
                Some(Some(url)) => format!("; its progress: {url}"),
                Some(None) => "; its own message follows its progress".to_owned(),
            };
            Some(line + &progress)
        }
    };
    let announcement = published.map(|p| {
        let deploy = deployed.map_or(String::new(), |line| format!("{line}\n"));
        format!("{}\n{deploy}{}", p.head, p.notes)
    });
    Ok(Released {
        lines,
        announcement,
    })
}

/// A release this job published, for the announcement.
struct Published {
    /// What, since when, and the release's page.
    head: String,
    notes: String,
}

/// Publishes the GitHub Release of `tag` at `info.commit`, unless it exists.
async fn publish(
    github: &GitHub,
    app: &App,
    notes: Notes,
    tag: &GitRef,
    info: &ReleaseInfo,
    lines: &mut Vec<String>,
) -> anyhow::Result<Option<Published>> {
    if let Some(existing) = github.release_by_tag(&app.repo, tag.as_str()).await? {
        lines.push(format!(
            "GitHub Release {tag} exists already (id {})",
            existing.id
        ));
        return Ok(None);
    }
    let sha = &info.commit;
    let previous = info.previous.as_ref();
    let notes = match (notes, previous) {
        (Notes::Github, _) => {
            let previous = previous.map(|p| p.name.as_str());
            github
                .generate_notes(&app.repo, tag.as_str(), sha.as_str(), previous)
                .await?
        }
        (Notes::Commits, Some(previous)) => {
            let comparison = github.compare(&app.repo, &previous.commit, sha).await?;
            notes::since(&previous.name, &comparison)
        }
        (Notes::Commits, None) => notes::FIRST_RELEASE.to_owned(),
    };
    let prerelease = is_prerelease(tag.as_str());
    let release = NewRelease {
        tag: tag.to_string(),
        sha: sha.to_string(),
        notes,
        prerelease,
    };
    let created = match github.create_release(&app.repo, &release).await {
        Ok(created) => created,
        // Someone published it between the look-up above and this create: theirs stands.
        Err(err) if err.already_exists() => {
            let existing = github
                .release_by_tag(&app.repo, tag.as_str())
                .await?
                .ok_or(err)?;
            lines.push(format!(
                "GitHub Release {tag} was created meanwhile (id {}): left as it is",
                existing.id
            ));
            return Ok(None);
        }
        Err(err) => return Err(err.into()),
    };
    let kind = if prerelease { "pre-release" } else { "release" };
    let since = previous.map_or(String::new(), |p| format!(" (since {})", p.name));
    lines.push(format!(
        "published GitHub {kind} {tag}{since}, id {}",
        created.id
    ));
    Ok(Some(Published {
        head: format!(
            ":package: {} {kind}: `{tag}`{since} ({})\n{}",
            app.name,
            sha.short(),
            created.url
        ),
        notes: release.notes,
    }))
}

/// Queues the deploy of the release to `env`: the line for the log, and the deploy's job id.
async fn deploy(
    job: &Job,
    app: &App,
    env: &Name,
    tag: &GitRef,
    sha: &Sha,
    queue: &Queue,
) -> anyhow::Result<(String, Option<i64>)> {
    let deploy = NewJob {
        kind: JobKind::Deploy,
        app: app.name.clone(),
        env: env.clone(),
        git_ref: Some(tag.clone()),
        sha: Some(sha.clone()),
        requested_by: job.requested_by.clone(),
        source: "release",
        target_release: None,
        ephemeral: None,
        supersede: true,
        approval: app.environments.get(env).and_then(NewJob::approval_of),
    };
    // A retried release job finds the deploy its first attempt queued.
    let id = format!("release:{}:deploy", job.id);
    let delivery = Delivery {
        id: &id,
        source: "release",
        event: "deploy",
    };
    Ok(match queue.enqueue(Some(delivery), &[deploy]).await? {
        Enqueued::Created(ids) => (
            format!("queued the deploy of {tag} to {env} (job {})", ids[0]),
            Some(ids[0]),
        ),
        Enqueued::Duplicate(ids) => (
            format!("the deploy of {tag} to {env} is job {}", ids[0]),
            Some(ids[0]),
        ),
        Enqueued::Refused(why) => (
            format!("the deploy of {tag} to {env} was refused: {why}"),
            None,
        ),
    })
}

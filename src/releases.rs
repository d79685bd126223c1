//! Tags become releases: a tag push matching `[apps.<app>.releases] tags` queues a `release`
//! job, which checks the tag's commit is on the release branch (if configured), publishes a
//! GitHub Release with notes since the previous matching tag (GitHub's generated notes, or the
//! commit subjects), marks semver pre-releases (`v1.4.0-rc.1`), then queues the deploy of the
//! tag (if configured). A redelivered tag push is a duplicate delivery; a release that already
//! exists on GitHub is left as it is.

use crate::config::{App, Notes};
use crate::deploy::source::Mirrors;
use crate::domain::{GitRef, Name, Sha};
use crate::github::{GitHub, NewRelease};
use crate::queue::{Delivery, Enqueued, NewJob, Queue};
use crate::store::{Job, JobKind};

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

/// `v1.4.0-rc.1` and `1.4.0-beta`: a semver version with a pre-release part.
pub fn is_prerelease(tag: &str) -> bool {
    let version = tag.strip_prefix('v').unwrap_or(tag);
    let version = version.split('+').next().unwrap_or(version);
    match version.split_once('-') {
        Some((core, pre)) => {
            let parts: Vec<&str> = core.split('.').collect();
            parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                && !pre.is_empty()
        }
        None => false,
    }
}

/// What a release job did.
#[derive(Debug, Default)]
pub struct Released {
    /// One line per thing done, for the job's log.
    pub lines: Vec<String>,
    /// For the team's chat, when this job published the release (not when it existed already).
    pub announcement: Option<String>,
}

/// Most characters of the notes a chat announcement quotes.
const ANNOUNCED_NOTES: usize = 1500;

/// Runs a release job.
pub async fn run(
    job: &Job,
    app: &App,
    mirrors: &Mirrors,
    github: Option<&GitHub>,
    queue: &Queue,
) -> anyhow::Result<Released> {
    let releases = app
        .releases
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("releases of {} are no longer configured", app.name))?;
    let tag = GitRef::parse(&job.git_ref)?;
    let sha = Sha::parse(&job.sha)?;
    let info = mirrors
        .release_info(
            app,
            &tag,
            &sha,
            releases.tags.glob().glob(),
            releases.branch.as_ref(),
        )
        .await?;
    if let (Some(false), Some(branch)) = (info.on_branch, &releases.branch) {
        anyhow::bail!(
            "tag {tag} is on commit {}, which is not on branch {branch}: no release \
             (apps.{}.releases.branch)",
            sha.short(),
            app.name
        );
    }
    let mut lines = Vec::new();
    let mut published = None;
    let prerelease = is_prerelease(tag.as_str());
    match github {
        None => lines.push("no github.token: no GitHub Release published".to_owned()),
        Some(github) => match github.release_by_tag(&app.repo, tag.as_str()).await? {
            Some(id) => lines.push(format!("GitHub Release {tag} exists already (id {id})")),
            None => {
                let previous = info.previous.as_deref();
                let notes = match releases.notes {
                    Notes::Github => {
                        github
                            .generate_notes(&app.repo, tag.as_str(), sha.as_str(), previous)
                            .await?
                    }
                    Notes::Commits => commit_notes(previous, &info.commits),
                };
                let release = NewRelease {
                    tag: tag.to_string(),
                    sha: sha.to_string(),
                    notes,
                    prerelease,
                };
                let (id, url) = github.create_release(&app.repo, &release).await?;
                let kind = if prerelease { "pre-release" } else { "release" };
                let since = previous.map_or(String::new(), |p| format!(" (since {p})"));
                lines.push(format!("published GitHub {kind} {tag}{since}, id {id}"));
                let notes: String = release.notes.chars().take(ANNOUNCED_NOTES).collect();
                let cut = if notes.len() < release.notes.len() {
                    "\n…"
                } else {
                    ""
                };
                published = Some(format!(
                    ":package: {} {}: `{tag}`{since} ({})\n{url}\n{notes}{cut}",
                    app.name,
                    if prerelease { "pre-release" } else { "release" },
                    sha.short()
                ));
            }
        },
    }
    if let Some(env) = &releases.deploy {
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
        let line = match queue.enqueue(Some(delivery), &[deploy]).await? {
            Enqueued::Created(ids) => {
                format!("queued the deploy of {tag} to {env} (job {})", ids[0])
            }
            Enqueued::Duplicate(ids) => format!("the deploy of {tag} to {env} is job {}", ids[0]),
            Enqueued::Refused(why) => format!("the deploy of {tag} to {env} was refused: {why}"),
        };
        lines.push(line);
    }
    let announcement = published.map(|text| match lines.last() {
        Some(deploy) if releases.deploy.is_some() => format!("{text}\n{deploy}"),
        _ => text,
    });
    Ok(Released {
        lines,
        announcement,
    })
}

/// Release notes from commit subjects.
fn commit_notes(previous: Option<&str>, commits: &[String]) -> String {
    let mut notes = match previous {
        Some(previous) => format!("Changes since {previous}:\n\n"),
        None => "Changes:\n\n".to_owned(),
    };
    for commit in commits {
        notes.push_str(&format!("* {commit}\n"));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_pre_releases() {
        for (tag, pre) in [
            ("v1.4.0-rc.1", true),
            ("1.4.0-beta", true),
            ("v1.4.0-rc.1+build.5", true),
            ("v1.4.0", false),
            ("v1.4.0+build.5", false),
            ("v1.4-rc.1", false),
            ("release-2026", false),
            ("v1.4.0-", false),
        ] {
            assert_eq!(is_prerelease(tag), pre, "{tag}");
        }
    }

    #[test]
    fn commit_notes_list_the_subjects() {
        let commits = ["faster deploys (1a2b3c4)".to_owned()];
        assert_eq!(
            commit_notes(Some("v1.0.0"), &commits),
            "Changes since v1.0.0:\n\n* faster deploys (1a2b3c4)\n"
        );
    }
}

//! Operator requests — deploy a ref (or again the commit of a failed deploy), roll back —
//! checked against config and history, then queued. The CLI, the API and Slack go through these same functions.
//!
//! An environment is a configured one or an ephemeral one that exists now (made from a branch).
//! An ephemeral environment deploys only its own branch: it is that branch's environment.

use crate::config::Config;
use crate::deploy::source::Mirrors;
use crate::domain::{GitRef, Name, ReleaseId, Sha};
use crate::queue::{Delivery, Enqueued, EphemeralEnv, NewJob, Queue};
use crate::store::{EphemeralRow, Job, JobKind, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(message: impl Into<String>) -> RequestError {
    RequestError::Invalid(message.into())
}

/// Checks that `app`/`env` are configured, naming the known ones when not.
pub fn environment(config: &Config, app: &str, env: &str) -> Result<(Name, Name), RequestError> {
    let Some(a) = config.app(app) else {
        let known: Vec<_> = config.apps.keys().map(Name::as_str).collect();
        return Err(invalid(format!(
            "unknown app {app:?} (known: {})",
            known.join(", ")
        )));
    };
    match Name::parse(env)
        .ok()
        .filter(|e| a.environments.contains_key(e))
    {
        Some(env) => Ok((a.name.clone(), env)),
        None => {
            let known: Vec<_> = a.environments.keys().map(Name::as_str).collect();
            Err(invalid(format!(
                "unknown environment {env:?} of {app} (known: {})",
                known.join(", ")
            )))
        }
    }
}

/// Where a request goes: a configured environment, or an ephemeral one that exists now.
pub enum Target {
    Static {
        app: Name,
        env: Name,
    },
    Ephemeral {
        app: Name,
        env: Name,
        row: Box<EphemeralRow>,
    },
}

impl Target {
    pub fn app(&self) -> &Name {
        match self {
            Self::Static { app, .. } | Self::Ephemeral { app, .. } => app,
        }
    }

    pub fn env(&self) -> &Name {
        match self {
            Self::Static { env, .. } | Self::Ephemeral { env, .. } => env,
        }
    }
}

/// Resolves `app`/`env` to a configured environment, or else to an existing ephemeral one;
/// the refusal names the configured ones.
pub async fn target(
    queue: &Queue,
    config: &Config,
    app: &str,
    env: &str,
) -> Result<Target, RequestError> {
    let refusal = match environment(config, app, env) {
        Ok((app, env)) => return Ok(Target::Static { app, env }),
        Err(refusal) => refusal,
    };
    if let (Some(a), Ok(name)) = (config.app(app), Name::parse(env))
        && let Some(row) = queue.store().ephemeral_env(a.name.as_str(), env).await?
    {
        return Ok(Target::Ephemeral {
            app: a.name.clone(),
            env: name,
            row: Box::new(row),
        });
    }
    Err(refusal)
}

/// Who asks, and through what.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub requested_by: &'a str,
    pub source: &'static str,
    /// The request as its channel identifies it: a repeated one (a chat retry) returns the job
    /// the first one queued instead of queueing another.
    pub delivery: Option<Delivery<'a>>,
}

/// Queues a deploy of what `git_ref` names (a branch, tag or commit id).
///
/// A branch or tag the app's last fetch saw is queued by its name, and the worker looks its
/// commit up when the deploy starts: the answer waits for no fetch, and the deploy ships what
/// the ref names then. Anything else (a commit id, a ref not seen yet: perhaps a typo) is
/// looked up now, after a fetch, and refused at once if it names nothing. So is a deploy that
/// needs approval: its approvers approve one commit.
pub async fn deploy(
    queue: &Queue,
    config: &Config,
    mirrors: &Mirrors,
    (app, env): (&str, &str),
    git_ref: &str,
    origin: Origin<'_>,
) -> Result<i64, RequestError> {
    let target = target(queue, config, app, env).await?;
    let git_ref = GitRef::parse(git_ref).map_err(|e| invalid(e.to_string()))?;
    // Refused before the ref is looked up.
    ephemeral_env(&target, &git_ref)?;
    let app_config = config.app(target.app().as_str()).expect("checked above");
    let sha = if approval(config, &target).is_none() && mirrors.has_seen(app_config, &git_ref) {
        None
    } else {
        // A repeated request (a chat retry, or a replay within Slack's window) is answered
        // from what the first one queued, before the fetch would cost a round trip to the
        // repository per repeat. `enqueue` still settles concurrent first arrivals.
        if let Some(delivery) = origin.delivery
            && let Some(&id) = queue.store().delivery_jobs(delivery.id).await?.first()
        {
            return Ok(id);
        }
        let sha = mirrors.resolve(app_config, &git_ref).await;
        Some(sha.map_err(|e| invalid(format!("{e:#}")))?)
    };
    enqueue_deploy(queue, config, &target, (git_ref, sha), origin).await
}

/// Queues a deploy of the ref and commit `job` (a deploy) deployed: a retry of it, checked as
/// any deploy is. A job that failed before it looked its ref up deploys the ref again, its
/// commit looked up when it starts.
pub async fn redeploy(
    queue: &Queue,
    config: &Config,
    job: &Job,
    origin: Origin<'_>,
) -> Result<i64, RequestError> {
    if job.kind != JobKind::Deploy {
        return Err(invalid(format!(
            "job #{} is a {}: only deploys are retried",
            job.id,
            job.kind.as_str()
        )));
    }
    let target = target(queue, config, &job.app, &job.env).await?;
    let git_ref = GitRef::parse(&job.git_ref).map_err(|e| invalid(e.to_string()))?;
    let sha = match job.sha.as_str() {
        "" if approval(config, &target).is_some() => {
            return Err(invalid(format!(
                "job #{} never looked its commit up, and the approvers of {}/{} approve a \
                 commit: deploy {} again",
                job.id, job.app, job.env, job.git_ref
            )));
        }
        "" => None,
        sha => Some(Sha::parse(sha).map_err(|e| invalid(e.to_string()))?),
    };
    enqueue_deploy(queue, config, &target, (git_ref, sha), origin).await
}

/// An ephemeral environment deploys only its own branch: the environment a deploy of
/// `git_ref` to `target` updates, if it is one.
fn ephemeral_env(target: &Target, git_ref: &GitRef) -> Result<Option<EphemeralEnv>, RequestError> {
    Ok(match target {
        Target::Static { .. } => None,
        Target::Ephemeral { app, env, row } => {
            if row.branch != git_ref.as_str() {
                return Err(invalid(format!(
                    "{app}/{env} is the environment of branch {:?} and deploys only that \
                     branch, not {git_ref:?}",
                    row.branch
                )));
            }
            Some(EphemeralEnv {
                template: Name::parse(&row.template).map_err(|e| invalid(e.to_string()))?,
                branch: git_ref.clone(),
                hostname: row.hostname.clone(),
            })
        }
    })
}

async fn enqueue_deploy(
    queue: &Queue,
    config: &Config,
    target: &Target,
    (git_ref, sha): (GitRef, Option<Sha>),
    origin: Origin<'_>,
) -> Result<i64, RequestError> {
    let ephemeral = ephemeral_env(target, &git_ref)?;
    let job = NewJob {
        kind: JobKind::Deploy,
        app: target.app().clone(),
        env: target.env().clone(),
        git_ref: Some(git_ref),
        sha,
        requested_by: origin.requested_by.to_owned(),
        source: origin.source,
        target_release: None,
        ephemeral,
        supersede: false,
        approval: approval(config, target),
    };
    first_id(queue.enqueue(origin.delivery, &[job]).await?)
}

/// Queues a rollback of `app`/`env` to `to`, or to the release live before the current one.
pub async fn rollback(
    queue: &Queue,
    config: &Config,
    (app, env): (&str, &str),
    to: Option<&str>,
    origin: Origin<'_>,
) -> Result<i64, RequestError> {
    let target = target(queue, config, app, env).await?;
    let approval = approval(config, &target);
    let (app, env) = (target.app().clone(), target.env().clone());
    let history = queue
        .store()
        .release_history(app.as_str(), env.as_str(), 100)
        .await?;
    let Some(live) = history.first() else {
        return Err(invalid(format!("nothing was deployed to {app}/{env} yet")));
    };
    let target = match to {
        Some(wanted) => history
            .iter()
            .find(|d| d.release_id == wanted)
            .ok_or_else(|| {
                let known: Vec<_> = history
                    .iter()
                    .take(10)
                    .map(|d| d.release_id.as_str())
                    .collect();
                invalid(format!(
                    "release {wanted:?} was never live on {app}/{env} (recent: {})",
                    known.join(", ")
                ))
            })?,
        None => history.get(1).ok_or_else(|| {
            invalid(format!(
                "{app}/{env} has no release before {}",
                live.release_id
            ))
        })?,
    };
    if target.release_id == live.release_id {
        return Err(invalid(format!(
            "release {} is already live on {app}/{env}",
            live.release_id
        )));
    }
    let job = NewJob {
        kind: JobKind::Rollback,
        app,
        env,
        git_ref: Some(GitRef::parse(&target.git_ref).map_err(|e| invalid(e.to_string()))?),
        sha: Some(Sha::parse(&target.sha).map_err(|e| invalid(e.to_string()))?),
        requested_by: origin.requested_by.to_owned(),
        source: origin.source,
        target_release: Some(ReleaseId::from_stored(target.release_id.clone())),
        ephemeral: None,
        supersede: false,
        approval,
    };
    first_id(queue.enqueue(origin.delivery, &[job]).await?)
}

/// The approvals a deploy or rollback of `target` needs.
fn approval(config: &Config, target: &Target) -> Option<(u32, std::time::Duration)> {
    config
        .environment(target.app().as_str(), target.env().as_str())
        .and_then(NewJob::approval_of)
}

fn first_id(enqueued: Enqueued) -> Result<i64, RequestError> {
    match enqueued {
        Enqueued::Created(ids) | Enqueued::Duplicate(ids) => ids
            .first()
            .copied()
            .ok_or_else(|| invalid("nothing was queued")),
        Enqueued::Refused(why) => Err(invalid(why)),
    }
}

//! GitHub Deployments: every deploy or rollback job is a deployment of its environment
//! (`transient_environment` for ephemeral ones), with statuses `in_progress` then `success`
//! (with the environment's URL and the job's log URL) or `failure`; a teardown marks the
//! environment's last deployment `inactive`. The deployment id is stored on the job, so the
//! worker that finishes a job reports to the deployment the one that started it created.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{News, Notifier, Stage};
use crate::github::{GitHub, NewDeployment, Status, StatusState};
use crate::queue::Outcome;
use crate::store::{JobKind, Store};

pub struct Deployments {
    pub github: GitHub,
    pub store: Store,
    /// `github.public_url`, for each status's `log_url`.
    pub public_url: Option<String>,
}

impl Notifier for Deployments {
    fn name(&self) -> &'static str {
        "github_deployments"
    }

    fn notify<'a>(&'a self, news: &'a News<'a>) -> BoxFuture<'a, Result<(), String>> {
        self.report(news).boxed()
    }
}

impl Deployments {
    async fn report(&self, news: &News<'_>) -> Result<(), String> {
        let job = news.job;
        let repo = news.app.repo.as_str();
        let log_url = self
            .public_url
            .as_ref()
            .map(|base| format!("{base}/api/jobs/{}", job.id));
        let status = |state, description: String| Status {
            state,
            environment_url: news.env.url.clone(),
            log_url: log_url.clone(),
            description,
        };
        match (job.kind, &news.stage) {
            // Progress is in slipway's own log, which the deployment links to.
            (_, Stage::AwaitingApproval | Stage::Progress(_))
            | (JobKind::Teardown, Stage::Started) => Ok(()),
            (JobKind::Teardown, Stage::Finished(outcome)) => {
                let Outcome::Succeeded { .. } = outcome else {
                    return Ok(());
                };
                let last = self
                    .store
                    .last_github_deployment(&job.app, &job.env)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(id) = last else { return Ok(()) };
                let gone = Status {
                    environment_url: None,
                    ..status(StatusState::Inactive, format!("{} torn down", job.env))
                };
                self.github
                    .set_status(repo, id, &gone)
                    .await
                    .map_err(|e| e.to_string())
            }
            (_, Stage::Started) => {
                let deployment = NewDeployment {
                    git_ref: job.sha.clone(),
                    environment: job.env.clone(),
                    description: format!(
                        "{} {} by {}",
                        job.kind.as_str(),
                        job.git_ref,
                        job.requested_by
                    ),
                    transient: news.env.site.is_some(),
                    production: news.env.production,
                };
                let id = match job.github_deployment_id {
                    // A retried job reports to the deployment its first attempt created.
                    Some(id) => id as u64,
                    None => {
                        let id = self
                            .github
                            .create_deployment(repo, &deployment)
                            .await
                            .map_err(|e| e.to_string())?;
                        self.store
                            .set_github_deployment(job.id, id)
                            .await
                            .map_err(|e| e.to_string())?;
                        id
                    }
                };
                let running = status(StatusState::InProgress, format!("job {} running", job.id));
                self.github
                    .set_status(repo, id, &running)
                    .await
                    .map_err(|e| e.to_string())
            }
            (_, Stage::Finished(outcome)) => {
                let Some(id) = self
                    .store
                    .job(job.id)
                    .await
                    .map_err(|e| e.to_string())?
                    .and_then(|j| j.github_deployment_id)
                else {
                    return Err("the job has no GitHub deployment to report to".into());
                };
                let done = match outcome {
                    Outcome::Succeeded { message } => status(StatusState::Success, message.clone()),
                    // A cancelled deploy switched nothing: to GitHub it did not go live.
                    Outcome::Failed { error: why, .. } | Outcome::Cancelled { message: why } => {
                        Status {
                            environment_url: None,
                            ..status(StatusState::Failure, why.clone())
                        }
                    }
                };
                self.github
                    .set_status(repo, id as u64, &done)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }
}

//! Slack: one message per job in its channel (the environment's `channel`, else the app's,
//! else `slack.channel`), posted when the job starts, edited in place as its hosts finish steps
//! (at most once per [`super::PROGRESS_EVERY`]) and when it ends, with the outcome and a button:
//! Roll back after a successful deploy, Retry after a failed one. A failure also gets a thread
//! reply with the failing step's log, and the requester (when they asked in Slack) a direct
//! message.
//!
//! The message's channel and `ts` are stored on the job, so the worker that finishes a job edits
//! the message the one that started it posted, and a retried attempt edits that message rather
//! than posting another. The thread reply and the direct message are claimed in `job_notices`
//! before they are sent, so a restart or a retried attempt never sends them twice.

use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::SecretString;
use slack_morphism::SlackMessageContent;

use super::{News, Notifier, Stage};
use crate::config::App;
use crate::mask::Masker;
use crate::queue::Outcome;
use crate::slack::api::{Posted, SlackApi};
use crate::slack::messages::{self, Action};
use crate::store::{Job, JobKind, Notice, Store, now_ms};

pub struct SlackNotifier {
    pub api: SlackApi,
    pub token: SecretString,
    /// Where messages go unless the app or environment names another channel (`slack.channel`).
    pub channel: Option<String>,
    pub store: Store,
    /// Every text is masked before it leaves: errors and refs are shown as they were recorded.
    pub masker: Masker,
}

impl Notifier for SlackNotifier {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn notify<'a>(&'a self, news: &'a News<'a>) -> BoxFuture<'a, Result<(), String>> {
        self.report(news).boxed()
    }

    /// In the app's channel, else `slack.channel` (a release is the app's, not an
    /// environment's).
    fn announce<'a>(&'a self, app: &'a App, text: &'a str) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let Some(channel) = app.channel.as_ref().or(self.channel.as_ref()) else {
                return Ok(());
            };
            let text = messages::announcement(&self.masker.mask(text));
            let content = messages::job_message(text, None);
            self.api
                .post(&self.token, channel, content)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
        .boxed()
    }
}

impl SlackNotifier {
    async fn report(&self, news: &News<'_>) -> Result<(), String> {
        let channel = news
            .env
            .channel
            .as_ref()
            .or(news.app.channel.as_ref())
            .or(self.channel.as_ref());
        let Some(channel) = channel else {
            // No channel for this environment: nothing to say in Slack.
            return Ok(());
        };
        match news.stage {
            Stage::AwaitingApproval => {
                let text = self.mask(messages::approval_needed(news.job));
                let posted = self
                    .api
                    .post(
                        &self.token,
                        channel,
                        messages::approval_message(text, news.job.id),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                // The job's later progress edits this message (and so removes the buttons).
                self.store
                    .set_slack_message(news.job.id, &posted.channel, &posted.ts)
                    .await
                    .map_err(|e| e.to_string())
            }
            // The claim's copy of the job: it has the message of an earlier attempt, if any.
            Stage::Started => {
                let content = messages::job_message(self.mask(messages::started(news.job)), None);
                self.show(news.job, channel, content).await
            }
            Stage::Progress(progress) => {
                // As stored now: the message this attempt posted is not in the claim's copy.
                let job = self.stored(news.job.id).await?;
                let Some(posted) = posted(&job) else {
                    // The start's post failed: the end posts one.
                    return Ok(());
                };
                let text = self.mask(messages::progress(&job, progress));
                self.api
                    .update(&self.token, &posted, messages::job_message(text, None))
                    .await
                    .map_err(|e| e.to_string())
            }
            Stage::Finished(outcome) => self.finished(news, outcome, channel).await,
        }
    }

    async fn finished(
        &self,
        news: &News<'_>,
        outcome: &Outcome,
        channel: &str,
    ) -> Result<(), String> {
        let job = self.stored(news.job.id).await?;
        let took = job.started_at.map(|started| now_ms() - started);
        let text = messages::finished(&job, outcome, news.env.url.as_deref(), took);
        let action = match (outcome, job.kind) {
            (Outcome::Succeeded { .. }, JobKind::Deploy) => Some(Action::RollBack(job.lane())),
            (Outcome::Failed { .. }, JobKind::Deploy) => Some(Action::Retry(job.id)),
            _ => None,
        };
        let shown = self
            .show(
                &job,
                channel,
                messages::job_message(self.mask(text), action),
            )
            .await;
        let Outcome::Failed { error, result } = outcome else {
            return shown;
        };
        // Each is tried even if an earlier one failed; the errors are reported together.
        let mut errors: Vec<String> = shown.err().into_iter().collect();
        let job = self.stored(job.id).await?;
        if let (Some(posted), Some(log)) = (posted(&job), messages::failure_log(result)) {
            let content = messages::job_message(self.mask(log), None);
            let sent = self
                .once(
                    job.id,
                    Notice::Thread,
                    self.api.reply(&self.token, &posted, content),
                )
                .await;
            errors.extend(sent.err());
        }
        if let Some(user) = messages::slack_requester(&job) {
            let text = self.mask(messages::failed_dm(&job, error));
            let content = messages::job_message(text, None);
            let sent = self
                .once(
                    job.id,
                    Notice::Dm,
                    self.api.post(&self.token, user, content),
                )
                .await;
            errors.extend(sent.err());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Sends `notice` of job `id` unless it was sent (or claimed) before.
    async fn once(
        &self,
        id: i64,
        notice: Notice,
        send: impl Future<Output = Result<Posted, crate::slack::api::SlackError>>,
    ) -> Result<(), String> {
        if !self
            .store
            .claim_notice(id, notice)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(());
        }
        let sent = send.await;
        let ts = sent.as_ref().ok().map(|posted| posted.ts.as_str());
        self.store
            .settle_notice(id, notice, ts)
            .await
            .map_err(|e| e.to_string())?;
        sent.map(drop).map_err(|e| e.to_string())
    }

    /// Edits the job's message, or posts it (and stores where) if it has none yet.
    async fn show(
        &self,
        job: &Job,
        channel: &str,
        content: SlackMessageContent,
    ) -> Result<(), String> {
        if let Some(posted) = posted(job) {
            return self
                .api
                .update(&self.token, &posted, content)
                .await
                .map_err(|e| e.to_string());
        }
        // Not posted yet (or the start's post failed): post this one.
        let posted = self
            .api
            .post(&self.token, channel, content)
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .set_slack_message(job.id, &posted.channel, &posted.ts)
            .await
            .map_err(|e| e.to_string())
    }

    async fn stored(&self, id: i64) -> Result<Job, String> {
        self.store
            .job(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the job vanished".to_owned())
    }

    fn mask(&self, text: String) -> String {
        self.masker.mask(&text).into_owned()
    }
}

/// Where the job's message is, once posted.
fn posted(job: &Job) -> Option<Posted> {
    Some(Posted {
        channel: job.slack_channel.clone()?,
        ts: job.slack_ts.clone()?,
    })
}

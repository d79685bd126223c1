//! Slack: one message per job in the configured channel, posted when the job starts and edited
//! in place when it ends, with the outcome (and, after a successful deploy, a Roll back button).
//! The message's channel and `ts` are stored on the job, so the worker that finishes a job edits
//! the message the one that started it posted, and a retried attempt edits that message rather
//! than posting another.

use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::SecretString;

use super::{News, Notifier, Stage};
use crate::mask::Masker;
use crate::queue::Outcome;
use crate::slack::api::{Posted, SlackApi};
use crate::slack::messages;
use crate::store::{JobKind, Store, now_ms};

pub struct Progress {
    pub api: SlackApi,
    pub token: SecretString,
    /// Where new messages go (`slack.channel`).
    pub channel: String,
    pub store: Store,
    /// Every text is masked before it leaves: errors and refs are shown as they were recorded.
    pub masker: Masker,
}

impl Notifier for Progress {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn notify<'a>(&'a self, news: &'a News<'a>) -> BoxFuture<'a, Result<(), String>> {
        self.report(news).boxed()
    }

    fn announce<'a>(&'a self, text: &'a str) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let text = messages::announcement(&self.masker.mask(text));
            let content = messages::job_message(text, None);
            self.api
                .post(&self.token, &self.channel, content)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
        .boxed()
    }
}

impl Progress {
    async fn report(&self, news: &News<'_>) -> Result<(), String> {
        if let Stage::AwaitingApproval = news.stage {
            let text = self
                .masker
                .mask(&messages::approval_needed(news.job))
                .into_owned();
            let posted = self
                .api
                .post(
                    &self.token,
                    &self.channel,
                    messages::approval_message(text, news.job.id),
                )
                .await
                .map_err(|e| e.to_string())?;
            // The job's later progress edits this message (and so removes the buttons).
            return self
                .store
                .set_slack_message(news.job.id, &posted.channel, &posted.ts)
                .await
                .map_err(|e| e.to_string());
        }
        let (text, rollback, job) = match news.stage {
            Stage::AwaitingApproval => unreachable!("answered above"),
            // The claim's copy of the job: it has the message of an earlier attempt, if any.
            Stage::Started => (messages::started(news.job), None, news.job.clone()),
            Stage::Finished(outcome) => {
                // As stored now: the message this attempt posted is not in the claim's copy.
                let job = self
                    .store
                    .job(news.job.id)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("the job vanished")?;
                let took = job.started_at.map(|started| now_ms() - started);
                let text = messages::finished(&job, outcome, news.env.url.as_deref(), took);
                let succeeded = matches!(outcome, Outcome::Succeeded { .. });
                let rollback = (succeeded && job.kind == JobKind::Deploy).then(|| job.lane());
                (text, rollback, job)
            }
        };
        let content =
            messages::job_message(self.masker.mask(&text).into_owned(), rollback.as_deref());
        match (job.slack_channel, job.slack_ts) {
            (Some(channel), Some(ts)) => self
                .api
                .update(&self.token, &Posted { channel, ts }, content)
                .await
                .map_err(|e| e.to_string()),
            // Not posted yet (or the start's post failed): post this one.
            _ => {
                let posted = self
                    .api
                    .post(&self.token, &self.channel, content)
                    .await
                    .map_err(|e| e.to_string())?;
                self.store
                    .set_slack_message(job.id, &posted.channel, &posted.ts)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }
}

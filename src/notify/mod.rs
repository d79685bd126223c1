//! Telling the outside world about jobs: each [`Notifier`] hears when a job starts, how far it
//! got (at most once per [`PROGRESS_EVERY`]) and how it ended (GitHub Deployments in [`github`],
//! a Slack channel in [`slack`]). A notifier that fails or hangs never fails or stalls the job:
//! its error is logged and counted, and it gets [`NOTIFY_TIMEOUT`].

pub mod github;
pub mod slack;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{App, Environment};
use crate::deploy::journal::Progress;
use crate::queue::Outcome;
use crate::store::Job;
use crate::telemetry::Metrics;

/// The longest one notifier may take over one piece of news.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(15);

/// The least time between two reports of one job (its start, its progress): Slack allows about
/// one `chat.update` per second per channel, and a deploy of many steps on many hosts would
/// otherwise ask for one per step. The end is always reported, at once.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A job, where it runs, and what just happened to it.
pub struct News<'a> {
    pub job: &'a Job,
    pub app: &'a App,
    pub env: &'a Environment,
    pub stage: Stage<'a>,
}

pub enum Stage<'a> {
    /// The job waits for approvals: ask the people who may give them.
    AwaitingApproval,
    Started,
    /// Steps ended since the last report: where each host is now.
    Progress(&'a Progress),
    Finished(&'a Outcome),
}

pub trait Notifier: Send + Sync {
    /// A short name for logs and the failure metric.
    fn name(&self) -> &'static str;
    fn notify<'a>(&'a self, news: &'a News<'a>) -> BoxFuture<'a, Result<(), String>>;
    /// Something for `app`'s team to read that is not about one job's progress (a new
    /// release). Notifiers that are not chats ignore it.
    fn announce<'a>(&'a self, app: &'a App, text: &'a str) -> BoxFuture<'a, Result<(), String>> {
        let _ = (app, text);
        Box::pin(async { Ok(()) })
    }
}

/// Every configured notifier; tells each in turn.
#[derive(Clone, Default)]
pub struct Notifiers(Vec<Arc<dyn Notifier>>);

impl Notifiers {
    pub fn new(notifiers: Vec<Arc<dyn Notifier>>) -> Self {
        Self(notifiers)
    }

    pub async fn tell(&self, news: &News<'_>, metrics: &Metrics) {
        self.each(metrics, |n| n.notify(news)).await;
    }

    /// Reports `job`'s progress as `progress` changes, the newest state each time and at most
    /// once per [`PROGRESS_EVERY`] (counted from the start's report, just sent), until `done`
    /// fires. A report under way then is finished first, so the job's end is reported last.
    pub async fn follow(
        &self,
        (job, app, env): (&Job, &App, &Environment),
        mut progress: watch::Receiver<Progress>,
        done: &CancellationToken,
        metrics: &Metrics,
    ) {
        let mut last = Instant::now();
        loop {
            tokio::select! {
                biased;
                () = done.cancelled() => return,
                changed = progress.changed() => if changed.is_err() { return },
            }
            // Later changes while waiting are folded into this report.
            tokio::select! {
                biased;
                () = done.cancelled() => return,
                () = tokio::time::sleep_until(last + PROGRESS_EVERY) => {}
            }
            let now = progress.borrow_and_update().clone();
            let news = News {
                job,
                app,
                env,
                stage: Stage::Progress(&now),
            };
            self.tell(&news, metrics).await;
            last = Instant::now();
        }
    }

    pub async fn announce(&self, app: &App, text: &str, metrics: &Metrics) {
        self.each(metrics, |n| n.announce(app, text)).await;
    }

    async fn each<'a>(
        &'a self,
        metrics: &Metrics,
        call: impl Fn(&'a dyn Notifier) -> BoxFuture<'a, Result<(), String>>,
    ) {
        for notifier in &self.0 {
            let failure = match tokio::time::timeout(NOTIFY_TIMEOUT, call(notifier.as_ref())).await
            {
                Ok(Ok(())) => continue,
                Ok(Err(err)) => err,
                Err(_) => format!("no answer within {}s", NOTIFY_TIMEOUT.as_secs()),
            };
            metrics
                .notifier_failures
                .with_label_values(&[notifier.name()])
                .inc();
            tracing::warn!(notifier = notifier.name(), error = %failure, "notifying failed");
        }
    }
}

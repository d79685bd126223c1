//! Telling the outside world about jobs: each [`Notifier`] hears when a job starts and how it
//! ended (GitHub Deployments in [`github`], a Slack channel in [`slack`]). A notifier that fails or hangs never fails or
//! stalls the job: its error is logged and counted, and it gets [`NOTIFY_TIMEOUT`].

pub mod github;
pub mod slack;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::config::{App, Environment};
use crate::queue::Outcome;
use crate::store::Job;
use crate::telemetry::Metrics;

/// The longest one notifier may take over one piece of news.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(15);

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
    Finished(&'a Outcome),
}

pub trait Notifier: Send + Sync {
    /// A short name for logs and the failure metric.
    fn name(&self) -> &'static str;
    fn notify<'a>(&'a self, news: &'a News<'a>) -> BoxFuture<'a, Result<(), String>>;
    /// Something for the team to read that is not about one job's progress (a new release).
    /// Notifiers that are not chats ignore it.
    fn announce<'a>(&'a self, text: &'a str) -> BoxFuture<'a, Result<(), String>> {
        let _ = text;
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

    pub async fn announce(&self, text: &str, metrics: &Metrics) {
        self.each(metrics, |n| n.announce(text)).await;
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

//! Prometheus metrics, one registry per service (so tests can run several in one process).

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::store::{Store, StoreError, on_reader};

pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route and status (webhooks: `/webhooks/github`, `status` = the answer).
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub job_seconds: HistogramVec,
    pub step_seconds: HistogramVec,
    pub lease_expiries: IntCounter,
    /// Notifications (GitHub Deployments, chat) that failed or timed out, by notifier.
    pub notifier_failures: IntCounterVec,
    queue_depth: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("slipway".into()), None).expect("a valid prefix");
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("valid metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "Handler latency by route")
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    1.0,
                ]),
            &["route"],
        )
        .expect("valid metric");
        let job_seconds = HistogramVec::new(
            HistogramOpts::new(
                "job_duration_seconds",
                "Job run time by app, env and outcome",
            )
            .buckets(vec![
                0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
            ]),
            &["app", "env", "outcome"],
        )
        .expect("valid metric");
        let step_seconds = HistogramVec::new(
            HistogramOpts::new(
                "step_duration_seconds",
                "Remote command (step) duration by status",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["status"],
        )
        .expect("valid metric");
        let lease_expiries = IntCounter::new(
            "lease_expiries_total",
            "Jobs returned to the queue after their worker's lease lapsed",
        )
        .expect("valid metric");
        let notifier_failures = IntCounterVec::new(
            Opts::new(
                "notifier_failures_total",
                "Notifications that failed or timed out, by notifier",
            ),
            &["notifier"],
        )
        .expect("valid metric");
        let queue_depth = IntGaugeVec::new(
            Opts::new("queue_jobs", "Jobs queued or running, by state and app/env"),
            &["state", "lane"],
        )
        .expect("valid metric");
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(job_seconds.clone()),
            Box::new(step_seconds.clone()),
            Box::new(lease_expiries.clone()),
            Box::new(notifier_failures.clone()),
            Box::new(queue_depth.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        Self {
            registry,
            requests,
            request_seconds,
            job_seconds,
            step_seconds,
            lease_expiries,
            notifier_failures,
            queue_depth,
        }
    }

    pub fn observe_request(&self, route: &str, status: u16, took: Duration) {
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.request_seconds
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition, with the queue depth read from the database now.
    pub async fn render(&self, store: &Store) -> Result<String, StoreError> {
        let depth: Vec<(String, String, i64)> = on_reader!(store, pool => sqlx::query_as(
            "SELECT state, lane, COUNT(*) FROM jobs WHERE state IN ('queued', 'running') \
             GROUP BY state, lane",
        )
        .fetch_all(pool)
        .await?);
        self.queue_depth.reset();
        for (state, lane, count) in depth {
            self.queue_depth
                .with_label_values(&[&state, &lane])
                .set(count);
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        Ok(String::from_utf8(out).expect("the text format is UTF-8"))
    }
}

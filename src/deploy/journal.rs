//! A running job's journal: its output lines (secrets masked, batched into the database by a
//! writer task so a chatty step costs one insert per batch, not per line), its step results, the
//! last lines of each host for the failure report, and each host's progress for whoever follows
//! the job (the chat message, through [`Journal::progress`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::mask::Masker;
use crate::store::{NewLogLine, NewStepResult, Store, now_ms};
use crate::telemetry::Metrics;

/// Lines of a failing host kept in the job result.
pub const TAIL_LINES: usize = 50;
const BATCH: usize = 500;
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// How far a job got: per host, the steps that ended so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub hosts: BTreeMap<String, HostProgress>,
}

/// One host's steps so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProgress {
    /// Steps that ended.
    pub done: usize,
    /// The last step that ended, and its `step_results.status` (`ok`, `failed`...).
    pub last: String,
    pub status: String,
}

pub struct Journal {
    store: Store,
    job_id: i64,
    attempt: i64,
    masker: Masker,
    metrics: Arc<Metrics>,
    lines: mpsc::UnboundedSender<NewLogLine>,
    writer: JoinHandle<()>,
    tails: Mutex<HashMap<String, VecDeque<String>>>,
    progress: watch::Sender<Progress>,
}

impl Journal {
    pub fn start(
        store: Store,
        job_id: i64,
        attempt: i64,
        masker: Masker,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (lines, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_lines(store.clone(), job_id, rx));
        Self {
            store,
            job_id,
            attempt,
            masker,
            metrics,
            lines,
            writer,
            tails: Mutex::default(),
            progress: watch::Sender::default(),
        }
    }

    /// Records one output line of `step` on `host`.
    pub fn line(&self, host: &str, step: &str, text: &str) {
        let line = self.masker.mask(text).into_owned();
        {
            let mut tails = self.tails.lock().expect("tail lock poisoned");
            let tail = tails.entry(host.to_owned()).or_default();
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.clone());
        }
        // The writer lives as long as the journal; a send can only fail after `finish`.
        let _ = self.lines.send(NewLogLine {
            at: now_ms(),
            host: host.to_owned(),
            step: step.to_owned(),
            line,
        });
    }

    /// Masks text that is about to leave the job (errors, results).
    pub fn mask(&self, text: &str) -> String {
        self.masker.mask(text).into_owned()
    }

    pub fn tail(&self, host: &str) -> Vec<String> {
        let tails = self.tails.lock().expect("tail lock poisoned");
        tails
            .get(host)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Follows the job's progress: a receiver that sees every step's end.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Step `step` on `host` ended with `status` (a `step_results.status` word), as the output
    /// of its chain shows it: progress for whoever follows the job.
    pub fn progressed(&self, host: &str, step: &str, status: &str) {
        self.progress.send_modify(|progress| {
            let host = progress
                .hosts
                .entry(host.to_owned())
                .or_insert_with(|| HostProgress {
                    done: 0,
                    last: String::new(),
                    status: String::new(),
                });
            host.done += 1;
            step.clone_into(&mut host.last);
            status.clone_into(&mut host.status);
        });
    }

    pub async fn step_result(
        &self,
        host: &str,
        idx: usize,
        name: &str,
        status: &str,
        exit_code: Option<i32>,
        started_at: i64,
    ) {
        let result = NewStepResult {
            job_id: self.job_id,
            attempt: self.attempt,
            host,
            idx: idx as i64,
            name,
            status,
            exit_code,
            started_at,
            duration_ms: now_ms() - started_at,
        };
        self.metrics
            .step_seconds
            .with_label_values(&[status])
            .observe(result.duration_ms as f64 / 1000.0);
        if let Err(err) = self.store.record_step(&result).await {
            tracing::warn!(job.id = self.job_id, error = %err, "could not record a step result");
        }
    }

    /// Flushes every line still buffered.
    pub async fn finish(self) {
        drop(self.lines);
        let _ = self.writer.await;
    }
}

async fn write_lines(store: Store, job_id: i64, mut rx: mpsc::UnboundedReceiver<NewLogLine>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let open = rx.recv_many(&mut batch, BATCH).await > 0;
        if open && batch.len() < BATCH {
            // Gather what else arrives shortly, so a burst becomes one insert.
            tokio::time::sleep(FLUSH_EVERY).await;
            while batch.len() < BATCH
                && let Ok(line) = rx.try_recv()
            {
                batch.push(line);
            }
        }
        if let Err(err) = store.append_log(job_id, &batch).await {
            tracing::warn!(job.id = job_id, error = %err, lines = batch.len(), "could not store log lines");
        }
        batch.clear();
        if !open {
            return;
        }
    }
}

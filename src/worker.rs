//! The worker pool: claim a job, keep its lease alive, run it, record how it ended.
//!
//! Each worker loops: return lapsed leases to the queue, claim the oldest runnable job, run it
//! with a heartbeat beside it. A heartbeat that finds the lease gone (another worker took the job
//! after we stalled) cancels the run, and the deploy's fence keeps it from switching anything;
//! one that finds a person's cancel stops the job the same way, and it ends `cancelled`
//! (`lease.rs`). While it runs, its progress goes to the notifiers. On shutdown workers stop
//! claiming and finish the job in hand.

mod lease;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use std::borrow::Cow;

use crate::clock::Clock;
use crate::config::{App, Config, Environment};
use crate::deploy::journal::Journal;
use crate::deploy::{Engine, Request};
use crate::domain::{GitRef, Name};
use crate::github::GitHub;
use crate::housekeeping;
use crate::mask::Masker;
use crate::notify::{News, Notifiers, Stage};
use crate::queue::{Claim, Lease, Outcome, Queue};
use crate::store::now_ms;
use crate::store::{EnvState, EphemeralRow, Job, JobKind, PortPolicy};
use crate::telemetry::{Metrics, Vitals};
use lease::{LeaseFence, Stop};

/// What every worker of this process shares.
pub struct Workers {
    pub queue: Queue,
    pub config: Arc<Config>,
    pub engine: Engine,
    pub masker: Masker,
    pub metrics: Arc<Metrics>,
    pub vitals: Arc<Vitals>,
    pub notifiers: Notifiers,
    /// GitHub's API, when a token is configured (reconcile reads branches through it).
    pub github: Option<GitHub>,
    /// What cleanup takes as now (idle times, TTLs).
    pub clock: Arc<dyn Clock>,
}

impl Workers {
    /// Runs `config.worker.concurrency` workers until `shutdown` fires and their jobs are done.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let id = format!(
            "{}:{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "slipway".into()),
            std::process::id()
        );
        let listener = tokio::spawn({
            let (queue, shutdown) = (self.queue.clone(), shutdown.clone());
            async move { queue.listen(shutdown).await }
        });
        // Shows the probes the pool is alive, even while every worker is busy with a long job.
        let pulse = tokio::spawn({
            let (vitals, every) = (self.vitals.clone(), self.config.worker.poll_interval);
            async move {
                loop {
                    vitals.worker_alive();
                    tokio::time::sleep(every).await;
                }
            }
        });
        // The workers claim as one owner, the replica: claims made together go in one
        // statement (see `Queue::claim`).
        let workers: Vec<_> = (0..self.config.worker.concurrency)
            .map(|_| {
                let this = self.clone();
                let shutdown = shutdown.clone();
                let owner = id.clone();
                tokio::spawn(async move { this.work(owner, shutdown).await })
            })
            .collect();
        futures::future::join_all(workers).await;
        listener.abort();
        pulse.abort();
    }

    async fn work(&self, owner: String, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        // After an empty claim, a poll asks (reading) whether anything is queued or lapsed
        // before it reaps and claims (writing); a wake-up from an enqueue claims at once.
        let mut idle = false;
        while !shutdown.is_cancelled() {
            if idle && !self.queue.has_work().await.unwrap_or(true) {
                tokio::select! {
                    () = self.queue.woken() => idle = false,
                    () = tokio::time::sleep(self.config.worker.poll_interval) => {}
                    () = shutdown.cancelled() => {}
                }
                continue;
            }
            idle = false;
            match self.claim(&owner).await {
                Ok(Claim::Job(lease)) => {
                    backoff = Duration::from_millis(100);
                    let span = tracing::info_span!("job", job.id = lease.job.id, app = %lease.job.app, env = %lease.job.env, attempt = lease.job.attempt);
                    self.execute(*lease, &shutdown).instrument(span).await;
                }
                Ok(Claim::Empty) => {
                    idle = true;
                    tokio::select! {
                        () = self.queue.woken() => idle = false,
                        () = tokio::time::sleep(self.config.worker.poll_interval) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "queue unavailable");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Asks for the approvals of jobs that wait for them.
    async fn request_approvals(&self, jobs: Vec<crate::store::Job>) {
        for job in jobs {
            let env = self
                .config
                .app(&job.app)
                .and_then(|app| Some((app, self.config.environment(&job.app, &job.env)?)));
            match env {
                Some((app, env)) => {
                    let news = News {
                        job: &job,
                        app,
                        env,
                        stage: Stage::AwaitingApproval,
                    };
                    self.notifiers.tell(&news, &self.metrics).await;
                }
                None => tracing::warn!(
                    job.id = job.id,
                    "awaiting approval for an environment no longer configured"
                ),
            }
        }
    }

    async fn claim(&self, owner: &str) -> Result<Claim, crate::store::StoreError> {
        let upkeep = self.queue.upkeep().await?;
        self.request_approvals(upkeep.ask_approvals).await;
        let reaped = upkeep.reaped;
        if reaped > 0 {
            self.metrics.lease_expiries.inc_by(reaped as u64);
            tracing::warn!(
                jobs = reaped,
                "returned jobs with lapsed leases to the queue"
            );
        }
        self.queue.claim(owner, self.config.worker.lease).await
    }

    async fn execute(&self, mut lease: Lease, shutdown: &CancellationToken) {
        let started = now_ms();
        tracing::info!(git_ref = %lease.job.git_ref, sha = %lease.job.sha, "job started");
        let stop = Arc::new(Stop::default());
        // On shutdown the job gets `shutdown_grace` to end on its own; then its current step is
        // stopped (a switch is never interrupted) and the job goes back to the queue.
        let grace = tokio::spawn({
            let (shutdown, stop) = (shutdown.clone(), stop.clone());
            let grace = self.config.worker.shutdown_grace;
            async move {
                shutdown.cancelled().await;
                tokio::time::sleep(grace).await;
                stop.interrupt();
            }
        });
        let heartbeat = tokio::spawn(lease::heartbeat(
            self.queue.clone(),
            lease.clone(),
            self.config.worker.lease,
            stop.clone(),
        ));
        let journal = Journal::start(
            self.queue.store().clone(),
            lease.job.id,
            lease.job.attempt,
            self.masker.clone(),
            self.metrics.clone(),
        );
        let outcome = self.deploy(&mut lease, &journal, &stop).await;
        journal.finish().await;
        heartbeat.abort();
        grace.abort();
        let duration_ms = now_ms() - started;
        if stop.interrupted() && matches!(outcome, Outcome::Failed { .. }) {
            match self
                .queue
                .release(&lease, "interrupted by shutdown; back in the queue")
                .await
            {
                Ok(true) => tracing::warn!(
                    duration_ms,
                    "job interrupted by shutdown and returned to the queue"
                ),
                Ok(false) => {
                    tracing::warn!(duration_ms, "lease lost; another worker owns the job now")
                }
                Err(err) => {
                    tracing::error!(duration_ms, error = %err, "could not return the job; its lease will expire and it will run again")
                }
            }
            return;
        }
        let outcome_label = match &outcome {
            Outcome::Succeeded { .. } => "succeeded",
            Outcome::Failed { .. } => "failed",
            Outcome::Cancelled { .. } => "cancelled",
        };
        self.metrics
            .job_seconds
            .with_label_values(&[&lease.job.app, &lease.job.env, outcome_label])
            .observe(duration_ms as f64 / 1000.0);
        match self.queue.finish(&lease, &outcome).await {
            Ok(true) => match &outcome {
                Outcome::Succeeded { message } => tracing::info!(duration_ms, "{message}"),
                Outcome::Failed { error, .. } => {
                    tracing::warn!(duration_ms, error = %error, "job failed")
                }
                Outcome::Cancelled { message } => tracing::info!(duration_ms, "{message}"),
            },
            Ok(false) => tracing::warn!(duration_ms, "lease lost; another worker owns the job now"),
            Err(err) => {
                tracing::error!(duration_ms, error = %err, "could not record the job's end; its lease will expire and it will run again")
            }
        }
    }

    async fn deploy(&self, lease: &mut Lease, journal: &Journal, stop: &Stop) -> Outcome {
        let job = &lease.job;
        let Some(app) = self.config.app(&job.app) else {
            return failed(format!("app {} is no longer configured", job.app));
        };
        if let JobKind::Cleanup | JobKind::Reconcile | JobKind::Release = job.kind {
            return match self.housekeeping(job, app, journal).await {
                Ok(outcome) => outcome,
                Err(error) => failed(journal.mask(&format!("{error:#}"))),
            };
        }
        let (mut env, ephemeral) = match self.environment(app, job).await {
            Ok(Resolved::Static(env)) => (Cow::Borrowed(env), None),
            Ok(Resolved::Ephemeral(instance)) => {
                let port = instance.row.port().unwrap_or(0);
                (Cow::Owned(instance.environment(app, port)), Some(instance))
            }
            Ok(Resolved::Gone) => {
                let message = format!("{} is already gone: nothing to tear down", job.env);
                journal.line("slipway", job.kind.as_str(), &message);
                return Outcome::Succeeded { message };
            }
            Err(outcome) => return outcome,
        };
        // A deploy whose commit is not looked up yet has not started: one that cannot be ends
        // with only its end reported.
        let pinned = self.pin_commit(lease, app, journal).await;
        let job = &lease.job;
        let ready = match pinned {
            Ok(()) => {
                let started = News {
                    job,
                    app,
                    env: &env,
                    stage: Stage::Started,
                };
                self.notifiers.tell(&started, &self.metrics).await;
                // An ephemeral deploy takes its port once it is reported started, so not
                // getting one ends it like any failure: GitHub and Slack hear of it. From then
                // on the environment is the one on that port (the run, and the end's report).
                match &ephemeral {
                    Some(instance) if matches!(job.kind, JobKind::Deploy | JobKind::Rollback) => {
                        self.take_port(instance)
                            .await
                            .map(|port| env = Cow::Owned(instance.environment(app, port)))
                    }
                    _ => Ok(()),
                }
            }
            Err(outcome) => Err(outcome),
        };
        // The run, and beside it the reports of its progress, which end before the end's.
        let outcome = match ready {
            Ok(()) => {
                let done = CancellationToken::new();
                let (outcome, ()) = tokio::join!(
                    async {
                        let outcome = self.run_job(lease, app, &env, journal, stop).await;
                        done.cancel();
                        outcome
                    },
                    self.notifiers.follow(
                        (job, app, &env),
                        journal.progress(),
                        &done,
                        &self.metrics
                    ),
                );
                outcome
            }
            Err(outcome) => outcome,
        };
        // A job interrupted by shutdown goes back to the queue: it has not ended.
        if stop.interrupted() {
            return outcome;
        }
        // Stopped for a person before it switched anything: whatever step it was in failed
        // because it was stopped.
        let outcome = match (outcome, stop.cancelled_by()) {
            (Outcome::Failed { .. }, Some(by)) => Outcome::Cancelled {
                message: format!("cancelled by {by} while running; nothing was switched"),
            },
            (outcome, _) => outcome,
        };
        if let Some(instance) = ephemeral {
            self.settle(job, &instance.row, &outcome).await;
        }
        let finished = News {
            job,
            app,
            env: &env,
            stage: Stage::Finished(&outcome),
        };
        self.notifiers.tell(&finished, &self.metrics).await;
        outcome
    }

    /// A deploy queued by a ref's name (see `requests::deploy`) looks its commit up now, as
    /// it starts, after a fetch, and records it on the job.
    async fn pin_commit(
        &self,
        lease: &mut Lease,
        app: &App,
        journal: &Journal,
    ) -> Result<(), Outcome> {
        let job = &lease.job;
        if job.kind != JobKind::Deploy || !job.sha.is_empty() {
            return Ok(());
        }
        let git_ref = GitRef::parse(&job.git_ref).map_err(|e| failed(e.to_string()))?;
        let sha = self
            .engine
            .mirrors()
            .resolve(app, &git_ref)
            .await
            .map_err(|e| failed(journal.mask(&format!("{e:#}"))))?;
        match self.queue.pin_commit(lease, &sha).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(failed(
                    "the lease was lost before the deploy started".into(),
                ));
            }
            Err(e) => return Err(failed(format!("could not record the commit {sha}: {e}"))),
        }
        journal.line("slipway", "deploy", &format!("{git_ref} is {sha}"));
        lease.job.sha = sha.as_str().to_owned();
        Ok(())
    }

    /// The environment a job runs against: a configured one, or an ephemeral one's template
    /// and row. A teardown of one that no longer exists has nothing to do (the branch's `push`
    /// and `delete` events can both ask for it).
    async fn environment<'c>(&self, app: &'c App, job: &Job) -> Result<Resolved<'c>, Outcome> {
        if let Some(env) = Name::parse(&job.env)
            .ok()
            .and_then(|n| app.environments.get(&n))
        {
            return Ok(Resolved::Static(env));
        }
        let row = match self.queue.store().ephemeral_env(&job.app, &job.env).await {
            Ok(Some(row)) => row,
            Ok(None) if job.kind == JobKind::Teardown => return Ok(Resolved::Gone),
            Ok(None) => {
                return Err(failed(format!(
                    "{}/{} is not configured and no ephemeral environment of that name exists",
                    job.app, job.env
                )));
            }
            Err(err) => return Err(failed(format!("reading the environment: {err}"))),
        };
        let template = Name::parse(&row.template)
            .ok()
            .and_then(|t| app.ephemeral.get(&t));
        let (Some(template), Ok(name)) = (template, Name::parse(&row.env)) else {
            return Err(failed(format!(
                "ephemeral environments {}.{} are no longer configured",
                job.app, row.template
            )));
        };
        Ok(Resolved::Ephemeral(Box::new(Instance {
            template,
            name,
            row,
        })))
    }

    /// The port of the ephemeral environment a deploy ships to: its own, or one allocated now.
    /// The environment is marked as being provisioned or updated.
    async fn take_port(&self, instance: &Instance<'_>) -> Result<u16, Outcome> {
        let (row, store) = (&instance.row, self.queue.store());
        let policy = PortPolicy {
            template: &row.template,
            range: instance.template.ports.clone(),
            max: instance.template.max,
        };
        let port = match store.allocate_port(row.id, &policy).await {
            Ok(Ok(port)) => port,
            Ok(Err(why)) => return Err(failed(why)),
            Err(err) => return Err(failed(format!("allocating a port: {err}"))),
        };
        let (from, to) = match row.sha {
            Some(_) => (&[EnvState::Live, EnvState::Failed][..], EnvState::Updating),
            None => (&[EnvState::Failed][..], EnvState::Provisioning),
        };
        if let Err(err) = store.set_env_state(row.id, from, to, None, now_ms()).await {
            return Err(failed(format!("updating the environment: {err}")));
        }
        Ok(port)
    }

    /// Cleanup, reconcile or release of `app`: decide, queue the jobs, log each action.
    async fn housekeeping(
        &self,
        job: &Job,
        app: &App,
        journal: &Journal,
    ) -> anyhow::Result<Outcome> {
        let github = self.github.as_ref();
        if job.kind == JobKind::Release {
            let mirrors = self.engine.mirrors();
            let links = &self.config.github;
            let released =
                crate::releases::run(job, app, mirrors, github, &self.queue, links).await?;
            for line in &released.lines {
                journal.line("slipway", "release", line);
            }
            if let Some(text) = &released.announcement {
                self.notifiers.announce(app, text, &self.metrics).await;
            }
            return Ok(Outcome::Succeeded {
                message: format!("release {}: {}", job.git_ref, released.lines.join("; ")),
            });
        }
        let done = housekeeping::run(
            &self.queue,
            Some(&self.engine),
            app,
            job.kind,
            github,
            self.clock.now_ms(),
            false,
        )
        .await?;
        for line in &done.lines {
            journal.line("slipway", job.kind.as_str(), line);
        }
        for warning in &done.warnings {
            self.notifiers.announce(app, warning, &self.metrics).await;
        }
        Ok(Outcome::Succeeded {
            message: format!(
                "{} of {}: {} action(s)",
                job.kind.as_str(),
                app.name,
                done.lines.len()
            ),
        })
    }

    /// Moves an ephemeral environment on by how its job ended.
    async fn settle(&self, job: &Job, row: &EphemeralRow, outcome: &Outcome) {
        let succeeded = matches!(outcome, Outcome::Succeeded { .. });
        let (from, to, sha) = match (job.kind, succeeded) {
            (JobKind::Teardown, true) => (&[EnvState::TearingDown][..], EnvState::Gone, None),
            (JobKind::Teardown, false) => (&[EnvState::TearingDown][..], EnvState::Failed, None),
            (_, true) => (
                &[EnvState::Provisioning, EnvState::Updating][..],
                EnvState::Live,
                Some(job.sha.as_str()),
            ),
            // A failed update leaves the previous release serving.
            (_, false) if row.sha.is_some() => (&[EnvState::Updating][..], EnvState::Live, None),
            (_, false) => (&[EnvState::Provisioning][..], EnvState::Failed, None),
        };
        let store = self.queue.store();
        if let Err(err) = store.set_env_state(row.id, from, to, sha, now_ms()).await {
            tracing::error!(error = %err, env = %row.env, "could not record the environment's state");
        }
    }

    async fn run_job(
        &self,
        lease: &Lease,
        app: &App,
        env: &Environment,
        journal: &Journal,
        stop: &Stop,
    ) -> Outcome {
        let job = &lease.job;
        let store = self.queue.store();
        let live_slots = match store.live_deployments(&job.app, &job.env).await {
            Ok(live) => live
                .into_iter()
                .filter_map(|d| Some((d.host, d.slot?)))
                .collect(),
            Err(err) => {
                return Outcome::Failed {
                    error: format!("reading live deployments: {err}"),
                    result: serde_json::json!({}),
                };
            }
        };
        let fence = LeaseFence {
            queue: &self.queue,
            lease,
            duration: self.config.worker.lease,
            stop,
        };
        let request = Request {
            job,
            app,
            env,
            live_slots,
        };
        match self.engine.run(request, journal, &fence, &stop.token).await {
            Ok(_) if job.kind == JobKind::Teardown => Outcome::Succeeded {
                message: format!("{} torn down", job.env),
            },
            Ok(success) => {
                if let Err(err) = store
                    .record_switch(job, &success.release, &success.hosts)
                    .await
                {
                    tracing::error!(error = %err, "could not record the switch");
                }
                let hosts: Vec<&str> = success.hosts.iter().map(|(h, _)| h.as_str()).collect();
                Outcome::Succeeded {
                    message: format!(
                        "release {} ({}) live on {}",
                        success.release,
                        &job.sha[..8.min(job.sha.len())],
                        hosts.join(", ")
                    ),
                }
            }
            Err(failure) => Outcome::Failed {
                error: failure.message(),
                result: failure.to_json(),
            },
        }
    }
}

/// The environment a job runs against.
enum Resolved<'c> {
    Static(&'c Environment),
    Ephemeral(Box<Instance<'c>>),
    /// An ephemeral environment that no longer exists (only a teardown gets this).
    Gone,
}

/// An ephemeral environment: its template and its row.
struct Instance<'c> {
    template: &'c crate::config::Ephemeral,
    name: Name,
    row: EphemeralRow,
}

impl Instance<'_> {
    /// Its environment when served on `port`.
    fn environment(&self, app: &App, port: u16) -> Environment {
        let row = &self.row;
        self.template
            .environment(&app.name, &self.name, row.slug(), &row.hostname, port)
    }
}

fn failed(error: String) -> Outcome {
    Outcome::Failed {
        result: serde_json::json!({ "reason": error }),
        error,
    }
}

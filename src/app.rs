//! Assembles the service: database, queue, workers and HTTP server, under one shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::deploy::Engine;
use crate::github::GitHub;
use crate::http::{self, AppState, Services};
use crate::mask::Masker;
use crate::notify::github::Deployments;
use crate::notify::slack::SlackNotifier;
use crate::notify::{Notifier, Notifiers};
use crate::queue::Queue;
use crate::slack::api::SlackApi;
use crate::store::{Job, Store};
use crate::telemetry::{Metrics, Vitals};
use crate::worker::Workers;

/// A started service. Dropping it does not stop it: call [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops accepting requests, lets in-flight ones and running jobs finish, then returns.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the service stopped (after its shutdown token fired).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("service task panicked")?
    }
}

/// The service's parts, before anything runs.
pub struct Parts {
    pub config: Arc<Config>,
    pub queue: Queue,
    pub workers: Arc<Workers>,
    pub metrics: Arc<Metrics>,
    pub vitals: Arc<Vitals>,
    /// Slack's Web API, when `[slack]` is configured.
    pub slack: Option<SlackApi>,
    /// What housekeeping, the scheduler and keeps take as now.
    pub clock: Arc<dyn Clock>,
}

/// Opens (and migrates) the database and builds the queue and the worker pool, which (like
/// the scheduler and keeps from the API, Slack and the dashboard) read the time from `clock`.
pub async fn assemble(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Parts> {
    let config = Arc::new(config);
    let store = Store::open(&config.database.url)
        .await
        .context("opening the database")?;
    let queue = Queue::new(store, config.worker.max_attempts);
    let metrics = Arc::new(Metrics::new());
    let vitals = Arc::new(Vitals::default());
    let github = GitHub::from_config(&config.github)?;
    let masker = Masker::new(config.secrets());
    let slack = config
        .slack
        .as_ref()
        .map(|s| SlackApi::new(&s.api_url))
        .transpose()
        .context("building the Slack client")?;
    let workers = Arc::new(Workers {
        queue: queue.clone(),
        config: config.clone(),
        engine: Engine::new(&config.worker.data_dir),
        notifiers: notifiers(&config, &queue, github.as_ref(), slack.as_ref(), &masker),
        masker,
        metrics: metrics.clone(),
        vitals: vitals.clone(),
        github,
        clock: clock.clone(),
    });
    Ok(Parts {
        config,
        queue,
        workers,
        metrics,
        vitals,
        slack,
        clock,
    })
}

/// What a process runs. Replicas sharing a PostgreSQL database can split the work: `web`
/// replicas take webhooks and API calls, `worker` replicas run jobs, `scheduler` replicas queue
/// scheduled ticks (the last two answer probes only). Any number of each is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Role {
    #[default]
    All,
    Web,
    Worker,
    Scheduler,
}

/// Starts the server on `listener` and the worker pool, on the system's clock.
pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<Running> {
    start_as(config, listener, Role::All, Arc::new(SystemClock)).await
}

/// Starts what `role` runs: the full HTTP API, the worker pool, the scheduler.
pub async fn start_as(
    config: Config,
    listener: TcpListener,
    role: Role,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    let Parts {
        config,
        queue,
        workers,
        metrics,
        vitals,
        slack,
        clock,
    } = assemble(config, clock).await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let scheduler = match role {
        Role::All | Role::Scheduler => tokio::spawn(crate::scheduler::run(
            queue.clone(),
            config.clone(),
            clock.clone(),
            shutdown.clone(),
        )),
        Role::Web | Role::Worker => tokio::spawn(async {}),
    };
    let state = AppState::new(Services {
        config,
        queue,
        metrics,
        vitals: vitals.clone(),
        mirrors: workers.engine.mirrors().clone(),
        masker: workers.masker.clone(),
        slack,
        slack_reads: Default::default(),
        clock,
        shutdown: shutdown.clone(),
    });
    let router = match role {
        Role::All | Role::Web => http::router(state),
        Role::Worker | Role::Scheduler => http::probes(state),
    };
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let pool = match role {
                Role::All | Role::Worker => tokio::spawn(workers.run(shutdown.clone())),
                Role::Web | Role::Scheduler => tokio::spawn(async {}),
            };
            // The peer's address reaches handlers (the dashboard answers only loopback peers
            // when no users are configured).
            let served = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
            // The server also stops if it fails on its own; the workers must follow.
            shutdown.cancel();
            pool.await.context("worker pool panicked")?;
            scheduler.await.context("scheduler panicked")?;
            served.context("HTTP server failed")
        }
    });
    vitals.mark_started();
    tracing::info!(addr = %addr, role = ?role, "listening");
    Ok(Running {
        addr,
        shutdown,
        task,
    })
}

/// Runs this process's workers until job `id` has ended (for `slipway deploy`/`rollback`
/// without a server), then returns it.
pub async fn work_until_done(parts: &Parts, id: i64) -> anyhow::Result<Job> {
    let shutdown = CancellationToken::new();
    let pool = tokio::spawn(parts.workers.clone().run(shutdown.clone()));
    let job = loop {
        let job = parts
            .queue
            .store()
            .job(id)
            .await?
            .context("the job vanished")?;
        if job.state.is_final() {
            break job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    shutdown.cancel();
    pool.await.context("worker pool panicked")?;
    Ok(job)
}

/// `slipway serve`: runs until SIGINT or SIGTERM.
pub async fn serve(config: Config, role: Role) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let running = start_as(config, listener, role, Arc::new(SystemClock)).await?;
    let shutdown = running.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: no new requests or jobs; finishing running jobs");
        shutdown.cancel();
    });
    running.wait().await
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The notifiers the config asks for: GitHub Deployments when a GitHub token is set, Slack
/// messages when a Slack bot token is (they go to the channels the config names).
fn notifiers(
    config: &Config,
    queue: &Queue,
    github: Option<&GitHub>,
    slack: Option<&SlackApi>,
    masker: &Masker,
) -> Notifiers {
    let mut notifiers: Vec<Arc<dyn Notifier>> = Vec::new();
    if let Some(github) = github {
        notifiers.push(Arc::new(Deployments {
            github: github.clone(),
            store: queue.store().clone(),
            public_url: config.github.public_url.clone(),
        }));
    }
    if let (Some(api), Some(settings)) = (slack, &config.slack)
        && let Some(token) = &settings.bot_token
    {
        notifiers.push(Arc::new(SlackNotifier {
            api: api.clone(),
            token: token.clone(),
            channel: settings.channel.clone(),
            store: queue.store().clone(),
            masker: masker.clone(),
        }));
    }
    Notifiers::new(notifiers)
}

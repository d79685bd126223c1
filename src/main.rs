//! The `slipway` command: parses the command line and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use slipway::clock::SystemClock;
use slipway::config::{self, Config};
use slipway::mask::Masker;
use slipway::store::{JobKind, JobState, Store};

#[derive(Parser)]
#[command(version, about = "Deploys pushed commits to your hosts over SSH")]
struct Cli {
    /// Config file.
    #[arg(long, short, global = true, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server and the workers.
    Serve {
        /// all: API and workers; web: API only; worker: workers (and probes) only.
        #[arg(long, value_enum, default_value_t)]
        role: slipway::app::Role,
    },
    /// Validate the config and print a summary.
    CheckConfig,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Show jobs.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Deploy a branch, tag or commit to an environment, running the job in this process.
    Deploy {
        app: String,
        env: String,
        /// Branch, tag or commit id.
        #[arg(long = "ref", default_value = "main")]
        git_ref: String,
    },
    /// Switch an environment back to its previous release (or --to a named one still on disk).
    Rollback {
        app: String,
        env: String,
        #[arg(long)]
        to: Option<String>,
    },
    /// Tear down ephemeral environments idle past their TTL (queues teardown jobs).
    Cleanup {
        /// Only this app.
        app: Option<String>,
        /// Print what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Decide as of this time (RFC 3339, e.g. 2026-12-01T00:00:00Z) instead of now.
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Converge ephemeral environments with the repository's branches on GitHub (queues jobs).
    Reconcile {
        /// Only this app.
        app: Option<String>,
        /// Print what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Deploy the example app with the local target: serve, push a signed commit, follow it.
    Demo,
}

#[derive(Subcommand)]
enum JobsCommand {
    /// The newest jobs.
    List {
        /// Only jobs in this state (queued, running, succeeded, failed).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One job: state, events, per-host step results and its log.
    Show { id: i64 },
}

/// Who runs a CLI command, for the job's `requested_by`.
fn operator() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}

/// `slipway cleanup` / `reconcile`: decides and queues jobs for each app (or `only`), printing
/// one line per action. A running server's workers carry the jobs out.
async fn housekeeping(
    config: Config,
    only: Option<String>,
    kind: JobKind,
    now: i64,
    dry_run: bool,
) -> anyhow::Result<()> {
    let parts = slipway::app::assemble(config, Arc::new(SystemClock)).await?;
    let apps: Vec<_> = match &only {
        Some(name) => vec![
            parts
                .config
                .app(name)
                .ok_or_else(|| anyhow::anyhow!("no app {name:?} in the config"))?,
        ],
        None => parts.config.apps.values().collect(),
    };
    for app in apps {
        let (github, engine) = (parts.workers.github.as_ref(), &parts.workers.engine);
        let done =
            slipway::housekeeping::run(&parts.queue, Some(engine), app, kind, github, now, dry_run)
                .await?;
        if done.lines.is_empty() {
            println!("{}: nothing to do", app.name);
        }
        for line in done.lines {
            println!("{}: {line}", app.name);
        }
        // Told to the team as the worker's cleanup would: this pass marked them warned.
        for warning in &done.warnings {
            parts
                .workers
                .notifiers
                .announce(app, warning, &parts.metrics)
                .await;
        }
    }
    Ok(())
}

/// Runs job `id` to its end in this process, prints it, and exits by its outcome.
async fn finish(parts: &slipway::app::Parts, id: i64) -> anyhow::Result<ExitCode> {
    eprintln!("queued job {id}");
    let job = slipway::app::work_until_done(parts, id).await?;
    if let Some(text) = slipway::cli::jobs_show(parts.queue.store(), id).await? {
        print!("{text}");
    }
    Ok(match job.state {
        JobState::Succeeded => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CheckConfig = cli.command {
        return match slipway::cli::check_config(&cli.config) {
            Ok(summary) => {
                print!("{summary}");
                ExitCode::SUCCESS
            }
            Err(problems) => {
                eprintln!("{problems}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("{}: invalid config\n{problems}", cli.config.display());
            return ExitCode::FAILURE;
        }
    };
    slipway::telemetry::init(config.log_format, Masker::new(config.secrets()));
    let runtime = tokio::runtime::Runtime::new().expect("starting the async runtime");
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::CheckConfig => unreachable!("handled before the runtime starts"),
        Command::Serve { role } => slipway::app::serve(config, role).await?,
        Command::Migrate => {
            Store::open(&config.database.url).await?;
            println!(
                "database {} is up to date",
                slipway::store::redact_url(&config.database.url)
            );
        }
        Command::Jobs { command } => {
            let store = Store::open(&config.database.url).await?;
            match command {
                JobsCommand::List { state, limit } => {
                    let state = state
                        .map(|s| {
                            JobState::parse(&s)
                                .ok_or_else(|| anyhow::anyhow!("unknown state {s:?}"))
                        })
                        .transpose()?;
                    print!("{}", slipway::cli::jobs_list(&store, state, limit).await?);
                }
                JobsCommand::Show { id } => match slipway::cli::jobs_show(&store, id).await? {
                    Some(text) => print!("{text}"),
                    None => {
                        eprintln!("no job {id}");
                        return Ok(ExitCode::FAILURE);
                    }
                },
            }
        }
        Command::Deploy { app, env, git_ref } => {
            let parts = slipway::app::assemble(config, Arc::new(SystemClock)).await?;
            let id = slipway::requests::deploy(
                &parts.queue,
                &parts.config,
                parts.workers.engine.mirrors(),
                (&app, &env),
                &git_ref,
                slipway::requests::Origin {
                    requested_by: &operator(),
                    source: "cli",
                    delivery: None,
                },
            )
            .await?;
            return finish(&parts, id).await;
        }
        Command::Rollback { app, env, to } => {
            let parts = slipway::app::assemble(config, Arc::new(SystemClock)).await?;
            let id = slipway::requests::rollback(
                &parts.queue,
                &parts.config,
                (&app, &env),
                to.as_deref(),
                slipway::requests::Origin {
                    requested_by: &operator(),
                    source: "cli",
                    delivery: None,
                },
            )
            .await?;
            return finish(&parts, id).await;
        }
        Command::Cleanup { app, dry_run, at } => {
            let now = at.unwrap_or_else(chrono::Utc::now).timestamp_millis();
            housekeeping(config, app, JobKind::Cleanup, now, dry_run).await?;
        }
        Command::Reconcile { app, dry_run } => {
            let now = chrono::Utc::now().timestamp_millis();
            housekeeping(config, app, JobKind::Reconcile, now, dry_run).await?;
        }
        Command::Demo => slipway::demo::run(config).await?,
    }
    Ok(ExitCode::SUCCESS)
}

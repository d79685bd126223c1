//! Talking to hosts: ship a release, run its steps, health-check it, switch `current`, and roll
//! back when that goes wrong.
//!
//! [`Engine::run`] does one job: archive the commit once ([`source`]), connect every host (one
//! multiplexed SSH master each, in parallel), then hand a [`Run`] to the environment's strategy
//! ([`strategy`]). A [`Run`] holds the operations every strategy composes: prepare (unpack +
//! build, in parallel), migrate (once), switch (atomic rename + `after_switch`), health checks,
//! and switching a host back. Scripts are built by [`plan`] and run by [`exec`].

pub mod exec;
pub mod health;
pub mod journal;
pub mod plan;
mod run;
pub mod shell;
pub mod source;
mod strategy;
pub mod target;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{App, Environment};
use crate::domain::{ReleaseId, Sha};
use crate::store::JobKind;
use exec::Limits;
use journal::Journal;
use plan::Layout;
use run::Seg;
pub use run::{Host, Run};
use source::Mirrors;

/// Limits of the bot's own short commands (unpack, switch, cleanup).
const INTERNAL_LIMITS: Limits = Limits {
    timeout: Duration::from_secs(600),
    idle_timeout: Duration::from_secs(600),
};

/// Confirms, right before anything irreversible, that the job is still ours to run.
pub trait Fence: Send + Sync {
    fn still_ours(&self) -> BoxFuture<'_, bool>;
}

/// Why a job failed, with where, for the job result and the log.
#[derive(Debug, Clone)]
pub struct Failure {
    pub host: Option<String>,
    pub step: Option<String>,
    pub reason: String,
    pub log_tail: Vec<String>,
    /// Hosts switched back to their previous release by an automatic rollback.
    pub rolled_back: Vec<String>,
}

impl Failure {
    pub fn general(reason: impl Into<String>) -> Self {
        Self {
            host: None,
            step: None,
            reason: reason.into(),
            log_tail: Vec::new(),
            rolled_back: Vec::new(),
        }
    }

    fn at(host: &Host, step: &str, reason: String, journal: &Journal) -> Self {
        Self {
            host: Some(host.name.clone()),
            step: Some(step.to_owned()),
            reason: journal.mask(&reason),
            log_tail: journal.tail(&host.name),
            rolled_back: Vec::new(),
        }
    }

    pub fn message(&self) -> String {
        let mut text = match (&self.host, &self.step) {
            (Some(h), Some(s)) => format!("{h}: step `{s}` failed: {}", self.reason),
            (Some(h), None) => format!("{h}: {}", self.reason),
            _ => self.reason.clone(),
        };
        if !self.rolled_back.is_empty() {
            text.push_str(&format!("; rolled back: {}", self.rolled_back.join(", ")));
        }
        text
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "host": self.host,
            "step": self.step,
            "reason": self.reason,
            "log_tail": self.log_tail,
            "rolled_back": self.rolled_back,
        })
    }
}

/// What went live: the release, and each host that now serves it (with its blue/green slot).
#[derive(Debug, Clone)]
pub struct Success {
    pub release: ReleaseId,
    pub hosts: Vec<(String, Option<&'static str>)>,
}

/// A job to run, with what the caller knows that the hosts do not: each host's live slot.
pub struct Request<'a> {
    pub job: &'a crate::store::Job,
    pub app: &'a App,
    pub env: &'a Environment,
    pub live_slots: HashMap<String, String>,
}

/// Runs jobs; one per process, shared by the workers.
pub struct Engine {
    /// Shared with the HTTP side, which resolves refs of requests in the same mirrors.
    mirrors: Arc<Mirrors>,
    control_dir: PathBuf,
    http: reqwest::Client,
}

impl Engine {
    pub fn new(data_dir: &std::path::Path) -> Self {
        Self {
            mirrors: Arc::new(Mirrors::new(data_dir)),
            control_dir: data_dir.join("ssh"),
            http: reqwest::Client::new(),
        }
    }

    pub fn mirrors(&self) -> &Arc<Mirrors> {
        &self.mirrors
    }

    pub async fn run(
        &self,
        spec: Request<'_>,
        journal: &Journal,
        fence: &dyn Fence,
        cancel: &CancellationToken,
    ) -> Result<Success, Failure> {
        let job = spec.job;
        let archive = match job.kind {
            JobKind::Deploy => {
                let sha = Sha::parse(&job.sha).map_err(|e| Failure::general(e.to_string()))?;
                let archive = self.mirrors.archive(spec.app, &sha).await;
                Some(archive.map_err(|e| Failure::general(journal.mask(&format!("{e:#}"))))?)
            }
            JobKind::Rollback
            | JobKind::Teardown
            | JobKind::Cleanup
            | JobKind::Reconcile
            | JobKind::Release => None,
        };
        let hosts = self.connect_all(spec.env).await?;
        let run = Run {
            job,
            app: spec.app,
            env: spec.env,
            journal,
            fence,
            cancel,
            http: &self.http,
            layout: Layout::new(spec.env.deploy_path.to_str().expect("validated as UTF-8")),
            release: job.release_id(),
            archive,
            live_slots: spec.live_slots,
            hosts,
        };
        let result = match (job.kind, &spec.env.site) {
            (JobKind::Teardown, Some(site)) => {
                let done = join_all(run.hosts.iter().map(|h| run.tear_down(h, site))).await;
                done.into_iter()
                    .collect::<Result<Vec<()>, Failure>>()
                    .map(|_| Success {
                        release: run.release.clone(),
                        hosts: Vec::new(),
                    })
            }
            (JobKind::Teardown, None) => Err(Failure::general(format!(
                "{} is not an ephemeral environment: only those are torn down",
                spec.env.name
            ))),
            (_, site) => match strategy::run(&run).await {
                Ok(success) => match site {
                    Some(site) => run.route_all(site).await.map(|()| success),
                    None => Ok(success),
                },
                failed => failed,
            },
        };
        join_all(run.hosts.into_iter().map(|h| h.target.close())).await;
        result
    }

    /// Runs one of the bot's own scripts on every host of `env` at once; each host's output
    /// lines, or the first failure.
    pub async fn on_all_hosts(
        &self,
        env: &Environment,
        script: &str,
    ) -> Result<Vec<(String, Vec<String>)>, Failure> {
        let hosts = self.connect_all(env).await?;
        let never = CancellationToken::new();
        let ran = join_all(hosts.iter().map(|host| {
            let never = &never;
            async move {
                let mut lines = Vec::new();
                let exit = exec::run(
                    host.target.as_ref(),
                    script,
                    None,
                    INTERNAL_LIMITS,
                    never,
                    &mut |line| lines.push(line),
                )
                .await;
                match exit {
                    Ok(exit) if exit.success() => Ok((host.name.clone(), lines)),
                    Ok(exit) => Err(Failure {
                        host: Some(host.name.clone()),
                        log_tail: lines,
                        ..Failure::general(exit.describe())
                    }),
                    Err(e) => Err(Failure {
                        host: Some(host.name.clone()),
                        ..Failure::general(e.to_string())
                    }),
                }
            }
        }))
        .await;
        join_all(hosts.into_iter().map(|h| h.target.close())).await;
        ran.into_iter().collect()
    }

    async fn connect_all(&self, env: &Environment) -> Result<Vec<Host>, Failure> {
        let connected = join_all(env.hosts.iter().map(|spec| async move {
            match target::connect(spec, &env.ssh, &self.control_dir).await {
                Ok(target) => Ok(Host {
                    name: spec.to_string(),
                    spec: spec.clone(),
                    target,
                    steps: AtomicI64::new(0),
                }),
                Err(e) => Err(Failure {
                    host: Some(spec.to_string()),
                    ..Failure::general(e.to_string())
                }),
            }
        }))
        .await;
        let (hosts, failures): (Vec<_>, Vec<_>) = connected.into_iter().partition(Result::is_ok);
        let hosts: Vec<Host> = hosts.into_iter().map(Result::unwrap).collect();
        match failures.into_iter().next() {
            None => Ok(hosts),
            Some(failure) => {
                join_all(hosts.into_iter().map(|h| h.target.close())).await;
                Err(failure.err().expect("partitioned errors"))
            }
        }
    }
}

//! Talking to hosts: ship a release, run its steps, switch `current`.
//!
//! The deploy of one job (strategy `all_at_once`):
//! 1. the commit is archived once from the bot's mirror ([`source`]);
//! 2. every host connects (one multiplexed SSH master each) and, in parallel, unpacks the archive
//!    into `releases/<id>` and runs the steps there ([`plan`], [`exec`]);
//! 3. only if every host succeeded, and the job's lease is still ours (fencing), every host
//!    switches `current` atomically and prunes old releases;
//! 4. if any host failed, the new release is removed everywhere and `current` is never touched.

pub mod exec;
pub mod journal;
pub mod plan;
pub mod shell;
pub mod source;
pub mod target;

use std::path::PathBuf;

use futures::future::{BoxFuture, join_all};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{App, Environment};
use crate::domain::{ReleaseId, Sha};
use crate::store::{Job, now_ms};
use exec::{Exit, Limits};
use journal::Journal;
use plan::Layout;
use source::Mirrors;
use target::Target;

/// Limits of the bot's own short commands (unpack, switch, cleanup).
const INTERNAL_LIMITS: Limits = Limits {
    timeout: std::time::Duration::from_secs(600),
    idle_timeout: std::time::Duration::from_secs(600),
};

/// Confirms, right before anything irreversible, that the job is still ours to run.
pub trait Fence: Send + Sync {
    fn still_ours(&self) -> BoxFuture<'_, bool>;
}

/// Why a deploy failed, with where, for the job result and the log.
#[derive(Debug, Clone)]
pub struct Failure {
    pub host: Option<String>,
    pub step: Option<String>,
    pub reason: String,
    pub log_tail: Vec<String>,
}

impl Failure {
    fn general(reason: impl Into<String>) -> Self {
        Self {
            host: None,
            step: None,
            reason: reason.into(),
            log_tail: Vec::new(),
        }
    }

    pub fn message(&self) -> String {
        match (&self.host, &self.step) {
            (Some(h), Some(s)) => format!("{h}: step `{s}` failed: {}", self.reason),
            (Some(h), None) => format!("{h}: {}", self.reason),
            _ => self.reason.clone(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "host": self.host,
            "step": self.step,
            "reason": self.reason,
            "log_tail": self.log_tail,
        })
    }
}

/// What went live.
#[derive(Debug, Clone)]
pub struct Success {
    pub release: ReleaseId,
    pub hosts: Vec<String>,
}

/// Runs deploys; one per process, shared by the workers.
pub struct Engine {
    mirrors: Mirrors,
    control_dir: PathBuf,
}

struct Host {
    name: String,
    target: Box<dyn Target>,
}

impl Engine {
    pub fn new(data_dir: &std::path::Path) -> Self {
        Self {
            mirrors: Mirrors::new(data_dir),
            control_dir: data_dir.join("ssh"),
        }
    }

    pub async fn deploy(
        &self,
        job: &Job,
        app: &App,
        env: &Environment,
        journal: &Journal,
        fence: &dyn Fence,
        cancel: &CancellationToken,
    ) -> Result<Success, Failure> {
        let sha = Sha::parse(&job.sha).map_err(|e| Failure::general(e.to_string()))?;
        let archive = self
            .mirrors
            .archive(app, &sha)
            .await
            .map_err(|e| Failure::general(journal.mask(&format!("{e:#}"))))?;

        let hosts = self.connect_all(env).await?;
        let result = self
            .run_on(&hosts, &archive, job, app, env, journal, fence, cancel)
            .await;
        join_all(hosts.into_iter().map(|h| h.target.close())).await;
        result
    }

    async fn connect_all(&self, env: &Environment) -> Result<Vec<Host>, Failure> {
        let connected = join_all(env.hosts.iter().map(|spec| async move {
            target::connect(spec, &env.ssh, &self.control_dir)
                .await
                .map(|target| Host {
                    name: spec.to_string(),
                    target,
                })
                .map_err(|e| Failure {
                    host: Some(spec.to_string()),
                    step: None,
                    reason: e.to_string(),
                    log_tail: Vec::new(),
                })
        }))
        .await;
        let mut hosts = Vec::new();
        let mut first_error = None;
        for result in connected {
            match result {
                Ok(host) => hosts.push(host),
                Err(failure) => {
                    first_error.get_or_insert(failure);
                }
            }
        }
        match first_error {
            None => Ok(hosts),
            Some(failure) => {
                join_all(hosts.into_iter().map(|h| h.target.close())).await;
                Err(failure)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_on(
        &self,
        hosts: &[Host],
        archive: &[u8],
        job: &Job,
        app: &App,
        env: &Environment,
        journal: &Journal,
        fence: &dyn Fence,
        cancel: &CancellationToken,
    ) -> Result<Success, Failure> {
        let layout = Layout::new(env.deploy_path.to_str().expect("validated as UTF-8"));
        let release = job.release_id();
        let vars = [
            ("SLIPWAY_APP", app.name.as_str()),
            ("SLIPWAY_ENV", env.name.as_str()),
            ("SLIPWAY_SHA", job.sha.as_str()),
            ("SLIPWAY_REF", job.git_ref.as_str()),
            ("SLIPWAY_RELEASE", release.as_str()),
            ("SLIPWAY_DEPLOY_PATH", layout_root(env)),
        ];
        let prepare = HostPlan {
            layout: &layout,
            release: &release,
            vars: &vars,
            env,
            journal,
            cancel,
        };
        let prepared = join_all(hosts.iter().map(|h| prepare.run(h, archive))).await;
        if let Some(failure) = prepared.into_iter().find_map(Result::err) {
            let discard = plan::discard(&layout, &release);
            join_all(
                hosts
                    .iter()
                    .map(|h| internal(h, "discard", &discard, journal, cancel)),
            )
            .await;
            return Err(failure);
        }

        if cancel.is_cancelled() || !fence.still_ours().await {
            return Err(Failure::general(
                "the job's lease was lost before the switch; nothing was switched",
            ));
        }
        let switch = plan::switch(&layout, &release, env.keep_releases);
        // From here on nothing cancels: a switch is one rename per host, and stopping half-way
        // through the fleet would leave it split.
        let uninterrupted = CancellationToken::new();
        let switched = join_all(
            hosts
                .iter()
                .map(|h| internal(h, "switch", &switch, journal, &uninterrupted)),
        )
        .await;
        let mut live = Vec::new();
        let mut failure = None;
        for (host, result) in hosts.iter().zip(switched) {
            match result {
                Ok(()) => live.push(host.name.clone()),
                Err(f) => {
                    failure.get_or_insert(f);
                }
            }
        }
        match failure {
            None => Ok(Success {
                release,
                hosts: live,
            }),
            Some(mut f) => {
                f.reason = format!("{} (switched on: {})", f.reason, live.join(", "));
                Err(f)
            }
        }
    }
}

fn layout_root(env: &Environment) -> &str {
    env.deploy_path.to_str().expect("validated as UTF-8")
}

/// What every host does before the switch.
struct HostPlan<'a> {
    layout: &'a Layout,
    release: &'a ReleaseId,
    vars: &'a [(&'a str, &'a str)],
    env: &'a Environment,
    journal: &'a Journal,
    cancel: &'a CancellationToken,
}

impl HostPlan<'_> {
    async fn run(&self, host: &Host, archive: &[u8]) -> Result<(), Failure> {
        let ship = plan::ship(self.layout, self.release);
        self.step(host, 0, "ship", &ship, Some(archive), INTERNAL_LIMITS)
            .await?;
        for (i, step) in self.env.steps.iter().enumerate() {
            let script = plan::step(self.layout, self.release, self.vars, &step.run);
            let limits = Limits {
                timeout: step.timeout,
                idle_timeout: step.idle_timeout,
            };
            self.step(host, i + 1, &step.name, &script, None, limits)
                .await?;
        }
        Ok(())
    }

    async fn step(
        &self,
        host: &Host,
        idx: usize,
        name: &str,
        script: &str,
        stdin: Option<&[u8]>,
        limits: Limits,
    ) -> Result<(), Failure> {
        let started = now_ms();
        let journal = self.journal;
        let result = exec::run(
            host.target.as_ref(),
            script,
            stdin,
            limits,
            self.cancel,
            &mut |line| journal.line(&host.name, name, &line),
        )
        .await;
        let (status, code, reason) = match &result {
            Ok(exit @ Exit::Code(code)) => (exit.status(), *code, exit.describe()),
            Ok(exit) => (exit.status(), None, exit.describe()),
            Err(e) => ("failed", None, e.to_string()),
        };
        journal
            .step_result(&host.name, idx, name, status, code, started)
            .await;
        if matches!(&result, Ok(exit) if exit.success()) {
            return Ok(());
        }
        journal.line(
            &host.name,
            name,
            &format!("slipway: step `{name}` failed: {reason}"),
        );
        Err(Failure {
            host: Some(host.name.clone()),
            step: Some(name.to_owned()),
            reason: journal.mask(&reason),
            log_tail: journal.tail(&host.name),
        })
    }
}

/// One of the bot's own commands on a host, logged like a step but not numbered.
async fn internal(
    host: &Host,
    name: &str,
    script: &str,
    journal: &Journal,
    cancel: &CancellationToken,
) -> Result<(), Failure> {
    let result = exec::run(
        host.target.as_ref(),
        script,
        None,
        INTERNAL_LIMITS,
        cancel,
        &mut |line| journal.line(&host.name, name, &line),
    )
    .await;
    match result {
        Ok(exit) if exit.success() => Ok(()),
        Ok(exit) => Err(Failure {
            host: Some(host.name.clone()),
            step: Some(name.to_owned()),
            reason: exit.describe(),
            log_tail: journal.tail(&host.name),
        }),
        Err(e) => Err(Failure {
            host: Some(host.name.clone()),
            step: Some(name.to_owned()),
            reason: e.to_string(),
            log_tail: journal.tail(&host.name),
        }),
    }
}

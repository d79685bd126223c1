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
pub mod shell;
pub mod source;
mod strategy;
pub mod target;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{App, Environment, Step, Strategy};
use crate::domain::{HostSpec, ReleaseId, Sha};
use crate::store::JobKind;
use exec::{Exit, Limits};
use journal::Journal;
use plan::Layout;
use source::Mirrors;
use target::Target;

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
    mirrors: Mirrors,
    control_dir: PathBuf,
    http: reqwest::Client,
}

impl Engine {
    pub fn new(data_dir: &std::path::Path) -> Self {
        Self {
            mirrors: Mirrors::new(data_dir),
            control_dir: data_dir.join("ssh"),
            http: reqwest::Client::new(),
        }
    }

    pub fn mirrors(&self) -> &Mirrors {
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
            JobKind::Rollback => None,
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
        let result = strategy::run(&run).await;
        join_all(run.hosts.into_iter().map(|h| h.target.close())).await;
        result
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

/// One part of a chained remote command.
struct Seg {
    name: String,
    script: String,
    limits: Limits,
    /// Output returned to the caller instead of logged, and no step result (the bot's own
    /// reads, such as where `current` points).
    capture: bool,
}

impl Seg {
    fn step(name: &str, script: String, limits: Limits) -> Self {
        Self {
            name: name.to_owned(),
            script,
            limits,
            capture: false,
        }
    }

    fn capture(script: String) -> Self {
        Self {
            name: "read current".into(),
            script,
            limits: INTERNAL_LIMITS,
            capture: true,
        }
    }
}

/// One connected host of a run.
pub struct Host {
    pub name: String,
    pub spec: HostSpec,
    target: Box<dyn Target>,
    /// Numbers the host's step results in order.
    steps: AtomicI64,
}

/// One job's run over its connected hosts: the operations strategies are made of.
pub struct Run<'a> {
    pub job: &'a crate::store::Job,
    pub app: &'a App,
    pub env: &'a Environment,
    journal: &'a Journal,
    fence: &'a dyn Fence,
    cancel: &'a CancellationToken,
    http: &'a reqwest::Client,
    layout: Layout,
    pub release: ReleaseId,
    /// The commit's tar archive (deploys; a rollback ships nothing).
    archive: Option<Vec<u8>>,
    live_slots: HashMap<String, String>,
    pub hosts: Vec<Host>,
}

impl Run<'_> {
    pub fn strategy(&self) -> &Strategy {
        &self.env.strategy
    }

    fn vars(
        &self,
        release: &ReleaseId,
        extra: &[(&'static str, String)],
    ) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("SLIPWAY_APP", self.app.name.to_string()),
            ("SLIPWAY_ENV", self.env.name.to_string()),
            ("SLIPWAY_SHA", self.job.sha.clone()),
            ("SLIPWAY_REF", self.job.git_ref.clone()),
            ("SLIPWAY_RELEASE", release.to_string()),
            ("SLIPWAY_DEPLOY_PATH", self.layout_root().to_owned()),
        ];
        vars.extend(extra.iter().cloned());
        vars
    }

    fn layout_root(&self) -> &str {
        self.env.deploy_path.to_str().expect("validated as UTF-8")
    }

    /// Runs `segments` on `host` in one remote command (see [`exec::run_chain`]): logs and
    /// records each step, returns the captured output of `capture` segments, and stops at the
    /// first failure.
    async fn chain(
        &self,
        host: &Host,
        segments: &[Seg],
        stdin: Option<&[u8]>,
        cancel: &CancellationToken,
    ) -> Result<Vec<String>, Failure> {
        let journal = self.journal;
        let parts: Vec<exec::Segment> = segments
            .iter()
            .map(|s| exec::Segment {
                script: &s.script,
                limits: s.limits,
            })
            .collect();
        let mut captured = Vec::new();
        let result = exec::run_chain(
            host.target.as_ref(),
            &parts,
            stdin,
            cancel,
            &mut |i, line| match segments.get(i) {
                Some(seg) if seg.capture => captured.push(line),
                Some(seg) => journal.line(&host.name, &seg.name, &line),
                None => journal.line(&host.name, "slipway", &line),
            },
        )
        .await;
        let ended = match result {
            Ok(ended) => ended,
            Err(e) => {
                let name = segments.first().map_or("connect", |s| s.name.as_str());
                return Err(Failure::at(host, name, e.to_string(), journal));
            }
        };
        for (seg, end) in segments.iter().zip(&ended) {
            let code = match end.exit {
                Exit::Code(code) => code,
                _ => None,
            };
            if !seg.capture {
                let idx = host.steps.fetch_add(1, Ordering::Relaxed) as usize;
                journal
                    .step_result(
                        &host.name,
                        idx,
                        &seg.name,
                        end.exit.status(),
                        code,
                        end.started_at,
                    )
                    .await;
            }
            if !end.exit.success() {
                let reason = end.exit.describe();
                journal.line(
                    &host.name,
                    &seg.name,
                    &format!("slipway: `{}` failed: {reason}", seg.name),
                );
                return Err(Failure::at(host, &seg.name, reason, journal));
            }
        }
        Ok(captured)
    }

    /// One of the bot's own commands, as a recorded step.
    async fn exec(
        &self,
        host: &Host,
        name: &str,
        script: String,
        cancel: &CancellationToken,
    ) -> Result<(), Failure> {
        self.chain(
            host,
            &[Seg::step(name, script, INTERNAL_LIMITS)],
            None,
            cancel,
        )
        .await
        .map(drop)
    }

    /// The configured `steps` as segments, run in `release`'s directory.
    fn step_segments(
        &self,
        phase: &str,
        steps: &[Step],
        release: &ReleaseId,
        extra: &[(&'static str, String)],
    ) -> Vec<Seg> {
        let vars = self.vars(release, extra);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        steps
            .iter()
            .map(|step| {
                let name = if phase == "build" {
                    step.name.clone()
                } else {
                    format!("{phase}: {}", step.name)
                };
                let limits = Limits {
                    timeout: step.timeout,
                    idle_timeout: step.idle_timeout,
                };
                Seg::step(
                    &name,
                    plan::step(&self.layout, release, &vars, &step.run),
                    limits,
                )
            })
            .collect()
    }

    /// Runs configured steps in `release`'s directory, in one round trip.
    async fn steps(
        &self,
        host: &Host,
        phase: &str,
        steps: &[Step],
        release: &ReleaseId,
        extra: &[(&'static str, String)],
    ) -> Result<(), Failure> {
        if steps.is_empty() {
            return Ok(());
        }
        let segments = self.step_segments(phase, steps, release, extra);
        self.chain(host, &segments, None, self.cancel)
            .await
            .map(drop)
    }

    /// In one round trip: read what `current` points to (returned), then for a deploy unpack
    /// the archive and build; for a rollback check the release is still there.
    async fn prepare(&self, host: &Host) -> Result<Option<ReleaseId>, Failure> {
        let mut segments = vec![Seg::capture(plan::read_current(&self.layout))];
        match &self.archive {
            Some(_) => {
                segments.push(Seg::step(
                    "ship",
                    plan::ship(&self.layout, &self.release),
                    INTERNAL_LIMITS,
                ));
                segments.extend(self.step_segments(
                    "build",
                    &self.env.phases.build,
                    &self.release,
                    &[],
                ));
            }
            None => segments.push(Seg::step(
                "verify release",
                plan::verify_release(&self.layout, &self.release),
                INTERNAL_LIMITS,
            )),
        }
        let captured = self
            .chain(host, &segments, self.archive.as_deref(), self.cancel)
            .await?;
        Ok(captured
            .first()
            .filter(|id| !id.is_empty())
            .map(|id| ReleaseId::from_stored(id.clone())))
    }

    /// Prepares every host in parallel and returns the release each served before; on any
    /// failure removes the new release everywhere.
    pub async fn prepare_all(&self) -> Result<Vec<Option<ReleaseId>>, Failure> {
        let prepared = join_all(self.hosts.iter().map(|h| self.prepare(h))).await;
        let mut previous = Vec::with_capacity(prepared.len());
        for result in prepared {
            match result {
                Ok(release) => previous.push(release),
                Err(failure) => {
                    self.discard().await;
                    return Err(failure);
                }
            }
        }
        Ok(previous)
    }

    /// Removes a deploy's release from every host (never a rollback's: it is an old release).
    pub async fn discard(&self) {
        if self.archive.is_none() {
            return;
        }
        let script = plan::discard(&self.layout, &self.release);
        let never = CancellationToken::new();
        // Best effort: a host we cannot reach keeps a dead directory that prune removes later.
        join_all(
            self.hosts
                .iter()
                .map(|h| self.exec(h, "discard", script.clone(), &never)),
        )
        .await;
    }

    /// The last steps before anything is switched: the migrate phase once (on the first host,
    /// deploys only), then the fence (the job is still ours). On failure the caller cleans up
    /// (blue/green stops its new slots first, then the release is discarded).
    pub async fn migrate_and_fence(&self) -> Result<(), Failure> {
        if self.archive.is_some() && !self.env.phases.migrate.is_empty() {
            let migrate = &self.env.phases.migrate;
            self.steps(&self.hosts[0], "migrate", migrate, &self.release, &[])
                .await?;
        }
        if self.cancel.is_cancelled() || !self.fence.still_ours().await {
            return Err(Failure::general(
                "the job's lease was lost before the switch; nothing was switched",
            ));
        }
        Ok(())
    }

    /// Points `current` at `release`, then the proxy (blue/green), then runs `after_switch`,
    /// in one round trip. Never cancelled half-way.
    async fn switch(
        &self,
        host: &Host,
        release: &ReleaseId,
        proxy: Option<Seg>,
    ) -> Result<(), Failure> {
        let never = CancellationToken::new();
        let mut segments = vec![Seg::step(
            "switch",
            plan::switch(&self.layout, release, self.env.keep_releases),
            INTERNAL_LIMITS,
        )];
        segments.extend(proxy);
        segments.extend(self.step_segments(
            "after_switch",
            &self.env.phases.after_switch,
            release,
            &[],
        ));
        self.chain(host, &segments, None, &never).await.map(drop)
    }

    /// Switches `hosts` back to their previous releases; returns the names of those switched.
    pub async fn roll_back(&self, hosts: &[(&Host, &Option<ReleaseId>)]) -> Vec<String> {
        let done = join_all(hosts.iter().map(|(host, previous)| async move {
            let previous = previous.as_ref()?;
            self.journal.line(
                &host.name,
                "rollback",
                &format!("slipway: rolling back to {previous}"),
            );
            self.switch(host, previous, None)
                .await
                .ok()
                .map(|()| host.name.clone())
        }))
        .await;
        done.into_iter().flatten().collect()
    }

    pub fn journal(&self) -> &Journal {
        self.journal
    }

    pub fn live_slot(&self, host: &Host) -> Option<&str> {
        self.live_slots.get(&host.name).map(String::as_str)
    }
}

//! A job's run over its connected hosts: the operations every strategy is made of (prepare,
//! migrate and fence, switch, roll back, health checks in `health.rs`), each phase one chained
//! remote command per host.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::exec::{self, Exit, Limits, Output};
use super::journal::Journal;
use super::plan::{self, Layout};
use super::target::Target;
use super::{Failure, Fence, INTERNAL_LIMITS};
use crate::config::{App, Environment, Site, Step, Strategy};
use crate::domain::{HostSpec, ReleaseId};

/// One part of a chained remote command.
pub(super) struct Seg {
    pub(super) name: String,
    pub(super) script: String,
    pub(super) limits: Limits,
    /// Output returned to the caller instead of logged, and no step result (the bot's own
    /// reads, such as where `current` points).
    pub(super) capture: bool,
}

impl Seg {
    pub(super) fn step(name: &str, script: String, limits: Limits) -> Self {
        Self {
            name: name.to_owned(),
            script,
            limits,
            capture: false,
        }
    }

    pub(super) fn capture(script: String) -> Self {
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
    pub(super) target: Box<dyn Target>,
    /// Numbers the host's step results in order.
    pub(super) steps: AtomicI64,
}

/// One job's run over its connected hosts: the operations strategies are made of.
pub struct Run<'a> {
    pub job: &'a crate::store::Job,
    pub app: &'a App,
    pub env: &'a Environment,
    pub(super) journal: &'a Journal,
    pub(super) fence: &'a dyn Fence,
    pub(super) cancel: &'a CancellationToken,
    pub(super) http: &'a reqwest::Client,
    pub(super) layout: Layout,
    pub release: ReleaseId,
    /// The commit's tar archive (deploys; a rollback ships nothing).
    pub(super) archive: Option<Vec<u8>>,
    pub(super) live_slots: HashMap<String, String>,
    pub hosts: Vec<Host>,
}

impl Run<'_> {
    pub fn strategy(&self) -> &Strategy {
        &self.env.strategy
    }

    pub(super) fn vars(
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
        if let Some(site) = &self.env.site {
            vars.push(("SLIPWAY_PORT", site.port.to_string()));
            vars.push(("SLIPWAY_HOSTNAME", site.hostname.clone()));
        }
        vars.extend(extra.iter().cloned());
        vars
    }

    pub(super) fn layout_root(&self) -> &str {
        self.env.deploy_path.to_str().expect("validated as UTF-8")
    }

    /// Runs `segments` on `host` in one remote command (see [`exec::run_chain`]): logs and
    /// records each step, returns the captured output of `capture` segments, and stops at the
    /// first failure.
    pub(super) async fn chain(
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
            &mut |i, output| match (segments.get(i), output) {
                (Some(seg), Output::Line(line)) if seg.capture => captured.push(line),
                (Some(seg), Output::Line(line)) => journal.line(&host.name, &seg.name, &line),
                (None, Output::Line(line)) => journal.line(&host.name, "slipway", &line),
                // Progress as it happens; the step's result is recorded below.
                (Some(seg), Output::Ended(code)) if !seg.capture => {
                    journal.progressed(&host.name, &seg.name, Exit::Code(code).status());
                }
                (_, Output::Ended(_)) => {}
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
    pub(super) async fn exec(
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
    pub(super) fn step_segments(
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
    pub(super) async fn steps(
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
    pub(super) async fn prepare(&self, host: &Host) -> Result<Option<ReleaseId>, Failure> {
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
                "stopped before the switch (the job's lease was lost, or it was cancelled); \
                 nothing was switched",
            ));
        }
        Ok(())
    }

    /// Points `current` at `release`, then the proxy (blue/green), then runs `after_switch`,
    /// in one round trip. Never cancelled half-way.
    pub(super) async fn switch(
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

    /// Ephemeral environments: writes the route to the new environment on every host, once it
    /// is live and healthy (so a failed first deploy leaves no route pointing at nothing). A
    /// route the proxy's check rejects is taken back and fails the job.
    pub async fn route_all(&self, site: &Site) -> Result<(), Failure> {
        let script = plan::proxy_switch(&site.route_file, &site.route, &site.check, &site.reload);
        let never = CancellationToken::new();
        let routed = join_all(
            self.hosts
                .iter()
                .map(|h| self.exec(h, "route", script.clone(), &never)),
        )
        .await;
        routed.into_iter().collect()
    }

    /// Ephemeral environments: on `host`, takes the route away, runs the `stop` phase in the
    /// live release (if any), and deletes the environment's directory.
    pub async fn tear_down(&self, host: &Host, site: &Site) -> Result<(), Failure> {
        let first = [
            Seg::step(
                "remove route",
                plan::remove_route(&site.route_file, &site.check, &site.reload),
                INTERNAL_LIMITS,
            ),
            Seg::capture(plan::read_current(&self.layout)),
        ];
        let captured = self.chain(host, &first, None, self.cancel).await?;
        let mut rest = match captured.first().filter(|id| !id.is_empty()) {
            Some(live) => self.step_segments(
                "stop",
                &self.env.phases.stop,
                &ReleaseId::from_stored(live.clone()),
                &[],
            ),
            None => Vec::new(),
        };
        rest.push(Seg::step(
            "remove directory",
            plan::remove_environment(&self.layout),
            INTERNAL_LIMITS,
        ));
        self.chain(host, &rest, None, self.cancel).await.map(drop)
    }

    pub fn journal(&self) -> &Journal {
        self.journal
    }

    pub fn live_slot(&self, host: &Host) -> Option<&str> {
        self.live_slots.get(&host.name).map(String::as_str)
    }
}

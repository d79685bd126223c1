//! Typed, validated configuration.
//!
//! Sources, later ones winning: `slipway.toml`, then environment variables
//! `SLIPWAY_<SECTION>__<KEY>` (double underscore between levels, e.g.
//! `SLIPWAY_GITHUB__WEBHOOK_SECRET` or `SLIPWAY_APPS__SHOP__CLONE_URL`). Only variables with a
//! `__` are read, so the `SLIPWAY_APP`/`SLIPWAY_SHA` variables that steps see never leak in.
//!
//! [`Config::load`] either returns a config in which every value is valid, or a [`ConfigError`]
//! that names the key path of every problem at once.

mod file;
mod validate;

use validate::{
    Errors, Ports, http_url, resolve_local_url, secret, validate_dashboard, validate_env,
    validate_ephemeral, validate_slack,
};

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use globset::{Glob, GlobMatcher};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::{GitRef, HostSpec, Name};
use crate::releases::tags::TagMatcher;
use crate::store::JobKind;

pub const DEFAULT_PATH: &str = "config/slipway.toml";

#[derive(Debug)]
pub struct Config {
    pub server: Server,
    pub database: Database,
    pub github: Github,
    pub api: Api,
    /// Who may log in to the dashboard; without users it is read-only and loopback-only.
    pub dashboard: Dashboard,
    pub log_format: LogFormat,
    pub worker: Worker,
    /// Slack ChatOps, when configured.
    pub slack: Option<Slack>,
    pub apps: BTreeMap<Name, App>,
    pub schedules: Vec<Schedule>,
}

/// `[[schedules]]`: when to queue a housekeeping job (one per app, once per tick across
/// replicas).
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    /// Unix cron (5 fields, or 6 with seconds first), UTC.
    pub cron: croner::Cron,
    pub job: JobKind,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
}

#[derive(Clone)]
pub struct Database {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`.
    pub url: String,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("url", &crate::store::redact_url(&self.url))
            .finish()
    }
}

#[derive(Debug)]
pub struct Github {
    pub webhook_secret: SecretString,
    /// Base URL of GitHub's REST API, without a trailing `/`: `https://api.github.com`, or
    /// `https://HOST/api/v3` for GitHub Enterprise Server.
    pub api_url: String,
    /// Token for GitHub's REST API (deployments, their statuses, branches); without one slipway
    /// makes no calls to GitHub.
    pub token: Option<SecretString>,
    /// Where slipway's API is reachable by the people reading GitHub, without a trailing `/`;
    /// the links slipway puts on GitHub point there.
    pub public_url: Option<String>,
}

impl Github {
    /// The link to a job's record in slipway's API (a deployment status's `log_url`), when
    /// `public_url` is configured.
    pub fn job_url(&self, job_id: i64) -> Option<String> {
        let base = self.public_url.as_deref()?;
        Some(format!("{base}/api/jobs/{job_id}"))
    }
}

/// `[slack]`: the one Slack app (and workspace) slipway answers.
#[derive(Debug)]
pub struct Slack {
    /// Verifies that a request came from Slack (`X-Slack-Signature`).
    pub signing_secret: SecretString,
    /// The bot's token for Slack's Web API; without one slipway posts nothing.
    pub bot_token: Option<SecretString>,
    /// Base URL of Slack's Web API, without a trailing `/`.
    pub api_url: String,
    /// The workspace whose requests are answered; any other team's are refused.
    pub team_id: String,
    /// The channel id progress and results are posted to.
    pub channel: Option<String>,
    /// The app a bare environment name means when several apps have one of that name.
    pub default_app: Option<Name>,
    /// How long a slash command may take before its answer says it is still at work; the
    /// result then follows through the command's `response_url` (Slack waits 3 s at most).
    pub answer_within: Duration,
}

#[derive(Debug)]
pub struct Api {
    /// Bearer token for the API's write endpoints; without one they are refused.
    pub token: Option<SecretString>,
}

/// `[dashboard]`: the web dashboard's users.
#[derive(Debug)]
pub struct Dashboard {
    /// Who may log in and act; empty: the dashboard is read-only and answers loopback peers only.
    pub users: Vec<DashboardUser>,
    /// How long a login lasts.
    pub session: Duration,
}

/// A person who logs in to the dashboard with their token, and acts there as `slack_user` (the
/// id environments' `deployers` list).
#[derive(Debug)]
pub struct DashboardUser {
    pub name: String,
    pub slack_user: String,
    pub token: SecretString,
}

#[derive(Debug, Clone)]
pub struct Worker {
    pub concurrency: usize,
    /// How long a claimed job stays ours without a heartbeat.
    pub lease: Duration,
    /// How often an idle worker looks for work when nothing woke it.
    pub poll_interval: Duration,
    /// Claims of one job (lease expiries included) before it is failed for good.
    pub max_attempts: u32,
    /// Where the bot keeps its git mirrors and SSH control sockets.
    pub data_dir: PathBuf,
    /// On SIGTERM/SIGINT, how long a running job may go on before its step is stopped and the
    /// job returns to the queue.
    pub shutdown_grace: Duration,
}

#[derive(Debug)]
pub struct App {
    pub name: Name,
    /// `owner/name` as GitHub sends it; matched case-insensitively, as GitHub treats it.
    pub repo: String,
    pub clone_url: String,
    pub environments: BTreeMap<Name, Environment>,
    pub triggers: Vec<Trigger>,
    /// Environments made from branches, by template name.
    pub ephemeral: BTreeMap<Name, Ephemeral>,
    pub releases: Option<Releases>,
    /// The Slack channel id of this app's jobs; `None`: `slack.channel`.
    pub channel: Option<String>,
}

/// `[apps.<app>.releases]`: what a tag push does.
#[derive(Debug)]
pub struct Releases {
    /// Tags that make releases: `semver`, or a glob such as `v*`; only they count as the
    /// previous release.
    pub tags: TagMatcher,
    /// Deploy each release to this environment.
    pub deploy: Option<Name>,
    pub notes: Notes,
    /// Refuse tags on commits this branch does not contain.
    pub branch: Option<GitRef>,
}

#[derive(Debug, Clone)]
pub struct Environment {
    pub name: Name,
    pub hosts: Vec<HostSpec>,
    pub deploy_path: PathBuf,
    pub keep_releases: usize,
    pub ssh: Ssh,
    pub phases: Phases,
    pub strategy: Strategy,
    pub health: Option<Health>,
    /// Roll back hosts whose health check fails after the switch.
    pub auto_rollback: bool,
    /// Ephemeral environments: the hostname, port and proxy route they are reached by.
    pub site: Option<Site>,
    /// Where people see it (GitHub Deployments' `environment_url`, chat).
    pub url: Option<String>,
    /// GitHub's `production_environment`.
    pub production: bool,
    /// Deploys and rollbacks wait for this many approvals (0: none), for at most
    /// `approval_timeout`.
    pub approvals: u32,
    pub approval_timeout: Duration,
    /// Slack user ids allowed to deploy, roll back and cancel jobs here; `None`: anyone in the
    /// configured team.
    pub deployers: Option<Vec<String>>,
    /// The Slack channel id of this environment's jobs; `None`: the app's, else `slack.channel`.
    pub channel: Option<String>,
}

/// Where an ephemeral environment is reached: its hostname, its port on the hosts, and the
/// proxy route file that maps one to the other.
#[derive(Debug, Clone)]
pub struct Site {
    pub hostname: String,
    pub port: u16,
    pub route_file: String,
    /// The route file's text, rendered.
    pub route: String,
    pub check: String,
    pub reload: String,
}

/// `[apps.<app>.ephemeral.<name>]`: how branches matching `branches` become environments.
#[derive(Debug)]
pub struct Ephemeral {
    pub name: Name,
    pub branches: GlobMatcher,
    /// The pattern's literal start (`demo/` of `demo/*`), left out of slugs.
    pub prefix: String,
    /// A hostname with `{slug}` in its first label.
    pub hostname: String,
    /// Each environment's URL; `{hostname}` is replaced.
    pub url: String,
    pub ports: std::ops::RangeInclusive<u16>,
    /// Idle time (since the last push) after which cleanup tears an environment down.
    pub ttl: Duration,
    /// How long before the TTL ends the idle warning is given.
    pub warn_before: Duration,
    /// Most environments of this template existing at once.
    pub max: usize,
    /// Branches whose environments cleanup never removes.
    pub pinned: Vec<GlobMatcher>,
    /// Orphaned directories and route files on the hosts: reported, or removed.
    pub sweep: Sweep,
    pub route: Route,
    /// Hosts, steps, health check...: every environment's settings. Its `deploy_path` is the
    /// parent of each environment's own directory; its health check has no port (each
    /// environment is checked on its own).
    pub template: Environment,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Path of the route file on each host; `{app}` and `{env}` are replaced.
    pub file: String,
    /// The route file's text; `{app}`, `{env}`, `{slug}`, `{hostname}` and `{port}` are replaced.
    pub template: String,
    pub check: String,
    pub reload: String,
}

impl Ephemeral {
    /// The environment `env` of `app`, reached at `hostname`, served on `port`.
    pub fn environment(
        &self,
        app: &Name,
        env: &Name,
        slug: &str,
        hostname: &str,
        port: u16,
    ) -> Environment {
        let render = |text: &str| {
            text.replace("{app}", app.as_str())
                .replace("{env}", env.as_str())
                .replace("{slug}", slug)
                .replace("{hostname}", hostname)
                .replace("{port}", &port.to_string())
        };
        let mut environment = self.template.clone();
        environment.name = env.clone();
        environment.deploy_path = self.template.deploy_path.join(env.as_str());
        if let Some(health) = &mut environment.health {
            health.port = Some(port);
        }
        environment.url = Some(render(&self.url));
        environment.site = Some(Site {
            hostname: hostname.to_owned(),
            port,
            route_file: render(&self.route.file),
            route: render(&self.route.template),
            check: self.route.check.clone(),
            reload: self.route.reload.clone(),
        });
        environment
    }
}

/// The steps of a deploy, by when they run.
#[derive(Debug, Clone, Default)]
pub struct Phases {
    /// In the new release directory on every host, before anything switches.
    pub build: Vec<Step>,
    /// Once per deploy, on the first host, after build and before the switch.
    pub migrate: Vec<Step>,
    /// Start the app (blue/green: in a slot, with SLIPWAY_SLOT and SLIPWAY_PORT).
    pub start: Vec<Step>,
    /// Stop the app (blue/green: a slot).
    pub stop: Vec<Step>,
    /// On every host right after its switch (e.g. restart the service).
    pub after_switch: Vec<Step>,
}

#[derive(Debug, Clone)]
pub enum Strategy {
    AllAtOnce,
    Rolling {
        batch: usize,
        max_failures: usize,
    },
    Canary {
        hosts: usize,
        observe: Duration,
        batch: usize,
    },
    BlueGreen(BlueGreen),
}

#[derive(Debug, Clone)]
pub struct BlueGreen {
    pub blue_port: u16,
    pub green_port: u16,
    pub upstream_file: String,
    /// The upstream file's text; `{port}` and `{slot}` are replaced.
    pub upstream_template: String,
    pub check: String,
    pub reload: String,
    /// How long the old slot keeps running after the switch, for in-flight requests.
    pub drain: Duration,
}

#[derive(Debug, Clone)]
pub struct Health {
    pub path: String,
    pub port: Option<u16>,
    /// Expected status; any 2xx when unset.
    pub status: Option<u16>,
    /// A substring the body must contain.
    pub body: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub from: HealthFrom,
}

pub use file::{HealthFrom, LogFormat, Notes, Sweep};

#[derive(Debug, Clone)]
pub struct Ssh {
    pub key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// Shown in logs and results; the command itself unless the config names it.
    pub name: String,
    /// Operator-written shell, run by `sh -c` in the release directory.
    pub run: String,
    pub timeout: Duration,
    /// The step fails if it prints nothing for this long.
    pub idle_timeout: Duration,
}

#[derive(Debug)]
pub struct Trigger {
    pub push: GlobMatcher,
    pub deploy: Name,
    /// Deploy every pushed commit (`queue = "every"`), instead of only the newest waiting one.
    pub every: bool,
}

impl App {
    /// The triggers a push of `branch` fires, in order.
    pub fn triggers_for<'a>(&'a self, branch: &'a str) -> impl Iterator<Item = &'a Trigger> + 'a {
        self.triggers
            .iter()
            .filter(move |t| t.push.is_match(branch))
    }
}

impl Config {
    /// Loads `path` plus environment overrides and validates everything.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::one(
                "",
                format!("config file {} not found", path.display()),
            ));
        }
        let figment = Figment::from(Toml::file_exact(path)).merge(
            Env::prefixed("SLIPWAY_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        let raw: file::File = figment.extract().map_err(ConfigError::from_figment)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::validate(raw, base)
    }

    /// Every secret value the config holds, for masking in logs and job output.
    pub fn secrets(&self) -> Vec<&str> {
        let mut secrets = vec![self.github.webhook_secret.expose_secret()];
        secrets.extend(self.github.token.as_ref().map(ExposeSecret::expose_secret));
        secrets.extend(self.api.token.as_ref().map(ExposeSecret::expose_secret));
        secrets.extend(
            self.dashboard
                .users
                .iter()
                .map(|user| user.token.expose_secret()),
        );
        if let Some(slack) = &self.slack {
            secrets.push(slack.signing_secret.expose_secret());
            secrets.extend(slack.bot_token.as_ref().map(ExposeSecret::expose_secret));
        }
        secrets
    }

    pub fn app(&self, name: &str) -> Option<&App> {
        Name::parse(name).ok().and_then(|n| self.apps.get(&n))
    }

    pub fn environment(&self, app: &str, env: &str) -> Option<&Environment> {
        let env = Name::parse(env).ok()?;
        self.app(app)?.environments.get(&env)
    }

    fn validate(raw: file::File, base: &Path) -> Result<Self, ConfigError> {
        let mut errors = Errors::default();

        let webhook_secret = secret(
            &mut errors,
            "github.webhook_secret",
            raw.github.webhook_secret,
            raw.github.webhook_secret_file,
        );
        if webhook_secret.is_none() && !errors.0.iter().any(|(p, _)| p.starts_with("github.")) {
            errors.push(
                "github.webhook_secret",
                "required (or webhook_secret_file): webhooks cannot be verified without it",
            );
        }
        let github_token = secret(
            &mut errors,
            "github.token",
            raw.github.token,
            raw.github.token_file,
        );
        // It travels in an HTTP header: a space or control character would make every request
        // fail (or the client refuse to start), so say so here, naming the key.
        if github_token
            .as_ref()
            .is_some_and(|t| !t.expose_secret().bytes().all(|b| b.is_ascii_graphic()))
        {
            errors.push(
                "github.token",
                "must be printable ASCII without spaces (a GitHub token)",
            );
        }
        let github_api_url = http_url(&mut errors, "github.api_url", &raw.github.api_url);
        let public_url = raw
            .github
            .public_url
            .as_deref()
            .and_then(|url| http_url(&mut errors, "github.public_url", url));
        let api_token = secret(&mut errors, "api.token", raw.api.token, raw.api.token_file);
        let dashboard = validate_dashboard(&mut errors, raw.dashboard);

        let w = raw.worker;
        if w.concurrency == 0 {
            errors.push("worker.concurrency", "must be at least 1");
        }
        if w.max_attempts == 0 {
            errors.push("worker.max_attempts", "must be at least 1");
        }
        if w.lease < Duration::from_secs(1) {
            errors.push("worker.lease", "must be at least 1s");
        }
        let url = &raw.database.url;
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            errors.push(
                "database.url",
                format!(
                    "unsupported database URL {:?}: use sqlite://PATH or postgres://USER@HOST/DB",
                    crate::store::redact_url(url)
                ),
            );
        }

        let mut apps = BTreeMap::new();
        let mut repos: BTreeMap<String, String> = BTreeMap::new();
        for (app_key, app) in raw.apps {
            let at = format!("apps.{app_key}");
            let Some(name) = errors.check(&at, Name::parse(&app_key)) else {
                continue;
            };
            let repo_ok = app
                .repo
                .split_once('/')
                .is_some_and(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'));
            if !repo_ok {
                errors.push(format!("{at}.repo"), "must be owner/name");
            }
            if let Some(other) = repos.insert(app.repo.to_ascii_lowercase(), app_key.clone()) {
                errors.push(
                    format!("{at}.repo"),
                    format!("{} is also the repo of apps.{other}", app.repo),
                );
            }
            if app.clone_url.is_empty() || app.clone_url.starts_with('-') {
                errors.push(format!("{at}.clone_url"), "must be a git URL or path");
            }
            let clone_url = resolve_local_url(&app.clone_url, base);
            let mut environments = BTreeMap::new();
            for (env_key, env) in app.environments {
                let at = format!("{at}.environments.{env_key}");
                if [
                    crate::housekeeping::HOUSEKEEPING_ENV,
                    crate::releases::RELEASES_ENV,
                ]
                .contains(&env_key.as_str())
                {
                    errors.push(&at, "this name is reserved for cleanup and reconcile jobs");
                }
                if let Some(env) =
                    validate_env(&mut errors, &at, &env_key, env, base, Ports::Configured)
                {
                    environments.insert(env.name.clone(), env);
                }
            }
            let mut triggers = Vec::new();
            for (i, trigger) in app.triggers.into_iter().enumerate() {
                let at = format!("{at}.triggers[{i}]");
                let push = errors.check(
                    &format!("{at}.push"),
                    Glob::new(&trigger.push).map(|g| g.compile_matcher()),
                );
                let deploy = match Name::parse(&trigger.deploy) {
                    Ok(env) if environments.contains_key(&env) => Some(env),
                    _ => {
                        let known: Vec<_> = environments.keys().map(Name::as_str).collect();
                        errors.push(
                            format!("{at}.deploy"),
                            format!(
                                "unknown environment {:?} (known: {})",
                                trigger.deploy,
                                known.join(", ")
                            ),
                        );
                        None
                    }
                };
                if let (Some(push), Some(deploy)) = (push, deploy) {
                    triggers.push(Trigger {
                        push,
                        deploy,
                        every: trigger.queue == file::Queueing::Every,
                    });
                }
            }
            let mut ephemeral = BTreeMap::new();
            for (key, template) in app.ephemeral {
                let at = format!("{at}.ephemeral.{key}");
                for env in environments.keys() {
                    if env.as_str().starts_with(&format!("{key}-")) {
                        errors.push(
                            format!("apps.{app_key}.environments.{env}"),
                            format!("names starting with \"{key}-\" belong to the ephemeral environments of {at}"),
                        );
                    }
                }
                if let Some(template) = validate_ephemeral(&mut errors, &at, &key, template, base) {
                    ephemeral.insert(template.name.clone(), template);
                }
            }
            let releases = app.releases.and_then(|r| {
                let at = format!("apps.{app_key}.releases");
                let tags = errors.check(&format!("{at}.tags"), TagMatcher::parse(&r.tags));
                let deploy = match r.deploy.as_deref().map(Name::parse) {
                    None => Some(None),
                    Some(Ok(env)) if environments.contains_key(&env) => Some(Some(env)),
                    Some(_) => {
                        let known: Vec<_> = environments.keys().map(Name::as_str).collect();
                        errors.push(
                            format!("{at}.deploy"),
                            format!("unknown environment (known: {})", known.join(", ")),
                        );
                        None
                    }
                };
                let branch = r
                    .branch
                    .map(|b| errors.check(&format!("{at}.branch"), GitRef::parse(&b)));
                Some(Releases {
                    tags: tags?,
                    deploy: deploy?,
                    notes: r.notes,
                    branch: match branch {
                        None => None,
                        Some(b) => Some(b?),
                    },
                })
            });
            apps.insert(
                name.clone(),
                App {
                    name,
                    repo: app.repo,
                    clone_url,
                    environments,
                    triggers,
                    ephemeral,
                    releases,
                    channel: app.channel.filter(|c| {
                        validate::slack_channel(&mut errors, &format!("apps.{app_key}.channel"), c)
                    }),
                },
            );
        }

        let mut schedules: Vec<Schedule> = Vec::new();
        for (i, raw) in raw.schedules.into_iter().enumerate() {
            let at = format!("schedules[{i}]");
            let parser = croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Optional)
                .build();
            let cron = errors.check(&format!("{at}.cron"), parser.parse(&raw.cron));
            let job = match raw.job.as_str() {
                "cleanup" => Some(JobKind::Cleanup),
                "reconcile" => Some(JobKind::Reconcile),
                other => {
                    errors.push(
                        format!("{at}.job"),
                        format!("unknown job {other:?} (known: cleanup, reconcile)"),
                    );
                    None
                }
            };
            let name = raw.name.unwrap_or_else(|| raw.job.clone());
            if schedules.iter().any(|s| s.name == name) {
                errors.push(
                    format!("{at}.name"),
                    format!("{name:?} is used by another schedule"),
                );
            }
            if let (Some(cron), Some(job)) = (cron, job) {
                schedules.push(Schedule { name, cron, job });
            }
        }
        let slack = raw
            .slack
            .and_then(|slack| validate_slack(&mut errors, slack, &apps));
        let bot_token = slack.as_ref().is_some_and(|s| s.bot_token.is_some());
        validate::check_channels(&mut errors, &apps, bot_token);

        errors.finish()?;
        let mut config = Self {
            server: Server {
                listen: raw.server.listen,
            },
            database: Database {
                url: raw.database.url,
            },
            github: Github {
                webhook_secret: webhook_secret.expect("checked above"),
                api_url: github_api_url.expect("checked above"),
                token: github_token,
                public_url,
            },
            api: Api { token: api_token },
            dashboard,
            log_format: raw.telemetry.log_format,
            worker: Worker {
                concurrency: w.concurrency,
                lease: w.lease,
                poll_interval: w.poll_interval,
                max_attempts: w.max_attempts,
                data_dir: w.data_dir,
                shutdown_grace: w.shutdown_grace,
            },
            slack,
            apps,
            schedules,
        };
        config.mask_step_names();
        Ok(config)
    }

    /// A step's name is shown everywhere (logs, results, chat); when it defaults to the command
    /// and the command holds a secret literal, the name shows `****` instead.
    fn mask_step_names(&mut self) {
        let masker = crate::mask::Masker::new(self.secrets());
        let masked = |steps: &mut Vec<Step>| {
            for step in steps {
                step.name = masker.mask(&step.name).into_owned();
            }
        };
        for app in self.apps.values_mut() {
            let templates = app.ephemeral.values_mut().map(|e| &mut e.template);
            for env in app.environments.values_mut().chain(templates) {
                let p = &mut env.phases;
                for steps in [
                    &mut p.build,
                    &mut p.migrate,
                    &mut p.start,
                    &mut p.stop,
                    &mut p.after_switch,
                ] {
                    masked(steps);
                }
            }
        }
    }

    /// Finds the app whose `repo` is `full_name` (GitHub's `owner/name`).
    pub fn app_for_repo(&self, full_name: &str) -> Option<&App> {
        self.apps
            .values()
            .find(|app| app.repo.eq_ignore_ascii_case(full_name))
    }
}

/// Every problem found in a config, each with the key path it belongs to.
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<(String, String)>,
}

impl ConfigError {
    fn one(path: &str, message: String) -> Self {
        Self {
            problems: vec![(path.to_owned(), message)],
        }
    }

    fn from_figment(err: figment::Error) -> Self {
        let problems = err
            .into_iter()
            .map(|e| {
                let mut path = e.path.join(".");
                if let figment::error::Kind::MissingField(field) = &e.kind {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(field);
                }
                (path, e.kind.to_string())
            })
            .collect();
        Self { problems }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (path, message)) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if path.is_empty() {
                write!(f, "{message}")?;
            } else {
                write!(f, "{path}: {message}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests;

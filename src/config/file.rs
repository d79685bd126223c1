//! The shape of `slipway.toml` as written by an operator, before validation. Every key here is
//! documented in `config/slipway.toml`; unknown keys are errors so a typo never silently does
//! nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub database: Database,
    #[serde(default)]
    pub github: Github,
    #[serde(default)]
    pub api: Api,
    #[serde(default)]
    pub dashboard: Dashboard,
    #[serde(default)]
    pub telemetry: Telemetry,
    #[serde(default)]
    pub worker: Worker,
    /// Optional: without it the Slack routes refuse every request.
    pub slack: Option<Slack>,
    #[serde(default)]
    pub apps: BTreeMap<String, App>,
    #[serde(default)]
    pub schedules: Vec<Schedule>,
}

/// `[[schedules]]`: a cron expression and the housekeeping job it queues.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub name: Option<String>,
    pub cron: String,
    pub job: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    #[serde(default = "Server::default_listen")]
    pub listen: SocketAddr,
}

impl Server {
    fn default_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: Self::default_listen(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    #[serde(default = "Database::default_url")]
    pub url: String,
}

impl Database {
    fn default_url() -> String {
        "sqlite://var/slipway.db".into()
    }
}

impl Default for Database {
    fn default() -> Self {
        Self {
            url: Self::default_url(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Github {
    pub webhook_secret: Option<SecretString>,
    pub webhook_secret_file: Option<PathBuf>,
    #[serde(default = "Github::default_api_url")]
    pub api_url: String,
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
    pub public_url: Option<String>,
}

impl Github {
    fn default_api_url() -> String {
        "https://api.github.com".into()
    }
}

impl Default for Github {
    fn default() -> Self {
        Self {
            webhook_secret: None,
            webhook_secret_file: None,
            api_url: Self::default_api_url(),
            token: None,
            token_file: None,
            public_url: None,
        }
    }
}

/// `[slack]`: the Slack app slipway answers for (slash command, buttons, progress messages).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slack {
    pub signing_secret: Option<SecretString>,
    pub signing_secret_file: Option<PathBuf>,
    pub bot_token: Option<SecretString>,
    pub bot_token_file: Option<PathBuf>,
    #[serde(default = "Slack::default_api_url")]
    pub api_url: String,
    pub team_id: Option<String>,
    pub channel: Option<String>,
    pub default_app: Option<String>,
    #[serde(default = "Slack::default_answer_within", with = "humantime_serde")]
    pub answer_within: Duration,
}

impl Slack {
    fn default_api_url() -> String {
        "https://slack.com/api".into()
    }

    fn default_answer_within() -> Duration {
        Duration::from_secs(2)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    #[serde(default)]
    pub log_format: LogFormat,
}

/// `auto`: JSON lines unless stderr is a terminal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Auto,
    Json,
    Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
}

/// `[dashboard]`: who may log in to the web dashboard (`/ui`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    #[serde(default)]
    pub users: Vec<DashboardUser>,
    #[serde(default = "Dashboard::default_session", with = "humantime_serde")]
    pub session: Duration,
}

impl Dashboard {
    fn default_session() -> Duration {
        Duration::from_secs(12 * 3600)
    }
}

impl Default for Dashboard {
    fn default() -> Self {
        Self {
            users: Vec::new(),
            session: Self::default_session(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardUser {
    pub name: String,
    pub slack_user: String,
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Worker {
    #[serde(default = "Worker::default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "Worker::default_lease", with = "humantime_serde")]
    pub lease: Duration,
    #[serde(default = "Worker::default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(default = "Worker::default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "Worker::default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "Worker::default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Worker {
    fn default_concurrency() -> usize {
        4
    }
    fn default_lease() -> Duration {
        Duration::from_secs(30)
    }
    fn default_poll_interval() -> Duration {
        Duration::from_secs(1)
    }
    fn default_max_attempts() -> u32 {
        3
    }
    fn default_data_dir() -> PathBuf {
        PathBuf::from("var")
    }
    fn default_shutdown_grace() -> Duration {
        Duration::from_secs(30)
    }
}

impl Default for Worker {
    fn default() -> Self {
        Self {
            concurrency: Self::default_concurrency(),
            lease: Self::default_lease(),
            poll_interval: Self::default_poll_interval(),
            max_attempts: Self::default_max_attempts(),
            data_dir: Self::default_data_dir(),
            shutdown_grace: Self::default_shutdown_grace(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub repo: String,
    pub clone_url: String,
    #[serde(default)]
    pub environments: BTreeMap<String, Environment>,
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    #[serde(default)]
    pub ephemeral: BTreeMap<String, Ephemeral>,
    pub releases: Option<Releases>,
    /// The Slack channel of this app's jobs (unset: `slack.channel`).
    pub channel: Option<String>,
}

/// `[apps.<app>.releases]`: tags matching `tags` become GitHub Releases (and, optionally, a
/// deploy of the tag to `deploy`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Releases {
    /// `"semver"` (semver versions, with or without a leading `v`) or a glob (`"v*"`).
    pub tags: String,
    pub deploy: Option<String>,
    #[serde(default)]
    pub notes: Notes,
    pub branch: Option<String>,
}

/// Where a release's notes come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notes {
    /// GitHub's generated notes since the previous matching tag.
    #[default]
    Github,
    /// The subjects of the commits since the previous matching tag (from the git mirror).
    Commits,
}

/// Environments made on demand from branches (`demo/*`): one per branch, torn down with it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ephemeral {
    pub branches: String,
    pub hostname: String,
    #[serde(default = "Ephemeral::default_url")]
    pub url: String,
    pub ports: String,
    #[serde(default = "Ephemeral::default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    #[serde(default = "Ephemeral::default_warn_before", with = "humantime_serde")]
    pub warn_before: Duration,
    #[serde(default = "Ephemeral::default_max")]
    pub max: usize,
    #[serde(default)]
    pub pinned: Vec<String>,
    #[serde(default)]
    pub sweep: Sweep,
    #[serde(default)]
    pub route: Route,
    pub hosts: Vec<String>,
    pub deploy_path: PathBuf,
    #[serde(default = "Ephemeral::default_keep_releases")]
    pub keep_releases: usize,
    #[serde(default)]
    pub ssh: Ssh,
    #[serde(default)]
    pub steps: Steps,
    pub health: Option<Health>,
    #[serde(
        default = "Environment::default_step_timeout",
        with = "humantime_serde"
    )]
    pub step_timeout: Duration,
    #[serde(
        default = "Environment::default_step_idle_timeout",
        with = "humantime_serde"
    )]
    pub step_idle_timeout: Duration,
    pub deployers: Option<Vec<String>>,
}

impl Ephemeral {
    fn default_ttl() -> Duration {
        Duration::from_secs(7 * 24 * 3600)
    }
    fn default_warn_before() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    fn default_max() -> usize {
        20
    }
    fn default_url() -> String {
        "https://{hostname}".into()
    }
    fn default_keep_releases() -> usize {
        2
    }

    /// The same settings as a static environment's, for the shared validation.
    pub fn environment(&mut self) -> Environment {
        Environment {
            hosts: std::mem::take(&mut self.hosts),
            deploy_path: std::mem::take(&mut self.deploy_path),
            keep_releases: self.keep_releases,
            ssh: std::mem::take(&mut self.ssh),
            steps: std::mem::take(&mut self.steps),
            strategy: Strategy::AllAtOnce,
            health: self.health.take(),
            auto_rollback: true,
            url: None,
            production: Some(false),
            approvals: 0,
            approval_timeout: Environment::default_approval_timeout(),
            step_timeout: self.step_timeout,
            step_idle_timeout: self.step_idle_timeout,
            deployers: self.deployers.take(),
            // Ephemeral environments post to their app's channel.
            channel: None,
        }
    }
}

/// What cleanup does with directories and route files on the hosts that belong to no existing
/// environment (left by a crash, a lost teardown, a hand-made copy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sweep {
    /// List them in the cleanup job's log.
    #[default]
    Report,
    /// Remove them (routes with the proxy check and reload).
    Remove,
}

/// How a proxy routes an ephemeral environment's hostname to its port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default = "Route::default_file")]
    pub file: String,
    #[serde(default = "Route::default_template")]
    pub template: String,
    #[serde(default = "BlueGreen::default_check")]
    pub check: String,
    #[serde(default = "BlueGreen::default_reload")]
    pub reload: String,
}

impl Route {
    fn default_file() -> String {
        "/etc/nginx/conf.d/slipway-{app}-{env}.conf".into()
    }
    fn default_template() -> String {
        "server {\n    listen 80;\n    server_name {hostname};\n    location / {\n        \
         proxy_pass http://127.0.0.1:{port};\n        proxy_set_header Host $host;\n    }\n}\n"
            .into()
    }
}

impl Default for Route {
    fn default() -> Self {
        Self {
            file: Self::default_file(),
            template: Self::default_template(),
            check: BlueGreen::default_check(),
            reload: BlueGreen::default_reload(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub hosts: Vec<String>,
    pub deploy_path: PathBuf,
    #[serde(default = "Environment::default_keep_releases")]
    pub keep_releases: usize,
    #[serde(default)]
    pub ssh: Ssh,
    #[serde(default)]
    pub steps: Steps,
    #[serde(default)]
    pub strategy: Strategy,
    pub health: Option<Health>,
    #[serde(default = "Environment::default_auto_rollback")]
    pub auto_rollback: bool,
    /// Where people see the environment (GitHub Deployments, chat).
    pub url: Option<String>,
    /// Marks the GitHub environment as production (default: the environment is named
    /// `production`).
    pub production: Option<bool>,
    /// People (other than the requester) who must approve each deploy and rollback.
    #[serde(default)]
    pub approvals: u32,
    #[serde(
        default = "Environment::default_approval_timeout",
        with = "humantime_serde"
    )]
    pub approval_timeout: Duration,
    #[serde(
        default = "Environment::default_step_timeout",
        with = "humantime_serde"
    )]
    pub step_timeout: Duration,
    #[serde(
        default = "Environment::default_step_idle_timeout",
        with = "humantime_serde"
    )]
    pub step_idle_timeout: Duration,
    /// Slack user ids allowed to deploy, roll back and cancel here (unset: anyone in the team).
    pub deployers: Option<Vec<String>>,
    /// The Slack channel of this environment's jobs (unset: the app's, else `slack.channel`).
    pub channel: Option<String>,
}

impl Environment {
    fn default_keep_releases() -> usize {
        5
    }
    fn default_auto_rollback() -> bool {
        true
    }
    fn default_step_timeout() -> Duration {
        Duration::from_secs(600)
    }
    fn default_step_idle_timeout() -> Duration {
        Duration::from_secs(120)
    }
    pub(super) fn default_approval_timeout() -> Duration {
        Duration::from_secs(3600)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    pub key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    #[serde(default = "Ssh::default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Ssh {
    fn default_connect_timeout() -> Duration {
        Duration::from_secs(10)
    }
}

impl Default for Ssh {
    fn default() -> Self {
        Self {
            key: None,
            known_hosts: None,
            connect_timeout: Self::default_connect_timeout(),
        }
    }
}

/// Steps: a list (the `build` phase), or a table of phases.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Steps {
    Build(Vec<Step>),
    Phases(Phases),
}

impl Default for Steps {
    fn default() -> Self {
        Self::Build(Vec::new())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phases {
    #[serde(default)]
    pub build: Vec<Step>,
    #[serde(default)]
    pub migrate: Vec<Step>,
    #[serde(default)]
    pub start: Vec<Step>,
    #[serde(default)]
    pub stop: Vec<Step>,
    #[serde(default)]
    pub after_switch: Vec<Step>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Strategy {
    #[default]
    AllAtOnce,
    Rolling {
        batch: usize,
        #[serde(default)]
        max_failures: usize,
    },
    Canary {
        hosts: usize,
        #[serde(with = "humantime_serde")]
        observe: Duration,
        batch: Option<usize>,
    },
    BlueGreen(BlueGreen),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlueGreen {
    pub blue_port: u16,
    pub green_port: u16,
    pub upstream_file: PathBuf,
    #[serde(default = "BlueGreen::default_template")]
    pub upstream_template: String,
    #[serde(default = "BlueGreen::default_check")]
    pub check: String,
    #[serde(default = "BlueGreen::default_reload")]
    pub reload: String,
    #[serde(default = "BlueGreen::default_drain", with = "humantime_serde")]
    pub drain: Duration,
}

impl BlueGreen {
    fn default_template() -> String {
        "server 127.0.0.1:{port};\n".into()
    }
    fn default_check() -> String {
        "nginx -t -q".into()
    }
    fn default_reload() -> String {
        "nginx -s reload".into()
    }
    fn default_drain() -> Duration {
        Duration::from_secs(5)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub path: String,
    pub port: Option<u16>,
    pub status: Option<u16>,
    pub body: Option<String>,
    #[serde(default = "Health::default_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "Health::default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "Health::default_retries")]
    pub retries: u32,
    #[serde(default)]
    pub from: HealthFrom,
}

impl Health {
    fn default_interval() -> Duration {
        Duration::from_secs(1)
    }
    fn default_timeout() -> Duration {
        Duration::from_secs(2)
    }
    fn default_retries() -> u32 {
        10
    }
}

/// Where the health check's HTTP request starts: the bot, or the host itself (`curl` over SSH),
/// for apps whose ports are only reachable on the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthFrom {
    #[default]
    Bot,
    Host,
}

/// A step is either a shell line, or a table with a name and its own timeouts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Step {
    Line(String),
    Table(StepTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepTable {
    pub run: String,
    pub name: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    pub push: String,
    pub deploy: String,
    #[serde(default)]
    pub queue: Queueing,
}

/// What a push does to the environment's automatic deploys still waiting in the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Queueing {
    /// The newest replaces them: at most one waits, and it is the newest commit.
    #[default]
    Latest,
    /// Every pushed commit is deployed, in order.
    Every,
}

//! Validation helpers: each turns part of the file's shape into validated config, recording
//! every problem with its key path instead of stopping at the first.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use globset::Glob;

use super::{
    App, BlueGreen, ConfigError, Dashboard, DashboardUser, Environment, Ephemeral, Health, Phases,
    Route, Slack, Ssh, Step, Strategy, file,
};
use crate::domain::{HostSpec, Name};

pub(super) fn validate_env(
    errors: &mut Errors,
    at: &str,
    key: &str,
    env: file::Environment,
    base: &Path,
    ports: Ports,
) -> Option<Environment> {
    let name = errors.check(at, Name::parse(key));
    if env.hosts.is_empty() {
        errors.push(
            format!("{at}.hosts"),
            "list at least one host (or \"local\")",
        );
    }
    let mut hosts = Vec::new();
    for (i, host) in env.hosts.iter().enumerate() {
        if let Some(host) = errors.check(&format!("{at}.hosts[{i}]"), HostSpec::parse(host)) {
            if hosts.contains(&host) {
                errors.push(
                    format!("{at}.hosts[{i}]"),
                    format!("{host} is listed twice"),
                );
            }
            hosts.push(host);
        }
    }
    if hosts.contains(&HostSpec::Local) && hosts.len() > 1 {
        errors.push(
            format!("{at}.hosts"),
            "\"local\" cannot be mixed with SSH hosts",
        );
    }
    let local = hosts == [HostSpec::Local];
    let deploy_path = if env.deploy_path.is_absolute() {
        env.deploy_path
    } else if local {
        // The local target resolves a relative path against the config file's directory, so the
        // example config works from a checkout without root.
        resolve(base, &env.deploy_path)
    } else {
        errors.push(
            format!("{at}.deploy_path"),
            "must be an absolute path on the hosts",
        );
        env.deploy_path
    };
    if deploy_path.to_str().is_none() {
        errors.push(format!("{at}.deploy_path"), "must be valid UTF-8");
    }
    if env.keep_releases == 0 {
        errors.push(format!("{at}.keep_releases"), "must be at least 1");
    }
    let defaults = (env.step_timeout, env.step_idle_timeout);
    let (phases, phases_at) = match env.steps {
        file::Steps::Build(build) => (
            file::Phases {
                build,
                ..Default::default()
            },
            None,
        ),
        file::Steps::Phases(phases) => (phases, Some(())),
    };
    let mut phase = |name: &str, steps: Vec<file::Step>| {
        let at = match phases_at {
            Some(()) => format!("{at}.steps.{name}"),
            None => format!("{at}.steps"),
        };
        validate_steps(errors, &at, steps, defaults)
    };
    let phases = Phases {
        build: phase("build", phases.build),
        migrate: phase("migrate", phases.migrate),
        start: phase("start", phases.start),
        stop: phase("stop", phases.stop),
        after_switch: phase("after_switch", phases.after_switch),
    };
    let strategy = validate_strategy(errors, at, env.strategy, &phases, hosts.len());
    let health = env.health.map(|h| {
        if !h.path.starts_with('/') {
            errors.push(format!("{at}.health.path"), "must start with '/'");
        }
        match ports {
            Ports::Allocated if h.port.is_some() => errors.push(
                format!("{at}.health.port"),
                "leave it out: each ephemeral environment is checked on its own port",
            ),
            Ports::Configured
                if h.port.is_none() && !matches!(strategy, Strategy::BlueGreen(_)) =>
            {
                errors.push(
                    format!("{at}.health.port"),
                    "required (blue_green checks each slot's own port)",
                )
            }
            _ => {}
        }
        if h.retries == 0 {
            errors.push(format!("{at}.health.retries"), "must be at least 1");
        }
        Health {
            path: h.path,
            port: h.port,
            status: h.status,
            body: h.body,
            interval: h.interval,
            timeout: h.timeout,
            retries: h.retries,
            from: h.from,
        }
    });
    if let Strategy::Canary { .. } | Strategy::Rolling { .. } = strategy
        && health.is_none()
    {
        errors.push(
            format!("{at}.health"),
            "rolling and canary deploys need a health check",
        );
    }
    let deployers = env.deployers.inspect(|users| {
        for (i, user) in users.iter().enumerate() {
            slack_id(errors, &format!("{at}.deployers[{i}]"), user, SLACK_USER);
        }
    });
    let channel = env
        .channel
        .filter(|c| slack_channel(errors, &format!("{at}.channel"), c));
    let ssh = Ssh {
        key: env.ssh.key.map(|p| resolve(base, &p)),
        known_hosts: env.ssh.known_hosts.map(|p| resolve(base, &p)),
        connect_timeout: env.ssh.connect_timeout,
    };
    Some(Environment {
        name: name?,
        hosts,
        deploy_path,
        keep_releases: env.keep_releases,
        ssh,
        phases,
        strategy,
        health,
        auto_rollback: env.auto_rollback,
        site: None,
        production: env.production.unwrap_or(key == "production"),
        approvals: env.approvals,
        approval_timeout: env.approval_timeout,
        url: env
            .url
            .and_then(|url| http_url(errors, &format!("{at}.url"), &url)),
        deployers,
        channel,
    })
}

/// The shortest dashboard login token: it is all a person needs to act, so longer than the
/// other secrets' minimum.
const MIN_LOGIN_TOKEN: usize = 16;

/// `[dashboard]`: user names are unique and plain (they are shown and recorded), each acts as a
/// Slack user id, and tokens are long and unique (a login finds its user by token alone).
pub(super) fn validate_dashboard(errors: &mut Errors, raw: file::Dashboard) -> Dashboard {
    let mut users: Vec<DashboardUser> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, user) in raw.users.into_iter().enumerate() {
        let at = format!("dashboard.users[{i}]");
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if user.name.is_empty() || user.name.len() > 64 || !user.name.chars().all(plain) {
            errors.push(
                format!("{at}.name"),
                "must be 1-64 letters, digits, '.', '-' or '_'",
            );
        } else if names.contains(&user.name) {
            errors.push(
                format!("{at}.name"),
                format!("{:?} is listed twice", user.name),
            );
        }
        names.push(user.name.clone());
        slack_id(
            errors,
            &format!("{at}.slack_user"),
            &user.slack_user,
            SLACK_USER,
        );
        let Some(token) = secret(errors, &format!("{at}.token"), user.token, user.token_file)
        else {
            if !errors
                .0
                .iter()
                .any(|(p, _)| p.starts_with(&format!("{at}.token")))
            {
                errors.push(format!("{at}.token"), "required (or token_file)");
            }
            continue;
        };
        if token.expose_secret().len() < MIN_LOGIN_TOKEN {
            errors.push(
                format!("{at}.token"),
                format!("must be at least {MIN_LOGIN_TOKEN} characters"),
            );
        } else if users
            .iter()
            .any(|u| u.token.expose_secret() == token.expose_secret())
        {
            errors.push(format!("{at}.token"), "is another user's token too");
        }
        users.push(DashboardUser {
            name: user.name,
            slack_user: user.slack_user,
            token,
        });
    }
    if !(Duration::from_secs(60)..=Duration::from_secs(30 * 24 * 3600)).contains(&raw.session) {
        errors.push("dashboard.session", "must be between 1m and 30d");
    }
    Dashboard {
        users,
        session: raw.session,
    }
}

/// `[slack]`, once the apps are known (`default_app` must name one).
pub(super) fn validate_slack(
    errors: &mut Errors,
    raw: file::Slack,
    apps: &BTreeMap<Name, App>,
) -> Option<Slack> {
    let signing_secret = secret(
        errors,
        "slack.signing_secret",
        raw.signing_secret,
        raw.signing_secret_file,
    );
    if signing_secret.is_none() && !errors.0.iter().any(|(p, _)| p.starts_with("slack.signing")) {
        errors.push(
            "slack.signing_secret",
            "required (or signing_secret_file): Slack's requests cannot be verified without it",
        );
    }
    let bot_token = secret(errors, "slack.bot_token", raw.bot_token, raw.bot_token_file);
    // It travels in an HTTP header, like the GitHub token.
    if bot_token
        .as_ref()
        .is_some_and(|t| !t.expose_secret().bytes().all(|b| b.is_ascii_graphic()))
    {
        errors.push(
            "slack.bot_token",
            "must be printable ASCII without spaces (a Slack bot token, xoxb-...)",
        );
    }
    let api_url = http_url(errors, "slack.api_url", &raw.api_url);
    let team_id = match raw.team_id {
        Some(team) => slack_id(errors, "slack.team_id", &team, SLACK_TEAM).then_some(team),
        None => {
            errors.push(
                "slack.team_id",
                "required: the workspace (T...) whose requests are answered; others are refused",
            );
            None
        }
    };
    let channel = raw
        .channel
        .filter(|c| slack_id(errors, "slack.channel", c, SLACK_CHANNEL));
    if channel.is_some() && bot_token.is_none() {
        errors.push(
            "slack.channel",
            "posting to a channel needs slack.bot_token (or bot_token_file)",
        );
    }
    let default_app = raw.default_app.and_then(|app| {
        match Name::parse(&app).ok().filter(|n| apps.contains_key(n)) {
            Some(name) => Some(name),
            None => {
                let known: Vec<_> = apps.keys().map(Name::as_str).collect();
                errors.push(
                    "slack.default_app",
                    format!("unknown app {app:?} (known: {})", known.join(", ")),
                );
                None
            }
        }
    });
    if raw.answer_within > SLACK_ANSWER_LIMIT {
        errors.push(
            "slack.answer_within",
            "must be at most 3s: Slack shows the user an error when a command's answer takes longer",
        );
    }
    Some(Slack {
        signing_secret: signing_secret?,
        bot_token,
        api_url: api_url?,
        team_id: team_id?,
        channel,
        default_app,
        answer_within: raw.answer_within,
    })
}

/// How long Slack waits for a slash command's answer.
const SLACK_ANSWER_LIMIT: Duration = Duration::from_secs(3);

/// Whether `value` (at `key`) is a Slack channel id (`C0123ABCD`).
pub(super) fn slack_channel(errors: &mut Errors, key: &str, value: &str) -> bool {
    slack_id(errors, key, value, SLACK_CHANNEL)
}

/// An app's or environment's `channel` is posted to with `slack.bot_token`: without one it
/// would be silently ignored, so say so.
pub(super) fn check_channels(errors: &mut Errors, apps: &BTreeMap<Name, App>, bot_token: bool) {
    if bot_token {
        return;
    }
    for app in apps.values() {
        let envs = app.environments.values().map(|env| {
            let at = format!("apps.{}.environments.{}.channel", app.name, env.name);
            (at, &env.channel)
        });
        let app_channel = (format!("apps.{}.channel", app.name), &app.channel);
        for (at, channel) in std::iter::once(app_channel).chain(envs) {
            if channel.is_some() {
                errors.push(
                    at,
                    "posting to a channel needs [slack] with bot_token (or bot_token_file)",
                );
            }
        }
    }
}

/// The first letters Slack gives each kind of id.
const SLACK_TEAM: &[char] = &['T'];
const SLACK_USER: &[char] = &['U', 'W'];
const SLACK_CHANNEL: &[char] = &['C', 'G', 'D'];

/// Whether `value` is a Slack id of a kind starting with one of `first` (`U024BE7LH`): upper-case
/// letters and digits. Ids, not names: names change and can be taken by someone else.
fn slack_id(errors: &mut Errors, key: &str, value: &str, first: &[char]) -> bool {
    let ok = value.len() <= 32
        && value.starts_with(first)
        && value.len() > 1
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !ok {
        let starts: Vec<String> = first.iter().map(char::to_string).collect();
        errors.push(
            key,
            format!(
                "{value:?} is not a Slack id: expected {}... in upper-case letters and digits \
                 (an id, not a name)",
                starts.join("... or ")
            ),
        );
    }
    ok
}

pub(super) fn validate_ephemeral(
    errors: &mut Errors,
    at: &str,
    key: &str,
    mut raw: file::Ephemeral,
    base: &Path,
) -> Option<Ephemeral> {
    let name = errors.check(at, Name::parse(key));
    if key.len() > 20 {
        errors.push(
            at,
            "use at most 20 characters: environment names are <name>-<slug>",
        );
    }
    let branches = errors.check(
        &format!("{at}.branches"),
        Glob::new(&raw.branches).map(|g| g.compile_matcher()),
    );
    let prefix: String = raw
        .branches
        .chars()
        .take_while(|c| !matches!(c, '*' | '?' | '[' | '{' | '\\'))
        .collect();
    let hostname = raw.hostname.to_ascii_lowercase();
    let first_label = hostname.split('.').next().unwrap_or_default();
    let fixed = hostname.replacen("{slug}", "", 1);
    if hostname.matches("{slug}").count() != 1 || !first_label.contains("{slug}") {
        errors.push(
            format!("{at}.hostname"),
            "put {slug} once, in the first label (e.g. \"demo-{slug}.app.example.com\")",
        );
    } else if !fixed
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        || first_label.len() - "{slug}".len() > 40
    {
        errors.push(
            format!("{at}.hostname"),
            "use a-z, 0-9, '-' and '.' around {slug}, with at most 40 of them in the first label",
        );
    }
    let ports = match raw
        .ports
        .split_once('-')
        .map(|(a, b)| (a.trim().parse::<u16>(), b.trim().parse::<u16>()))
    {
        Some((Ok(low), Ok(high))) if low > 0 && low <= high => Some(low..=high),
        _ => {
            errors.push(
                format!("{at}.ports"),
                format!(
                    "{:?} is not a port range: write LOW-HIGH, e.g. \"20000-20999\"",
                    raw.ports
                ),
            );
            None
        }
    };
    if raw.max == 0 {
        errors.push(format!("{at}.max"), "must be at least 1");
    }
    if raw.warn_before >= raw.ttl {
        errors.push(format!("{at}.warn_before"), "must be shorter than ttl");
    }
    let local = raw.hosts == ["local"];
    let env = raw.environment();
    let mut route = raw.route;
    if !route.file.contains("{env}") {
        errors.push(
            format!("{at}.route.file"),
            "must contain {env}, so that environments do not share a route file",
        );
    }
    if !route.file.starts_with('/') {
        if local {
            route.file = resolve(base, Path::new(&route.file))
                .to_string_lossy()
                .into_owned();
        } else {
            errors.push(
                format!("{at}.route.file"),
                "must be an absolute path on the hosts",
            );
        }
    }
    let template = validate_env(errors, at, key, env, base, Ports::Allocated)?;
    Some(Ephemeral {
        name: name?,
        branches: branches?,
        prefix,
        url: http_url(
            errors,
            &format!("{at}.url"),
            &raw.url
                .replace("{hostname}", &hostname.replace("{slug}", "slug")),
        )
        .map(|_| raw.url)?,
        hostname,
        ports: ports?,
        ttl: raw.ttl,
        warn_before: raw.warn_before,
        max: raw.max,
        sweep: raw.sweep,
        pinned: raw
            .pinned
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                errors.check(
                    &format!("{at}.pinned[{i}]"),
                    Glob::new(p).map(|g| g.compile_matcher()),
                )
            })
            .collect(),
        route: Route {
            file: route.file,
            template: route.template,
            check: route.check,
            reload: route.reload,
        },
        template,
    })
}

/// Where an environment's app port comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ports {
    /// The config (`health.port`, blue/green slots).
    Configured,
    /// Allocated per ephemeral environment from its template's range.
    Allocated,
}

fn validate_steps(
    errors: &mut Errors,
    at: &str,
    steps: Vec<file::Step>,
    (timeout, idle_timeout): (Duration, Duration),
) -> Vec<Step> {
    let mut out = Vec::new();
    for (i, step) in steps.into_iter().enumerate() {
        let (run, name, step_timeout, idle) = match step {
            file::Step::Line(run) => (run, None, None, None),
            file::Step::Table(t) => (t.run, t.name, t.timeout, t.idle_timeout),
        };
        if run.trim().is_empty() {
            errors.push(format!("{at}[{i}]"), "a step needs a command");
            continue;
        }
        out.push(Step {
            name: name.unwrap_or_else(|| run.clone()),
            run,
            timeout: step_timeout.unwrap_or(timeout),
            idle_timeout: idle.unwrap_or(idle_timeout),
        });
    }
    out
}

fn validate_strategy(
    errors: &mut Errors,
    at: &str,
    strategy: file::Strategy,
    phases: &Phases,
    hosts: usize,
) -> Strategy {
    let at = format!("{at}.strategy");
    match strategy {
        file::Strategy::AllAtOnce => Strategy::AllAtOnce,
        file::Strategy::Rolling {
            batch,
            max_failures,
        } => {
            if batch == 0 {
                errors.push(format!("{at}.rolling.batch"), "must be at least 1");
            }
            Strategy::Rolling {
                batch: batch.max(1),
                max_failures,
            }
        }
        file::Strategy::Canary {
            hosts: canaries,
            observe,
            batch,
        } => {
            if canaries == 0 || canaries >= hosts.max(1) {
                errors.push(
                    format!("{at}.canary.hosts"),
                    format!("must be at least 1 and fewer than the {hosts} hosts"),
                );
            }
            Strategy::Canary {
                hosts: canaries.max(1),
                observe,
                batch: batch.unwrap_or(canaries).max(1),
            }
        }
        file::Strategy::BlueGreen(bg) => {
            if bg.blue_port == bg.green_port {
                errors.push(
                    format!("{at}.blue_green"),
                    "blue_port and green_port must differ",
                );
            }
            if phases.start.is_empty() || phases.stop.is_empty() {
                errors.push(
                    format!("{at}.blue_green"),
                    "blue_green needs steps.start and steps.stop (run per slot with SLIPWAY_PORT)",
                );
            }
            if !bg.upstream_template.contains("{port}") {
                errors.push(
                    format!("{at}.blue_green.upstream_template"),
                    "must contain {port}",
                );
            }
            if bg
                .upstream_file
                .to_str()
                .is_none_or(|f| !f.starts_with('/'))
            {
                errors.push(
                    format!("{at}.blue_green.upstream_file"),
                    "must be an absolute path",
                );
            }
            Strategy::BlueGreen(BlueGreen {
                blue_port: bg.blue_port,
                green_port: bg.green_port,
                upstream_file: bg.upstream_file.display().to_string(),
                upstream_template: bg.upstream_template,
                check: bg.check,
                reload: bg.reload,
                drain: bg.drain,
            })
        }
    }
}

/// A secret given inline (`<key>`) or in a file (`<key>_file`, trailing newline ignored); at
/// least 8 characters.
pub(super) fn secret(
    errors: &mut Errors,
    key: &str,
    inline: Option<SecretString>,
    file: Option<PathBuf>,
) -> Option<SecretString> {
    let value = match (inline, file) {
        (Some(_), Some(_)) => {
            errors.push(key, format!("set either {key} or {key}_file, not both"));
            return None;
        }
        (Some(secret), None) => secret,
        (None, Some(file)) => match std::fs::read_to_string(&file) {
            Ok(text) => SecretString::from(text.trim_end_matches(['\r', '\n'])),
            Err(err) => {
                errors.push(
                    format!("{key}_file"),
                    format!("cannot read {}: {err}", file.display()),
                );
                return None;
            }
        },
        (None, None) => return None,
    };
    if value.expose_secret().len() < 8 {
        errors.push(key, "must be at least 8 characters");
        return None;
    }
    Some(value)
}

/// An absolute `http://` or `https://` URL with a host, returned without its trailing `/` so
/// callers can append paths. Credentials, a query or a fragment are refused: they would end up
/// in every request and every log line that names the URL.
pub(super) fn http_url(errors: &mut Errors, key: &str, value: &str) -> Option<String> {
    let problem = match reqwest::Url::parse(value) {
        Err(err) => Some(format!("{value:?} is not a URL: {err}")),
        Ok(url) if !matches!(url.scheme(), "http" | "https") || !url.has_host() => {
            Some(format!("{value:?} must be an http:// or https:// URL"))
        }
        Ok(url)
            if !url.username().is_empty()
                || url.password().is_some()
                || url.query().is_some()
                || url.fragment().is_some() =>
        {
            Some("must not carry a user, password, query or fragment".to_owned())
        }
        Ok(_) => None,
    };
    match problem {
        Some(message) => {
            errors.push(key, message);
            None
        }
        None => Some(value.trim_end_matches('/').to_owned()),
    }
}

/// `path` made absolute against the config file's directory, without `.` or `..` parts.
pub(super) fn resolve(base: &Path, path: &Path) -> PathBuf {
    let joined = std::path::absolute(base.join(path)).unwrap_or_else(|_| base.join(path));
    let mut clean = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            std::path::Component::CurDir => {}
            other => clean.push(other),
        }
    }
    clean
}

/// A clone URL that is a relative local path is resolved like the file's other paths; URLs
/// (`scheme://`, `user@host:path`) and absolute paths are kept as written.
pub(super) fn resolve_local_url(url: &str, base: &Path) -> String {
    let remote = url.contains("://")
        || url
            .split('/')
            .next()
            .is_some_and(|first| first.contains(':'));
    if remote || url.starts_with('/') {
        url.to_owned()
    } else {
        resolve(base, Path::new(url)).display().to_string()
    }
}

#[derive(Default)]
pub(super) struct Errors(pub(super) Vec<(String, String)>);

impl Errors {
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push((path.into(), message.into()));
    }

    pub(super) fn check<T, E: fmt::Display>(
        &mut self,
        path: &str,
        result: Result<T, E>,
    ) -> Option<T> {
        result.map_err(|e| self.push(path, e.to_string())).ok()
    }

    pub(super) fn finish(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: self.0 })
        }
    }
}

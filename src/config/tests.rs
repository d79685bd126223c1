use super::*;
use crate::config::Strategy;

fn load(toml: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slipway.toml");
    std::fs::write(&path, toml).unwrap();
    Config::load(&path)
}

const GOOD: &str = r#"
[github]
webhook_secret = "a-long-enough-secret"
[apps.shop]
repo = "acme/shop"
clone_url = "file:///srv/git/shop.git"
[apps.shop.environments.staging]
hosts = ["deploy@10.0.0.5", "deploy@10.0.0.6:2222"]
deploy_path = "/srv/shop"
keep_releases = 3
steps = ["python3 -m compileall -q .", { run = "./bin/build", name = "build", timeout = "5m", idle_timeout = "30s" }]
[[apps.shop.triggers]]
push = "main"
deploy = "staging"
"#;

#[test]
fn a_good_config_loads_with_defaults() {
    let config = load(GOOD).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.database.url, "sqlite://var/slipway.db");
    let app = config
        .app_for_repo("ACME/Shop")
        .expect("case-insensitive repo match");
    let env = config.environment("shop", "staging").unwrap();
    assert_eq!(env.hosts.len(), 2);
    assert_eq!(env.keep_releases, 3);
    assert_eq!(env.phases.build[0].name, "python3 -m compileall -q .");
    assert_eq!(env.phases.build[0].timeout, Duration::from_secs(600));
    assert_eq!(env.phases.build[1].name, "build");
    assert_eq!(env.phases.build[1].idle_timeout, Duration::from_secs(30));
    assert_eq!(
        app.triggers_for("main").collect::<Vec<_>>()[0]
            .deploy
            .as_str(),
        "staging"
    );
    assert!(
        !app.triggers[0].every,
        "the newest push replaces waiting ones by default"
    );
    assert_eq!(app.triggers_for("feature/x").count(), 0);
}

#[test]
fn debug_output_redacts_the_secret() {
    let config = load(GOOD).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("a-long-enough-secret"), "{debug}");
    assert!(debug.contains("REDACTED"));
}

#[test]
fn secret_from_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "from-a-file-secret\n").unwrap();
    let toml = GOOD.replace(
        "webhook_secret = \"a-long-enough-secret\"",
        &format!("webhook_secret_file = {:?}", secret.display().to_string()),
    );
    let config = load(&toml).unwrap();
    assert_eq!(
        config.github.webhook_secret.expose_secret(),
        "from-a-file-secret"
    );
}

fn problems(toml: &str) -> Vec<String> {
    load(toml)
        .unwrap_err()
        .problems
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

#[test]
fn each_error_names_its_key_path() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "keep_releases = 3",
            "keep_releases = 0",
            "apps.shop.environments.staging.keep_releases",
        ),
        (
            "keep_releases = 3",
            "keep_releases = \"x\"",
            "apps.shop.environments.staging.keep_releases",
        ),
        (
            "keep_releases = 3",
            "keep_release = 3",
            "apps.shop.environments.staging.keep_release",
        ),
        (
            "deploy = \"staging\"",
            "deploy = \"stagin\"",
            "apps.shop.triggers[0].deploy",
        ),
        (
            "push = \"main\"",
            "push = \"[\"",
            "apps.shop.triggers[0].push",
        ),
        (
            "\"deploy@10.0.0.5\"",
            "\"-oProxyCommand=id\"",
            "apps.shop.environments.staging.hosts[0]",
        ),
        (
            "deploy_path = \"/srv/shop\"",
            "deploy_path = \"srv/shop\"",
            "apps.shop.environments.staging.deploy_path",
        ),
        (
            "webhook_secret = \"a-long-enough-secret\"",
            "",
            "github.webhook_secret",
        ),
        (
            "webhook_secret = \"a-long-enough-secret\"",
            "webhook_secret_file = \"/nonexistent/x\"",
            "github.webhook_secret_file",
        ),
        ("repo = \"acme/shop\"", "repo = \"shop\"", "apps.shop.repo"),
        ("repo = \"acme/shop\"", "", "apps.shop.repo"),
        (
            "[apps.shop.environments.staging]",
            "[apps.shop.environments.Staging]",
            "apps.shop.environments.Staging",
        ),
    ];
    for (from, to, path) in cases {
        assert!(GOOD.contains(from), "{from}");
        let found = problems(&GOOD.replacen(from, to, 1));
        assert!(
            found.iter().any(|p| p == path),
            "{from} -> {to}: expected {path}, got {found:?}"
        );
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let toml = GOOD
        .replace("keep_releases = 3", "keep_releases = 0")
        .replace("deploy = \"staging\"", "deploy = \"nope\"");
    assert_eq!(problems(&toml).len(), 2);
}

#[test]
fn a_missing_file_is_an_error() {
    let err = Config::load(Path::new("/nonexistent/slipway.toml")).unwrap_err();
    assert!(err.to_string().contains("not found"));
}

#[test]
fn strategies_phases_and_health() {
    let env = |extra: &str| {
        GOOD.replace("keep_releases = 3", &format!("keep_releases = 3\n{extra}"))
            .replace("steps = [\"python3", "build_steps = [\"python3")
    };
    let base = |extra: &str| env(extra).replace("build_steps = ", "steps.build = ");

    let rolling = load(&base(
        "strategy = { rolling = { batch = 1, max_failures = 1 } }\nhealth = { path = \"/up\", port = 8000 }",
    ))
    .unwrap();
    let e = rolling.environment("shop", "staging").unwrap();
    assert!(matches!(
        e.strategy,
        Strategy::Rolling {
            batch: 1,
            max_failures: 1
        }
    ));
    assert_eq!(e.health.as_ref().unwrap().retries, 10);
    assert_eq!(e.phases.build.len(), 2);

    let bg = base(
        "steps.start = [\"./start\"]\nsteps.stop = [\"./stop\"]\nhealth = { path = \"/up\" }",
    ) + "[apps.shop.environments.staging.strategy.blue_green]\nblue_port = 8001\ngreen_port = 8002\n\
           upstream_file = \"/etc/nginx/up.conf\"\n";
    let bg = load(&bg).unwrap();
    let Strategy::BlueGreen(b) = &bg.environment("shop", "staging").unwrap().strategy else {
        panic!("blue_green")
    };
    assert_eq!((b.blue_port, b.green_port), (8001, 8002));
    assert_eq!(b.check, "nginx -t -q");

    let at = "apps.shop.environments.staging";
    let cases = [
        (
            "strategy = { rolling = { batch = 1 } }",
            format!("{at}.health"),
        ),
        (
            "strategy = { canary = { hosts = 2, observe = \"1m\" } }\nhealth = { path = \"/\", port = 1 }",
            format!("{at}.strategy.canary.hosts"),
        ),
        (
            "health = { path = \"up\", port = 1 }",
            format!("{at}.health.path"),
        ),
        ("health = { path = \"/up\" }", format!("{at}.health.port")),
        ("strategy = \"sideways\"", format!("{at}.strategy")),
    ];
    for (extra, path) in cases {
        let found = problems(&base(extra));
        assert!(
            found.contains(&path),
            "{extra}: expected {path}, got {found:?}"
        );
    }
}

const EPHEMERAL: &str = r#"
[apps.shop.ephemeral.demo]
branches = "demo/*"
hostname = "demo-{slug}.app.example.com"
ports = "20000-20999"
hosts = ["deploy@10.0.0.7"]
deploy_path = "/srv/demo"
steps.after_switch = ["./bin/app restart"]
health = { path = "/healthz" }
"#;

#[test]
fn ephemeral_templates_load_with_defaults() {
    let config = load(&format!("{GOOD}{EPHEMERAL}")).unwrap();
    let demo = &config.app("shop").unwrap().ephemeral[&Name::parse("demo").unwrap()];
    assert_eq!(demo.prefix, "demo/");
    assert_eq!(demo.ports, 20000..=20999);
    assert_eq!((demo.ttl, demo.max), (Duration::from_secs(7 * 86400), 20));
    assert_eq!(
        demo.route.file,
        "/etc/nginx/conf.d/slipway-{app}-{env}.conf"
    );
    let env = demo.environment(
        &Name::parse("shop").unwrap(),
        &Name::parse("demo-xyz").unwrap(),
        "xyz",
        "demo-xyz.app.example.com",
        20001,
    );
    assert_eq!(env.deploy_path, Path::new("/srv/demo/demo-xyz"));
    assert_eq!(env.health.unwrap().port, Some(20001));
    let site = env.site.unwrap();
    assert_eq!(
        site.route_file,
        "/etc/nginx/conf.d/slipway-shop-demo-xyz.conf"
    );
    assert!(site.route.contains("server_name demo-xyz.app.example.com;"));
    assert!(site.route.contains("proxy_pass http://127.0.0.1:20001;"));
}

#[test]
fn ephemeral_template_errors_name_their_keys() {
    let bad = EPHEMERAL
        .replace("demo-{slug}.app", "demo.app")
        .replace("20000-20999", "20999-20000")
        .replace(
            "{ path = \"/healthz\" }",
            "{ path = \"/healthz\", port = 8000 }",
        )
        + "warn_before = \"30d\"\nroute = { file = \"/etc/nginx/conf.d/slipway.conf\" }\n";
    let found = load(&format!(
        "{GOOD}[apps.shop.environments.demo-x]\nhosts = [\"local\"]\ndeploy_path = \"/srv/x\"\n{bad}"
    ))
    .unwrap_err()
    .to_string();
    let found: Vec<&str> = found.lines().collect();
    for expected in [
        "apps.shop.ephemeral.demo.hostname: put {slug} once",
        "apps.shop.ephemeral.demo.ports: \"20999-20000\" is not a port range",
        "apps.shop.ephemeral.demo.health.port: leave it out",
        "apps.shop.ephemeral.demo.warn_before: must be shorter than ttl",
        "apps.shop.ephemeral.demo.route.file: must contain {env}",
        "apps.shop.environments.demo-x: names starting with \"demo-\" belong to",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{expected:?} not in {found:#?}"
        );
    }
}

#[test]
fn github_api_defaults_without_a_token() {
    let config = load(GOOD).unwrap();
    assert_eq!(config.github.api_url, "https://api.github.com");
    assert!(config.github.token.is_none());
    assert_eq!(config.github.public_url, None);
    assert_eq!(config.github.job_url(7), None);
}

#[test]
fn github_token_from_file_is_a_secret_and_urls_lose_their_trailing_slash() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("github_token");
    std::fs::write(&token, "ghp_fromAFile0123456789\n").unwrap();
    let toml = GOOD.replace(
        "webhook_secret = \"a-long-enough-secret\"",
        &format!(
            "webhook_secret = \"a-long-enough-secret\"\n\
             api_url = \"https://ghe.example.com/api/v3/\"\n\
             token_file = {:?}\n\
             public_url = \"https://slipway.example.com/\"",
            token.display().to_string()
        ),
    );
    let config = load(&toml).unwrap();
    let github = &config.github;
    assert_eq!(
        github.token.as_ref().unwrap().expose_secret(),
        "ghp_fromAFile0123456789"
    );
    assert_eq!(github.api_url, "https://ghe.example.com/api/v3");
    assert_eq!(
        github.job_url(42).as_deref(),
        Some("https://slipway.example.com/api/jobs/42")
    );
    assert!(config.secrets().contains(&"ghp_fromAFile0123456789"));
    let debug = format!("{config:?}");
    assert!(!debug.contains("ghp_fromAFile"), "{debug}");
}

#[test]
fn bad_github_urls_and_tokens_name_their_keys() {
    let cases = [
        ("api_url = \"api.github.com\"", "github.api_url"),
        ("api_url = \"ftp://api.github.com\"", "github.api_url"),
        (
            "api_url = \"https://user:pw@api.github.com\"",
            "github.api_url",
        ),
        ("public_url = \"slipway.example.com\"", "github.public_url"),
        ("public_url = \"https://\"", "github.public_url"),
        ("token = \"short\"", "github.token"),
        ("token = \"ghp_with a space\"", "github.token"),
        (
            "token = \"ghp_abcdefgh\"\ntoken_file = \"/x\"",
            "github.token",
        ),
        ("token_file = \"/nonexistent/token\"", "github.token_file"),
    ];
    for (extra, path) in cases {
        let toml = GOOD.replace(
            "webhook_secret = \"a-long-enough-secret\"",
            &format!("webhook_secret = \"a-long-enough-secret\"\n{extra}"),
        );
        let err = load(&toml).unwrap_err();
        let found: Vec<_> = err.problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(found, [path], "{extra}");
        assert!(!err.to_string().contains("ghp_"), "{extra}: {err}");
    }
}

const SLACK: &str = r#"
[slack]
signing_secret = "slack-signing-secret"
bot_token = "xoxb-1234-5678-abcdefgh"
team_id = "T0123ABCD"
channel = "C0123ABCD"
default_app = "shop"
"#;

#[test]
fn slack_is_optional() {
    let config = load(GOOD).unwrap();
    assert!(config.slack.is_none());
    assert_eq!(
        config.environment("shop", "staging").unwrap().deployers,
        None
    );
}

#[test]
fn slack_loads_with_defaults_and_its_secrets_are_masked() {
    let toml = format!(
        "{}{SLACK}",
        GOOD.replace(
            "keep_releases = 3",
            "keep_releases = 3\ndeployers = [\"U0123ABCD\", \"W0123ABCD\"]"
        )
    );
    let config = load(&toml).unwrap();
    let slack = config.slack.as_ref().unwrap();
    assert_eq!(slack.api_url, "https://slack.com/api");
    assert_eq!(slack.team_id, "T0123ABCD");
    assert_eq!(slack.channel.as_deref(), Some("C0123ABCD"));
    assert_eq!(slack.answer_within, Duration::from_secs(2));
    assert_eq!(slack.default_app.as_ref().unwrap().as_str(), "shop");
    assert_eq!(
        config.environment("shop", "staging").unwrap().deployers,
        Some(vec!["U0123ABCD".to_owned(), "W0123ABCD".to_owned()])
    );
    let secrets = config.secrets();
    assert!(secrets.contains(&"slack-signing-secret"), "{secrets:?}");
    assert!(secrets.contains(&"xoxb-1234-5678-abcdefgh"), "{secrets:?}");
    let debug = format!("{config:?}");
    assert!(!debug.contains("slack-signing-secret"), "{debug}");
    assert!(!debug.contains("xoxb-1234"), "{debug}");
}

#[test]
fn slack_secrets_come_from_files_and_the_token_is_optional() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("slack_signing");
    std::fs::write(&secret, "from-a-file-signing\n").unwrap();
    let slack = format!(
        "[slack]\nsigning_secret_file = {:?}\nteam_id = \"T1\"\napi_url = \"http://127.0.0.1:9/api/\"\n",
        secret.display().to_string()
    );
    let config = load(&format!("{GOOD}{slack}")).unwrap();
    let slack = config.slack.unwrap();
    assert_eq!(slack.signing_secret.expose_secret(), "from-a-file-signing");
    assert!(slack.bot_token.is_none() && slack.channel.is_none());
    assert_eq!(slack.api_url, "http://127.0.0.1:9/api");
}

#[test]
fn slack_errors_name_their_keys() {
    let cases = [
        (
            "signing_secret = \"slack-signing-secret\"",
            "",
            "slack.signing_secret",
        ),
        (
            "signing_secret = \"slack-signing-secret\"",
            "signing_secret = \"short\"",
            "slack.signing_secret",
        ),
        (
            "signing_secret = \"slack-signing-secret\"",
            "signing_secret_file = \"/nonexistent/x\"",
            "slack.signing_secret_file",
        ),
        ("team_id = \"T0123ABCD\"", "", "slack.team_id"),
        (
            "team_id = \"T0123ABCD\"",
            "team_id = \"acme\"",
            "slack.team_id",
        ),
        (
            "team_id = \"T0123ABCD\"",
            "team_id = \"U0123ABCD\"",
            "slack.team_id",
        ),
        (
            "channel = \"C0123ABCD\"",
            "channel = \"#deploys\"",
            "slack.channel",
        ),
        (
            "default_app = \"shop\"",
            "default_app = \"shoe\"",
            "slack.default_app",
        ),
        (
            "bot_token = \"xoxb-1234-5678-abcdefgh\"",
            "bot_token = \"xoxb 1234 5678\"",
            "slack.bot_token",
        ),
        (
            "bot_token = \"xoxb-1234-5678-abcdefgh\"",
            "",
            "slack.channel",
        ),
        (
            "[slack]",
            "[slack]\napi_url = \"slack.com/api\"",
            "slack.api_url",
        ),
        ("[slack]", "[slack]\nchanel = \"C1\"", "slack.chanel"),
        (
            "[slack]",
            "[slack]\nanswer_within = \"3500ms\"",
            "slack.answer_within",
        ),
    ];
    for (from, to, path) in cases {
        assert!(SLACK.contains(from), "{from}");
        let toml = format!("{GOOD}{}", SLACK.replacen(from, to, 1));
        let err = load(&toml).unwrap_err();
        let found: Vec<_> = err.problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(found, [path], "{from} -> {to}");
        let text = err.to_string();
        assert!(
            !text.contains("slack-signing-secret") && !text.contains("xoxb-1234"),
            "{text}"
        );
    }
}

#[test]
fn deployers_must_be_slack_user_ids() {
    let staging = GOOD.replace(
        "keep_releases = 3",
        "keep_releases = 3\ndeployers = [\"U0123ABCD\", \"@alice\"]",
    );
    assert_eq!(
        problems(&staging),
        ["apps.shop.environments.staging.deployers[1]"]
    );
    let demo = EPHEMERAL.replace("hosts = [", "deployers = [\"alice\"]\nhosts = [");
    assert_eq!(
        problems(&format!("{GOOD}{demo}")),
        ["apps.shop.ephemeral.demo.deployers[0]"]
    );
    let config = load(&format!(
        "{GOOD}{}",
        EPHEMERAL.replace("hosts = [", "deployers = [\"U1\"]\nhosts = [")
    ))
    .unwrap();
    let demo = &config.app("shop").unwrap().ephemeral[&Name::parse("demo").unwrap()];
    assert_eq!(demo.template.deployers, Some(vec!["U1".to_owned()]));
}

#[test]
fn dashboard_users_are_checked_and_their_tokens_are_secrets() {
    let users = "[dashboard]\nsession = \"2h\"\nusers = [\
        { name = \"alice\", slack_user = \"U0ALICE\", token = \"alice-token-0123456789\" },\
        { name = \"bob\", slack_user = \"U0BOB\", token = \"bob-token-0123456789ab\" }]\n";
    let config = load(&format!("{GOOD}{users}")).unwrap();
    assert_eq!(config.dashboard.session, Duration::from_secs(7200));
    assert_eq!(config.dashboard.users[1].slack_user, "U0BOB");
    let debug = format!("{config:?}");
    assert!(!debug.contains("alice-token"), "{debug}");
    assert!(config.secrets().contains(&"bob-token-0123456789ab"));
    assert!(load(GOOD).unwrap().dashboard.users.is_empty());

    let bad = "[dashboard]\nsession = \"10s\"\nusers = [\
        { name = \"al ice\", slack_user = \"alice\", token = \"short-token\" },\
        { name = \"bob\", slack_user = \"U0BOB\" },\
        { name = \"bob\", slack_user = \"U0BOB\", token = \"same-token-0123456789\" },\
        { name = \"carol\", slack_user = \"U0CAROL\", token = \"same-token-0123456789\" }]\n";
    assert_eq!(
        problems(&format!("{GOOD}{bad}")),
        [
            "dashboard.users[0].name",
            "dashboard.users[0].slack_user",
            "dashboard.users[0].token",
            "dashboard.users[1].token",
            "dashboard.users[2].name",
            "dashboard.users[3].token",
            "dashboard.session",
        ]
    );
}

#[test]
fn apps_and_environments_may_name_their_own_channel() {
    let channels = GOOD
        .replace(
            "clone_url = \"file:///srv/git/shop.git\"",
            "clone_url = \"file:///srv/git/shop.git\"\nchannel = \"C0SHOP\"",
        )
        .replace(
            "keep_releases = 3",
            "keep_releases = 3\nchannel = \"G0STAGING\"",
        );
    let config = load(&format!("{channels}{SLACK}")).unwrap();
    assert_eq!(
        config.app("shop").unwrap().channel.as_deref(),
        Some("C0SHOP")
    );
    assert_eq!(
        config
            .environment("shop", "staging")
            .unwrap()
            .channel
            .as_deref(),
        Some("G0STAGING")
    );
    // Names are not ids, and without a bot token nothing could be posted there.
    let named = channels.replace("\"G0STAGING\"", "\"#staging\"");
    assert_eq!(
        problems(&format!("{named}{SLACK}")),
        ["apps.shop.environments.staging.channel"]
    );
    assert_eq!(
        problems(&channels),
        [
            "apps.shop.channel",
            "apps.shop.environments.staging.channel"
        ]
    );
    let no_token = SLACK
        .replace("bot_token = \"xoxb-1234-5678-abcdefgh\"\n", "")
        .replace("channel = \"C0123ABCD\"\n", "");
    assert_eq!(
        problems(&format!("{channels}{no_token}")),
        [
            "apps.shop.channel",
            "apps.shop.environments.staging.channel"
        ]
    );
}

#[test]
fn release_tags_are_semver_or_a_glob() {
    let with =
        |tags: &str| format!("{GOOD}[apps.shop.releases]\ntags = {tags:?}\ndeploy = \"staging\"\n");
    let config = load(&with("semver")).unwrap();
    let releases = config.app("shop").unwrap().releases.as_ref().unwrap();
    assert!(matches!(releases.tags, TagMatcher::Semver));
    assert!(releases.tags.is_match("v2.0.0-rc.1") && !releases.tags.is_match("v2"));
    let config = load(&with("release-*")).unwrap();
    let releases = config.app("shop").unwrap().releases.as_ref().unwrap();
    assert!(releases.tags.is_match("release-7") && !releases.tags.is_match("v2.0.0"));
    assert_eq!(problems(&with("v[")), ["apps.shop.releases.tags"]);
}

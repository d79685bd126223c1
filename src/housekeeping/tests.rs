use super::*;
use crate::config::Config;

const DAY: i64 = 24 * 3600 * 1000;
const NOW: i64 = 1_800_000_000_000;

fn config() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slipway.toml");
    std::fs::write(
        &path,
        r#"
[github]
webhook_secret = "housekeeping-test-secret"
[apps.shop]
repo = "acme/shop"
clone_url = "file:///srv/git/shop.git"
[apps.shop.ephemeral.demo]
branches = "demo/*"
hostname = "demo-{slug}.example.test"
ports = "20000-20099"
hosts = ["local"]
deploy_path = "/srv/demo"
ttl = "7d"
warn_before = "1d"
pinned = ["demo/keep-*"]
"#,
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    (dir, config)
}

fn row(env: &str, branch: &str, state: EnvState, idle_days: i64) -> EphemeralRow {
    EphemeralRow {
        id: 1,
        app: "shop".into(),
        template: "demo".into(),
        env: env.into(),
        branch: branch.into(),
        hostname: format!("{env}.example.test"),
        port: Some(20000),
        state,
        sha: Some("a".repeat(40)),
        last_push_at: NOW - idle_days * DAY,
        keep_until: None,
        warned_at: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn envs(actions: &[Action]) -> Vec<String> {
    actions.iter().map(ToString::to_string).collect()
}

#[test]
fn cleanup_tears_down_the_idle_and_warns_once_before() {
    let (_d, c) = config();
    let app = c.app("shop").unwrap();
    let mut warned = row("demo-warned", "demo/warned", EnvState::Live, 6);
    warned.warned_at = Some(NOW - 1000);
    let mut kept = row("demo-kept", "demo/kept", EnvState::Live, 30);
    kept.keep_until = Some(NOW + DAY);
    let mut kept_before = row("demo-was-kept", "demo/was-kept", EnvState::Live, 30);
    kept_before.keep_until = Some(NOW - DAY);
    let rows = [
        row("demo-fresh", "demo/fresh", EnvState::Live, 1),
        row("demo-idle", "demo/idle", EnvState::Live, 8),
        row("demo-failed", "demo/failed", EnvState::Failed, 7),
        row("demo-soon", "demo/soon", EnvState::Live, 6),
        warned,
        kept,
        kept_before,
        row("demo-keep-x", "demo/keep-x", EnvState::Live, 100),
        row("demo-going", "demo/going", EnvState::TearingDown, 100),
        EphemeralRow {
            template: "old".into(),
            ..row("old-x", "old/x", EnvState::Live, 100)
        },
    ];
    assert_eq!(
        envs(&plan_cleanup(app, &rows, NOW)),
        [
            "tear down demo-idle: idle for 8days (ttl 7days)",
            "tear down demo-failed: idle for 7days (ttl 7days)",
            "warn demo-soon: idle for 6days; torn down in 1day unless pushed to or kept",
            "tear down demo-was-kept: idle for 30days (ttl 7days)",
            "leave old-x: template old is no longer configured",
        ]
    );
}

fn branch(name: &str, sha: char) -> Branch {
    Branch {
        name: name.into(),
        sha: sha.to_string().repeat(40),
    }
}

#[test]
fn reconcile_converges_with_the_branches() {
    let (_d, c) = config();
    let app = c.app("shop").unwrap();
    let rows = [
        row("demo-same", "demo/same", EnvState::Live, 0),
        row("demo-behind", "demo/behind", EnvState::Live, 0),
        row("demo-vanished", "demo/vanished", EnvState::Live, 0),
        row("demo-busy", "demo/busy", EnvState::Updating, 0),
        row("demo-going", "demo/going", EnvState::TearingDown, 0),
    ];
    let branches = [
        branch("main", 'b'),
        branch("demo/same", 'a'),
        branch("demo/behind", 'c'),
        branch("demo/busy", 'c'),
        branch("demo/new", 'd'),
        branch("demo/___", 'e'),
    ];
    assert_eq!(
        envs(&plan_reconcile(app, &rows, &branches)),
        [
            "deploy demo/behind (cccccccc): demo-behind runs aaaaaaaa, the branch is at cccccccc",
            "deploy demo/new (dddddddd): the branch has no environment (a lost webhook?)",
            "leave demo/___: branch \"demo/___\" has no letters or digits after \"demo/\" to name an environment after",
            "tear down demo-vanished: branch demo/vanished no longer exists",
        ]
    );
}

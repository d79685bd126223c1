//! The `slipway` binary's own commands.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_slipway");

#[test]
fn check_config_accepts_the_example_and_names_key_paths_of_errors() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/slipway.toml");
    let out = Command::new(BIN)
        .args(["check-config", "--config", example])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let summary = String::from_utf8(out.stdout).unwrap();
    assert!(summary.contains("app hello (example/hello"), "{summary}");
    assert!(
        summary.contains("trigger: push main deploys staging"),
        "{summary}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(example)
            .unwrap()
            .replace("keep_releases = 5", "keep_releases = 0")
            .replace("deploy = \"staging\"", "deploy = \"prod\""),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let errors = String::from_utf8(out.stderr).unwrap();
    assert!(
        errors.contains("apps.hello.environments.staging.keep_releases: must be at least 1"),
        "{errors}"
    );
    assert!(
        errors.contains(
            "apps.hello.triggers[0].deploy: unknown environment \"prod\" (known: staging)"
        ),
        "{errors}"
    );
}

#[test]
fn environment_variables_override_keys() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/slipway.toml");
    let out = Command::new(BIN)
        .args(["check-config", "--config", example])
        .env("SLIPWAY_SERVER__LISTEN", "127.0.0.1:9999")
        .env("SLIPWAY_GITHUB__WEBHOOK_SECRET", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let errors = String::from_utf8(out.stderr).unwrap();
    assert!(
        errors.contains("github.webhook_secret: must be at least 8 characters"),
        "{errors}"
    );

    let out = Command::new(BIN)
        .args(["check-config", "--config", example])
        .env("SLIPWAY_SERVER__LISTEN", "127.0.0.1:9999")
        .output()
        .unwrap();
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("listen 127.0.0.1:9999")
    );
}

/// The example config's commented-out ephemeral environment, releases and schedules are valid:
/// uncommenting them gives a config that loads.
#[test]
fn the_commented_ephemeral_release_and_schedule_examples_load_when_uncommented() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/slipway.toml"))
            .unwrap();
    let mut inside = false;
    let mut uncommented = String::new();
    for line in example.lines() {
        if [
            "# [apps.hello.ephemeral.demo]",
            "# [apps.hello.releases]",
            "# [[schedules]]",
        ]
        .iter()
        .any(|start| line.starts_with(start))
        {
            inside = true;
        }
        let key = line.strip_prefix("# ").filter(|rest| {
            rest.starts_with('[')
                || rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| !k.contains(' '))
        });
        match key {
            Some(rest) if inside => uncommented.push_str(rest),
            _ => uncommented.push_str(line),
        }
        uncommented.push('\n');
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slipway.toml");
    std::fs::write(&path, uncommented).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{summary}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        summary.contains("ephemeral demo: push demo/* -> demo-{slug}.app.example.com"),
        "{summary}"
    );
    assert!(
        summary.contains("releases: tags semver, deploys staging"),
        "{summary}"
    );
    assert!(
        summary.contains("schedule nightly-reconcile: 0 3 * * * (UTC) queues reconcile"),
        "{summary}"
    );
}

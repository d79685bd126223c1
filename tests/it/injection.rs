//! Hostile branch names through an ephemeral environment's whole life on a real sshd host:
//! deployed, then torn down when the branch is deleted. Every step sees the name verbatim as
//! data, names on the host come from the slug only, and no injected command runs.

use std::path::Path;

use serde_json::Value;

use crate::helpers::{
    GitRepo, REPO, TestApp, config_head, hostile_branch_names, job_id, push_body,
};
use crate::sshd::Fleet;

/// The canary an injected command would create; looked for everywhere below `dir`.
const CANARY: &str = "canary";

fn found(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let path = e.path();
            e.file_name() == CANARY || (path.is_dir() && !path.is_symlink() && found(&path))
        })
}

/// The fixture's names, ours (git refuses spaces in a ref: `${IFS}` stands in), names git allows that hide text (C1 controls, bidi overrides,
/// line separators), and a name near `GitRef::MAX_LEN` (1024 bytes) made of 250-byte path
/// components (a file system caps one at 255).
fn hostile_names() -> Vec<String> {
    let mut names = hostile_branch_names();
    names.extend(
        [
            "demo/$(touch${IFS}/srv/canary)",
            "demo/`touch${IFS}/srv/canary`",
            "demo/';touch${IFS}/srv/canary;'",
            "demo/\";touch${IFS}/srv/canary;\"",
            "demo/x$(touch${IFS}canary)",
            "demo/nel\u{85}x",
            "demo/txt\u{202e}exe.sh",
            "demo/line\u{2028}break",
        ]
        .map(str::to_owned),
    );
    let long = ["a", "b", "c", "d"].map(|c| c.repeat(250)).join("/");
    names.push(format!("demo/{long}"));
    assert!(names.last().unwrap().len() > 1000);
    names
}

async fn all_finished(app: &TestApp, answers: Vec<(u16, Value)>) -> Vec<Value> {
    let mut jobs = Vec::new();
    for (status, answer) in answers {
        assert_eq!(status, 202, "{answer}");
        jobs.push(app.finished(job_id(&answer)).await);
    }
    jobs
}

#[tokio::test]
async fn hostile_branch_names_are_deployed_and_torn_down_over_ssh_and_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let fleet = Fleet::start(&root, 1);
    let srv = fleet.hosts[0].srv.clone();
    let repo = GitRepo::new(&root);
    repo.commit("first", "main");
    let config = format!(
        "{}[apps.shop]\nrepo = \"{REPO}\"\nclone_url = \"{}\"\n\
         [apps.shop.ephemeral.demo]\nbranches = \"demo/*\"\nhostname = \"demo-{{slug}}.app.example.test\"\n\
         ports = \"21700-21799\"\nmax = 50\nhosts = {}\nssh = {}\ndeploy_path = \"/srv/demo\"\n\
         steps.build = [\"printf '%s' \\\"$SLIPWAY_REF\\\" > REF\"]\n\
         steps.stop = [\"mkdir -p /srv/stopped && printf '%s' \\\"$SLIPWAY_REF\\\" > /srv/stopped/$SLIPWAY_ENV\"]\n\
         route = {{ file = \"/srv/routes/{{env}}.conf\", check = \"true\", reload = \"true\" }}\n",
        // Each environment is its own lane: run them all at once.
        config_head(&root).replace("[worker]\n", "[worker]\nconcurrency = 24\n"),
        repo.clone_url(),
        fleet.hosts_toml(),
        fleet.ssh_toml(),
    );
    let app = TestApp::spawn(dir, &config).await;
    let names = hostile_names();
    // Each name is a real branch of the repository (git accepted it), with its own commit.
    let shas: Vec<String> = names.iter().map(|name| repo.commit(name, name)).collect();
    let pushes = names.iter().zip(&shas).enumerate().map(|(i, (name, sha))| {
        let delivery = format!("push-{i}");
        let app = &app;
        async move { app.push(&delivery, name, sha).await }
    });
    let deployed = all_finished(&app, futures::future::join_all(pushes).await).await;
    let mut envs = Vec::new();
    for ((name, job), sha) in names.iter().zip(&deployed).zip(&shas) {
        assert_eq!(job["state"], "succeeded", "{name}: {job:#}");
        assert_eq!(job["git_ref"], name.as_str());
        assert_eq!(job["sha"], sha.as_str());
        let env = job["env"].as_str().unwrap().to_owned();
        let live = srv.join("demo").join(&env).join("current");
        assert_eq!(std::fs::read_to_string(live.join("REF")).unwrap(), *name);
        assert!(srv.join(format!("routes/{env}.conf")).exists(), "{name}");
        envs.push(env);
    }

    let deletions = names.iter().enumerate().map(|(i, name)| {
        let body = push_body(REPO, &format!("refs/heads/{name}"), &"0".repeat(40), true);
        let delivery = format!("delete-{i}");
        let app = &app;
        async move { app.webhook("push", &delivery, &body, None).await }
    });
    let torn_down = all_finished(&app, futures::future::join_all(deletions).await).await;
    for ((name, job), env) in names.iter().zip(&torn_down).zip(&envs) {
        assert_eq!(
            (job["kind"].as_str(), job["state"].as_str()),
            (Some("teardown"), Some("succeeded")),
            "{name}: {job:#}"
        );
        assert_eq!(job["git_ref"], name.as_str());
        let stopped = std::fs::read_to_string(srv.join("stopped").join(env)).unwrap();
        assert_eq!(stopped, *name, "the stop step saw the branch verbatim");
        assert!(!srv.join("demo").join(env).exists(), "{name}");
        assert!(!srv.join(format!("routes/{env}.conf")).exists(), "{name}");
    }
    assert!(!found(&root), "a branch name ran a command");
    app.stop().await;
}

//! Deploys through real sshd hosts: release directories, `current`, step output, failures.

use std::path::Path;

use crate::helpers::{GitRepo, TestApp, config_head, hostile_branch_names, job_id, log_lines};
use crate::sshd::Fleet;

pub(crate) fn ssh_config(
    dir: &Path,
    repo: &GitRepo,
    fleet: &Fleet,
    steps: &str,
    keep: usize,
) -> String {
    format!(
        "{}[apps.shop]\nrepo = \"acme/shop\"\nclone_url = \"{}\"\n\
         [apps.shop.environments.staging]\nhosts = {}\ndeploy_path = \"/srv/shop\"\n\
         keep_releases = {keep}\nssh = {}\nsteps = {steps}\n\
         [[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"staging\"\n",
        config_head(dir),
        repo.clone_url(),
        fleet.hosts_toml(),
        fleet.ssh_toml(),
    )
}

pub(crate) fn current(srv: &Path) -> String {
    std::fs::read_link(srv.join("shop/current"))
        .unwrap()
        .display()
        .to_string()
}

pub(crate) fn releases(srv: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(srv.join("shop/releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_signed_push_deploys_to_two_ssh_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 2);
    let repo = GitRepo::new(dir.path());
    repo.write("app.txt", "v1\n");
    let sha1 = repo.commit("first", "main");
    let steps = r#"["./bin/build", { run = "echo step-output $SLIPWAY_ENV; echo to-stderr >&2", name = "report" }]"#;
    let config = ssh_config(dir.path(), &repo, &fleet, steps, 1);
    let app = TestApp::spawn(dir, &config).await;

    let (status, answer) = app.push("delivery-1", "main", &sha1).await;
    assert_eq!(status, 202, "{answer}");
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let release1 = job["release_id"].as_str().unwrap().to_owned();

    for host in &fleet.hosts {
        assert_eq!(current(&host.srv), format!("releases/{release1}"));
        let live = host.srv.join("shop/current");
        assert_eq!(
            std::fs::read_to_string(live.join("app.txt")).unwrap(),
            "v1\n"
        );
        assert_eq!(
            std::fs::read_to_string(live.join("BUILD_INFO")).unwrap(),
            format!("{release1}|{sha1}|main\n")
        );
    }
    let lines = log_lines(&job);
    for host in &fleet.hosts {
        let spec = &host.spec;
        assert!(
            lines.contains(&format!("{spec}: step-output staging")),
            "{lines:?}"
        );
        assert!(lines.contains(&format!("{spec}: to-stderr")), "{lines:?}");
        assert!(
            lines.contains(&format!("{spec}: built shop/staging")),
            "{lines:?}"
        );
    }
    // ship, 2 steps and the switch on each host, all ok.
    let steps = job["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 8, "{steps:?}");
    assert!(
        steps
            .iter()
            .all(|s| s["status"] == "ok" && s["exit_code"] == 0)
    );

    // A second push goes live everywhere; with keep_releases = 1 the first release stays only
    // as the one the switch replaced (a rollback's target).
    repo.write("app.txt", "v2\n");
    let sha2 = repo.commit("second", "main");
    let (_, answer) = app.push("delivery-2", "main", &sha2).await;
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let release2 = job["release_id"].as_str().unwrap().to_owned();
    for host in &fleet.hosts {
        assert_eq!(current(&host.srv), format!("releases/{release2}"));
        assert_eq!(releases(&host.srv), [release1.clone(), release2.clone()]);
        assert_eq!(
            std::fs::read_to_string(host.srv.join("shop/current/app.txt")).unwrap(),
            "v2\n"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_failing_step_leaves_current_on_the_old_release() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 2);
    let repo = GitRepo::new(dir.path());
    let good = repo.commit("good", "main");
    // The check fails only on a release that carries a BROKEN file.
    let steps = r#"["./bin/build", { run = "for i in $(seq 1 80); do echo line $i; done; test ! -e BROKEN", name = "check" }]"#;
    let config = ssh_config(dir.path(), &repo, &fleet, steps, 5);
    let app = TestApp::spawn(dir, &config).await;

    let (_, answer) = app.push("good", "main", &good).await;
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let live = job["release_id"].as_str().unwrap().to_owned();

    repo.write("BROKEN", "yes\n");
    let bad = repo.commit("bad", "main");
    let (_, answer) = app.push("bad", "main", &bad).await;
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("step `check` failed: exit code 1"),
        "{error}"
    );
    assert!(
        fleet.hosts.iter().any(|h| error.starts_with(&h.spec)),
        "{error}"
    );
    let tail = job["result"]["log_tail"].as_array().unwrap();
    assert_eq!(tail.len(), 50);
    assert_eq!(tail[tail.len() - 2], "line 80");
    assert_eq!(job["result"]["step"], "check");

    for host in &fleet.hosts {
        assert_eq!(current(&host.srv), format!("releases/{live}"));
        assert_eq!(
            releases(&host.srv),
            std::slice::from_ref(&live),
            "the failed release is removed"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_host_keys_and_unreachable_hosts_fail_the_job_naming_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 1);
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    // A known_hosts file that does not know the host.
    std::fs::write(&fleet.known_hosts, "").unwrap();
    let config = ssh_config(dir.path(), &repo, &fleet, "[\"true\"]", 5);
    let app = TestApp::spawn(dir, &config).await;
    let (_, answer) = app.push("d1", "main", &sha).await;
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "failed");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("{}: cannot connect", fleet.hosts[0].spec)),
        "{error}"
    );
    assert!(
        !fleet.hosts[0].srv.join("shop").exists(),
        "nothing was shipped"
    );
    app.stop().await;

    // A host that is not listening.
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::start(dir.path(), 1);
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    drop(fleet.hosts.pop());
    let config = ssh_config(dir.path(), &repo, &fleet, "[\"true\"]", 5)
        .replace("hosts = []", "hosts = [\"root@127.0.0.1:1\"]");
    let app = TestApp::spawn(dir, &config).await;
    let (_, answer) = app.push("d1", "main", &sha).await;
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "failed");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.starts_with("root@127.0.0.1:1: cannot connect"),
        "{error}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_hung_step_hits_its_idle_timeout_over_ssh() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 1);
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let steps = r#"[{ run = "echo waiting; sleep 60", name = "hang", idle_timeout = "1s" }]"#;
    let config = ssh_config(dir.path(), &repo, &fleet, steps, 5);
    let app = TestApp::spawn(dir, &config).await;
    let (_, answer) = app.push("d1", "main", &sha).await;
    let job = app.finished(job_id(&answer)).await;
    assert_eq!(job["state"], "failed");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.ends_with("step `hang` failed: no output for 1s"),
        "{error}"
    );
    assert_eq!(job["steps"][1]["status"], "idle_timeout");
    assert!(!fleet.hosts[0].srv.join("shop/current").exists());
    app.stop().await;
}

#[tokio::test]
async fn hostile_branch_names_reach_steps_verbatim_and_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 1);
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let canary = fleet.hosts[0].srv.join("canary");
    let config = ssh_config(dir.path(), &repo, &fleet, "[\"./bin/build\"]", 20)
        .replace("push = \"main\"", "push = \"*\"")
        + "[api]\ntoken = \"deploy-test-token\"\n";
    let app = TestApp::spawn(dir, &config).await;
    let mut extra = vec![
        "demo/$(touch /srv/canary)".to_owned(),
        "demo/`touch /srv/canary`".to_owned(),
        "demo/';touch /srv/canary;'".to_owned(),
    ];
    extra.extend(hostile_branch_names());
    let info = || std::fs::read_to_string(fleet.hosts[0].srv.join("shop/current/BUILD_INFO"));
    let mut releases = Vec::new();
    for (i, branch) in extra.iter().enumerate() {
        let (status, answer) = app.push(&format!("hostile-{i}"), branch, &sha).await;
        assert_eq!(status, 202, "{branch}: {answer}");
        let job = app.finished(job_id(&answer)).await;
        assert_eq!(job["state"], "succeeded", "{branch}: {job:#}");
        let info = info().unwrap();
        assert!(info.ends_with(&format!("|{branch}\n")), "{branch}: {info}");
        assert_eq!(job["git_ref"], branch.as_str());
        releases.push(job["release_id"].as_str().unwrap().to_owned());
    }
    // Rolling back to the releases of the first three (the ones aimed at /srv/canary) goes
    // through the same quoting: each switch lands on its release, named by the branch as data.
    for (branch, release) in extra.iter().zip(&releases).take(3) {
        let res = app
            .http
            .post(format!(
                "{}/api/environments/shop/staging/rollback",
                app.base
            ))
            .bearer_auth("deploy-test-token")
            .json(&serde_json::json!({ "to": release }))
            .send()
            .await
            .unwrap();
        let answer: serde_json::Value = res.json().await.unwrap();
        let job = app.finished(job_id(&answer)).await;
        assert_eq!(
            (job["kind"].as_str(), job["state"].as_str()),
            (Some("rollback"), Some("succeeded")),
            "{branch}: {job:#}"
        );
        assert_eq!(current(&fleet.hosts[0].srv), format!("releases/{release}"));
        assert!(info().unwrap().ends_with(&format!("|{branch}\n")));
    }
    assert!(!canary.exists(), "a branch name ran a command");
    app.stop().await;
}

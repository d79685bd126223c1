//! A worker killed in the middle of a job: after its lease lapses another process picks the job
//! up and finishes it.

use std::time::Duration;

use crate::helpers::{GitRepo, REPO, SECRET, job_id, push_to, serve, wait_for_job};

#[tokio::test]
async fn a_job_of_a_killed_worker_is_picked_up_again() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let marker = dir.path().join("attempts");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[github]\nwebhook_secret = \"{SECRET}\"\n\
         [database]\nurl = \"sqlite://{d}/slipway.db\"\n\
         [worker]\ndata_dir = \"{d}/var\"\nlease = \"2s\"\npoll_interval = \"200ms\"\n\
         [apps.shop]\nrepo = \"{REPO}\"\nclone_url = \"{}\"\n\
         [apps.shop.environments.staging]\nhosts = [\"local\"]\ndeploy_path = \"{d}/srv/shop\"\n\
         steps = [\"echo attempt >> {}; echo started; sleep 3; echo finished\"]\n\
         [[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"staging\"\n",
        repo.clone_url(),
        marker.display(),
        d = dir.path().display(),
    );
    let config_path = dir.path().join("slipway.toml");
    std::fs::write(&config_path, config).unwrap();

    let (mut first, base) = serve(&config_path, "all");
    let http = reqwest::Client::new();
    let answer = push_to(&http, &base, "kill-test", "main", &sha).await;
    let id = job_id(&answer);
    // Wait until the step is running, then kill the process without any chance to clean up.
    for _ in 0..100 {
        if std::fs::read_to_string(&marker).is_ok_and(|m| m.lines().count() == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();

    let (mut second, base) = serve(&config_path, "all");
    let job = wait_for_job(&http, &base, id).await;
    second.kill().unwrap();
    second.wait().unwrap();

    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["attempt"], 2);
    let events: Vec<_> = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e == "lease of attempt 1 expired (worker lost)"),
        "{events:?}"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 2);
    let current = std::fs::read_link(dir.path().join("srv/shop/current")).unwrap();
    assert_eq!(
        current.display().to_string(),
        format!("releases/{}", job["release_id"].as_str().unwrap())
    );
}

/// SIGTERM in the middle of a deploy: the process exits 0 after the grace period, the job is back
/// in the queue marked interrupted with `current` untouched, and the next process finishes it.
/// A job that ends within the grace period is finished before the process exits.
#[tokio::test]
async fn sigterm_returns_a_running_job_to_the_queue_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::new(dir.path());
    let sha = repo.commit("first", "main");
    let attempts = dir.path().join("attempts");
    let d = dir.path().display();
    // The first attempt hangs; later ones finish at once. `quick` always finishes within the grace.
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[github]\nwebhook_secret = \"{SECRET}\"\n\
         [database]\nurl = \"sqlite://{d}/slipway.db\"\n\
         [worker]\ndata_dir = \"{d}/var\"\nshutdown_grace = \"3s\"\npoll_interval = \"200ms\"\n\
         [apps.shop]\nrepo = \"{REPO}\"\nclone_url = \"{}\"\n\
         [apps.shop.environments.staging]\nhosts = [\"local\"]\ndeploy_path = \"{d}/srv/shop\"\n\
         steps = [\"echo attempt >> {a}; if [ $(wc -l < {a}) -lt 2 ]; then sleep 30; fi\"]\n\
         [apps.shop.environments.quick]\nhosts = [\"local\"]\ndeploy_path = \"{d}/srv/quick\"\n\
         steps = [\"echo started >> {d}/quick; sleep 1\"]\n\
         [[apps.shop.triggers]]\npush = \"main\"\ndeploy = \"staging\"\n\
         [[apps.shop.triggers]]\npush = \"quick\"\ndeploy = \"quick\"\n",
        repo.clone_url(),
        a = attempts.display(),
    );
    let config_path = dir.path().join("slipway.toml");
    std::fs::write(&config_path, config).unwrap();

    let (mut server, base) = serve(&config_path, "all");
    let http = reqwest::Client::new();
    let hung = job_id(&push_to(&http, &base, "hung", "main", &sha).await);
    let quick = job_id(&push_to(&http, &base, "quick", "quick", &sha).await);
    for _ in 0..200 {
        let started =
            std::fs::read_to_string(&attempts).is_ok() && dir.path().join("quick").exists();
        if started {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signalled = std::time::Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        signalled.elapsed()
    );

    let store =
        slipway::store::Store::open(&format!("sqlite://{}/slipway.db", dir.path().display()))
            .await
            .unwrap();
    let job = store.job(hung).await.unwrap().unwrap();
    assert_eq!(job.state, slipway::store::JobState::Queued);
    let events = store.job_events(hung).await.unwrap();
    assert_eq!(events.last().unwrap().state, "interrupted", "{events:?}");
    assert!(
        !dir.path().join("srv/shop/current").exists(),
        "an interrupted job switched"
    );
    let quick_job = store.job(quick).await.unwrap().unwrap();
    assert_eq!(
        quick_job.state,
        slipway::store::JobState::Succeeded,
        "the quick job ran to its end"
    );

    let (mut again, base) = serve(&config_path, "all");
    let job = wait_for_job(&http, &base, hung).await;
    again.kill().unwrap();
    again.wait().unwrap();
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert!(dir.path().join("srv/shop/current").exists());
}

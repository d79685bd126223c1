use super::*;

fn job(id: i64, kind: JobKind, state: JobState) -> Job {
    Job {
        id,
        kind,
        app: "shop".into(),
        env: "staging".into(),
        git_ref: "main".into(),
        sha: "1a2b3c4d".repeat(5),
        requested_by: "alice (U1)".into(),
        source: "slack".into(),
        delivery_id: None,
        state,
        attempt: 1,
        max_attempts: 3,
        // 2026-01-02 03:04:05 UTC
        created_at: 1_767_323_045_000,
        started_at: Some(1_767_323_046_000),
        finished_at: None,
        error: None,
        result: None,
        target_release: (kind == JobKind::Rollback).then(|| "20260101000000-3".into()),
        github_deployment_id: None,
        slack_channel: None,
        slack_ts: None,
        approvals_needed: 0,
        approve_by: None,
        cancel_requested_by: None,
    }
}

#[test]
fn user_text_cannot_ping_or_link() {
    assert_eq!(
        escape("demo/<!channel> & <@U1>"),
        "demo/&lt;!channel&gt; &amp; &lt;@U1&gt;"
    );
    assert_eq!(code("a`b<c>"), "`aˋb&lt;c&gt;`");
    let mut j = job(1, JobKind::Deploy, JobState::Queued);
    j.git_ref = "demo/<!channel>".into();
    j.requested_by = "<!here>".into();
    for text in [
        queued(&j, 0),
        started(&j),
        history("shop/staging", std::slice::from_ref(&j)),
    ] {
        assert!(
            !text.contains("<!channel>") && !text.contains("<!here>"),
            "{text}"
        );
    }
}

#[test]
fn times_show_in_the_readers_zone_with_a_utc_fallback() {
    assert_eq!(
        when(1_767_323_045_999),
        "<!date^1767323045^{date_short_pretty} {time}|2026-01-02 03:04 UTC>"
    );
}

#[test]
fn queued_says_what_and_how_many_are_ahead() {
    let deploy = job(42, JobKind::Deploy, JobState::Queued);
    assert_eq!(
        queued(&deploy, 0),
        "Queued #42: deploy `main` (`1a2b3c4d`) → shop/staging (nothing ahead of you)"
    );
    let rollback = job(43, JobKind::Rollback, JobState::Queued);
    assert_eq!(
        queued(&rollback, 2),
        "Queued #43: roll back shop/staging to release `20260101000000-3` (2 ahead of you)"
    );
    assert!(queued(&deploy, AHEAD_COUNTED).ends_with("(100 ahead of you)"));
    assert!(queued(&deploy, AHEAD_COUNTED + 1).ends_with("(more than 100 ahead of you)"));
}

#[test]
fn channel_messages_follow_the_job() {
    let mut j = job(7, JobKind::Deploy, JobState::Running);
    assert_eq!(
        started(&j),
        ":rocket: Deploying `main` (`1a2b3c4d`) to shop/staging — job #7, requested by alice (U1)"
    );
    j.attempt = 2;
    assert!(started(&j).ends_with("(attempt 2)"));
    let ok = Outcome::Succeeded {
        message: "release 20260102030405-7 (1a2b3c4d) live on local".into(),
    };
    assert_eq!(
        finished(&j, &ok, Some("https://staging.example.com"), Some(1500)),
        ":white_check_mark: Deployed `main` (`1a2b3c4d`) to shop/staging in 1.5 s — job #7, \
         requested by alice (U1)\nrelease 20260102030405-7 (1a2b3c4d) live on local\n\
         https://staging.example.com"
    );
    let failed = Outcome::Failed {
        error: format!(
            "step ./bin/build failed on local <x>\n{}",
            "more ".repeat(100)
        ),
        result: serde_json::json!({}),
    };
    let text = finished(&j, &failed, None, None);
    assert_eq!(
        text,
        ":x: Deploy of `main` (`1a2b3c4d`) to shop/staging failed — job #7, requested by \
         alice (U1)\n> step ./bin/build failed on local &lt;x&gt;…"
    );
    let rollback = job(8, JobKind::Rollback, JobState::Running);
    assert!(started(&rollback).starts_with(
        ":rewind: Rolling back shop/staging to release `20260101000000-3` (`1a2b3c4d`)"
    ));
    assert!(
        finished(&rollback, &ok, None, None)
            .starts_with(":white_check_mark: Rolled back shop/staging to release")
    );
}

#[test]
fn the_rollback_button_carries_the_environment() {
    let content = job_message("done".into(), Some(Action::RollBack("shop/staging".into())));
    let json = serde_json::to_value(&content).unwrap();
    assert_eq!(json["text"], "done");
    assert_eq!(json["blocks"][0]["type"], "section");
    assert_eq!(json["blocks"][0]["text"]["type"], "mrkdwn");
    assert_eq!(json["blocks"][0]["text"]["text"], "done");
    let button = &json["blocks"][1]["elements"][0];
    assert_eq!(button["type"], "button");
    assert_eq!(button["action_id"], ROLLBACK_ACTION);
    assert_eq!(button["value"], "shop/staging");
    assert_eq!(button["text"]["text"], "Roll back");
    let plain = serde_json::to_value(job_message("x".into(), None)).unwrap();
    assert_eq!(plain["blocks"].as_array().unwrap().len(), 1);
    let retry = serde_json::to_value(job_message("x".into(), Some(Action::Retry(7)))).unwrap();
    let button = &retry["blocks"][1]["elements"][0];
    assert_eq!(
        (
            &button["action_id"],
            &button["value"],
            &button["text"]["text"]
        ),
        (&RETRY_ACTION.into(), &"7".into(), &"Retry".into())
    );
}

#[test]
fn progress_shows_each_hosts_last_step() {
    use crate::deploy::journal::HostProgress;
    let mut j = job(7, JobKind::Deploy, JobState::Running);
    j.git_ref = "demo/<!channel>".into();
    let mut progress = Progress::default();
    progress.hosts.insert(
        "web1".into(),
        HostProgress {
            done: 3,
            last: "migrate: <db>".into(),
            status: "ok".into(),
        },
    );
    progress.hosts.insert(
        "web2".into(),
        HostProgress {
            done: 1,
            last: "ship".into(),
            status: "timed_out".into(),
        },
    );
    assert_eq!(
        super::progress(&j, &progress),
        ":rocket: Deploying `demo/&lt;!channel&gt;` (`1a2b3c4d`) to shop/staging — job #7, \
         requested by alice (U1)\n• `web1`: 3 steps done, last `migrate: &lt;db&gt;` (ok)\n\
         • `web2`: 1 step done, last `ship` (timed out)"
    );
    assert_eq!(super::progress(&j, &Progress::default()), started(&j));
}

#[test]
fn a_cancelled_job_says_who_stopped_it() {
    let j = job(7, JobKind::Deploy, JobState::Cancelled);
    let cancelled = Outcome::Cancelled {
        message: "cancelled by bob <!here> via slack while running; nothing was switched".into(),
    };
    assert_eq!(
        finished(
            &j,
            &cancelled,
            Some("https://staging.example.com"),
            Some(2000)
        ),
        ":no_entry_sign: Cancelled: deploy `main` (`1a2b3c4d`) → shop/staging in 2.0 s — job #7, \
         requested by alice (U1)\ncancelled by bob &lt;!here&gt; via slack while running; nothing \
         was switched"
    );
}

#[test]
fn the_failure_log_is_the_end_of_the_step_escaped_in_a_code_block() {
    let result = serde_json::json!({
        "host": "web1",
        "step": "build",
        "reason": "exit code 1",
        "log_tail": ["compiling", "<!channel> ```oops```", "error: exit 1"],
    });
    assert_eq!(
        failure_log(&result).unwrap(),
        "Step `build` on `web1` failed; its log:\n```\ncompiling\n&lt;!channel&gt; ˋˋˋoopsˋˋˋ\n\
         error: exit 1\n```"
    );
    // Long logs keep their last lines, within Slack's limits.
    let long: Vec<String> = (0..200)
        .map(|i| format!("line {i} {}", "x".repeat(100)))
        .collect();
    let text = failure_log(&serde_json::json!({"host": "web1", "log_tail": long})).unwrap();
    assert!(
        text.starts_with("`web1` failed; its log (last 25 of 200 lines):\n```\nline 175 "),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("line 199 {}\n```", "x".repeat(100))),
        "{text}"
    );
    assert!(text.chars().count() < 3000);
    assert_eq!(
        failure_log(&serde_json::json!({"reason": "no hosts"})),
        None
    );
    assert_eq!(failure_log(&serde_json::json!({"log_tail": []})), None);
}

#[test]
fn the_requester_is_messaged_only_when_they_asked_in_slack() {
    let mut j = job(7, JobKind::Deploy, JobState::Failed);
    j.requested_by = "alice (U0ALICE)".into();
    assert_eq!(slack_requester(&j), Some("U0ALICE"));
    assert_eq!(
        failed_dm(&j, "web1: step `build` failed: <exit> 1"),
        ":x: Your deploy `main` (`1a2b3c4d`) → shop/staging failed (job #7): web1: step \
         `build` failed: &lt;exit&gt; 1"
    );
    j.requested_by = "mallory (#general)".into();
    assert_eq!(slack_requester(&j), None);
    j.requested_by = "alice (U0ALICE)".into();
    j.source = "api".into();
    assert_eq!(slack_requester(&j), None);
}

#[test]
fn status_lists_live_releases_and_the_queue() {
    let live = |release: &str, hosts: &[&str]| LiveRelease {
        release: release.into(),
        git_ref: "main".into(),
        sha: "ab".repeat(20),
        by: Some("alice (U1)".into()),
        job: 1,
        since: 1_767_323_045_000,
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
    };
    let lanes = [
        LaneStatus {
            lane: "shop/staging".into(),
            live: vec![live("20260102030405-7", &["a", "b"])],
        },
        LaneStatus {
            lane: "shop/production".into(),
            live: vec![],
        },
        LaneStatus {
            lane: "shop/qa".into(),
            live: vec![live("r2", &["a"]), live("r1", &["b"])],
        },
    ];
    let text = status(&lanes, &[]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "*shop/staging*: release `20260102030405-7` of `main` (`abababab`) by alice (U1), \
         live since <!date^1767323045^{date_short_pretty} {time}|2026-01-02 03:04 UTC>"
    );
    assert_eq!(lines[1], "*shop/production*: nothing deployed yet");
    assert_eq!(lines[2], "*shop/qa*: hosts differ");
    assert!(
        lines[3].ends_with(" on a") && lines[4].ends_with(" on b"),
        "{text}"
    );
    assert_eq!(lines[5], "Nothing running or queued.");
    let active = [
        job(9, JobKind::Deploy, JobState::Running),
        job(10, JobKind::Deploy, JobState::Queued),
    ];
    let text = status(&lanes[1..2], &active);
    assert!(
        text.contains("#9 deploy `main` (`1a2b3c4d`) → shop/staging by alice (U1): running since")
    );
    assert!(text.contains("#10 deploy `main` (`1a2b3c4d`) → shop/staging by alice (U1): queued"));
}

#[test]
fn envs_show_urls_and_ttl_left() {
    let text = envs(
        &[
            EnvLine {
                lane: "shop/staging".into(),
                url: Some("https://staging.example.com".into()),
            },
            EnvLine {
                lane: "shop/production".into(),
                url: None,
            },
        ],
        &[EphemeralLine {
            lane: "shop/demo-x".into(),
            branch: "demo/x".into(),
            url: Some("https://demo-x.example.test".into()),
            state: "tearing_down".into(),
            left_ms: Some(2 * 86_400_000 + 3 * 3_600_000),
        }],
    );
    assert_eq!(
        text,
        "*Environments*\n• shop/staging — https://staging.example.com\n• shop/production\n\
         *Ephemeral*\n• shop/demo-x — branch `demo/x` — https://demo-x.example.test — \
         tearing down, 2d 3h left"
    );
    assert!(envs(&[], &[]).ends_with("No ephemeral environments."));
    let orphan = EphemeralLine {
        lane: "shop/old-x".into(),
        branch: "old/x".into(),
        url: None,
        state: "live".into(),
        left_ms: None,
    };
    assert!(
        envs(&[], &[orphan]).ends_with(
            "• shop/old-x — branch `old/x` — live, its template is no longer configured"
        )
    );
    for (ms, expected) in [
        (-5, "TTL over (due for teardown)"),
        (0, "TTL over (due for teardown)"),
        (59_999, "under a minute left"),
        (60_000, "1m left"),
        (3_600_000 + 120_000, "1h 2m left"),
        (86_400_000, "1d 0h left"),
    ] {
        assert_eq!(left(ms), expected, "{ms}");
    }
}

#[test]
fn history_shows_each_outcome() {
    let mut failed = job(3, JobKind::Deploy, JobState::Failed);
    failed.finished_at = Some(1_767_323_050_000);
    failed.error = Some("health check failed\ndetails".into());
    let mut ok = job(2, JobKind::Deploy, JobState::Succeeded);
    ok.finished_at = Some(1_767_323_047_500);
    let cancelled = job(1, JobKind::Deploy, JobState::Cancelled);
    let text = history("shop/staging", &[failed, ok, cancelled]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "*shop/staging*, newest first:");
    assert!(lines[1].starts_with("• #3 deploy `main` (`1a2b3c4d`) → shop/staging by alice (U1) — failed <!date^1767323050^"), "{text}");
    assert!(
        lines[1].ends_with(", took 4.0 s: health check failed…"),
        "{text}"
    );
    assert!(
        lines[2].contains("— succeeded <!date^1767323047^") && lines[2].ends_with("took 1.5 s"),
        "{text}"
    );
    assert!(lines[3].contains("— cancelled <!date^"), "{text}");
    assert_eq!(
        history("shop/qa", &[]),
        "Nothing was deployed to shop/qa yet."
    );
}

#[test]
fn help_is_the_usage() {
    assert!(help().starts_with("Usage:"));
    assert!(help().contains("/deploy lock ENV REASON [for DURATION]"));
}

#[test]
fn a_long_announcement_is_cut_after_escaping_never_inside_an_escape() {
    let short = "v1 <!channel> & notes";
    assert_eq!(announcement(short), "v1 &lt;!channel&gt; &amp; notes");
    // 1000 `<` escape to 4000 characters: the cut keeps whole escapes and fits a section.
    let long = format!("é{}", "<".repeat(1000));
    let cut = announcement(&long);
    assert_eq!(cut.chars().count(), 1 + 749 * 4 + 1, "{cut}");
    assert!(cut.starts_with("é&lt;") && cut.ends_with("&lt;…"), "{cut}");
    assert!(cut.chars().count() <= SECTION_CHARS);
    // Exactly at the limit: nothing cut.
    let full = "x".repeat(SECTION_CHARS);
    assert_eq!(announcement(&full), full);
}

//! What the operator commands print. `main.rs` parses the command line and calls these.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::Config;
use crate::store::{Job, JobDetail, JobFilter, JobState, Store};

/// `slipway check-config`: a summary on success, every problem with its key path otherwise.
pub fn check_config(path: &Path) -> Result<String, String> {
    let config =
        Config::load(path).map_err(|e| format!("{}: invalid config\n{e}", path.display()))?;
    let mut out = format!("{}: ok\n", path.display());
    let _ = writeln!(
        out,
        "listen {}, database {}",
        config.server.listen, config.database.url
    );
    for app in config.apps.values() {
        let _ = writeln!(
            out,
            "app {} ({}, from {})",
            app.name, app.repo, app.clone_url
        );
        for env in app.environments.values() {
            let hosts: Vec<_> = env.hosts.iter().map(ToString::to_string).collect();
            let p = &env.phases;
            let _ = writeln!(
                out,
                "  env {}: {} -> {} ({:?}; steps: {} build, {} migrate, {} start, {} stop, {} after_switch; keep {})",
                env.name,
                hosts.join(", "),
                env.deploy_path.display(),
                env.strategy,
                p.build.len(),
                p.migrate.len(),
                p.start.len(),
                p.stop.len(),
                p.after_switch.len(),
                env.keep_releases
            );
        }
        for trigger in &app.triggers {
            let _ = writeln!(
                out,
                "  trigger: push {} deploys {}",
                trigger.push.glob(),
                trigger.deploy
            );
        }
        if let Some(r) = &app.releases {
            let deploy = r
                .deploy
                .as_ref()
                .map_or(String::new(), |env| format!(", deploys {env}"));
            let _ = writeln!(out, "  releases: tags {}{deploy}", r.tags);
        }
        for e in app.ephemeral.values() {
            let hosts: Vec<_> = e.template.hosts.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "  ephemeral {}: push {} -> {} on {} (ports {}-{}, at most {}, ttl {})",
                e.name,
                e.branches.glob(),
                e.hostname,
                hosts.join(", "),
                e.ports.start(),
                e.ports.end(),
                e.max,
                humantime::format_duration(e.ttl)
            );
        }
    }
    for schedule in &config.schedules {
        let _ = writeln!(
            out,
            "schedule {}: {} (UTC) queues {}",
            schedule.name,
            schedule.cron.pattern,
            schedule.job.as_str()
        );
    }
    Ok(out)
}

pub async fn jobs_list(
    store: &Store,
    state: Option<JobState>,
    limit: i64,
) -> anyhow::Result<String> {
    let filter = JobFilter {
        state,
        ..JobFilter::default()
    };
    let jobs = store.jobs(&filter, limit).await?;
    if jobs.is_empty() {
        return Ok("no jobs\n".into());
    }
    let mut out = format!(
        "{:>6}  {:<10}  {:<20}  {:<24}  {:<8}  {:<16}  {:>9}\n",
        "ID", "STATE", "APP/ENV", "REF", "SHA", "QUEUED (UTC)", "DURATION"
    );
    for job in &jobs {
        let _ = writeln!(
            out,
            "{:>6}  {:<10}  {:<20}  {:<24}  {:<8}  {:<16}  {:>9}",
            job.id,
            job.state.as_str(),
            format!("{}/{}", job.app, job.env),
            shorten(&escape(&job.git_ref), 24),
            &job.sha[..8.min(job.sha.len())],
            time(job.created_at),
            job.duration_ms().map(duration).unwrap_or_default()
        );
    }
    Ok(out)
}

pub async fn jobs_show(store: &Store, id: i64) -> anyhow::Result<Option<String>> {
    let Some(detail) = store.job_detail(id, JobDetail::LOG_LINES).await? else {
        return Ok(None);
    };
    Ok(Some(render(&detail)))
}

fn render(d: &JobDetail) -> String {
    let job: &Job = &d.job;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "job {} ({}): {} {}/{}",
        job.id,
        job.kind.as_str(),
        job.state.as_str(),
        job.app,
        job.env
    );
    // No commit yet: a deploy queued by a ref's name looks it up as it starts.
    let at = match job.sha.as_str() {
        "" => String::new(),
        sha => format!(" @ {sha}"),
    };
    let _ = writeln!(out, "  ref      {}{at}", escape(&job.git_ref));
    let _ = writeln!(out, "  release  {}", d.release_id);
    let _ = writeln!(
        out,
        "  by       {} via {}",
        escape(&job.requested_by),
        job.source
    );
    let _ = writeln!(out, "  attempt  {} of {}", job.attempt, job.max_attempts);
    if let Some(ms) = d.duration_ms {
        let _ = writeln!(out, "  took     {}", duration(ms));
    }
    if let Some(error) = &job.error {
        let _ = writeln!(out, "  error    {error}");
    }
    out.push_str("\nevents:\n");
    for e in &d.events {
        let _ = writeln!(out, "  {}  {:<10} {}", time(e.at), e.state, e.message);
    }
    if !d.steps.is_empty() {
        out.push_str("\nsteps:\n");
        for s in &d.steps {
            let code = s
                .exit_code
                .map(|c| format!(" (exit {c})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  #{} {:<24} {:<2} {:<32} {:<12}{code} {:>9}",
                s.attempt,
                s.host,
                s.idx,
                shorten(&s.name, 32),
                s.status,
                duration(s.duration_ms)
            );
        }
    }
    if !d.log.is_empty() {
        out.push_str("\nlog:\n");
        for l in &d.log {
            let _ = writeln!(out, "  [{}] {}: {}", l.host, l.step, escape(&l.line));
        }
    }
    out
}

/// Control characters in user-supplied text are shown escaped, never sent to the terminal.
fn escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(width - 1).collect();
        s.push('…');
        s
    }
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn duration(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_in_refs_are_neutralised() {
        assert_eq!(escape("demo/\u{1b}[31mred"), "demo/\\u{1b}[31mred");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(duration(1500), "1.5s");
    }
}

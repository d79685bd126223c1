//! What runs where: the environments (configured and ephemeral), the releases live on their
//! hosts, and when an ephemeral one expires. Reads of config and store shared by Slack's
//! `status`/`envs` and the dashboard; each formats them its own way.

use crate::config::Config;
use crate::domain::Name;
use crate::store::{EphemeralRow, Store, StoreError};

/// One release live on some hosts of an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRelease {
    pub release: String,
    pub git_ref: String,
    pub sha: String,
    /// Who asked for the job that made it live.
    pub by: Option<String>,
    /// The job that made it live.
    pub job: i64,
    pub since: i64,
    pub hosts: Vec<String>,
}

/// What is live on `app`/`env`: nothing, one release, or (after a partial failure) several.
pub async fn live_releases(
    store: &Store,
    app: &str,
    env: &str,
) -> Result<Vec<LiveRelease>, StoreError> {
    let mut live: Vec<LiveRelease> = Vec::new();
    for d in store.live_deployments(app, env).await? {
        match live.iter_mut().find(|r| r.release == d.release_id) {
            Some(release) => {
                release.hosts.push(d.host);
                release.since = release.since.max(d.switched_at);
            }
            None => live.push(LiveRelease {
                by: store.job(d.job_id).await?.map(|j| j.requested_by),
                job: d.job_id,
                release: d.release_id,
                git_ref: d.git_ref,
                sha: d.sha,
                since: d.switched_at,
                hosts: vec![d.host],
            }),
        }
    }
    Ok(live)
}

/// Every environment, configured ones first, as `(app, env)`.
pub fn lanes(config: &Config, rows: &[EphemeralRow]) -> Vec<(String, String)> {
    config
        .apps
        .values()
        .flat_map(|app| {
            app.environments
                .keys()
                .map(move |env| (app.name.to_string(), env.to_string()))
        })
        .chain(rows.iter().map(|row| (row.app.clone(), row.env.clone())))
        .collect()
}

/// An ephemeral environment's URL and time left, as its template says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralView {
    /// Its URL as its deploys render it, from the names its branch gives it.
    pub url: Option<String>,
    /// Until cleanup may tear it down (negative: overdue); `None` when its template is no
    /// longer configured.
    pub left_ms: Option<i64>,
}

pub fn ephemeral(config: &Config, row: &EphemeralRow, now: i64) -> EphemeralView {
    let template = config.app(&row.app).and_then(|app| {
        let template = app.ephemeral.get(&Name::parse(&row.template).ok()?)?;
        Some((app, template))
    });
    let url = template.and_then(|(app, template)| {
        let id = crate::ephemeral::identify(template, &row.branch).ok()?;
        let port = row.port().unwrap_or(0);
        template
            .environment(&app.name, &id.env, &id.slug, &row.hostname, port)
            .url
    });
    EphemeralView {
        url,
        left_ms: template.map(|(_, template)| {
            let ttl = i64::try_from(template.ttl.as_millis()).unwrap_or(i64::MAX);
            ttl_end(row.last_push_at, ttl, row.keep_until) - now
        }),
    }
}

/// How long an ephemeral environment has before cleanup, in words.
pub fn left(ms: i64) -> String {
    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    match ms {
        ..=0 => "TTL over (due for teardown)".into(),
        1..MINUTE => "under a minute left".into(),
        MINUTE..HOUR => format!("{}m left", ms / MINUTE),
        HOUR..DAY => format!("{}h {}m left", ms / HOUR, ms % HOUR / MINUTE),
        _ => format!("{}d {}h left", ms / DAY, ms % DAY / HOUR),
    }
}

/// When an ephemeral environment's TTL ends: `ttl` after its last push, or later if someone
/// asked to keep it (`keep_until`).
pub fn ttl_end(last_push_at: i64, ttl_ms: i64, keep_until: Option<i64>) -> i64 {
    last_push_at
        .saturating_add(ttl_ms)
        .max(keep_until.unwrap_or(i64::MIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_ends_after_the_last_push_or_when_kept() {
        assert_eq!(ttl_end(1_000, 500, None), 1_500);
        assert_eq!(ttl_end(1_000, 500, Some(9_000)), 9_000);
        assert_eq!(ttl_end(1_000, 500, Some(1_200)), 1_500);
    }
}

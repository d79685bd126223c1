//! Housekeeping of ephemeral environments, queued by the scheduler or run by `slipway cleanup`
//! and `slipway reconcile`:
//!
//! - **cleanup**: an environment idle (no push) for its template's `ttl` is torn down; one idle
//!   for `ttl - warn_before` is warned about once. Kept (`keep_until`) and pinned ones are left.
//! - **reconcile**: GitHub's branch list is the truth. A matching branch without an environment
//!   gets one (its webhook was lost); an environment whose branch is gone is torn down; a live
//!   one behind its branch head is redeployed.
//!
//! Each decides with a pure function of the rows, the config and the time (or the branches),
//! so every rule is a unit test, then acts only by queueing jobs: nothing here touches a host.

use crate::config::{App, Ephemeral, Sweep};
use crate::deploy::{Engine, plan};
use crate::domain::{GitRef, Name, Sha};
use crate::ephemeral::{self, Identity};
use crate::github::{Branch, GitHub};
use crate::planner::ephemeral_job;
use crate::queue::{Enqueued, NewJob, Queue};
use crate::store::{EnvState, EphemeralRow, JobKind, StoreError};

/// The env of housekeeping jobs: they work on a whole app, one at a time per app.
pub const HOUSEKEEPING_ENV: &str = "housekeeping";

/// What housekeeping decided about one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Queue a teardown.
    TearDown { env: String, why: String },
    /// Record (once) that the environment will be torn down soon.
    Warn { env: String, why: String },
    /// Queue a deploy of `sha` (creating the environment if it does not exist).
    Deploy {
        branch: GitRef,
        sha: Sha,
        why: String,
    },
    /// Nothing can be done; say why.
    Note { env: String, why: String },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TearDown { env, why } => write!(f, "tear down {env}: {why}"),
            Self::Warn { env, why } => write!(f, "warn {env}: {why}"),
            Self::Deploy { branch, sha, why } => {
                write!(f, "deploy {branch} ({}): {why}", sha.short())
            }
            Self::Note { env, why } => write!(f, "leave {env}: {why}"),
        }
    }
}

fn template<'a>(app: &'a App, row: &EphemeralRow) -> Option<&'a Ephemeral> {
    Name::parse(&row.template)
        .ok()
        .and_then(|t| app.ephemeral.get(&t))
}

/// A duration in words, to the nearest minute.
fn human(ms: i64) -> String {
    let secs = u64::try_from((ms + 30_000) / 60_000 * 60).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// Cleanup's decisions for `app`'s environments at `now` (ms since the epoch).
pub fn plan_cleanup(app: &App, rows: &[EphemeralRow], now: i64) -> Vec<Action> {
    let mut actions = Vec::new();
    for row in rows.iter().filter(|r| r.app == app.name.as_str()) {
        if matches!(row.state, EnvState::TearingDown | EnvState::Gone) {
            continue;
        }
        let env = row.env.clone();
        let Some(template) = template(app, row) else {
            actions.push(Action::Note {
                env,
                why: format!("template {} is no longer configured", row.template),
            });
            continue;
        };
        if template.pinned.iter().any(|p| p.is_match(&row.branch)) {
            continue;
        }
        if row.keep_until.is_some_and(|until| until > now) {
            continue;
        }
        let idle = now - row.last_push_at;
        let ttl = template.ttl.as_millis() as i64;
        let warn_at = ttl - template.warn_before.as_millis() as i64;
        if idle >= ttl {
            actions.push(Action::TearDown {
                env,
                why: format!("idle for {} (ttl {})", human(idle), human(ttl)),
            });
        } else if idle >= warn_at && row.warned_at.is_none() {
            actions.push(Action::Warn {
                env,
                why: format!(
                    "idle for {}; torn down in {} unless pushed to or kept",
                    human(idle),
                    human(ttl - idle)
                ),
            });
        }
    }
    actions
}

/// Reconcile's decisions for `app`, given every branch of its repository.
pub fn plan_reconcile(app: &App, rows: &[EphemeralRow], branches: &[Branch]) -> Vec<Action> {
    let mut actions = Vec::new();
    let rows: Vec<&EphemeralRow> = rows
        .iter()
        .filter(|r| r.app == app.name.as_str() && r.state != EnvState::Gone)
        .collect();
    for branch in branches {
        let Some(template) = ephemeral::template_for(app, &branch.name) else {
            continue;
        };
        let (Ok(git_ref), Ok(sha)) = (GitRef::parse(&branch.name), Sha::parse(&branch.sha)) else {
            actions.push(Action::Note {
                env: branch.name.clone(),
                why: "GitHub listed a branch name or sha slipway cannot use".into(),
            });
            continue;
        };
        let id = match ephemeral::identify(template, &branch.name) {
            Ok(id) => id,
            Err(why) => {
                actions.push(Action::Note {
                    env: branch.name.clone(),
                    why: why.to_string(),
                });
                continue;
            }
        };
        match rows.iter().find(|r| r.env == id.env.as_str()) {
            None => actions.push(Action::Deploy {
                branch: git_ref,
                sha,
                why: "the branch has no environment (a lost webhook?)".into(),
            }),
            Some(row)
                if row.state == EnvState::Live && row.sha.as_deref() != Some(sha.as_str()) =>
            {
                actions.push(Action::Deploy {
                    why: format!(
                        "{} runs {}, the branch is at {}",
                        row.env,
                        row.sha
                            .as_deref()
                            .map_or("nothing", |s| &s[..8.min(s.len())]),
                        sha.short()
                    ),
                    branch: git_ref,
                    sha,
                })
            }
            // Up to date, or a job is already on its way (provisioning, updating, tearing
            // down), or it failed (the next push retries it; cleanup removes it in time).
            Some(_) => {}
        }
    }
    for row in rows {
        let gone = !branches.iter().any(|b| b.name == row.branch);
        if gone && row.state != EnvState::TearingDown && template(app, row).is_some() {
            actions.push(Action::TearDown {
                env: row.env.clone(),
                why: format!("branch {} no longer exists", row.branch),
            });
        }
    }
    actions
}

/// The job that runs `kind` (cleanup or reconcile) for `app`.
pub fn job(app: &App, kind: JobKind, requested_by: &str, source: &'static str) -> NewJob {
    NewJob {
        kind,
        app: app.name.clone(),
        env: Name::parse(HOUSEKEEPING_ENV).expect("a valid name"),
        git_ref: None,
        sha: None,
        requested_by: requested_by.to_owned(),
        source,
        target_release: None,
        ephemeral: None,
        supersede: false,
        approval: None,
    }
}

/// What a housekeeping pass did.
#[derive(Debug, Default)]
pub struct Done {
    /// One line per action, saying what was done.
    pub lines: Vec<String>,
    /// The idle warnings given now, for the team to read. Each environment is warned once per
    /// idle spell (its `warned_at`, cleared by a push or a keep), so these are said once.
    pub warnings: Vec<String>,
}

/// Runs `kind` (cleanup or reconcile) for `app` as of `now`: reads the environments (and, to
/// reconcile, the branches from GitHub), decides, acts.
pub async fn run(
    queue: &Queue,
    engine: Option<&Engine>,
    app: &App,
    kind: JobKind,
    github: Option<&GitHub>,
    now: i64,
    dry_run: bool,
) -> anyhow::Result<Done> {
    let rows = queue.store().ephemeral_envs().await?;
    let actions = if kind == JobKind::Reconcile {
        let github = github.ok_or_else(|| {
            anyhow::anyhow!("reconcile reads branches from GitHub: set github.token")
        })?;
        let branches = github.branches(&app.repo).await?;
        plan_reconcile(app, &rows, &branches)
    } else {
        plan_cleanup(app, &rows, now)
    };
    let mut done = act(queue, app, &rows, &actions, now, dry_run).await?;
    if let (JobKind::Cleanup, Some(engine)) = (kind, engine) {
        for template in app.ephemeral.values() {
            done.lines
                .extend(sweep(queue, engine, app, template, dry_run).await?);
        }
    }
    Ok(done)
}

/// A directory or route file on the hosts that no existing environment owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub path: String,
    pub route: bool,
}

/// The route file pattern of `template` for `app`, split around `{env}`.
fn route_pattern(app: &App, template: &Ephemeral) -> (String, String) {
    let file = template.route.file.replace("{app}", app.name.as_str());
    let (prefix, suffix) = file.split_once("{env}").unwrap_or((&file, ""));
    (prefix.to_owned(), suffix.to_owned())
}

/// What in a host listing (`dir NAME` / `route PATH` lines) belongs to no environment in
/// `existing`. Only names slipway could have made are considered.
pub fn orphans(
    app: &App,
    template: &Ephemeral,
    listing: &[String],
    existing: &[&str],
) -> Vec<Orphan> {
    let root = template.template.deploy_path.to_string_lossy();
    let (prefix, suffix) = route_pattern(app, template);
    let ours = |env: &str| {
        env.starts_with(&format!("{}-", template.name))
            && Name::parse(env).is_ok()
            && !existing.contains(&env)
    };
    listing
        .iter()
        .filter_map(|line| {
            if let Some(dir) = line.strip_prefix("dir ") {
                return ours(dir).then(|| Orphan {
                    path: format!("{}/{dir}", root.trim_end_matches('/')),
                    route: false,
                });
            }
            let path = line.strip_prefix("route ")?;
            let env = path
                .strip_prefix(prefix.as_str())?
                .strip_suffix(suffix.as_str())?;
            ours(env).then(|| Orphan {
                path: path.to_owned(),
                route: true,
            })
        })
        .collect()
}

/// Finds (and, with `sweep = "remove"`, removes) what `template`'s hosts hold for environments
/// that do not exist. The hosts are listed before the environments are read, so a directory an
/// environment's deploy is creating right now always has its row already.
async fn sweep(
    queue: &Queue,
    engine: &Engine,
    app: &App,
    template: &Ephemeral,
    dry_run: bool,
) -> Result<Vec<String>, StoreError> {
    let root = template.template.deploy_path.to_string_lossy();
    let (prefix, suffix) = route_pattern(app, template);
    let dirs = format!("{}-", template.name);
    let script = plan::list_environments(&root, &dirs, &prefix, &suffix);
    let listings = match engine.on_all_hosts(&template.template, &script).await {
        Ok(listings) => listings,
        Err(failure) => {
            return Ok(vec![format!(
                "sweep of {}: could not list the hosts: {}",
                template.name,
                failure.message()
            )]);
        }
    };
    let rows = queue.store().ephemeral_envs().await?;
    let existing: Vec<&str> = rows
        .iter()
        .filter(|r| r.app == app.name.as_str())
        .map(|r| r.env.as_str())
        .collect();
    let mut lines = Vec::new();
    let mut found: Vec<Orphan> = Vec::new();
    for (host, listing) in &listings {
        for orphan in orphans(app, template, listing, &existing) {
            let what = if orphan.route {
                "route file"
            } else {
                "directory"
            };
            lines.push(format!("orphan {what} {} on {host}", orphan.path));
            if !found.contains(&orphan) {
                found.push(orphan);
            }
        }
    }
    if found.is_empty() {
        return Ok(lines);
    }
    if template.sweep == Sweep::Report || dry_run {
        let why = if dry_run {
            "dry run"
        } else {
            "sweep = \"report\""
        };
        lines.push(format!("left {} orphan(s) in place ({why})", found.len()));
        return Ok(lines);
    }
    // The same script on every host: removing what a host does not have is a no-op.
    let script: Vec<String> = found
        .iter()
        .map(|o| {
            if o.route {
                plan::remove_route(&o.path, &template.route.check, &template.route.reload)
            } else {
                plan::remove_directory(&o.path)
            }
        })
        .collect();
    let script = format!("set -e\n{}", script.join("\n"));
    match engine.on_all_hosts(&template.template, &script).await {
        Ok(_) => lines.push(format!("removed {} orphan(s)", found.len())),
        Err(failure) => lines.push(format!("removing orphans failed: {}", failure.message())),
    }
    Ok(lines)
}

/// Carries out `actions` (unless `dry_run`): queues the jobs and records warnings.
pub async fn act(
    queue: &Queue,
    app: &App,
    rows: &[EphemeralRow],
    actions: &[Action],
    now: i64,
    dry_run: bool,
) -> Result<Done, StoreError> {
    let mut done = Done::default();
    if dry_run {
        done.lines = actions.iter().map(|a| format!("would {a}")).collect();
        return Ok(done);
    }
    let row_of = |env: &str| {
        rows.iter()
            .find(|r| r.app == app.name.as_str() && r.env == env)
    };
    // Each action's job, by the action's index.
    let mut jobs = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        let job = match action {
            Action::Note { .. } => None,
            Action::Warn { env, why } => {
                if let Some(row) = row_of(env) {
                    queue.store().mark_warned(row.id, now).await?;
                    done.warnings.push(format!(
                        "{}/{env} (branch {}, {}): {why}",
                        app.name, row.branch, row.hostname
                    ));
                }
                None
            }
            Action::TearDown { env, .. } => row_of(env).and_then(|row| {
                let id = identity(app, row)?;
                let branch = GitRef::parse(&row.branch).ok()?;
                Some(ephemeral_job(
                    app,
                    id,
                    &branch,
                    None,
                    "housekeeping",
                    "schedule",
                ))
            }),
            Action::Deploy { branch, sha, .. } => ephemeral::template_for(app, branch.as_str())
                .and_then(|t| ephemeral::identify(t, branch.as_str()).ok())
                .map(|id| {
                    ephemeral_job(app, id, branch, Some(sha.clone()), "reconcile", "reconcile")
                }),
        };
        jobs.extend(job.map(|job| (i, job)));
    }
    // One request per job, all at once: they share the queue's group commits (a transaction
    // carries up to 256) and each keeps its own outcome, so one refusal stops no other.
    let outcomes = futures::future::join_all(
        jobs.iter()
            .map(|(_, job)| queue.enqueue(None, std::slice::from_ref(job))),
    )
    .await;
    done.lines = actions.iter().map(ToString::to_string).collect();
    for ((i, _), outcome) in jobs.iter().zip(outcomes) {
        let action = &actions[*i];
        done.lines[*i] = match outcome? {
            Enqueued::Created(ids) | Enqueued::Duplicate(ids) => match ids.first() {
                Some(id) => format!("{action} (job {id})"),
                None => format!("{action} (nothing to do)"),
            },
            Enqueued::Refused(why) => format!("{action}: refused: {why}"),
        };
    }
    Ok(done)
}

fn identity(app: &App, row: &EphemeralRow) -> Option<Identity> {
    let template = template(app, row)?;
    Some(Identity {
        template: template.name.clone(),
        env: Name::parse(&row.env).ok()?,
        slug: row.slug().to_owned(),
        hostname: row.hostname.clone(),
    })
}

#[cfg(test)]
mod tests;

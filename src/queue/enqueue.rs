//! Enqueue through the group commit ([`super::batch`]): the requests pending meanwhile are
//! stored in **one transaction**.
//!
//! A batch is a handful of statements whatever its size: the deliveries in one `INSERT ..
//! RETURNING` (the rows a redelivery conflicts with are not returned: those requests are
//! duplicates), the holds in one read, the jobs and their first events each in one `INSERT ..
//! SELECT` over a JSON array (one SQL text for any batch size, so the prepared statement is
//! reused), one superseding `UPDATE` for all of the batch's environments. Ephemeral
//! environments' rows are read in one query, followed in memory through the batch's jobs (a
//! push then a teardown of one environment ends as the two requests one by one would) and
//! written in one `UPDATE`; only a new environment costs a statement of its own (its `INSERT`).
//!
//! A teardown of an ephemeral environment whose teardown is already queued or running (a
//! deleted branch arrives as a `push` and as a `delete` event) stores no second job: its request
//! is answered with the first one's id.
//!
//! Each request keeps its own outcome: one refused (a hold, a branch conflict) stores nothing,
//! not even its delivery, and does not disturb the others. An error of the database fails the
//! whole batch (nothing of it is committed) and every request in it hears that error.

use std::collections::HashMap;

use serde::Serialize;

use super::{Delivery, Enqueued, NOTIFY_CHANNEL, NewJob, Queue, json, json_rows};
use crate::domain::{GitRef, ReleaseId, Sha};
use crate::store::{
    Backend, DELIVERY_JOBS, EnvState, HELD_LOCKS, JobKind, JobState, Lock, Statement, StoreError,
    WriteTx, now_ms, on_pool,
};

/// The most requests one transaction carries; more wait for the next.
pub(super) const MAX_BATCH: usize = 256;

/// A request to enqueue, as it waits for its batch.
#[derive(Debug)]
pub(super) struct Pending {
    delivery: Option<OwnedDelivery>,
    jobs: Vec<NewJob>,
}

#[derive(Debug)]
struct OwnedDelivery {
    id: String,
    source: String,
    event: String,
}

impl Pending {
    fn delivery(&self) -> Option<Delivery<'_>> {
        self.delivery.as_ref().map(|d| Delivery {
            id: &d.id,
            source: &d.source,
            event: &d.event,
        })
    }
}

impl Queue {
    /// Stores `jobs` (and `delivery`, if any) atomically: all of them or, when refused, nothing.
    /// A delivery seen before returns the jobs it created then. The answer comes after the
    /// commit of the batch this request went into (see the module's documentation).
    pub async fn enqueue(
        &self,
        delivery: Option<Delivery<'_>>,
        jobs: &[NewJob],
    ) -> Result<Enqueued, StoreError> {
        let pending = Pending {
            delivery: delivery.map(|d| OwnedDelivery {
                id: d.id.to_owned(),
                source: d.source.to_owned(),
                event: d.event.to_owned(),
            }),
            jobs: jobs.to_vec(),
        };
        let queue = self.clone();
        self.batches
            .enqueue
            .submit(pending, move |batch| queue.clone().write_batch(batch))
            .await
    }

    /// Stores a batch in one transaction; one outcome per request, in order.
    async fn write_batch(self, requests: Vec<Pending>) -> Result<Vec<Enqueued>, StoreError> {
        let requests = &requests[..];
        let now = now_ms();
        let backend = self.store.backend();
        let rows = json_rows(backend);
        let mut outcomes: Vec<Option<Enqueued>> = (0..requests.len()).map(|_| None).collect();
        // A second request of this batch with a delivery id an earlier one has: it gets the
        // earlier one's outcome once that is known.
        let mut first_with: HashMap<&str, usize> = HashMap::new();
        let mut repeat_of: Vec<Option<usize>> = vec![None; requests.len()];
        let mut fresh: Vec<(&str, &str, &str)> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            if let Some(d) = r.delivery() {
                match first_with.get(d.id) {
                    Some(&first) => repeat_of[i] = Some(first),
                    None => {
                        first_with.insert(d.id, i);
                        fresh.push((d.id, d.source, d.event));
                    }
                }
            }
        }
        on_pool!(self.store, pool => {
            let mut tx = WriteTx::begin(pool).await?;
            // Concurrent deliveries of one id from another replica: this insert waits for its
            // transaction, then skips the row, and the jobs it committed are read below.
            // The stored ones, with the number their jobs find them by.
            let inserted: HashMap<String, i64> = if fresh.is_empty() {
                HashMap::new()
            } else {
                let sql = tx.first(format!(
                    "INSERT INTO deliveries (id, source, event, received_at) \
                     SELECT value ->> 0, value ->> 1, value ->> 2, $2 FROM {rows} WHERE true \
                     ON CONFLICT (id) DO NOTHING RETURNING id, seq"
                ));
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(json(&fresh)?)
                    .bind(now)
                    .fetch_all(tx.conn().await?)
                    .await?
                    .into_iter()
                    .collect()
            };
            for (i, r) in requests.iter().enumerate() {
                if let Some(d) = r.delivery()
                    && first_with.get(d.id) == Some(&i)
                    && !inserted.contains_key(d.id)
                {
                    let ids: Vec<i64> = sqlx::query_scalar(DELIVERY_JOBS)
                        .bind(d.id)
                        .fetch_all(tx.conn().await?)
                        .await?;
                    outcomes[i] = Some(Enqueued::Duplicate(ids));
                }
            }

            // The statements whose results are not read, sent with the commit.
            let mut tail = Vec::new();
            // Human holds, all at once (a handful of rows at most).
            let holds = requests
                .iter()
                .flat_map(|r| &r.jobs)
                .any(|j| matches!(j.kind, JobKind::Deploy | JobKind::Rollback));
            let held: HashMap<String, Lock> = if holds {
                sqlx::query_as::<_, Lock>(HELD_LOCKS)
                    .bind(now)
                    .fetch_all(tx.conn().await?)
                    .await?
                    .into_iter()
                    .map(|l| (format!("{}/{}", l.app, l.env), l))
                    .collect()
            } else {
                HashMap::new()
            };

            // The batch's ephemeral environments, read at once and then kept as the batch's own
            // jobs change them (`envs`); the changes are written in one statement at the end
            // (`touched`), so a push storm or a cleanup's teardowns cost no statement per job.
            let lanes: Vec<(&str, &str)> = requests
                .iter()
                .flat_map(|r| &r.jobs)
                .filter(|j| j.ephemeral.is_some())
                .map(|j| (j.app.as_str(), j.env.as_str()))
                .collect();
            let mut envs: HashMap<String, (i64, String, EnvState)> = if lanes.is_empty() {
                HashMap::new()
            } else {
                let sql = format!(
                    "SELECT id, app, env, branch, state FROM ephemeral_envs \
                     WHERE state <> 'gone' AND (app, env) IN (SELECT value ->> 0, value ->> 1 FROM {rows})"
                );
                sqlx::query_as::<_, (i64, String, String, String, EnvState)>(sqlx::AssertSqlSafe(sql))
                    .bind(json(&lanes)?)
                    .fetch_all(tx.conn().await?)
                    .await?
                    .into_iter()
                    .map(|(id, app, env, branch, state)| (format!("{app}/{env}"), (id, branch, state)))
                    .collect()
            };
            let mut touched: HashMap<i64, EnvChange> = HashMap::new();
            let mut planned: Vec<Planned<'_>> = Vec::new();
            let mut refused: Vec<&str> = Vec::new();
            // Teardowns asked for again while one is on its way (a deleted branch is both a
            // `push` and a `delete` event): the request is answered with that job's id. Stored
            // ones by id; ones of this batch by their place in `planned`.
            let mut tearing: HashMap<String, usize> = HashMap::new();
            let mut joined: Vec<(usize, usize)> = Vec::new();
            for (i, r) in requests.iter().enumerate() {
                if outcomes[i].is_some() || repeat_of[i].is_some() {
                    continue;
                }
                // First decide, then write: a refused request must leave nothing behind.
                let mut decided = Vec::with_capacity(r.jobs.len());
                let mut refusal = None;
                for job in &r.jobs {
                    let lane = format!("{}/{}", job.app, job.env);
                    let lock = if matches!(job.kind, JobKind::Deploy | JobKind::Rollback) {
                        held.get(&lane)
                    } else {
                        None
                    };
                    if let Some(lock) = lock
                        && !job.is_automatic()
                    {
                        refusal = Some(format!("{}; it must be unlocked first", lock.describe()));
                        break;
                    }
                    let existing = match (lock, &job.ephemeral) {
                        (None, Some(_)) => envs.get(&lane).cloned(),
                        _ => None,
                    };
                    if let (Some((_, branch, _)), Some(e)) = (&existing, &job.ephemeral)
                        && branch != e.branch.as_str()
                    {
                        refusal = Some(format!(
                            "environment {} already belongs to branch {branch}",
                            job.env
                        ));
                        break;
                    }
                    decided.push((job, lane, lock, existing));
                }
                if let Some(why) = refusal {
                    outcomes[i] = Some(Enqueued::Refused(why));
                    if let Some(d) = r.delivery() {
                        refused.push(d.id);
                    }
                    continue;
                }
                let mut created = Vec::new();
                for (job, lane, lock, existing) in decided {
                    if let (None, Some(e)) = (lock, &job.ephemeral) {
                        if job.kind == JobKind::Teardown {
                            if let Some(&k) = tearing.get(&lane) {
                                joined.push((i, k));
                                continue;
                            }
                            if let Some((_, _, state)) = &existing
                                && *state == EnvState::TearingDown
                            {
                                let on_its_way: Option<i64> = sqlx::query_scalar(
                                    "SELECT id FROM jobs WHERE lane = $1 AND kind = 'teardown' \
                                     AND state IN ('queued', 'running') ORDER BY id DESC LIMIT 1",
                                )
                                .bind(&lane)
                                .fetch_optional(tx.conn().await?)
                                .await?;
                                if let Some(id) = on_its_way {
                                    created.push(id);
                                    continue;
                                }
                            }
                        }
                        match (job.kind, existing) {
                            (JobKind::Deploy, None) => {
                                let id: i64 = sqlx::query_scalar(
                                    "INSERT INTO ephemeral_envs (app, template, env, branch, \
                                     hostname, state, last_push_at, created_at, updated_at) \
                                     VALUES ($1, $2, $3, $4, $5, 'provisioning', $6, $6, $6) \
                                     RETURNING id",
                                )
                                .bind(job.app.as_str())
                                .bind(e.template.as_str())
                                .bind(job.env.as_str())
                                .bind(e.branch.as_str())
                                .bind(&e.hostname)
                                .bind(now)
                                .fetch_one(tx.conn().await?)
                                .await?;
                                envs.insert(
                                    lane.clone(),
                                    (id, e.branch.to_string(), EnvState::Provisioning),
                                );
                            }
                            (JobKind::Deploy, Some((id, branch, state))) => {
                                // A push during a teardown brings the environment back once
                                // the teardown is done.
                                let after_teardown =
                                    touched.get(&id).is_some_and(|c| c.last == Last::TearDown);
                                touched.insert(
                                    id,
                                    EnvChange {
                                        pushed: true,
                                        last: if after_teardown { Last::Revive } else { Last::Push },
                                    },
                                );
                                let state = if state == EnvState::TearingDown {
                                    EnvState::Provisioning
                                } else {
                                    state
                                };
                                envs.insert(lane.clone(), (id, branch, state));
                            }
                            (_, Some((id, branch, _))) => {
                                let pushed = touched.get(&id).is_some_and(|c| c.pushed);
                                touched.insert(
                                    id,
                                    EnvChange {
                                        pushed,
                                        last: Last::TearDown,
                                    },
                                );
                                envs.insert(
                                    lane.clone(),
                                    (id, branch, EnvState::TearingDown),
                                );
                            }
                            // Nothing exists to tear down.
                            (_, None) => continue,
                        }
                    }
                    if job.kind == JobKind::Teardown && job.ephemeral.is_some() {
                        tearing.insert(lane.clone(), planned.len());
                    }
                    planned.push(Planned {
                        request: i,
                        job,
                        lane,
                        // Stored above: a request whose delivery was not is a duplicate.
                        delivery: r
                            .delivery()
                            .and_then(|d| inserted.get(d.id).map(|&seq| (d.id, seq))),
                        lock,
                    });
                }
                outcomes[i] = Some(Enqueued::Created(created));
            }

            if !touched.is_empty() {
                let changes: Vec<(i64, &str, bool)> = touched
                    .iter()
                    .map(|(id, c)| (*id, c.last.as_str(), c.pushed))
                    .collect();
                let sql = format!(
                    "UPDATE ephemeral_envs SET updated_at = $2, \
                     state = CASE c.last WHEN 'teardown' THEN 'tearing_down' \
                       WHEN 'revive' THEN 'provisioning' \
                       ELSE CASE ephemeral_envs.state WHEN 'tearing_down' THEN 'provisioning' \
                         ELSE ephemeral_envs.state END END, \
                     last_push_at = CASE WHEN c.pushed THEN $2 ELSE last_push_at END, \
                     warned_at = CASE WHEN c.pushed THEN NULL ELSE warned_at END \
                     FROM (SELECT CAST(value ->> 0 AS BIGINT) AS id, value ->> 1 AS last, \
                       CAST(value ->> 2 AS BOOLEAN) AS pushed FROM {rows}) AS c \
                     WHERE ephemeral_envs.id = c.id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(json(&changes)?)
                    .bind(now)
                    .execute(tx.conn().await?)
                    .await?;
            }
            if !planned.is_empty() {
                // Each job's state, and the approvals it waits for.
                let decided: Vec<_> = planned
                    .iter()
                    .map(|p| {
                        let job = p.job;
                        let approval = job
                            .approval
                            .filter(|_| matches!(job.kind, JobKind::Deploy | JobKind::Rollback));
                        let state = match (p.lock, approval) {
                            (Some(_), _) => JobState::Skipped,
                            (None, Some(_)) => JobState::AwaitingApproval,
                            (None, None) => JobState::Queued,
                        };
                        (state, approval)
                    })
                    .collect();
                let jobs: Vec<JobRow<'_>> = planned
                    .iter()
                    .zip(&decided)
                    .map(|(p, (state, approval))| {
                        let job = p.job;
                        JobRow(
                            job.kind.as_str(),
                            job.app.as_str(),
                            job.env.as_str(),
                            &p.lane,
                            job.git_ref.as_ref().map_or("", GitRef::as_str),
                            job.sha.as_ref().map_or("", Sha::as_str),
                            &job.requested_by,
                            job.source,
                            p.delivery.map(|(id, _)| id),
                            p.delivery.map(|(_, seq)| seq),
                            state.as_str(),
                            job.target_release.as_ref().map(ReleaseId::as_str),
                            p.lock.map(|_| now),
                            approval.map_or(0, |(n, _)| n),
                            approval.map(|(_, within)| now + within.as_millis() as i64),
                        )
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO jobs (kind, app, env, lane, git_ref, sha, requested_by, \
                     source, delivery_id, delivery_seq, state, max_attempts, created_at, \
                     target_release, finished_at, approvals_needed, approve_by) \
                     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                     value ->> 5, value ->> 6, value ->> 7, value ->> 8, \
                     CAST(value ->> 9 AS BIGINT), value ->> 10, $2, $3, value ->> 11, \
                     CAST(value ->> 12 AS BIGINT), CAST(value ->> 13 AS BIGINT), \
                     CAST(value ->> 14 AS BIGINT) FROM {rows} RETURNING id"
                );
                // The rows go in in the array's order, each taking the next id of the table's
                // sequence, so the ids in ascending order are the array's (the order `RETURNING`
                // lists them in is not defined).
                let mut ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(json(&jobs)?)
                    .bind(i64::from(self.max_attempts))
                    .bind(now)
                    .fetch_all(tx.conn().await?)
                    .await?;
                ids.sort_unstable();
                let mut events = Vec::with_capacity(planned.len() * 2);
                // Per environment: the newest job that replaces older queued deploys.
                let mut supersede: HashMap<String, (i64, JobKind, bool)> = HashMap::new();
                for &(request, k) in &joined {
                    if let Some(Enqueued::Created(created)) = &mut outcomes[request] {
                        created.push(ids[k]);
                    }
                }
                for ((p, id), (_, approval)) in planned.into_iter().zip(ids).zip(decided) {
                    let job = p.job;
                    events.push((id, JobState::Queued.as_str(), job.describe()));
                    if let Some(lock) = p.lock {
                        events.push((id, JobState::Skipped.as_str(), format!("skipped: {}", lock.describe())));
                    } else {
                        if let Some((n, within)) = approval {
                            let message = format!(
                                "awaiting {n} approval(s) within {}",
                                humantime::format_duration(within)
                            );
                            events.push((id, JobState::AwaitingApproval.as_str(), message));
                        }
                        if job.supersede {
                            supersede.insert(p.lane, (id, job.kind, job.ephemeral.is_some()));
                        }
                    }
                    if let Some(Enqueued::Created(created)) = &mut outcomes[p.request] {
                        created.push(id);
                    }
                }
                tail.push(Statement {
                    sql: format!(
                        "INSERT INTO job_events (job_id, at, state, message) \
                         SELECT CAST(value ->> 0 AS BIGINT), $2, value ->> 1, value ->> 2 FROM {rows}"
                    ),
                    args: vec![json(&events)?.into(), now.into()],
                });
                if !supersede.is_empty() {
                    // The newest push wins: older queued deploys of the environment would only
                    // be overwritten (the `jobs_finished` trigger records why). A person's
                    // queued deploy of a configured environment stays. One statement for every
                    // environment of the batch (see [`supersede_sql`]).
                    let lanes: Vec<(&str, i64, &str, bool)> = supersede
                        .iter()
                        .map(|(lane, (id, kind, ephemeral))| {
                            (lane.as_str(), *id, kind.as_str(), *ephemeral)
                        })
                        .collect();
                    tail.push(Statement {
                        sql: supersede_sql(rows),
                        args: vec![json(&lanes)?.into(), now.into()],
                    });
                }
                if let Backend::Postgres(_) = backend {
                    // Wakes idle workers of other replicas at commit (they also poll, should
                    // this be lost).
                    tail.push(Statement {
                        sql: "SELECT pg_notify($1, '')".into(),
                        args: vec![NOTIFY_CHANNEL.into()],
                    });
                }
            }
            for id in refused {
                tail.push(Statement {
                    sql: "DELETE FROM deliveries WHERE id = $1".into(),
                    args: vec![id.into()],
                });
            }
            tx.commit_with(tail).await?;
            Ok::<(), StoreError>(())
        })?;
        for (repeat, first) in repeat_of.into_iter().enumerate() {
            let Some(first) = first else { continue };
            outcomes[repeat] = match &outcomes[first] {
                Some(Enqueued::Created(ids) | Enqueued::Duplicate(ids)) => {
                    Some(Enqueued::Duplicate(ids.clone()))
                }
                other => other.clone(),
            };
        }
        if outcomes
            .iter()
            .any(|o| matches!(o, Some(Enqueued::Created(_))))
        {
            self.wake.notify_waiters();
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Enqueued::Created(Vec::new())))
            .collect())
    }
}

/// Supersedes, for each `[lane, job id, kind, ephemeral]` of the JSON array `$1` (the rows
/// `rows` reads, [`super::json_rows`]), the deploys of that lane older than that job that wait
/// (queued, or for approval): those slipway queued itself, or all of them in an ephemeral
/// environment. `$2` is the time. The candidates of each lane come from the two partial
/// indexes (`state IN (..)` matches neither, and the planner would then walk every older job
/// by id; a test reads SQLite's plan).
pub(super) fn supersede_sql(rows: &str) -> String {
    format!(
        "UPDATE jobs SET state = 'superseded', finished_at = $2, \
         summary = 'superseded by job ' || s.by_job || ' (' || s.by_kind || ')' \
         FROM (SELECT value ->> 0 AS lane, CAST(value ->> 1 AS BIGINT) AS by_job, \
           value ->> 2 AS by_kind, CAST(value ->> 3 AS BOOLEAN) AS ephemeral FROM {rows}) AS s \
         WHERE jobs.id IN (\
           SELECT q.id FROM jobs q WHERE q.lane = s.lane AND q.state = 'queued' AND q.id < s.by_job \
           UNION ALL \
           SELECT a.id FROM jobs a WHERE a.state = 'awaiting_approval' AND a.lane = s.lane \
             AND a.id < s.by_job) \
         AND jobs.kind = 'deploy' \
         AND (s.ephemeral OR jobs.source IN ('github', 'release', 'reconcile'))"
    )
}

/// A job of the batch that will be stored.
struct Planned<'a> {
    /// Its request's index in the batch.
    request: usize,
    job: &'a NewJob,
    lane: String,
    /// Its delivery's id and number.
    delivery: Option<(&'a str, i64)>,
    /// The hold that makes it `skipped`.
    lock: Option<&'a Lock>,
}

/// A `jobs` row as the batch's JSON array carries it: an array read by position
/// (`value ->> 0`), not an object, because SQLite's JSON functions find an array element faster
/// than an object's key and the row is shorter (the batch's SQLite thread is the one every
/// webhook waits for). The order is the `INSERT`'s.
#[derive(Serialize)]
struct JobRow<'a>(
    &'static str,    // 0 kind
    &'a str,         // 1 app
    &'a str,         // 2 env
    &'a str,         // 3 lane
    &'a str,         // 4 git_ref
    &'a str,         // 5 sha
    &'a str,         // 6 requested_by
    &'a str,         // 7 source
    Option<&'a str>, // 8 delivery_id
    Option<i64>,     // 9 delivery_seq
    &'static str,    // 10 state
    Option<&'a str>, // 11 target_release
    Option<i64>,     // 12 finished_at
    u32,             // 13 approvals_needed
    Option<i64>,     // 14 approve_by
);

/// What a batch's jobs did to an ephemeral environment's row, applied by one `UPDATE` to the
/// row as it is then.
#[derive(Debug, Clone, Copy)]
struct EnvChange {
    /// A push of the batch: its time is recorded and a pending idle warning dropped.
    pushed: bool,
    /// The batch's last job of the environment decides its state.
    last: Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    /// A push: an environment being torn down comes back once the teardown is done.
    Push,
    /// A push after a teardown of this batch: the environment comes back.
    Revive,
    /// A teardown (a deleted branch, a cleanup).
    TearDown,
}

impl Last {
    fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Revive => "revive",
            Self::TearDown => "teardown",
        }
    }
}

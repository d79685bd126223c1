//! `[[schedules]]`: at each cron tick, queue the schedule's housekeeping job for every app with
//! ephemeral environments. The scheduler only queues; workers do the work.
//!
//! Every replica runs the same clock and the same schedules, and every one of them tries each
//! tick: the tick is a delivery (`schedule:<name>:<unix time>`), so the queue's delivery dedup
//! lets exactly one replica's jobs in, in one transaction; the others find it done.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Schedule};
use crate::housekeeping;
use crate::queue::{Delivery, Enqueued, Queue};

/// Runs until `shutdown`; returns at once when there are no schedules.
pub async fn run(queue: Queue, config: Arc<Config>, shutdown: CancellationToken) {
    if config.schedules.is_empty() {
        return;
    }
    let mut after = Utc::now();
    loop {
        let Some((at, due)) = next_ticks(&config.schedules, &after) else {
            tracing::warn!("no schedule has a next tick; the scheduler stops");
            return;
        };
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
        for schedule in due {
            if let Err(err) = fire(&queue, &config, schedule, at).await {
                tracing::error!(schedule = %schedule.name, error = %err, "scheduled tick not queued");
            }
        }
        after = at;
    }
}

/// The earliest tick after `after`, and every schedule due then.
pub fn next_ticks<'a>(
    schedules: &'a [Schedule],
    after: &DateTime<Utc>,
) -> Option<(DateTime<Utc>, Vec<&'a Schedule>)> {
    let next: Vec<(DateTime<Utc>, &Schedule)> = schedules
        .iter()
        .filter_map(|s| Some((s.cron.find_next_occurrence(after, false).ok()?, s)))
        .collect();
    let at = next.iter().map(|(t, _)| *t).min()?;
    Some((
        at,
        next.into_iter()
            .filter(|(t, _)| *t == at)
            .map(|(_, s)| s)
            .collect(),
    ))
}

/// Queues `schedule`'s tick at `at` unless another replica did.
async fn fire(
    queue: &Queue,
    config: &Config,
    schedule: &Schedule,
    at: DateTime<Utc>,
) -> Result<(), crate::store::StoreError> {
    let jobs: Vec<_> = config
        .apps
        .values()
        .filter(|app| !app.ephemeral.is_empty())
        .map(|app| housekeeping::job(app, schedule.job, &schedule.name, "schedule"))
        .collect();
    let id = format!("schedule:{}:{}", schedule.name, at.timestamp());
    let delivery = Delivery {
        id: &id,
        source: "schedule",
        event: schedule.job.as_str(),
    };
    if let Enqueued::Created(ids) = queue.enqueue(Some(delivery), &jobs).await? {
        tracing::info!(schedule = %schedule.name, tick = %at, jobs = ?ids, "scheduled tick queued");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JobKind;

    fn schedule(name: &str, cron: &str) -> Schedule {
        Schedule {
            name: name.into(),
            cron: croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Optional)
                .build()
                .parse(cron)
                .unwrap(),
            job: JobKind::Cleanup,
        }
    }

    #[test]
    fn the_earliest_tick_wins_and_ties_fire_together() {
        let s = [
            schedule("hourly", "0 * * * *"),
            schedule("quarter", "*/15 * * * *"),
            schedule("sunday", "0 3 * * 0"),
        ];
        let after: DateTime<Utc> = "2026-11-22T10:07:30Z".parse().unwrap();
        let (at, due) = next_ticks(&s, &after).unwrap();
        assert_eq!(at, "2026-11-22T10:15:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(
            due.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["quarter"]
        );
        let (at, due) = next_ticks(&s, &"2026-11-22T10:45:00Z".parse().unwrap()).unwrap();
        assert_eq!(at, "2026-11-22T11:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(due.len(), 2);
        // Unix weekdays: 0 is Sunday (2026-11-22 is a Sunday).
        let (at, _) = next_ticks(&s[2..], &after).unwrap();
        assert_eq!(at, "2026-11-29T03:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert!(next_ticks(&[], &after).is_none());
    }
}

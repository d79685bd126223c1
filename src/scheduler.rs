//! `[[schedules]]`: at each cron tick, queue the schedule's housekeeping job for every app with
//! ephemeral environments. The scheduler only queues; workers do the work.
//!
//! Every replica runs the same clock and the same schedules, and every one of them tries each
//! tick: the tick is a delivery (`schedule:<name>:<unix time>`), so the queue's delivery dedup
//! lets exactly one replica's jobs in, in one transaction; the others find it done.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Config, Schedule};
use crate::housekeeping;
use crate::queue::{Delivery, Enqueued, Queue};

/// Runs until `shutdown`; returns at once when there are no schedules.
pub async fn run(
    queue: Queue,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    if config.schedules.is_empty() {
        return;
    }
    let mut ticks = Ticks::new(&config.schedules, clock.now());
    loop {
        let wait = match ticks.poll(clock.now()) {
            Next::Fire(due) => {
                for (schedule, at) in due {
                    if let Err(err) = fire(&queue, &config, schedule, at).await {
                        tracing::error!(schedule = %schedule.name, error = %err, "scheduled tick not queued");
                    }
                }
                continue;
            }
            Next::Wait(wait) => wait,
            Next::Never => {
                tracing::warn!("no schedule has a next tick; the scheduler stops");
                return;
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// The ticks of `schedules` from a start time on, as a clock reaches them.
pub struct Ticks<'a> {
    schedules: &'a [Schedule],
    /// When the last poll that fired looked (or the start): later ticks are still to come.
    after: DateTime<Utc>,
}

/// What the scheduler does next.
#[derive(Debug)]
pub enum Next<'a> {
    /// Queue each schedule's jobs for its tick at that time (now, or missed).
    Fire(Vec<(&'a Schedule, DateTime<Utc>)>),
    /// Nothing is due yet: look again after this long.
    Wait(Duration),
    /// No schedule ever ticks again.
    Never,
}

impl<'a> Ticks<'a> {
    pub fn new(schedules: &'a [Schedule], start: DateTime<Utc>) -> Self {
        Self {
            schedules,
            after: start,
        }
    }

    /// What is due at `now`: every schedule with a tick since the last poll that fired. A
    /// schedule that missed several ticks (the process was busy or suspended) fires once, for
    /// the first of them: housekeeping looks at the present anyway, so one pass catches up.
    pub fn poll(&mut self, now: DateTime<Utc>) -> Next<'a> {
        let next: Vec<(&Schedule, DateTime<Utc>)> = self
            .schedules
            .iter()
            .filter_map(|s| Some((s, s.cron.find_next_occurrence(&self.after, false).ok()?)))
            .collect();
        let Some(soonest) = next.iter().map(|(_, at)| *at).min() else {
            return Next::Never;
        };
        if soonest > now {
            return Next::Wait((soonest - now).to_std().unwrap_or_default());
        }
        self.after = now;
        Next::Fire(next.into_iter().filter(|(_, at)| *at <= now).collect())
    }
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

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    /// What `next` says, in words: which schedules fire for which tick, or how long it waits.
    fn said(next: Next<'_>) -> String {
        match next {
            Next::Fire(due) => {
                let due: Vec<String> = due
                    .iter()
                    .map(|(s, at)| format!("{} {}", s.name, at.format("%a %H:%M")))
                    .collect();
                format!("fire {}", due.join(", "))
            }
            Next::Wait(wait) => format!("wait {}s", wait.as_secs()),
            Next::Never => "never".into(),
        }
    }

    #[test]
    fn each_tick_fires_once_when_the_clock_reaches_it_and_ties_fire_together() {
        let s = [
            schedule("hourly", "0 * * * *"),
            schedule("quarter", "*/15 * * * *"),
            schedule("sunday", "0 3 * * 0"),
        ];
        let mut ticks = Ticks::new(&s, at("2026-11-22T10:07:30Z"));
        assert_eq!(said(ticks.poll(at("2026-11-22T10:07:30Z"))), "wait 450s");
        assert_eq!(said(ticks.poll(at("2026-11-22T10:14:59Z"))), "wait 1s");
        assert_eq!(
            said(ticks.poll(at("2026-11-22T10:15:00Z"))),
            "fire quarter Sun 10:15"
        );
        // Handed out once: the same instant now waits for the next one.
        assert_eq!(said(ticks.poll(at("2026-11-22T10:15:00Z"))), "wait 900s");
        assert_eq!(
            said(ticks.poll(at("2026-11-22T10:30:00Z"))),
            "fire quarter Sun 10:30"
        );
        assert_eq!(
            said(ticks.poll(at("2026-11-22T10:45:00.1Z"))),
            "fire quarter Sun 10:45"
        );
        assert_eq!(
            said(ticks.poll(at("2026-11-22T11:00:00.2Z"))),
            "fire hourly Sun 11:00, quarter Sun 11:00"
        );
        // Unix weekdays: 0 is Sunday (2026-11-22 is a Sunday).
        let mut weekly = Ticks::new(&s[2..], at("2026-11-22T10:07:30Z"));
        assert_eq!(
            said(weekly.poll(at("2026-11-22T10:07:30Z"))),
            "wait 579150s"
        );
        assert_eq!(
            said(Ticks::new(&[], at("2026-11-22T10:07:30Z")).poll(at("2026-11-22T10:07:30Z"))),
            "never"
        );
    }

    #[test]
    fn missed_ticks_fire_once_each_schedule_then_it_waits_again() {
        let s = [
            schedule("hourly", "0 * * * *"),
            schedule("quarter", "*/15 * * * *"),
        ];
        let mut ticks = Ticks::new(&s, at("2026-11-22T10:07:30Z"));
        // Suspended for a day: each schedule fires for its first missed tick, once.
        let late = at("2026-11-23T10:20:00Z");
        assert_eq!(
            said(ticks.poll(late)),
            "fire hourly Sun 11:00, quarter Sun 10:15"
        );
        assert_eq!(said(ticks.poll(late)), "wait 600s");
    }

    #[tokio::test]
    async fn a_tick_queues_one_job_per_app_once_across_replicas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway.toml");
        std::fs::write(
            &path,
            format!(
                "[github]\nwebhook_secret = \"scheduler-test-secret\"\n\
                 [database]\nurl = \"sqlite://{}/s.db\"\n\
                 [[schedules]]\nname = \"nightly\"\ncron = \"0 3 * * *\"\njob = \"cleanup\"\n\
                 [apps.shop]\nrepo = \"acme/shop\"\nclone_url = \"file:///srv/git/shop.git\"\n\
                 [apps.shop.ephemeral.demo]\nbranches = \"demo/*\"\nhostname = \"demo-{{slug}}.example.test\"\n\
                 ports = \"20000-20099\"\nhosts = [\"local\"]\ndeploy_path = \"/srv/demo\"\n\
                 [apps.site]\nrepo = \"acme/site\"\nclone_url = \"file:///srv/git/site.git\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        let store = crate::store::Store::open(&config.database.url)
            .await
            .unwrap();
        let queue = Queue::new(store.clone(), 3);
        let mut ticks = Ticks::new(&config.schedules, at("2026-11-22T02:59:00Z"));
        let Next::Fire(due) = ticks.poll(at("2026-11-22T03:00:00Z")) else {
            panic!("the 03:00 tick is due at 03:00");
        };
        let [(schedule, when)] = due[..] else {
            panic!("one schedule is due: {due:?}");
        };
        // Two replicas fire the same tick: one job, for the only app with ephemeral environments.
        for _ in 0..2 {
            fire(&queue, &config, schedule, when).await.unwrap();
        }
        let jobs = store
            .jobs(&crate::store::JobFilter::default(), 100)
            .await
            .unwrap();
        let got: Vec<_> = jobs
            .iter()
            .map(|j| {
                (
                    j.kind,
                    j.app.as_str(),
                    j.env.as_str(),
                    j.delivery_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [(
                JobKind::Cleanup,
                "shop",
                "housekeeping",
                Some("schedule:nightly:1795316400")
            )]
        );
    }
}

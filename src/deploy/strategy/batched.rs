//! All-at-once, rolling and canary: prepare every host in parallel (nothing switches unless all
//! are ready), migrate once, then switch batch by batch, health-checking each batch before the
//! next. A host that fails its check is switched back; more failures than `max_failures` (or any
//! failing canary) stop the deploy and switch back every host already switched.

use std::time::Duration;

use futures::future::join_all;

use super::super::{Failure, Host, Run, Success};
use crate::domain::ReleaseId;

/// Host indexes grouped into batches, and what a batch may cost.
#[derive(Debug, PartialEq, Eq)]
pub struct Batches {
    pub batches: Vec<Vec<usize>>,
    pub max_failures: usize,
    /// Canary: how long the first batch is watched before the rest follow.
    pub observe: Option<Duration>,
}

impl Batches {
    /// `first` hosts, then batches of `rest` hosts.
    pub fn new(
        hosts: usize,
        first: usize,
        rest: usize,
        max_failures: usize,
        observe: Option<Duration>,
    ) -> Self {
        let first = first.clamp(1, hosts.max(1));
        let mut batches = vec![(0..first.min(hosts)).collect::<Vec<_>>()];
        let remaining: Vec<usize> = (first.min(hosts)..hosts).collect();
        batches.extend(remaining.chunks(rest.max(1)).map(<[usize]>::to_vec));
        batches.retain(|b| !b.is_empty());
        Self {
            batches,
            max_failures,
            observe,
        }
    }
}

pub async fn run(run: &Run<'_>, plan: Batches) -> Result<Success, Failure> {
    let previous = run.prepare_all().await?;
    if let Err(failure) = run.migrate_and_fence().await {
        run.discard().await;
        return Err(failure);
    }

    let port = run.env.health.as_ref().and_then(|h| h.port);
    let mut live: Vec<usize> = Vec::new();
    let mut failures = 0;
    let mut first_failure: Option<Failure> = None;
    let mut rolled_back = Vec::new();
    for (n, batch) in plan.batches.iter().enumerate() {
        let observe = if n == 0 { plan.observe } else { None };
        let outcomes = join_all(
            batch
                .iter()
                .map(|&i| switch_and_check(run, &run.hosts[i], &run.release, port, observe)),
        )
        .await;
        let mut bad = Vec::new();
        for (&i, outcome) in batch.iter().zip(outcomes) {
            match outcome {
                Ok(()) => live.push(i),
                Err(failure) => {
                    first_failure.get_or_insert(failure);
                    bad.push(i);
                }
            }
        }
        if !bad.is_empty() && run.env.auto_rollback {
            rolled_back.extend(roll_back(run, &bad, &previous, port).await);
        }
        failures += bad.len();
        let canary_failed = observe.is_some() && !bad.is_empty();
        if failures > plan.max_failures || canary_failed {
            if run.env.auto_rollback {
                rolled_back.extend(roll_back(run, &live, &previous, port).await);
            }
            let mut failure = first_failure.expect("a failure was recorded");
            failure.rolled_back = rolled_back;
            return Err(failure);
        }
    }
    Ok(Success {
        release: run.release.clone(),
        hosts: live
            .iter()
            .map(|&i| (run.hosts[i].name.clone(), None))
            .collect(),
    })
}

async fn switch_and_check(
    run: &Run<'_>,
    host: &Host,
    release: &ReleaseId,
    port: Option<u16>,
    observe: Option<Duration>,
) -> Result<(), Failure> {
    run.switch(host, release, None).await?;
    match port {
        Some(port) => run.health(host, port, observe).await,
        None => Ok(()),
    }
}

/// Switches `hosts` back and waits until each answers its health check again (the result is in
/// the log; a host that stays unhealthy on its old release needs a human either way).
async fn roll_back(
    run: &Run<'_>,
    hosts: &[usize],
    previous: &[Option<ReleaseId>],
    port: Option<u16>,
) -> Vec<String> {
    let targets: Vec<(&Host, &Option<ReleaseId>)> = hosts
        .iter()
        .map(|&i| (&run.hosts[i], &previous[i]))
        .collect();
    let done = run.roll_back(&targets).await;
    if let Some(port) = port {
        let rolled = run.hosts.iter().filter(|h| done.contains(&h.name));
        join_all(rolled.map(|h| run.health(h, port, None))).await;
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches() {
        assert_eq!(
            Batches::new(4, 4, 4, 0, None).batches,
            vec![vec![0, 1, 2, 3]]
        );
        assert_eq!(
            Batches::new(5, 2, 2, 1, None).batches,
            vec![vec![0, 1], vec![2, 3], vec![4]]
        );
        assert_eq!(
            Batches::new(4, 1, 2, 0, None).batches,
            vec![vec![0], vec![1, 2], vec![3]]
        );
        assert_eq!(Batches::new(1, 3, 3, 0, None).batches, vec![vec![0]]);
    }
}

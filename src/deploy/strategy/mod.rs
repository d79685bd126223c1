//! How a release reaches the fleet. `all_at_once`, `rolling` and `canary` are one algorithm with
//! different batches ([`batched`]); `blue_green` runs two slots per host behind a proxy
//! ([`blue_green`]). Deploys and rollbacks go through the same strategy: a rollback just
//! prepares by checking that the old release is still on every host instead of shipping one.

mod batched;
mod blue_green;

use super::{Failure, Run, Success};
use crate::config::Strategy;
use batched::Batches;

pub async fn run(run: &Run<'_>) -> Result<Success, Failure> {
    let hosts = run.hosts.len();
    match run.strategy() {
        Strategy::AllAtOnce => batched::run(run, Batches::new(hosts, hosts, hosts, 0, None)).await,
        Strategy::Rolling {
            batch,
            max_failures,
        } => {
            batched::run(
                run,
                Batches::new(hosts, *batch, *batch, *max_failures, None),
            )
            .await
        }
        Strategy::Canary {
            hosts: canaries,
            observe,
            batch,
        } => {
            batched::run(
                run,
                Batches::new(hosts, *canaries, *batch, 0, Some(*observe)),
            )
            .await
        }
        Strategy::BlueGreen(bg) => blue_green::run(run, bg).await,
    }
}

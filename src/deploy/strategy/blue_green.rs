//! Blue/green: every host runs two slots (`blue`, `green`), each on its own port, behind a proxy.
//! The new release starts in the idle slot and must pass its health check there before the proxy
//! is switched to it (upstream file from a template, config check, reload). The old slot keeps
//! serving in-flight requests for the drain period, then stops. If anything fails before the
//! switch, the idle slot is stopped again and the live slot never noticed.

use futures::future::join_all;

use super::super::{Failure, Host, INTERNAL_LIMITS, Run, Seg, Success, plan};
use crate::config::BlueGreen;
use crate::domain::ReleaseId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Blue,
    Green,
}

impl Slot {
    fn name(self) -> &'static str {
        match self {
            Slot::Blue => "blue",
            Slot::Green => "green",
        }
    }

    fn other(self) -> Slot {
        match self {
            Slot::Blue => Slot::Green,
            Slot::Green => Slot::Blue,
        }
    }

    fn port(self, bg: &BlueGreen) -> u16 {
        match self {
            Slot::Blue => bg.blue_port,
            Slot::Green => bg.green_port,
        }
    }
}

pub async fn run(run: &Run<'_>, bg: &BlueGreen) -> Result<Success, Failure> {
    let previous = run.prepare_all().await?;
    // The idle slot is the one not live; a host's first deploy goes to blue.
    let idle: Vec<Slot> = run
        .hosts
        .iter()
        .map(|h| match run.live_slot(h) {
            Some("blue") => Slot::Green,
            _ => Slot::Blue,
        })
        .collect();

    let started = join_all(
        run.hosts
            .iter()
            .zip(&idle)
            .map(|(host, &slot)| start_in(run, bg, host, slot, &run.release)),
    )
    .await;
    let ready = match started.into_iter().find_map(Result::err) {
        Some(failure) => Err(failure),
        None => run.migrate_and_fence().await,
    };
    if let Err(failure) = ready {
        // The new slots stop before their release directory goes.
        stop_slots(run, bg, &idle, &run.release).await;
        run.discard().await;
        return Err(failure);
    }

    let switched = join_all(
        run.hosts
            .iter()
            .zip(&idle)
            .map(|(host, &slot)| switch_to(run, bg, host, slot, &run.release)),
    )
    .await;
    if let Some(failure) = switched.iter().find_map(|r| r.as_ref().err()).cloned() {
        // Put every host that did switch back on its old slot, which is still running.
        let mut rolled_back = Vec::new();
        for (i, result) in switched.iter().enumerate() {
            let (host, slot) = (&run.hosts[i], idle[i]);
            if let (Ok(()), Some(old)) = (result, &previous[i])
                && switch_to(run, bg, host, slot.other(), old).await.is_ok()
            {
                rolled_back.push(host.name.clone());
            }
        }
        stop_slots(run, bg, &idle, &run.release).await;
        return Err(Failure {
            rolled_back,
            ..failure
        });
    }

    // The old slots drain, then stop. A host's first deploy has no old slot running; its stop
    // steps must cope (they do anyway: a stop of a stopped slot is the normal case after a crash).
    tokio::time::sleep(bg.drain).await;
    let old: Vec<Slot> = idle.iter().map(|s| s.other()).collect();
    stop_slots(run, bg, &old, &run.release).await;

    Ok(Success {
        release: run.release.clone(),
        hosts: run
            .hosts
            .iter()
            .zip(&idle)
            .map(|(h, s)| (h.name.clone(), Some(s.name())))
            .collect(),
    })
}

fn slot_vars(bg: &BlueGreen, slot: Slot) -> [(&'static str, String); 2] {
    [
        ("SLIPWAY_SLOT", slot.name().to_owned()),
        ("SLIPWAY_PORT", slot.port(bg).to_string()),
    ]
}

/// Stops whatever runs in `slot`, starts `release` there, and checks it on the slot's own port.
async fn start_in(
    run: &Run<'_>,
    bg: &BlueGreen,
    host: &Host,
    slot: Slot,
    release: &ReleaseId,
) -> Result<(), Failure> {
    // Stop whatever still runs in the slot, then start the release there: one round trip.
    let vars = slot_vars(bg, slot);
    let mut segments = run.step_segments("stop", &run.env.phases.stop, release, &vars);
    segments.extend(run.step_segments("start", &run.env.phases.start, release, &vars));
    run.chain(host, &segments, None, run.cancel).await?;
    run.health(host, slot.port(bg), None).await
}

/// Points `current` at `release` and the proxy at `slot`.
async fn switch_to(
    run: &Run<'_>,
    bg: &BlueGreen,
    host: &Host,
    slot: Slot,
    release: &ReleaseId,
) -> Result<(), Failure> {
    let content = bg
        .upstream_template
        .replace("{port}", &slot.port(bg).to_string())
        .replace("{slot}", slot.name());
    let script = plan::proxy_switch(&bg.upstream_file, &content, &bg.check, &bg.reload);
    let proxy = Seg::step(
        &format!("proxy -> {}", slot.name()),
        script,
        INTERNAL_LIMITS,
    );
    run.switch(host, release, Some(proxy)).await
}

/// Runs the stop steps for each host's given slot; best effort (failures are in the log).
async fn stop_slots(run: &Run<'_>, bg: &BlueGreen, slots: &[Slot], release: &ReleaseId) {
    join_all(run.hosts.iter().zip(slots).map(|(host, &slot)| {
        let vars = slot_vars(bg, slot);
        async move {
            let _ = run
                .steps(host, "stop", &run.env.phases.stop, release, &vars)
                .await;
        }
    }))
    .await;
}

//! Keeping a running job's lease, and stopping the job early: the heartbeat beside it, the
//! fence the deploy passes right before it switches, and [`Stop`], which says why a job was
//! stopped (shutdown, a person's cancel, or a lost lease).
//!
//! A cancel is a flag on the job's row (see `Queue::cancel`); the heartbeat and the fence read
//! it with the lease renewal, so it reaches the worker on whichever replica holds the job, one
//! heartbeat (a third of the lease) later at most. Stopping kills the step that runs (like a
//! shutdown) and never a switch: once the fence passed, the job switches and a cancel is too
//! late, so the job ends as it would have.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::deploy::Fence;
use crate::queue::{Beat, Lease, Queue};

/// How a running job is stopped early, and why it was.
#[derive(Default)]
pub(super) struct Stop {
    /// Stops the step that runs (its process group is killed); switches ignore it.
    pub(super) token: CancellationToken,
    /// Shutdown stopped the job: it goes back to the queue.
    interrupted: AtomicBool,
    /// Who asked to cancel the job, once the worker saw it before the switch.
    cancelled_by: Mutex<Option<String>>,
    /// The fence passed: the job switches now and is no longer cancelled.
    switching: AtomicBool,
}

impl Stop {
    pub(super) fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.token.cancel();
    }

    pub(super) fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Who cancelled the job, if it was stopped for that.
    pub(super) fn cancelled_by(&self) -> Option<String> {
        self.cancelled_by
            .lock()
            .expect("stop lock poisoned")
            .clone()
    }

    /// `by` asked to cancel the job: stop it, unless it is switching already.
    fn cancel(&self, by: String) {
        let mut cancelled_by = self.cancelled_by.lock().expect("stop lock poisoned");
        if self.switching.load(Ordering::SeqCst) || cancelled_by.is_some() {
            return;
        }
        tracing::info!(cancelled_by = %by, "cancel requested: stopping the job before the switch");
        *cancelled_by = Some(by);
        self.token.cancel();
    }

    /// The fence passed (unless a cancel came first): from now on a cancel is too late.
    fn switch(&self) -> bool {
        let cancelled_by = self.cancelled_by.lock().expect("stop lock poisoned");
        if cancelled_by.is_some() {
            return false;
        }
        self.switching.store(true, Ordering::SeqCst);
        true
    }
}

/// The deploy's fence: renews the lease right before the switch, and reads the cancel flag.
pub(super) struct LeaseFence<'a> {
    pub(super) queue: &'a Queue,
    pub(super) lease: &'a Lease,
    pub(super) duration: Duration,
    pub(super) stop: &'a Stop,
}

impl Fence for LeaseFence<'_> {
    fn still_ours(&self) -> BoxFuture<'_, bool> {
        async move {
            match self.queue.heartbeat(self.lease, self.duration).await {
                Ok(Beat::Ours) => self.stop.switch(),
                Ok(Beat::CancelRequested(by)) => {
                    self.stop.cancel(by);
                    self.stop.switch()
                }
                Ok(Beat::Lost) | Err(_) => false,
            }
        }
        .boxed()
    }
}

/// Renews the lease every third of it until aborted; stops the job if the lease was lost or
/// someone asked to cancel it.
pub(super) async fn heartbeat(queue: Queue, lease: Lease, duration: Duration, stop: Arc<Stop>) {
    let every = duration / 3;
    loop {
        tokio::time::sleep(every).await;
        match queue.heartbeat(&lease, duration).await {
            Ok(Beat::Ours) => {}
            // The lease stays ours while the job stops (it still cleans up after itself).
            Ok(Beat::CancelRequested(by)) => stop.cancel(by),
            Ok(Beat::Lost) => {
                tracing::warn!("lease lost: stopping the job before it switches anything");
                stop.token.cancel();
                return;
            }
            // A passing database error: try again next beat; the lease has slack for two misses.
            Err(err) => tracing::warn!(error = %err, "heartbeat failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_stops_the_job_until_its_switch_begins() {
        let stop = Stop::default();
        stop.cancel("bob via slack".into());
        assert!(stop.token.is_cancelled());
        // The fence then refuses the switch; a second cancel keeps the first asker.
        assert!(!stop.switch());
        stop.cancel("carol via slack".into());
        assert_eq!(stop.cancelled_by().as_deref(), Some("bob via slack"));
        assert!(!stop.interrupted());

        // Once the fence passed, a cancel is too late: the switch is never interrupted.
        let late = Stop::default();
        assert!(late.switch());
        late.cancel("bob via slack".into());
        assert!(!late.token.is_cancelled());
        assert_eq!(late.cancelled_by(), None);

        // Shutdown stops the job as well, for another reason.
        let shutdown = Stop::default();
        shutdown.interrupt();
        assert!(shutdown.token.is_cancelled() && shutdown.interrupted());
        assert_eq!(shutdown.cancelled_by(), None);
    }
}

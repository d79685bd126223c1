//! Group commit, the one way the queue's hot writes share round trips.
//!
//! A caller adds its request to a pending list and waits for its answer. One writer task at a
//! time takes everything pending (up to a cap) and writes it in one go — one transaction, or one
//! statement — then answers each request in order. Requests that arrive while a batch is being
//! written wait for the next one. Under load a batch carries many requests, so the fixed costs
//! (the transaction and its commit, each statement's round trip: on SQLite a hand-off to sqlx's
//! connection thread) are paid per batch, not per request; alone, a request is a batch of one
//! and waits for nobody.
//!
//! The writer is a task of its own, started by the request that found none at work: a caller
//! going away (a client hanging up) cannot abandon the batch it was writing for others.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::store::StoreError;

/// Requests of type `R` waiting to be written, each answered with an `A`.
#[derive(Debug)]
pub(super) struct Batcher<R, A> {
    state: Mutex<State<R, A>>,
    /// The most requests one batch carries; more wait for the next.
    max: usize,
}

#[derive(Debug)]
struct State<R, A> {
    pending: Vec<Waiting<R, A>>,
    writing: bool,
}

#[derive(Debug)]
struct Waiting<R, A> {
    request: R,
    answer: oneshot::Sender<Result<A, Arc<StoreError>>>,
}

impl<R: Send + 'static, A: Send + 'static> Batcher<R, A> {
    pub(super) fn new(max: usize) -> Self {
        Self {
            state: Mutex::new(State {
                pending: Vec::new(),
                writing: false,
            }),
            max,
        }
    }

    fn state(&self) -> MutexGuard<'_, State<R, A>> {
        // Nothing panics while holding it (pushes and swaps only); a poisoned lock still holds
        // consistent data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `request` to the next batch and waits for its answer. `write` stores a batch and
    /// returns one answer per request, in order; an error fails every request of the batch.
    pub(super) async fn submit<W, F>(
        self: &Arc<Self>,
        request: R,
        write: W,
    ) -> Result<A, StoreError>
    where
        W: Fn(Vec<R>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Vec<A>, StoreError>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let start_writer = {
            let mut state = self.state();
            state.pending.push(Waiting { request, answer });
            !std::mem::replace(&mut state.writing, true)
        };
        if start_writer {
            tokio::spawn(Arc::clone(self).write_pending(write));
        }
        match answered.await {
            Ok(result) => result.map_err(StoreError::Batch),
            // The writer stopped without answering: its task panicked or the runtime is going.
            Err(_) => Err(StoreError::Batch(Arc::new(StoreError::Sql(
                sqlx::Error::WorkerCrashed,
            )))),
        }
    }

    /// The writer's turn: batches until nothing is pending.
    async fn write_pending<W, F>(self: Arc<Self>, write: W)
    where
        W: Fn(Vec<R>) -> F,
        F: Future<Output = Result<Vec<A>, StoreError>>,
    {
        let turn = Turn(&self);
        while let Some(batch) = self.next_batch() {
            let (requests, answers): (Vec<R>, Vec<_>) =
                batch.into_iter().map(|w| (w.request, w.answer)).unzip();
            // Boxed: a batch's write is a large future (every statement's state, for both
            // backends), and held inline it would make this task as large, to be copied
            // whole at every spawn.
            match Box::pin(write(requests)).await {
                Ok(results) => {
                    for (answer, result) in answers.into_iter().zip(results) {
                        // A requester that went away does not mind.
                        let _ = answer.send(Ok(result));
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, requests = answers.len(), "batched write failed");
                    let err = Arc::new(err);
                    for answer in answers {
                        let _ = answer.send(Err(Arc::clone(&err)));
                    }
                }
            }
        }
        // `next_batch` ended the turn itself.
        std::mem::forget(turn);
    }

    /// The next batch, or `None` (and the writer's turn ends) when nothing is pending.
    fn next_batch(&self) -> Option<Vec<Waiting<R, A>>> {
        let mut state = self.state();
        if state.pending.is_empty() {
            state.writing = false;
            return None;
        }
        let take = state.pending.len().min(self.max);
        let rest = state.pending.split_off(take);
        Some(std::mem::replace(&mut state.pending, rest))
    }
}

/// Ends the writer's turn if its task stops abnormally (a panic, or the runtime shutting down):
/// the requests still pending are answered with an error (their senders drop) rather than
/// waiting for a writer that will not come.
struct Turn<'a, R, A>(&'a Batcher<R, A>);

impl<R, A> Drop for Turn<'_, R, A> {
    fn drop(&mut self) {
        let mut state = self
            .0
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.writing {
            state.writing = false;
            state.pending.clear();
        }
    }
}

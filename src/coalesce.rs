//! Reads that concurrent requests share without reading anything older than they would alone.
//!
//! A [`Latest`] runs one read at a time. A caller that arrives while a read is running waits
//! for it to end and then takes the result of the *next* read, which starts after it arrived:
//! everything committed before the caller arrived is in its answer, exactly as if it had read
//! the store itself. The callers that queued up behind one read all take that next one, so under
//! load a burst of N requests costs two reads, not N, and alone a request reads once and waits
//! for nobody.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Mutex;

/// The last read of a `T`, shared by the callers that arrived before it started.
#[derive(Debug)]
pub struct Latest<T> {
    last: Mutex<Option<Read<T>>>,
}

#[derive(Debug)]
struct Read<T> {
    started: Instant,
    value: Arc<T>,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Self {
            last: Mutex::new(None),
        }
    }
}

impl<T> Latest<T> {
    /// A value `read` returned after this call began: the last read's, if it started after
    /// this call did, otherwise a new read's. A failed read is not kept, so the next caller
    /// reads again.
    pub async fn get<F, Fut, E>(&self, read: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let arrived = Instant::now();
        // tokio's mutex is fair: callers take their turns in arrival order.
        let mut last = self.last.lock().await;
        if let Some(read) = &*last
            && read.started > arrived
        {
            return Ok(Arc::clone(&read.value));
        }
        let started = Instant::now();
        let value = Arc::new(read().await?);
        *last = Some(Read {
            started,
            value: Arc::clone(&value),
        });
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_caller_alone_reads_each_time() {
        let latest = Latest::default();
        let reads = AtomicUsize::new(0);
        for expected in 1..=3 {
            let got = latest
                .get(|| async { Ok::<_, ()>(reads.fetch_add(1, Ordering::SeqCst) + 1) })
                .await
                .unwrap();
            assert_eq!(*got, expected, "a later call never reuses an earlier read");
        }
    }

    #[tokio::test]
    async fn callers_queued_behind_a_read_share_the_next_one() {
        let latest = Arc::new(Latest::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        // The first read is held open until the others have arrived.
        let first = {
            let (latest, reads) = (Arc::clone(&latest), Arc::clone(&reads));
            tokio::spawn(async move {
                latest
                    .get(|| async move {
                        let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
                        released.await.unwrap();
                        Ok::<_, ()>(n)
                    })
                    .await
            })
        };
        while reads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let waiting: Vec<_> = (0..8)
            .map(|_| {
                let (latest, reads) = (Arc::clone(&latest), Arc::clone(&reads));
                tokio::spawn(async move {
                    latest
                        .get(
                            || async move { Ok::<_, ()>(reads.fetch_add(1, Ordering::SeqCst) + 1) },
                        )
                        .await
                })
            })
            .collect();
        // Let all eight queue on the lock before the first read ends.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        assert_eq!(*first.await.unwrap().unwrap(), 1);
        for caller in waiting {
            assert_eq!(
                *caller.await.unwrap().unwrap(),
                2,
                "a caller that arrived during read 1 takes read 2, which started after it"
            );
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_kept() {
        let latest = Latest::default();
        assert_eq!(
            latest.get(|| async { Err::<u8, _>("down") }).await,
            Err("down")
        );
        assert_eq!(*latest.get(|| async { Ok::<_, &str>(7) }).await.unwrap(), 7);
    }
}

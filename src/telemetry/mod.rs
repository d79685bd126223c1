//! What slipway tells operators about itself: logs ([`init`]), Prometheus metrics
//! ([`Metrics`]) and the liveness facts behind the probes ([`Vitals`]).

mod metrics;

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

pub use metrics::Metrics;

use crate::config::LogFormat;
use crate::mask::Masker;

/// Logging: JSON lines when stderr is not a terminal (for log shippers), human-readable on a
/// terminal, or as configured. `RUST_LOG` filters (default `info`). Every line passes through
/// the secret masker before it is written.
pub fn init(format: LogFormat, masker: Masker) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Auto => !std::io::stderr().is_terminal(),
        LogFormat::Json => true,
        LogFormat::Text => false,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(MaskingStderr(masker));
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

/// Writes each log event to stderr with configured secrets replaced by `****`.
struct MaskingStderr(Masker);

impl<'a> MakeWriter<'a> for MaskingStderr {
    type Writer = MaskedEvent<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedEvent {
            masker: &self.0,
            buf: Vec::new(),
        }
    }
}

/// One event's bytes, masked and written when the formatter drops it.
struct MaskedEvent<'a> {
    masker: &'a Masker,
    buf: Vec<u8>,
}

impl Write for MaskedEvent<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for MaskedEvent<'_> {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let _ = std::io::stderr().write_all(self.masker.mask(&text).as_bytes());
    }
}

/// Liveness facts the probes read.
#[derive(Debug, Default)]
pub struct Vitals {
    /// Set once start-up (migrations, worker pool) is done.
    started: AtomicBool,
    /// Whether this process runs workers (a `web` replica does not).
    workers: AtomicBool,
    /// When the worker pool last showed it is alive (UTC ms).
    worker_tick: AtomicI64,
}

impl Vitals {
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    pub fn started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    pub fn worker_alive(&self) {
        self.workers.store(true, Ordering::SeqCst);
        self.worker_tick
            .store(crate::store::now_ms(), Ordering::SeqCst);
    }

    /// `None` without workers; else how long ago the pool last ticked.
    pub fn worker_silence_ms(&self) -> Option<i64> {
        self.workers
            .load(Ordering::SeqCst)
            .then(|| crate::store::now_ms() - self.worker_tick.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_events_are_masked() {
        let masker = Masker::new(["super-secret-value"]);
        let mut event = MaskedEvent {
            masker: &masker,
            buf: Vec::new(),
        };
        event.write_all(b"token=super-secret-value\n").unwrap();
        assert_eq!(
            masker.mask(&String::from_utf8_lossy(&event.buf)),
            "token=****\n"
        );
    }
}

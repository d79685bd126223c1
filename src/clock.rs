//! The time housekeeping and the scheduler decide by: [`SystemClock`] in the service, another
//! [`Clock`] in tests, given where the service is assembled (`app.rs`). Only decisions about
//! *when* (scheduled ticks, idle time, how long to keep) read it; timestamps of records, leases
//! and signatures keep the system clock, which is what they must be measured against.

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// [`Clock::now`] in milliseconds since the Unix epoch, as the store keeps times.
    fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

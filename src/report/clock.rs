//! The time renderers stamp lines with and throttle by, injectable so a
//! scripted run prints the same bytes every time.

use chrono::{DateTime, FixedOffset, Local};

pub trait Clock: Send + Sync {
    /// Now, in the local zone (plain lines show local time, JSON converts to UTC).
    fn now(&self) -> DateTime<FixedOffset>;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<FixedOffset> {
        Local::now().fixed_offset()
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<DateTime<FixedOffset>>);

impl ManualClock {
    /// Starts at `rfc3339`, e.g. `2025-03-01T12:00:00Z`.
    pub fn at(rfc3339: &str) -> Self {
        ManualClock(std::sync::Mutex::new(
            DateTime::parse_from_rfc3339(rfc3339).expect("a valid RFC 3339 time"),
        ))
    }

    pub fn advance_ms(&self, ms: i64) {
        let mut now = self.0.lock().unwrap();
        *now += chrono::TimeDelta::milliseconds(ms);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<FixedOffset> {
        *self.0.lock().unwrap()
    }
}

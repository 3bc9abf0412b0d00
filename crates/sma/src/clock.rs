//! Time as an input: the library reads time only through a [`Clock`].

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Seconds since the Unix epoch.
    fn now(&self) -> u64 {
        self.now_ms() / 1000
    }
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock shifted by a fixed offset (tests of expiry without sleeping).
#[derive(Clone, Copy, Debug)]
pub struct OffsetClock {
    /// Offset added to the system time, in seconds (may be negative).
    pub offset_secs: i64,
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> u64 {
        let now = SystemClock.now_ms() as i64 + self.offset_secs * 1000;
        now.max(0) as u64
    }
}

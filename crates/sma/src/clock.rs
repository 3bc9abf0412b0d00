//! Time as an input: the library reads time only through a [`Clock`].

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of time: the wall clock the protocol reads, and the monotonic
/// clock deadlines (timeouts of `pair`, `join`, `recv --wait`) are measured
/// on.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Seconds since the Unix epoch.
    fn now(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Now on the monotonic clock (tokio's, so that tests with paused
    /// time control it).
    fn instant(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }

    /// The monotonic instant `after` from now.
    fn deadline(&self, after: std::time::Duration) -> tokio::time::Instant {
        self.instant() + after
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

//! Virtual wall-clock time for the simulated devices.

use std::sync::atomic::{AtomicU64, Ordering};

use sma::clock::Clock;

/// Wall-clock time: a fixed start, plus tokio's (paused, virtual) elapsed
/// time, plus jumps the scheduler makes (hours at a time, to make
/// retransmission and heartbeats due without waiting).
#[derive(Debug)]
pub struct SimClock {
    base_ms: u64,
    start: tokio::time::Instant,
    jumped_ms: AtomicU64,
}

impl SimClock {
    /// A clock reading `base_ms` now. Must be created inside the runtime.
    pub fn new(base_ms: u64) -> SimClock {
        SimClock {
            base_ms,
            start: tokio::time::Instant::now(),
            jumped_ms: AtomicU64::new(0),
        }
    }

    /// Moves wall-clock time forward (tokio time is not touched, so no
    /// timeout of a running operation fires because of it).
    pub fn jump(&self, ms: u64) {
        self.jumped_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        let elapsed = tokio::time::Instant::now()
            .saturating_duration_since(self.start)
            .as_millis() as u64;
        self.base_ms + elapsed + self.jumped_ms.load(Ordering::SeqCst)
    }
}

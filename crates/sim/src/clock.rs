//! Virtual wall-clock time: the true time of the simulated world, and each
//! device's own clock, which may be off (skewed), run at a slightly wrong
//! rate (drift) and be stepped now and then (as NTP does).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use sma::clock::Clock;

/// True wall-clock time: a fixed start, plus tokio's (paused, virtual)
/// elapsed time, plus jumps the scheduler makes (hours at a time, to make
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

/// The largest offset a device clock has from true time (±36 hours).
pub const MAX_SKEW_MS: i64 = 36 * 3600 * 1000;
/// The largest rate error of a device clock (±1000 ppm: 86 s a day).
pub const MAX_DRIFT_PPM: i64 = 1000;

/// How one device's clock is wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockError {
    /// Offset from true time at the start (ms, ±[`MAX_SKEW_MS`]).
    pub offset_ms: i64,
    /// Rate error in parts per million (±[`MAX_DRIFT_PPM`]).
    pub drift_ppm: i64,
    /// Whether the clock is stepped now and then during the chaos phase.
    pub steps: bool,
}

/// A device's clock: true time, plus its offset, plus its drift since the
/// start, plus the steps it took. Never more than [`MAX_SKEW_MS`] (plus the
/// drift) away from true time.
#[derive(Debug)]
pub struct DeviceClock {
    truth: Arc<SimClock>,
    start_ms: u64,
    error: ClockError,
    stepped_ms: AtomicI64,
}

impl DeviceClock {
    /// A device clock following `truth` with `error`.
    pub fn new(truth: Arc<SimClock>, error: ClockError) -> DeviceClock {
        let start_ms = truth.now_ms();
        DeviceClock {
            truth,
            start_ms,
            error,
            stepped_ms: AtomicI64::new(0),
        }
    }

    /// How it is wrong.
    pub fn error(&self) -> ClockError {
        self.error
    }

    /// Its reading minus true time (ms).
    pub fn skew_ms(&self) -> i64 {
        self.now_ms() as i64 - self.truth.now_ms() as i64
    }

    /// Steps the clock by `ms` (either way), keeping the offset within
    /// ±[`MAX_SKEW_MS`].
    pub fn step(&self, ms: i64) {
        let base = self.error.offset_ms + self.stepped_ms.load(Ordering::SeqCst);
        let to = (base + ms).clamp(-MAX_SKEW_MS, MAX_SKEW_MS);
        self.stepped_ms.fetch_add(to - base, Ordering::SeqCst);
    }

    /// The true time (ms) from which this clock has advanced by `ms` more
    /// than it reads now: how long the world must run for that.
    pub fn true_ms_for(&self, ms: u64) -> u64 {
        let rate = 1_000_000 + self.error.drift_ppm;
        (ms as u128 * 1_000_000u128).div_ceil(rate as u128) as u64
    }
}

impl Clock for DeviceClock {
    fn now_ms(&self) -> u64 {
        let t = self.truth.now_ms();
        let elapsed = t.saturating_sub(self.start_ms) as i128;
        let drift = elapsed * self.error.drift_ppm as i128 / 1_000_000;
        let v = t as i128
            + self.error.offset_ms as i128
            + self.stepped_ms.load(Ordering::SeqCst) as i128
            + drift;
        v.max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_clock_is_offset_drifts_and_steps() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let _guard = rt.enter();
        let truth = Arc::new(SimClock::new(1_000_000_000));
        let c = DeviceClock::new(
            truth.clone(),
            ClockError {
                offset_ms: -3_600_000,
                drift_ppm: 1000,
                steps: true,
            },
        );
        assert_eq!(c.skew_ms(), -3_600_000);
        truth.jump(1_000_000_000);
        assert_eq!(c.skew_ms(), -3_600_000 + 1_000_000);
        c.step(-MAX_SKEW_MS);
        assert_eq!(
            c.skew_ms(),
            -MAX_SKEW_MS + 1_000_000,
            "steps stay in bounds"
        );
        let before = c.now_ms();
        truth.jump(c.true_ms_for(86_400_000));
        assert!(c.now_ms() - before >= 86_400_000);
        assert!(c.now_ms() - before <= 86_400_001);
    }
}

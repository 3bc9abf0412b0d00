//! Hybrid logical clock: the tie-break for replicated registers.

use serde::{Deserialize, Serialize};

use crate::ids::DeviceId;

/// Remote stamps further ahead of our clock than this do not advance it.
pub const MAX_FUTURE_MS: u64 = 24 * 3600 * 1000;

/// A hybrid logical clock timestamp. Ordered by physical milliseconds, then
/// logical counter, then device id, so two devices never produce equal stamps.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc {
    /// Physical time in milliseconds since the Unix epoch (as seen by the stamping device).
    pub ms: u64,
    /// Logical counter for events within the same millisecond.
    pub counter: u32,
    /// The stamping device.
    pub device: DeviceId,
}

/// The clock state of one device.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HlcClock {
    last_ms: u64,
    counter: u32,
}

impl Default for HlcClock {
    fn default() -> Self {
        HlcClock::new()
    }
}

impl HlcClock {
    /// A clock that has seen nothing yet.
    pub fn new() -> Self {
        HlcClock {
            last_ms: 0,
            counter: 0,
        }
    }

    /// Stamps a local event at wall time `now_ms`.
    pub fn tick(&mut self, now_ms: u64, device: &DeviceId) -> Hlc {
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
            self.counter = 0;
        } else {
            self.counter = self.counter.saturating_add(1);
        }
        Hlc {
            ms: self.last_ms,
            counter: self.counter,
            device: device.clone(),
        }
    }

    /// Folds in a stamp received from another device, so later local stamps
    /// order after it — unless it lies more than [`MAX_FUTURE_MS`] ahead of
    /// `now_ms`: one device with a wild clock must not drag every other
    /// device's clock (and so every later register write) into the future.
    pub fn observe_at(&mut self, seen: &Hlc, now_ms: u64) {
        if seen.ms <= now_ms.saturating_add(MAX_FUTURE_MS) {
            self.observe(seen);
        }
    }

    /// Folds in a stamp unconditionally (trusted sources such as the welcome).
    pub fn observe(&mut self, seen: &Hlc) {
        if seen.ms > self.last_ms || (seen.ms == self.last_ms && seen.counter > self.counter) {
            self.last_ms = seen.ms;
            self.counter = seen.counter;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_monotonic_even_if_wall_clock_goes_back() {
        let d = DeviceId::parse("0000000000000001").unwrap();
        let mut c = HlcClock::new();
        let a = c.tick(1000, &d);
        let b = c.tick(900, &d);
        let e = c.tick(1000, &d);
        assert!(a < b && b < e);
    }

    #[test]
    fn observe_orders_after_remote() {
        let d1 = DeviceId::parse("0000000000000001").unwrap();
        let d2 = DeviceId::parse("0000000000000002").unwrap();
        let mut c1 = HlcClock::new();
        let remote = Hlc {
            ms: 5000,
            counter: 7,
            device: d2,
        };
        c1.observe(&remote);
        let local = c1.tick(10, &d1);
        assert!(local > remote);
        let wild = Hlc {
            ms: u64::MAX / 2,
            counter: 0,
            device: d1.clone(),
        };
        c1.observe_at(&wild, 6000);
        assert!(
            c1.tick(6001, &d1).ms < u64::MAX / 2,
            "far-future stamps are not adopted"
        );
    }
}

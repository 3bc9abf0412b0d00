//! Time as the core sees it: a value the driver passes in, never read here.

use serde::{Deserialize, Serialize};

/// A point in wall-clock time: milliseconds since the Unix epoch, as the
/// driver's clock read it. The core never reads a clock; every decision
/// that depends on time takes a `Timestamp`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// From milliseconds since the epoch.
    pub const fn from_ms(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    /// From whole seconds since the epoch.
    pub const fn from_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn as_ms(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch (the unit of the wire's `time` fields).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// This time plus `secs` seconds (saturating).
    pub const fn plus_secs(self, secs: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// Whole seconds from `earlier` to this time (0 if `earlier` is later).
    pub const fn secs_since(self, earlier_secs: u64) -> u64 {
        self.as_secs().saturating_sub(earlier_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_and_saturate() {
        let t = Timestamp::from_secs(10);
        assert_eq!(t.as_ms(), 10_000);
        assert_eq!(Timestamp::from_ms(10_999).as_secs(), 10);
        assert_eq!(t.plus_secs(5).as_secs(), 15);
        assert_eq!(t.secs_since(4), 6);
        assert_eq!(t.secs_since(40), 0);
        assert_eq!(
            Timestamp::from_secs(u64::MAX).plus_secs(1).as_ms(),
            u64::MAX
        );
    }
}

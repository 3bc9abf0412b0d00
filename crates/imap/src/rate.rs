//! [`RoundLimiter`]: how often a server can make a loop work.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Limits how often a server can make a loop run rounds (`sma watch`: a
/// round after every IDLE wake-up).
///
/// A server that reports a change before every response (`* 1 EXISTS`)
/// wakes IDLE at once, every time: without a limit the loop runs thousands
/// of rounds a minute. Two rules bound it:
///
/// * after a round that found nothing new, the next one waits a gap that
///   starts at `min_gap` and doubles with every further such round up to
///   `max_gap`; a round that found something makes the gap zero again;
/// * at most `per_minute` rounds start in any 60 s, whatever they found.
///
/// Intended use, around each round:
///
/// ```no_run
/// # async fn round() -> bool { true }
/// use std::time::Instant;
/// use sma_imap::RoundLimiter;
///
/// # async fn run() {
/// let mut limiter = RoundLimiter::default();
/// loop {
///     tokio::time::sleep(limiter.delay(Instant::now())).await;
///     limiter.started(Instant::now());
///     let found_new = round().await; // applied, received or sent anything?
///     limiter.finished(Instant::now(), found_new);
///     // ... wait for the server (IDLE) ...
/// }
/// # }
/// ```
///
/// A wait for the server that ended by its timeout (a periodic poll) is
/// never delayed much: the gap is at most `max_gap`, the poll period. Times
/// are passed in, as for [`crate::ReconnectBackoff`].
#[derive(Debug, Clone)]
pub struct RoundLimiter {
    per_minute: usize,
    min_gap: Duration,
    max_gap: Duration,
    gap: Duration,
    /// Starts of the rounds of the last minute (at most `per_minute`).
    starts: VecDeque<Instant>,
    last_end: Option<Instant>,
}

impl Default for RoundLimiter {
    /// 20 rounds a minute; after rounds that found nothing, 1 s doubling up
    /// to 30 s (`sma watch`'s poll period).
    fn default() -> Self {
        RoundLimiter::new(20, Duration::from_secs(1), Duration::from_secs(30))
    }
}

impl RoundLimiter {
    /// The window of the per-minute rule.
    pub const WINDOW: Duration = Duration::from_secs(60);

    /// At most `per_minute` rounds (at least 1) in any minute; gaps after
    /// fruitless rounds from `min_gap` doubling to `max_gap`.
    pub fn new(per_minute: u32, min_gap: Duration, max_gap: Duration) -> Self {
        RoundLimiter {
            per_minute: usize::try_from(per_minute.max(1)).unwrap_or(usize::MAX),
            min_gap,
            max_gap: max_gap.max(min_gap),
            gap: Duration::ZERO,
            starts: VecDeque::new(),
            last_end: None,
        }
    }

    /// How long to wait at `now` before starting the next round (zero: go
    /// ahead).
    pub fn delay(&self, now: Instant) -> Duration {
        let after_gap = self
            .last_end
            .map(|end| (end + self.gap).saturating_duration_since(now))
            .unwrap_or_default();
        let after_window = if self.starts.len() >= self.per_minute {
            self.starts
                .front()
                .map(|&first| (first + Self::WINDOW).saturating_duration_since(now))
                .unwrap_or_default()
        } else {
            Duration::ZERO
        };
        after_gap.max(after_window)
    }

    /// A round starts at `now` (call right before it, after waiting
    /// [`RoundLimiter::delay`]).
    pub fn started(&mut self, now: Instant) {
        while self
            .starts
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= Self::WINDOW)
        {
            self.starts.pop_front();
        }
        if self.starts.len() >= self.per_minute {
            self.starts.pop_front();
        }
        self.starts.push_back(now);
    }

    /// The round ended at `now`; `found_new` says whether it applied,
    /// received or sent anything.
    pub fn finished(&mut self, now: Instant, found_new: bool) {
        self.last_end = Some(now);
        self.gap = if found_new {
            Duration::ZERO
        } else if self.gap.is_zero() {
            self.min_gap
        } else {
            self.gap.saturating_mul(2).min(self.max_gap)
        };
    }

    /// The gap the next round waits after the last one ended.
    pub fn gap(&self) -> Duration {
        self.gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a loop whose server wakes it at once after every round, for
    /// `span`; each round takes 5 ms and finds something if `productive`.
    fn storm(limiter: &mut RoundLimiter, span: Duration, productive: bool) -> usize {
        let start = Instant::now();
        let mut now = start;
        let mut rounds = 0;
        loop {
            now += limiter.delay(now);
            if now >= start + span {
                return rounds;
            }
            limiter.started(now);
            now += Duration::from_millis(5);
            limiter.finished(now, productive);
            rounds += 1;
        }
    }

    #[test]
    fn an_exists_storm_is_throttled_to_a_handful_of_rounds() {
        // Issue 20: 2,803 IDLEs in 15 s.
        let mut l = RoundLimiter::default();
        let rounds = storm(&mut l, Duration::from_secs(15), false);
        // 0, 1, 3, 7, 15 s: gaps 1, 2, 4, 8 s.
        assert_eq!(rounds, 4, "rounds in 15 s");
        let mut l = RoundLimiter::default();
        let rounds = storm(&mut l, Duration::from_secs(600), false);
        assert!(rounds <= 5 + 600 / 30, "{rounds} rounds in 10 min");
    }

    #[test]
    fn productive_rounds_are_only_capped_per_minute() {
        let mut l = RoundLimiter::default();
        assert_eq!(storm(&mut l, Duration::from_secs(60), true), 20);
        let mut l = RoundLimiter::default();
        assert_eq!(storm(&mut l, Duration::from_secs(180), true), 60);
    }

    #[test]
    fn something_new_resets_the_gap() {
        let mut l = RoundLimiter::default();
        let t = Instant::now();
        assert_eq!(l.delay(t), Duration::ZERO);
        l.started(t);
        l.finished(t, false);
        assert_eq!(l.gap(), Duration::from_secs(1));
        l.started(t + Duration::from_secs(1));
        l.finished(t + Duration::from_secs(1), false);
        assert_eq!(l.gap(), Duration::from_secs(2));
        assert_eq!(
            l.delay(t + Duration::from_millis(1500)),
            Duration::from_millis(1500)
        );
        l.started(t + Duration::from_secs(3));
        l.finished(t + Duration::from_secs(3), true);
        assert_eq!(l.delay(t + Duration::from_secs(3)), Duration::ZERO);
        for _ in 0..20 {
            l.finished(t, false);
        }
        assert_eq!(l.gap(), Duration::from_secs(30), "capped");
    }

    #[test]
    fn a_poll_after_the_gap_is_not_delayed() {
        let mut l = RoundLimiter::default();
        let t = Instant::now();
        for i in 0..10 {
            let at = t + Duration::from_secs(30 * i);
            assert_eq!(l.delay(at), Duration::ZERO, "poll {i}");
            l.started(at);
            l.finished(at, false);
        }
    }
}

//! Reconnecting: capped exponential backoff and [`connect_with_retry`].

use std::fmt;
use std::time::Duration;

use crate::config::ImapConfig;
use crate::error::ImapError;
use crate::session::ImapSession;

/// Jitter applied to each delay: receives the deterministic delay and
/// returns the one to use.
type Jitter = Box<dyn FnMut(Duration) -> Duration + Send>;

/// Capped exponential backoff: 0.5 s, 1 s, 2 s, 4 s, ... up to 60 s by
/// default. Deterministic unless a jitter function is supplied (so tests can
/// rely on the sequence and the caller owns the randomness). Call
/// [`Backoff::reset`] after a success.
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    jitter: Option<Jitter>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(60))
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("initial", &self.initial)
            .field("max", &self.max)
            .field("attempt", &self.attempt)
            .field("jitter", &self.jitter.is_some())
            .finish()
    }
}

impl Backoff {
    /// Delays start at `initial` and double up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
            jitter: None,
        }
    }

    /// Applies `jitter` to every delay, e.g. `|d| d.mul_f64(rng.gen_range(0.5..1.0))`.
    /// The result is still capped at the maximum.
    pub fn with_jitter(
        mut self,
        jitter: impl FnMut(Duration) -> Duration + Send + 'static,
    ) -> Self {
        self.jitter = Some(Box::new(jitter));
        self
    }

    /// Applies "equal jitter" drawn from a generator seeded with `seed`:
    /// each delay is uniform in `[d/2, d]` for the deterministic delay `d`.
    /// Reconnecting clients then spread out instead of hitting a recovering
    /// server in step. The same seed gives the same delays (pass a random
    /// seed in production, a derived one in simulations).
    pub fn with_seeded_jitter(self, seed: u64) -> Self {
        let mut state = seed;
        self.with_jitter(move |d| {
            let r = splitmix64(&mut state);
            // r / 2^64 in [0, 1): scale the upper half of the delay.
            let half = d / 2;
            let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
            let extra = ((u128::from(nanos) * u128::from(r)) >> 64) as u64;
            half + Duration::from_nanos(extra)
        })
    }

    /// The delay before the next attempt; advances the sequence.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(31));
        let base = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        match self.jitter.as_mut() {
            Some(j) => j(base).min(self.max),
            None => base,
        }
    }

    /// Starts the sequence again (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    #[cfg(test)]
    fn default_sequence(n: usize) -> Vec<Duration> {
        let mut b = Backoff::default();
        (0..n).map(|_| b.next_delay()).collect()
    }
}

/// Connects, retrying connection-level failures ([`ImapError::is_retryable`]:
/// unreachable, lost, timed out) with `backoff`, at most `max_attempts`
/// attempts in all (at least one). Authentication, TLS and configuration
/// errors are returned at once. Before each wait, `on_retry(attempt, error,
/// delay)` is called (attempt counts from 1). The backoff is reset on success.
///
/// For a loop that keeps a session up (`sma watch`) use [`crate::reconnect`]
/// with one [`crate::ReconnectBackoff`] kept for the loop's life instead:
/// resetting on every successful login lets a server that drops each session
/// right after login make the loop log in as fast as it can.
pub async fn connect_with_retry(
    config: &ImapConfig,
    backoff: &mut Backoff,
    max_attempts: u32,
    mut on_retry: impl FnMut(u32, &ImapError, Duration),
) -> Result<ImapSession, ImapError> {
    let max_attempts = max_attempts.max(1);
    let mut attempt = 1;
    loop {
        match ImapSession::connect(config).await {
            Ok(session) => {
                backoff.reset();
                return Ok(session);
            }
            Err(e) if e.is_retryable() && attempt < max_attempts => {
                let delay = backoff.next_delay();
                tracing::info!(attempt, error = %e, ?delay, "IMAP connect failed; retrying");
                on_retry(attempt, &e, delay);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// SplitMix64: a tiny, well-distributed generator for jitter (no
/// cryptographic use).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_jitter_stays_within_the_upper_half_and_is_reproducible() {
        let delays = |seed| {
            let mut b = Backoff::default().with_seeded_jitter(seed);
            (0..12).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        let a = delays(7);
        assert_eq!(a, delays(7));
        assert_ne!(a, delays(8));
        let mut plain = Backoff::default();
        for d in &a {
            let base = plain.next_delay();
            assert!(*d >= base / 2 && *d <= base, "{d:?} for {base:?}");
        }
        // Spread: not all at one end.
        assert!(a
            .iter()
            .zip(Backoff::default_sequence(12))
            .any(|(d, b)| *d < b * 9 / 10));
    }

    #[test]
    fn deterministic_sequence_and_cap() {
        let mut b = Backoff::default();
        let got: Vec<f64> = (0..10).map(|_| b.next_delay().as_secs_f64()).collect();
        assert_eq!(
            got,
            vec![0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
        );
        assert_eq!(b.attempts(), 10);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::from_secs(60));
    }

    #[test]
    fn jitter_is_applied_and_capped() {
        let mut b = Backoff::default().with_jitter(|d| d * 3);
        assert_eq!(b.next_delay(), Duration::from_millis(1500));
        for _ in 0..10 {
            assert!(b.next_delay() <= Duration::from_secs(60));
        }
    }

    #[tokio::test]
    async fn does_not_retry_configuration_errors() {
        let mut config = ImapConfig::new("imap.example.org", crate::Security::Plain, "u", "p");
        config.port = 143;
        let mut calls = 0;
        let mut b = Backoff::default();
        let e = connect_with_retry(&config, &mut b, 5, |_, _, _| calls += 1)
            .await
            .unwrap_err();
        assert!(matches!(e, ImapError::InsecureRefused { .. }), "{e}");
        assert_eq!(calls, 0);
    }

    #[tokio::test]
    async fn retries_unreachable_then_gives_up() {
        // A port nothing listens on: bind, note the port, close.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut config = ImapConfig::new("127.0.0.1", crate::Security::Plain, "u", "p");
        config.port = port;
        let mut seen = Vec::new();
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(4));
        let e = connect_with_retry(&config, &mut b, 3, |n, e, d| seen.push((n, e.kind(), d)))
            .await
            .unwrap_err();
        assert!(matches!(e, ImapError::Unreachable { .. }), "{e}");
        assert_eq!(
            seen,
            vec![
                (1, "unreachable", Duration::from_millis(1)),
                (2, "unreachable", Duration::from_millis(2))
            ]
        );
    }
}

//! Keeping a session up for a long time (`sma watch`) against a server that
//! may drop it on purpose: [`ReconnectBackoff`] and [`reconnect`].

use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::config::ImapConfig;
use crate::error::ImapError;
use crate::session::ImapSession;

/// Backoff whose state survives reconnects: it starts again only after the
/// session stayed healthy for a minimum time.
///
/// A fresh [`Backoff`] per lost session (or one reset by every successful
/// login) lets a server that drops each session right after login make the
/// client log in twice a second forever. Keep one `ReconnectBackoff` for the
/// whole life of the loop instead:
///
/// ```no_run
/// # async fn watch(config: sma_imap::ImapConfig, seed: u64) -> Result<(), sma_imap::ImapError> {
/// use std::time::Instant;
/// use sma_imap::{reconnect, Backoff, ReconnectBackoff, Transport};
///
/// let mut backoff = ReconnectBackoff::new(
///     Backoff::default().with_seeded_jitter(seed),
///     ReconnectBackoff::MIN_UPTIME,
/// );
/// let mut session = reconnect(&config, &mut backoff, u32::MAX, |_, _, _| {}).await?;
/// loop {
///     match session.noop().await {           // a round of work
///         Ok(()) => backoff.up(Instant::now()),
///         Err(e) if e.is_connection_lost() => {
///             tokio::time::sleep(backoff.failed(Instant::now())).await;
///             session = reconnect(&config, &mut backoff, u32::MAX, |_, _, _| {}).await?;
///         }
///         Err(e) if e.is_transient() => {
///             // e.g. ImapError::ServerFailure: the session still works.
///             tokio::time::sleep(backoff.failed(Instant::now())).await;
///         }
///         Err(e) => return Err(e),
///     }
/// }
/// # }
/// ```
///
/// Times are passed in (`std::time::Instant`; under tokio's paused clock
/// pass `tokio::time::Instant::now().into_std()`), so the policy can be
/// tested and simulated without waiting.
#[derive(Debug)]
pub struct ReconnectBackoff {
    backoff: Backoff,
    min_uptime: Duration,
    /// Since when the session has been healthy without a failure.
    healthy_since: Option<Instant>,
}

impl Default for ReconnectBackoff {
    /// [`Backoff::default`] (0.5 s doubling to 60 s, no jitter) and
    /// [`ReconnectBackoff::MIN_UPTIME`].
    fn default() -> Self {
        ReconnectBackoff::new(Backoff::default(), ReconnectBackoff::MIN_UPTIME)
    }
}

impl ReconnectBackoff {
    /// How long a session must stay healthy before the backoff starts again
    /// from its first delay: one minute.
    pub const MIN_UPTIME: Duration = Duration::from_secs(60);

    /// Uses `backoff` for the delays and restarts it only after `min_uptime`
    /// of health.
    pub fn new(backoff: Backoff, min_uptime: Duration) -> Self {
        ReconnectBackoff {
            backoff,
            min_uptime,
            healthy_since: None,
        }
    }

    /// The session works as of `now`: after a successful login, and after
    /// every round that succeeded. Starts the healthy period unless it is
    /// running.
    pub fn up(&mut self, now: Instant) {
        self.healthy_since.get_or_insert(now);
    }

    /// Something failed at `now` (a lost session, a failed connect, a
    /// server failure): returns how long to wait before trying again. The
    /// sequence starts again from its first delay only if the session had
    /// been healthy for [`ReconnectBackoff::MIN_UPTIME`] (or the configured
    /// minimum) before this failure; otherwise the delays keep growing up to
    /// the maximum.
    pub fn failed(&mut self, now: Instant) -> Duration {
        if let Some(since) = self.healthy_since.take() {
            if now.saturating_duration_since(since) >= self.min_uptime {
                self.backoff.reset();
            }
        }
        self.backoff.next_delay()
    }

    /// Failures since the sequence last started again.
    pub fn failures(&self) -> u32 {
        self.backoff.attempts()
    }
}

/// Connects with a [`ReconnectBackoff`], for loops that keep a session up:
/// like [`crate::connect_with_retry`], but the backoff is never reset here
/// (only a session that stays healthy resets it, see
/// [`ReconnectBackoff::failed`]), and a successful connect counts as
/// [`ReconnectBackoff::up`]. Retries connection-level failures
/// ([`ImapError::is_retryable`]) at most `max_attempts` attempts in all;
/// `on_retry(attempt, error, delay)` is called before each wait.
pub async fn reconnect(
    config: &ImapConfig,
    backoff: &mut ReconnectBackoff,
    max_attempts: u32,
    mut on_retry: impl FnMut(u32, &ImapError, Duration),
) -> Result<ImapSession, ImapError> {
    let max_attempts = max_attempts.max(1);
    let mut attempt = 1;
    loop {
        match ImapSession::connect(config).await {
            Ok(session) => {
                backoff.up(Instant::now());
                return Ok(session);
            }
            Err(e) if e.is_retryable() && attempt < max_attempts => {
                let delay = backoff.failed(Instant::now());
                tracing::info!(attempt, error = %e, ?delay, "IMAP connect failed; retrying");
                on_retry(attempt, &e, delay);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn sessions_that_die_young_keep_the_delays_growing() {
        let mut b = ReconnectBackoff::default();
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..10 {
            b.up(now); // logged in
            now += Duration::from_millis(100); // dropped right after login
            let d = b.failed(now);
            delays.push(secs(d));
            now += d;
        }
        assert_eq!(
            delays,
            vec![0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
        );
        assert_eq!(b.failures(), 10);
    }

    #[test]
    fn a_session_that_stayed_up_starts_the_sequence_again() {
        let mut b = ReconnectBackoff::default();
        let mut now = Instant::now();
        for _ in 0..5 {
            b.failed(now);
        }
        b.up(now);
        // Rounds keep succeeding; `up` does not move the start.
        for _ in 0..10 {
            now += Duration::from_secs(10);
            b.up(now);
        }
        assert_eq!(b.failed(now), Duration::from_millis(500));
        // Up for less than the minimum: no restart.
        b.up(now);
        now += ReconnectBackoff::MIN_UPTIME - Duration::from_millis(1);
        assert_eq!(b.failed(now), Duration::from_secs(1));
    }

    #[test]
    fn repeated_failures_without_a_healthy_period_never_restart() {
        // Server failures on a session up for hours: the first restarts the
        // sequence, the following ones (no `up` in between) do not.
        let mut b = ReconnectBackoff::default();
        let start = Instant::now();
        b.up(start);
        let mut now = start + Duration::from_secs(3 * 3600);
        let mut delays = Vec::new();
        for _ in 0..4 {
            let d = b.failed(now);
            delays.push(secs(d));
            now += d;
        }
        assert_eq!(delays, vec![0.5, 1.0, 2.0, 4.0]);
    }

    #[test]
    fn a_login_storm_is_bounded() {
        // A server that drops every session 50 ms after login, for an hour:
        // with the old loop (fresh backoff per loss) that was a login every
        // 0.5 s, 7,200 in all.
        let mut b = ReconnectBackoff::new(
            Backoff::default().with_seeded_jitter(42),
            ReconnectBackoff::MIN_UPTIME,
        );
        let start = Instant::now();
        let mut now = start;
        let mut logins = 0;
        while now < start + Duration::from_secs(3600) {
            logins += 1;
            b.up(now);
            now += Duration::from_millis(50);
            now += b.failed(now);
        }
        // At least 30 s apart (half of 60 s, jittered) once grown.
        assert!(logins <= 3600 / 30 + 10, "{logins} logins in an hour");
    }

    #[tokio::test]
    async fn reconnect_gives_up_and_keeps_the_backoff_state() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut config = ImapConfig::new("127.0.0.1", crate::Security::Plain, "u", "p");
        config.port = port;
        let mut b = ReconnectBackoff::new(
            Backoff::new(Duration::from_millis(1), Duration::from_millis(4)),
            ReconnectBackoff::MIN_UPTIME,
        );
        let mut seen = Vec::new();
        let e = reconnect(&config, &mut b, 3, |n, _, d| seen.push((n, d)))
            .await
            .unwrap_err();
        assert!(matches!(e, ImapError::Unreachable { .. }), "{e}");
        assert_eq!(
            seen,
            vec![(1, Duration::from_millis(1)), (2, Duration::from_millis(2))]
        );
        // The next failure continues the sequence.
        assert_eq!(b.failed(Instant::now()), Duration::from_millis(4));
    }
}

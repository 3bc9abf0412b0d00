//! `watch`: rounds driven by IDLE, paced so that no server can make them
//! spin, reconnecting with a backoff that survives reconnects.
//!
//! * A [`RoundLimiter`] spaces rounds that found nothing (1 s doubling to
//!   30 s) and caps them at 20 a minute, whatever the server reports.
//! * One [`ReconnectBackoff`] lives for the whole loop: it starts again from
//!   its first delay only after a session stayed healthy for a minute, so a
//!   server that drops every session right after login cannot make `watch`
//!   log in again and again.
//! * Transient failures (a lost session, a server failure) are retried
//!   after the backoff; only other errors end the loop.

use std::time::Instant;

use rand_core::RngCore;
use sma_imap::{Backoff, ImapError, Password, ReconnectBackoff, RoundLimiter};
use tracing::{info, warn};

use crate::device::Device;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::round::{HEARTBEAT_ON_START_SECS, HEARTBEAT_SECS, WATCH_POLL};
use crate::session::{Session, SessionConfig};

impl Device {
    /// `watch`: rounds driven by IDLE (polling every 30 s at the latest),
    /// reconnecting with backoff. Calls `on_event` for every event, including
    /// every application message (which is then removed). Runs until an error
    /// that retrying cannot fix, or until `stop` resolves.
    pub async fn watch(
        &mut self,
        password: &Password,
        mut on_event: impl FnMut(&Event),
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        tokio::pin!(stop);
        let config = self.session_config(password)?;
        let jitter_seed = self.rng.next_u64();
        let mut backoff = ReconnectBackoff::new(
            Backoff::default().with_seeded_jitter(jitter_seed),
            ReconnectBackoff::MIN_UPTIME,
        );
        let mut limiter = RoundLimiter::default();
        let mut t: Session = self.connect(password).await?;
        backoff.up(self.std_now());
        let mut heartbeat_after = HEARTBEAT_ON_START_SECS;
        loop {
            let pause = limiter.delay(self.std_now());
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = &mut stop => return Ok(()),
            }
            limiter.started(self.std_now());
            // Network work may be interrupted by `stop` at any point (the
            // store is committed before server deletions, so that is safe).
            let round = tokio::select! {
                r = self.watch_round(&mut t, heartbeat_after, &mut on_event, &mut limiter) => r,
                _ = &mut stop => return Ok(()),
            };
            match round {
                Ok(()) => {
                    heartbeat_after = HEARTBEAT_SECS;
                    backoff.up(self.std_now());
                }
                Err(Error::Imap(e)) if e.is_transient() => {
                    let delay = backoff.failed(self.std_now());
                    warn!(error = %e, ?delay, "round failed; retrying after a pause");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = &mut stop => return Ok(()),
                    }
                    if e.needs_reconnect() {
                        let mut attempts = 1;
                        let again = reconnect(&config, &mut backoff, |n, err, delay| {
                            attempts = n + 1;
                            info!(attempt = n, error = %err, ?delay, "reconnect failed; retrying");
                        });
                        t = tokio::select! {
                            r = again => r?,
                            _ = &mut stop => return Ok(()),
                        };
                        on_event(&Event::Reconnected { attempts });
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One round of `watch`: sync, reporting events and handing out
    /// messages once the inbox pass is committed, then wait for the inbox
    /// to change (IDLE, at most [`WATCH_POLL`]).
    async fn watch_round(
        &mut self,
        t: &mut Session,
        heartbeat_after: u64,
        on_event: &mut impl FnMut(&Event),
        limiter: &mut RoundLimiter,
    ) -> Result<()> {
        // Events and messages are handed out as soon as the round's inbox
        // pass is committed, before the server deletes what it processed.
        // Handing out a message and recording that it was handed out are
        // never separated by `stop` (no await between them).
        let mut delivered = false;
        let report = self
            .sync_round_handing_out(t, heartbeat_after, |dev, events| {
                for e in events {
                    on_event(e);
                }
                let messages = dev.pending_messages()?;
                delivered = !messages.is_empty();
                for m in messages {
                    on_event(&Event::Message(m.clone()));
                    dev.delivered(std::slice::from_ref(&m))?;
                }
                Ok(())
            })
            .await?;
        limiter.finished(self.std_now(), report.found_new() || delivered);
        self.wait_for_inbox(t, &report, WATCH_POLL).await?;
        Ok(())
    }

    /// Now on the monotonic clock, as the pacing types want it.
    fn std_now(&self) -> Instant {
        self.clock.instant().into_std()
    }
}

/// Opens a new session after a lost one, as [`sma_imap::reconnect`] does
/// for IMAP, for either protocol: retries what is worth retrying, paced by
/// `backoff`, calling `on_retry(attempt, error, delay)` before each pause.
async fn reconnect(
    config: &SessionConfig,
    backoff: &mut ReconnectBackoff,
    mut on_retry: impl FnMut(u32, &ImapError, std::time::Duration),
) -> std::result::Result<Session, ImapError> {
    let mut attempt = 1;
    loop {
        match config.connect().await {
            Ok(session) => {
                backoff.up(Instant::now());
                return Ok(session);
            }
            Err(e) if e.is_retryable() => {
                let delay = backoff.failed(Instant::now());
                on_retry(attempt, &e, delay);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

//! Waiting for changes: IDLE with re-issue, recheck and cancellation, or
//! NOOP polling on servers without IDLE.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::ImapError;
use crate::session::{ImapSession, MAX_IDLE};
use crate::transport::Transport;
use crate::types::IdleOutcome;

impl ImapSession {
    /// Takes the "change seen" flag.
    fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.conn.mailbox.changed)
    }

    /// NOOP every poll interval until a change or the deadline.
    async fn poll_until(&mut self, deadline: Instant) -> Result<IdleOutcome, ImapError> {
        loop {
            self.noop().await?;
            if self.take_changed() {
                return Ok(IdleOutcome::Changed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(IdleOutcome::TimedOut);
            }
            tokio::time::sleep(left.min(self.poll_interval)).await;
        }
    }

    /// [`Transport::idle`]: a change already seen returns at once; else
    /// IDLE in segments of at most [`MAX_IDLE`] (shorter with a recheck
    /// interval, followed by a NOOP), or NOOP polling without IDLE.
    pub(crate) async fn idle_impl(&mut self, timeout: Duration) -> Result<IdleOutcome, ImapError> {
        let deadline = Instant::now() + timeout;
        if self.take_changed() {
            return Ok(IdleOutcome::Changed);
        }
        if !self.caps.idle || self.idle_refused {
            return self.poll_until(deadline).await;
        }
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(IdleOutcome::TimedOut);
            }
            let mut segment_end = deadline.min(now + MAX_IDLE);
            if let Some(every) = self.idle_recheck {
                segment_end = segment_end.min(now + every);
            }
            match self.conn.idle_once(segment_end).await {
                Ok(_) => {}
                Err(ImapError::No { text, .. } | ImapError::Bad { text, .. }) => {
                    tracing::warn!(text = %text, "IMAP server refused IDLE; polling instead");
                    self.idle_refused = true;
                    return self.poll_until(deadline).await;
                }
                Err(e) => return Err(e),
            }
            if self.take_changed() {
                return Ok(IdleOutcome::Changed);
            }
            if self.idle_recheck.is_some() && Instant::now() < deadline {
                self.noop().await?;
                if self.take_changed() {
                    return Ok(IdleOutcome::Changed);
                }
            }
        }
    }

    /// [`Transport::idle_until`]: on cancel, the IDLE is ended (`DONE`)
    /// before returning, so the session is immediately usable.
    pub(crate) async fn idle_until_impl<C>(
        &mut self,
        timeout: Duration,
        cancel: C,
    ) -> Result<IdleOutcome, ImapError>
    where
        C: Future<Output = ()> + Send,
    {
        let interrupted = {
            tokio::pin!(cancel);
            tokio::select! {
                biased;
                r = self.idle_impl(timeout) => Some(r),
                _ = &mut cancel => None,
            }
        };
        match interrupted {
            Some(r) => r,
            None => {
                // End the interrupted IDLE now rather than on the next command.
                self.conn.ensure_ready().await?;
                Ok(IdleOutcome::Interrupted)
            }
        }
    }
}

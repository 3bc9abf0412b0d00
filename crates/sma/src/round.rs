//! Sync rounds, `recv` and the `watch` loop.

use std::time::Duration;

use serde::Serialize;
use sma_imap::{IdleOutcome, RoundLimiter, Transport};
use sma_proto::payload::AnnouncedState;

use crate::config::Role;
use crate::device::Device;
use crate::error::Result;
use crate::events::{AppMessage, Event};

/// Re-announce (heartbeat) when the last announcement is older than this.
pub const HEARTBEAT_SECS: u64 = 86_400;
/// At the start of `sync`/`watch`, re-announce if older than this.
pub const HEARTBEAT_ON_START_SECS: u64 = 3_600;
/// Longest single IDLE before a poll round (also the polling period).
pub const WATCH_POLL: Duration = Duration::from_secs(30);

/// What one sync round did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncReport {
    /// New ops applied.
    pub applied: usize,
    /// Of those, ops relayed by another member than their origin (not
    /// part of the `sync` JSON line).
    #[serde(skip)]
    pub relayed: usize,
    /// Sync messages sent.
    pub sent: usize,
    /// Devices removed by expiry in this round.
    pub removed_devices: Vec<String>,
    /// Events of the round (not part of the `sync` JSON line).
    #[serde(skip)]
    pub events: Vec<Event>,
    /// UIDNEXT of our inbox when the round read it (if the server said).
    #[serde(skip)]
    pub inbox_uid_next: Option<u32>,
}

impl SyncReport {
    /// Whether the round did anything: applied or sent something, or
    /// reported an event (rounds that find nothing slow `watch` down).
    pub fn found_new(&self) -> bool {
        self.applied > 0 || self.sent > 0 || !self.events.is_empty()
    }
}

impl Device {
    /// One round: fetch and apply, heartbeat if due, expiry if due, send
    /// what is due.
    pub async fn sync_round<T: Transport>(
        &mut self,
        t: &mut T,
        heartbeat_after: u64,
    ) -> Result<SyncReport> {
        self.round(t, heartbeat_after, None).await
    }

    /// [`Self::sync_round`] that calls `hand_out` as soon as the inbox
    /// pass is committed to the store, before anything is deleted on the
    /// server or sent: with this device and the pass's events (which the
    /// returned report holds as well). `watch` hands out the events and the
    /// waiting application messages there, a server round trip or more
    /// earlier than after the round. It is not called when the round fails
    /// before that point, nor when the pass proves this device's removal
    /// (the round then fails).
    pub async fn sync_round_handing_out<T, F>(
        &mut self,
        t: &mut T,
        heartbeat_after: u64,
        hand_out: F,
    ) -> Result<SyncReport>
    where
        T: Transport,
        F: FnOnce(&mut Device, &[Event]) -> Result<()>,
    {
        self.round_handing_out(t, heartbeat_after, None, hand_out)
            .await
    }

    /// A round; `expire_now` runs expiry with that policy (seconds) whether
    /// or not it is due.
    pub(crate) async fn round<T: Transport>(
        &mut self,
        t: &mut T,
        heartbeat_after: u64,
        expire_now: Option<u64>,
    ) -> Result<SyncReport> {
        self.round_handing_out(t, heartbeat_after, expire_now, |_, _| Ok(()))
            .await
    }

    /// A round that calls `hand_out` once the inbox pass is committed (see
    /// [`Self::sync_round_handing_out`]).
    async fn round_handing_out<T, F>(
        &mut self,
        t: &mut T,
        heartbeat_after: u64,
        expire_now: Option<u64>,
        hand_out: F,
    ) -> Result<SyncReport>
    where
        T: Transport,
        F: FnOnce(&mut Device, &[Event]) -> Result<()>,
    {
        if self.info.role == Role::Removed {
            return Err(self.removed_error());
        }
        self.require_member()?;
        // Our own record may say removed (e.g. an interrupted `leave`).
        if self.engine.is_removed() {
            return Err(self.mark_removed(" (its own record in the group state says so)"));
        }
        let committed = self.read_and_commit_inbox(t).await?;
        if !committed.proves_removal() {
            hand_out(self, &committed.pass.events)?;
        }
        let pass = self.carry_out_pass(t, committed).await?;
        let mut report = SyncReport {
            applied: pass.applied,
            relayed: pass.relayed,
            events: pass.events,
            inbox_uid_next: pass.uid_next,
            ..SyncReport::default()
        };
        let heartbeat_after = self.heartbeat_threshold(heartbeat_after)?;
        if self.now().saturating_sub(self.info.announced_at) >= heartbeat_after {
            self.announce(t, AnnouncedState::Member, self.info.role == Role::Founder)
                .await?;
        }
        let expiry = match expire_now {
            Some(policy) => Some(policy),
            None => self.expiry_due()?,
        };
        if let Some(policy) = expiry {
            report.removed_devices = self.expire(t, policy).await?;
        }
        report.sent = self.send_syncs(t).await?;
        Ok(report)
    }

    /// Selects our inbox and waits (IDLE) for a change, unless messages
    /// arrived after `round` read it: a fresh SELECT counts those, and IDLE
    /// would then not report them until `timeout`.
    pub(crate) async fn wait_for_inbox<T: Transport>(
        &mut self,
        t: &mut T,
        round: &SyncReport,
        timeout: Duration,
    ) -> Result<IdleOutcome> {
        let state = t.select(&self.inbox()).await?;
        if let (Some(read), Some(now)) = (round.inbox_uid_next, state.uid_next) {
            if now > read {
                return Ok(IdleOutcome::Changed);
            }
        }
        Ok(t.idle(timeout).await?)
    }

    /// `sync`: one round, with a heartbeat if the last is older than an hour.
    pub async fn sync<T: Transport>(&mut self, t: &mut T) -> Result<SyncReport> {
        self.sync_round(t, HEARTBEAT_ON_START_SECS).await
    }

    /// `recv`: runs rounds until at least one application message is waiting
    /// or `wait` has passed (zero: one round). Returns every waiting message;
    /// call [`Device::delivered`] once they are handed out.
    pub async fn recv<T: Transport>(
        &mut self,
        t: &mut T,
        wait: Duration,
    ) -> Result<Vec<AppMessage>> {
        let deadline = self.clock.deadline(wait);
        let mut limiter = RoundLimiter::default();
        loop {
            // A server that reports changes that are not there cannot make
            // the rounds spin.
            let pause = limiter.delay(self.clock.instant().into_std());
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(self.clock.instant())))
                .await;
            limiter.started(self.clock.instant().into_std());
            let report = self.sync_round(t, HEARTBEAT_SECS).await?;
            limiter.finished(self.clock.instant().into_std(), report.found_new());
            let msgs = self.pending_messages()?;
            let left = deadline.saturating_duration_since(self.clock.instant());
            if !msgs.is_empty() || left.is_zero() {
                return Ok(msgs);
            }
            self.wait_for_inbox(t, &report, left.min(WATCH_POLL))
                .await?;
        }
    }
}

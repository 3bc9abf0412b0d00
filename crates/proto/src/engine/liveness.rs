//! Signs of life and expiry (PROTOCOL 14).
//!
//! Liveness rests only on authenticated evidence: the `sent_at` of sealed
//! messages a device sent, the signs of life other members relay in their
//! sync messages, and the heartbeats of announcements signed with the
//! device's own key. Deleting announcements (or any other message) cannot
//! make an active device look older than its last authenticated message.

use std::collections::BTreeSet;

use super::Engine;
use crate::error::ProtoError;
use crate::ids::DeviceId;
use crate::state::{Change, MemberStatus};
use crate::time::Timestamp;

/// An announcement's heartbeat counts at most this far ahead of our clock.
pub const HEARTBEAT_FUTURE_SLACK_SECS: u64 = 86_400;

/// A removed device's inbox is kept this long after we learnt of the
/// removal, holding its removal notice; then deleted.
pub const REMOVED_INBOX_GRACE_SECS: u64 = 30 * 86_400;

/// What to do with the folders of a removed device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Delete its announcements; keep its inbox, with our removal notice in it.
    Notify(DeviceId),
    /// Delete its announcements and its inbox.
    Delete(DeviceId),
}

impl Engine {
    /// Records an authenticated sign of life of `id` at `at` (Unix
    /// seconds; never later than `now`).
    pub(crate) fn heard(&mut self, id: &DeviceId, at: u64, now: Timestamp) {
        let at = at.min(now.as_secs());
        let e = self.core.alive.entry(id.clone()).or_insert(0);
        *e = (*e).max(at);
    }

    /// Folds in the heartbeats of verified announcements, `(device,
    /// fingerprint of the signing key, heartbeat)`: only those signed with
    /// the key of the device's member record count, clamped to
    /// [`HEARTBEAT_FUTURE_SLACK_SECS`] ahead.
    pub fn note_announcements<'a>(
        &mut self,
        anns: impl IntoIterator<Item = (&'a DeviceId, &'a str, u64)>,
        now: Timestamp,
    ) {
        for (id, fingerprint, heartbeat) in anns {
            let ours = self
                .core
                .group
                .member(id)
                .is_some_and(|m| m.fingerprint == fingerprint);
            if ours {
                let at = heartbeat.min(now.as_secs() + HEARTBEAT_FUTURE_SLACK_SECS);
                let e = self.core.alive.entry(id.clone()).or_insert(0);
                *e = (*e).max(at);
            }
        }
    }

    /// The newest authenticated sign of life of a member (Unix seconds).
    pub fn last_alive(&self, id: &DeviceId) -> u64 {
        let record = self.core.group.member(id).map_or(0, |m| m.heartbeat);
        record.max(self.core.alive.get(id).copied().unwrap_or(0))
    }

    /// Expires every other member silent for longer than `policy` seconds:
    /// commits an op setting it `stale` (if active) and one setting it
    /// `removed`. Returns the devices expired now.
    pub fn expire(&mut self, now: Timestamp, policy: u64) -> Result<Vec<DeviceId>, ProtoError> {
        let candidates: Vec<_> = self
            .core
            .group
            .members()
            .values()
            .filter(|r| r.id != self.me.id && r.status < MemberStatus::Removed)
            .filter(|r| now.secs_since(self.last_alive(&r.id)) > policy)
            .cloned()
            .collect();
        let mut expired = Vec::new();
        for mut rec in candidates {
            tracing::info!(device = %rec.id, silent_secs = now.secs_since(self.last_alive(&rec.id)), policy, "device expired");
            rec.final_seq = rec
                .final_seq
                .max(Some(self.core.book.highest_held(&rec.id)));
            if rec.status == MemberStatus::Active {
                rec.status = MemberStatus::Stale;
                self.commit(Change::Member(rec.clone()), now)?;
            }
            rec.status = MemberStatus::Removed;
            self.commit(Change::Member(rec.clone()), now)?;
            expired.push(rec.id);
        }
        Ok(expired)
    }

    /// Pending devices (announced, unknown to the state) silent for longer
    /// than `policy`: their announcement and inbox are cleaned up (pending
    /// devices run no rounds, so this counts from their `init`).
    pub fn silent_pending<'a>(
        &self,
        pending: impl IntoIterator<Item = (&'a DeviceId, u64)>,
        now: Timestamp,
        policy: u64,
    ) -> BTreeSet<DeviceId> {
        pending
            .into_iter()
            .filter(|(id, _)| *id != &self.me.id && self.core.group.member(id).is_none())
            .filter(|(_, heartbeat)| now.secs_since(*heartbeat) > policy)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// What to do with the folders of every removed device.
    pub fn removed_cleanup(&self, now: Timestamp) -> Vec<Cleanup> {
        self.core
            .group
            .members()
            .values()
            .filter(|r| r.id != self.me.id && r.status == MemberStatus::Removed)
            .map(|r| match self.core.removals.get(&r.id) {
                Some(rm) if now.secs_since(rm.learnt_at) <= REMOVED_INBOX_GRACE_SECS => {
                    Cleanup::Notify(r.id.clone())
                }
                _ => Cleanup::Delete(r.id.clone()),
            })
            .collect()
    }
}

//! Expiry: members silent for longer than the policy become `stale` and then
//! `removed` (two ops, replicated like any change), and their folders go.
//!
//! Silence is measured from the device's *own* last heartbeat: the newer of
//! the `heartbeat` in its latest announcement (signed by its device key) and
//! the heartbeat in its member record — never from when this device last
//! synced. Pending devices that never paired are cleaned up after the same
//! silence, and leftovers of removed devices (an announcement or inbox that
//! reappeared) are deleted whenever expiry runs.

use std::collections::{BTreeMap, BTreeSet};

use sma_imap::Transport;
use sma_proto::folders::ANNOUNCE_BASE;
use sma_proto::payload::AnnouncedState;
use sma_proto::state::{Change, MemberStatus};
use sma_proto::DeviceId;
use tracing::{debug, info};

use crate::announce::{self, SeenAnnouncement};
use crate::device::Device;
use crate::error::Result;
use crate::lifecycle::HEARTBEAT_FUTURE_SLACK_SECS;

/// How long a device has been silent at `now`, given its last heartbeat.
pub fn silence(now: u64, last_heartbeat: u64) -> u64 {
    now.saturating_sub(last_heartbeat)
}

impl Device {
    /// Expires every device silent for longer than `policy` seconds and
    /// cleans up what removed devices left behind. Returns the ids of the
    /// devices removed now (members and pending devices).
    pub(crate) async fn expire<T: Transport>(
        &mut self,
        t: &mut T,
        policy: u64,
    ) -> Result<Vec<String>> {
        let now = self.now();
        let anns = announce::read_all(t, &self.info.folders.announce())
            .await?
            .unwrap_or_default();
        let me = self.id().clone();
        // Newest trusted heartbeat per (device, fingerprint).
        let mut heard: BTreeMap<(DeviceId, String), u64> = BTreeMap::new();
        for s in &anns {
            let hb = s.ann.heartbeat.min(now + HEARTBEAT_FUTURE_SLACK_SECS);
            let e = heard
                .entry((s.ann.device_id.clone(), s.fingerprint.clone()))
                .or_insert(0);
            *e = (*e).max(hb);
        }
        let mut removed: Vec<String> = Vec::new();
        let mut cleanup: BTreeSet<DeviceId> = BTreeSet::new();
        let records: Vec<_> = self
            .member
            .core
            .group
            .members
            .values()
            .filter(|r| r.id != me)
            .cloned()
            .collect();
        for rec in records {
            if rec.status == MemberStatus::Removed {
                cleanup.insert(rec.id.clone());
                continue;
            }
            let announced = heard
                .get(&(rec.id.clone(), rec.fingerprint.clone()))
                .copied()
                .unwrap_or(0);
            let last = rec.heartbeat.max(announced);
            if let Some(mine) = self.member.core.group.members.get_mut(&rec.id) {
                // Heartbeats are read from announcements, not replicated as ops.
                mine.heartbeat = last;
            }
            if silence(now, last) <= policy {
                continue;
            }
            info!(device = %rec.id, silent_secs = silence(now, last), policy, "device expired");
            let now_ms = self.now_ms();
            let mut rec = rec;
            if rec.status == MemberStatus::Active {
                rec.status = MemberStatus::Stale;
                self.member.change(now_ms, Change::Member(rec.clone()));
            }
            rec.status = MemberStatus::Removed;
            self.member.change(now_ms, Change::Member(rec.clone()));
            removed.push(rec.id.to_string());
            cleanup.insert(rec.id);
        }
        // Pending devices that never paired and went silent.
        for (id, s) in announce::latest_per_device(&anns) {
            if id == me
                || s.ann.state != AnnouncedState::Pending
                || self.member.core.group.status_of(&id).is_some()
            {
                continue;
            }
            let hb = heard
                .get(&(id.clone(), s.fingerprint.clone()))
                .copied()
                .unwrap_or(s.ann.heartbeat);
            if silence(now, hb) > policy {
                info!(device = %id, "pending device silent past the policy; cleaned up");
                removed.push(id.to_string());
                cleanup.insert(id);
            }
        }
        self.save()?;
        self.expiry_checked()?;
        // Folders only after the ops are durably recorded.
        if !cleanup.is_empty() {
            self.clean_up_folders(t, &anns, &cleanup).await?;
        }
        Ok(removed)
    }

    /// Deletes the announcements and inboxes of `ids` that still exist.
    async fn clean_up_folders<T: Transport>(
        &mut self,
        t: &mut T,
        anns: &[SeenAnnouncement],
        ids: &BTreeSet<DeviceId>,
    ) -> Result<()> {
        let pattern = format!("{}{}*", self.info.folders.prefix, ANNOUNCE_BASE);
        let inboxes: BTreeSet<DeviceId> = t
            .list("", &pattern)
            .await?
            .into_iter()
            .filter_map(|f| self.info.folders.inbox_owner(&f.name))
            .collect();
        for id in ids {
            let announced: Vec<SeenAnnouncement> = anns
                .iter()
                .filter(|s| &s.ann.device_id == id)
                .cloned()
                .collect();
            if announced.is_empty() && !inboxes.contains(id) {
                continue;
            }
            debug!(device = %id, "deleting the folders of a removed or expired device");
            self.delete_device_folders(t, &announced, id).await?;
        }
        Ok(())
    }
}

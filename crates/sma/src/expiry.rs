//! Expiry: members silent for longer than the policy become `stale` and then
//! `removed` (two ops, replicated like any change), and their folders go.
//!
//! Silence is measured from the device's newest *authenticated* sign of
//! life: the `sent_at` of its sealed messages, the signs of life other
//! members relay, and the heartbeats of announcements signed with its own
//! key — never from when this device last synced, and never from what the
//! provider could delete (PROTOCOL 14). The engine decides; this module
//! reads the announcements and cleans up the folders.

use std::collections::BTreeSet;

use sma_imap::Transport;
use sma_proto::engine::liveness::{Cleanup, HEARTBEAT_FUTURE_SLACK_SECS};
use sma_proto::folders::ANNOUNCE_BASE;
use sma_proto::payload::AnnouncedState;
use sma_proto::DeviceId;
use tracing::{debug, info};

use crate::announce::{self, SeenAnnouncement};
use crate::device::Device;
use crate::error::Result;

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
        let now = self.timestamp();
        let anns = announce::read_all(t, &self.info.folders.announce())
            .await?
            .unwrap_or_default();
        self.engine.note_announcements(
            anns.iter()
                .map(|s| (&s.ann.device_id, s.fingerprint.as_str(), s.ann.heartbeat)),
            now,
        );
        let expired = self.engine.expire(now, policy)?;
        let latest = announce::latest_per_device(&anns, now.as_secs());
        let pending = latest
            .values()
            .filter(|s| s.ann.state == AnnouncedState::Pending)
            .map(|s| {
                let hb = s
                    .ann
                    .heartbeat
                    .min(now.as_secs() + HEARTBEAT_FUTURE_SLACK_SECS);
                (&s.ann.device_id, hb)
            });
        let silent = self.engine.silent_pending(pending, now, policy);
        self.save()?;
        self.expiry_checked()?;
        for id in &silent {
            info!(device = %id, "pending device silent past the policy; cleaned up");
        }
        // Folders only after the ops are durably recorded.
        self.clean_up_folders(t, &anns, &silent).await?;
        Ok(expired
            .iter()
            .chain(&silent)
            .map(|id| id.to_string())
            .collect())
    }

    /// Deletes the folders of silent pending devices; for removed members,
    /// deletes their announcements and keeps their inbox with our removal
    /// notice for a while, then deletes it too.
    async fn clean_up_folders<T: Transport>(
        &mut self,
        t: &mut T,
        anns: &[SeenAnnouncement],
        silent_pending: &BTreeSet<DeviceId>,
    ) -> Result<()> {
        let pattern = format!("{}{}*", self.info.folders.prefix, ANNOUNCE_BASE);
        let inboxes: BTreeSet<DeviceId> = t
            .list("", &pattern)
            .await?
            .into_iter()
            .filter_map(|f| self.info.folders.inbox_owner(&f.name))
            .collect();
        let announced = |id: &DeviceId| anns.iter().any(|s| &s.ann.device_id == id);
        for id in silent_pending {
            self.delete_device_folders(t, anns, id).await?;
        }
        for cleanup in self.engine.removed_cleanup(self.timestamp()) {
            match cleanup {
                Cleanup::Notify(id) => {
                    if announced(&id) {
                        self.delete_announcements_of(t, anns, &id).await?;
                    }
                    if inboxes.contains(&id) {
                        self.leave_removal_notice(t, &id).await?;
                    }
                }
                Cleanup::Delete(id) => {
                    if announced(&id) || inboxes.contains(&id) {
                        debug!(device = %id, "deleting the folders of a removed device");
                        self.delete_device_folders(t, anns, &id).await?;
                    }
                }
            }
        }
        Ok(())
    }
}

//! `status` and `devices`: what this device knows about the group and server.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sma_imap::Transport;
use sma_proto::folders::ANNOUNCE_BASE;
use sma_proto::payload::AnnouncedState;
use sma_proto::state::MemberStatus;
use sma_proto::sync::Withheld;
use sma_proto::timefmt;
use sma_proto::DeviceId;

use crate::announce;
use crate::device::Device;
use crate::error::Result;

/// One device as `devices` and `status` show it.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceView {
    /// Device id.
    pub device_id: String,
    /// Name.
    pub name: String,
    /// `active`, `stale`, `removed` or `pending`.
    pub state: String,
    /// Latest heartbeat (RFC 3339).
    pub last_seen: String,
    /// Whether this is us.
    #[serde(rename = "self")]
    pub is_self: bool,
}

/// Server facts.
#[derive(Clone, Debug, Serialize)]
pub struct ServerView {
    /// Host.
    pub host: String,
    /// Capabilities after login.
    pub capabilities: Vec<String>,
    /// Personal namespace prefix.
    pub namespace_prefix: String,
    /// Hierarchy delimiter.
    pub delimiter: Option<String>,
}

/// An SMA folder and its message count.
#[derive(Clone, Debug, Serialize)]
pub struct FolderView {
    /// Folder name.
    pub name: String,
    /// Messages in it.
    pub messages: u32,
}

/// The `status` report.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    /// Our id.
    pub device_id: String,
    /// Our name.
    pub name: String,
    /// Our role.
    pub role: String,
    /// The account.
    pub account: String,
    /// Server facts.
    pub server: ServerView,
    /// Every known device, us included.
    pub members: Vec<DeviceView>,
    /// SMA folders on the server.
    pub folders: Vec<FolderView>,
    /// Entries in the replicated keyring.
    pub keyring_size: usize,
    /// What keeps ops from arriving (PROTOCOL 11.2); empty when in sync.
    pub sync_warnings: Vec<SyncWarning>,
}

/// Something that keeps ops from arriving (PROTOCOL 11.2).
#[derive(Clone, Debug, Serialize)]
pub struct SyncWarning {
    /// `gap` (the device's messages skip ops we never got) or `stalled_ack`
    /// (a device that still announces itself does not acknowledge ours).
    pub kind: &'static str,
    /// The other device.
    pub device_id: String,
    /// Since when (RFC 3339).
    pub since: String,
    /// What it means and what to do, for people.
    pub message: String,
}

/// A peer's acknowledgement is reported as stalled only while its
/// announcement is at most this old: an absent device is expiry's business.
const FRESH_ANNOUNCEMENT_SECS: u64 = 7 * 86_400;

impl Device {
    /// Every device known from the group state and the announcements folder.
    pub async fn devices<T: Transport>(&mut self, t: &mut T) -> Result<Vec<DeviceView>> {
        Ok(self.device_views(t).await?.0)
    }

    /// The device views, and per member id its latest heartbeat (seconds).
    async fn device_views<T: Transport>(
        &mut self,
        t: &mut T,
    ) -> Result<(Vec<DeviceView>, BTreeMap<DeviceId, u64>)> {
        let mut heartbeats = BTreeMap::new();
        let anns = announce::read_all(t, &self.info.folders.announce())
            .await?
            .unwrap_or_default();
        let latest = announce::latest_per_device(&anns);
        let group = &self.member.core.group;
        let mut out: BTreeMap<String, DeviceView> = BTreeMap::new();
        for rec in group.members.values() {
            let seen = latest
                .get(&rec.id)
                .filter(|s| s.fingerprint == rec.fingerprint)
                .map(|s| s.ann.heartbeat)
                .unwrap_or(0)
                .max(rec.heartbeat);
            heartbeats.insert(rec.id.clone(), seen);
            out.insert(
                rec.id.to_string(),
                DeviceView {
                    device_id: rec.id.to_string(),
                    name: rec.name.clone(),
                    state: rec.status.as_str().to_owned(),
                    last_seen: timefmt::rfc3339(seen),
                    is_self: &rec.id == self.id(),
                },
            );
        }
        for s in latest.values() {
            let id = s.ann.device_id.to_string();
            if out.contains_key(&id) {
                continue;
            }
            // Not in our group state: never trusted, shown as pending.
            let _ = AnnouncedState::Pending;
            out.insert(
                id.clone(),
                DeviceView {
                    device_id: id,
                    name: s.ann.name.clone(),
                    state: MemberStatus::Pending.as_str().to_owned(),
                    last_seen: timefmt::rfc3339(s.ann.heartbeat),
                    is_self: &s.ann.device_id == self.id(),
                },
            );
        }
        if !out.contains_key(self.id().as_str()) {
            out.insert(
                self.id().to_string(),
                DeviceView {
                    device_id: self.id().to_string(),
                    name: self.info.name.clone(),
                    state: self
                        .info
                        .role
                        .as_str()
                        .replace("founder", "active")
                        .replace("member", "active"),
                    last_seen: timefmt::rfc3339(self.info.announced_at),
                    is_self: true,
                },
            );
        }
        Ok((out.into_values().collect(), heartbeats))
    }

    /// Gaps and stalled acknowledgements, worded for `status`.
    fn sync_warnings(&self, heartbeats: &BTreeMap<DeviceId, u64>) -> Vec<SyncWarning> {
        let now = self.now();
        let fresh: BTreeSet<DeviceId> = self
            .member
            .peers()
            .into_iter()
            .filter(|p| {
                heartbeats
                    .get(p)
                    .is_some_and(|&h| h.saturating_add(FRESH_ANNOUNCEMENT_SECS) >= now)
            })
            .collect();
        let book = &self.member.core.book;
        book.withheld(&fresh, self.now_ms())
            .into_iter()
            .map(|w| match w {
                Withheld::Gap { sender, since_ms, applied } => SyncWarning {
                    kind: "gap",
                    device_id: sender.to_string(),
                    since: timefmt::rfc3339(since_ms / 1000),
                    message: format!(
                        "sync messages from {sender} skip its ops after #{applied}, which this device never \
                         received (was its store restored from an older copy?); they are not sent again: to \
                         get the whole state, pair this device anew (`sma leave`, then `sma init` and `sma join`)"
                    ),
                },
                Withheld::StalledAck { peer, acked, oldest_unacked_ms } => SyncWarning {
                    kind: "stalled_ack",
                    device_id: peer.to_string(),
                    since: timefmt::rfc3339(oldest_unacked_ms / 1000),
                    message: format!(
                        "{peer} announces itself but has not acknowledged this device's changes after #{acked} \
                         for over 7 days; check that it runs `sma sync` and can read its inbox"
                    ),
                },
            })
            .collect()
    }

    /// The `status` report.
    pub async fn status<T: Transport>(&mut self, t: &mut T) -> Result<StatusReport> {
        let ns = t.namespace().await?;
        let (members, heartbeats) = self.device_views(t).await?;
        let pattern = format!("{}{}*", self.info.folders.prefix, ANNOUNCE_BASE);
        let mut folders = Vec::new();
        for f in t.list("", &pattern).await? {
            if !f.is_selectable() {
                continue;
            }
            let messages = t.status(&f.name).await?.messages;
            folders.push(FolderView {
                name: f.name,
                messages,
            });
        }
        folders.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(StatusReport {
            device_id: self.id().to_string(),
            name: self.info.name.clone(),
            role: self.info.role.as_str().to_owned(),
            account: self.info.account.clone(),
            server: ServerView {
                host: self.info.server.host.clone(),
                capabilities: t.capabilities().raw.clone(),
                namespace_prefix: ns.prefix,
                delimiter: ns.delimiter.map(String::from),
            },
            members,
            folders,
            keyring_size: self.member.core.group.keyring.len(),
            sync_warnings: self.sync_warnings(&heartbeats),
        })
    }

    /// The current account key: fingerprint, creation time, algorithm.
    pub fn account_key(&self) -> Result<Option<sma_crypto::AccountKey>> {
        self.require_member()?;
        let Some(rec) = self.member.core.group.current_account_key() else {
            return Ok(None);
        };
        Ok(Some(
            sma_crypto::AccountKey::from_armored_secret(&rec.secret)
                .map_err(sma_proto::ProtoError::from)?,
        ))
    }
}

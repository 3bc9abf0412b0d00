//! `status` and `devices`: what this device knows about the group and server.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sma_imap::{Capabilities, Transport, Uid};
use sma_proto::folders::ANNOUNCE_BASE;
use sma_proto::state::MemberStatus;
use sma_proto::sync::Withheld;
use sma_proto::timefmt;
use sma_proto::DeviceId;

use crate::announce;
use crate::config::{DeleteBehaviour, Role};
use crate::deletion::Deletion;
use crate::device::Device;
use crate::error::Result;
use crate::lifecycle::Incident;

/// A device's state as `devices` and `status` show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// A member.
    Active,
    /// Silent past the expiry policy, about to be removed.
    Stale,
    /// Removed (forced, expired or left).
    Removed,
    /// Announced, not paired (or this device, waiting to be paired).
    Pending,
}

impl DeviceState {
    /// The JSON and CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Active => "active",
            DeviceState::Stale => "stale",
            DeviceState::Removed => "removed",
            DeviceState::Pending => "pending",
        }
    }
}

impl From<MemberStatus> for DeviceState {
    fn from(s: MemberStatus) -> DeviceState {
        match s {
            MemberStatus::Pending => DeviceState::Pending,
            MemberStatus::Active => DeviceState::Active,
            MemberStatus::Stale => DeviceState::Stale,
            MemberStatus::Removed => DeviceState::Removed,
        }
    }
}

/// One device as `devices` and `status` show it (the CLI and the JSON-RPC
/// server both serialise this).
#[derive(Clone, Debug, Serialize)]
pub struct DeviceView {
    /// Device id.
    pub device_id: DeviceId,
    /// Name.
    pub name: String,
    /// Its state.
    pub state: DeviceState,
    /// Its newest authenticated sign of life (RFC 3339).
    pub last_seen: String,
    /// Whether this is us.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// For a removed device: members that have not acknowledged the
    /// removal yet (it is pending until this is empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removal_pending_at: Vec<DeviceId>,
}

/// Server facts.
#[derive(Clone, Debug, Serialize)]
pub struct ServerView {
    /// Host.
    pub host: String,
    /// Capabilities after login.
    pub capabilities: Vec<String>,
    /// Personal namespace prefix this device's folders use (from the
    /// server's `NAMESPACE` at `init`; `doctor` checks it still holds).
    pub namespace_prefix: String,
    /// Hierarchy delimiter, likewise.
    pub delimiter: Option<String>,
    /// How this device logs in: `password` or `oauth2` (a token command;
    /// the command itself is not shown).
    pub auth: &'static str,
    /// The JMAP session resource of a device made with `init --jmap`
    /// (absent for an IMAP device).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jmap_url: Option<String>,
    /// What deleting does on the server, and how sma deletes there.
    pub delete: DeleteView,
}

/// What deleting does on the server (PROTOCOL 3.5), as `status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct DeleteView {
    /// Whether an expunge outside the Trash only archives (Gmail).
    pub archives: bool,
    /// `capability` (X-GM-EXT-1), `probe` (at `init`) or `not-checked`.
    pub detected_by: &'static str,
    /// How sma deletes: `expunge`, or `trash` (move to the Trash, expunge
    /// there).
    pub method: String,
    /// The `\Trash` folder, if the server has one.
    pub trash: Option<String>,
    /// The `\All` folder, if the server has one.
    pub all_mail: Option<String>,
}

impl DeleteView {
    /// The view of `behaviour` on a server with `caps`.
    pub fn new(behaviour: &DeleteBehaviour, caps: &Capabilities) -> DeleteView {
        let method = Deletion::new(behaviour, caps).describe().to_owned();
        DeleteView {
            archives: behaviour.archives || method == "trash",
            detected_by: behaviour.detected_by.as_str(),
            method,
            trash: behaviour.trash.clone(),
            all_mail: behaviour.all_mail.clone(),
        }
    }
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
    /// Removals some member has not acknowledged yet.
    pub pending_removals: Vec<PendingRemovalView>,
    /// What happened to this device's folders (recreated after they
    /// vanished), newest last.
    pub incidents: Vec<Incident>,
}

/// A removal that has not reached every remaining member.
#[derive(Clone, Debug, Serialize)]
pub struct PendingRemovalView {
    /// The removed device.
    pub device_id: DeviceId,
    /// Members that have not acknowledged it.
    pub waiting_for: Vec<DeviceId>,
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
        Ok(self.device_views(t, None).await?.0)
    }

    /// The device views, and per member id its latest sign of life
    /// (seconds). `uid_next`: the announcements folder's, if known (its
    /// newest bodies then come with the headers).
    async fn device_views<T: Transport>(
        &mut self,
        t: &mut T,
        uid_next: Option<Uid>,
    ) -> Result<(Vec<DeviceView>, BTreeMap<DeviceId, u64>)> {
        let now = self.timestamp();
        let anns = announce::read_all_below(t, &self.info.folders.announce(), uid_next)
            .await?
            .unwrap_or_default();
        self.engine.note_announcements(
            anns.iter()
                .map(|s| (&s.ann.device_id, s.fingerprint.as_str(), s.ann.heartbeat)),
            now,
        );
        let latest = announce::latest_per_device(&anns, now.as_secs());
        let pending: BTreeMap<DeviceId, Vec<DeviceId>> = self
            .engine
            .pending_removals()
            .into_iter()
            .map(|p| (p.device, p.waiting_for))
            .collect();
        let mut heartbeats = BTreeMap::new();
        let mut out: BTreeMap<DeviceId, DeviceView> = BTreeMap::new();
        for rec in self.engine.group().members().values() {
            let seen = self.engine.last_alive(&rec.id);
            heartbeats.insert(rec.id.clone(), seen);
            out.insert(
                rec.id.clone(),
                DeviceView {
                    device_id: rec.id.clone(),
                    name: rec.name.clone(),
                    state: rec.status.into(),
                    last_seen: timefmt::rfc3339(seen),
                    is_self: &rec.id == self.id(),
                    removal_pending_at: pending.get(&rec.id).cloned().unwrap_or_default(),
                },
            );
        }
        for s in latest.values() {
            // Not in our group state: never trusted, shown as pending.
            out.entry(s.ann.device_id.clone())
                .or_insert_with(|| DeviceView {
                    device_id: s.ann.device_id.clone(),
                    name: s.ann.name.clone(),
                    state: DeviceState::Pending,
                    last_seen: timefmt::rfc3339(s.ann.heartbeat),
                    is_self: &s.ann.device_id == self.id(),
                    removal_pending_at: Vec::new(),
                });
        }
        let own_state = match self.info.role {
            Role::Founder | Role::Member => DeviceState::Active,
            Role::Pending => DeviceState::Pending,
            Role::Removed => DeviceState::Removed,
        };
        out.entry(self.id().clone()).or_insert_with(|| DeviceView {
            device_id: self.id().clone(),
            name: self.info.name.clone(),
            state: own_state,
            last_seen: timefmt::rfc3339(self.info.announced_at),
            is_self: true,
            removal_pending_at: Vec::new(),
        });
        Ok((out.into_values().collect(), heartbeats))
    }

    /// Gaps and stalled acknowledgements, worded for `status`.
    fn sync_warnings(&self, heartbeats: &BTreeMap<DeviceId, u64>) -> Vec<SyncWarning> {
        let now = self.now();
        let fresh: BTreeSet<DeviceId> = self
            .engine
            .peers()
            .into_iter()
            .filter(|p| {
                heartbeats
                    .get(p)
                    .is_some_and(|&h| h.saturating_add(FRESH_ANNOUNCEMENT_SECS) >= now)
            })
            .collect();
        self.engine
            .withheld(&fresh, self.timestamp())
            .into_iter()
            .map(|w| warning(w, now))
            .collect()
    }

    /// The group's folders and their message counts: `LIST` with every
    /// `STATUS` (one command with `LIST-STATUS`, else two flights); and
    /// the announcements folder's UIDNEXT, if it was listed with it.
    async fn folder_views<T: Transport>(
        &mut self,
        t: &mut T,
    ) -> Result<(Vec<FolderView>, Option<Uid>)> {
        let pattern = format!("{}{}*", self.info.folders.prefix, ANNOUNCE_BASE);
        let announce = self.info.folders.announce();
        let mut folders = Vec::new();
        let mut announce_next = None;
        for (name, status) in t.list_status(&pattern).await? {
            let status = status?;
            if name == announce {
                announce_next = status.uid_next;
            }
            folders.push(FolderView {
                name,
                messages: status.messages,
            });
        }
        folders.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((folders, announce_next))
    }

    /// The `status` report. The folders are listed first (one command,
    /// sent behind the login): the announcements folder's UIDNEXT lets its
    /// bodies come with its headers.
    pub async fn status<T: Transport>(&mut self, t: &mut T) -> Result<StatusReport> {
        let (folders, announce_next) = self.folder_views(t).await?;
        self.remember_fallback(t);
        let (members, heartbeats) = self.device_views(t, announce_next).await?;
        Ok(StatusReport {
            device_id: self.id().to_string(),
            name: self.info.name.clone(),
            role: self.info.role.as_str().to_owned(),
            account: self.info.account.clone(),
            server: ServerView {
                host: self.info.server.host.clone(),
                jmap_url: self.info.server.jmap_url.clone(),
                capabilities: t.capabilities().raw.clone(),
                namespace_prefix: self.info.folders.prefix.clone(),
                delimiter: self.info.folders.delimiter.map(String::from),
                auth: if self.info.server.uses_oauth2() {
                    "oauth2"
                } else {
                    "password"
                },
                delete: DeleteView::new(&self.info.delete, t.capabilities()),
            },
            members,
            folders,
            keyring_size: self.engine.group().keyring().len(),
            sync_warnings: self.sync_warnings(&heartbeats),
            pending_removals: self
                .engine
                .pending_removals()
                .into_iter()
                .map(|p| PendingRemovalView {
                    device_id: p.device,
                    waiting_for: p.waiting_for,
                })
                .collect(),
            incidents: self.incidents()?,
        })
    }

    /// The current account key: fingerprint, creation time, algorithm.
    pub fn account_key(&self) -> Result<Option<sma_crypto::AccountKey>> {
        self.require_member()?;
        let Some(rec) = self.engine.group().current_account_key() else {
            return Ok(None);
        };
        Ok(Some(
            sma_crypto::AccountKey::from_armored_secret(rec.secret.expose())
                .map_err(sma_proto::ProtoError::from)?,
        ))
    }
}

/// A sync warning worded for people.
fn warning(w: Withheld, now: u64) -> SyncWarning {
    match w {
        Withheld::Gap {
            origin,
            since_ms,
            applied,
        } => SyncWarning {
            kind: "gap",
            device_id: origin.to_string(),
            since: timefmt::rfc3339(since_ms / 1000),
            message: format!(
                "this device holds ops of {origin} that skip ops after #{applied}, which no member has \
                 sent it yet; if this lasts (was its store restored from an older copy?), pair this \
                 device anew (`sma leave`, then `sma init` and `sma join`)"
            ),
        },
        Withheld::StalledAck {
            peer,
            acked,
            oldest_unacked_ms,
        } => SyncWarning {
            kind: "stalled_ack",
            device_id: peer.to_string(),
            since: timefmt::rfc3339(oldest_unacked_ms / 1000),
            message: format!(
                "{peer} announces itself but has not acknowledged this device's changes after #{acked} \
                 for over 7 days; check that it runs `sma sync` and can read its inbox"
            ),
        },
        Withheld::AfterRemoval {
            origin,
            final_seq,
            held,
        } => SyncWarning {
            kind: "after_removal",
            device_id: origin.to_string(),
            since: timefmt::rfc3339(now),
            message: format!(
                "this device applied changes that {origin} made after it was removed (its ops after \
                 #{final_seq}, up to #{held}) before it learnt of the removal; the other members refuse \
                 them. Compare `sma account-key show` and `sma keys list` with another member, and if \
                 they differ pair this device anew (`sma leave`, then `sma init` and `sma join`)"
            ),
        },
    }
}

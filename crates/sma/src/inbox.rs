//! Processing this device's inbox: verify, apply or queue, record, then delete.

use std::collections::BTreeSet;

use base64::Engine as _;
use sma_imap::{ImapError, Transport, Uid, UidRange};
use sma_proto::envelope::{peek_date, peek_marker, Envelope, Kind, Recipient};
use sma_proto::error::{InvalidMessage, PeerMisbehaved, ProtoError};
use sma_proto::payload::SealedContent;
use sma_proto::state::{Change, MemberStatus};
use sma_proto::timefmt;
use sma_store::{Durability, StoredApp};
use tracing::{debug, info, warn};

use crate::announce;
use crate::config::Role;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::events::{AppMessage, Event};

/// Messages from senders we do not (yet) know as members are kept this long,
/// in case their membership reaches us later; then deleted.
pub const UNKNOWN_SENDER_GRACE_SECS: u64 = 7 * 86_400;
/// Pairing messages older than this (by their Date) are leftovers; deleted.
pub const STALE_PAIRING_SECS: u64 = 86_400;
/// Application messages older than this are deleted undelivered: their
/// ids may have left the processed-id table, so they could be replays.
pub const APP_MAX_AGE_SECS: u64 = 30 * 86_400;
/// Processed message ids are remembered this long (replay protection).
pub const PROCESSED_HORIZON_SECS: u64 = 60 * 86_400;

/// What one pass over the inbox did.
#[derive(Debug, Default)]
pub struct InboxPass {
    /// New ops applied.
    pub applied: usize,
    /// Events to report.
    pub events: Vec<Event>,
    /// UIDNEXT of the inbox when the pass selected it: a higher UIDNEXT
    /// later means messages arrived after the pass read the inbox.
    pub uid_next: Option<u32>,
}

impl Device {
    /// Fetches, verifies and applies everything addressed to us in our inbox.
    pub(crate) async fn process_inbox<T: Transport>(&mut self, t: &mut T) -> Result<InboxPass> {
        self.require_member()?;
        let inbox = self.inbox();
        let state = match t.select(&inbox).await {
            Ok(s) => s,
            Err(ImapError::NoSuchFolder { .. }) => {
                self.inbox_missing(t).await?;
                t.select(&inbox).await?
            }
            Err(e) => return Err(e.into()),
        };
        if let Some((validity, _)) = self.store.read().folder_sync(&inbox)? {
            if validity != state.uid_validity {
                info!(folder = %inbox, "UIDVALIDITY changed; rescanning (message ids prevent double-apply)");
            }
        }
        let mut pass = InboxPass {
            uid_next: state.uid_next,
            ..InboxPass::default()
        };
        if state.exists == 0 {
            // Nothing to read, nothing to record: an idle round costs this
            // one SELECT (no FETCH, no store transaction).
            return Ok(pass);
        }
        let now = self.now();
        let mut delete: Vec<Uid> = Vec::new();
        let mut wanted: Vec<Uid> = Vec::new();
        let mut max_uid = 0;
        for h in t.fetch_headers(UidRange::all()).await? {
            max_uid = max_uid.max(h.uid);
            match peek_marker(&h.header) {
                Ok(m) if m.kind.is_pairing() => {
                    // Pairing runs for minutes; a day-old pairing message is
                    // a leftover of a dead attempt.
                    let date = peek_date(&h.header).unwrap_or(0);
                    if date + STALE_PAIRING_SECS < now {
                        debug!(uid = h.uid, kind = %m.kind, "stale pairing message; deleted");
                        delete.push(h.uid);
                    }
                }
                Ok(m) if !m.kind.is_sealed() => {
                    warn!(uid = h.uid, kind = %m.kind, "unexpected message kind in our inbox; deleted");
                    delete.push(h.uid);
                }
                Ok(m) if matches!(&m.to, Recipient::Device(d) if d != self.id()) => {
                    warn!(
                        uid = h.uid,
                        "message for another device in our inbox; deleted"
                    );
                    delete.push(h.uid);
                }
                Ok(m) if self.store.read().is_processed(m.id.as_str())? => {
                    debug!(uid = h.uid, id = %m.id, "already processed (duplicate or replay); deleted");
                    delete.push(h.uid);
                }
                Ok(m) if h.size as usize > m.kind.size_cap() => {
                    warn!(uid = h.uid, size = h.size, "oversized message; deleted");
                    delete.push(h.uid);
                }
                Ok(_) => wanted.push(h.uid),
                Err(InvalidMessage::UnsupportedVersion(v)) => {
                    debug!(uid = h.uid, version = %v, "message of another protocol version; left in place");
                }
                Err(InvalidMessage::UnknownKind(k)) => {
                    debug!(uid = h.uid, kind = %k, "message of an unknown kind; left in place");
                }
                Err(e) => {
                    warn!(uid = h.uid, error = %e, "not a valid SMA message; deleted");
                    delete.push(h.uid);
                }
            }
        }
        let mut processed: Vec<String> = Vec::new();
        let mut apps: Vec<StoredApp> = Vec::new();
        let mut removed_self = false;
        for msg in t
            .fetch_messages(&wanted, sma_proto::envelope::MESSAGE_SIZE_CAP as u32)
            .await?
        {
            let Some(raw) = msg.body else {
                warn!(uid = msg.uid, size = msg.size, "oversized message; deleted");
                delete.push(msg.uid);
                continue;
            };
            let env = match Envelope::parse(&raw) {
                Ok(env) => env,
                Err(e) => {
                    warn!(uid = msg.uid, error = %e, "unparseable message; deleted");
                    delete.push(msg.uid);
                    continue;
                }
            };
            if processed.iter().any(|p| p == env.marker.id.as_str()) {
                delete.push(msg.uid);
                continue;
            }
            let opened = match self.member.open(&env) {
                Ok(o) => o,
                Err(ProtoError::Peer(PeerMisbehaved::NotAMember(from))) => {
                    // Measured from our first sighting, not the sender-set Date.
                    let first = self.store.read().first_seen(env.marker.id.as_str(), now)?;
                    if first + UNKNOWN_SENDER_GRACE_SECS < now {
                        warn!(uid = msg.uid, %from, "message from a device that is not a member, past the grace period; deleted");
                        delete.push(msg.uid);
                    } else {
                        debug!(uid = msg.uid, %from, "message from a device not (yet) known as member; left for later");
                    }
                    continue;
                }
                Err(e) => {
                    warn!(uid = msg.uid, from = %env.marker.from, error = %e, "message rejected (quarantined); deleted");
                    delete.push(msg.uid);
                    continue;
                }
            };
            let from = opened.marker.from.clone();
            match opened.payload.content {
                SealedContent::Ops(_) if opened.marker.kind == Kind::App => {
                    warn!(
                        uid = msg.uid,
                        "state operations under the app kind; deleted"
                    );
                    delete.push(msg.uid);
                    continue;
                }
                SealedContent::Ops(body) => {
                    let before = Snapshot::of(&self.member.core.group, &body.ops);
                    let had_gap = self.member.core.book.gap_since.contains_key(&from);
                    let got = self.member.receive_ops(&from, &body, self.clock.now_ms());
                    if !had_gap && self.member.core.book.gap_since.contains_key(&from) {
                        warn!(%from, "this member's sync messages skip ops this device never received (see `sma status`)");
                    }
                    if got.rejected > 0 {
                        warn!(%from, rejected = got.rejected, "ops naming another origin were ignored");
                    }
                    if !got.new_ops.is_empty() {
                        pass.applied += got.new_ops.len();
                        pass.events.push(Event::Applied {
                            from: from.to_string(),
                            ops: got.new_ops.len(),
                        });
                        for op in &got.new_ops {
                            describe_change(
                                &before,
                                &self.member.core.group,
                                &op.change,
                                &mut pass.events,
                            );
                        }
                    }
                    if self.member.status() == Some(MemberStatus::Removed) {
                        removed_self = true;
                    }
                }
                SealedContent::App(app) => {
                    if opened.marker.kind != Kind::App {
                        warn!(
                            uid = msg.uid,
                            "application content under another kind; deleted"
                        );
                        delete.push(msg.uid);
                        continue;
                    }
                    // Older than the replay-protection horizon could be a
                    // replay whose id we no longer remember: never deliver.
                    if opened.payload.sent_at + APP_MAX_AGE_SECS < now {
                        warn!(
                            uid = msg.uid,
                            "application message older than {} days; deleted undelivered",
                            APP_MAX_AGE_SECS / 86_400
                        );
                        delete.push(msg.uid);
                        continue;
                    }
                    apps.push(StoredApp {
                        message_id: env.marker.id.to_string(),
                        sender: from.to_string(),
                        kind: app.app_kind,
                        body: app.body,
                        sent_at: opened.payload.sent_at,
                    });
                }
            }
            processed.push(env.marker.id.to_string());
            delete.push(msg.uid);
        }
        if removed_self {
            self.info.role = Role::Removed;
        }
        // Commit everything before any server-side deletion.
        let info = serde_json::to_string(&self.info).unwrap_or_default();
        let validity = state.uid_validity;
        self.store
            .save_core_with(&mut self.member.core, Durability::Flushed, |db| {
                for id in &processed {
                    db.mark_processed(id, now)?;
                }
                for app in &apps {
                    db.push_app(app, now)?;
                }
                db.set_meta("device", &info)?;
                db.set_folder_sync(&inbox, validity, max_uid)?;
                db.forget_processed_before(now.saturating_sub(PROCESSED_HORIZON_SECS))?;
                db.forget_deferred_before(now.saturating_sub(2 * UNKNOWN_SENDER_GRACE_SECS))?;
                Ok::<_, Error>(())
            })?;
        if !delete.is_empty() {
            let unique: BTreeSet<Uid> = delete.into_iter().collect();
            t.delete_messages(&unique.into_iter().collect::<Vec<_>>())
                .await?;
        }
        if removed_self {
            return Err(self.mark_removed(" (the group state lists it as removed)"));
        }
        Ok(pass)
    }

    /// Our inbox is gone: removed (our announcement is gone too) or deleted
    /// by accident (recreate it). Never recreates it for a removed device.
    async fn inbox_missing<T: Transport>(&mut self, t: &mut T) -> Result<()> {
        let Some(anns) = announce::read_all(t, &self.info.folders.announce()).await? else {
            // The whole announcements folder is gone too: a folder accident,
            // not a removal (a removal deletes only the removed device's
            // announcement). Recreate both and announce again.
            if self.member.status() == Some(MemberStatus::Removed) {
                return Err(self.mark_removed(""));
            }
            warn!(folder = %self.inbox(), "our inbox and the announcements folder vanished; recreating them");
            crate::init::create_unsubscribed(t, &self.inbox()).await?;
            let founder = self.info.role == Role::Founder;
            return self
                .announce(t, sma_proto::payload::AnnouncedState::Member, founder)
                .await;
        };
        let me = self.member.me.fingerprint();
        let announced = anns
            .iter()
            .any(|s| s.ann.device_id == *self.id() && s.fingerprint == me);
        if !announced || self.member.status() == Some(MemberStatus::Removed) {
            return Err(self.mark_removed(
                " (its inbox folder and announcement were deleted by another member)",
            ));
        }
        warn!(folder = %self.inbox(), "our inbox folder vanished; recreating it");
        crate::init::create_unsubscribed(t, &self.inbox()).await
    }

    /// Application messages received and not yet handed out.
    pub fn pending_messages(&self) -> Result<Vec<AppMessage>> {
        Ok(self
            .store
            .read()
            .pending_apps()?
            .into_iter()
            .map(|a| AppMessage {
                from: a.sender,
                kind: a.kind,
                body_b64: base64::engine::general_purpose::STANDARD.encode(&a.body),
                sent_at: timefmt::rfc3339(a.sent_at),
                message_id: a.message_id,
            })
            .collect())
    }

    /// Marks application messages as handed out (they are forgotten).
    pub fn delivered(&mut self, messages: &[AppMessage]) -> Result<()> {
        self.store.write(|db| {
            for m in messages {
                db.remove_app(&m.message_id)?;
            }
            Ok::<_, Error>(())
        })
    }
}

/// What the ops of one message may change, as it was before applying them
/// (a copy of the whole group state would cost megabytes per message).
struct Snapshot {
    members: std::collections::BTreeMap<sma_proto::DeviceId, Option<MemberStatus>>,
    peers: std::collections::BTreeMap<String, Option<sma_proto::state::PeerState>>,
    account_key: Option<String>,
}

impl Snapshot {
    fn of(group: &sma_proto::state::GroupState, ops: &[sma_proto::state::Op]) -> Snapshot {
        let mut snap = Snapshot {
            members: Default::default(),
            peers: Default::default(),
            account_key: group.current_account_key().map(|k| k.fingerprint.clone()),
        };
        for op in ops {
            match &op.change {
                Change::Member(rec) => {
                    snap.members
                        .insert(rec.id.clone(), group.status_of(&rec.id));
                }
                Change::Peer(p) => {
                    let addr = p.addr.to_lowercase();
                    let old = group.keyring.get(&addr).cloned();
                    snap.peers.insert(addr, old);
                }
                Change::AccountKey(_) | Change::PreferEncrypt(_) => {}
            }
        }
        snap
    }
}

fn describe_change(
    before: &Snapshot,
    after: &sma_proto::state::GroupState,
    change: &Change,
    events: &mut Vec<Event>,
) {
    match change {
        Change::Member(rec) => {
            let was = before.members.get(&rec.id).copied().flatten();
            let now = after.status_of(&rec.id);
            if now == Some(MemberStatus::Active) && was != Some(MemberStatus::Active) {
                events.push(Event::DeviceAdded {
                    device_id: rec.id.to_string(),
                    name: rec.name.clone(),
                });
            }
            if now == Some(MemberStatus::Removed) && was != Some(MemberStatus::Removed) {
                events.push(Event::DeviceRemoved {
                    device_id: rec.id.to_string(),
                });
            }
        }
        Change::Peer(p) => {
            let addr = p.addr.to_lowercase();
            let was = before.peers.get(&addr).and_then(|p| p.as_ref());
            if was != after.keyring.get(&addr) {
                events.push(Event::KeyUpdated {
                    addr: p.addr.clone(),
                });
            }
        }
        Change::AccountKey(_) => {
            if before.account_key.as_ref() != after.current_account_key().map(|k| &k.fingerprint) {
                events.push(Event::KeyUpdated {
                    addr: "account".into(),
                });
            }
        }
        Change::PreferEncrypt(_) => {}
    }
}

//! One pass over the own inbox (PROTOCOL 13): the driver shows each header,
//! then the bodies of the messages the engine asked for, and gets back what
//! to record and what to delete. Every message is judged on its own; none
//! blocks the ones behind it, and no input makes the pass fail.

use std::collections::{BTreeMap, BTreeSet};

use tracing::{debug, warn};

use super::{Engine, StateEvent};
use crate::envelope::{peek_date, peek_marker, Body, Envelope, Kind, Recipient};
use crate::error::{chain, InvalidMessage, PeerMisbehaved, ProtoError};
use crate::ids::{DeviceId, MessageId};
use crate::payload::{self, RemovalNotice, SealedContent};
use crate::state::{Change, MemberStatus};
use crate::time::Timestamp;

/// Messages from senders we do not (yet) know as members are kept this long
/// after their first sighting, in case their membership reaches us later.
pub const UNKNOWN_SENDER_GRACE_SECS: u64 = 7 * 86_400;
/// Pairing messages older than this (by their Date) are leftovers; deleted.
pub const STALE_PAIRING_SECS: u64 = 86_400;
/// Application messages older than this are deleted undelivered: their ids
/// may have left the processed-id table, so they could be replays.
pub const APP_MAX_AGE_SECS: u64 = 30 * 86_400;
/// Processed message ids are remembered this long (replay protection).
pub const PROCESSED_HORIZON_SECS: u64 = 60 * 86_400;

/// What the store remembers about message ids, asked during a pass.
pub trait MessageMemory {
    /// The store's error.
    type Error;
    /// Whether a message with this id was applied or queued already.
    fn was_processed(&self, id: &MessageId) -> Result<bool, Self::Error>;
    /// What was recorded when the message was deferred, if it was.
    fn deferred(&self, id: &MessageId) -> Result<Option<Deferral>, Self::Error>;
}

/// A message from a sender we do not know, left in place for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deferral {
    /// When we first saw it (Unix seconds).
    pub first_seen: u64,
    /// The size of our member list when we last opened it and could not
    /// place its sender: until the list grows, it is not downloaded again.
    pub tried_at_members: u64,
}

/// What the engine wants done with a message, judged by its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Triage {
    /// Download it and show it to [`InboxPass::accept`].
    Fetch,
    /// Nothing more (it is deleted or left, as [`PassOutcome`] says).
    Done,
}

/// An application message to hand out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedApp {
    /// Its message id.
    pub message_id: MessageId,
    /// The sender.
    pub sender: DeviceId,
    /// Application kind.
    pub kind: String,
    /// The body.
    pub body: Vec<u8>,
    /// When it was sent (Unix seconds, the sender's clock).
    pub sent_at: u64,
}

/// Everything one pass decided. The driver commits `processed`, `apps`,
/// `deferred` and the state in one transaction, and only then deletes.
#[derive(Debug, Default)]
pub struct PassOutcome {
    /// UIDs to delete.
    pub delete: BTreeSet<u32>,
    /// Ids of the messages applied or queued.
    pub processed: Vec<MessageId>,
    /// Application messages to queue.
    pub apps: Vec<ReceivedApp>,
    /// Deferrals to record (first sightings, and ids opened without result).
    pub deferred: BTreeMap<MessageId, Deferral>,
    /// What changed in the group state.
    pub events: Vec<StateEvent>,
    /// New ops applied.
    pub applied: usize,
    /// Of those, ops relayed by another member than their origin.
    pub relayed: usize,
    /// Set when an authenticated op removed this device: the op's origin.
    pub removed_by: Option<DeviceId>,
    /// A removal notice arrived that does not prove our removal. Whoever
    /// sent it (a device removed before it removed us, or the provider) may
    /// have deleted our announcement too: the driver checks that it is
    /// still there and announces again if not.
    pub unproven_removal: bool,
}

/// One pass over the own inbox.
pub struct InboxPass<'e> {
    engine: &'e mut Engine,
    now: Timestamp,
    /// Ids applied or queued in this pass (a server may show one message
    /// twice). Only those: a broken or forged copy that is rejected must
    /// not make the genuine one behind it a duplicate.
    seen: BTreeSet<MessageId>,
    out: PassOutcome,
}

impl Engine {
    /// Starts a pass over the own inbox at `now`.
    pub fn inbox_pass(&mut self, now: Timestamp) -> InboxPass<'_> {
        InboxPass {
            engine: self,
            now,
            seen: BTreeSet::new(),
            out: PassOutcome::default(),
        }
    }
}

impl InboxPass<'_> {
    /// Judges a message by its header (PROTOCOL 13.2 rows 1–11), asking
    /// `memory` what the store knows about its id.
    pub fn triage<M: MessageMemory>(
        &mut self,
        uid: u32,
        size: u32,
        header: &[u8],
        memory: &M,
    ) -> Result<Triage, M::Error> {
        let marker = match peek_marker(header) {
            Ok(m) => m,
            Err(InvalidMessage::UnsupportedVersion(v)) => {
                debug!(uid, version = %v, "message of another protocol version; left in place");
                return Ok(Triage::Done);
            }
            Err(InvalidMessage::UnknownKind(k)) => {
                debug!(uid, kind = %k, "message of an unknown kind; left in place");
                return Ok(Triage::Done);
            }
            Err(e) => return Ok(self.delete(uid, &format!("not a valid SMA message ({e})"))),
        };
        let now = self.now.as_secs();
        if marker.kind.is_pairing() {
            // Pairing runs for minutes; a day-old pairing message is a
            // leftover of a dead attempt.
            let date = peek_date(header).unwrap_or(0);
            if date + STALE_PAIRING_SECS < now {
                debug!(uid, kind = %marker.kind, "stale pairing message; deleted");
                self.out.delete.insert(uid);
            }
            return Ok(Triage::Done);
        }
        if !marker.kind.is_sealed() && marker.kind != Kind::Remove {
            return Ok(self.delete(
                uid,
                &format!("unexpected {} message in our inbox", marker.kind),
            ));
        }
        if matches!(&marker.to, Recipient::Device(d) if d != self.engine.id()) {
            return Ok(self.delete(uid, "message for another device in our inbox"));
        }
        if memory.was_processed(&marker.id)? {
            debug!(uid, id = %marker.id, "already processed (duplicate or replay); deleted");
            self.out.delete.insert(uid);
            return Ok(Triage::Done);
        }
        if size as usize > marker.kind.size_cap() {
            return Ok(self.delete(uid, "oversized message"));
        }
        if marker.kind == Kind::Remove {
            return Ok(Triage::Fetch);
        }
        match self.engine.group().status_of(&marker.from) {
            Some(MemberStatus::Active) => Ok(Triage::Fetch),
            Some(status) => Ok(self.delete(
                uid,
                &format!(
                    "message from a device that is {}; not opened",
                    status.as_str()
                ),
            )),
            None => self.triage_unknown(uid, &marker.id, &marker.from, memory),
        }
    }

    /// A sender we do not know: perhaps a member whose admission has not
    /// reached us. Opened once per growth of our member list (it may
    /// introduce itself), deleted after the grace period.
    fn triage_unknown<M: MessageMemory>(
        &mut self,
        uid: u32,
        id: &MessageId,
        from: &DeviceId,
        memory: &M,
    ) -> Result<Triage, M::Error> {
        let now = self.now.as_secs();
        let members = self.engine.group().members().len() as u64;
        let known = memory.deferred(id)?;
        let first_seen = known.map_or(now, |d| d.first_seen);
        if first_seen + UNKNOWN_SENDER_GRACE_SECS < now {
            return Ok(self.delete(
                uid,
                &format!("message from {from}, not a member, past the grace period"),
            ));
        }
        if known.is_some_and(|d| d.tried_at_members == members) {
            debug!(uid, %from, "message from a device not (yet) known as member; left for later");
            return Ok(Triage::Done);
        }
        self.out.deferred.insert(
            id.clone(),
            Deferral {
                first_seen,
                tried_at_members: known.map_or(0, |d| d.tried_at_members),
            },
        );
        Ok(Triage::Fetch)
    }

    fn delete(&mut self, uid: u32, why: &str) -> Triage {
        warn!(uid, "{why}; deleted");
        self.out.delete.insert(uid);
        Triage::Done
    }

    /// Judges a downloaded message (`None`: it was larger than the cap)
    /// and applies or queues it (PROTOCOL 13.2 rows 9–17).
    pub fn accept(&mut self, uid: u32, raw: Option<&[u8]>) {
        let Some(raw) = raw else {
            self.delete(uid, "oversized message");
            return;
        };
        let env = match Envelope::parse(raw) {
            Ok(env) => env,
            Err(e) => {
                self.delete(uid, &format!("unparseable message ({e})"));
                return;
            }
        };
        if self.seen.contains(&env.marker.id) {
            self.out.delete.insert(uid);
            return;
        }
        if env.marker.kind == Kind::Remove {
            self.accept_notice(uid, &env);
            return;
        }
        let opened = match self.engine.open(&env) {
            Ok(o) => o,
            Err(ProtoError::Peer(PeerMisbehaved::NotAMember(from))) => {
                self.defer_opened(&env.marker.id, &from);
                return;
            }
            Err(e) => {
                let from = env.marker.from.clone();
                warn!(uid, %from, error = %chain(&e), "message rejected (quarantined); deleted");
                self.out.delete.insert(uid);
                return;
            }
        };
        self.deliver(uid, opened);
    }

    fn defer_opened(&mut self, id: &MessageId, from: &str) {
        debug!(%from, "message from a device not (yet) known as member; left for later");
        let now = self.now.as_secs();
        let members = self.engine.group().members().len() as u64;
        let entry = self.out.deferred.entry(id.clone()).or_insert(Deferral {
            first_seen: now,
            tried_at_members: members,
        });
        entry.tried_at_members = members;
    }

    fn deliver(&mut self, uid: u32, opened: super::accept::Opened) {
        let kind = opened.marker.kind;
        let from = opened.marker.from.clone();
        let sent_at = opened.payload.sent_at;
        self.out.deferred.remove(&opened.marker.id);
        match opened.payload.content {
            SealedContent::Ops(_) if kind == Kind::App => {
                self.delete(uid, "state operations under the app kind");
                return;
            }
            SealedContent::App(_) if kind != Kind::App => {
                self.delete(uid, "application content under another kind");
                return;
            }
            SealedContent::Ops(body) => {
                let got =
                    self.engine
                        .accept_ops(&from, sent_at, body, self.now, &mut self.out.events);
                self.out.applied += got.new_ops;
                self.out.relayed += got.relayed;
                if got.rejected > 0 {
                    warn!(%from, rejected = got.rejected, "ops that break the protocol's rules were ignored");
                }
                self.note_removed_self(&from);
            }
            SealedContent::App(app) => {
                if sent_at + APP_MAX_AGE_SECS < self.now.as_secs() {
                    self.delete(uid, "application message older than 30 days, undelivered");
                    return;
                }
                self.engine.heard(&from, sent_at, self.now);
                self.out.apps.push(ReceivedApp {
                    message_id: opened.marker.id.clone(),
                    sender: from,
                    kind: app.app_kind,
                    body: app.body,
                    sent_at,
                });
            }
        }
        self.seen.insert(opened.marker.id.clone());
        self.out.processed.push(opened.marker.id);
        self.out.delete.insert(uid);
    }

    /// A removal notice: signed ops that set our own record removed. Only
    /// ops of devices our state knows, verifying with their key, count.
    fn accept_notice(&mut self, uid: u32, env: &Envelope) {
        self.out.delete.insert(uid);
        let Body::Plain { payload } = &env.body else {
            warn!(uid, "removal notice without its JSON part; deleted");
            return;
        };
        let notice: RemovalNotice = match payload::from_json(payload) {
            Ok(n) => n,
            Err(e) => {
                warn!(uid, error = %e, "unreadable removal notice; deleted");
                return;
            }
        };
        let me = self.engine.id().clone();
        let mine = self.engine.identity().fingerprint();
        for op in notice.ops {
            let about_me = matches!(op.change(), Some(Change::Member(rec))
                if rec.id == me && rec.fingerprint == mine && rec.status == MemberStatus::Removed);
            // Only an active member may remove us: a removed device still
            // holds its key.
            if !about_me || !self.engine.group().is_active(op.origin()) {
                continue;
            }
            let verified = self
                .engine
                .cert_of(op.origin())
                .and_then(|cert| op.verify(&cert))
                .and_then(|()| op.check_rules());
            match verified {
                Ok(()) => {
                    let origin = op.origin().clone();
                    self.engine
                        .apply_received(&op, self.now, &mut self.out.events);
                    self.engine.core.book.take_op(&me, op, self.now);
                    self.note_removed_self(&origin);
                }
                Err(e) => warn!(uid, error = %chain(&e), "forged removal notice; deleted"),
            }
        }
        if self.out.removed_by.is_none() {
            warn!(uid, from = %env.marker.from, "removal notice that does not prove our removal; deleted");
            self.out.unproven_removal = true;
        }
    }

    /// Notes our removal, naming the origin of the op that removed us
    /// (`carrier` if that op is not known).
    fn note_removed_self(&mut self, carrier: &DeviceId) {
        if !self.engine.is_removed() || self.out.removed_by.is_some() {
            return;
        }
        let origin = self
            .engine
            .core
            .removals
            .get(self.engine.id())
            .and_then(|r| r.ops.first())
            .map(|op| op.origin().clone());
        self.out.removed_by = Some(origin.unwrap_or_else(|| carrier.clone()));
    }

    /// Ends the pass.
    pub fn finish(self) -> PassOutcome {
        let peers = self.engine.peers();
        let me = self.engine.id().clone();
        self.engine.core.book.prune(&me, &peers, self.now);
        self.out
    }
}

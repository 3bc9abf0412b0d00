//! Per-origin sequence numbers, acknowledgements, relaying, retransmission
//! and coalescing (PROTOCOL 11).
//!
//! A device keeps every op it holds — its own and those of other origins —
//! in its *relay log* until every active peer has acknowledged it (and for
//! at least [`KEEP_OPS_MS`]). Each sync message to a peer carries every op
//! in the log the peer has not acknowledged, whatever its origin, so a
//! newer message supersedes (and replaces, on the server) an older
//! unprocessed one: at most one sync message per sender per inbox, a
//! dropped message is repaired by the next one, and an op reaches every
//! member as long as any chain of members delivers it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::dirty::Dirty;
use crate::ids::{DeviceId, MessageId};
use crate::ops::{OpId, SignedOp};
use crate::time::Timestamp;

/// Resend unacknowledged ops after this many seconds even if nothing new
/// happened and the previous message is still in place.
pub const RETRANSMIT_AFTER_SECS: u64 = 3600;

/// Most bytes of ops in one sync message, so that the sealed message stays
/// well under the 1 MiB cap; the remainder follows after the ack.
pub const OPS_BUDGET_BYTES: usize = 600 * 1024;

/// Ops stay in the log at least this long even when every peer acked them,
/// so a device that joins meanwhile still receives them.
pub const KEEP_OPS_MS: u64 = 7 * 86_400 * 1000;

/// An acknowledgement counts as stalled (PROTOCOL 11.2) when an own op the
/// peer has not acknowledged is older than this.
pub const STALLED_ACK_MS: u64 = 7 * 86_400 * 1000;

/// Another origin's op is relayed on its own once this device has held it
/// this long without the peer acknowledging it (the origin usually delivers
/// it first); at once when its origin is no longer an active member.
pub const RELAY_AFTER_SECS: u64 = 600;

/// Most our own seq moves up when a peer reports holding more of our ops
/// than we wrote (a lying report cannot exhaust the numbers).
pub const MAX_SEQ_JUMP: u64 = 1 << 20;

/// Something that keeps ops from arriving, for `status` and the log
/// (PROTOCOL 11.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Withheld {
    /// Ops of `origin` arrived that do not follow on from what we applied,
    /// and nobody has sent the missing ones yet.
    Gap {
        /// The origin.
        origin: DeviceId,
        /// When we first noticed (ms).
        since_ms: u64,
        /// Up to where we applied its ops.
        applied: u64,
    },
    /// This device applied ops `origin` wrote after its removal (before it
    /// learnt of the removal); everyone else refuses them.
    AfterRemoval {
        /// The removed device.
        origin: DeviceId,
        /// The last of its ops the removal allows.
        final_seq: u64,
        /// The highest of its ops this device applied.
        held: u64,
    },
    /// `peer` has not acknowledged an own op older than [`STALLED_ACK_MS`].
    StalledAck {
        /// The peer.
        peer: DeviceId,
        /// Its acknowledgement of our ops.
        acked: u64,
        /// Stamp (ms) of our oldest op it has not acknowledged.
        oldest_unacked_ms: u64,
    },
}

/// Our latest sync message in a peer's inbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRef {
    /// Its message id.
    pub message_id: MessageId,
    /// Its UID in the peer's inbox, when the server told us (APPENDUID).
    pub uid: Option<u32>,
    /// UIDVALIDITY of the peer's inbox for that UID.
    pub uid_validity: Option<u32>,
    /// Per origin, the highest seq it carried.
    #[serde(default)]
    pub covers: BTreeMap<DeviceId, u64>,
    /// When it was sent (Unix seconds).
    pub at: u64,
    /// Version 1 records: the highest own seq carried.
    #[serde(default, skip_serializing)]
    pub upto: Option<u64>,
}

/// One op in the relay log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The op as its origin signed it.
    pub op: SignedOp,
    /// When this device first held it (Unix seconds; for relay delays).
    pub held_since: u64,
}

#[derive(Serialize, Deserialize)]
struct LogRow {
    /// The op's wire form (`{"op": …, "sig": …}`).
    signed: SignedOp,
    held: u64,
}

impl LogEntry {
    /// The JSON of a stored row.
    pub fn to_row_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&LogRow {
            signed: self.op.clone(),
            held: self.held_since,
        })
    }

    /// Reads a stored row; version 1 rows (a bare, unsigned op) come back
    /// with an empty signature for their origin to sign.
    pub fn from_row_json(json: &str) -> Result<LogEntry, serde_json::Error> {
        match serde_json::from_str::<LogRow>(json) {
            Ok(row) => Ok(LogEntry {
                op: row.signed,
                held_since: row.held,
            }),
            Err(e) => {
                let legacy: serde_json::Value = serde_json::from_str(json)?;
                if legacy.get("origin").is_none() {
                    return Err(e);
                }
                let op = SignedOp::from_parts(json.to_owned(), Vec::new())
                    .map_err(serde::de::Error::custom)?;
                let held_since = op.stamp().ms / 1000;
                Ok(LogEntry { op, held_since })
            }
        }
    }
}

/// Sync bookkeeping of one device (persisted with the group state).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncBook {
    last_seq: u64,
    /// Ops held for relaying, by (origin, seq); stored as rows of their own.
    #[serde(skip)]
    log: BTreeMap<OpId, LogEntry>,
    #[serde(skip)]
    log_dirty: Dirty<OpId>,
    /// Per origin other than us, the highest seq applied without gap.
    #[serde(alias = "received")]
    applied: BTreeMap<DeviceId, u64>,
    /// Per peer, its applied vector as it last reported it (max-merged).
    #[serde(default)]
    peer_applied: BTreeMap<DeviceId, BTreeMap<DeviceId, u64>>,
    /// Version 1: per peer, its acknowledgement of our own ops.
    #[serde(default, skip_serializing)]
    peer_acks: BTreeMap<DeviceId, u64>,
    ack_due: BTreeSet<DeviceId>,
    last_sent: BTreeMap<DeviceId, SentRef>,
    /// Peers whose entry in `peer_applied` is our assumption (a joiner we
    /// welcomed), not their report; their first report replaces it.
    #[serde(default, alias = "assumed_acks")]
    assumed: BTreeSet<DeviceId>,
    /// Per origin, since when (ms) we hold ops of it above a missing one.
    #[serde(default)]
    gap_since: BTreeMap<DeviceId, u64>,
}

/// The ops of one sync message to a peer, chosen by [`SyncBook::chunk_for`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    /// The ops, own first, then by origin, each ascending.
    pub ops: Vec<SignedOp>,
    /// Per origin, the highest seq among them.
    pub covers: BTreeMap<DeviceId, u64>,
}

impl SyncBook {
    /// Highest seq of our own ops.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Per origin other than us, the highest seq applied without gap.
    pub fn applied(&self) -> &BTreeMap<DeviceId, u64> {
        &self.applied
    }

    /// What `peer` reported it applied (our assumption for a welcomed joiner).
    pub fn peer_applied(&self, peer: &DeviceId) -> Option<&BTreeMap<DeviceId, u64>> {
        self.peer_applied.get(peer)
    }

    /// Whether `peer`'s vector is our assumption, not its report.
    pub fn is_assumed(&self, peer: &DeviceId) -> bool {
        self.assumed.contains(peer)
    }

    /// The relay log.
    pub fn log(&self) -> &BTreeMap<OpId, LogEntry> {
        &self.log
    }

    /// Our latest sync message to `peer`.
    pub fn last_sent(&self, peer: &DeviceId) -> Option<&SentRef> {
        self.last_sent.get(peer)
    }

    /// Peers we owe an acknowledgement.
    pub fn ack_due(&self) -> &BTreeSet<DeviceId> {
        &self.ack_due
    }

    /// Whether we hold the op `id` (applied, or in the log).
    pub fn holds(&self, me: &DeviceId, id: &OpId) -> bool {
        let (origin, seq) = id;
        if origin == me {
            return *seq <= self.last_seq;
        }
        *seq <= self.applied.get(origin).copied().unwrap_or(0) || self.log.contains_key(id)
    }

    /// The highest seq of `origin`'s ops we hold (applied, or in the log).
    pub fn highest_held(&self, origin: &DeviceId) -> u64 {
        let applied = self.applied.get(origin).copied().unwrap_or(0);
        let logged = self
            .log
            .range((origin.clone(), 0)..=(origin.clone(), u64::MAX))
            .next_back()
            .map_or(0, |((_, seq), _)| *seq);
        applied.max(logged)
    }

    /// Records a new own op (already applied to the state).
    pub fn push_own(&mut self, op: SignedOp, now: Timestamp) {
        self.last_seq = self.last_seq.max(op.seq());
        self.insert(op, now);
    }

    fn insert(&mut self, op: SignedOp, now: Timestamp) {
        let id = op.id();
        self.log.insert(
            id.clone(),
            LogEntry {
                op,
                held_since: now.as_secs(),
            },
        );
        self.log_dirty.touch(id);
    }

    /// Records that `sender`'s message carried ops (new or not): it is
    /// owed an acknowledgement, or it would keep sending them.
    pub fn owe_ack(&mut self, sender: &DeviceId) {
        self.ack_due.insert(sender.clone());
    }

    /// Takes a received op (verified and accepted by the caller) into the
    /// log and advances the applied vector. Returns false for an op we hold
    /// already: an op id is applied once, so a second, different op under
    /// a known id (a relay cannot make one; its origin could) changes
    /// nothing.
    pub fn take_op(&mut self, me: &DeviceId, op: SignedOp, now: Timestamp) -> bool {
        if self.holds(me, &op.id()) {
            return false;
        }
        if op.origin() == me {
            // An own op we no longer knew (a store restored from an older
            // copy): never reuse its seq.
            self.push_own(op, now);
            return true;
        }
        let origin = op.origin().clone();
        self.insert(op, now);
        self.advance(&origin, now);
        true
    }

    /// Moves `applied[origin]` over the ops now held in sequence, and notes
    /// whether ops of it are held above a missing one.
    fn advance(&mut self, origin: &DeviceId, now: Timestamp) {
        let mut have = self.applied.get(origin).copied().unwrap_or(0);
        while self.log.contains_key(&(origin.clone(), have + 1)) {
            have += 1;
        }
        self.applied.insert(origin.clone(), have);
        let above = self
            .log
            .range((origin.clone(), have + 1)..=(origin.clone(), u64::MAX))
            .next()
            .is_some();
        if above {
            self.gap_since.entry(origin.clone()).or_insert(now.as_ms());
        } else {
            self.gap_since.remove(origin);
        }
    }

    /// Folds in `sender`'s applied vector (the `acks` of its message). Only
    /// grows, except that its first report replaces an assumption.
    pub fn note_acks(&mut self, me: &DeviceId, sender: &DeviceId, acks: &BTreeMap<DeviceId, u64>) {
        self.notice_lost_own_ops(sender, acks.get(me).copied());
        let clamp = |origin: &DeviceId, seq: u64| match origin == me {
            true => seq.min(self.last_seq),
            false => seq,
        };
        let reported: BTreeMap<DeviceId, u64> = acks
            .iter()
            .map(|(o, s)| (o.clone(), clamp(o, *s)))
            .collect();
        if self.assumed.remove(sender) {
            self.peer_applied.insert(sender.clone(), reported);
            return;
        }
        let known = self.peer_applied.entry(sender.clone()).or_default();
        for (origin, seq) in reported {
            let e = known.entry(origin).or_insert(0);
            *e = (*e).max(seq);
        }
    }

    /// A peer holds more of our own ops than we remember writing: our store
    /// went back in time (restored from an older copy). Our next ops take
    /// numbers above the peer's, or the peers would drop them as held. (The
    /// lost ops' effects stay with the peers; `status` reports the gap.)
    fn notice_lost_own_ops(&mut self, sender: &DeviceId, reported: Option<u64>) {
        let Some(reported) = reported else {
            return;
        };
        if reported > self.last_seq && reported - self.last_seq <= MAX_SEQ_JUMP {
            tracing::warn!(
                peer = %sender,
                ours = self.last_seq,
                theirs = reported,
                "a member holds more of this device's ops than it remembers (store restored?); continuing after them"
            );
            self.last_seq = reported;
        }
    }

    /// Sets our assumption of what a joiner we welcomed holds.
    pub fn assume(&mut self, peer: &DeviceId, vector: BTreeMap<DeviceId, u64>) {
        self.peer_applied.insert(peer.clone(), vector);
        self.assumed.insert(peer.clone());
    }

    /// Our applied vector including our own ops (what a welcome carries).
    pub fn vector_with_own(&self, me: &DeviceId) -> BTreeMap<DeviceId, u64> {
        let mut v = self.applied.clone();
        v.insert(me.clone(), self.last_seq);
        v
    }

    /// What `peer` has applied of `origin` as far as we know (0 if unknown;
    /// an assumption counts as nothing for pruning, see [`SyncBook::prune`]).
    pub fn peer_has(&self, peer: &DeviceId, origin: &DeviceId) -> u64 {
        if peer == origin {
            return u64::MAX;
        }
        self.peer_applied
            .get(peer)
            .and_then(|v| v.get(origin))
            .copied()
            .unwrap_or(0)
    }

    /// Drops ops every active peer has acknowledged and that are older than
    /// [`KEEP_OPS_MS`], and what we keep about peers that are no longer
    /// active.
    pub fn prune(&mut self, me: &DeviceId, active_peers: &BTreeSet<DeviceId>, now: Timestamp) {
        self.peer_applied.retain(|p, _| active_peers.contains(p));
        self.last_sent.retain(|p, _| active_peers.contains(p));
        self.ack_due.retain(|p| active_peers.contains(p));
        self.assumed.retain(|p| active_peers.contains(p));
        let origins: BTreeSet<DeviceId> = self.log.keys().map(|(o, _)| o.clone()).collect();
        for origin in origins {
            let own_floor = match &origin == me {
                true => self.last_seq,
                false => self.applied.get(&origin).copied().unwrap_or(0),
            };
            let floor = active_peers
                .iter()
                .map(|p| match self.assumed.contains(p) {
                    true => 0,
                    false => self.peer_has(p, &origin),
                })
                .min()
                .unwrap_or(u64::MAX)
                .min(own_floor);
            self.prune_origin(&origin, floor, now);
        }
    }

    /// Ops are stamped in seq order by their origin, so the prunable ones
    /// of an origin are a prefix: stop at the first op to keep.
    fn prune_origin(&mut self, origin: &DeviceId, floor: u64, now: Timestamp) {
        let keys: Vec<OpId> = self
            .log
            .range((origin.clone(), 0)..=(origin.clone(), floor))
            .take_while(|(_, e)| e.op.stamp().ms.saturating_add(KEEP_OPS_MS) <= now.as_ms())
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.log.remove(&k);
            self.log_dirty.touch(k);
        }
    }

    /// The ops to send `peer` now: every op in the log it has not
    /// acknowledged whose relay is due (`relay_now` says so for ops of other
    /// origins), own ops first, each origin in ascending order and without
    /// holes, up to [`OPS_BUDGET_BYTES`] (always at least one op).
    pub fn chunk_for(
        &self,
        me: &DeviceId,
        peer: &DeviceId,
        relay_now: impl Fn(&LogEntry) -> bool,
    ) -> Chunk {
        let mut origins: Vec<&DeviceId> = self
            .log
            .keys()
            .map(|(o, _)| o)
            .filter(|o| *o != peer)
            .collect();
        origins.dedup();
        origins.sort_by_key(|o| (*o != me, (*o).clone()));
        let mut chunk = Chunk::default();
        let mut used = 0usize;
        for origin in origins {
            let from = self.peer_has(peer, origin);
            let range = (origin.clone(), from.saturating_add(1))..=(origin.clone(), u64::MAX);
            for (expect, ((_, seq), entry)) in (from.saturating_add(1)..).zip(self.log.range(range))
            {
                if *seq != expect || (origin != me && !relay_now(entry)) {
                    break;
                }
                let size = entry.op.wire_len();
                if !chunk.ops.is_empty() && used + size > OPS_BUDGET_BYTES {
                    return chunk;
                }
                used += size;
                chunk.ops.push(entry.op.clone());
                chunk.covers.insert(origin.clone(), *seq);
            }
        }
        chunk
    }

    /// Whether a sync message to `peer` is due now, given the chunk it
    /// would carry: an acknowledgement is owed, ops it carries were not in
    /// our last message there, that message is older than the
    /// retransmission interval (with ops outstanding) or than `heartbeat`
    /// seconds, or there is none.
    pub fn is_due(&self, peer: &DeviceId, chunk: &Chunk, now: Timestamp, heartbeat: u64) -> bool {
        if self.ack_due.contains(peer) {
            return true;
        }
        let Some(sent) = self.last_sent.get(peer) else {
            return true;
        };
        let newer = chunk
            .covers
            .iter()
            .any(|(o, s)| *s > sent.covers.get(o).copied().unwrap_or(0));
        let age = now.secs_since(sent.at);
        newer || (!chunk.ops.is_empty() && age >= RETRANSMIT_AFTER_SECS) || age >= heartbeat
    }

    /// Records that a sync message was appended to `peer`'s inbox.
    pub fn mark_sent(&mut self, peer: &DeviceId, sent: SentRef) {
        self.ack_due.remove(peer);
        self.last_sent.insert(peer.clone(), sent);
    }

    /// Forgets our last message to `peer`: it vanished from its inbox
    /// unprocessed, so what it carried is sent again.
    pub fn forget_sent(&mut self, peer: &DeviceId) {
        self.last_sent.remove(peer);
    }

    /// Whether the log holds ops the store has not saved yet (an op must be
    /// stored durably before it is sent anywhere, PROTOCOL 11.1).
    pub fn has_unsaved_ops(&self) -> bool {
        match self.log_dirty.changed() {
            None => !self.log.is_empty(),
            Some(changed) => changed.iter().any(|id| self.log.contains_key(id)),
        }
    }

    /// Log ids changed since the last [`SyncBook::mark_saved`], or `None`
    /// when the store must write the whole log.
    pub fn log_changes(&self) -> Option<&BTreeSet<OpId>> {
        self.log_dirty.changed()
    }

    /// Records that the store holds the log as it is now.
    pub fn mark_saved(&mut self) {
        self.log_dirty.clear();
    }

    /// Marks the whole log as changed.
    pub(crate) fn mark_all_changed(&mut self) {
        self.log_dirty = Dirty::all();
    }

    /// Replaces the log (the store loading its rows).
    pub(crate) fn put_log(&mut self, log: BTreeMap<OpId, LogEntry>) {
        self.log = log;
    }

    /// Mutable access to the log entries (signing version 1 ops on load).
    pub(crate) fn log_mut(&mut self) -> impl Iterator<Item = (&OpId, &mut LogEntry)> {
        self.log.iter_mut()
    }

    /// Marks one log entry as changed.
    pub(crate) fn touch(&mut self, id: OpId) {
        self.log_dirty.touch(id);
    }

    /// Version 1 bookkeeping to the version 2 form: per-peer acks of our
    /// own ops become entries of the peers' applied vectors, and the last
    /// message's `upto` its coverage of our ops.
    pub(crate) fn upgrade_v1(&mut self, me: &DeviceId) {
        for (peer, acked) in std::mem::take(&mut self.peer_acks) {
            let v = self.peer_applied.entry(peer).or_default();
            let e = v.entry(me.clone()).or_insert(0);
            *e = (*e).max(acked);
        }
        for sent in self.last_sent.values_mut() {
            if let Some(upto) = sent.upto.take() {
                sent.covers.entry(me.clone()).or_insert(upto);
            }
        }
    }

    /// A joiner's bookkeeping from its welcome: the applied vector the
    /// member's state includes, the member's view of what each peer holds,
    /// and the member's relay log.
    pub fn for_joiner(
        me: &DeviceId,
        applied: BTreeMap<DeviceId, u64>,
        peer_applied: BTreeMap<DeviceId, BTreeMap<DeviceId, u64>>,
        log: Vec<SignedOp>,
        members: impl Iterator<Item = DeviceId>,
        now: Timestamp,
    ) -> SyncBook {
        let mut book = SyncBook {
            applied,
            peer_applied,
            ..SyncBook::default()
        };
        book.applied.remove(me);
        book.peer_applied.remove(me);
        // Relayed at once, not after RELAY_AFTER_SECS: the members that
        // lack these ops (our admission among them) do not know us yet, and
        // only a message carrying our admission introduces us to them.
        let held = Timestamp::from_secs(now.as_secs().saturating_sub(RELAY_AFTER_SECS));
        for op in log.into_iter().filter(|op| op.origin() != me) {
            book.insert(op, held);
        }
        // Tell every member what we hold: the member that paired us assumed
        // we installed its welcome, and the others do not know us yet.
        book.ack_due = members.filter(|id| id != me).collect();
        let origins: BTreeSet<DeviceId> = book.log.keys().map(|(o, _)| o.clone()).collect();
        for origin in origins {
            book.advance(&origin, now);
        }
        book
    }

    /// What keeps ops from arriving, as far as this device can tell: gaps
    /// in what we hold, and `peers` whose acknowledgement of our ops is
    /// stalled.
    pub fn withheld(
        &self,
        me: &DeviceId,
        peers: &BTreeSet<DeviceId>,
        now: Timestamp,
    ) -> Vec<Withheld> {
        let mut out: Vec<Withheld> = self
            .gap_since
            .iter()
            .map(|(origin, &since_ms)| Withheld::Gap {
                origin: origin.clone(),
                since_ms,
                applied: self.applied.get(origin).copied().unwrap_or(0),
            })
            .collect();
        for peer in peers {
            let acked = self.peer_has(peer, me);
            let oldest = self
                .log
                .range((me.clone(), acked.saturating_add(1))..=(me.clone(), u64::MAX))
                .next()
                .map(|(_, e)| e.op.stamp().ms);
            if let Some(oldest_unacked_ms) = oldest {
                if oldest_unacked_ms.saturating_add(STALLED_ACK_MS) <= now.as_ms() {
                    out.push(Withheld::StalledAck {
                        peer: peer.clone(),
                        acked,
                        oldest_unacked_ms,
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;

//! Per-sender sequence numbers, acknowledgements, retransmission and coalescing.
//!
//! A device keeps its own ops until every active peer has acknowledged them.
//! Each sync message to a peer carries *all* of the sender's ops the peer has
//! not acknowledged, so a newer message supersedes (and replaces, on the
//! server) an older unprocessed one: at most one sync message per sender per
//! inbox, and a dropped message is repaired by the next one.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::dirty::Dirty;
use crate::ids::{DeviceId, MessageId};
use crate::payload::OpsBody;
use crate::state::{Change, Op};

/// Resend unacknowledged ops after this many seconds even if nothing new
/// happened (the previous message may have been dropped by the server).
pub const RETRANSMIT_AFTER_SECS: u64 = 3600;

/// Most JSON bytes of ops in one sync message, so that the sealed message
/// stays well under the 1 MiB cap; the remainder follows after the ack.
pub const OPS_BUDGET_BYTES: usize = 600 * 1024;

/// Own ops stay in the log at least this long even when every peer acked
/// them, so a device that joins meanwhile still receives them.
pub const KEEP_OPS_MS: u64 = 7 * 86_400 * 1000;

/// An acknowledgement counts as stalled (PROTOCOL 11.2) when an own op the
/// peer has not acknowledged is older than this.
pub const STALLED_ACK_MS: u64 = 7 * 86_400 * 1000;

/// Something that keeps ops from arriving, for `status` and the log
/// (PROTOCOL 11.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Withheld {
    /// `sender`'s sync messages do not follow on from what we applied: it
    /// believes we acknowledged more than we have (our store was restored
    /// or reset), so some of its ops will not reach us.
    Gap {
        /// The sender.
        sender: DeviceId,
        /// When the first such message arrived (ms).
        since_ms: u64,
        /// Up to where we applied its ops.
        applied: u64,
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
    /// Highest own seq it carried.
    pub upto: u64,
    /// When it was sent (Unix seconds).
    pub at: u64,
}

/// Sync bookkeeping of one device (persisted with the group state).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncBook {
    /// Highest seq assigned to our own ops.
    pub last_seq: u64,
    /// Our own ops not yet acknowledged by every active peer.
    pub log: BTreeMap<u64, Op>,
    /// Log seqs added or dropped since the store last saved the log.
    #[serde(skip)]
    pub log_dirty: Dirty<u64>,
    /// Per peer, the highest of our seqs it acknowledged.
    pub peer_acks: BTreeMap<DeviceId, u64>,
    /// Per origin, the highest seq of its ops we applied with no gap.
    pub received: BTreeMap<DeviceId, u64>,
    /// Peers that sent us ops we have not acknowledged yet.
    pub ack_due: BTreeSet<DeviceId>,
    /// Our latest sync message per peer inbox.
    pub last_sent: BTreeMap<DeviceId, SentRef>,
    /// Peers whose entry in `peer_acks` is our assumption, not their report
    /// (a joiner is assumed to have installed our welcome). The peer's first
    /// report replaces it, even when lower: the joiner may have installed
    /// another member's welcome after all.
    #[serde(default)]
    pub assumed_acks: BTreeSet<DeviceId>,
    /// Per sender, when (ms) a sync message from it first did not follow on
    /// from what we applied (`base` above it); cleared when one does.
    #[serde(default)]
    pub gap_since: BTreeMap<DeviceId, u64>,
}

/// What applying a received ops body did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Ops that were new to us (by origin seq), to report as events.
    pub new_ops: Vec<Op>,
    /// Ops rejected because their origin was not the sender.
    pub rejected: usize,
}

impl SyncBook {
    /// Records a new local op and returns it.
    pub fn push(&mut self, origin: &DeviceId, stamp: crate::hlc::Hlc, change: Change) -> Op {
        self.last_seq += 1;
        let op = Op {
            origin: origin.clone(),
            seq: self.last_seq,
            stamp,
            change,
        };
        self.log.insert(op.seq, op.clone());
        self.log_dirty.touch(op.seq);
        op
    }

    /// Bookkeeping for a received ops body from `sender`; returns the ops to
    /// merge (only the sender's own ones) and which were new.
    pub fn receive(&mut self, me: &DeviceId, sender: &DeviceId, body: &OpsBody) -> Received {
        let mut out = Received::default();
        let have = self.received.get(sender).copied().unwrap_or(0);
        let mut upto = have;
        for op in &body.ops {
            if &op.origin != sender {
                out.rejected += 1;
                continue;
            }
            if op.seq > have {
                out.new_ops.push(op.clone());
            }
            if body.base <= have && op.seq > upto {
                upto = op.seq;
            }
        }
        if body.base <= have && out.rejected == 0 && body.upto > upto {
            upto = body.upto;
        }
        if upto > have {
            self.received.insert(sender.clone(), upto);
        }
        if !body.ops.is_empty() || body.base > have {
            self.ack_due.insert(sender.clone());
        }
        if self.assumed_acks.remove(sender) {
            let acked = body.acks.get(me).copied().unwrap_or(0).min(self.last_seq);
            self.peer_acks.insert(sender.clone(), acked);
        } else if let Some(&acked) = body.acks.get(me) {
            let acked = acked.min(self.last_seq);
            let entry = self.peer_acks.entry(sender.clone()).or_insert(0);
            *entry = (*entry).max(acked);
        }
        out
    }

    /// Drops ops every active peer has acknowledged and that are older than
    /// [`KEEP_OPS_MS`], and state about peers that are no longer active.
    pub fn prune(&mut self, active_peers: &BTreeSet<DeviceId>, now_ms: u64) {
        self.peer_acks.retain(|p, _| active_peers.contains(p));
        self.last_sent.retain(|p, _| active_peers.contains(p));
        self.ack_due.retain(|p| active_peers.contains(p));
        self.assumed_acks.retain(|p| active_peers.contains(p));
        self.gap_since.retain(|p, _| active_peers.contains(p));
        let floor = active_peers
            .iter()
            .map(|p| match self.assumed_acks.contains(p) {
                true => 0,
                false => self.peer_acks.get(p).copied().unwrap_or(0),
            })
            .min()
            .unwrap_or(self.last_seq);
        // Own ops are stamped in seq order, so the prunable ones are a
        // prefix of the log: stop at the first op to keep (were an op out
        // of order, it would merely be kept until a later prune).
        while let Some(entry) = self.log.first_entry() {
            let (seq, op) = (*entry.key(), entry.get());
            if seq > floor || op.stamp.ms.saturating_add(KEEP_OPS_MS) > now_ms {
                break;
            }
            entry.remove();
            self.log_dirty.touch(seq);
        }
    }

    /// Whether the log holds ops the store has not saved yet (an op must be
    /// stored durably before it is sent anywhere, PROTOCOL 11.1).
    pub fn has_unsaved_ops(&self) -> bool {
        match self.log_dirty.changed() {
            None => !self.log.is_empty(),
            Some(changed) => changed.iter().any(|seq| self.log.contains_key(seq)),
        }
    }

    /// Records whether a body from `sender` followed on from what we had
    /// applied (`had`, before receiving it).
    pub fn note_gap(&mut self, sender: &DeviceId, body: &OpsBody, had: u64, now_ms: u64) {
        if body.base > had {
            self.gap_since.entry(sender.clone()).or_insert(now_ms);
        } else {
            self.gap_since.remove(sender);
        }
    }

    /// What keeps ops from arriving, as far as this device can tell: gaps
    /// from senders, and `peers` whose acknowledgement is stalled.
    pub fn withheld(&self, peers: &BTreeSet<DeviceId>, now_ms: u64) -> Vec<Withheld> {
        let mut out: Vec<Withheld> = self
            .gap_since
            .iter()
            .map(|(sender, &since_ms)| Withheld::Gap {
                sender: sender.clone(),
                since_ms,
                applied: self.received.get(sender).copied().unwrap_or(0),
            })
            .collect();
        for peer in peers {
            let acked = self.peer_acks.get(peer).copied().unwrap_or(0);
            let oldest = self
                .log
                .range(acked + 1..)
                .next()
                .map(|(_, op)| op.stamp.ms);
            if let Some(oldest_unacked_ms) = oldest {
                if oldest_unacked_ms.saturating_add(STALLED_ACK_MS) <= now_ms {
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

    /// Whether a sync message to `peer` is due at `now`.
    pub fn due(&self, peer: &DeviceId, now: u64) -> bool {
        self.due_chunk(peer, now).is_some()
    }

    /// The body to send `peer` at `now`, if a sync message is due (the
    /// chunk is sized once for both questions).
    pub fn due_body(&self, peer: &DeviceId, now: u64) -> Option<OpsBody> {
        self.due_chunk(peer, now)
            .map(|(base, upto)| self.body_in(base, upto))
    }

    fn due_chunk(&self, peer: &DeviceId, now: u64) -> Option<(u64, u64)> {
        let chunk = self.chunk_for(peer);
        if self.ack_due.contains(peer) {
            return Some(chunk);
        }
        let (acked, upto) = chunk;
        if upto <= acked {
            return None; // nothing unacknowledged in the log
        }
        match self.last_sent.get(peer) {
            Some(sent) if upto <= sent.upto && now < sent.at + RETRANSMIT_AFTER_SECS => None,
            _ => Some(chunk),
        }
    }

    /// The ops body for `peer`: the own ops it has not acknowledged, in seq
    /// order, up to about [`OPS_BUDGET_BYTES`] of JSON (always at least one),
    /// plus our acks. The rest follows once the peer acknowledged these.
    pub fn body_for(&self, peer: &DeviceId) -> OpsBody {
        let (base, upto) = self.chunk_for(peer);
        self.body_in(base, upto)
    }

    fn body_in(&self, base: u64, upto: u64) -> OpsBody {
        // Nothing unacknowledged: `upto == base`, an empty range.
        let ops: Vec<Op> = match upto > base {
            true => self
                .log
                .range(base + 1..=upto)
                .map(|(_, op)| op.clone())
                .collect(),
            false => Vec::new(),
        };
        OpsBody {
            base,
            upto: ops.last().map_or(0, |o: &Op| o.seq),
            ops,
            acks: self.received.clone(),
        }
    }

    /// The seq range (exclusive base, inclusive end) of the next chunk for
    /// `peer`: its unacknowledged ops within [`OPS_BUDGET_BYTES`] of JSON.
    fn chunk_for(&self, peer: &DeviceId) -> (u64, u64) {
        let base = self.peer_acks.get(peer).copied().unwrap_or(0);
        let mut used = 0usize;
        let mut upto = base;
        for (seq, op) in self.log.range(base + 1..) {
            let size = json_len(op);
            if upto > base && used + size > OPS_BUDGET_BYTES {
                break;
            }
            used += size;
            upto = *seq;
        }
        (base, upto)
    }

    /// Records that a sync message was appended to `peer`'s inbox.
    pub fn mark_sent(&mut self, peer: &DeviceId, sent: SentRef) {
        self.ack_due.remove(peer);
        self.last_sent.insert(peer.clone(), sent);
    }
}

/// Length of a value's JSON, counted without building the text.
fn json_len(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serialising our own plain data into a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::state::PeerState;

    fn dev(n: u8) -> DeviceId {
        DeviceId::parse(&format!("{:016x}", n)).unwrap()
    }

    fn change(i: u64) -> Change {
        let mut p = PeerState::new(&format!("p{i}@x"));
        p.last_seen = i;
        Change::Peer(p)
    }

    fn stamp(i: u64) -> Hlc {
        Hlc {
            ms: i,
            counter: 0,
            device: dev(1),
        }
    }

    #[test]
    fn gaps_and_stalled_acknowledgements_are_reported() {
        let (a, b) = (dev(1), dev(2));
        let peers: BTreeSet<DeviceId> = [b.clone()].into();
        let mut book = SyncBook::default();
        let day = 86_400_000;
        book.push(&a, stamp(day), change(1));
        assert!(book.withheld(&peers, 7 * day).is_empty(), "6 days: not yet");
        assert_eq!(
            book.withheld(&peers, 8 * day),
            [Withheld::StalledAck {
                peer: b.clone(),
                acked: 0,
                oldest_unacked_ms: day
            }]
        );
        book.peer_acks.insert(b.clone(), 1);
        assert!(book.withheld(&peers, 8 * day).is_empty(), "acknowledged");

        // B's message starts above what we applied from it: a gap.
        let body = |base| OpsBody {
            base,
            upto: base + 1,
            ops: Vec::new(),
            acks: BTreeMap::new(),
        };
        book.note_gap(&b, &body(5), 0, 100);
        book.note_gap(&b, &body(5), 0, 200);
        assert_eq!(
            book.withheld(&peers, 8 * day),
            [Withheld::Gap {
                sender: b.clone(),
                since_ms: 100,
                applied: 0
            }]
        );
        book.note_gap(&b, &body(0), 0, 300);
        assert!(
            book.withheld(&peers, 8 * day).is_empty(),
            "it followed on again"
        );
    }

    #[test]
    fn a_body_with_nothing_unacknowledged_is_empty() {
        let (a, b) = (dev(1), dev(2));
        let mut book = SyncBook::default();
        assert!(book.body_for(&b).ops.is_empty(), "empty log");
        book.push(&a, stamp(1), change(1));
        book.peer_acks.insert(b.clone(), 1);
        let body = book.body_for(&b);
        assert!(body.ops.is_empty(), "everything acknowledged");
        assert_eq!((body.base, body.upto), (1, 0));
    }

    #[test]
    fn resends_everything_unacked_and_prunes_after_acks() {
        let (a, b, c) = (dev(1), dev(2), dev(3));
        let mut book = SyncBook::default();
        for i in 1..=3 {
            book.push(&a, stamp(i), change(i));
        }
        assert!(book.due(&b, 0));
        assert_eq!(book.body_for(&b).ops.len(), 3);
        // B acknowledges 2 of 3.
        let mut b_book = SyncBook::default();
        let got = b_book.receive(&b, &a, &book.body_for(&b));
        assert_eq!(got.new_ops.len(), 3);
        assert_eq!(b_book.received[&a], 3);
        let mut ack = b_book.body_for(&a);
        ack.acks.insert(a.clone(), 2);
        book.receive(&a, &b, &ack);
        assert_eq!(book.peer_acks[&b], 2);
        assert_eq!(book.body_for(&b).ops.len(), 1);
        let peers: BTreeSet<_> = [b.clone(), c.clone()].into();
        book.prune(&peers, u64::MAX);
        assert_eq!(book.log.len(), 3, "C acknowledged nothing yet");
        book.peer_acks.insert(c.clone(), 3);
        book.prune(&peers, 1);
        assert_eq!(book.log.len(), 3, "young ops are kept for late joiners");
        book.prune(&peers, u64::MAX);
        assert_eq!(book.log.len(), 1);
    }

    #[test]
    fn large_backlogs_are_sent_in_chunks_that_fit_the_cap() {
        let (a, b) = (dev(1), dev(2));
        let mut book = SyncBook::default();
        for i in 1..=3000 {
            let mut p = PeerState::new(&format!("p{i}@x"));
            p.public_key = Some("k".repeat(500));
            book.push(&a, stamp(i), Change::Peer(p));
        }
        let first = book.body_for(&b);
        let bytes = serde_json::to_vec(&first).unwrap().len();
        assert!(first.ops.len() < 3000 && !first.ops.is_empty());
        assert!(bytes <= OPS_BUDGET_BYTES + 64 * 1024, "{bytes}");
        let upto = first.ops.last().unwrap().seq;
        book.mark_sent(
            &b,
            SentRef {
                message_id: MessageId::parse(&"a".repeat(32)).unwrap(),
                uid: None,
                uid_validity: None,
                upto,
                at: 0,
            },
        );
        assert!(!book.due(&b, 1), "nothing new until the peer acknowledges");
        book.peer_acks.insert(b.clone(), upto);
        assert!(book.due(&b, 1));
        assert_eq!(book.body_for(&b).ops[0].seq, upto + 1);
    }

    #[test]
    fn coalesced_message_supersedes_and_retransmits_after_timeout() {
        let (a, b) = (dev(1), dev(2));
        let mut book = SyncBook::default();
        book.push(&a, stamp(1), change(1));
        book.mark_sent(
            &b,
            SentRef {
                message_id: MessageId::parse(&"a".repeat(32)).unwrap(),
                uid: Some(1),
                uid_validity: Some(1),
                upto: 1,
                at: 100,
            },
        );
        assert!(!book.due(&b, 200));
        assert!(book.due(&b, 100 + RETRANSMIT_AFTER_SECS));
        book.push(&a, stamp(2), change(2));
        assert!(book.due(&b, 200));
    }

    #[test]
    fn ops_from_other_origins_are_rejected_and_gaps_not_acked() {
        let (a, b, c) = (dev(1), dev(2), dev(3));
        let mut forged = SyncBook::default();
        forged.push(&c, stamp(1), change(1));
        let mut body = forged.body_for(&a);
        let mut book = SyncBook::default();
        let got = book.receive(&a, &b, &body);
        assert_eq!(got.rejected, 1);
        assert!(got.new_ops.is_empty());
        // A body claiming a base above what we have: ops merge, ack does not advance.
        let mut sender = SyncBook::default();
        for i in 1..=3 {
            sender.push(&b, stamp(i), change(i));
        }
        body = sender.body_for(&a);
        body.base = 2;
        body.ops.retain(|o| o.seq > 2);
        let got = book.receive(&a, &b, &body);
        assert_eq!(got.new_ops.len(), 1);
        assert_eq!(book.received.get(&b).copied().unwrap_or(0), 0);
        assert!(book.ack_due.contains(&b));
    }

    #[test]
    fn ops_a_receiver_skipped_are_still_acknowledged_through_upto() {
        let (a, b) = (dev(1), dev(2));
        let mut sender = SyncBook::default();
        for i in 1..=3 {
            sender.push(&b, stamp(i), change(i));
        }
        let mut body = sender.body_for(&a);
        assert_eq!(body.upto, 3);
        body.ops.pop(); // as if op 3 were of a kind this version cannot read
        let mut book = SyncBook::default();
        book.receive(&a, &b, &body);
        assert_eq!(book.received[&b], 3);
    }

    #[test]
    fn an_assumed_ack_yields_to_the_peers_own_lower_report() {
        // Regression (sma-sim seed 1212): a joiner restarted `join` and
        // installed another member's welcome, so it lacks our ops 2 and 3.
        let (a, j) = (dev(1), dev(2));
        let mut book = SyncBook::default();
        for i in 1..=3 {
            book.push(&a, stamp(i), change(i));
        }
        book.peer_acks.insert(j.clone(), 3);
        book.assumed_acks.insert(j.clone());
        let peers: BTreeSet<_> = [j.clone()].into();
        book.prune(&peers, u64::MAX);
        assert_eq!(book.log.len(), 3, "nothing is pruned on an assumption");
        let mut report = OpsBody::default();
        report.acks.insert(a.clone(), 1);
        book.receive(&a, &j, &report);
        assert_eq!(book.peer_acks[&j], 1);
        assert!(book.assumed_acks.is_empty());
        assert_eq!(book.body_for(&j).ops.len(), 2);
        // Later reports only raise it.
        report.acks.insert(a.clone(), 0);
        book.receive(&a, &j, &report);
        assert_eq!(book.peer_acks[&j], 1);
    }
}

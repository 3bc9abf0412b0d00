//! Which sync messages are due, and sealing them (PROTOCOL 11.3).

use std::collections::BTreeMap;

use rand_core::{CryptoRng, RngCore};

use super::Engine;
use crate::envelope::{Kind, Recipient};
use crate::error::ProtoError;
use crate::ids::{DeviceId, MessageId};
use crate::payload::{OpsBody, SealedContent};
use crate::sync::{Chunk, LogEntry, SentRef, RELAY_AFTER_SECS};
use crate::time::Timestamp;

/// A sync message ready to append to a peer's inbox.
pub struct OutgoingSync {
    /// The recipient.
    pub peer: DeviceId,
    /// Its message id.
    pub message_id: MessageId,
    /// Per origin, the highest seq it carries.
    pub covers: BTreeMap<DeviceId, u64>,
    /// Our previous sync message in that inbox, to replace.
    pub replaces: Option<SentRef>,
    /// The message bytes.
    pub bytes: Vec<u8>,
}

impl Engine {
    /// The ops due for `peer` now (see [`crate::sync::SyncBook::chunk_for`]).
    fn chunk(&self, peer: &DeviceId, now: Timestamp) -> Chunk {
        #[cfg(feature = "model-mutations")]
        if !self.relay {
            return self.core.book.chunk_for(&self.me.id, peer, |_| false);
        }
        let group = &self.core.group;
        let relay_now = |e: &LogEntry| {
            let Some(origin) = group.member(e.op.origin()) else {
                return false;
            };
            if super::accept::written_after_removal(origin, &e.op) {
                return false; // never passed on: everyone refuses it
            }
            origin.status != crate::state::MemberStatus::Active
                || e.held_since.saturating_add(RELAY_AFTER_SECS) <= now.as_secs()
        };
        self.core.book.chunk_for(&self.me.id, peer, relay_now)
    }

    /// Peers whose last sync message should be looked for in their inbox:
    /// it carried ops they have not acknowledged and nothing else makes a
    /// message to them due. If it vanished unprocessed (deleted by the
    /// provider, say), report it with [`Engine::vanished`] and it is sent
    /// again in this round rather than after the retransmission interval.
    pub fn sync_probes(&self, now: Timestamp, heartbeat: u64) -> Vec<(DeviceId, SentRef)> {
        self.peers()
            .into_iter()
            .filter_map(|peer| {
                let sent = self.core.book.last_sent(&peer)?.clone();
                let chunk = self.chunk(&peer, now);
                let outstanding = !chunk.ops.is_empty();
                (outstanding && !self.core.book.is_due(&peer, &chunk, now, heartbeat))
                    .then_some((peer, sent))
            })
            .collect()
    }

    /// Our last sync message to `peer` is no longer in its inbox although
    /// it did not acknowledge what it carried: send it again.
    pub fn vanished(&mut self, peer: &DeviceId) {
        tracing::info!(%peer, "our unacknowledged sync message vanished from its inbox; sending it again");
        self.core.book.forget_sent(peer);
    }

    /// Seals the sync messages due at `now` (one per peer at most): new or
    /// relayable ops the peer has not acknowledged, an acknowledgement we
    /// owe, a retransmission, or a heartbeat older than `heartbeat` seconds.
    pub fn outgoing_syncs(
        &mut self,
        rng: &mut (impl RngCore + CryptoRng),
        now: Timestamp,
        heartbeat: u64,
    ) -> Result<Vec<OutgoingSync>, ProtoError> {
        let peers = self.peers();
        let me = self.me.id.clone();
        self.core.book.prune(&me, &peers, now);
        self.heard(&me, now.as_secs(), now);
        let mut out = Vec::new();
        for peer in peers {
            let chunk = self.chunk(&peer, now);
            if !self.core.book.is_due(&peer, &chunk, now, heartbeat) {
                continue;
            }
            let body = OpsBody {
                ops: chunk.ops,
                acks: self.core.book.applied().clone(),
                alive: self.alive_for_peers(),
            };
            let route = (Kind::Sync, Recipient::Device(peer.clone()));
            let sealed = match self.seal(
                rng,
                now,
                route,
                std::slice::from_ref(&peer),
                SealedContent::Ops(body),
            ) {
                Ok(s) => s,
                Err(ProtoError::ApiMisuse(why)) => {
                    tracing::warn!(%peer, %why, "no sync message for this member");
                    continue;
                }
                Err(e) => return Err(e),
            };
            out.push(OutgoingSync {
                replaces: self.core.book.last_sent(&peer).cloned(),
                peer,
                message_id: sealed.id,
                covers: chunk.covers,
                bytes: sealed.bytes,
            });
        }
        Ok(out)
    }

    /// Signs of life of the active members (ourselves included) to relay.
    fn alive_for_peers(&self) -> BTreeMap<DeviceId, u64> {
        self.core
            .group
            .active_members()
            .filter_map(|m| Some((m.id.clone(), *self.core.alive.get(&m.id)?)))
            .collect()
    }

    /// Records that a sync message was appended to `peer`'s inbox.
    pub fn mark_sent(&mut self, peer: &DeviceId, sent: SentRef) {
        self.core.book.mark_sent(peer, sent);
    }

    /// Whether ops are in the log that the store has not saved yet.
    pub fn has_unsaved_ops(&self) -> bool {
        self.core.book.has_unsaved_ops()
    }
}

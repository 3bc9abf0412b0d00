//! The protocol engine: the member device's decisions, without I/O.
//!
//! The driver shows the engine what the transport saw — inbox headers,
//! message bytes, announcements, which of its messages vanished — and the
//! engine answers with what to do: fetch, delete, leave, apply, send. It
//! owns the device's [`CoreState`] and is the only way to change it, so the
//! acknowledgement bookkeeping and the store's change marks stay right.
//! It reads no clock (every call takes a [`Timestamp`]) and draws no
//! randomness it is not handed.
//!
//! * [`inbox`]: one pass over the own inbox (PROTOCOL 13);
//! * [`accept`]: opening sealed messages and accepting relayed ops;
//! * [`outbound`]: which sync messages are due, sealing them (PROTOCOL 11.3);
//! * [`membership`]: admitting, removing, leaving, rotating, the welcome;
//! * [`liveness`]: signs of life and expiry (PROTOCOL 14).

pub mod accept;
pub mod events;
pub mod inbox;
pub mod liveness;
pub mod membership;
pub mod outbound;

use std::collections::{BTreeMap, BTreeSet};

use sma_crypto::Certificate;
use tracing::warn;

use crate::core::CoreState;
use crate::device::Identity;
use crate::error::{PeerMisbehaved, ProtoError};
use crate::hlc::Hlc;
use crate::ids::DeviceId;
use crate::ops::SignedOp;
use crate::state::{Change, GroupState, MemberStatus};
use crate::time::Timestamp;

pub use events::StateEvent;

/// Largest plaintext accepted inside a sealed message.
pub const MAX_SEALED_PLAINTEXT: usize = 4 << 20;

/// A member device: its identity and its protocol state.
pub struct Engine {
    me: Identity,
    core: CoreState,
    /// Parsed certificates by fingerprint (parsing costs more than verifying).
    certs: BTreeMap<String, Certificate>,
    /// Whether ops of other origins are relayed (always, except in the
    /// model checker's mutant; see [`Engine::set_relay_enabled`]).
    #[cfg(feature = "model-mutations")]
    relay: bool,
}

impl Engine {
    /// An engine over a loaded state. Ops this device wrote under protocol
    /// version 1 (unsigned) are signed now, and version 1 bookkeeping is
    /// carried over.
    pub fn new(me: Identity, mut core: CoreState) -> Result<Engine, ProtoError> {
        core.book.upgrade_v1(&me.id);
        let mut unsigned = Vec::new();
        for (id, entry) in core.book.log_mut() {
            if entry.op.is_signed() {
                continue;
            }
            if entry.op.origin() == &me.id {
                let raw = entry.op.raw().as_bytes();
                let sig = sma_crypto::sign_binary(&me.key, raw, sma_crypto::SigContext::Op)?;
                entry.op = SignedOp::from_parts(entry.op.raw().to_owned(), sig)?;
            }
            unsigned.push(id.clone());
        }
        for id in unsigned {
            core.book.touch(id);
        }
        Ok(Engine {
            me,
            core,
            certs: BTreeMap::new(),
            #[cfg(feature = "model-mutations")]
            relay: true,
        })
    }

    /// A deliberately broken rule, for the model checker only (`crates/model`
    /// shows that it finds the undo-removal attack on it): with `false`, sync
    /// messages carry only our own ops and nothing is relayed (PROTOCOL 11.3
    /// turned off). Exists only with the `model-mutations` feature, which no
    /// shipped crate enables.
    #[cfg(feature = "model-mutations")]
    #[doc(hidden)]
    pub fn set_relay_enabled(&mut self, relay: bool) {
        self.relay = relay;
    }

    /// Who we are.
    pub fn identity(&self) -> &Identity {
        &self.me
    }

    /// Our device id.
    pub fn id(&self) -> &DeviceId {
        &self.me.id
    }

    /// The protocol state.
    pub fn core(&self) -> &CoreState {
        &self.core
    }

    /// The protocol state, for the store (its public mutators only concern
    /// persistence).
    pub fn core_mut(&mut self) -> &mut CoreState {
        &mut self.core
    }

    /// The replicated group state.
    pub fn group(&self) -> &GroupState {
        &self.core.group
    }

    /// Active members other than us.
    pub fn peers(&self) -> BTreeSet<DeviceId> {
        self.core
            .group
            .active_members()
            .filter(|m| m.id != self.me.id)
            .map(|m| m.id.clone())
            .collect()
    }

    /// Our own status in the group.
    pub fn status(&self) -> Option<MemberStatus> {
        self.core.group.status_of(&self.me.id)
    }

    /// Whether our own record says we were removed.
    pub fn is_removed(&self) -> bool {
        self.status() == Some(MemberStatus::Removed)
    }

    /// A fresh HLC stamp (for building records before committing them).
    pub fn stamp(&mut self, now: Timestamp) -> Hlc {
        self.core.clock.tick(now.as_ms(), &self.me.id)
    }

    /// Commits a local change: stamps and signs it as our next op, merges
    /// it into the state and puts it in the relay log. The store must save
    /// it before it is sent anywhere (PROTOCOL 11.1).
    pub fn commit(&mut self, change: Change, now: Timestamp) -> Result<SignedOp, ProtoError> {
        let stamp = self.stamp(now);
        let seq = self.core.book.last_seq() + 1;
        let op = SignedOp::sign(&self.me.key, &self.me.id, seq, stamp, change.clone())?;
        self.core.group.apply(&change);
        self.note_removal(&op, now);
        self.core.book.push_own(op.clone(), now);
        Ok(op)
    }

    /// The parsed certificate of a member record (cached).
    pub(crate) fn cert_of(&mut self, id: &DeviceId) -> Result<Certificate, PeerMisbehaved> {
        let rec = self
            .core
            .group
            .member(id)
            .ok_or_else(|| PeerMisbehaved::NotAMember(id.to_string()))?;
        if let Some(c) = self.certs.get(&rec.fingerprint) {
            return Ok(c.clone());
        }
        let cert = Certificate::from_armored(&rec.cert).map_err(PeerMisbehaved::Crypto)?;
        if cert.fingerprint().to_string() != rec.fingerprint {
            return Err(PeerMisbehaved::rule(
                "member record",
                "fingerprint is not the certificate's",
            ));
        }
        self.certs.insert(rec.fingerprint.clone(), cert.clone());
        Ok(cert)
    }

    /// Certificates of `peers` that can be sealed to; peers whose
    /// certificate cannot (no encryption subkey, unparseable) are skipped
    /// with a warning, so one bad record never stops the others.
    pub(crate) fn sealable(&mut self, peers: &[DeviceId]) -> Vec<(DeviceId, Certificate)> {
        let mut out = Vec::new();
        for p in peers {
            match self.cert_of(p) {
                Ok(c) if c.can_encrypt() => out.push((p.clone(), c)),
                Ok(_) => {
                    warn!(peer = %p, "this member's certificate has no encryption subkey; nothing is sealed to it")
                }
                Err(e) => {
                    warn!(peer = %p, error = %crate::error::chain(&e), "this member's certificate is unusable; nothing is sealed to it")
                }
            }
        }
        out
    }

    /// Merges a received op (verified and accepted) into the state and
    /// describes what changed.
    pub(crate) fn apply_received(
        &mut self,
        op: &SignedOp,
        now: Timestamp,
        events: &mut Vec<StateEvent>,
    ) {
        self.core.clock.observe_at(op.stamp(), now.as_ms());
        let Some(change) = op.change() else {
            return; // a kind this version cannot read: relayed, not applied
        };
        let before = events::Before::of(&self.core.group, change);
        self.core.group.apply(change);
        before.describe(&self.core.group, change, events);
        self.note_removal(op, now);
    }

    /// Remembers the ops that removed a device (its removal notice).
    fn note_removal(&mut self, op: &SignedOp, now: Timestamp) {
        let Some(Change::Member(rec)) = op.change() else {
            return;
        };
        if rec.status != MemberStatus::Removed
            || self.core.group.member(&rec.id).map(|m| &m.fingerprint) != Some(&rec.fingerprint)
        {
            return;
        }
        let entry =
            self.core
                .removals
                .entry(rec.id.clone())
                .or_insert_with(|| crate::core::Removal {
                    ops: Vec::new(),
                    learnt_at: now.as_secs(),
                });
        if !entry.ops.iter().any(|o| o.id() == op.id()) && entry.ops.len() < 4 {
            entry.ops.push(op.clone());
        }
        // Ops it wrote after the removal that we applied before we knew:
        // they stay in our state (nothing can take a merge back), so say so.
        // The bound is the removers' evidence; the device's own leave does
        // not raise it over ops we applied (PROTOCOL 10.5, *Final seq*).
        let final_seq = self
            .core
            .group
            .member(&rec.id)
            .map_or_else(|| rec.seq_bound(), |m| m.seq_bound());
        let held = self.core.book.highest_held(&rec.id);
        if rec.id != self.me.id && held > final_seq {
            tracing::warn!(device = %rec.id, final_seq, held, "this device applied ops a removed device wrote after its removal");
            self.core.applied_after_removal.insert(rec.id.clone(), held);
        } else {
            self.core.applied_after_removal.remove(&rec.id);
        }
    }
}

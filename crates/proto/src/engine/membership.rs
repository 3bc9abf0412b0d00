//! Membership changes: founding, admitting a joiner (the welcome), joining,
//! removal, leaving, account-key rotation, removal notices, and whether a
//! removal has reached every member yet (PROTOCOL 8.3, 9, 15).

use std::collections::{BTreeMap, BTreeSet};

use rand_core::{CryptoRng, RngCore};
use sma_crypto::{AccountKey, Certificate};

use super::Engine;
use crate::core::CoreState;
use crate::device::Identity;
use crate::envelope::{Body, Envelope, Kind, Marker, Recipient};
use crate::error::{PeerMisbehaved, ProtoError};
use crate::ids::{DeviceId, MessageId};
use crate::ops::SignedOp;
use crate::payload::{self, RemovalNotice, Welcome, PAYLOAD_VERSION};
use crate::state::{AccountKeyRecord, Change, MemberRecord, MemberStatus};
use crate::sync::SyncBook;
use crate::time::Timestamp;

/// What `remove` found about the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removing {
    /// A removal op was committed now.
    Committed,
    /// The record was removed already (only its folders are cleaned up).
    AlreadyRemoved,
    /// The state does not know the device.
    Unknown,
}

/// A removal that has not reached every remaining member yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRemoval {
    /// The removed device.
    pub device: DeviceId,
    /// Active members that have not acknowledged any op removing it.
    pub waiting_for: Vec<DeviceId>,
}

/// A new member as `pair` admits it.
pub struct Joiner<'a> {
    /// Its id.
    pub id: &'a DeviceId,
    /// Its certificate (from its pending announcement, checked by the PAKE).
    pub cert: &'a Certificate,
    /// Its name.
    pub name: &'a str,
    /// The heartbeat of its announcement.
    pub heartbeat: u64,
}

impl Engine {
    /// A new group: us as the only active member, and the account key as
    /// generation 1.
    pub fn found(
        me: Identity,
        name: &str,
        account_key: &AccountKey,
        now: Timestamp,
    ) -> Result<Engine, ProtoError> {
        let mut engine = Engine::new(me, CoreState::default())?;
        let stamp = engine.stamp(now);
        let record = MemberRecord {
            id: engine.me.id.clone(),
            fingerprint: engine.me.fingerprint(),
            cert: engine.me.cert().to_armored(),
            name: name.to_owned(),
            name_stamp: stamp.clone(),
            status: MemberStatus::Active,
            heartbeat: now.as_secs(),
            final_seq: None,
            left_seq: 0,
        };
        engine.commit(Change::Member(record), now)?;
        engine.commit(
            Change::AccountKey(AccountKeyRecord {
                generation: 1,
                stamp,
                fingerprint: account_key.fingerprint().to_string(),
                secret: account_key.to_armored_secret(),
            }),
            now,
        )?;
        Ok(engine)
    }

    /// Forgets the group (a founder that lost the founder race steps down).
    pub fn reset(&mut self) {
        self.core = CoreState::default();
    }

    /// Admits a joiner whose pairing confirmed: commits its `member` op,
    /// assumes it will hold everything the welcome carries, and returns the
    /// welcome (our whole state, our relay log and our view of what each
    /// member holds). The store must save the state before the welcome is
    /// sent (PROTOCOL 9.3 step 5).
    pub fn admit(&mut self, joiner: &Joiner<'_>, now: Timestamp) -> Result<Welcome, ProtoError> {
        if !joiner.cert.can_encrypt() {
            return Err(ProtoError::ApiMisuse(format!(
                "device {} has a certificate without an encryption subkey; it cannot be paired",
                joiner.id
            )));
        }
        let stamp = self.stamp(now);
        self.commit(
            Change::Member(MemberRecord {
                id: joiner.id.clone(),
                fingerprint: joiner.cert.fingerprint().to_string(),
                cert: joiner.cert.to_armored(),
                name: joiner.name.to_owned(),
                name_stamp: stamp,
                status: MemberStatus::Active,
                // Its announcement's heartbeat counts like any other:
                // at most a day ahead of our clock (PROTOCOL 14).
                heartbeat: joiner.heartbeat.clamp(
                    now.as_secs(),
                    now.as_secs() + super::liveness::HEARTBEAT_FUTURE_SLACK_SECS,
                ),
                final_seq: None,
                left_seq: 0,
            }),
            now,
        )?;
        let received = self.core.book.vector_with_own(&self.me.id);
        self.core.book.assume(joiner.id, received.clone());
        let peer_applied: BTreeMap<DeviceId, BTreeMap<DeviceId, u64>> = self
            .peers()
            .into_iter()
            .filter(|p| p != joiner.id)
            .filter_map(|p| Some((p.clone(), self.core.book.peer_applied(&p)?.clone())))
            .collect();
        Ok(Welcome {
            account: self.me.account.clone(),
            member_id: self.me.id.clone(),
            joiner_id: joiner.id.clone(),
            state: self.core.group.clone(),
            received,
            peer_applied,
            log: self
                .core
                .book
                .log()
                .values()
                .map(|e| e.op.clone())
                .collect(),
            alive: self.core.alive.clone(),
            parts: 0,
        })
    }

    /// The joiner's engine from a welcome that opened (see
    /// [`Engine::install_welcome`]).
    pub fn from_welcome(
        me: Identity,
        welcome: Welcome,
        now: Timestamp,
    ) -> Result<Engine, ProtoError> {
        let mut engine = Engine::new(me, CoreState::default())?;
        engine.install_welcome(welcome, now)?;
        Ok(engine)
    }

    /// Replaces our state by a welcome that opened (authenticated by the
    /// pairing): the welcome must name us and our account, list us active
    /// with our certificate, carry an account key, and keep the rules of
    /// PROTOCOL 6.5. Nothing changes if it does not.
    pub fn install_welcome(&mut self, welcome: Welcome, now: Timestamp) -> Result<(), ProtoError> {
        let me = &self.me;
        let wrong = |what| ProtoError::Peer(PeerMisbehaved::rule("welcome", what));
        if welcome.joiner_id != me.id || !welcome.account.eq_ignore_ascii_case(&me.account) {
            return Err(wrong("names another device or account"));
        }
        if !welcome.state.is_active_member(&me.id, &me.fingerprint()) {
            return Err(wrong("does not list this device as a member"));
        }
        if welcome.state.current_account_key().is_none() {
            return Err(wrong("carries no account key"));
        }
        if welcome.parts != 0 {
            return Err(wrong("is installed without its parts"));
        }
        welcome.state.check()?;
        let members = welcome.state.active_members().map(|m| m.id.clone());
        // The member that paired us holds everything its welcome carries:
        // nothing of it is relayed back.
        let mut peer_applied = welcome.peer_applied;
        peer_applied.insert(welcome.member_id.clone(), welcome.received.clone());
        let book = SyncBook::for_joiner(
            &me.id,
            welcome.received,
            peer_applied,
            welcome.log,
            members,
            now,
        );
        let mut core = CoreState {
            group: welcome.state,
            book,
            alive: welcome.alive,
            ..CoreState::default()
        };
        observe_all(&mut core);
        self.core = core;
        self.certs.clear();
        let id = self.me.id.clone();
        self.heard(&id, now.as_secs(), now);
        Ok(())
    }

    /// Sets `id` removed (forced removal). Our own id is refused.
    pub fn remove(&mut self, id: &DeviceId, now: Timestamp) -> Result<Removing, ProtoError> {
        if id == &self.me.id {
            return Err(ProtoError::ApiMisuse(
                "a device cannot remove itself".into(),
            ));
        }
        let Some(rec) = self.core.group.member(id).cloned() else {
            return Ok(Removing::Unknown);
        };
        if rec.status == MemberStatus::Removed {
            return Ok(Removing::AlreadyRemoved);
        }
        let mut rec = rec;
        rec.status = MemberStatus::Removed;
        rec.final_seq = rec.final_seq.max(Some(self.core.book.highest_held(id)));
        self.commit(Change::Member(rec), now)?;
        Ok(Removing::Committed)
    }

    /// Sets our own record removed (`leave`): our ops up to this one count,
    /// later ones (someone holding our key) are refused. The leave's seq
    /// goes into `left_seq`, never into the removers' `final_seq`.
    pub fn leave(&mut self, now: Timestamp) -> Result<(), ProtoError> {
        if let Some(mut rec) = self.core.group.member(&self.me.id).cloned() {
            rec.status = MemberStatus::Removed;
            rec.left_seq = self.core.book.last_seq() + 1;
            self.commit(Change::Member(rec), now)?;
        }
        Ok(())
    }

    /// Adds `key` as the next account-key generation (a whole new key,
    /// PROTOCOL 15.5).
    pub fn rotate_account_key(
        &mut self,
        key: &AccountKey,
        now: Timestamp,
    ) -> Result<u32, ProtoError> {
        let generation = self
            .core
            .group
            .current_account_key()
            .map_or(0, |k| k.generation)
            + 1;
        let stamp = self.stamp(now);
        self.commit(
            Change::AccountKey(AccountKeyRecord {
                generation,
                stamp,
                fingerprint: key.fingerprint().to_string(),
                secret: key.to_armored_secret(),
            }),
            now,
        )?;
        Ok(generation)
    }

    /// The removal notice for removed device `id`: a plain message with the
    /// signed ops that removed it, for its inbox. `None` if we do not hold
    /// those ops (we learnt of the removal from a welcome).
    pub fn removal_notice(
        &self,
        rng: &mut (impl RngCore + CryptoRng),
        id: &DeviceId,
        now: Timestamp,
    ) -> Option<(MessageId, Vec<u8>)> {
        let removal = self.core.removals.get(id)?;
        let notice = RemovalNotice {
            v: PAYLOAD_VERSION,
            device_id: id.clone(),
            ops: removal.ops.clone(),
        };
        let message_id = MessageId::random(rng);
        let env = Envelope {
            account: self.me.account.clone(),
            date: now.as_secs(),
            marker: Marker {
                kind: Kind::Remove,
                from: self.me.id.clone(),
                to: Recipient::Device(id.clone()),
                id: message_id.clone(),
            },
            body: Body::Plain {
                payload: payload::to_json(&notice).to_vec(),
            },
        };
        Some((message_id, env.to_bytes()))
    }

    /// Removals that some active member has not acknowledged yet.
    pub fn pending_removals(&self) -> Vec<PendingRemoval> {
        let peers = self.peers();
        let mut out = Vec::new();
        for (device, removal) in &self.core.removals {
            let waiting: BTreeSet<DeviceId> = peers
                .iter()
                .filter(|p| *p != device)
                .filter(|p| {
                    !removal.ops.iter().any(|op| {
                        !self.core.book.is_assumed(p)
                            && self.core.book.peer_has(p, op.origin()) >= op.seq()
                    })
                })
                .cloned()
                .collect();
            if !waiting.is_empty() {
                out.push(PendingRemoval {
                    device: device.clone(),
                    waiting_for: waiting.into_iter().collect(),
                });
            }
        }
        out
    }

    /// What keeps ops from arriving or makes our state differ (PROTOCOL
    /// 11.2): gaps, `fresh` peers whose acknowledgement of our ops is
    /// stalled, and ops of removed devices we applied after their removal.
    pub fn withheld(
        &self,
        fresh: &BTreeSet<DeviceId>,
        now: Timestamp,
    ) -> Vec<crate::sync::Withheld> {
        let mut out = self.core.book.withheld(&self.me.id, fresh, now);
        for (origin, held) in &self.core.applied_after_removal {
            let final_seq = self.core.group.member(origin).map_or(0, |m| m.seq_bound());
            out.push(crate::sync::Withheld::AfterRemoval {
                origin: origin.clone(),
                final_seq,
                held: *held,
            });
        }
        out
    }

    /// The signed op in our log with this id, if we hold it.
    pub fn logged_op(&self, id: &crate::ops::OpId) -> Option<&SignedOp> {
        self.core.book.log().get(id).map(|e| &e.op)
    }
}

/// The joiner's clock observes every stamp of the welcome's state
/// (unclamped: the welcome is authenticated by the pairing), so its later
/// stamps order after all of them.
fn observe_all(core: &mut CoreState) {
    let group = &core.group;
    let clock = &mut core.clock;
    for rec in group.members().values() {
        clock.observe(&rec.name_stamp);
    }
    for rec in group.account_keys().values() {
        clock.observe(&rec.stamp);
    }
    if let Some(s) = &group.prefer_encrypt().stamp {
        clock.observe(s);
    }
    for peer in group.keyring().values() {
        for s in [&peer.stamp, &peer.gossip_stamp].into_iter().flatten() {
            clock.observe(s);
        }
    }
}

//! Sealing and opening device messages, and accepting the ops they carry
//! (PROTOCOL 7.3, 11.2, 13.2).
//!
//! An op is accepted when its origin is a device our state knows (any
//! status: a relay vouches for ops it accepted while the origin was active),
//! its signature by that origin verifies, and it keeps the rules of
//! PROTOCOL 6.5 — whoever relayed it. The message carrying it must come
//! from an active member, or be *introduced*: carry an op by an active
//! member that admits its sender (a joiner whose sponsor's own message was
//! lost, PROTOCOL 10.5).

use rand_core::{CryptoRng, RngCore};
use sma_crypto::{Certificate, SigContext};
use tracing::warn;

use super::{Engine, StateEvent, MAX_SEALED_PLAINTEXT};
use crate::envelope::{Body, Envelope, Kind, Marker, Recipient};
use crate::error::{chain, InvalidMessage, PeerMisbehaved, ProtoError};
use crate::ids::{DeviceId, MessageId};
use crate::ops::SignedOp;
use crate::payload::{self, OpsBody, SealedContent, SealedPayload, PAYLOAD_VERSION};
use crate::state::{Change, GroupState, MemberStatus};
use crate::time::Timestamp;

/// A verified, decrypted sealed message.
#[derive(Debug)]
pub struct Opened {
    /// The envelope marker.
    pub marker: Marker,
    /// The payload.
    pub payload: SealedPayload,
}

/// What accepting one ops body did.
#[derive(Debug, Default)]
pub struct Accepted {
    /// Ops new to us, applied.
    pub new_ops: usize,
    /// Of those, ops of another origin than the sender (relayed).
    pub relayed: usize,
    /// Ops rejected (bad signature, broken rule).
    pub rejected: usize,
    /// Ops of origins we do not know yet (not applied; sent again later).
    pub unknown_origin: usize,
}

/// A message sealed to some members.
pub struct Sealed {
    /// Its message id.
    pub id: MessageId,
    /// The message bytes.
    pub bytes: Vec<u8>,
    /// The members it is readable by (those with a usable certificate).
    pub recipients: Vec<DeviceId>,
}

impl Engine {
    /// Seals `content` to `recipients` (active members; those whose
    /// certificate cannot be sealed to are left out with a warning).
    /// Fails if none is left.
    pub fn seal(
        &mut self,
        rng: &mut (impl RngCore + CryptoRng),
        now: Timestamp,
        (kind, to): (Kind, Recipient),
        recipients: &[DeviceId],
        content: SealedContent,
    ) -> Result<Sealed, ProtoError> {
        if let Some(p) = recipients
            .iter()
            .find(|p| !self.core.group.is_active(p) || *p == &self.me.id)
        {
            return Err(ProtoError::ApiMisuse(format!(
                "{p} is not another active member"
            )));
        }
        let usable = self.sealable(recipients);
        if usable.is_empty() {
            return Err(ProtoError::ApiMisuse(
                "no recipient has a certificate that can be encrypted to".into(),
            ));
        }
        let ids: Vec<DeviceId> = usable.iter().map(|(id, _)| id.clone()).collect();
        let certs: Vec<&Certificate> = usable.iter().map(|(_, c)| c).collect();
        let id = MessageId::random(rng);
        let sealed = SealedPayload {
            v: PAYLOAD_VERSION,
            kind: kind.as_str().to_owned(),
            from: self.me.id.clone(),
            to: ids.clone(),
            id: id.clone(),
            sent_at: now.as_secs(),
            content,
        };
        let plain = payload::to_json(&sealed);
        let armored = sma_crypto::seal(rng, &self.me.key, &certs, &plain, SigContext::Sealed)?;
        let env = Envelope {
            account: self.me.account.clone(),
            date: now.as_secs(),
            marker: Marker {
                kind,
                from: self.me.id.clone(),
                to,
                id: id.clone(),
            },
            body: Body::Encrypted { armored },
        };
        Ok(Sealed {
            id,
            bytes: env.to_bytes(),
            recipients: ids,
        })
    }

    /// Verifies and decrypts a sealed message addressed to us, from an
    /// active member or from a device the message itself introduces. The
    /// payload must agree with the envelope.
    pub fn open(&mut self, env: &Envelope) -> Result<Opened, ProtoError> {
        let Body::Encrypted { armored } = &env.body else {
            return Err(InvalidMessage::Missing("encrypted body").into());
        };
        if matches!(&env.marker.to, Recipient::Device(id) if id != &self.me.id) {
            return Err(PeerMisbehaved::WrongRecipient.into());
        }
        let sender = &env.marker.from;
        let plain = match self.core.group.status_of(sender) {
            Some(MemberStatus::Active) => {
                let cert = self.cert_of(sender)?;
                sma_crypto::open(
                    &self.me.key,
                    &cert,
                    armored,
                    MAX_SEALED_PLAINTEXT,
                    SigContext::Sealed,
                )
                .map_err(PeerMisbehaved::Crypto)?
            }
            None => {
                let group = &self.core.group;
                sma_crypto::open_then_verify(
                    &self.me.key,
                    armored,
                    MAX_SEALED_PLAINTEXT,
                    SigContext::Sealed,
                    |plain| introduction(group, sender, plain),
                )
                .map_err(|e| match e {
                    sma_crypto::CryptoError::BadSignature => {
                        PeerMisbehaved::NotAMember(sender.to_string())
                    }
                    other => PeerMisbehaved::Crypto(other),
                })?
            }
            Some(_) => return Err(PeerMisbehaved::NotAMember(sender.to_string()).into()),
        };
        let payload: SealedPayload = payload::from_json(&plain)?;
        check_payload(&payload, &env.marker, &self.me.id)?;
        Ok(Opened {
            marker: env.marker.clone(),
            payload,
        })
    }

    /// Accepts the ops of a sync message from `sender` (opened, so an
    /// active or introduced member): verifies each against its origin,
    /// applies the new ones, and records the sender's acknowledgements and
    /// signs of life.
    pub(crate) fn accept_ops(
        &mut self,
        sender: &DeviceId,
        sent_at: u64,
        body: OpsBody,
        now: Timestamp,
        events: &mut Vec<StateEvent>,
    ) -> Accepted {
        let mut got = Accepted::default();
        if !body.ops.is_empty() {
            self.core.book.owe_ack(sender);
        }
        // Ops admitting a device come before that device's own ops only
        // by luck of order: retry those of unknown origins while any
        // progress is made.
        let mut pending = body.ops;
        loop {
            let before = pending.len();
            let mut later = Vec::new();
            for op in pending {
                let relayed = op.origin() != sender;
                let origin = op.origin().clone();
                match self.accept_op(op, now, events) {
                    Ok(true) => {
                        got.new_ops += 1;
                        got.relayed += usize::from(relayed);
                        // Tell the origin too, at once: it learns that its
                        // op (a removal, say) reached us, which it could
                        // not from the relay.
                        if relayed && self.core.group.is_active(&origin) && origin != self.me.id {
                            self.core.book.owe_ack(&origin);
                        }
                    }
                    Ok(false) => {}
                    Err(OpVerdict::UnknownOrigin(op)) => later.push(*op),
                    Err(OpVerdict::Rejected(id, e)) => {
                        got.rejected += 1;
                        warn!(%sender, origin = %id.0, seq = id.1, error = %chain(&e), "op rejected (peer misbehaved); not applied");
                    }
                }
            }
            pending = later;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        got.unknown_origin = pending.len();
        self.core.book.note_acks(&self.me.id, sender, &body.acks);
        self.heard(sender, sent_at, now);
        for (id, at) in &body.alive {
            self.heard(id, *at, now);
        }
        if got.new_ops > 0 {
            events.insert(
                0,
                StateEvent::Applied {
                    from: sender.clone(),
                    ops: got.new_ops,
                },
            );
        }
        got
    }

    /// One op: `Ok(true)` applied, `Ok(false)` held already.
    fn accept_op(
        &mut self,
        op: SignedOp,
        now: Timestamp,
        events: &mut Vec<StateEvent>,
    ) -> Result<bool, OpVerdict> {
        if self.core.book.holds(&self.me.id, &op.id()) {
            return Ok(false);
        }
        let reject = |op: &SignedOp, e| OpVerdict::Rejected(op.id(), e);
        op.check_rules().map_err(|e| reject(&op, e))?;
        let Some(origin) = self.core.group.member(op.origin()) else {
            return Err(OpVerdict::UnknownOrigin(Box::new(op)));
        };
        if written_after_removal(origin, &op) {
            let e = PeerMisbehaved::rule("op", "written by a removed device after its removal");
            return Err(reject(&op, e));
        }
        let cert = self.cert_of(op.origin()).map_err(|e| reject(&op, e))?;
        op.verify(&cert).map_err(|e| reject(&op, e))?;
        self.apply_received(&op, now, events);
        Ok(self.core.book.take_op(&self.me.id, op, now))
    }
}

/// Whether `op` of `origin` was written after the removal that `origin`'s
/// record carries (PROTOCOL 10.5): its seq is above the record's
/// [`seq_bound`](crate::state::MemberRecord::seq_bound). Such ops are
/// refused and never relayed. The one exception is the origin's own
/// `leave` right above the bound (a member removed it while it was
/// leaving): it changes nothing but its own record, to removed with
/// `left_seq` equal to the leave's seq, which moves the bound onto the
/// leave itself and so admits no other op.
pub(crate) fn written_after_removal(origin: &crate::state::MemberRecord, op: &SignedOp) -> bool {
    origin.status == MemberStatus::Removed
        && op.seq() > origin.seq_bound()
        && !is_leave_after(origin, op)
}

/// Whether `op` is `origin`'s leave with the seq right after its bound. A
/// leave written by an earlier version carries its seq in `final_seq`.
fn is_leave_after(origin: &crate::state::MemberRecord, op: &SignedOp) -> bool {
    let Some(Change::Member(rec)) = op.change() else {
        return false;
    };
    let seq = op.seq();
    rec.id == origin.id
        && rec.status == MemberStatus::Removed
        && seq == origin.seq_bound().saturating_add(1)
        && (rec.left_seq == seq || (rec.left_seq == 0 && rec.final_seq == Some(seq)))
}

enum OpVerdict {
    UnknownOrigin(Box<SignedOp>),
    Rejected(crate::ops::OpId, PeerMisbehaved),
}

/// For a message from a device our state does not know: the certificate
/// that an op in it, signed by an active member, admits it with.
fn introduction(group: &GroupState, sender: &DeviceId, plain: &[u8]) -> Option<Certificate> {
    let payload: SealedPayload = payload::from_json(plain).ok()?;
    let SealedContent::Ops(body) = payload.content else {
        return None;
    };
    body.ops.iter().find_map(|op| {
        let Some(Change::Member(rec)) = op.change() else {
            return None;
        };
        if &rec.id != sender || rec.status != MemberStatus::Active || op.check_rules().is_err() {
            return None;
        }
        let origin = group.member(op.origin())?;
        if origin.status != MemberStatus::Active {
            return None;
        }
        let origin_cert = Certificate::from_armored(&origin.cert).ok()?;
        if origin_cert.fingerprint().to_string() != origin.fingerprint {
            return None;
        }
        op.verify(&origin_cert).ok()?;
        Certificate::from_armored(&rec.cert).ok()
    })
}

/// PROTOCOL 13.2 row 13: the payload agrees with the envelope.
fn check_payload(
    payload: &SealedPayload,
    marker: &Marker,
    me: &DeviceId,
) -> Result<(), ProtoError> {
    if payload.v != PAYLOAD_VERSION {
        return Err(InvalidMessage::UnsupportedVersion(payload.v.to_string()).into());
    }
    if payload.from != marker.from {
        return Err(PeerMisbehaved::EnvelopeMismatch("from").into());
    }
    if payload.id != marker.id {
        return Err(PeerMisbehaved::EnvelopeMismatch("id").into());
    }
    if payload.kind != marker.kind.as_str() {
        return Err(PeerMisbehaved::EnvelopeMismatch("kind").into());
    }
    if !payload.to.contains(me) {
        return Err(PeerMisbehaved::WrongRecipient.into());
    }
    Ok(())
}

//! The member device core: identity, replicated state and sync bookkeeping.
//!
//! Pure: it builds and checks messages, merges state and decides what to
//! send; the driver does the IMAP and the storing.

use std::collections::BTreeSet;

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sma_crypto::{Certificate, DeviceKey};

use crate::envelope::{Body, Envelope, Kind, Marker, Recipient};
use crate::error::{InvalidMessage, PeerMisbehaved, ProtoError};
use crate::folders::Layout;
use crate::hlc::{Hlc, HlcClock};
use crate::ids::{DeviceId, MessageId};
use crate::payload::{self, AnnouncedState, Announcement, OpsBody, SealedContent, SealedPayload};
use crate::state::{Change, GroupState, MemberStatus, Op};
use crate::sync::{Received, SyncBook};

/// Largest plaintext accepted inside a sealed message.
pub const MAX_SEALED_PLAINTEXT: usize = 4 << 20;

/// The persistent, serialisable part of a device's protocol state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoreState {
    /// The replicated group state as this device knows it.
    pub group: GroupState,
    /// Sync bookkeeping.
    pub book: SyncBook,
    /// Hybrid logical clock.
    pub clock: HlcClock,
}

impl CoreState {
    /// Marks every part as saved: the next save writes only later changes.
    pub fn mark_saved(&mut self) {
        self.group.keyring_dirty.clear();
        self.book.log_dirty.clear();
    }
}

/// A device's identity: id, account and device key.
pub struct Identity {
    /// Our device id.
    pub id: DeviceId,
    /// The account address.
    pub account: String,
    /// Our device key (secret).
    pub key: DeviceKey,
}

impl Identity {
    /// Our public certificate.
    pub fn cert(&self) -> Certificate {
        self.key.certificate()
    }

    /// Our certificate fingerprint (upper-case hex).
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint().to_string()
    }
}

/// A verified, decrypted sealed message.
#[derive(Debug)]
pub struct Opened {
    /// The envelope marker.
    pub marker: Marker,
    /// The payload.
    pub payload: SealedPayload,
}

/// A sync message ready to append to a peer's inbox.
pub struct OutgoingSync {
    /// The recipient.
    pub peer: DeviceId,
    /// Its message id.
    pub message_id: MessageId,
    /// The highest own seq it carries.
    pub upto: u64,
    /// The message bytes.
    pub bytes: Vec<u8>,
}

/// Builds a signed announcement message.
#[allow(clippy::too_many_arguments)]
pub fn build_announcement(
    rng: &mut (impl RngCore + CryptoRng),
    me: &Identity,
    name: &str,
    created: u64,
    now: u64,
    state: AnnouncedState,
    layout: Layout,
    founder: bool,
) -> Result<Vec<u8>, ProtoError> {
    let ann = Announcement {
        v: 1,
        device_id: me.id.clone(),
        name: name.to_owned(),
        software: concat!("sma ", env!("CARGO_PKG_VERSION")).to_owned(),
        cert: me.cert().to_armored(),
        created,
        heartbeat: now,
        state,
        layout,
        founder,
    };
    let doc = payload::to_json(&ann);
    let signature = sma_crypto::sign_detached(&me.key, &doc)?;
    Ok(Envelope {
        account: me.account.clone(),
        date: now,
        marker: Marker {
            kind: Kind::Announce,
            from: me.id.clone(),
            to: Recipient::All,
            id: MessageId::random(rng),
        },
        body: Body::Signed {
            payload: doc,
            signature,
        },
    }
    .to_bytes())
}

/// Checks an announcement: well-formed, self-consistent and self-signed.
/// Returns it with its certificate. Whether the device is a *member* is a
/// separate question for the group state.
pub fn verify_announcement(env: &Envelope) -> Result<(Announcement, Certificate), ProtoError> {
    let Body::Signed { payload, signature } = &env.body else {
        return Err(InvalidMessage::Missing("signed body").into());
    };
    let ann: Announcement = payload::from_json(payload)?;
    ann.validate()?;
    if ann.device_id != env.marker.from {
        return Err(PeerMisbehaved::EnvelopeMismatch("device id").into());
    }
    let cert = Certificate::from_armored(&ann.cert)
        .map_err(|_| InvalidMessage::BadField("certificate"))?;
    sma_crypto::verify_detached(&cert, payload, signature)
        .map_err(|e| PeerMisbehaved::Crypto(e.to_string()))?;
    Ok((ann, cert))
}

/// A member device: identity plus protocol state.
pub struct Member {
    /// Who we are.
    pub me: Identity,
    /// Persistent protocol state.
    pub core: CoreState,
}

impl Member {
    /// Stamps and records a local change, merging it into our state.
    pub fn change(&mut self, now_ms: u64, change: Change) -> Op {
        let stamp = self.core.clock.tick(now_ms, &self.me.id);
        self.core.group.apply(&change);
        self.core.book.push(&self.me.id, stamp, change)
    }

    /// A fresh HLC stamp (for building records before turning them into changes).
    pub fn stamp(&mut self, now_ms: u64) -> Hlc {
        self.core.clock.tick(now_ms, &self.me.id)
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

    /// Seals `content` to `recipients` (each must be an active member).
    pub fn seal(
        &self,
        rng: &mut (impl RngCore + CryptoRng),
        now: u64,
        kind: Kind,
        to: Recipient,
        recipients: &[DeviceId],
        content: SealedContent,
    ) -> Result<(MessageId, Vec<u8>), ProtoError> {
        let certs = recipients
            .iter()
            .map(|id| {
                let rec = self
                    .core
                    .group
                    .members
                    .get(id)
                    .filter(|m| m.status == MemberStatus::Active)
                    .ok_or_else(|| {
                        ProtoError::ApiMisuse(format!("{id} is not an active member"))
                    })?;
                Ok(Certificate::from_armored(&rec.cert)?)
            })
            .collect::<Result<Vec<_>, ProtoError>>()?;
        let id = MessageId::random(rng);
        let sealed = SealedPayload {
            v: 1,
            kind: kind.as_str().to_owned(),
            from: self.me.id.clone(),
            to: recipients.to_vec(),
            id: id.clone(),
            sent_at: now,
            content,
        };
        let refs: Vec<&Certificate> = certs.iter().collect();
        let armored = sma_crypto::seal(rng, &self.me.key, &refs, &payload::to_json(&sealed))?;
        let env = Envelope {
            account: self.me.account.clone(),
            date: now,
            marker: Marker {
                kind,
                from: self.me.id.clone(),
                to,
                id: id.clone(),
            },
            body: Body::Encrypted { armored },
        };
        Ok((id, env.to_bytes()))
    }

    /// Verifies and decrypts a sealed message addressed to us. The sender
    /// must be an active member; the payload must agree with the envelope.
    pub fn open(&self, env: &Envelope) -> Result<Opened, ProtoError> {
        let Body::Encrypted { armored } = &env.body else {
            return Err(InvalidMessage::Missing("encrypted body").into());
        };
        match &env.marker.to {
            Recipient::Device(id) if id != &self.me.id => {
                return Err(PeerMisbehaved::WrongRecipient.into())
            }
            _ => {}
        }
        let sender = self
            .core
            .group
            .members
            .get(&env.marker.from)
            .filter(|m| m.status == MemberStatus::Active)
            .ok_or_else(|| PeerMisbehaved::NotAMember(env.marker.from.to_string()))?;
        let cert = Certificate::from_armored(&sender.cert)?;
        let plain = sma_crypto::open(&self.me.key, &cert, armored, MAX_SEALED_PLAINTEXT)
            .map_err(|e| PeerMisbehaved::Crypto(e.to_string()))?;
        let payload: SealedPayload = payload::from_json(&plain)?;
        if payload.v != 1 {
            return Err(InvalidMessage::UnsupportedVersion(payload.v.to_string()).into());
        }
        if payload.from != env.marker.from {
            return Err(PeerMisbehaved::EnvelopeMismatch("from").into());
        }
        if payload.id != env.marker.id {
            return Err(PeerMisbehaved::EnvelopeMismatch("id").into());
        }
        if payload.kind != env.marker.kind.as_str() {
            return Err(PeerMisbehaved::EnvelopeMismatch("kind").into());
        }
        if !payload.to.contains(&self.me.id) {
            return Err(PeerMisbehaved::WrongRecipient.into());
        }
        Ok(Opened {
            marker: env.marker.clone(),
            payload,
        })
    }

    /// Applies an ops body from `sender`: bookkeeping, then merge of every op.
    pub fn receive_ops(&mut self, sender: &DeviceId, body: &OpsBody, now_ms: u64) -> Received {
        let had = self.core.book.received.get(sender).copied().unwrap_or(0);
        let got = self.core.book.receive(&self.me.id, sender, body);
        self.core.book.note_gap(sender, body, had, now_ms);
        for op in body.ops.iter().filter(|o| &o.origin == sender) {
            self.core.clock.observe_at(&op.stamp, now_ms);
            self.core.group.apply(&op.change);
        }
        let peers = self.peers();
        self.core.book.prune(&peers, now_ms);
        got
    }

    /// Builds the sync messages due at `now` (one per peer at most).
    pub fn outgoing_syncs(
        &mut self,
        rng: &mut (impl RngCore + CryptoRng),
        now: u64,
    ) -> Result<Vec<OutgoingSync>, ProtoError> {
        let peers = self.peers();
        self.core.book.prune(&peers, now.saturating_mul(1000));
        let mut out = Vec::new();
        for peer in peers {
            let Some(body) = self.core.book.due_body(&peer, now) else {
                continue;
            };
            let upto = body.ops.last().map(|o| o.seq).unwrap_or(body.base);
            let (message_id, bytes) = self.seal(
                rng,
                now,
                Kind::Sync,
                Recipient::Device(peer.clone()),
                std::slice::from_ref(&peer),
                SealedContent::Ops(body),
            )?;
            out.push(OutgoingSync {
                peer,
                message_id,
                upto,
                bytes,
            });
        }
        Ok(out)
    }
}

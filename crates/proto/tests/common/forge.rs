//! Hand-made messages and ops: what a hostile provider, a buggy peer or a
//! forger could put in an inbox, built without the engine's help.

use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::ser::Serialize as _;
use sma_crypto::{Certificate, DeviceKey, SigContext};
use sma_proto::device::Identity;
use sma_proto::envelope::{Body, Envelope, Kind, Marker, Recipient};
use sma_proto::hlc::Hlc;
use sma_proto::ops::SignedOp;
use sma_proto::payload::{self, RemovalNotice, SealedContent, SealedPayload, PAYLOAD_VERSION};
use sma_proto::state::Change;
use sma_proto::{DeviceId, MessageId, Timestamp};

use super::{rng, ACCOUNT};

/// A fresh message id (deterministic per seed).
pub fn msg_id(seed: u64) -> MessageId {
    MessageId::random(&mut rng(9000 + seed))
}

/// A marker.
pub fn marker(kind: Kind, from: &DeviceId, to: Recipient, id: MessageId) -> Marker {
    Marker {
        kind,
        from: from.clone(),
        to,
        id,
    }
}

/// The bytes of an envelope on [`ACCOUNT`].
pub fn envelope(date: Timestamp, marker: Marker, body: Body) -> Vec<u8> {
    Envelope {
        account: ACCOUNT.into(),
        date: date.as_secs(),
        marker,
        body,
    }
    .to_bytes()
}

/// A plain message of `kind` (pairing kinds, removal notices).
pub fn plain(kind: Kind, from: &DeviceId, to: Recipient, date: Timestamp, json: &[u8]) -> Vec<u8> {
    let m = marker(kind, from, to, msg_id(date.as_ms() ^ kind as u64));
    envelope(
        date,
        m,
        Body::Plain {
            payload: json.to_vec(),
        },
    )
}

/// Replaces the value of header `name` (the whole line) in a message.
pub fn set_header(bytes: &[u8], name: &str, value: &str) -> Vec<u8> {
    rewrite_header(bytes, name, Some(value))
}

/// Removes header `name` from a message.
pub fn drop_header(bytes: &[u8], name: &str) -> Vec<u8> {
    rewrite_header(bytes, name, None)
}

fn rewrite_header(bytes: &[u8], name: &str, value: Option<&str>) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let prefix = format!("{name}:");
    let mut lines: Vec<String> = Vec::new();
    let mut found = false;
    for line in head.split("\r\n") {
        if line.starts_with(&prefix) {
            found = true;
            if let Some(v) = value {
                lines.push(format!("{name}: {v}"));
            }
        } else {
            lines.push(line.to_owned());
        }
    }
    assert!(found, "no {name} header");
    format!("{}\r\n\r\n{body}", lines.join("\r\n")).into_bytes()
}

/// A sealed message whose payload and marker are chosen freely, signed by
/// `signer` and encrypted to `recipients`.
pub fn sealed(
    signer: &Identity,
    recipients: &[&Certificate],
    marker: Marker,
    payload: &SealedPayload,
    date: Timestamp,
) -> Vec<u8> {
    let armored = sma_crypto::seal(
        &mut rng(date.as_ms()),
        &signer.key,
        recipients,
        &payload::to_json(payload),
        SigContext::Sealed,
    )
    .unwrap();
    envelope(date, marker, Body::Encrypted { armored })
}

/// A sealed payload that agrees with `marker` (sent to `to`).
pub fn payload_for(
    marker: &Marker,
    to: &[DeviceId],
    sent_at: Timestamp,
    content: SealedContent,
) -> SealedPayload {
    SealedPayload {
        v: PAYLOAD_VERSION,
        kind: marker.kind.as_str().into(),
        from: marker.from.clone(),
        to: to.to_vec(),
        id: marker.id.clone(),
        sent_at: sent_at.as_secs(),
        content,
    }
}

/// An op signed by `key`, claiming `origin`.
pub fn op(
    key: &DeviceKey,
    origin: &DeviceId,
    seq: u64,
    now: Timestamp,
    change: Change,
) -> SignedOp {
    let stamp = Hlc {
        ms: now.as_ms(),
        counter: 0,
        device: origin.clone(),
    };
    SignedOp::sign(key, origin, seq, stamp, change).unwrap()
}

/// An op from its JSON text, signed by `key` (any change kind, read or not).
pub fn raw_op(key: &DeviceKey, raw: &str) -> SignedOp {
    let sig = sma_crypto::sign_binary(key, raw.as_bytes(), SigContext::Op).unwrap();
    SignedOp::from_parts(raw.into(), sig).unwrap()
}

/// `op` with its JSON changed by `edit` (the signature kept).
pub fn altered(op: &SignedOp, edit: impl Fn(&str) -> String) -> SignedOp {
    let json = serde_json::to_string(op).unwrap();
    let changed = edit(&json);
    assert_ne!(changed, json, "the edit changed nothing");
    serde_json::from_str(&changed).unwrap()
}

/// A removal notice from `from` to `to` carrying `ops`.
pub fn removal_notice(
    from: &DeviceId,
    to: &DeviceId,
    ops: Vec<SignedOp>,
    date: Timestamp,
) -> Vec<u8> {
    let notice = RemovalNotice {
        v: PAYLOAD_VERSION,
        device_id: to.clone(),
        ops,
    };
    plain(
        Kind::Remove,
        from,
        Recipient::Device(to.clone()),
        date,
        &payload::to_json(&notice),
    )
}

/// `key`'s certificate with its encryption subkey stripped (primary key,
/// user id and self-signature only).
pub fn cert_without_encryption(key: &DeviceKey) -> Certificate {
    let armored = key.certificate().to_armored();
    let (mut pk, _) = SignedPublicKey::from_armor_single(armored.as_bytes()).unwrap();
    pk.public_subkeys.clear();
    let cert = Certificate::from_bytes(&pk.to_bytes().unwrap()).unwrap();
    assert!(!cert.can_encrypt());
    cert
}

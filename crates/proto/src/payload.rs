//! JSON payloads carried inside SMA messages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::InvalidMessage;
use crate::folders::Layout;
use crate::ids::{DeviceId, MessageId, RandomId};
use crate::state::{GroupState, Op};

/// Longest device name we accept (characters).
pub const MAX_NAME_CHARS: usize = 128;

/// Whether an announcing device claims membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnouncedState {
    /// Waiting to be paired.
    Pending,
    /// Claims to be a member (trusted only if the group state agrees).
    Member,
}

/// A device's self-description in the announcements folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    /// Payload version (1).
    pub v: u32,
    /// The announcing device.
    pub device_id: DeviceId,
    /// Human name of the device.
    pub name: String,
    /// Software name and version.
    pub software: String,
    /// The device's armored public OpenPGP certificate.
    pub cert: String,
    /// When the device was created (Unix seconds).
    pub created: u64,
    /// When this announcement was made (Unix seconds): the heartbeat.
    pub heartbeat: u64,
    /// Pending or member.
    pub state: AnnouncedState,
    /// The group's inbox layout.
    pub layout: Layout,
    /// Whether the device claims to have founded the group.
    pub founder: bool,
}

impl Announcement {
    /// Checks field bounds beyond the JSON schema.
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        if self.v != 1 {
            return Err(InvalidMessage::UnsupportedVersion(self.v.to_string()));
        }
        if self.name.chars().count() > MAX_NAME_CHARS || self.software.len() > 256 {
            return Err(InvalidMessage::BadField("name"));
        }
        if self.cert.len() > 64 * 1024 {
            return Err(InvalidMessage::BadField("cert"));
        }
        Ok(())
    }
}

/// Pairing step 1 (member → joiner).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairHello {
    /// Attempt id.
    pub attempt: RandomId,
    /// The account address.
    pub account: String,
    /// The member running `pair`.
    pub member_id: DeviceId,
    /// The pending device being paired.
    pub joiner_id: DeviceId,
    /// The member's armored device certificate.
    pub member_cert: String,
    /// SPAKE2 message of the member (side A).
    #[serde(with = "crate::b64")]
    pub spake: Vec<u8>,
}

/// Pairing step 2 (joiner → member).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairReply {
    /// Attempt id.
    pub attempt: RandomId,
    /// The member.
    pub member_id: DeviceId,
    /// The joiner.
    pub joiner_id: DeviceId,
    /// The joiner's armored device certificate.
    pub joiner_cert: String,
    /// SPAKE2 message of the joiner (side B).
    #[serde(with = "crate::b64")]
    pub spake: Vec<u8>,
    /// The joiner's key-confirmation tag.
    #[serde(with = "crate::b64")]
    pub confirm: Vec<u8>,
}

/// Pairing step 3 (member → joiner).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairConfirm {
    /// Attempt id.
    pub attempt: RandomId,
    /// The member's key-confirmation tag.
    #[serde(with = "crate::b64")]
    pub confirm: Vec<u8>,
}

/// Pairing step 4 (member → joiner): the sealed [`Welcome`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairWelcome {
    /// Attempt id.
    pub attempt: RandomId,
    /// nonce ‖ XChaCha20-Poly1305 ciphertext of the Welcome JSON.
    #[serde(with = "crate::b64")]
    pub sealed: Vec<u8>,
}

/// Pairing aborted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairAbort {
    /// Attempt id.
    pub attempt: RandomId,
    /// `code-rejected`, `timeout` or `cancelled`.
    pub reason: String,
}

/// What a new member receives, sealed under the pairing session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Welcome {
    /// The account address.
    pub account: String,
    /// The member that paired us.
    pub member_id: DeviceId,
    /// Ourselves.
    pub joiner_id: DeviceId,
    /// The full replicated state, including the member list and account keys.
    pub state: GroupState,
    /// Per origin, the highest seq whose effect `state` includes (the
    /// member's own ops and the ones it applied): the joiner's first acks.
    #[serde(default)]
    pub received: BTreeMap<DeviceId, u64>,
}

/// The plaintext inside every sealed (encrypted and signed) message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SealedPayload {
    /// Payload version (1).
    pub v: u32,
    /// Message kind, as in the envelope.
    pub kind: String,
    /// Sender device, as in the envelope.
    pub from: DeviceId,
    /// Every recipient device the message was sealed to.
    pub to: Vec<DeviceId>,
    /// Message id, as in the envelope.
    pub id: MessageId,
    /// When it was sent (Unix seconds).
    pub sent_at: u64,
    /// The kind-specific content.
    pub content: SealedContent,
}

/// Kind-specific content of a sealed payload.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealedContent {
    /// Operations and acknowledgements (kinds sync, remove, leave).
    Ops(OpsBody),
    /// An application message.
    App(AppBody),
}

/// Operations of one origin plus acknowledgements.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OpsBody {
    /// The sender's view of our acknowledgement of its ops when it sent this:
    /// `ops` holds the sender's ops with seq > base.
    pub base: u64,
    /// The highest seq this body covers (its last op, including ops a
    /// receiver may not understand); 0 when it carries none.
    #[serde(default)]
    pub upto: u64,
    /// The sender's own ops, ascending seq. Ops this version does not
    /// understand (a newer change kind) are skipped, not fatal; `upto` still
    /// acknowledges them, so the sender does not resend them forever.
    #[serde(deserialize_with = "lenient_ops")]
    pub ops: Vec<Op>,
    /// Per origin, the highest seq of that origin's ops the sender has applied.
    pub acks: BTreeMap<DeviceId, u64>,
}

/// An application message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppBody {
    /// Application-defined kind (e.g. `text`).
    pub app_kind: String,
    /// The message bytes.
    #[serde(with = "crate::b64")]
    pub body: Vec<u8>,
}

fn lenient_ops<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Op>, D::Error> {
    // Each op is first only delimited (no tree is built), then parsed.
    let raw: Vec<&'de serde_json::value::RawValue> = Deserialize::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|v| match serde_json::from_str::<Op>(v.get()) {
            Ok(op) => Some(op),
            Err(e) => {
                tracing::debug!(error = %e, "skipping an op this version does not understand");
                None
            }
        })
        .collect())
}

/// Parses a JSON payload with a size bound, mapping errors to [`InvalidMessage`].
pub fn from_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, InvalidMessage> {
    serde_json::from_slice(bytes).map_err(|e| {
        let mut s = e.to_string();
        s.truncate(120);
        InvalidMessage::Payload(s)
    })
}

/// Serialises a payload to JSON bytes.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain data structures cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_of_an_unknown_kind_are_skipped_not_fatal() {
        let json = br#"{"base":0,"upto":3,"acks":{},"ops":[
            {"origin":"00000000000000aa","seq":1,"stamp":{"ms":5,"counter":0,"device":"00000000000000aa"},
             "change":{"peer":{"addr":"a@example.org","last_seen":7}}},
            {"origin":"00000000000000aa","seq":2,"stamp":{"ms":6,"counter":0,"device":"00000000000000aa"},
             "change":{"calendar":{"x":"a \"quoted\" value"}}},
            {"origin":"00000000000000aa","seq":3,"stamp":{"ms":7,"counter":0,"device":"00000000000000aa"},
             "change":{"peer":{"addr":"b@example.org"}}}
        ]}"#;
        let body: OpsBody = from_json(json).expect("a newer op kind does not fail the body");
        assert_eq!(body.ops.iter().map(|o| o.seq).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(body.upto, 3, "upto still covers the skipped op");
        assert!(from_json::<OpsBody>(br#"{"base":0,"acks":{},"ops":[{"origin":"#).is_err());
    }
}

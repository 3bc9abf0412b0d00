//! JSON payloads carried inside SMA messages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::InvalidMessage;
use crate::folders::Layout;
use crate::ids::{DeviceId, MessageId, RandomId};
use crate::ops::{lenient_ops, SignedOp};
use crate::state::GroupState;

/// The payload version of this implementation (announcements, sealed
/// payloads, removal notices).
pub const PAYLOAD_VERSION: u32 = 2;

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
    /// Payload version (2).
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
        if self.v != PAYLOAD_VERSION {
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

/// Pairing step 4 (member → joiner): the sealed [`Welcome`], or one of its
/// continuation parts ([`WelcomePart`], PROTOCOL 9.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairWelcome {
    /// Attempt id.
    pub attempt: RandomId,
    /// Absent for the welcome itself; the index of the continuation part
    /// this message carries otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u32>,
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
    /// Per other member, what the member believes it has applied, so the
    /// joiner relays only what each lacks.
    #[serde(default)]
    pub peer_applied: BTreeMap<DeviceId, BTreeMap<DeviceId, u64>>,
    /// The member's relay log: signed ops the joiner passes on to members
    /// that lack them (its own admission among them).
    #[serde(default, deserialize_with = "lenient_ops")]
    pub log: Vec<SignedOp>,
    /// The member's last authenticated sign of life per member (seconds).
    #[serde(default)]
    pub alive: BTreeMap<DeviceId, u64>,
    /// How many continuation parts carry the rest of the keyring and the
    /// log (0: everything is here).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parts: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// A continuation of a [`Welcome`] too large for one message: keyring
/// entries and relay-log ops, sealed like the welcome itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WelcomePart {
    /// The joiner.
    pub joiner_id: DeviceId,
    /// Index of this part (0 ≤ index < `Welcome::parts`).
    pub index: u32,
    /// Keyring entries.
    #[serde(default)]
    pub keyring: Vec<crate::state::PeerState>,
    /// Relay-log ops.
    #[serde(default, deserialize_with = "lenient_ops")]
    pub log: Vec<SignedOp>,
}

/// A removal notice (kind `remove`, plain JSON): the signed ops that set
/// `device_id` removed, appended to its inbox so that it learns of its
/// removal although nothing is sealed to it any more.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemovalNotice {
    /// Payload version (2).
    pub v: u32,
    /// The removed device.
    pub device_id: DeviceId,
    /// Ops setting its record `removed`, each signed by its origin.
    #[serde(deserialize_with = "lenient_ops")]
    pub ops: Vec<SignedOp>,
}

/// The plaintext inside every sealed (encrypted and signed) message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SealedPayload {
    /// Payload version (2).
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

/// Signed ops of any origin, acknowledgements and signs of life.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OpsBody {
    /// Ops the recipient has not acknowledged, each signed by its origin:
    /// the sender's own and those it relays. Elements that are not readable
    /// signed ops are skipped, not fatal.
    #[serde(deserialize_with = "lenient_ops")]
    pub ops: Vec<SignedOp>,
    /// Per origin other than the sender, the highest seq of that origin's
    /// ops the sender has applied without gap.
    pub acks: BTreeMap<DeviceId, u64>,
    /// The sender's newest authenticated sign of life per member (Unix
    /// seconds), itself included: liveness travels with sync messages.
    #[serde(default)]
    pub alive: BTreeMap<DeviceId, u64>,
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

/// Parses a JSON payload with a size bound, mapping errors to [`InvalidMessage`].
pub fn from_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, InvalidMessage> {
    serde_json::from_slice(bytes).map_err(|e| {
        let mut s = e.to_string();
        s.truncate(120);
        InvalidMessage::Payload(s)
    })
}

/// Serialises a payload to JSON bytes, in a buffer zeroized on drop: sealed
/// payloads carry secret keys and private messages before encryption.
pub fn to_json<T: Serialize>(value: &T) -> Zeroizing<Vec<u8>> {
    // Serialising our own plain data structures (string map keys only)
    // cannot fail.
    Zeroizing::new(serde_json::to_vec(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_that_are_not_signed_ops_are_skipped_not_fatal() {
        let json = br#"{"acks":{},"ops":[{"op":{"origin":"00000000000000aa","seq":1,
            "stamp":{"ms":5,"counter":0,"device":"00000000000000aa"},
            "change":{"calendar":{"x":"a \"quoted\" value"}}},"sig":""},
            {"garbage":true}, 7]}"#;
        let body: OpsBody = from_json(json).expect("unreadable elements do not fail the body");
        assert_eq!(
            body.ops.len(),
            1,
            "the unknown change kind is kept, the junk skipped"
        );
        assert!(body.ops[0].change().is_none());
        assert!(body.alive.is_empty());
        assert!(from_json::<OpsBody>(br#"{"acks":{},"ops":[{"op":"#).is_err());
    }
}

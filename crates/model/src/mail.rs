//! The transport as the provider sees it: messages are opaque byte strings
//! the engines produced, folders are ordered lists of them. Only the header
//! marker is read, to name a message in a trace and to find one by id (as
//! the driver's `SEARCH HEADER Message-ID` does).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use sma_proto::envelope::{peek_marker, Kind, Recipient};
use sma_proto::MessageId;

use crate::keys::{name, Dev};

/// A message as stored on the server: its bytes and what its marker says.
#[derive(Clone)]
pub struct Msg {
    bytes: Arc<[u8]>,
    digest: [u8; 32],
    id: MessageId,
    kind: Kind,
    from: Option<Dev>,
    to: Option<Dev>,
    label: Arc<str>,
}

impl Msg {
    /// Wraps message bytes produced by an engine (they carry a marker).
    pub fn new(bytes: Vec<u8>) -> Msg {
        let marker = peek_marker(header_of(&bytes)).expect("engines produce valid markers");
        let (to, to_dev) = match &marker.to {
            Recipient::Device(d) => (name(d), Dev::of(d)),
            Recipient::All => ("all".into(), None),
        };
        let label = format!(
            "{} {}→{} #{}",
            marker.kind,
            name(&marker.from),
            to,
            &marker.id.as_str()[..4]
        );
        Msg {
            digest: Sha256::digest(&bytes).into(),
            bytes: bytes.into(),
            kind: marker.kind,
            from: Dev::of(&marker.from),
            to: to_dev,
            id: marker.id,
            label: label.into(),
        }
    }

    /// The message bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The header block (up to the first blank line).
    pub fn header(&self) -> &[u8] {
        header_of(&self.bytes)
    }

    /// Its marker id.
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The sending device, if one of ours.
    pub fn from(&self) -> Option<Dev> {
        self.from
    }

    /// The device it is addressed to, if one of ours.
    pub fn to(&self) -> Option<Dev> {
        self.to
    }

    /// SHA-256 of the bytes (identity of the message).
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// A short human-readable name, e.g. `sync A→B #3f2a`.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl PartialEq for Msg {
    fn eq(&self, other: &Msg) -> bool {
        self.digest == other.digest
    }
}

impl Eq for Msg {}

impl PartialOrd for Msg {
    fn partial_cmp(&self, other: &Msg) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Msg {
    fn cmp(&self, other: &Msg) -> std::cmp::Ordering {
        self.digest.cmp(&other.digest)
    }
}

impl Hash for Msg {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// The header block of a message: its bytes up to the first blank line.
pub fn header_of(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |p| p + 4);
    &bytes[..end]
}

/// One device's inbox folder: messages in UID order. UIDs are positions
/// (1-based) at the time of a pass, so two inboxes with the same messages in
/// the same order are the same state.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Inbox {
    msgs: Vec<Msg>,
}

impl Inbox {
    /// The messages, in UID order.
    pub fn msgs(&self) -> &[Msg] {
        &self.msgs
    }

    /// Appends a message.
    pub fn append(&mut self, msg: Msg) {
        self.msgs.push(msg);
    }

    /// Removes the message at `pos`.
    pub fn remove_at(&mut self, pos: usize) -> Msg {
        self.msgs.remove(pos)
    }

    /// Deletes the messages at these 1-based UIDs.
    pub fn delete_uids(&mut self, uids: &std::collections::BTreeSet<u32>) {
        let mut uid = 0u32;
        self.msgs.retain(|_| {
            uid += 1;
            !uids.contains(&uid)
        });
    }

    /// Deletes every message with this marker id (a sync message replaced
    /// by a newer one).
    pub fn delete_id(&mut self, id: &MessageId) {
        self.msgs.retain(|m| m.id() != id);
    }

    /// Whether a message with this marker id is present.
    pub fn has_id(&self, id: &MessageId) -> bool {
        self.msgs.iter().any(|m| m.id() == id)
    }

    /// Whether a removal notice from `from` is present.
    pub fn has_notice_from(&self, from: Dev) -> bool {
        self.msgs
            .iter()
            .any(|m| m.kind() == Kind::Remove && m.from() == Some(from))
    }

    /// Deletes everything (the folder was deleted and recreated).
    pub fn clear(&mut self) {
        self.msgs.clear();
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Whether the folder is empty.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// A digest of the contents, in order.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for m in &self.msgs {
            h.update(m.digest());
        }
        h.finalize().into()
    }
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.msgs).finish()
    }
}

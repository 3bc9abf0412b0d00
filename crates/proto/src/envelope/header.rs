//! The `Autocrypt-SMA` marker header.

use std::fmt;

use crate::error::InvalidMessage;
use crate::ids::{DeviceId, MessageId};

/// Name of the marker header that every SMA message carries.
pub const MARKER_HEADER: &str = "Autocrypt-SMA";
/// The protocol version this implementation speaks.
pub const PROTOCOL_VERSION: &str = "2";

/// The kind of an SMA message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A device description in the announcements folder.
    Announce,
    /// Pairing step 1, member → joiner.
    PairHello,
    /// Pairing step 2, joiner → member.
    PairReply,
    /// Pairing step 3, member → joiner (key confirmation).
    PairConfirm,
    /// Pairing step 4, member → joiner (sealed group state).
    PairWelcome,
    /// Pairing aborted (wrong code or cancelled), either direction.
    PairAbort,
    /// Replicated-state operations and acknowledgements.
    Sync,
    /// An application message between devices.
    App,
    /// A removal notice: the signed ops that removed the recipient, so a
    /// device that nobody seals anything to any more learns it was removed.
    Remove,
    /// Reserved (a departure travels as ops in `sync`); processed like `sync`.
    Leave,
}

impl Kind {
    /// All kinds.
    pub const ALL: [Kind; 10] = [
        Kind::Announce,
        Kind::PairHello,
        Kind::PairReply,
        Kind::PairConfirm,
        Kind::PairWelcome,
        Kind::PairAbort,
        Kind::Sync,
        Kind::App,
        Kind::Remove,
        Kind::Leave,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Announce => "announce",
            Kind::PairHello => "pair-hello",
            Kind::PairReply => "pair-reply",
            Kind::PairConfirm => "pair-confirm",
            Kind::PairWelcome => "pair-welcome",
            Kind::PairAbort => "pair-abort",
            Kind::Sync => "sync",
            Kind::App => "app",
            Kind::Remove => "remove",
            Kind::Leave => "leave",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the body of this kind is a sealed (signed + encrypted) OpenPGP message.
    pub fn is_sealed(self) -> bool {
        matches!(self, Kind::Sync | Kind::App | Kind::Leave)
    }

    /// Whether the body of this kind is a single plain JSON part (pairing
    /// messages and removal notices).
    pub fn is_plain(self) -> bool {
        self.is_pairing() || self == Kind::Remove
    }

    /// Whether this is one of the pairing kinds.
    pub fn is_pairing(self) -> bool {
        matches!(
            self,
            Kind::PairHello
                | Kind::PairReply
                | Kind::PairConfirm
                | Kind::PairWelcome
                | Kind::PairAbort
        )
    }

    /// The size cap for messages of this kind, in bytes.
    pub fn size_cap(self) -> usize {
        match self {
            Kind::PairWelcome => WELCOME_SIZE_CAP,
            _ => MESSAGE_SIZE_CAP,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Size cap for every SMA message except the welcome.
pub const MESSAGE_SIZE_CAP: usize = 1 << 20;
/// Size cap for the welcome, which carries the whole group state.
pub const WELCOME_SIZE_CAP: usize = 16 << 20;

/// Who a message is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// One device.
    Device(DeviceId),
    /// Every member (`*`).
    All,
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::Device(id) => write!(f, "{id}"),
            Recipient::All => f.write_str("*"),
        }
    }
}

/// The parsed marker header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// Message kind.
    pub kind: Kind,
    /// Sending device.
    pub from: DeviceId,
    /// Recipient device or all.
    pub to: Recipient,
    /// Unique message id.
    pub id: MessageId,
}

impl Marker {
    /// The header value, e.g. `v=2; kind=sync; from=…; to=…; id=…`.
    pub fn to_header_value(&self) -> String {
        format!(
            "v={}; kind={}; from={}; to={}; id={}",
            PROTOCOL_VERSION, self.kind, self.from, self.to, self.id
        )
    }

    /// Parses a header value. Unknown attributes are ignored; a version other
    /// than 2 or an unknown kind is reported as such so callers can skip it.
    pub fn parse(value: &str) -> Result<Marker, InvalidMessage> {
        let mut version = None;
        let mut kind = None;
        let mut from = None;
        let mut to = None;
        let mut id = None;
        for attr in value.split(';') {
            let attr = attr.trim();
            if attr.is_empty() {
                continue;
            }
            let Some((name, val)) = attr.split_once('=') else {
                return Err(InvalidMessage::BadField("Autocrypt-SMA attribute"));
            };
            let val = val.trim();
            match name.trim() {
                "v" => version = Some(val),
                "kind" => kind = Some(val),
                "from" => from = Some(val),
                "to" => to = Some(val),
                "id" => id = Some(val),
                _ => {}
            }
        }
        let version = version.ok_or(InvalidMessage::Missing("v attribute"))?;
        if version != PROTOCOL_VERSION {
            return Err(InvalidMessage::UnsupportedVersion(truncate(version)));
        }
        let kind_s = kind.ok_or(InvalidMessage::Missing("kind attribute"))?;
        let kind =
            Kind::parse(kind_s).ok_or_else(|| InvalidMessage::UnknownKind(truncate(kind_s)))?;
        let from = DeviceId::parse(from.ok_or(InvalidMessage::Missing("from attribute"))?)?;
        let to = match to.ok_or(InvalidMessage::Missing("to attribute"))? {
            "*" => Recipient::All,
            s => Recipient::Device(DeviceId::parse(s)?),
        };
        let id = MessageId::parse(id.ok_or(InvalidMessage::Missing("id attribute"))?)?;
        Ok(Marker { kind, from, to, id })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Marker {
        Marker {
            kind: Kind::Sync,
            from: DeviceId::parse("0000000000000001").unwrap(),
            to: Recipient::All,
            id: MessageId::parse(&"ab".repeat(16)).unwrap(),
        }
    }

    #[test]
    fn roundtrip() {
        let m = sample();
        assert_eq!(Marker::parse(&m.to_header_value()).unwrap(), m);
    }

    #[test]
    fn unknown_attributes_are_ignored_and_versions_checked() {
        let v = sample().to_header_value() + "; future=yes";
        assert!(Marker::parse(&v).is_ok());
        let v2 = sample().to_header_value().replace("v=2", "v=3");
        assert!(matches!(
            Marker::parse(&v2),
            Err(InvalidMessage::UnsupportedVersion(_))
        ));
        let v3 = sample()
            .to_header_value()
            .replace("kind=sync", "kind=gossip");
        assert!(matches!(
            Marker::parse(&v3),
            Err(InvalidMessage::UnknownKind(_))
        ));
        assert!(Marker::parse("garbage").is_err());
        assert!(Marker::parse("").is_err());
    }
}

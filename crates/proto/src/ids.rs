//! Validated identifiers: device ids, message ids and pairing attempt ids.

use std::fmt;

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::InvalidMessage;

/// A device id: 64 random bits written as 16 lower-case hex digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    /// Draws a fresh random device id.
    pub fn random(rng: &mut impl RngCore) -> Self {
        DeviceId(format!("{:016x}", rng.next_u64()))
    }

    /// Parses a device id; only exactly 16 lower-case hex digits are valid.
    pub fn parse(s: &str) -> Result<Self, InvalidMessage> {
        if is_lower_hex(s, 16) {
            Ok(DeviceId(s.to_owned()))
        } else {
            Err(InvalidMessage::BadField("device id"))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = InvalidMessage;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        DeviceId::parse(&s)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> String {
        id.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0)
    }
}

/// A 128-bit random identifier written as 32 lower-case hex digits; used for
/// message ids and pairing attempt ids.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RandomId(String);

/// The unique id of one SMA message (the `id=` attribute of the marker header).
pub type MessageId = RandomId;

impl RandomId {
    /// Draws a fresh random id.
    pub fn random(rng: &mut impl RngCore) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        RandomId(hex::encode(b))
    }

    /// Parses a 32-digit lower-case hex id.
    pub fn parse(s: &str) -> Result<Self, InvalidMessage> {
        if is_lower_hex(s, 32) {
            Ok(RandomId(s.to_owned()))
        } else {
            Err(InvalidMessage::BadField("message id"))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RandomId {
    type Error = InvalidMessage;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RandomId::parse(&s)
    }
}

impl From<RandomId> for String {
    fn from(id: RandomId) -> String {
        id.0
    }
}

impl fmt::Display for RandomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RandomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.0)
    }
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_rules() {
        assert!(DeviceId::parse("0123456789abcdef").is_ok());
        assert!(DeviceId::parse("0123456789ABCDEF").is_err());
        assert!(DeviceId::parse("0123456789abcde").is_err());
        assert!(DeviceId::parse("0123456789abcdefa").is_err());
        assert!(DeviceId::parse("0123456789abcdeg").is_err());
        let json = serde_json::to_string(&DeviceId::parse("00000000000000ff").unwrap()).unwrap();
        assert_eq!(json, "\"00000000000000ff\"");
        assert!(serde_json::from_str::<DeviceId>("\"xyz\"").is_err());
    }

    #[test]
    fn random_id_rules() {
        assert!(RandomId::parse(&"a".repeat(32)).is_ok());
        assert!(RandomId::parse(&"a".repeat(31)).is_err());
    }
}

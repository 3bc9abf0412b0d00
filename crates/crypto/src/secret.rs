//! Text that must not outlive its use: armored secret keys and the plaintext
//! that carries them.
//!
//! [`SecretString`] keeps its bytes in memory that is overwritten with zeros
//! when the value is dropped (every clone too), and prints as
//! `SecretString([redacted, N bytes])` in `Debug`, so a secret that ends up in
//! a log line or a panic message is not disclosed. It serialises as a plain
//! JSON string: the secret still travels inside sealed payloads and lives in
//! the private store, only its in-memory copies are scrubbed.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// A string zeroized on drop and redacted in `Debug`.
#[derive(Clone, Default)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Takes ownership of `text` (its buffer is zeroized when this value is
    /// dropped).
    pub fn new(text: String) -> SecretString {
        SecretString(Zeroizing::new(text))
    }

    /// The secret text. Callers must not copy it into ordinary strings.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(text: String) -> SecretString {
        SecretString::new(text)
    }
}

impl From<&str> for SecretString {
    fn from(text: &str) -> SecretString {
        SecretString::new(text.to_owned())
    }
}

impl PartialEq for SecretString {
    fn eq(&self, other: &SecretString) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for SecretString {}

impl PartialOrd for SecretString {
    fn partial_cmp(&self, other: &SecretString) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SecretString {
    fn cmp(&self, other: &SecretString) -> std::cmp::Ordering {
        self.expose().cmp(other.expose())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretString([redacted, {} bytes])", self.0.len())
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SecretString, D::Error> {
        String::deserialize(deserializer).map(SecretString::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_text() {
        let s = SecretString::from("-----BEGIN PGP PRIVATE KEY BLOCK-----");
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("PRIVATE"), "{shown}");
        assert!(shown.contains("37 bytes"), "{shown}");
    }

    #[test]
    fn serialises_as_a_plain_string_and_back() {
        let s = SecretString::from("k\"ey");
        let json = serde_json::to_string(&s).expect("encode");
        assert_eq!(json, r#""k\"ey""#);
        let back: SecretString = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, s);
        assert_eq!(back.expose(), "k\"ey");
        assert!(serde_json::from_str::<SecretString>("7").is_err());
    }

    #[test]
    fn orders_like_its_text() {
        assert!(SecretString::from("a") < SecretString::from("b"));
        assert_eq!(SecretString::from("x").len(), 1);
        assert!(SecretString::default().is_empty());
    }
}

//! OpenPGP fingerprints.

use std::fmt;

use crate::error::CryptoError;

/// An OpenPGP key fingerprint (20 bytes for v4 keys, 32 for v6).
///
/// `Display` prints upper-case hex without spaces (40 characters for v4),
/// the form used everywhere in the protocol. Ordering is byte-wise, which
/// is the order the group state uses for tie-breaks.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(Vec<u8>);

impl Fingerprint {
    /// Wraps raw fingerprint bytes (20 or 32 bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        match bytes.len() {
            20 | 32 => Ok(Self(bytes.to_vec())),
            n => Err(CryptoError::Malformed(format!(
                "fingerprint has {n} bytes, expected 20 or 32"
            ))),
        }
    }

    /// Parses hex (either case; spaces allowed, as GnuPG prints them).
    pub fn from_hex(s: &str) -> Result<Self, CryptoError> {
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = hex::decode(compact)
            .map_err(|_| CryptoError::Malformed("fingerprint is not hexadecimal".into()))?;
        Self::from_bytes(&bytes)
    }

    /// The raw fingerprint bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Upper-case hex, same as `Display`.
    pub fn to_hex(&self) -> String {
        hex::encode_upper(&self.0)
    }

    pub(crate) fn from_pgp(fp: &pgp::types::Fingerprint) -> Self {
        Self(fp.as_bytes().to_vec())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip_upper() {
        let fp =
            Fingerprint::from_hex("eb85 bb5f a33a 75e1 5e94 4e63 f231 550c 4f47 e38e").unwrap();
        assert_eq!(fp.to_string(), "EB85BB5FA33A75E15E944E63F231550C4F47E38E");
        assert_eq!(fp.to_string().parse::<Fingerprint>().unwrap(), fp);
    }

    #[test]
    fn rejects_bad_lengths_and_chars() {
        assert!(Fingerprint::from_hex("ABCD").is_err());
        assert!(Fingerprint::from_hex(&"Z".repeat(40)).is_err());
        assert!(Fingerprint::from_bytes(&[0; 21]).is_err());
    }
}

//! Public certificates (OpenPGP transferable public keys).

use std::fmt;

use pgp::composed::{ArmorOptions, Deserializable, SignedPublicKey};

use crate::{
    error::{guard, internal, malformed, CryptoError},
    fingerprint::Fingerprint,
    pgpkey,
};

/// Prefix of a device certificate's user id: `sma-device-<id>`.
pub const DEVICE_USER_ID_PREFIX: &str = "sma-device-";

/// A public OpenPGP certificate (transferable public key).
///
/// Parsing validates every self-signature and keeps only the components
/// that verify (third-party certifications and broken or revoked
/// components are dropped), so a `Certificate` is always self-consistent.
/// A revoked key, or one without a valid user id, is rejected.
///
/// Its binary and armored encodings are made when it is built, so that an
/// encoding error is the `Err` of the constructor (parsing, or making the
/// key it belongs to) and [`Certificate::to_bytes`] and
/// [`Certificate::to_armored`] cannot fail.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    pub(crate) key: SignedPublicKey,
    /// Binary encoding of `key`.
    bytes: Vec<u8>,
    /// ASCII-armored encoding of `key`.
    armored: String,
}

impl Certificate {
    pub(crate) fn from_pgp(key: SignedPublicKey) -> Result<Self, CryptoError> {
        let bytes = pgpkey::to_bytes(&key)?;
        let armored = key
            .to_armored_string(ArmorOptions::default())
            .map_err(internal)?;
        Ok(Self {
            key,
            bytes,
            armored,
        })
    }

    /// Binary (unarmored) OpenPGP encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// Parses a binary transferable public key (exactly one).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        pgpkey::parse_public(bytes).and_then(Self::from_pgp)
    }

    /// ASCII-armored encoding (`-----BEGIN PGP PUBLIC KEY BLOCK-----`, LF
    /// line endings).
    pub fn to_armored(&self) -> String {
        self.armored.clone()
    }

    /// Parses an ASCII-armored public key block (exactly one key).
    pub fn from_armored(armored: &str) -> Result<Self, CryptoError> {
        guard(|| {
            let (mut keys, _headers) =
                SignedPublicKey::from_armor_many(armored.as_bytes()).map_err(malformed)?;
            let key = keys
                .next()
                .ok_or_else(|| CryptoError::Malformed("no public key found".into()))?
                .map_err(malformed)?;
            if keys.next().is_some() {
                return Err(CryptoError::Malformed("more than one key".into()));
            }
            pgpkey::clean_public(key).and_then(Self::from_pgp)
        })
    }

    /// Fingerprint of the primary key.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::from_pgp(&pgp::types::KeyDetails::fingerprint(&self.key.primary_key))
    }

    /// The user ids (lossy UTF-8), primary first as stored.
    pub fn user_ids(&self) -> Vec<String> {
        self.key
            .details
            .users
            .iter()
            .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
            .collect()
    }

    /// The device id of a device certificate (user id `sma-device-<id>`),
    /// if it has exactly one such user id.
    pub fn device_id(&self) -> Option<String> {
        let mut ids = self
            .user_ids()
            .into_iter()
            .filter_map(|u| u.strip_prefix(DEVICE_USER_ID_PREFIX).map(str::to_owned));
        let first = ids.next()?;
        ids.next().is_none().then_some(first)
    }

    /// Creation time of the primary key (unix seconds).
    pub fn created_unix(&self) -> u64 {
        u64::from(pgp::types::KeyDetails::created_at(&self.key.primary_key).as_secs())
    }

    /// Whether the certificate has a usable encryption subkey (required to
    /// be a recipient of [`crate::seal`]).
    pub fn can_encrypt(&self) -> bool {
        !pgpkey::encryption_subkeys(&self.key).is_empty()
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &self.fingerprint().to_hex())
            .field("user_ids", &self.user_ids())
            .finish()
    }
}

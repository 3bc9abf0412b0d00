//! Secret keys: the per-device key and the shared Autocrypt account key.

use std::fmt;

use pgp::{
    armor::Headers,
    composed::{ArmorOptions, Deserializable, SignedSecretKey},
    types::KeyDetails,
};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::secret::SecretString;

use crate::{
    cert::{Certificate, DEVICE_USER_ID_PREFIX},
    error::{guard, internal, malformed, CryptoError},
    fingerprint::Fingerprint,
    pgpkey,
};

/// Checks that a key is usable for our purposes: a signing-capable primary
/// and at least one encryption subkey with secret material.
fn check_usable(key: &SignedSecretKey) -> Result<(), CryptoError> {
    pgpkey::signing_primary(key)?;
    if pgpkey::secret_encryption_subkeys(key).is_empty() {
        return Err(CryptoError::UnsupportedKey(
            "no encryption subkey with secret material".into(),
        ));
    }
    Ok(())
}

fn fingerprint_of(key: &SignedSecretKey) -> Fingerprint {
    Fingerprint::from_pgp(&key.primary_key.fingerprint())
}

/// The encodings of a secret key, made once when the key is built: an
/// encoding error is then the `Err` of the constructor, and the accessors
/// ([`DeviceKey::to_bytes`], [`AccountKey::certificate`], ...) cannot fail
/// (nor fall back to an empty key). The secret encoding is wiped on drop.
#[derive(Clone)]
struct Encoded {
    /// Binary transferable secret key.
    secret: Zeroizing<Vec<u8>>,
    /// The public certificate.
    cert: Certificate,
}

impl Encoded {
    fn of(key: &SignedSecretKey) -> Result<Self, CryptoError> {
        Ok(Encoded {
            secret: Zeroizing::new(pgpkey::to_bytes(key)?),
            cert: Certificate::from_pgp(key.to_public_key())?,
        })
    }
}

fn parse_usable(bytes: &[u8]) -> Result<SignedSecretKey, CryptoError> {
    let key = pgpkey::parse_secret(bytes)?;
    check_usable(&key)?;
    Ok(key)
}

/// Armors a transferable secret key with the given armor headers.
pub(crate) fn armor_secret(
    key: &SignedSecretKey,
    headers: Option<&Headers>,
) -> Result<Zeroizing<String>, CryptoError> {
    key.to_armored_string(ArmorOptions {
        headers,
        include_checksum: true,
    })
    .map(Zeroizing::new)
    .map_err(internal)
}

/// Parses an armored transferable secret key; returns it with its armor
/// headers.
pub(crate) fn dearmor_secret(armored: &str) -> Result<(SignedSecretKey, Headers), CryptoError> {
    guard(|| {
        let (mut keys, headers) =
            SignedSecretKey::from_armor_many(armored.as_bytes()).map_err(malformed)?;
        let key = keys
            .next()
            .ok_or_else(|| CryptoError::Malformed("no secret key found".into()))?
            .map_err(malformed)?;
        if keys.next().is_some() {
            return Err(CryptoError::Malformed("more than one key".into()));
        }
        let key = pgpkey::clean_secret(key)?;
        check_usable(&key)?;
        Ok((key, headers))
    })
}

fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Validates an e-mail address enough to be safe in a user id and in
/// RFC 5322 header fields (no spaces, controls or angle brackets).
pub(crate) fn check_addr(addr: &str) -> Result<(), CryptoError> {
    let ok = addr.len() <= 254
        && addr.contains('@')
        && !addr.starts_with('@')
        && !addr.ends_with('@')
        && addr
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | ',' | ';'));
    if ok {
        Ok(())
    } else {
        Err(CryptoError::InvalidArgument(
            "not a plain e-mail address".into(),
        ))
    }
}

/// A device's own OpenPGP key: v4 Ed25519 primary (certify+sign) and a
/// Cv25519 ECDH encryption subkey, user id `sma-device-<id>`.
///
/// It never leaves the device except as its public [`Certificate`]; the
/// binary form ([`DeviceKey::to_bytes`]) is for the local store only.
/// Secret material is zeroized on drop (by rPGP) and never printed by
/// `Debug`.
#[derive(Clone)]
pub struct DeviceKey {
    pub(crate) key: SignedSecretKey,
    encoded: Encoded,
}

impl DeviceKey {
    /// Generates a new device key. `device_id` is the protocol's device id
    /// (ASCII letters, digits, `-`, `_`, `.`; at most 64 characters);
    /// `created_unix` dates the key and its self-signatures.
    pub fn generate(
        rng: &mut (impl CryptoRng + RngCore),
        device_id: &str,
        created_unix: u64,
    ) -> Result<Self, CryptoError> {
        if !valid_device_id(device_id) {
            return Err(CryptoError::InvalidArgument(
                "device id must be 1-64 ASCII letters, digits, '-', '_' or '.'".into(),
            ));
        }
        let uid = format!("{DEVICE_USER_ID_PREFIX}{device_id}");
        Self::from_pgp(pgpkey::generate_v4_25519(rng, &uid, created_unix)?)
    }

    fn from_pgp(key: SignedSecretKey) -> Result<Self, CryptoError> {
        let encoded = Encoded::of(&key)?;
        Ok(Self { key, encoded })
    }

    /// The public certificate to publish in announcements.
    pub fn certificate(&self) -> Certificate {
        self.encoded.cert.clone()
    }

    /// Binary transferable secret key (unprotected: store it only in the
    /// local, access-controlled store). Zeroized on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.encoded.secret.to_vec())
    }

    /// Parses [`DeviceKey::to_bytes`] output (any v4 key with a signing
    /// primary and an encryption subkey is accepted).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        parse_usable(bytes).and_then(Self::from_pgp)
    }

    /// Fingerprint of the primary key.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint_of(&self.key)
    }

    /// The device id from the user id `sma-device-<id>`, if present.
    pub fn device_id(&self) -> Option<String> {
        self.encoded.cert.device_id()
    }

    /// Creation time of the primary key (unix seconds).
    pub fn created_unix(&self) -> u64 {
        u64::from(self.key.primary_key.created_at().as_secs())
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey")
            .field("fingerprint", &self.fingerprint().to_hex())
            .finish_non_exhaustive()
    }
}

/// The account's Autocrypt Level 1 key, shared by all member devices.
///
/// Generated keys are v4 Ed25519 primary (certify+sign) plus a Cv25519
/// encryption subkey, user id `<addr>`. Imported keys (Setup Message,
/// armored secret key) may be any algorithm rPGP supports (e.g. RSA 3072
/// from Enigmail) as long as the primary can sign and there is an
/// encryption subkey.
#[derive(Clone)]
pub struct AccountKey {
    pub(crate) key: SignedSecretKey,
    encoded: Encoded,
    /// ASCII-armored secret key without armor headers (wiped on drop).
    armored_secret: Zeroizing<String>,
}

impl AccountKey {
    /// Generates a new account key for `addr`, created at `created_unix`.
    pub fn generate(
        rng: &mut (impl CryptoRng + RngCore),
        addr: &str,
        created_unix: u64,
    ) -> Result<Self, CryptoError> {
        check_addr(addr)?;
        Self::encode(pgpkey::generate_v4_25519(
            rng,
            &format!("<{addr}>"),
            created_unix,
        )?)
    }

    pub(crate) fn from_pgp(key: SignedSecretKey) -> Result<Self, CryptoError> {
        check_usable(&key)?;
        Self::encode(key)
    }

    /// Makes the encodings of a usable key.
    fn encode(key: SignedSecretKey) -> Result<Self, CryptoError> {
        let encoded = Encoded::of(&key)?;
        let armored_secret = armor_secret(&key, None)?;
        Ok(Self {
            key,
            encoded,
            armored_secret,
        })
    }

    /// Binary transferable secret key (unprotected). Zeroized on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.encoded.secret.to_vec())
    }

    /// Parses a binary transferable secret key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        parse_usable(bytes).and_then(Self::encode)
    }

    /// ASCII-armored transferable secret key (unprotected), e.g. for the
    /// welcome payload. No armor headers.
    pub fn to_armored_secret(&self) -> SecretString {
        SecretString::from(self.armored_secret.as_str())
    }

    /// Parses an ASCII-armored transferable secret key (armor headers such
    /// as `Autocrypt-Prefer-Encrypt` are ignored).
    pub fn from_armored_secret(armored: &str) -> Result<Self, CryptoError> {
        dearmor_secret(armored).and_then(|(key, _)| Self::encode(key))
    }

    /// ASCII-armored public key.
    pub fn public_armored(&self) -> String {
        self.encoded.cert.to_armored()
    }

    /// Binary public key, for the Autocrypt header's `keydata` (the caller
    /// base64-encodes it).
    pub fn public_bytes(&self) -> Vec<u8> {
        self.encoded.cert.to_bytes()
    }

    /// The public certificate of this key.
    pub fn certificate(&self) -> Certificate {
        self.encoded.cert.clone()
    }

    /// Fingerprint of the primary key.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint_of(&self.key)
    }

    /// Creation time of the primary key (unix seconds).
    pub fn created_unix(&self) -> u64 {
        u64::from(self.key.primary_key.created_at().as_secs())
    }

    /// Algorithms as `<primary>+<encryption subkey>`, e.g.
    /// `ed25519+cv25519` or `rsa3072+rsa3072`.
    pub fn algorithm(&self) -> String {
        let primary = pgpkey::algorithm_name(&self.key.primary_key);
        match pgpkey::secret_encryption_subkeys(&self.key).first() {
            Some(sub) => format!("{primary}+{}", pgpkey::algorithm_name(&sub.key)),
            None => primary,
        }
    }

    /// The user ids of the key.
    pub fn user_ids(&self) -> Vec<String> {
        self.encoded.cert.user_ids()
    }
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountKey")
            .field("fingerprint", &self.fingerprint().to_hex())
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};

    #[test]
    fn device_key_shape_and_roundtrip() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let k = DeviceKey::generate(&mut rng, "0123456789abcdef", 1_700_000_000).unwrap();
        assert_eq!(k.fingerprint().to_string().len(), 40);
        assert_eq!(k.device_id().as_deref(), Some("0123456789abcdef"));
        assert_eq!(k.created_unix(), 1_700_000_000);
        let back = DeviceKey::from_bytes(&k.to_bytes()).unwrap();
        assert_eq!(back.fingerprint(), k.fingerprint());
        assert_eq!(back.to_bytes(), k.to_bytes());
        let cert = k.certificate();
        assert!(cert.can_encrypt());
        assert_eq!(cert.user_ids(), vec!["sma-device-0123456789abcdef"]);
        let dbg = format!("{k:?}");
        assert!(dbg.contains(&k.fingerprint().to_hex()));
    }

    #[test]
    fn encodings_made_at_construction_are_those_of_the_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let d = DeviceKey::generate(&mut rng, "d1", 1_700_000_000).unwrap();
        assert_eq!(*d.to_bytes(), pgpkey::to_bytes(&d.key).unwrap());
        let a = AccountKey::generate(&mut rng, "bob@example.org", 1_700_000_000).unwrap();
        assert_eq!(*a.to_bytes(), pgpkey::to_bytes(&a.key).unwrap());
        assert_eq!(
            a.to_armored_secret().expose(),
            armor_secret(&a.key, None).unwrap().as_str()
        );
        let public = a.key.to_public_key();
        assert_eq!(a.public_bytes(), pgpkey::to_bytes(&public).unwrap());
        assert_eq!(
            a.public_armored(),
            public.to_armored_string(ArmorOptions::default()).unwrap()
        );
    }

    #[test]
    fn same_seed_same_key() {
        let a = DeviceKey::generate(&mut ChaCha20Rng::seed_from_u64(7), "a", 5).unwrap();
        let b = DeviceKey::generate(&mut ChaCha20Rng::seed_from_u64(7), "a", 5).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
    }

    #[test]
    fn rejects_bad_arguments() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        assert!(DeviceKey::generate(&mut rng, "", 0).is_err());
        assert!(DeviceKey::generate(&mut rng, "a b", 0).is_err());
        assert!(DeviceKey::generate(&mut rng, "ok", u64::from(u32::MAX) + 1).is_err());
        assert!(AccountKey::generate(&mut rng, "no-at-sign", 0).is_err());
        assert!(AccountKey::generate(&mut rng, "a@b\r\nBcc: x@y", 0).is_err());
    }

    #[test]
    fn account_key_shape_and_roundtrips() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let k = AccountKey::generate(&mut rng, "alice@example.org", 1_600_000_000).unwrap();
        assert_eq!(k.algorithm(), "ed25519+cv25519");
        assert_eq!(k.created_unix(), 1_600_000_000);
        assert_eq!(k.user_ids(), vec!["<alice@example.org>"]);
        let b = AccountKey::from_bytes(&k.to_bytes()).unwrap();
        assert_eq!(b.fingerprint(), k.fingerprint());
        let armored = k.to_armored_secret();
        assert!(armored
            .expose()
            .starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
        let c = AccountKey::from_armored_secret(armored.expose()).unwrap();
        assert_eq!(c.to_bytes(), k.to_bytes());
        let cert = Certificate::from_bytes(&k.public_bytes()).unwrap();
        assert_eq!(cert.fingerprint(), k.fingerprint());
        let cert2 = Certificate::from_armored(&k.public_armored()).unwrap();
        assert_eq!(cert2, cert);
        // A public key is not a secret key and vice versa.
        assert!(AccountKey::from_bytes(&k.public_bytes()).is_err());
        assert!(Certificate::from_bytes(&k.to_bytes()).is_err());
    }
}

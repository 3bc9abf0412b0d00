//! Detached signatures (used for announcements: `multipart/signed`).

use pgp::{
    composed::{ArmorOptions, Deserializable, DetachedSignature},
    crypto::hash::HashAlgorithm,
    packet::{SignatureConfig, SignatureType},
    types::{KeyDetails, Password},
};

use crate::{
    cert::Certificate,
    error::{guard, internal, malformed, CryptoError},
    keys::DeviceKey,
    pgpkey,
};

/// Armored detached binary signature (v4, SHA-256) by the device key over
/// `data`, dated with the key's creation time (no clock is read; see
/// [`sign_detached_at`]).
pub fn sign_detached(key: &DeviceKey, data: &[u8]) -> Result<String, CryptoError> {
    sign_detached_at(key, data, key.created_unix())
}

/// [`sign_detached`] with an explicit signature creation time (unix
/// seconds).
pub fn sign_detached_at(
    key: &DeviceKey,
    data: &[u8],
    signed_unix: u64,
) -> Result<String, CryptoError> {
    let created = pgpkey::timestamp(signed_unix)?;
    let signer = pgpkey::signing_primary(&key.key)?;
    let (hashed, unhashed) = pgpkey::base_subpackets(signer, created)?;
    let mut config = SignatureConfig::v4(
        SignatureType::Binary,
        signer.algorithm(),
        HashAlgorithm::Sha256,
    );
    config.hashed_subpackets = hashed;
    config.unhashed_subpackets = unhashed;
    let sig = config
        .sign(signer, &Password::empty(), data)
        .map_err(internal)?;
    DetachedSignature::new(sig)
        .to_armored_string(ArmorOptions::default())
        .map_err(internal)
}

/// Verifies an armored detached signature over `data` against the primary
/// key of `cert`. Errors: [`CryptoError::Malformed`] if the signature
/// cannot be parsed, [`CryptoError::BadSignature`] if it does not verify
/// (wrong key, modified data, not a data signature).
pub fn verify_detached(
    cert: &Certificate,
    data: &[u8],
    armored_sig: &str,
) -> Result<(), CryptoError> {
    guard(|| {
        let (mut sigs, _) =
            DetachedSignature::from_armor_many(armored_sig.as_bytes()).map_err(malformed)?;
        let sig = sigs
            .next()
            .ok_or_else(|| CryptoError::Malformed("no signature found".into()))?
            .map_err(malformed)?;
        if sigs.next().is_some() {
            return Err(CryptoError::Malformed("more than one signature".into()));
        }
        if !matches!(
            sig.signature.typ(),
            Some(SignatureType::Binary | SignatureType::Text)
        ) {
            return Err(CryptoError::BadSignature);
        }
        sig.verify(&cert.key.primary_key, data)
            .map_err(|_| CryptoError::BadSignature)
    })
}

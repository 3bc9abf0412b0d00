//! Detached signatures: announcements (armored, `multipart/signed`) and
//! replicated ops (binary, inside JSON). Every signature carries its
//! [`SigContext`], and verification requires the expected one.

use pgp::{
    composed::{ArmorOptions, Deserializable, DetachedSignature},
    crypto::hash::HashAlgorithm,
    packet::{Signature, SignatureConfig, SignatureType},
    ser::Serialize as _,
    types::{KeyDetails, Password},
};

use crate::{
    cert::Certificate,
    context::SigContext,
    error::{guard, internal, malformed, CryptoError},
    keys::DeviceKey,
    pgpkey,
};

/// Largest binary op signature accepted (an Ed25519 v4 signature with our
/// subpackets is about 150 bytes).
pub const MAX_BINARY_SIGNATURE: usize = 1024;

/// Armored detached binary signature (v4, SHA-256) by the device key over
/// `data` for `context`, dated with the key's creation time (no clock is
/// read; see [`sign_detached_at`]).
pub fn sign_detached(
    key: &DeviceKey,
    data: &[u8],
    context: SigContext,
) -> Result<String, CryptoError> {
    sign_detached_at(key, data, context, key.created_unix())
}

/// [`sign_detached`] with an explicit signature creation time (unix
/// seconds).
pub fn sign_detached_at(
    key: &DeviceKey,
    data: &[u8],
    context: SigContext,
    signed_unix: u64,
) -> Result<String, CryptoError> {
    let sig = make_signature(key, data, context, signed_unix)?;
    DetachedSignature::new(sig)
        .to_armored_string(ArmorOptions::default())
        .map_err(internal)
}

/// A binary (unarmored) detached signature packet over `data` for
/// `context`: compact enough to accompany every replicated op.
pub fn sign_binary(
    key: &DeviceKey,
    data: &[u8],
    context: SigContext,
) -> Result<Vec<u8>, CryptoError> {
    let sig = make_signature(key, data, context, key.created_unix())?;
    // A detached signature serialises as its one signature packet.
    DetachedSignature::new(sig).to_bytes().map_err(internal)
}

fn make_signature(
    key: &DeviceKey,
    data: &[u8],
    context: SigContext,
    signed_unix: u64,
) -> Result<Signature, CryptoError> {
    let created = pgpkey::timestamp(signed_unix)?;
    let signer = pgpkey::signing_primary(&key.key)?;
    let (hashed, unhashed) = pgpkey::data_subpackets(signer, created, context)?;
    let mut config = SignatureConfig::v4(
        SignatureType::Binary,
        signer.algorithm(),
        HashAlgorithm::Sha256,
    );
    config.hashed_subpackets = hashed;
    config.unhashed_subpackets = unhashed;
    config
        .sign(signer, &Password::empty(), data)
        .map_err(internal)
}

/// Verifies an armored detached signature over `data` against the primary
/// key of `cert`, for `context`. Errors: [`CryptoError::Malformed`] if the
/// signature cannot be parsed, [`CryptoError::BadSignature`] if it does not
/// verify (wrong key, modified data, not a data signature, another
/// context).
pub fn verify_detached(
    cert: &Certificate,
    data: &[u8],
    armored_sig: &str,
    context: SigContext,
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
        check(cert, data, &sig.signature, context)
    })
}

/// Verifies a binary signature made by [`sign_binary`].
pub fn verify_binary(
    cert: &Certificate,
    data: &[u8],
    sig: &[u8],
    context: SigContext,
) -> Result<(), CryptoError> {
    if sig.len() > MAX_BINARY_SIGNATURE {
        return Err(CryptoError::Malformed("signature too long".into()));
    }
    guard(|| {
        let mut sigs = DetachedSignature::from_bytes_many(sig).map_err(malformed)?;
        let sig = sigs
            .next()
            .ok_or_else(|| CryptoError::Malformed("no signature found".into()))?
            .map_err(malformed)?;
        if sigs.next().is_some() {
            return Err(CryptoError::Malformed("more than one signature".into()));
        }
        check(cert, data, &sig.signature, context)
    })
}

fn check(
    cert: &Certificate,
    data: &[u8],
    sig: &Signature,
    context: SigContext,
) -> Result<(), CryptoError> {
    if !matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
        return Err(CryptoError::BadSignature);
    }
    if !context.marks(sig) {
        return Err(CryptoError::WrongContext {
            expected: context.as_str(),
        });
    }
    sig.verify(&cert.key.primary_key, data)
        .map_err(|_| CryptoError::BadSignature)
}

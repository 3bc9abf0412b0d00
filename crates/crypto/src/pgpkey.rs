//! Internal OpenPGP key plumbing on top of rPGP: deterministic-time key
//! generation, parsing with validation ("cleaning"), and component
//! selection. Nothing here reads the clock.

use pgp::{
    composed::{
        Deserializable, KeyType, SignedKeyDetails, SignedPublicKey, SignedPublicSubKey,
        SignedSecretKey, SignedSecretSubKey,
    },
    crypto::{
        ecc_curve::ECCCurve, hash::HashAlgorithm, public_key::PublicKeyAlgorithm,
        sym::SymmetricKeyAlgorithm,
    },
    packet::{
        Features, KeyFlags, PacketTrait, PubKeyInner, PublicKey, PublicSubkey, SecretKey,
        SecretSubkey, Signature, SignatureConfig, SignatureType, Subpacket, SubpacketData, UserId,
    },
    ser::Serialize,
    types::{
        CompressionAlgorithm, EcdhPublicParams, EddsaLegacyPublicParams, KeyDetails, KeyVersion,
        Password, PublicParams, SignedUser, Timestamp, VerifyingKey,
    },
};
use rand_core::{CryptoRng, RngCore};

use crate::error::{internal, malformed, CryptoError};

/// Converts caller-supplied unix seconds to an OpenPGP timestamp.
pub(crate) fn timestamp(unix: u64) -> Result<Timestamp, CryptoError> {
    u32::try_from(unix)
        .map(Timestamp::from_secs)
        .map_err(|_| CryptoError::InvalidArgument("time does not fit OpenPGP's u32 seconds".into()))
}

/// Hashed subpackets every signature we make starts with.
pub(crate) fn base_subpackets(
    key: &impl KeyDetails,
    created: Timestamp,
) -> Result<(Vec<Subpacket>, Vec<Subpacket>), CryptoError> {
    let hashed = vec![
        Subpacket::regular(SubpacketData::SignatureCreationTime(created)).map_err(internal)?,
        Subpacket::regular(SubpacketData::IssuerFingerprint(key.fingerprint()))
            .map_err(internal)?,
    ];
    let unhashed = vec![
        Subpacket::regular(SubpacketData::IssuerKeyId(key.legacy_key_id())).map_err(internal)?,
    ];
    Ok((hashed, unhashed))
}

/// Subpackets of a data signature: [`base_subpackets`] plus the hashed
/// context notation (see [`crate::context`]).
pub(crate) fn data_subpackets(
    key: &impl KeyDetails,
    created: Timestamp,
    context: crate::context::SigContext,
) -> Result<(Vec<Subpacket>, Vec<Subpacket>), CryptoError> {
    let (mut hashed, unhashed) = base_subpackets(key, created)?;
    hashed.push(context.subpacket()?);
    Ok((hashed, unhashed))
}

/// Generates a v4 key: Ed25519 (legacy EdDSA, algorithm 22) primary for
/// certify+sign and a Cv25519 (ECDH, algorithm 18) encryption subkey, one
/// user id, all self-signatures dated `created` (SHA-256).
///
/// The "legacy" 25519 algorithms are used on purpose: they are what
/// RFC 4880bis-era implementations (GnuPG 2.2, K-9, Delta Chat, Enigmail)
/// understand, as Autocrypt Level 1 requires.
pub(crate) fn generate_v4_25519(
    rng: &mut (impl CryptoRng + RngCore),
    user_id: &str,
    created_unix: u64,
) -> Result<SignedSecretKey, CryptoError> {
    let created = timestamp(created_unix)?;
    let primary = generate_primary(rng, created)?;
    let sub = generate_encryption_subkey(rng, created)?;
    let uid = UserId::from_str(Default::default(), user_id).map_err(internal)?;
    let uid_sig = sign_user_id(&primary, &uid, created)?;
    let sub_sig = sign_subkey_binding(&primary, &sub, created)?;
    let details = SignedKeyDetails::new(vec![], vec![], vec![uid.into_signed(uid_sig)], vec![]);
    let key = SignedSecretKey::new(
        primary,
        details,
        vec![],
        vec![SignedSecretSubKey::new(sub, vec![sub_sig])],
    );
    key.verify_bindings().map_err(internal)?;
    Ok(key)
}

/// The v4 Ed25519 (legacy EdDSA) primary key, created at `created`.
fn generate_primary(
    rng: &mut (impl CryptoRng + RngCore),
    created: Timestamp,
) -> Result<SecretKey, CryptoError> {
    let (pub_params, sec_params) = KeyType::Ed25519Legacy
        .generate(&mut *rng)
        .map_err(internal)?;
    let inner = PubKeyInner::new(
        KeyVersion::V4,
        PublicKeyAlgorithm::EdDSALegacy,
        created,
        None,
        pub_params,
    )
    .map_err(internal)?;
    let primary_pub = PublicKey::from_inner(inner).map_err(internal)?;
    SecretKey::new(primary_pub, sec_params).map_err(internal)
}

/// The v4 Cv25519 (legacy ECDH) encryption subkey, created at `created`.
fn generate_encryption_subkey(
    rng: &mut (impl CryptoRng + RngCore),
    created: Timestamp,
) -> Result<SecretSubkey, CryptoError> {
    let (pub_params, sec_params) = KeyType::ECDH(ECCCurve::Curve25519Legacy)
        .generate(&mut *rng)
        .map_err(internal)?;
    let inner = PubKeyInner::new(
        KeyVersion::V4,
        PublicKeyAlgorithm::ECDH,
        created,
        None,
        pub_params,
    )
    .map_err(internal)?;
    let sub_pub = PublicSubkey::from_inner(inner).map_err(internal)?;
    SecretSubkey::new(sub_pub, sec_params).map_err(internal)
}

/// The user id self-signature (positive certification, SHA-256) with the
/// key flags (certify, sign), features and algorithm preferences.
fn sign_user_id(
    primary: &SecretKey,
    uid: &UserId,
    created: Timestamp,
) -> Result<Signature, CryptoError> {
    let mut flags = KeyFlags::default();
    flags.set_certify(true);
    flags.set_sign(true);
    let mut features = Features::default();
    features.set_seipd_v1(true);
    let (mut hashed, unhashed) = base_subpackets(primary, created)?;
    let extra = [
        SubpacketData::KeyFlags(flags),
        SubpacketData::Features(features),
        SubpacketData::PreferredSymmetricAlgorithms(
            vec![SymmetricKeyAlgorithm::AES256, SymmetricKeyAlgorithm::AES128].into(),
        ),
        SubpacketData::PreferredHashAlgorithms(
            vec![HashAlgorithm::Sha256, HashAlgorithm::Sha512].into(),
        ),
        SubpacketData::PreferredCompressionAlgorithms(
            vec![
                CompressionAlgorithm::Uncompressed,
                CompressionAlgorithm::ZLIB,
            ]
            .into(),
        ),
        SubpacketData::IsPrimary(true),
    ];
    for data in extra {
        hashed.push(Subpacket::regular(data).map_err(internal)?);
    }
    let mut config = SignatureConfig::v4(
        SignatureType::CertPositive,
        primary.algorithm(),
        HashAlgorithm::Sha256,
    );
    config.hashed_subpackets = hashed;
    config.unhashed_subpackets = unhashed;
    config
        .sign_certification(
            primary,
            primary.public_key(),
            &Password::empty(),
            uid.tag(),
            uid,
        )
        .map_err(internal)
}

/// The subkey binding signature (SHA-256) with the encryption key flags.
fn sign_subkey_binding(
    primary: &SecretKey,
    sub: &SecretSubkey,
    created: Timestamp,
) -> Result<Signature, CryptoError> {
    let mut flags = KeyFlags::default();
    flags.set_encrypt_comms(true);
    flags.set_encrypt_storage(true);
    let (mut hashed, unhashed) = base_subpackets(primary, created)?;
    hashed.push(Subpacket::regular(SubpacketData::KeyFlags(flags)).map_err(internal)?);
    let mut config = SignatureConfig::v4(
        SignatureType::SubkeyBinding,
        primary.algorithm(),
        HashAlgorithm::Sha256,
    );
    config.hashed_subpackets = hashed;
    config.unhashed_subpackets = unhashed;
    config
        .sign_subkey_binding(
            primary,
            primary.public_key(),
            &Password::empty(),
            sub.public_key(),
        )
        .map_err(internal)
}

/// Serializes any rPGP object to bytes (errors only on our own bugs).
pub(crate) fn to_bytes(obj: &impl Serialize) -> Result<Vec<u8>, CryptoError> {
    obj.to_bytes().map_err(internal)
}

/// Parses exactly one binary transferable secret key and cleans it.
pub(crate) fn parse_secret(bytes: &[u8]) -> Result<SignedSecretKey, CryptoError> {
    crate::error::guard(|| {
        let mut keys = SignedSecretKey::from_bytes_many(bytes).map_err(malformed)?;
        let key = keys
            .next()
            .ok_or_else(|| CryptoError::Malformed("no secret key found".into()))?
            .map_err(malformed)?;
        if keys.next().is_some() {
            return Err(CryptoError::Malformed("more than one key".into()));
        }
        clean_secret(key)
    })
}

/// Parses exactly one binary transferable public key and cleans it.
pub(crate) fn parse_public(bytes: &[u8]) -> Result<SignedPublicKey, CryptoError> {
    crate::error::guard(|| {
        let mut keys = SignedPublicKey::from_bytes_many(bytes).map_err(malformed)?;
        let key = keys
            .next()
            .ok_or_else(|| CryptoError::Malformed("no public key found".into()))?
            .map_err(malformed)?;
        if keys.next().is_some() {
            return Err(CryptoError::Malformed("more than one key".into()));
        }
        clean_public(key)
    })
}

/// Keeps only the user ids with a valid self-certification (dropping
/// third-party and broken signatures). Revoked user ids are dropped.
fn clean_users(
    users: Vec<SignedUser>,
    primary: &(impl VerifyingKey + Serialize),
) -> Vec<SignedUser> {
    users
        .into_iter()
        .filter_map(|mut user| {
            let valid: Vec<Signature> = user
                .signatures
                .into_iter()
                .filter(|s| {
                    s.verify_certification(primary, user.id.tag(), &user.id)
                        .is_ok()
                })
                .collect();
            if valid
                .iter()
                .any(|s| s.typ() == Some(SignatureType::CertRevocation))
            {
                return None;
            }
            user.signatures = valid;
            (!user.signatures.is_empty()).then_some(user)
        })
        .collect()
}

fn clean_details(
    details: SignedKeyDetails,
    primary: &(impl VerifyingKey + Serialize),
) -> Result<SignedKeyDetails, CryptoError> {
    let revocations: Vec<Signature> = details
        .revocation_signatures
        .into_iter()
        .filter(|s| s.verify_key(primary).is_ok())
        .collect();
    if revocations
        .iter()
        .any(|s| s.typ() == Some(SignatureType::KeyRevocation))
    {
        return Err(CryptoError::UnsupportedKey("the key is revoked".into()));
    }
    let direct: Vec<Signature> = details
        .direct_signatures
        .into_iter()
        .filter(|s| s.verify_key(primary).is_ok())
        .collect();
    let users = clean_users(details.users, primary);
    if users.is_empty() {
        return Err(CryptoError::UnsupportedKey(
            "no user id with a valid self-signature".into(),
        ));
    }
    Ok(SignedKeyDetails::new(revocations, direct, users, vec![]))
}

/// Valid binding signatures of a subkey, or `None` if the subkey is unbound
/// or revoked.
fn clean_subkey_sigs(
    sigs: Vec<Signature>,
    primary: &(impl VerifyingKey + Serialize),
    subkey: &(impl VerifyingKey + Serialize),
) -> Option<Vec<Signature>> {
    let valid: Vec<Signature> = sigs
        .into_iter()
        .filter(|s| {
            if s.verify_subkey_binding(primary, subkey).is_err() {
                return false;
            }
            if s.typ() == Some(SignatureType::SubkeyBinding) && s.key_flags().sign() {
                return s
                    .embedded_signature()
                    .is_some_and(|b| b.verify_primary_key_binding(subkey, primary).is_ok());
            }
            true
        })
        .collect();
    if valid
        .iter()
        .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
    {
        return None;
    }
    (!valid.is_empty()).then_some(valid)
}

/// Drops every component whose self-signature does not verify; rejects
/// revoked keys and keys without a valid user id.
pub(crate) fn clean_public(key: SignedPublicKey) -> Result<SignedPublicKey, CryptoError> {
    let primary = key.primary_key;
    let details = clean_details(key.details, &primary)?;
    let subkeys = key
        .public_subkeys
        .into_iter()
        .filter_map(|mut sk| {
            sk.signatures = clean_subkey_sigs(sk.signatures, &primary, &sk.key)?;
            Some(sk)
        })
        .collect();
    Ok(SignedPublicKey::new(primary, details, subkeys))
}

/// Like [`clean_public`], for transferable secret keys. Secret material
/// must not be passphrase-protected.
pub(crate) fn clean_secret(key: SignedSecretKey) -> Result<SignedSecretKey, CryptoError> {
    let SignedSecretKey {
        primary_key,
        details,
        public_subkeys,
        secret_subkeys,
    } = key;
    if primary_key.secret_params().is_encrypted() {
        return Err(CryptoError::UnsupportedKey(
            "secret key is passphrase-protected".into(),
        ));
    }
    let primary_pub = primary_key.public_key().clone();
    let details = clean_details(details, &primary_pub)?;
    let public_subkeys = public_subkeys
        .into_iter()
        .filter_map(|mut sk| {
            sk.signatures = clean_subkey_sigs(sk.signatures, &primary_pub, &sk.key)?;
            Some(sk)
        })
        .collect();
    let mut secret_out = Vec::new();
    for mut sk in secret_subkeys {
        if sk.key.secret_params().is_encrypted() {
            return Err(CryptoError::UnsupportedKey(
                "secret subkey is passphrase-protected".into(),
            ));
        }
        let public = sk.key.public_key().clone();
        if let Some(sigs) = clean_subkey_sigs(sk.signatures, &primary_pub, &public) {
            sk.signatures = sigs;
            secret_out.push(sk);
        }
    }
    Ok(SignedSecretKey::new(
        primary_key,
        details,
        public_subkeys,
        secret_out,
    ))
}

/// Key flags of a (cleaned) component from its newest binding signature.
fn newest_flags(sigs: &[Signature]) -> KeyFlags {
    sigs.iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
        .max_by_key(|s| s.created())
        .map(|s| s.key_flags())
        .unwrap_or_default()
}

fn is_encryption(flags: &KeyFlags, alg: PublicKeyAlgorithm) -> bool {
    (flags.encrypt_comms() || flags.encrypt_storage()) && alg.can_encrypt()
}

/// Encryption-capable subkeys of a certificate, newest first.
pub(crate) fn encryption_subkeys(key: &SignedPublicKey) -> Vec<&SignedPublicSubKey> {
    let mut out: Vec<&SignedPublicSubKey> = key
        .public_subkeys
        .iter()
        .filter(|sk| is_encryption(&newest_flags(&sk.signatures), sk.key.algorithm()))
        .collect();
    out.sort_by_key(|sk| std::cmp::Reverse(sk.key.created_at()));
    out
}

/// Encryption-capable secret subkeys, newest first.
pub(crate) fn secret_encryption_subkeys(key: &SignedSecretKey) -> Vec<&SignedSecretSubKey> {
    let mut out: Vec<&SignedSecretSubKey> = key
        .secret_subkeys
        .iter()
        .filter(|sk| is_encryption(&newest_flags(&sk.signatures), sk.key.algorithm()))
        .collect();
    out.sort_by_key(|sk| std::cmp::Reverse(sk.key.created_at()));
    out
}

/// Whether the primary key can make data signatures (by algorithm).
pub(crate) fn primary_can_sign(key: &impl KeyDetails) -> bool {
    key.algorithm().can_sign()
}

/// Short lower-case name of a key's algorithm, e.g. `ed25519`, `cv25519`,
/// `rsa3072`, `nistp256`.
pub(crate) fn algorithm_name(key: &impl KeyDetails) -> String {
    match key.public_params() {
        PublicParams::EdDSALegacy(EddsaLegacyPublicParams::Ed25519 { .. })
        | PublicParams::Ed25519(_) => "ed25519".into(),
        PublicParams::ECDH(EcdhPublicParams::Curve25519Legacy { .. }) => "cv25519".into(),
        PublicParams::ECDH(EcdhPublicParams::P256 { .. }) => "nistp256".into(),
        PublicParams::ECDH(EcdhPublicParams::P384 { .. }) => "nistp384".into(),
        PublicParams::ECDH(EcdhPublicParams::P521 { .. }) => "nistp521".into(),
        PublicParams::X25519(_) => "x25519".into(),
        PublicParams::Ed448(_) => "ed448".into(),
        PublicParams::X448(_) => "x448".into(),
        PublicParams::RSA(_) => match mpi_bits(key.public_params()) {
            Some(bits) => format!("rsa{bits}"),
            None => "rsa".into(),
        },
        _ => format!("{:?}", key.algorithm()).to_lowercase(),
    }
}

/// Bit length of the first MPI of the serialized parameters (RSA modulus).
fn mpi_bits(params: &PublicParams) -> Option<u32> {
    let bytes = params.to_bytes().ok()?;
    let bits = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
    // Round to the usual sizes (a 3072-bit modulus may have 3071 bits).
    Some(u32::from(bits).div_ceil(8) * 8)
}

/// The signing key of a secret key, checked to be usable.
pub(crate) fn signing_primary(key: &SignedSecretKey) -> Result<&SecretKey, CryptoError> {
    if !primary_can_sign(&key.primary_key) {
        return Err(CryptoError::UnsupportedKey(
            "primary key cannot sign".into(),
        ));
    }
    Ok(&key.primary_key)
}

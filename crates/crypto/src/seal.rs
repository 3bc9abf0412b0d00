//! Sealed device-to-device messages: signed by the sender's device key,
//! then encrypted to the recipients' device keys.
//!
//! Profile: one-pass signature (SHA-256) by the sender's primary key over a
//! binary literal data packet (no file name, date 0, no compression),
//! encrypted as SEIPD v1 (with MDC) under AES-256, with one v3 PKESK per
//! recipient encryption subkey; ASCII-armored.
//!
//! [`open`] checks the structure strictly (`PKESK+ SEIPDv1`, nothing else),
//! authenticates the whole ciphertext before parsing any plaintext
//! (rPGP's check-first SEIPD v1 mode), and only returns plaintext signed by
//! the expected sender.

use std::io::Read;

use pgp::{
    armor::{BlockType, Dearmor},
    composed::{
        ArmorOptions, Message, MessageBuilder, PlainSessionKey, SignedPublicKey, SubpacketConfig,
    },
    crypto::{hash::HashAlgorithm, sym::SymmetricKeyAlgorithm},
    packet::{Packet, PacketParser, PacketTrait, SignatureType},
    types::{
        CompressionAlgorithm, DecryptionKey, EcdhPublicParams, EskType, KeyDetails, Password,
        PkeskBytes, PublicParams, Seipdv1ReadMode, VerifyingKey,
    },
};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::{
    cert::Certificate,
    context::SigContext,
    error::{guard, internal, malformed, CryptoError},
    keys::DeviceKey,
    pgpkey,
};

/// Signs `plaintext` with the sender's device key (one-pass signature,
/// SHA-256), then encrypts it (SEIPD v1 with MDC, AES-256) to the newest
/// encryption subkey of every recipient. Returns an ASCII-armored OpenPGP
/// message.
///
/// The signature is dated with the sender key's creation time (this crate
/// never reads the clock); use [`seal_at`] to date it explicitly. The
/// protocol carries its own `sent_at` inside the payload.
pub fn seal(
    rng: &mut (impl CryptoRng + RngCore),
    sender: &DeviceKey,
    recipients: &[&Certificate],
    plaintext: &[u8],
    context: SigContext,
) -> Result<String, CryptoError> {
    seal_at(
        rng,
        sender,
        recipients,
        plaintext,
        context,
        sender.created_unix(),
    )
}

/// [`seal`] with an explicit signature creation time (unix seconds).
pub fn seal_at(
    rng: &mut (impl CryptoRng + RngCore),
    sender: &DeviceKey,
    recipients: &[&Certificate],
    plaintext: &[u8],
    context: SigContext,
    signed_unix: u64,
) -> Result<String, CryptoError> {
    let armored = build_sealed(
        rng,
        sender,
        recipients,
        plaintext,
        (context, signed_unix),
        true,
    )?;
    String::from_utf8(armored).map_err(|e| CryptoError::Internal {
        what: "armoring the sealed message",
        source: Some(Box::new(e)),
    })
}

/// [`seal`] returning the binary OpenPGP message (no armor), for payloads
/// that are wrapped again and must stay compact (the pairing welcome).
/// Opened with [`open_bytes`].
pub fn seal_bytes(
    rng: &mut (impl CryptoRng + RngCore),
    sender: &DeviceKey,
    recipients: &[&Certificate],
    plaintext: &[u8],
    context: SigContext,
) -> Result<Vec<u8>, CryptoError> {
    build_sealed(
        rng,
        sender,
        recipients,
        plaintext,
        (context, sender.created_unix()),
        false,
    )
}

fn build_sealed(
    rng: &mut (impl CryptoRng + RngCore),
    sender: &DeviceKey,
    recipients: &[&Certificate],
    plaintext: &[u8],
    (context, signed_unix): (SigContext, u64),
    armored: bool,
) -> Result<Vec<u8>, CryptoError> {
    if recipients.is_empty() {
        return Err(CryptoError::InvalidArgument("no recipients".into()));
    }
    let created = pgpkey::timestamp(signed_unix)?;
    let signer = pgpkey::signing_primary(&sender.key)?;
    let (hashed, unhashed) = pgpkey::data_subpackets(signer, created, context)?;

    let mut builder = MessageBuilder::from_bytes("", plaintext.to_vec())
        .seipd_v1(&mut *rng, SymmetricKeyAlgorithm::AES256);
    for cert in recipients {
        let sub = pgpkey::encryption_subkeys(&cert.key)
            .into_iter()
            .next()
            .ok_or_else(|| {
                CryptoError::UnsupportedKey(format!(
                    "certificate {} has no encryption subkey",
                    cert.fingerprint()
                ))
            })?;
        builder.encrypt_to_key(&mut *rng, sub).map_err(internal)?;
    }
    builder.sign_with_subpackets(
        signer,
        Password::empty(),
        HashAlgorithm::Sha256,
        SubpacketConfig::UserDefined { hashed, unhashed },
    );
    if !armored {
        // The binary form carries bulk data (the whole group state in the
        // welcome): compress it. `open_bytes` bounds the decompressed size.
        builder.compression(CompressionAlgorithm::ZLIB);
    }
    if armored {
        // Sized for base64 (4/3) plus line breaks and packet overhead, so
        // the output is written once instead of regrown. No CRC24 footer:
        // RFC 9580 (6.1) makes it optional and the MDC/signature already
        // protect the content.
        let mut out = Vec::with_capacity(plaintext.len() / 3 * 4 + plaintext.len() / 48 + 2048);
        builder
            .to_armored_writer(
                &mut *rng,
                ArmorOptions {
                    headers: None,
                    include_checksum: false,
                },
                &mut out,
            )
            .map_err(internal)?;
        Ok(out)
    } else {
        builder.to_vec(&mut *rng).map_err(internal)
    }
}

/// Decrypts an armored message with our device key and verifies that it is
/// signed by `expected_sender`. Returns the plaintext (zeroized on drop).
///
/// Errors:
/// * [`CryptoError::Malformed`]: not an armored OpenPGP message, or not of
///   the shape `PKESK+ SEIPD`, or garbage inside the authenticated
///   plaintext;
/// * [`CryptoError::NotForUs`]: no session key packet for our key;
/// * [`CryptoError::Undecryptable`]: our session key packet does not decrypt;
/// * [`CryptoError::Tampered`]: the integrity check (MDC) fails;
/// * [`CryptoError::BadSignature`]: unsigned, or not validly signed by
///   `expected_sender`;
/// * [`CryptoError::PlaintextTooLarge`]: more than `max_plaintext` bytes.
///
/// Never panics on hostile input.
pub fn open(
    recipient: &DeviceKey,
    expected_sender: &Certificate,
    armored: &str,
    max_plaintext: usize,
    context: SigContext,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let binary = dearmor_message(armored)?;
    open_bytes(recipient, expected_sender, &binary, max_plaintext, context)
}

/// [`open`] for a binary (unarmored) OpenPGP message.
pub fn open_bytes(
    recipient: &DeviceKey,
    expected_sender: &Certificate,
    message: &[u8],
    max_plaintext: usize,
    context: SigContext,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    guard(|| {
        let inner = decrypt_outer(recipient, message)?;
        read_signed(&inner, max_plaintext, context, |_| {
            Some(expected_sender.clone())
        })
    })
}

/// [`open`] for a sender that is known only once the plaintext is read:
/// decrypts and authenticates the ciphertext (MDC), reads the plaintext,
/// asks `sender_of` for the certificate that must have signed it, and
/// returns the plaintext only if that certificate's signature (for
/// `context`) verifies. `sender_of` returning `None` gives
/// [`CryptoError::BadSignature`]. The plaintext given to `sender_of` is not
/// yet authenticated by a signature: it must only be used to find the
/// certificate.
pub fn open_then_verify(
    recipient: &DeviceKey,
    armored: &str,
    max_plaintext: usize,
    context: SigContext,
    sender_of: impl FnOnce(&[u8]) -> Option<Certificate>,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let binary = dearmor_message(armored)?;
    guard(|| {
        let inner = decrypt_outer(recipient, &binary)?;
        read_signed(&inner, max_plaintext, context, sender_of)
    })
}

/// Decodes an ASCII-armored `PGP MESSAGE` block to bytes.
pub(crate) fn dearmor_message(armored: &str) -> Result<Vec<u8>, CryptoError> {
    guard(|| {
        let mut dearmor = Dearmor::new(armored.as_bytes());
        let mut out = Vec::new();
        dearmor.read_to_end(&mut out).map_err(malformed)?;
        match dearmor.typ {
            Some(BlockType::Message) => Ok(out),
            other => Err(CryptoError::Malformed(format!(
                "expected an armored PGP MESSAGE, found {other:?}"
            ))),
        }
    })
}

/// Parses `PKESK+ SEIPD`, decrypts our session key and the SEIPD packet.
/// Returns the authenticated inner packet stream.
fn decrypt_outer(recipient: &DeviceKey, message: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut pkesks = Vec::new();
    let mut seipd = None;
    for packet in PacketParser::new(message) {
        match packet.map_err(malformed)? {
            Packet::PublicKeyEncryptedSessionKey(p) if seipd.is_none() => pkesks.push(p),
            Packet::SymEncryptedProtectedData(p) if seipd.is_none() => seipd = Some(p),
            other => {
                return Err(CryptoError::Malformed(format!(
                    "unexpected {:?} packet in sealed message",
                    other.tag()
                )))
            }
        }
    }
    let seipd = seipd.ok_or_else(|| CryptoError::Malformed("no encrypted data packet".into()))?;
    if seipd.version() != 1 {
        return Err(CryptoError::Malformed("expected SEIPD version 1".into()));
    }
    // Session key packets are outside the integrity protection. rPGP's
    // parser tolerates non-canonical encodings (e.g. MPI bit counts), so
    // insist that they re-serialize to exactly the bytes we were given:
    // then no bit of them can change without changing their meaning.
    let mut canonical = Vec::new();
    for p in &pkesks {
        p.to_writer_with_header(&mut canonical).map_err(malformed)?;
    }
    if !message.starts_with(&canonical) {
        return Err(CryptoError::Malformed(
            "non-canonical session key packet".into(),
        ));
    }

    let mut matched = false;
    let mut session_key = None;
    'outer: for sub in pgpkey::secret_encryption_subkeys(&recipient.key) {
        for pkesk in &pkesks {
            if !pkesk.match_identity(sub.key.public_key()) {
                continue;
            }
            // A wildcard (anonymous) recipient only counts as "for us" if
            // it actually decrypts.
            let explicit = pkesk.id().is_ok_and(|id| !id.is_wildcard());
            matched |= explicit;
            let Ok(values) = pkesk.values() else { continue };
            if !canonical_ephemeral(sub.key.public_key().public_params(), values) {
                continue;
            }
            if let Ok(Ok(sk)) = sub.key.decrypt(&Password::empty(), values, EskType::V3_4) {
                matched = true;
                session_key = Some(sk);
                break 'outer;
            }
        }
    }
    let session_key = match (matched, session_key) {
        (false, _) => return Err(CryptoError::NotForUs),
        (true, None) => return Err(CryptoError::Undecryptable),
        (true, Some(sk)) => sk,
    };
    let PlainSessionKey::V3_4 { sym_alg, key } = &session_key else {
        return Err(CryptoError::Undecryptable);
    };
    if !matches!(
        sym_alg,
        SymmetricKeyAlgorithm::AES128
            | SymmetricKeyAlgorithm::AES192
            | SymmetricKeyAlgorithm::AES256
    ) || key.len() != sym_alg.key_size()
    {
        return Err(CryptoError::Undecryptable);
    }
    let mode = Seipdv1ReadMode::CheckFirst {
        max_message_size: message.len(),
    };
    seipd
        .decrypt(key.as_ref(), Some(*sym_alg), mode)
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Tampered)
}

/// X25519 ignores the top bit of a u-coordinate (RFC 7748) and the
/// RFC 6637 KDF does not bind the ephemeral key, so a set top bit would be
/// a malleable, meaningless bit. Honest encoders never set it.
/// Likewise the 0x40 prefix of a Cv25519 point is not checked by rPGP.
fn canonical_ephemeral(ours: &PublicParams, values: &PkeskBytes) -> bool {
    match (ours, values) {
        (
            PublicParams::ECDH(EcdhPublicParams::Curve25519Legacy { .. }),
            PkeskBytes::Ecdh { public_point, .. },
        ) => {
            let p = public_point.as_ref();
            p.len() == 33 && p[0] == 0x40 && p[32] & 0x80 == 0
        }
        (_, PkeskBytes::X25519 { ephemeral, .. }) => ephemeral[31] & 0x80 == 0,
        _ => true,
    }
}

/// Parses the decrypted packet stream, reads at most `max` bytes of
/// literal data and checks the signature against the certificate
/// `sender_of` names for it.
pub(crate) fn read_signed(
    inner: &[u8],
    max: usize,
    context: SigContext,
    sender_of: impl FnOnce(&[u8]) -> Option<Certificate>,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut msg = Message::from_bytes(inner).map_err(malformed)?;
    if msg.is_compressed() {
        msg = msg.decompress().map_err(malformed)?;
    }
    if !msg.is_signed() {
        return Err(CryptoError::BadSignature);
    }
    let mut out = Zeroizing::new(Vec::new());
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    (&mut msg)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(malformed)?;
    if out.len() > max {
        return Err(CryptoError::PlaintextTooLarge { max });
    }
    // Make sure the whole message (including trailing signature packets)
    // has been consumed, so the signature state is final.
    let mut rest = [0u8; 1];
    if msg.read(&mut rest).map_err(malformed)? != 0 {
        return Err(CryptoError::PlaintextTooLarge { max });
    }
    let sender = sender_of(&out).ok_or(CryptoError::BadSignature)?;
    match verify_message(&msg, &sender.key, context) {
        Verdict::Valid => Ok(out),
        Verdict::WrongContext => Err(CryptoError::WrongContext {
            expected: context.as_str(),
        }),
        Verdict::Invalid => Err(CryptoError::BadSignature),
    }
}

/// What the signatures of a message say about one sender.
enum Verdict {
    Valid,
    /// A signature by the sender verifies, but was made for another purpose.
    WrongContext,
    Invalid,
}

/// Valid iff one of the message's signatures is a valid binary/text data
/// signature for `context` by the primary key or a signing subkey of
/// `sender`.
fn verify_message(msg: &Message<'_>, sender: &SignedPublicKey, context: SigContext) -> Verdict {
    let Message::Signed { reader, .. } = msg else {
        return Verdict::Invalid;
    };
    let count = reader.num_signatures();
    let mut keys: Vec<&dyn VerifyingKey> = vec![&sender.primary_key];
    for sub in &sender.public_subkeys {
        let signs = sub
            .signatures
            .iter()
            .any(|s| s.typ() == Some(SignatureType::SubkeyBinding) && s.key_flags().sign());
        if signs {
            keys.push(&sub.key);
        }
    }
    let mut verdict = Verdict::Invalid;
    for i in 0..count {
        for key in &keys {
            let Ok(sig) = msg.verify_nested_explicit(i, *key) else {
                continue;
            };
            let data_sig = matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text))
                && sig
                    .issuer_fingerprint()
                    .iter()
                    .all(|fp| **fp == key.fingerprint());
            if !data_sig {
                continue;
            }
            if context.marks(sig) {
                return Verdict::Valid;
            }
            verdict = Verdict::WrongContext;
        }
    }
    verdict
}

//! seal / open: sign-then-encrypt device messages.

mod common;

use common::{dearmor, device, rng};
use pgp::{
    composed::{
        ArmorOptions, Deserializable, MessageBuilder, SignedPublicKey, SignedSecretKey,
        SubpacketConfig,
    },
    crypto::{hash::HashAlgorithm, sym::SymmetricKeyAlgorithm},
    packet::{Notation, Subpacket, SubpacketData},
    types::{CompressionAlgorithm, KeyDetails, Password, Timestamp},
};
use sma_crypto::{open, open_bytes, seal, seal_at, CryptoError, SigContext};

const MAX: usize = 1 << 20;

/// Signs like sma does (creation time, issuer, the sealed context), for
/// messages built with rPGP directly.
fn sealed_subpackets(key: &SignedSecretKey) -> SubpacketConfig {
    let hashed = vec![
        Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::from_secs(
            1_700_000_000,
        )))
        .unwrap(),
        Subpacket::regular(SubpacketData::IssuerFingerprint(
            key.primary_key.fingerprint(),
        ))
        .unwrap(),
        Subpacket::regular(SubpacketData::Notation(Notation {
            readable: true,
            name: sma_crypto::CONTEXT_NOTATION.as_bytes().to_vec().into(),
            value: SigContext::Sealed.as_str().as_bytes().to_vec().into(),
        }))
        .unwrap(),
    ];
    SubpacketConfig::UserDefined {
        hashed,
        unhashed: vec![],
    }
}

#[test]
fn one_recipient_roundtrip() {
    let (alice, bob) = (device(1), device(2));
    let msg = seal(
        &mut rng(1),
        &alice,
        &[&bob.certificate()],
        b"hello bob",
        SigContext::Sealed,
    )
    .unwrap();
    assert!(msg.starts_with("-----BEGIN PGP MESSAGE-----"));
    let plain = open(&bob, &alice.certificate(), &msg, MAX, SigContext::Sealed).unwrap();
    assert_eq!(*plain, b"hello bob");
}

#[test]
fn three_recipients_each_can_open() {
    let alice = device(1);
    let rcpts = [device(2), device(3), device(4)];
    let certs: Vec<_> = rcpts.iter().map(|d| d.certificate()).collect();
    let refs: Vec<_> = certs.iter().collect();
    let payload = vec![0x5a; 70_000]; // larger than one partial chunk boundary
    let msg = seal_at(
        &mut rng(2),
        &alice,
        &refs,
        &payload,
        SigContext::Sealed,
        1_800_000_000,
    )
    .unwrap();
    for r in &rcpts {
        assert_eq!(
            open(r, &alice.certificate(), &msg, MAX, SigContext::Sealed)
                .unwrap()
                .to_vec(),
            payload
        );
    }
    // The sender is not a recipient unless listed.
    assert!(matches!(
        open(&alice, &alice.certificate(), &msg, MAX, SigContext::Sealed),
        Err(CryptoError::NotForUs)
    ));
}

#[test]
fn empty_plaintext_and_empty_recipients() {
    let (alice, bob) = (device(1), device(2));
    let msg = seal(
        &mut rng(3),
        &alice,
        &[&bob.certificate()],
        b"",
        SigContext::Sealed,
    )
    .unwrap();
    assert_eq!(
        open(&bob, &alice.certificate(), &msg, 0, SigContext::Sealed)
            .unwrap()
            .to_vec(),
        b""
    );
    assert!(matches!(
        seal(&mut rng(3), &alice, &[], b"x", SigContext::Sealed),
        Err(CryptoError::InvalidArgument(_))
    ));
}

#[test]
fn non_recipient_gets_not_for_us() {
    let (alice, bob, eve) = (device(1), device(2), device(5));
    let msg = seal(
        &mut rng(4),
        &alice,
        &[&bob.certificate()],
        b"secret",
        SigContext::Sealed,
    )
    .unwrap();
    assert!(matches!(
        open(&eve, &alice.certificate(), &msg, MAX, SigContext::Sealed),
        Err(CryptoError::NotForUs)
    ));
}

#[test]
fn wrong_expected_sender_is_bad_signature() {
    let (alice, bob, mallory) = (device(1), device(2), device(6));
    let msg = seal(
        &mut rng(5),
        &mallory,
        &[&bob.certificate()],
        b"from mallory",
        SigContext::Sealed,
    )
    .unwrap();
    assert!(matches!(
        open(&bob, &alice.certificate(), &msg, MAX, SigContext::Sealed),
        Err(CryptoError::BadSignature)
    ));
    assert_eq!(
        open(&bob, &mallory.certificate(), &msg, MAX, SigContext::Sealed)
            .unwrap()
            .to_vec(),
        b"from mallory"
    );
}

#[test]
fn unsigned_message_is_bad_signature() {
    let (alice, bob) = (device(1), device(2));
    let cert = SignedPublicKey::from_bytes(&bob.certificate().to_bytes()[..]).unwrap();
    let mut r = rng(6);
    let mut builder = MessageBuilder::from_bytes("", b"unsigned".to_vec())
        .seipd_v1(&mut r, SymmetricKeyAlgorithm::AES256);
    builder
        .encrypt_to_key(&mut r, &cert.public_subkeys[0])
        .unwrap();
    let msg = builder
        .to_armored_string(&mut r, ArmorOptions::default())
        .unwrap();
    assert!(matches!(
        open(&bob, &alice.certificate(), &msg, MAX, SigContext::Sealed),
        Err(CryptoError::BadSignature)
    ));
}

#[test]
fn anonymous_recipient_opens_only_for_the_recipient() {
    let (alice, bob, eve) = (device(1), device(2), device(5));
    let bob_cert = SignedPublicKey::from_bytes(&bob.certificate().to_bytes()[..]).unwrap();
    let alice_sec = SignedSecretKey::from_bytes(&alice.to_bytes()[..]).unwrap();
    let mut r = rng(12);
    let mut builder = MessageBuilder::from_bytes("", b"anonymous".to_vec())
        .seipd_v1(&mut r, SymmetricKeyAlgorithm::AES256);
    builder
        .encrypt_to_key_anonymous(&mut r, &bob_cert.public_subkeys[0])
        .unwrap();
    builder.sign_with_subpackets(
        &alice_sec.primary_key,
        Password::empty(),
        HashAlgorithm::Sha256,
        sealed_subpackets(&alice_sec),
    );
    let msg = builder
        .to_armored_string(&mut r, ArmorOptions::default())
        .unwrap();
    assert_eq!(
        open(&bob, &alice.certificate(), &msg, MAX, SigContext::Sealed)
            .unwrap()
            .to_vec(),
        b"anonymous"
    );
    assert!(matches!(
        open(&eve, &alice.certificate(), &msg, MAX, SigContext::Sealed),
        Err(CryptoError::NotForUs)
    ));
}

#[test]
fn compressed_messages_open_within_the_limit() {
    let (alice, bob) = (device(1), device(2));
    let bob_cert = SignedPublicKey::from_bytes(&bob.certificate().to_bytes()[..]).unwrap();
    let alice_sec = SignedSecretKey::from_bytes(&alice.to_bytes()[..]).unwrap();
    let make = |plain: Vec<u8>| {
        let mut r = rng(13);
        let mut builder =
            MessageBuilder::from_bytes("", plain).seipd_v1(&mut r, SymmetricKeyAlgorithm::AES256);
        builder
            .encrypt_to_key(&mut r, &bob_cert.public_subkeys[0])
            .unwrap();
        builder.compression(CompressionAlgorithm::ZLIB);
        builder.sign_with_subpackets(
            &alice_sec.primary_key,
            Password::empty(),
            HashAlgorithm::Sha256,
            sealed_subpackets(&alice_sec),
        );
        builder
            .to_armored_string(&mut r, ArmorOptions::default())
            .unwrap()
    };
    let msg = make(b"squeeze me".repeat(100));
    assert_eq!(
        open(&bob, &alice.certificate(), &msg, MAX, SigContext::Sealed)
            .unwrap()
            .to_vec(),
        b"squeeze me".repeat(100)
    );
    // A small ciphertext that inflates beyond the limit is refused.
    let bomb = make(vec![0u8; 8 << 20]);
    assert!(bomb.len() < 100_000);
    assert!(matches!(
        open(&bob, &alice.certificate(), &bomb, MAX, SigContext::Sealed),
        Err(CryptoError::PlaintextTooLarge { .. })
    ));
}

#[test]
fn plaintext_limit_is_enforced() {
    let (alice, bob) = (device(1), device(2));
    let msg = seal(
        &mut rng(7),
        &alice,
        &[&bob.certificate()],
        &[1u8; 1000],
        SigContext::Sealed,
    )
    .unwrap();
    assert!(open(&bob, &alice.certificate(), &msg, 1000, SigContext::Sealed).is_ok());
    assert!(matches!(
        open(&bob, &alice.certificate(), &msg, 999, SigContext::Sealed),
        Err(CryptoError::PlaintextTooLarge { max: 999 })
    ));
}

#[test]
fn every_flipped_byte_fails_cleanly() {
    let (alice, bob) = (device(1), device(2));
    let armored = seal(
        &mut rng(8),
        &alice,
        &[&bob.certificate()],
        b"integrity matters",
        SigContext::Sealed,
    )
    .unwrap();
    let binary = dearmor(&armored);
    let sender = alice.certificate();
    assert!(open_bytes(&bob, &sender, &binary, MAX, SigContext::Sealed).is_ok());
    for i in 0..binary.len() {
        for bit in 0..8 {
            let mut m = binary.clone();
            m[i] ^= 1 << bit;
            match open_bytes(&bob, &sender, &m, MAX, SigContext::Sealed) {
                Ok(p) => panic!("flip of byte {i} bit {bit} accepted: {p:?}"),
                // Key id of the (new-format, one-octet length) PKESK.
                Err(e) if (3..11).contains(&i) => {
                    assert!(matches!(e, CryptoError::NotForUs), "byte {i}: {e:?}")
                }
                // The tail of the SEIPD body (encrypted signature + MDC).
                Err(e) if i >= binary.len() - 40 => {
                    assert!(matches!(e, CryptoError::Tampered), "byte {i}: {e:?}")
                }
                Err(_) => {}
            }
        }
    }
}

#[test]
fn flipped_armor_characters_never_yield_other_plaintext() {
    let (alice, bob) = (device(1), device(2));
    let armored = seal(
        &mut rng(9),
        &alice,
        &[&bob.certificate()],
        b"armor",
        SigContext::Sealed,
    )
    .unwrap();
    let sender = alice.certificate();
    let bytes = armored.as_bytes();
    for i in 0..bytes.len() {
        let mut m = bytes.to_vec();
        m[i] ^= 0x01;
        let Ok(text) = String::from_utf8(m) else {
            continue;
        };
        if let Ok(p) = open(&bob, &sender, &text, MAX, SigContext::Sealed) {
            // Only changes that do not alter the decoded bytes (e.g. the
            // unchecked CRC line, whitespace) may pass.
            assert_eq!(*p, b"armor", "flip at {i}");
        }
    }
}

#[test]
fn truncation_fails_cleanly() {
    let (alice, bob) = (device(1), device(2));
    let armored = seal(
        &mut rng(10),
        &alice,
        &[&bob.certificate()],
        b"do not cut me",
        SigContext::Sealed,
    )
    .unwrap();
    let binary = dearmor(&armored);
    let sender = alice.certificate();
    for len in 0..binary.len() {
        assert!(
            open_bytes(&bob, &sender, &binary[..len], MAX, SigContext::Sealed).is_err(),
            "truncated to {len} accepted"
        );
    }
    // Truncated armor text.
    for len in (0..armored.len()).step_by(7) {
        assert!(open(&bob, &sender, &armored[..len], MAX, SigContext::Sealed).is_err());
    }
    // Appended packets are rejected too.
    let mut longer = binary.clone();
    longer.extend_from_slice(&binary);
    assert!(matches!(
        open_bytes(&bob, &sender, &longer, MAX, SigContext::Sealed),
        Err(CryptoError::Malformed(_))
    ));
}

#[test]
fn garbage_is_malformed() {
    let (alice, bob) = (device(1), device(2));
    let sender = alice.certificate();
    for text in [
        "",
        "hello",
        "-----BEGIN PGP MESSAGE-----\n\n-----END PGP MESSAGE-----\n",
        "-----BEGIN PGP MESSAGE-----\n\n!!!!\n-----END PGP MESSAGE-----\n",
        "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n",
    ] {
        assert!(
            matches!(
                open(&bob, &sender, text, MAX, SigContext::Sealed),
                Err(CryptoError::Malformed(_))
            ),
            "{text:?}"
        );
    }
    // A public key block is not a message.
    let cert_armor = bob.certificate().to_armored();
    assert!(matches!(
        open(&bob, &sender, &cert_armor, MAX, SigContext::Sealed),
        Err(CryptoError::Malformed(_))
    ));
    // Random binary blobs of many lengths.
    let mut r = rng(11);
    for len in [0usize, 1, 2, 3, 10, 100, 1000] {
        let mut blob = vec![0u8; len];
        rand_chacha::rand_core::RngCore::fill_bytes(&mut r, &mut blob);
        assert!(open_bytes(&bob, &sender, &blob, MAX, SigContext::Sealed).is_err());
    }
}

#[test]
fn a_sealed_message_opens_only_for_the_context_it_was_signed_for() {
    let (alice, bob) = (device(1), device(2));
    let msg = seal(
        &mut rng(11),
        &alice,
        &[&bob.certificate()],
        b"ctx",
        SigContext::Op,
    )
    .unwrap();
    assert!(matches!(
        open(&bob, &alice.certificate(), &msg, MAX, SigContext::Sealed),
        Err(CryptoError::WrongContext { .. })
    ));
    assert_eq!(
        open(&bob, &alice.certificate(), &msg, MAX, SigContext::Op)
            .unwrap()
            .to_vec(),
        b"ctx"
    );
}

#[test]
fn open_then_verify_checks_the_certificate_the_plaintext_names() {
    let (alice, bob, carol) = (device(1), device(2), device(3));
    let msg = seal(
        &mut rng(12),
        &alice,
        &[&bob.certificate()],
        b"from alice",
        SigContext::Sealed,
    )
    .unwrap();
    let got = sma_crypto::open_then_verify(&bob, &msg, MAX, SigContext::Sealed, |plain| {
        assert_eq!(plain, b"from alice");
        Some(alice.certificate())
    })
    .unwrap();
    assert_eq!(*got, b"from alice");
    assert!(matches!(
        sma_crypto::open_then_verify(&bob, &msg, MAX, SigContext::Sealed, |_| Some(
            carol.certificate()
        )),
        Err(CryptoError::BadSignature)
    ));
    assert!(matches!(
        sma_crypto::open_then_verify(&bob, &msg, MAX, SigContext::Sealed, |_| None),
        Err(CryptoError::BadSignature)
    ));
}

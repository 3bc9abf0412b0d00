//! Detached signatures.

mod common;

use common::device;
use pgp::composed::{Deserializable, DetachedSignature};
use sma_crypto::{sign_detached, sign_detached_at, verify_detached, CryptoError, SigContext};

#[test]
fn sign_and_verify() {
    let alice = device(1);
    let data = br#"{"v":1,"device_id":"0000000000000001"}"#;
    let sig = sign_detached(&alice, data, SigContext::Announcement).unwrap();
    assert!(sig.starts_with("-----BEGIN PGP SIGNATURE-----"));
    verify_detached(&alice.certificate(), data, &sig, SigContext::Announcement).unwrap();
    // Deterministic for the same key, data and time (Ed25519).
    assert_eq!(
        sig,
        sign_detached(&alice, data, SigContext::Announcement).unwrap()
    );
    let later = sign_detached_at(&alice, data, SigContext::Announcement, 1_900_000_000).unwrap();
    assert_ne!(later, sig);
    verify_detached(&alice.certificate(), data, &later, SigContext::Announcement).unwrap();
}

#[test]
fn tampered_data_or_wrong_key_is_bad_signature() {
    let (alice, bob) = (device(1), device(2));
    let sig = sign_detached(&alice, b"announce", SigContext::Announcement).unwrap();
    assert!(matches!(
        verify_detached(
            &alice.certificate(),
            b"announcE",
            &sig,
            SigContext::Announcement
        ),
        Err(CryptoError::BadSignature)
    ));
    assert!(matches!(
        verify_detached(&alice.certificate(), b"", &sig, SigContext::Announcement),
        Err(CryptoError::BadSignature)
    ));
    assert!(matches!(
        verify_detached(
            &bob.certificate(),
            b"announce",
            &sig,
            SigContext::Announcement
        ),
        Err(CryptoError::BadSignature)
    ));
}

#[test]
fn tampered_signature_never_verifies() {
    let alice = device(1);
    let cert = alice.certificate();
    let sig = sign_detached(&alice, b"data", SigContext::Announcement).unwrap();
    let bytes = sig.as_bytes();
    for i in 0..bytes.len() {
        let mut m = bytes.to_vec();
        m[i] ^= 0x01;
        let Ok(text) = String::from_utf8(m) else {
            continue;
        };
        if verify_detached(&cert, b"data", &text, SigContext::Announcement).is_ok() {
            // Only changes outside what the signature covers may pass:
            // armor encoding (CRC line, whitespace) and the unhashed
            // subpacket area, which OpenPGP leaves unprotected.
            let (a, _) = DetachedSignature::from_string(&text).unwrap();
            let (b, _) = DetachedSignature::from_string(&sig).unwrap();
            let (ca, cb) = (a.signature.config().unwrap(), b.signature.config().unwrap());
            assert_eq!(ca.hashed_subpackets, cb.hashed_subpackets, "flip at {i}");
            assert_eq!((ca.typ, ca.hash_alg), (cb.typ, cb.hash_alg), "flip at {i}");
            assert_eq!(
                a.signature.signature(),
                b.signature.signature(),
                "flip at {i}"
            );
        }
    }
}

#[test]
fn garbage_is_malformed() {
    let alice = device(1);
    for text in [
        "",
        "nope",
        "-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n",
    ] {
        assert!(matches!(
            verify_detached(&alice.certificate(), b"x", text, SigContext::Announcement),
            Err(CryptoError::Malformed(_))
        ));
    }
    // A message block is not a signature.
    let msg = sma_crypto::seal(
        &mut common::rng(1),
        &alice,
        &[&alice.certificate()],
        b"x",
        SigContext::Sealed,
    )
    .unwrap();
    assert!(verify_detached(&alice.certificate(), b"x", &msg, SigContext::Announcement).is_err());
}

#[test]
fn a_signature_made_for_one_context_never_verifies_for_another() {
    let alice = device(1);
    let cert = alice.certificate();
    let sig = sign_detached(&alice, b"doc", SigContext::Announcement).unwrap();
    for other in [SigContext::Sealed, SigContext::Op, SigContext::Welcome] {
        assert!(matches!(
            verify_detached(&cert, b"doc", &sig, other),
            Err(CryptoError::WrongContext { .. })
        ));
    }
    let op = sma_crypto::sign_binary(&alice, b"op bytes", SigContext::Op).unwrap();
    assert!(op.len() < 200, "op signatures stay compact: {}", op.len());
    sma_crypto::verify_binary(&cert, b"op bytes", &op, SigContext::Op).unwrap();
    assert!(matches!(
        sma_crypto::verify_binary(&cert, b"op bytes", &op, SigContext::Announcement),
        Err(CryptoError::WrongContext { .. })
    ));
    assert!(matches!(
        sma_crypto::verify_binary(&cert, b"op byteS", &op, SigContext::Op),
        Err(CryptoError::BadSignature)
    ));
    assert!(matches!(
        sma_crypto::verify_binary(&device(2).certificate(), b"op bytes", &op, SigContext::Op),
        Err(CryptoError::BadSignature)
    ));
    assert!(
        sma_crypto::verify_binary(&cert, b"op bytes", &op[..op.len() - 1], SigContext::Op).is_err()
    );
    assert!(sma_crypto::verify_binary(&cert, b"op bytes", &[0u8; 4096], SigContext::Op).is_err());
}

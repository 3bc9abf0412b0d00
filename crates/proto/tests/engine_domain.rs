//! Domain separation: a signature a device made for one purpose (its public
//! announcement) cannot be replayed as the signature of a sealed message.
//! The provider holds every announcement; here it re-wraps one as a sync
//! message "from" the announcing member to a victim, and the victim's
//! engine rejects it as signed for another context.

mod common;

use base64::Engine as _;
use common::forge::{self, marker, msg_id};
use common::*;
use pgp::composed::{Deserializable, DetachedSignature, RawSessionKey, SignedPublicKey};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::{
    LiteralData, PacketTrait, PublicKeyEncryptedSessionKey, SymEncryptedProtectedData,
};
use rand_core::RngCore;
use sma_crypto::CryptoError;
use sma_proto::device::build_announcement;
use sma_proto::envelope::{Body, Envelope, Kind, Recipient};
use sma_proto::error::ProtoError;
use sma_proto::folders::Layout;
use sma_proto::payload::AnnouncedState;
use sma_proto::PeerMisbehaved;

const A: usize = 0;
const B: usize = 1;

/// `inner` (an OpenPGP packet stream) encrypted to the first subkey of
/// `to` as PKESK + SEIPD v1, armored.
fn encrypt_packets(inner: &[u8], to: &sma_crypto::Certificate) -> String {
    let mut r = rng(4242);
    let (cert, _) = SignedPublicKey::from_armor_single(to.to_armored().as_bytes()).unwrap();
    let mut key = [0u8; 32];
    r.fill_bytes(&mut key);
    let alg = SymmetricKeyAlgorithm::AES256;
    let pkesk = PublicKeyEncryptedSessionKey::from_session_key_v3(
        &mut r,
        &RawSessionKey::from(key.to_vec()),
        alg,
        &cert.public_subkeys[0],
    )
    .unwrap();
    let seipd = SymEncryptedProtectedData::encrypt_seipdv1(&mut r, alg, &key, inner).unwrap();
    let mut msg = Vec::new();
    pkesk.to_writer_with_header(&mut msg).unwrap();
    seipd.to_writer_with_header(&mut msg).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&msg);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PGP MESSAGE-----\n\n{}\n-----END PGP MESSAGE-----\n",
        lines.join("\n")
    )
}

#[test]
fn an_announcement_signature_rewrapped_as_a_sealed_message_is_rejected() {
    let mut net = Net::founded(2, at(0));
    let (a, b) = (net.id(A), net.id(B));
    let ann = build_announcement(
        &mut rng(1),
        &identity(1),
        "device 1",
        T0,
        at(5).as_secs(),
        AnnouncedState::Member,
        Layout::Flat,
        true,
    )
    .unwrap();
    let Body::Signed { payload, signature } = Envelope::parse(&ann).unwrap().body else {
        panic!("an announcement is signed");
    };
    let (sig, _) = DetachedSignature::from_armor_single(signature.as_bytes()).unwrap();
    // Signed message: the signature packet, then the literal data it covers.
    let mut inner = Vec::new();
    sig.signature.to_writer_with_header(&mut inner).unwrap();
    LiteralData::from_bytes("", payload.clone().into())
        .unwrap()
        .to_writer_with_header(&mut inner)
        .unwrap();
    let armored = encrypt_packets(&inner, &identity(2).cert());
    let env = Envelope {
        account: ACCOUNT.into(),
        date: at(6).as_secs(),
        marker: marker(Kind::Sync, &a, Recipient::Device(b), msg_id(1)),
        body: Body::Encrypted { armored },
    };
    let err = net.em(B).open(&env).err();
    assert!(
        matches!(
            err,
            Some(ProtoError::Peer(PeerMisbehaved::Crypto(
                CryptoError::WrongContext { .. }
            )))
        ),
        "{err:?}"
    );
    // Through the inbox: quarantined (deleted and logged), nothing recorded.
    let uid = net.nodes[B].inbox.append(env.to_bytes());
    let (out, log) = logged(|| net.recv(B, at(7)));
    assert_eq!(out.delete, [uid].into());
    assert!(out.processed.is_empty() && out.deferred.is_empty());
    assert!(log.contains("quarantined"), "{log}");
    assert!(log.contains("signature made for another purpose"), "{log}");
}

#[test]
fn the_same_wrapping_with_a_sealed_signature_opens() {
    // Control for the test above: the hand-made wrapping itself is sound,
    // so what rejects the announcement is its signature's context.
    let mut net = Net::founded(2, at(0));
    let (a, b) = (net.id(A), net.id(B));
    let m = marker(Kind::Sync, &a, Recipient::Device(b.clone()), msg_id(2));
    let p = forge::payload_for(
        &m,
        std::slice::from_ref(&b),
        at(6),
        sma_proto::payload::SealedContent::Ops(Default::default()),
    );
    let json = sma_proto::payload::to_json(&p);
    let sig =
        sma_crypto::sign_detached(&identity(1).key, &json, sma_crypto::SigContext::Sealed).unwrap();
    let (sig, _) = DetachedSignature::from_armor_single(sig.as_bytes()).unwrap();
    let mut inner = Vec::new();
    sig.signature.to_writer_with_header(&mut inner).unwrap();
    LiteralData::from_bytes("", json.to_vec().into())
        .unwrap()
        .to_writer_with_header(&mut inner)
        .unwrap();
    let env = Envelope {
        account: ACCOUNT.into(),
        date: at(6).as_secs(),
        marker: m,
        body: Body::Encrypted {
            armored: encrypt_packets(&inner, &identity(2).cert()),
        },
    };
    let opened = net.em(B).open(&env).unwrap();
    assert_eq!(opened.payload.from, a);
}

//! Pairing: SPAKE2, key confirmation, welcome.

mod common;

use common::{device, rng};
use sma_crypto::{
    pake_start, CryptoError, Fingerprint, PairingCode, PairingKeys, PakeRole, Transcript,
};

const M: &str = "00000000000000aa";
const J: &str = "00000000000000bb";

struct Run {
    member_keys: Result<PairingKeys, CryptoError>,
    joiner_keys: Result<PairingKeys, CryptoError>,
    member_view: Transcript,
    joiner_view: Transcript,
}

fn transcript(msg_member: &[u8], msg_joiner: &[u8]) -> Transcript {
    Transcript {
        account: "alice@example.org".into(),
        attempt: "0123456789abcdef0123456789abcdef".into(),
        member_id: M.into(),
        joiner_id: J.into(),
        member_fpr: device(1).fingerprint(),
        joiner_fpr: device(2).fingerprint(),
        msg_member: msg_member.to_vec(),
        msg_joiner: msg_joiner.to_vec(),
    }
}

/// Runs both sides; `tweak` may alter the joiner's view of the transcript.
fn run(member_code: &str, joiner_code: &str, tweak: impl FnOnce(&mut Transcript)) -> Run {
    let mc = PairingCode::parse(member_code).unwrap();
    let jc = PairingCode::parse(joiner_code).unwrap();
    let (ms, msg_a) = pake_start(&mut rng(1), PakeRole::Member, &mc, M, J);
    let (js, msg_b) = pake_start(&mut rng(2), PakeRole::Joiner, &jc, M, J);
    let member_view = transcript(&msg_a, &msg_b);
    let mut joiner_view = member_view.clone();
    tweak(&mut joiner_view);
    // Each side finishes with what it received.
    let member_keys = ms.finish(&msg_b, &member_view);
    let joiner_keys = js.finish(&joiner_view.msg_member.clone(), &joiner_view);
    Run {
        member_keys,
        joiner_keys,
        member_view,
        joiner_view,
    }
}

#[test]
fn same_code_both_sides_confirm() {
    let r = run("1234-5678-9012", "123456789012", |_| {});
    let (mk, jk) = (r.member_keys.unwrap(), r.joiner_keys.unwrap());
    let t = &r.member_view;
    // Joiner → member and member → joiner confirmations verify.
    let tag_j = jk.confirm_tag(PakeRole::Joiner, t);
    mk.verify_tag(PakeRole::Joiner, t, &tag_j).unwrap();
    let tag_m = mk.confirm_tag(PakeRole::Member, t);
    jk.verify_tag(PakeRole::Member, t, &tag_m).unwrap();
    // Both sides derived the same keys.
    assert_eq!(tag_j, mk.confirm_tag(PakeRole::Joiner, t));
    assert_eq!(tag_m, jk.confirm_tag(PakeRole::Member, t));
    // Role separation: a member tag is not a joiner tag.
    assert_ne!(tag_j, tag_m);
    assert!(matches!(
        mk.verify_tag(PakeRole::Joiner, t, &tag_m),
        Err(CryptoError::CodeRejected)
    ));
    // Truncated tags are rejected.
    assert!(mk.verify_tag(PakeRole::Joiner, t, &tag_j[..31]).is_err());
    assert!(mk.verify_tag(PakeRole::Joiner, t, &[]).is_err());
    assert_eq!(format!("{mk:?}"), "PairingKeys(<redacted>)");
}

#[test]
fn different_codes_fail_on_both_sides() {
    let r = run("1234-5678-9012", "1234-5678-9013", |_| {});
    let (mk, jk) = (r.member_keys.unwrap(), r.joiner_keys.unwrap());
    let t = &r.member_view;
    let tag_j = jk.confirm_tag(PakeRole::Joiner, t);
    assert!(matches!(
        mk.verify_tag(PakeRole::Joiner, t, &tag_j),
        Err(CryptoError::CodeRejected)
    ));
    let tag_m = mk.confirm_tag(PakeRole::Member, t);
    assert!(matches!(
        jk.verify_tag(PakeRole::Member, t, &tag_m),
        Err(CryptoError::CodeRejected)
    ));
}

type Tweak = Box<dyn Fn(&mut Transcript)>;

#[test]
fn any_transcript_difference_fails() {
    let other_fpr: Fingerprint = device(3).fingerprint();
    let tweaks: Vec<(&str, Tweak)> = vec![
        ("account", Box::new(|t| t.account.push('x'))),
        ("attempt", Box::new(|t| t.attempt.replace_range(0..1, "f"))),
        ("member_id", Box::new(|t| t.member_id.push('0'))),
        (
            "joiner_id",
            Box::new(|t| t.joiner_id = "00000000000000bc".into()),
        ),
        (
            "member_fpr",
            Box::new({
                let f = other_fpr.clone();
                move |t| t.member_fpr = f.clone()
            }),
        ),
        (
            "joiner_fpr",
            Box::new({
                let f = other_fpr.clone();
                move |t| t.joiner_fpr = f.clone()
            }),
        ),
        ("msg_member", Box::new(|t| t.msg_member[5] ^= 1)),
        ("msg_joiner", Box::new(|t| t.msg_joiner[5] ^= 1)),
        // Moving a byte between adjacent fields must not collide.
        (
            "boundary",
            Box::new(|t| {
                t.account.push('0');
                t.attempt.remove(0);
            }),
        ),
    ];
    for (name, tweak) in tweaks {
        let r = run("1234-5678-9012", "1234-5678-9012", |t| tweak(t));
        assert_ne!(r.member_view.bytes(), r.joiner_view.bytes(), "{name}");
        let mk = r.member_keys.unwrap();
        match r.joiner_keys {
            // The joiner's own state refuses a transcript without its messages.
            Err(CryptoError::InvalidArgument(_)) => {
                assert!(name == "msg_joiner", "{name}");
            }
            // A modified SPAKE2 point may not even decode.
            Err(CryptoError::Malformed(_)) => assert!(name == "msg_member", "{name}"),
            Err(e) => panic!("{name}: {e:?}"),
            Ok(jk) => {
                let tag_j = jk.confirm_tag(PakeRole::Joiner, &r.joiner_view);
                assert!(
                    matches!(
                        mk.verify_tag(PakeRole::Joiner, &r.member_view, &tag_j),
                        Err(CryptoError::CodeRejected)
                    ),
                    "{name}"
                );
                let tag_m = mk.confirm_tag(PakeRole::Member, &r.member_view);
                assert!(
                    jk.verify_tag(PakeRole::Member, &r.joiner_view, &tag_m)
                        .is_err(),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn transcript_encoding_is_length_prefixed() {
    let t = transcript(b"A", b"B");
    let b = t.bytes();
    assert_eq!(&b[..4], &12u32.to_be_bytes());
    assert_eq!(&b[4..16], b"sma1-pairing");
    assert_eq!(&b[16..20], &17u32.to_be_bytes());
    assert_eq!(&b[20..37], b"alice@example.org");
    assert!(b.ends_with(&[0, 0, 0, 1, b'A', 0, 0, 0, 1, b'B']));
    let hex_fpr = device(1).fingerprint().to_hex();
    assert!(b.windows(40).any(|w| w == hex_fpr.as_bytes()));
    assert_eq!(t.hash().len(), 32);
}

#[test]
fn finish_rejects_bad_peer_messages() {
    let code = PairingCode::parse("111122223333").unwrap();
    let (_, msg_a) = pake_start(&mut rng(1), PakeRole::Member, &code, M, J);
    // A well-formed message from the member works (sanity check).
    let (js, msg_b) = pake_start(&mut rng(2), PakeRole::Joiner, &code, M, J);
    assert!(js.finish(&msg_a, &transcript(&msg_a, &msg_b)).is_ok());
    for bad in [
        vec![],
        msg_a[..32].to_vec(),
        [msg_a.clone(), vec![0]].concat(),
    ] {
        let (js, msg_b) = pake_start(&mut rng(2), PakeRole::Joiner, &code, M, J);
        let t = transcript(&bad, &msg_b);
        assert!(js.finish(&bad, &t).is_err());
    }
    // A side message from the wrong role ('B' sent to the joiner).
    let (js, msg_b) = pake_start(&mut rng(2), PakeRole::Joiner, &code, M, J);
    let t = transcript(&msg_b, &msg_b);
    assert!(matches!(
        js.finish(&msg_b, &t),
        Err(CryptoError::Malformed(_))
    ));
}

#[test]
fn welcome_seal_open_and_tamper() {
    let r = run("9999-0000-1111", "9999-0000-1111", |_| {});
    let (mk, jk) = (r.member_keys.unwrap(), r.joiner_keys.unwrap());
    let t = &r.member_view;
    let welcome = br#"{"account":"alice@example.org"}"#;
    let sealed = mk.seal_welcome(&mut rng(3), t, welcome);
    assert_eq!(sealed.len(), 24 + welcome.len() + 16);
    assert_eq!(jk.open_welcome(t, &sealed).unwrap(), welcome);
    for i in 0..sealed.len() {
        let mut m = sealed.clone();
        m[i] ^= 0x01;
        assert!(
            matches!(jk.open_welcome(t, &m), Err(CryptoError::Tampered)),
            "{i}"
        );
    }
    for len in 0..sealed.len() {
        assert!(jk.open_welcome(t, &sealed[..len]).is_err());
    }
    // Another transcript (aad) or other keys do not open it.
    let mut t2 = t.clone();
    t2.attempt = "ffffffffffffffffffffffffffffffff".into();
    assert!(matches!(
        jk.open_welcome(&t2, &sealed),
        Err(CryptoError::Tampered)
    ));
    let other = run("9999-0000-1112", "9999-0000-1112", |_| {});
    assert!(other.joiner_keys.unwrap().open_welcome(t, &sealed).is_err());
}

//! The code's first digit names its pairing request (PROTOCOL 9.1): a
//! joiner with requests from two members answers the one the typed code
//! belongs to, and the code still works end to end.

mod common;

use common::{identity, rng, ACCOUNT};
use sma_crypto::PairingCode;
use sma_proto::pairing::{code_fits, code_selector, JoinerPairing, MemberPairing};

#[test]
fn every_hello_names_the_first_digit_of_its_code() {
    let (m, j) = (identity(1), identity(2));
    let mut r = rng(5);
    let mut seen = [false; 10];
    for _ in 0..60 {
        let code = PairingCode::generate(&mut r);
        let (_, hello) =
            MemberPairing::start(&mut r, ACCOUNT, &m.id, &m.cert(), &j.id, j.cert(), &code);
        assert_eq!(code_selector(&hello.attempt), code.selector());
        assert!(code_fits(&hello, &code));
        seen[usize::from(code.selector())] = true;
    }
    assert!(seen.iter().all(|&s| s), "selectors seen: {seen:?}");
}

#[test]
fn a_code_fits_only_the_hellos_of_its_selector_and_pairs_with_its_own() {
    let (m1, m2, j) = (identity(1), identity(3), identity(2));
    let mut r = rng(9);
    let codes: Vec<PairingCode> = loop {
        let a = PairingCode::generate(&mut r);
        let b = PairingCode::generate(&mut r);
        if a.selector() != b.selector() {
            break vec![a, b];
        }
    };
    let (s1, h1) = MemberPairing::start(
        &mut r,
        ACCOUNT,
        &m1.id,
        &m1.cert(),
        &j.id,
        j.cert(),
        &codes[0],
    );
    let (_, h2) = MemberPairing::start(
        &mut r,
        ACCOUNT,
        &m2.id,
        &m2.cert(),
        &j.id,
        j.cert(),
        &codes[1],
    );
    assert!(code_fits(&h1, &codes[0]) && !code_fits(&h2, &codes[0]));
    assert!(code_fits(&h2, &codes[1]) && !code_fits(&h1, &codes[1]));
    let (_, reply) =
        JoinerPairing::respond(&mut r, ACCOUNT, &j.id, &j.cert(), &h1, &codes[0]).expect("respond");
    assert!(
        s1.on_reply(&reply).is_ok(),
        "the code pairs with its own hello"
    );
}

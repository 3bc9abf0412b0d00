//! Two members showing codes for the same pending device at once, on a
//! real Dovecot (PROTOCOL 9.3 steps 2 and 7): the joiner answers the
//! request the typed code belongs to, the other member's `pair` ends as
//! "withdrawn" well before its timeout, and no code is burnt by the other
//! attempt. A code that fits no waiting request uses nothing.

mod common;

use std::time::{Duration, Instant};

use common::{Account, ShiftClock};
use sma::pair::PairEvent;
use sma::{Device, Error, PairingCode};
use sma_proto::state::MemberStatus;
use tokio::sync::oneshot;

const PAIR_TIMEOUT: Duration = Duration::from_secs(60);

/// A `pair` callback that sends the shown code once.
fn code_to(tx: oneshot::Sender<String>) -> impl FnMut(&PairEvent) {
    let mut tx = Some(tx);
    move |ev| {
        if let PairEvent::Code { code, .. } = ev {
            if let Some(tx) = tx.take() {
                let _ = tx.send(code.clone());
            }
        }
    }
}

/// Founder `a` and member `b` that know each other, and pending `j`.
async fn two_members_and_a_joiner(acc: &Account) -> (Device, Device, Device) {
    let (a, b, _, _) = acc.two_synced_members().await;
    let j = acc.init("j", ShiftClock::default()).await;
    (a, b, j)
}

#[tokio::test(flavor = "current_thread")]
async fn the_joiner_takes_the_code_typed_and_the_other_member_ends() {
    let acc = Account::new();
    let (mut a, mut b, mut j) = two_members_and_a_joiner(&acc).await;
    let j_id = j.id().clone();
    let (mut ta, mut tb, mut tj) = (
        acc.connect().await,
        acc.connect().await,
        acc.connect().await,
    );
    let (a_code_tx, a_code_rx) = oneshot::channel();
    let (b_code_tx, b_code_rx) = oneshot::channel();
    let (a_shown_tx, a_shown_rx) = oneshot::channel::<String>();
    let started = Instant::now();
    // a shows its code first, then b: b's request is the newer one.
    let a_pairs = a.pair(&mut ta, Some(&j_id), PAIR_TIMEOUT, code_to(a_shown_tx));
    let relay_a = async {
        let code = a_shown_rx.await.expect("a's code");
        let _ = a_code_tx.send(code);
    };
    let b_pairs = async {
        let code_a = a_code_rx.await.expect("a's code");
        let (tx, rx) = oneshot::channel();
        let pairing = b.pair(&mut tb, Some(&j_id), PAIR_TIMEOUT, code_to(tx));
        let forward = async {
            let code_b = rx.await.expect("b's code");
            let _ = b_code_tx.send((code_a, code_b));
        };
        tokio::join!(pairing, forward).0
    };
    let joining = async {
        let (code_a, code_b) = b_code_rx.await.expect("both codes");
        let (ca, cb) = (
            PairingCode::parse(&code_a).expect("a's code parses"),
            PairingCode::parse(&code_b).expect("b's code parses"),
        );
        // The person types a's code (the older request) unless both codes
        // share their first digit (one time in ten): then the newer
        // request is the one answered, so b's code is typed.
        let typed_a = ca.selector() != cb.selector();
        println!(
            "selectors {} and {}; typing {}'s code",
            ca.selector(),
            cb.selector(),
            if typed_a { "a" } else { "b" }
        );
        let code = if typed_a { ca } else { cb };
        (typed_a, j.join(&mut tj, &code, PAIR_TIMEOUT).await)
    };
    let (paired_a, (), paired_b, (typed_a, joined)) =
        tokio::join!(a_pairs, relay_a, b_pairs, joining);
    joined.unwrap_or_else(|e| panic!("join: {e}"));
    let (chosen, other) = if typed_a {
        (paired_a, paired_b)
    } else {
        (paired_b, paired_a)
    };
    chosen.unwrap_or_else(|e| panic!("the member whose code was typed: {e}"));
    match other {
        Err(Error::PairingWithdrawn(id)) => assert_eq!(id, j_id.to_string()),
        other => panic!("the other member's pair should end as withdrawn: {other:?}"),
    }
    assert!(
        started.elapsed() < PAIR_TIMEOUT / 2,
        "the other member waited {:?}",
        started.elapsed()
    );

    // Everyone converges on j as a member; no request is left behind.
    let mut tj = acc.connect().await;
    for _ in 0..3 {
        a.sync(&mut ta).await.expect("a sync");
        b.sync(&mut tb).await.expect("b sync");
        j.sync(&mut tj).await.expect("j sync");
    }
    for (name, dev) in [("a", &a), ("b", &b), ("j", &j)] {
        let status = dev.core().group().member(&j_id).map(|m| m.status);
        assert_eq!(status, Some(MemberStatus::Active), "{name}'s view of j");
    }
    assert_eq!(
        acc.count(&j.inbox()),
        0,
        "pairing messages left in j's inbox"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_code_that_fits_no_request_uses_nothing() {
    let acc = Account::new();
    let mut a = acc.init("a", ShiftClock::default()).await;
    let mut j = acc.init("j", ShiftClock::default()).await;
    let j_id = j.id().clone();
    let (mut ta, mut tj) = (acc.connect().await, acc.connect().await);
    let (tx, rx) = oneshot::channel();
    let pairing = a.pair(&mut ta, Some(&j_id), PAIR_TIMEOUT, code_to(tx));
    let joining = async {
        let shown = PairingCode::parse(&rx.await.expect("code")).expect("code parses");
        // The first digit mistyped: no request fits, nothing is sent.
        let mut digits = String::from_utf8(shown.digits().to_vec()).expect("ascii");
        let first = (shown.selector() + 1) % 10;
        digits.replace_range(..1, &first.to_string());
        let wrong = PairingCode::parse(&digits).expect("wrong code parses");
        let refused = j.join(&mut tj, &wrong, PAIR_TIMEOUT).await;
        assert!(
            matches!(&refused, Err(Error::CodeRejected(msg)) if msg.contains("no code was used")),
            "{refused:?}"
        );
        // The request is still there and the right code still works.
        j.join(&mut tj, &shown, PAIR_TIMEOUT).await
    };
    let (paired, joined) = tokio::join!(pairing, joining);
    joined.unwrap_or_else(|e| panic!("join with the right code: {e}"));
    paired.unwrap_or_else(|e| panic!("pair: {e}"));
}

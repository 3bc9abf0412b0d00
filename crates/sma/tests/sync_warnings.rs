//! Withheld-message reporting (PROTOCOL 11.2) on a real Dovecot: a device
//! whose store was restored from an old copy receives sync messages that
//! skip ops it no longer has, and `status` says so.

mod common;

use common::{Account, ShiftClock};
use sma_proto::autocrypt::Observation;

fn seen(addr: &str) -> Observation {
    Observation {
        from: addr.to_owned(),
        effective_date: 1_700_000_000,
        autocrypt: None,
        gossip: Vec::new(),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_restored_store_reports_the_gap_in_status() {
    let acc = Account::new();
    let mut a = acc.init("a", ShiftClock::default()).await;
    let mut b = acc.init("b", ShiftClock::default()).await;
    acc.pair(&mut a, &mut b).await;
    let (mut ta, mut tb) = (acc.connect().await, acc.connect().await);
    let sync = |label: &'static str| move |r: Result<_, sma::Error>| r.expect(label);
    a.observe_all([seen("one@example.org")]).expect("observe");
    for _ in 0..2 {
        sync("a")(a.sync(&mut ta).await);
        sync("b")(b.sync(&mut tb).await);
    }
    let status = b.status(&mut tb).await.expect("status");
    assert!(
        status.sync_warnings.is_empty(),
        "{:?}",
        status.sync_warnings
    );

    // Keep a copy of B's store, let B apply and acknowledge one more op,
    // then put the old copy back.
    let store = acc.home("b").join(sma::STORE_FILE);
    let backup = acc.home("b").join("backup.sqlite");
    drop(b);
    std::fs::copy(&store, &backup).expect("backup");
    let mut b = acc.open("b", ShiftClock::default());
    a.observe_all([seen("two@example.org")]).expect("observe");
    for _ in 0..2 {
        sync("a")(a.sync(&mut ta).await);
        sync("b")(b.sync(&mut tb).await);
    }
    drop(b);
    std::fs::copy(&backup, &store).expect("restore");
    let mut b = acc.open("b", ShiftClock::default());
    assert!(!b.core().group().keyring().contains_key("two@example.org"));

    // A's next message starts after op two, which B no longer has.
    a.observe_all([seen("three@example.org")]).expect("observe");
    sync("a")(a.sync(&mut ta).await);
    sync("b")(b.sync(&mut tb).await);
    let status = b.status(&mut tb).await.expect("status");
    let gaps: Vec<_> = status
        .sync_warnings
        .iter()
        .filter(|w| w.kind == "gap")
        .collect();
    assert_eq!(gaps.len(), 1, "{:?}", status.sync_warnings);
    assert_eq!(gaps[0].device_id, a.id().to_string());
    assert!(
        gaps[0].message.contains("skip ops after #4"),
        "{}",
        gaps[0].message
    );
    assert!(b.core().group().keyring().contains_key("three@example.org"));
}

//! Bounded server footprint on a real Dovecot: keyring traffic to an offline
//! member is coalesced into one sync message, and application messages to a
//! full inbox are refused with a clear error.

mod common;

use std::time::{Duration, Instant};

use common::{Account, ShiftClock};
use sma::{Error, ErrorKind, APP_INBOX_CAP};
use sma_proto::state::{Change, PeerState, PreferEncrypt};

const UPDATES: usize = 300;

fn peer(i: usize) -> PeerState {
    let mut p = PeerState::new(&format!("correspondent{i}@example.net"));
    p.last_seen = 1_700_000_000 + i as u64;
    p.autocrypt_timestamp = p.last_seen;
    p.prefer_encrypt = PreferEncrypt::Mutual;
    // Stands in for Autocrypt keydata (an Ed25519 key is about this size).
    p.public_key = Some(format!("{i:08}").repeat(40));
    p
}

#[tokio::test(flavor = "current_thread")]
async fn keyring_updates_to_an_offline_member_stay_one_message() {
    let acc = Account::new();
    let (mut a, mut b, mut ta, mut tb) = acc.two_synced_members().await;
    let b_inbox = b.inbox();
    let before = acc.footprint();
    println!(
        "footprint before: {} messages, {} bytes",
        before.0, before.1
    );

    // b is offline while a makes 300 keyring updates, syncing after each.
    let started = Instant::now();
    let mut peak = before.0;
    let mut peak_inbox = 0;
    for i in 0..UPDATES {
        a.record_change(Change::Peer(peer(i)))
            .expect("record change");
        a.sync(&mut ta).await.expect("a sync");
        if i % 10 == 9 {
            peak = peak.max(acc.footprint().0);
            peak_inbox = peak_inbox.max(acc.count(&b_inbox));
        }
    }
    let offline = acc.footprint();
    println!(
        "footprint after {UPDATES} updates with b offline: {} messages, {} bytes (peak {} messages, b's inbox at most {}; {:.1} s)",
        offline.0,
        offline.1,
        peak,
        peak_inbox,
        started.elapsed().as_secs_f64()
    );
    assert!(
        peak_inbox <= 2,
        "b's inbox grew to {peak_inbox} messages: sync messages are not coalesced"
    );
    assert!(acc.count(&b_inbox) <= 1);
    assert!(
        peak <= before.0 + 2,
        "server grew from {} to {peak} messages",
        before.0
    );

    // b comes back and gets every update from the one message.
    let r = b.sync(&mut tb).await.expect("b sync");
    assert_eq!(r.applied, UPDATES);
    assert_eq!(b.core().group().keyring().len(), UPDATES);
    for i in [0, UPDATES / 2, UPDATES - 1] {
        let want = peer(i);
        let got = &b.core().group().keyring()[&want.addr];
        assert_eq!(got.public_key, want.public_key, "entry {i}");
    }
    // Acknowledgements flow back; nothing piles up.
    a.sync(&mut ta).await.expect("a sync");
    b.sync(&mut tb).await.expect("b sync");
    a.sync(&mut ta).await.expect("a sync");
    let after = acc.footprint();
    println!(
        "footprint after b synced: {} messages, {} bytes",
        after.0, after.1
    );
    assert!(after.0 <= before.0 + 1, "{after:?} vs {before:?}");
    assert_eq!(
        Some(a.core().book().peer_has(b.id(), a.id())),
        Some(a.core().book().last_seq())
    );
}

#[tokio::test(flavor = "current_thread")]
async fn application_messages_to_a_full_inbox_are_refused() {
    let acc = Account::new();
    let mut a = acc.init("a", ShiftClock::default()).await;
    let mut b = acc.init("b", ShiftClock::default()).await;
    acc.pair(&mut a, &mut b).await;
    let (mut ta, mut tb) = (acc.connect().await, acc.connect().await);
    a.sync(&mut ta).await.expect("a sync");
    b.sync(&mut tb).await.expect("b sync");
    a.sync(&mut ta).await.expect("a sync");
    let b_id = b.id().clone();
    let b_inbox = b.inbox();
    let already = acc.count(&b_inbox);
    let mut sent = 0usize;
    let err = loop {
        match a
            .send(
                &mut ta,
                Some(&b_id),
                "text",
                format!("note {sent}").as_bytes(),
            )
            .await
        {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent <= APP_INBOX_CAP as usize, "the cap was never enforced");
    };
    assert!(matches!(err, Error::InboxFull(..)), "{err}");
    assert_eq!(err.kind(), ErrorKind::Failed);
    let text = err.to_string();
    assert!(
        text.contains(b_id.as_str())
            && text.contains("full")
            && text.contains("wait until it syncs"),
        "unclear error: {text}"
    );
    println!("refused after {sent} messages (+{already} already waiting): {text}");
    assert_eq!(sent + already, APP_INBOX_CAP as usize);
    assert_eq!(acc.count(&b_inbox), APP_INBOX_CAP as usize);

    // Once b has received them, sending works again.
    let got = b.recv(&mut tb, Duration::ZERO).await.expect("recv");
    assert_eq!(got.len(), sent);
    b.delivered(&got).expect("delivered");
    a.send(&mut ta, Some(&b_id), "text", b"after")
        .await
        .expect("send after b synced");
}

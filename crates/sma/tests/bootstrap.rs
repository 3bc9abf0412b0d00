//! New-device bootstrap of a big keyring: a group holding 10,000
//! correspondents (Autocrypt-sized Ed25519 keydata) pairs a new device,
//! which receives the whole state in one welcome under the 16 MiB cap.
//! Prints the measured time and sizes; asserts correctness and generous
//! bounds only.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore;
use sma::pair::{JoinProgress, PairEvent};
use sma::PairingCode;
use sma_proto::envelope::WELCOME_SIZE_CAP;
use sma_proto::state::{PeerState, PreferEncrypt};

use common::{Account, ShiftClock};

const PEERS: usize = 10_000;

/// `n` correspondents first seen `when`, each with its own random keydata
/// of `key_bytes` bytes (incompressible, like real key material); every
/// tenth also has a gossiped key.
fn peers(n: usize, key_bytes: usize, when: u64) -> Vec<PeerState> {
    let mut rng = rand::thread_rng();
    let mut key = || {
        let mut raw = vec![0u8; key_bytes];
        rng.fill_bytes(&mut raw);
        base64::engine::general_purpose::STANDARD.encode(raw)
    };
    (0..n)
        .map(|i| {
            let mut p = PeerState::new(&format!("correspondent{i}@peers.example"));
            p.last_seen = when + i as u64;
            p.autocrypt_timestamp = when;
            p.public_key = Some(key());
            p.prefer_encrypt = PreferEncrypt::Mutual;
            if i % 10 == 0 {
                p.gossip_timestamp = when;
                p.gossip_key = Some(key());
            }
            p
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_peers_bootstrap_a_new_device_in_one_welcome() {
    let acc = Account::new();
    // The keyring was built more than a week ago, so the founder's op log
    // has been pruned: the new device gets everything from the welcome.
    let old = ShiftClock::default();
    old.set_offset(-8 * 86_400);
    let mut a = acc.init("a", old.clone()).await;
    let sample = sma_crypto::AccountKey::generate(&mut rand::rngs::OsRng, "x@peers.example", 1)
        .expect("sample key");
    let key_bytes = sample.public_bytes().len();
    let when = 1_780_000_000;
    let recorded = a
        .record_peer_states(peers(PEERS, key_bytes, when))
        .expect("record peers");
    assert_eq!(recorded, PEERS);
    old.set_offset(0);
    let mut ta = acc.connect().await;
    a.sync(&mut ta).await.expect("founder sync");
    let state_json = serde_json::to_vec(a.core().group()).expect("json").len();

    let mut b = acc.init("b", ShiftClock::default()).await;
    let joiner_id = b.id().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let mut tx = Some(tx);
    let mut tj = acc.connect().await;
    let events: Arc<Mutex<Vec<JoinProgress>>> = Arc::default();
    let seen = events.clone();
    let started = Instant::now();
    let pairing = a.pair(&mut ta, Some(&joiner_id), Duration::from_secs(120), |ev| {
        if let PairEvent::Code { code, .. } = ev {
            if let Some(tx) = tx.take() {
                let _ = tx.send(code.clone());
            }
        }
    });
    let joining = async {
        let code = PairingCode::parse(&rx.await.expect("code")).expect("code parses");
        b.join_with_progress(&mut tj, &code, Duration::from_secs(120), |p| {
            seen.lock().expect("lock").push(p.clone())
        })
        .await
    };
    let (paired, joined) = tokio::join!(pairing, joining);
    let elapsed = started.elapsed();
    paired.expect("pair");
    let report = joined.expect("join");
    assert_eq!(report.members, 2);

    // The new device holds exactly the founder's keyring.
    assert_eq!(b.core().group().keyring().len(), PEERS);
    assert_eq!(b.core().group().keyring(), a.core().group().keyring());
    assert_eq!(
        b.core().group().current_account_key(),
        a.core().group().current_account_key()
    );

    let events = events.lock().expect("lock").clone();
    let welcome_bytes = events
        .iter()
        .find(|p| p.stage == "welcome")
        .map(|p| p.total)
        .expect("welcome progress");
    assert!(
        events
            .iter()
            .any(|p| p.stage == "welcome" && p.done == p.total && p.total > 0),
        "{events:?}"
    );
    let keyring: Vec<&JoinProgress> = events.iter().filter(|p| p.stage == "keyring").collect();
    assert_eq!(keyring.first().map(|p| p.done), Some(0));
    assert_eq!(
        keyring.last().map(|p| (p.done, p.total)),
        Some((PEERS as u64, PEERS as u64))
    );
    assert!(keyring.windows(2).all(|w| w[0].done <= w[1].done));

    println!(
        "bootstrap of {PEERS} peers ({key_bytes}-byte keydata, 10% with gossip): \
         state JSON {state_json} bytes, welcome message {welcome_bytes} bytes \
         ({:.1}% of the {} byte cap), pair+join {:.2} s",
        welcome_bytes as f64 * 100.0 / WELCOME_SIZE_CAP as f64,
        WELCOME_SIZE_CAP,
        elapsed.as_secs_f64()
    );
    assert!(welcome_bytes < WELCOME_SIZE_CAP as u64);
    assert!(elapsed < Duration::from_secs(120), "took {elapsed:?}");

    // The next syncs carry only the new member record, not the keyring.
    let sync_a = a.sync(&mut ta).await.expect("sync a");
    let sync_b = b.sync(&mut tj).await.expect("sync b");
    assert!(
        sync_a.applied + sync_b.applied < 10,
        "{sync_a:?} {sync_b:?}"
    );
    assert_eq!(b.core().group().keyring(), a.core().group().keyring());
}

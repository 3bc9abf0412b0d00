//! Criterion microbenchmarks of sma's hot paths: CRDT merge, seal/open,
//! envelope parsing and store writes.
//!
//! `cargo bench -p sma-bench --bench hot_paths` (add `-- NAME` to filter).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sma_crypto::DeviceKey;
use sma_crypto::SigContext;
use sma_proto::core::CoreState;
use sma_proto::device::Identity;
use sma_proto::envelope::{Body, Envelope, Kind, Marker, Recipient};
use sma_proto::hlc::Hlc;
use sma_proto::state::{Change, GroupState, PeerState, PreferEncrypt};
use sma_proto::{DeviceId, MessageId};
use sma_proto::{Engine, Timestamp};
use sma_store::Store;

/// Keydata length of an Ed25519/Cv25519 Autocrypt key, base64.
const KEY_CHARS: usize = 600;

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(8)
}

fn peer(i: usize, device: &DeviceId, keyed: bool) -> PeerState {
    let mut p = PeerState::new(&format!("peer{i}@peers.test"));
    p.last_seen = 1_700_000_000 + i as u64;
    if keyed {
        p.autocrypt_timestamp = p.last_seen;
        p.public_key = Some(format!("{i:0>width$}", width = KEY_CHARS));
        p.prefer_encrypt = PreferEncrypt::Mutual;
        p.stamp = Some(Hlc {
            ms: 1_700_000_000_000 + i as u64,
            counter: 0,
            device: device.clone(),
        });
    }
    p
}

fn changes(n: usize, keyed: bool) -> Vec<Change> {
    let device = DeviceId::random(&mut rng());
    (0..n)
        .map(|i| Change::Peer(peer(i, &device, keyed)))
        .collect()
}

fn state_with(n: usize) -> GroupState {
    let mut s = GroupState::default();
    for c in changes(n, true) {
        s.apply(&c);
    }
    s
}

fn crdt(c: &mut Criterion) {
    let mut g = c.benchmark_group("crdt");
    for n in [1_000usize, 10_000] {
        let list = changes(n, true);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("apply_new_peers", n), &list, |b, list| {
            b.iter_batched(
                GroupState::default,
                |mut s| {
                    for ch in list {
                        s.apply(ch);
                    }
                    s
                },
                BatchSize::LargeInput,
            )
        });
        let full = state_with(n);
        g.bench_with_input(
            BenchmarkId::new("merge_equal_state", n),
            &full,
            |b, full| {
                b.iter_batched(
                    || full.clone(),
                    |mut s| {
                        s.merge(full);
                        s
                    },
                    BatchSize::LargeInput,
                )
            },
        );
    }
    g.finish();
}

fn seal_open(c: &mut Criterion) {
    let mut r = rng();
    let alice = DeviceKey::generate(&mut r, "aaaaaaaaaaaaaaaa", 1_700_000_000).expect("key");
    let bob = DeviceKey::generate(&mut r, "bbbbbbbbbbbbbbbb", 1_700_000_000).expect("key");
    let (alice_cert, bob_cert) = (alice.certificate(), bob.certificate());
    let mut g = c.benchmark_group("crypto");
    for size in [256usize, 64 * 1024, 512 * 1024] {
        let plain = vec![b'x'; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("seal", size), &plain, |b, plain| {
            b.iter(|| {
                sma_crypto::seal(&mut r, &alice, &[&bob_cert], plain, SigContext::Sealed)
                    .expect("seal")
            })
        });
        let sealed = sma_crypto::seal(&mut r, &alice, &[&bob_cert], &plain, SigContext::Sealed)
            .expect("seal");
        g.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, sealed| {
            b.iter(|| {
                sma_crypto::open(&bob, &alice_cert, sealed, 1 << 24, SigContext::Sealed)
                    .expect("open")
            })
        });
    }
    g.finish();
}

fn envelope(c: &mut Criterion) {
    let mut r = rng();
    let alice = DeviceKey::generate(&mut r, "aaaaaaaaaaaaaaaa", 1_700_000_000).expect("key");
    let bob = DeviceKey::generate(&mut r, "bbbbbbbbbbbbbbbb", 1_700_000_000).expect("key");
    let mut g = c.benchmark_group("envelope");
    for size in [256usize, 512 * 1024] {
        let armored = sma_crypto::seal(
            &mut r,
            &alice,
            &[&bob.certificate()],
            &vec![b'x'; size],
            SigContext::Sealed,
        )
        .expect("seal");
        let raw = Envelope {
            account: "alice@sma.test".into(),
            date: 1_700_000_000,
            marker: Marker {
                kind: Kind::Sync,
                from: DeviceId::random(&mut r),
                to: Recipient::Device(DeviceId::random(&mut r)),
                id: MessageId::random(&mut r),
            },
            body: Body::Encrypted { armored },
        }
        .to_bytes();
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_with_input(BenchmarkId::new("parse", size), &raw, |b, raw| {
            b.iter(|| Envelope::parse(raw).expect("parse"))
        });
    }
    g.finish();
}

/// A device whose state holds `n` keyring entries (its own signed ops).
fn engine_with(n: usize) -> Engine {
    let mut r = rng();
    let id = DeviceId::random(&mut r);
    let key = DeviceKey::generate(&mut r, id.as_str(), 1_700_000_000).expect("key");
    let me = Identity {
        id: id.clone(),
        account: "bench@sma.test".into(),
        key,
    };
    let mut e = Engine::new(me, CoreState::default()).expect("engine");
    for (i, c) in changes(n, true).into_iter().enumerate() {
        e.commit(c, Timestamp::from_ms(1_700_000_000_000 + i as u64))
            .expect("commit");
    }
    e
}

fn store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut g = c.benchmark_group("store");
    for n in [0usize, 1_000, 10_000] {
        let mut e = engine_with(n);
        let device = e.id().clone();
        let mut db = Store::open(&dir.path().join(format!("s{n}.sqlite"))).expect("store");
        // The whole state once (a welcome installed), then one change per
        // commit, the way a received message is recorded.
        g.bench_function(BenchmarkId::new("save_whole_state", n), |b| {
            b.iter(|| {
                e.core_mut().mark_all_changed();
                db.save_core(e.core_mut()).expect("save")
            })
        });
        let mut k = 0u64;
        g.bench_function(
            BenchmarkId::new("save_one_change_and_mark_processed", n),
            |b| {
                b.iter(|| {
                    k += 1;
                    let mut p = peer(k as usize % n.max(1), &device, true);
                    p.last_seen += k;
                    e.commit(Change::Peer(p), Timestamp::from_ms(1_800_000_000_000 + k))
                        .expect("commit");
                    db.save_core_with(e.core_mut(), sma_store::Durability::Flushed, |tx| {
                        tx.mark_processed(&format!("{k:032x}"), 1_700_000_000)
                    })
                    .expect("write")
                })
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = crdt, seal_open, envelope, store
}
criterion_main!(benches);

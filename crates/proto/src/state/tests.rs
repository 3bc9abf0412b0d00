use proptest::prelude::*;

use super::*;

fn dev(n: u8) -> DeviceId {
    DeviceId::parse(&format!("{:016x}", n)).unwrap()
}

fn stamp(ms: u64, c: u32, d: u8) -> Hlc {
    Hlc {
        ms,
        counter: c,
        device: dev(d),
    }
}

fn arb_change() -> impl Strategy<Value = Change> {
    let member = (0u8..4, 0u8..2, 0u8..4, 0u64..5, 0u64..10, 0u32..3).prop_map(
        |(id, fpr, status, hb, ms, c)| {
            Change::Member(MemberRecord {
                id: dev(id),
                fingerprint: format!("FPR{fpr}"),
                cert: format!("cert{fpr}"),
                name: format!("name{ms}{c}"),
                name_stamp: stamp(ms, c, id),
                status: [
                    MemberStatus::Pending,
                    MemberStatus::Active,
                    MemberStatus::Stale,
                    MemberStatus::Removed,
                ][status as usize],
                heartbeat: hb,
                final_seq: None,
                left_seq: 0,
            })
        },
    );
    let peer = (
        0u8..3,
        0u64..5,
        0u64..5,
        prop::option::of(0u8..3),
        any::<bool>(),
        0u64..5,
        prop::option::of(0u8..3),
        0u8..3,
    )
        .prop_map(|(a, seen, ts, key, mutual, gts, gkey, d)| {
            // Registers are either empty (never written) or written with a stamp.
            let ts = if key.is_some() { ts } else { 0 };
            let gts = if gkey.is_some() { gts } else { 0 };
            Change::Peer(PeerState {
                addr: format!("Peer{a}@example.org"),
                last_seen: seen.max(ts),
                autocrypt_timestamp: ts,
                public_key: key.map(|k| format!("key{k}")),
                prefer_encrypt: if mutual && key.is_some() {
                    PreferEncrypt::Mutual
                } else {
                    PreferEncrypt::NoPreference
                },
                stamp: key.map(|k| stamp(ts, k as u32, d)),
                gossip_timestamp: gts,
                gossip_key: gkey.map(|k| format!("g{k}")),
                gossip_stamp: gkey.map(|k| stamp(gts, k as u32, d)),
            })
        });
    let account = (0u32..3, 0u64..5, 0u8..3).prop_map(|(g, ms, d)| {
        Change::AccountKey(AccountKeyRecord {
            generation: g,
            stamp: stamp(ms, 0, d),
            fingerprint: format!("AK{g}{ms}{d}"),
            secret: format!("secret{g}{ms}{d}").into(),
        })
    });
    let prefer = (any::<bool>(), prop::option::of((0u64..5, 0u8..3))).prop_map(|(m, st)| {
        Change::PreferEncrypt(Lww {
            value: if m {
                PreferEncrypt::Mutual
            } else {
                PreferEncrypt::NoPreference
            },
            stamp: st.map(|(ms, d)| stamp(ms, 0, d)),
        })
    });
    prop_oneof![member, peer.clone(), peer, account, prefer]
}

fn state_of(changes: &[Change]) -> GroupState {
    let mut s = GroupState::default();
    for c in changes {
        s.apply(c);
    }
    s
}

proptest! {
    #[test]
    fn merge_is_commutative(a in prop::collection::vec(arb_change(), 0..12), b in prop::collection::vec(arb_change(), 0..12)) {
        let (sa, sb) = (state_of(&a), state_of(&b));
        let mut ab = sa.clone();
        ab.merge(&sb);
        let mut ba = sb.clone();
        ba.merge(&sa);
        prop_assert_eq!(ab, ba);
    }

    #[test]
    fn merge_is_associative_and_idempotent(a in prop::collection::vec(arb_change(), 0..8), b in prop::collection::vec(arb_change(), 0..8), c in prop::collection::vec(arb_change(), 0..8)) {
        let (sa, sb, sc) = (state_of(&a), state_of(&b), state_of(&c));
        let mut left = sa.clone();
        left.merge(&sb);
        left.merge(&sc);
        let mut bc = sb.clone();
        bc.merge(&sc);
        let mut right = sa.clone();
        right.merge(&bc);
        prop_assert_eq!(&left, &right);
        let mut twice = left.clone();
        twice.merge(&left);
        prop_assert_eq!(twice, left);
    }

    #[test]
    fn applying_ops_in_any_order_with_duplicates_converges(ops in prop::collection::vec(arb_change(), 0..16), seed in any::<u64>()) {
        let forward = state_of(&ops);
        let mut shuffled: Vec<Change> = ops.iter().chain(ops.iter().take(3)).cloned().collect();
        // Deterministic shuffle from the seed.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(state_of(&shuffled), forward);
    }
}

#[test]
fn removed_is_final() {
    let mut s = GroupState::default();
    let rec = |status| MemberRecord {
        id: dev(1),
        fingerprint: "F".into(),
        cert: "c".into(),
        name: "n".into(),
        name_stamp: stamp(1, 0, 1),
        status,
        heartbeat: 1,
        final_seq: None,
        left_seq: 0,
    };
    s.apply(&Change::Member(rec(MemberStatus::Removed)));
    s.apply(&Change::Member(rec(MemberStatus::Active)));
    assert_eq!(s.status_of(&dev(1)), Some(MemberStatus::Removed));
}

/// The removers' `final_seq` and the device's own `left_seq` merge as two
/// max registers, in any order, and the leave raises the bound only when it
/// is the op right after the removers' bound (PROTOCOL 10.5).
#[test]
fn the_leave_never_raises_the_removers_bound() {
    let rec = |final_seq, left_seq| MemberRecord {
        id: dev(1),
        fingerprint: "F".into(),
        cert: "c".into(),
        name: "n".into(),
        name_stamp: stamp(1, 0, 1),
        status: MemberStatus::Removed,
        heartbeat: 1,
        final_seq,
        left_seq,
    };
    let merged = |a: &MemberRecord, b: &MemberRecord| {
        let mut m = a.clone();
        m.merge(b);
        m
    };
    for (removal, leave, bound) in [
        (rec(Some(2), 0), rec(None, 6), 2),
        (rec(Some(0), 0), rec(None, 3), 0),
        (rec(Some(5), 0), rec(None, 6), 6),
        (rec(Some(7), 0), rec(None, 6), 7),
    ] {
        let (one, other) = (merged(&removal, &leave), merged(&leave, &removal));
        assert_eq!(one, other, "the merge does not depend on the order");
        assert_eq!(one.seq_bound(), bound, "{one:?}");
    }
    assert_eq!(
        rec(None, 6).seq_bound(),
        6,
        "a leave alone bounds at itself"
    );
    assert_eq!(rec(None, 0).seq_bound(), 0, "a removal that held nothing");
    let mut active = rec(Some(3), 0);
    active.status = MemberStatus::Stale;
    assert_eq!(
        active.seq_bound(),
        u64::MAX,
        "only a removed device is bounded"
    );
}

#[test]
fn debug_output_never_shows_the_account_secret_key() {
    let armored =
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nxcLYBGxyz\n-----END PGP PRIVATE KEY BLOCK-----";
    let mut s = GroupState::default();
    s.apply(&Change::AccountKey(AccountKeyRecord {
        generation: 1,
        stamp: stamp(1, 0, 1),
        fingerprint: "AK1".into(),
        secret: armored.into(),
    }));
    let rec = s.current_account_key().expect("the key just applied");
    assert_eq!(rec.secret.expose(), armored, "the secret itself is kept");
    for shown in [format!("{s:?}"), format!("{rec:?}"), format!("{s:#?}")] {
        assert!(shown.contains("AK1"), "the fingerprint is shown: {shown}");
        assert!(!shown.contains("PRIVATE KEY"), "secret in Debug: {shown}");
        assert!(!shown.contains("xcLYBGxyz"), "secret in Debug: {shown}");
    }
}

#[test]
fn newer_autocrypt_timestamp_wins_and_last_seen_is_max() {
    let mut s = GroupState::default();
    let mut old = PeerState::new("Bob@Example.org");
    old.autocrypt_timestamp = 10;
    old.last_seen = 50;
    old.public_key = Some("old".into());
    let mut new = PeerState::new("bob@example.org");
    new.autocrypt_timestamp = 20;
    new.last_seen = 20;
    new.public_key = Some("new".into());
    s.apply(&Change::Peer(new));
    s.apply(&Change::Peer(old));
    let p = &s.keyring["bob@example.org"];
    assert_eq!(p.public_key.as_deref(), Some("new"));
    assert_eq!(p.last_seen, 50);
}

#[test]
fn compact_peer_json_round_trips() {
    let empty = PeerState::new("bob@example.org");
    let json = serde_json::to_string(&empty).unwrap();
    assert_eq!(json, r#"{"addr":"bob@example.org"}"#);
    let mut full = empty.clone();
    full.last_seen = 5;
    full.autocrypt_timestamp = 4;
    full.public_key = Some("AAAA".into());
    full.prefer_encrypt = PreferEncrypt::Mutual;
    full.stamp = Some(stamp(4, 1, 2));
    full.gossip_timestamp = 3;
    full.gossip_key = Some("BBBB".into());
    full.gossip_stamp = Some(stamp(3, 0, 1));
    for p in [empty, full] {
        let back: PeerState = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}

// ---- Autocrypt Level 1 over the CRDT: replicas, delivery orders, the sequential model ----

use crate::autocrypt::header::AutocryptHeader;
use crate::autocrypt::update::{observe, update_autocrypt, update_gossip, Observation};
use crate::hlc::HlcClock;

/// One generated received message: (device that sees it, from, date, header, gossip).
#[derive(Clone, Debug)]
struct Msg {
    device: usize,
    from: u8,
    date: u64,
    header: Option<(u8, bool)>,
    gossip: Vec<(u8, u8)>,
}

fn addr(n: u8) -> String {
    format!("peer{n}@example.org")
}

fn key(n: u8) -> Vec<u8> {
    vec![n; 6]
}

fn arb_msg(dates: u64) -> impl Strategy<Value = Msg> {
    (
        0usize..3,
        0u8..3,
        0u64..dates,
        prop::option::of((0u8..4, any::<bool>())),
        prop::collection::vec((0u8..3, 0u8..4), 0..2),
    )
        .prop_map(|(device, from, date, header, gossip)| Msg {
            device,
            from,
            date,
            header,
            gossip,
        })
}

fn observation(m: &Msg) -> Observation {
    Observation {
        from: addr(m.from),
        effective_date: m.date,
        autocrypt: m.header.map(|(k, mutual)| AutocryptHeader {
            addr: addr(m.from),
            prefer_encrypt: if mutual {
                PreferEncrypt::Mutual
            } else {
                PreferEncrypt::NoPreference
            },
            keydata: key(k),
        }),
        gossip: m
            .gossip
            .iter()
            .map(|(a, k)| AutocryptHeader {
                addr: addr(*a),
                prefer_encrypt: PreferEncrypt::NoPreference,
                keydata: key(*k),
            })
            .collect(),
    }
}

struct Replica {
    id: DeviceId,
    clock: HlcClock,
    state: GroupState,
    skew: u64,
}

/// Simple deterministic generator for delivery decisions.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Runs the messages on three replicas with random delivery (reordered,
/// duplicated, dropped), then a full-state anti-entropy round. Returns the
/// replicas' final states and every (stamp, observation) made.
fn run_replicas(msgs: &[Msg], seed: u64) -> (Vec<GroupState>, Vec<(Hlc, Observation)>) {
    let mut rng = Xorshift(seed | 1);
    let mut reps: Vec<Replica> = (0..3)
        .map(|i| Replica {
            id: dev(i as u8 + 1),
            clock: HlcClock::new(),
            state: GroupState::default(),
            skew: [0, 7, 3][i],
        })
        .collect();
    // Ops in flight: (origin, stamp, change).
    let mut sent: Vec<(usize, Hlc, Change)> = Vec::new();
    let mut made = Vec::new();
    for (step, m) in msgs.iter().enumerate() {
        let r = m.device;
        // Deliver a random handful of ops from others, possibly again.
        for _ in 0..rng.next(4) {
            if sent.is_empty() {
                break;
            }
            let (origin, op_stamp, change) = sent[rng.next(sent.len())].clone();
            if origin != r {
                reps[r].clock.observe(&op_stamp);
                reps[r].state.apply(&change);
            }
        }
        let rep = &mut reps[r];
        let now = step as u64 * 10 + rep.skew;
        let stamp = rep.clock.tick(now, &rep.id);
        let obs = observation(m);
        for delta in observe(&rep.state.keyring, &obs, &stamp) {
            let op_stamp = rep.clock.tick(now, &rep.id);
            let change = Change::Peer(delta);
            rep.state.apply(&change);
            // Some ops are dropped on the way (anti-entropy repairs that).
            if rng.next(5) != 0 {
                sent.push((r, op_stamp, change));
            }
        }
        made.push((stamp, obs));
    }
    // Late delivery: a random share of the ops still in flight, in random order.
    for _ in 0..sent.len() {
        let (origin, op_stamp, change) = sent[rng.next(sent.len())].clone();
        let r = rng.next(3);
        if origin != r {
            reps[r].clock.observe(&op_stamp);
            reps[r].state.apply(&change);
        }
    }
    // Anti-entropy: every replica merges the full state of every other, in a
    // random order, from snapshots taken before the round (then once more).
    for _ in 0..2 {
        let snapshots: Vec<GroupState> = reps.iter().map(|r| r.state.clone()).collect();
        for (i, rep) in reps.iter_mut().enumerate() {
            let mut others: Vec<usize> = (0..3).filter(|&j| j != i).collect();
            if rng.next(2) == 1 {
                others.reverse();
            }
            for j in others {
                rep.state.merge(&snapshots[j]);
            }
        }
    }
    (reps.into_iter().map(|r| r.state).collect(), made)
}

/// The Level 1 algorithm run sequentially on one keyring, in the given order.
fn sequential(obs: &[(Hlc, Observation)]) -> BTreeMap<String, PeerState> {
    let mut ring: BTreeMap<String, PeerState> = BTreeMap::new();
    for (stamp, o) in obs {
        for p in observe(&ring, o, stamp) {
            ring.insert(p.addr.clone(), p);
        }
    }
    ring
}

/// The fields Level 1 defines (the stamps are CRDT bookkeeping, cleared).
fn visible(ring: &BTreeMap<String, PeerState>) -> Vec<PeerState> {
    ring.values()
        .map(|p| PeerState {
            stamp: None,
            gossip_stamp: None,
            ..p.clone()
        })
        .collect()
}

proptest! {
    #[test]
    fn replicas_converge_under_any_delivery(msgs in prop::collection::vec(arb_msg(4), 0..24), seed in any::<u64>()) {
        // Few distinct dates: many same-date ties, the order-dependent case.
        let (states, _) = run_replicas(&msgs, seed);
        prop_assert_eq!(&states[0], &states[1]);
        prop_assert_eq!(&states[1], &states[2]);
    }

    #[test]
    fn converged_state_is_level1_in_stamp_order(msgs in prop::collection::vec(arb_msg(1000), 0..24), seed in any::<u64>()) {
        // Distinct dates (no ties): the result must be exactly what one
        // device running Level 1 over all messages would hold, in any order.
        let mut msgs = msgs;
        for (i, m) in msgs.iter_mut().enumerate() {
            m.date = m.date * 100 + i as u64;
        }
        let (states, mut made) = run_replicas(&msgs, seed);
        made.sort_by(|a, b| a.0.cmp(&b.0));
        let model = sequential(&made);
        prop_assert_eq!(visible(&states[0].keyring), visible(&model));
        // And the arrival order does not matter for Level 1 itself.
        made.reverse();
        prop_assert_eq!(visible(&sequential(&made)), visible(&model));
    }

    #[test]
    fn level1_is_order_independent_where_the_spec_says(msgs in prop::collection::vec(arb_msg(4), 1..16), seed in any::<u64>()) {
        let obs: Vec<Observation> = msgs.iter().map(observation).collect();
        let run = |order: &[usize]| {
            let d = dev(1);
            let mut ring = BTreeMap::new();
            for (i, &k) in order.iter().enumerate() {
                let s = stamp(i as u64 + 1, 0, 1);
                let _ = &d;
                for p in observe(&ring, &obs[k], &s) {
                    ring.insert(p.addr.clone(), p);
                }
            }
            ring
        };
        let forward: Vec<usize> = (0..obs.len()).collect();
        let mut shuffled = forward.clone();
        let mut rng = Xorshift(seed | 1);
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.next(i + 1));
        }
        let (a, b) = (run(&forward), run(&shuffled));
        prop_assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (addr, pa) in &a {
            let pb = &b[addr];
            // Timestamps never depend on the order.
            prop_assert_eq!(pa.last_seen, pb.last_seen);
            prop_assert_eq!(pa.autocrypt_timestamp, pb.autocrypt_timestamp);
            prop_assert_eq!(pa.gossip_timestamp, pb.gossip_timestamp);
            // The key does, only when the newest headers tie on date with different content.
            let newest: std::collections::BTreeSet<(Vec<u8>, PreferEncrypt)> = obs
                .iter()
                .filter(|o| &o.from == addr && o.effective_date == pa.autocrypt_timestamp)
                .filter_map(|o| o.autocrypt.as_ref().map(|h| (h.keydata.clone(), h.prefer_encrypt)))
                .collect();
            if newest.len() <= 1 {
                prop_assert_eq!(&pa.public_key, &pb.public_key);
                prop_assert_eq!(pa.prefer_encrypt, pb.prefer_encrypt);
            }
            let gossiped: std::collections::BTreeSet<Vec<u8>> = obs
                .iter()
                .filter(|o| o.effective_date == pa.gossip_timestamp)
                .flat_map(|o| o.gossip.iter().filter(|g| &g.addr == addr).map(|g| g.keydata.clone()))
                .collect();
            if gossiped.len() <= 1 {
                prop_assert_eq!(&pa.gossip_key, &pb.gossip_key);
            }
        }
    }
}

#[test]
fn same_date_tie_goes_to_the_later_observation_on_every_replica() {
    // Device 1 sees key A, device 2 later (in HLC order) sees key B, same date.
    let p = PeerState::new("bob@example.org");
    let a = update_autocrypt(&p, 100, Some(("A", PreferEncrypt::Mutual)), &stamp(5, 0, 1)).unwrap();
    let b = update_autocrypt(
        &p,
        100,
        Some(("B", PreferEncrypt::NoPreference)),
        &stamp(6, 0, 2),
    )
    .unwrap();
    for order in [[&a, &b], [&b, &a]] {
        let mut s = GroupState::default();
        for x in order {
            s.apply(&Change::Peer(x.clone()));
        }
        assert_eq!(
            s.keyring["bob@example.org"].public_key.as_deref(),
            Some("B")
        );
    }
    let g1 = update_gossip(&p, 50, "G1", &stamp(9, 0, 2)).unwrap();
    let g2 = update_gossip(&p, 50, "G2", &stamp(9, 0, 3)).unwrap();
    let mut s = GroupState::default();
    s.apply(&Change::Peer(g2.clone()));
    s.apply(&Change::Peer(g1));
    assert_eq!(
        s.keyring["bob@example.org"].gossip_key.as_deref(),
        Some("G2")
    );
}

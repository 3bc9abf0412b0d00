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
            })
        },
    );
    let peer = (
        0u8..3,
        0u64..5,
        0u64..5,
        0u8..3,
        any::<bool>(),
        0u64..5,
        0u8..3,
    )
        .prop_map(|(a, seen, ts, key, mutual, gts, d)| {
            Change::Peer(PeerState {
                addr: format!("peer{a}@example.org"),
                last_seen: seen.max(ts),
                autocrypt_timestamp: ts,
                public_key: Some(format!("key{key}")),
                prefer_encrypt: if mutual {
                    PreferEncrypt::Mutual
                } else {
                    PreferEncrypt::Nopreference
                },
                stamp: Some(stamp(ts, key as u32, d)),
                gossip_timestamp: gts,
                gossip_key: Some(format!("g{key}")),
                gossip_stamp: Some(stamp(gts, 0, d)),
            })
        });
    let account = (0u32..3, 0u64..5, 0u8..3).prop_map(|(g, ms, d)| {
        Change::AccountKey(AccountKeyRecord {
            generation: g,
            stamp: stamp(ms, 0, d),
            fingerprint: format!("AK{g}{ms}{d}"),
            secret: format!("secret{g}{ms}{d}"),
        })
    });
    prop_oneof![member, peer, account]
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
    };
    s.apply(&Change::Member(rec(MemberStatus::Removed)));
    s.apply(&Change::Member(rec(MemberStatus::Active)));
    assert_eq!(s.status_of(&dev(1)), Some(MemberStatus::Removed));
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

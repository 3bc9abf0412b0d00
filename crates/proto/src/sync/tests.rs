use super::*;
use crate::hlc::Hlc;
use crate::state::{Change, PeerState};
use sma_crypto::DeviceKey;

fn dev(n: u8) -> DeviceId {
    DeviceId::parse(&format!("{n:016x}")).unwrap()
}

fn key(n: u8) -> DeviceKey {
    use rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(u64::from(n));
    DeviceKey::generate(&mut rng, dev(n).as_str(), 1_700_000_000).unwrap()
}

/// Op `seq` of device `n`, stamped at `ms`, with a keyring entry of `size`
/// bytes of key data.
fn op(k: &DeviceKey, n: u8, seq: u64, ms: u64, size: usize) -> SignedOp {
    let mut p = PeerState::new(&format!("p{n}-{seq}@x"));
    if size > 0 {
        p.public_key = Some("k".repeat(size));
    }
    let stamp = Hlc {
        ms,
        counter: 0,
        device: dev(n),
    };
    SignedOp::sign(k, &dev(n), seq, stamp, Change::Peer(p)).unwrap()
}

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

fn sent(covers: &[(u8, u64)], at: u64) -> SentRef {
    SentRef {
        message_id: MessageId::parse(&"a".repeat(32)).unwrap(),
        uid: None,
        uid_validity: None,
        covers: covers.iter().map(|(n, s)| (dev(*n), *s)).collect(),
        at,
        upto: None,
    }
}

const HB: u64 = 86_400;

#[test]
fn own_ops_go_at_once_then_only_when_new_or_retransmitted() {
    let (a, b) = (dev(1), dev(2));
    let ka = key(1);
    let mut book = SyncBook::default();
    book.push_own(op(&ka, 1, 1, 1000, 0), t(1));
    let chunk = book.chunk_for(&a, &b, |_| false);
    assert_eq!(chunk.ops.len(), 1);
    assert!(book.is_due(&b, &chunk, t(1), HB), "nothing sent yet");
    book.mark_sent(&b, sent(&[(1, 1)], 1));
    let chunk = book.chunk_for(&a, &b, |_| false);
    assert!(!book.is_due(&b, &chunk, t(2), HB), "already carried");
    assert!(
        book.is_due(&b, &chunk, t(1 + RETRANSMIT_AFTER_SECS), HB),
        "retransmitted"
    );
    book.push_own(op(&ka, 1, 2, 2000, 0), t(3));
    let chunk = book.chunk_for(&a, &b, |_| false);
    assert!(book.is_due(&b, &chunk, t(3), HB), "a new op");
    assert_eq!(chunk.covers[&a], 2);
    // Once acknowledged, only heartbeats are due.
    book.note_acks(&b, &b, &[(a.clone(), 2)].into());
    book.mark_sent(&b, sent(&[(1, 2)], 3));
    let chunk = book.chunk_for(&a, &b, |_| false);
    assert!(chunk.ops.is_empty());
    assert!(!book.is_due(&b, &chunk, t(3 + RETRANSMIT_AFTER_SECS), HB));
    assert!(book.is_due(&b, &chunk, t(3 + HB), HB), "heartbeat");
}

#[test]
fn other_origins_ops_are_relayed_when_due_and_in_order() {
    let (a, b, c) = (dev(1), dev(2), dev(3));
    let kc = key(3);
    let mut book = SyncBook::default();
    for seq in 1..=3 {
        assert!(book.take_op(&a, op(&kc, 3, seq, seq, 0), t(10)));
    }
    assert_eq!(book.applied()[&c], 3);
    assert!(
        book.chunk_for(&a, &b, |_| false).ops.is_empty(),
        "not yet due"
    );
    let chunk = book.chunk_for(&a, &b, |_| true);
    assert_eq!(
        chunk.ops.iter().map(SignedOp::seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(
        book.chunk_for(&a, &c, |_| true).ops.is_empty(),
        "never back to the origin"
    );
    book.note_acks(&a, &b, &[(c.clone(), 2)].into());
    let chunk = book.chunk_for(&a, &b, |_| true);
    assert_eq!(chunk.ops.iter().map(SignedOp::seq).collect::<Vec<_>>(), [3]);
    // A relay stops at the first op that is not due: no holes.
    let only_first = |e: &LogEntry| e.op.seq() == 1;
    assert!(book.chunk_for(&a, &b, only_first).ops.is_empty());
}

#[test]
fn ops_out_of_order_are_held_and_the_gap_reported_until_filled() {
    let (a, c) = (dev(1), dev(3));
    let kc = key(3);
    let mut book = SyncBook::default();
    assert!(book.take_op(&a, op(&kc, 3, 2, 2, 0), t(5)));
    assert_eq!(book.applied().get(&c).copied().unwrap_or(0), 0);
    let peers = BTreeSet::new();
    assert!(matches!(
        book.withheld(&a, &peers, t(6)).as_slice(),
        [Withheld::Gap { applied: 0, .. }]
    ));
    assert!(
        !book.take_op(&a, op(&kc, 3, 2, 2, 0), t(6)),
        "a duplicate is not new"
    );
    assert!(book.take_op(&a, op(&kc, 3, 1, 1, 0), t(7)));
    assert_eq!(book.applied()[&c], 2);
    assert!(book.withheld(&a, &peers, t(8)).is_empty(), "filled");
    assert!(book.holds(&a, &(c.clone(), 1)));
}

#[test]
fn acknowledgements_only_grow_but_replace_an_assumption() {
    let (a, j) = (dev(1), dev(2));
    let ka = key(1);
    let mut book = SyncBook::default();
    for seq in 1..=3 {
        book.push_own(op(&ka, 1, seq, seq, 0), t(1));
    }
    book.assume(&j, [(a.clone(), 3)].into());
    let peers: BTreeSet<_> = [j.clone()].into();
    book.prune(&a, &peers, Timestamp::from_ms(u64::MAX));
    assert_eq!(book.log().len(), 3, "nothing is pruned on an assumption");
    book.note_acks(&a, &j, &[(a.clone(), 1)].into());
    assert_eq!(
        book.peer_has(&j, &a),
        1,
        "the joiner's own report replaces it"
    );
    assert_eq!(book.chunk_for(&a, &j, |_| false).ops.len(), 2);
    book.note_acks(&a, &j, &[(a.clone(), 0)].into());
    assert_eq!(book.peer_has(&j, &a), 1, "later reports only raise it");
    let absurd = 3 + MAX_SEQ_JUMP + 1;
    book.note_acks(&a, &j, &[(a.clone(), absurd)].into());
    assert_eq!(
        book.peer_has(&j, &a),
        3,
        "an absurd report is capped at what we made"
    );
    assert_eq!(book.last_seq(), 3);
    // A peer holding more of our ops than we remember: our store went back
    // in time; our next ops must not reuse those numbers.
    book.note_acks(&a, &j, &[(a.clone(), 9)].into());
    assert_eq!(book.last_seq(), 9);
    assert_eq!(book.peer_has(&j, &a), 9);
}

#[test]
fn ops_are_pruned_once_every_active_peer_holds_them_and_they_are_old() {
    let (a, b, c) = (dev(1), dev(2), dev(3));
    let ka = key(1);
    let kc = key(3);
    let mut book = SyncBook::default();
    book.push_own(op(&ka, 1, 1, 0, 0), t(0));
    book.take_op(&a, op(&kc, 3, 1, 0, 0), t(0));
    let peers: BTreeSet<_> = [b.clone(), c.clone()].into();
    let late = Timestamp::from_ms(KEEP_OPS_MS + 1);
    book.prune(&a, &peers, late);
    assert_eq!(book.log().len(), 2, "B holds nothing yet");
    book.note_acks(&a, &b, &[(a.clone(), 1), (c.clone(), 1)].into());
    book.prune(&a, &peers, Timestamp::from_ms(10));
    assert_eq!(book.log().len(), 2, "young ops stay for late joiners");
    book.prune(&a, &peers, late);
    assert_eq!(book.log().len(), 1, "C has not acknowledged our op");
    assert!(book.log().contains_key(&(a.clone(), 1)));
    book.note_acks(&a, &c, &[(a.clone(), 1)].into());
    book.prune(&a, &peers, late);
    assert!(book.log().is_empty());
}

#[test]
fn large_backlogs_go_in_chunks_under_the_budget() {
    let (a, b) = (dev(1), dev(2));
    let ka = key(1);
    let mut book = SyncBook::default();
    for seq in 1..=1500 {
        book.push_own(op(&ka, 1, seq, seq, 800), t(1));
    }
    let chunk = book.chunk_for(&a, &b, |_| true);
    let bytes: usize = chunk.ops.iter().map(SignedOp::wire_len).sum();
    assert!(chunk.ops.len() < 1500 && !chunk.ops.is_empty());
    assert!(bytes <= OPS_BUDGET_BYTES, "{bytes}");
    let upto = chunk.covers[&a];
    book.mark_sent(&b, sent(&[(1, upto)], 1));
    assert!(!book.is_due(&b, &book.chunk_for(&a, &b, |_| true), t(2), HB));
    book.note_acks(&a, &b, &[(a.clone(), upto)].into());
    let next = book.chunk_for(&a, &b, |_| true);
    assert_eq!(next.ops[0].seq(), upto + 1);
    assert!(book.is_due(&b, &next, t(2), HB));
}

#[test]
fn log_rows_round_trip_and_version_1_rows_load_unsigned() {
    let ka = key(1);
    let entry = LogEntry {
        op: op(&ka, 1, 7, 7, 0),
        held_since: 42,
    };
    let back = LogEntry::from_row_json(&entry.to_row_json().unwrap()).unwrap();
    assert_eq!(back, entry);
    let v1 = r#"{"origin":"0000000000000001","seq":3,"stamp":{"ms":5000,"counter":0,"device":"0000000000000001"},"change":{"peer":{"addr":"x@y"}}}"#;
    let legacy = LogEntry::from_row_json(v1).unwrap();
    assert!(!legacy.op.is_signed());
    assert_eq!((legacy.op.seq(), legacy.held_since), (3, 5));
    assert!(LogEntry::from_row_json("{}").is_err());
}

//! The bound on a removed device's ops (PROTOCOL 10.5, *Final seq*): the
//! removers' `final_seq` and the device's own `left_seq` are two registers,
//! so a device that writes ops and leaves while a member holding fewer of
//! its ops removes it cannot hide, by its leave, the ops a member applied
//! above the removers' bound (docs/RELIABILITY.md, *Removed devices' bound*).

mod common;

use common::*;
use sma_proto::engine::membership::Removing;
use sma_proto::state::{MemberRecord, MemberStatus};
use sma_proto::sync::{Withheld, RELAY_AFTER_SECS};

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const X: usize = 3;

fn record(net: &Net, i: usize, of: usize) -> MemberRecord {
    net.e(i)
        .group()
        .member(&net.id(of))
        .cloned()
        .expect("a record of the device")
}

fn has_key(net: &Net, i: usize, addr: &str) -> bool {
    net.e(i).group().keyring().contains_key(addr)
}

/// X writes two ops that only B receives, then leaves (B receives the
/// leave too) while A, holding none of them, removes X. Returns A's
/// removers' bound and X's leave seq.
fn leave_crossing_a_removal(net: &mut Net) -> (u64, u64) {
    let x = net.id(X);
    for to in [A, C] {
        net.cut.insert((X, to));
        net.cut.insert((B, to));
    }
    let bound = net.e(A).core().book().highest_held(&x);
    net.nodes[X].learn_key("x1@example.net", at(10));
    net.nodes[X].learn_key("x2@example.net", at(11));
    net.em(X).leave(at(12)).unwrap();
    let left = net.e(X).core().book().last_seq();
    assert!(
        left > bound + 1,
        "X wrote ops A does not hold before its leave"
    );
    net.send(X, at(12));
    net.recv(B, at(13));
    assert!(has_key(net, B, "x2@example.net"), "B applied X's ops");
    assert_eq!(record(net, B, X).status, MemberStatus::Removed);
    assert_eq!(net.em(A).remove(&x, at(13)).unwrap(), Removing::Committed);
    net.cut.retain(|(from, _)| *from == X);
    for k in 1..=3 {
        net.settle(at(13 + k * RELAY_AFTER_SECS));
    }
    (bound, left)
}

#[test]
fn a_leave_crossing_a_removal_does_not_hide_the_ops_a_member_applied() {
    let mut net = Net::founded(4, at(0));
    let x = net.id(X);
    let (bound, left) = leave_crossing_a_removal(&mut net);
    // Every member holds the removers' bound, and so refuses the same ops.
    for i in [A, B, C] {
        let rec = record(&net, i, X);
        assert_eq!(rec.status, MemberStatus::Removed, "device {i}");
        assert_eq!(
            rec.final_seq,
            Some(bound),
            "device {i}: the removers' bound"
        );
        assert_eq!(
            rec.seq_bound(),
            bound,
            "device {i}: the leave does not raise it"
        );
    }
    // The members that applied nothing above it hold identical records.
    assert_eq!(record(&net, A, X), record(&net, C, X));
    assert_eq!(
        record(&net, A, X).left_seq,
        0,
        "the leave above the bound is refused"
    );
    for i in [A, C] {
        assert!(
            !has_key(&net, i, "x1@example.net"),
            "device {i} refused X's ops"
        );
        assert!(net.e(i).core().applied_after_removal().is_empty());
    }
    // B applied X's ops above the bound before it learnt of the removal:
    // it says so, with the removers' bound, whatever its record's leave.
    assert_eq!(
        net.e(B).core().applied_after_removal().get(&x),
        Some(&left),
        "B reports the ops it applied above the removers' bound"
    );
    let warned = net.e(B).withheld(&Default::default(), at(100_000));
    assert!(
        warned.contains(&Withheld::AfterRemoval {
            origin: x.clone(),
            final_seq: bound,
            held: left,
        }),
        "{warned:?}"
    );
    // B's record differs from the others' only by the leave it applied.
    let mut b = record(&net, B, X);
    assert_eq!(b.left_seq, left);
    b.left_seq = 0;
    assert_eq!(b, record(&net, A, X));
}

#[test]
fn a_leave_right_after_the_removers_bound_converges_everywhere() {
    let mut net = Net::founded(3, at(0));
    let b = net.id(B);
    // A holds all of B's ops when it removes B; B leaves meanwhile.
    net.em(B).leave(at(1)).unwrap();
    let left = net.e(B).core().book().last_seq();
    assert_eq!(net.em(A).remove(&b, at(1)).unwrap(), Removing::Committed);
    net.send(B, at(1));
    for k in 1..=3 {
        net.settle(at(1 + k * RELAY_AFTER_SECS));
    }
    let (a, c) = (record(&net, A, B), record(&net, C, B));
    assert_eq!(a, c, "both hold the same record");
    assert_eq!(a.final_seq, Some(left - 1));
    assert_eq!(a.left_seq, left, "the leave right after the bound counts");
    assert_eq!(a.seq_bound(), left);
    for i in [A, C] {
        assert!(net.e(i).core().applied_after_removal().is_empty());
    }
}

#[test]
fn records_of_an_earlier_version_keep_their_meaning() {
    let net = Net::founded(2, at(0));
    let mut v = serde_json::to_value(record(&net, A, B)).unwrap();
    let obj = v.as_object_mut().unwrap();
    obj.insert("status".into(), "removed".into());
    // A leave or removal written before `left_seq` existed.
    obj.insert("final_seq".into(), 7.into());
    let old: MemberRecord = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(
        (old.final_seq, old.left_seq, old.seq_bound()),
        (Some(7), 0, 7)
    );
    // A removal by a member that held none of the device's ops.
    v.as_object_mut().unwrap().remove("final_seq");
    let none: MemberRecord = serde_json::from_value(v).unwrap();
    assert_eq!(
        (none.final_seq, none.left_seq, none.seq_bound()),
        (None, 0, 0)
    );
    // A removal that held nothing is sent with its bound, 0 included.
    let mut zero = none.clone();
    zero.final_seq = Some(0);
    zero.left_seq = 5;
    let json = serde_json::to_value(&zero).unwrap();
    assert_eq!(json["final_seq"], 0);
    assert_eq!(json["left_seq"], 5);
    assert_eq!(
        zero.seq_bound(),
        0,
        "the leave does not raise the removers' 0"
    );
}

//! Relaying (PROTOCOL 11, version 2): every member relays the signed ops it
//! holds, so an op reaches a member as long as any chain of members
//! delivers it; relays cannot alter ops; acknowledgements, pruning and
//! chunking keep the relay log bounded; and ops of change kinds this
//! version cannot read travel unchanged.

mod common;

use common::forge;
use common::*;
use rand_core::RngCore;
use sma_proto::envelope::{Kind, Recipient, MESSAGE_SIZE_CAP};
use sma_proto::payload::{OpsBody, SealedContent};
use sma_proto::state::{Change, MemberStatus, PeerState};
use sma_proto::sync::{Withheld, KEEP_OPS_MS, RELAY_AFTER_SECS};
use sma_proto::{DeviceId, Timestamp};
use std::collections::BTreeMap;

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// A sync message sealed by node `from` to node `to` with a chosen body.
fn seal_ops(net: &mut Net, from: usize, to: usize, body: OpsBody, now: Timestamp) -> Vec<u8> {
    let peer = net.id(to);
    let node = &mut net.nodes[from];
    let route = (Kind::Sync, Recipient::Device(peer.clone()));
    node.engine
        .seal(&mut node.rng, now, route, &[peer], SealedContent::Ops(body))
        .unwrap()
        .bytes
}

fn has_key(net: &Net, i: usize, addr: &str) -> bool {
    net.e(i).group().keyring().contains_key(addr)
}

#[test]
fn an_op_reaches_a_cut_off_member_through_a_relay_after_the_relay_delay() {
    let mut net = Net::founded(3, at(0));
    net.cut.insert((A, C));
    net.nodes[A].learn_key("x@example.net", at(10));
    net.send(A, at(10));
    net.round(B, at(11));
    net.round(C, at(12));
    assert!(
        !has_key(&net, C, "x@example.net"),
        "A's message to C was lost"
    );
    let last_quiet = at(11 + RELAY_AFTER_SECS - 1);
    assert_eq!(
        net.send(B, last_quiet).to(C),
        0,
        "the origin usually delivers first"
    );
    let sent = net.send(B, at(11 + RELAY_AFTER_SECS));
    assert_eq!(sent.to(C), 1);
    let out = net.recv(C, at(11 + RELAY_AFTER_SECS));
    assert_eq!(out.applied, 1);
    assert!(has_key(&net, C, "x@example.net"));
    let a = net.id(A);
    assert_eq!(
        net.e(C).core().book().applied()[&a],
        net.e(A).core().book().last_seq()
    );
}

#[test]
fn ops_of_a_device_removed_meanwhile_are_relayed_at_once_and_converge() {
    let mut net = Net::founded(3, at(0));
    net.cut.insert((A, C));
    let a = net.id(A);
    net.nodes[A].learn_key("x@example.net", at(10));
    net.send(A, at(10));
    net.recv(B, at(11));
    net.em(B).remove(&a, at(11)).unwrap();
    let sent = net.send(B, at(11));
    assert_eq!(sent.msgs.len(), 1, "only C is left to tell");
    let out = net.recv(C, at(11));
    assert_eq!(out.applied, 2, "A's op and B's removal, both at once");
    assert!(has_key(&net, C, "x@example.net"));
    assert_eq!(net.e(C).group().status_of(&a), Some(MemberStatus::Removed));
    net.settle(at(12));
    assert_eq!(state_json(net.e(B)), state_json(net.e(C)));
}

#[test]
fn a_relay_cannot_alter_an_op() {
    let mut net = Net::founded(3, at(0));
    net.cut.insert((A, C));
    net.nodes[A].learn_key("x@example.net", at(10));
    net.send(A, at(10));
    net.recv(B, at(11));
    let a = net.id(A);
    let seq = net.e(A).core().book().last_seq();
    let genuine = net.e(B).logged_op(&(a.clone(), seq)).unwrap().clone();
    let bent = forge::altered(&genuine, |j| j.replace("x@example.net", "z@example.net"));
    net.nodes[B].learn_key("y@example.net", at(12));
    let own = net
        .e(B)
        .logged_op(&(net.id(B), net.e(B).core().book().last_seq()))
        .unwrap()
        .clone();
    let body = OpsBody {
        ops: vec![bent, own],
        ..OpsBody::default()
    };
    let bytes = seal_ops(&mut net, B, C, body, at(12));
    net.nodes[C].inbox.append(bytes);
    let (out, log) = logged(|| net.recv(C, at(13)));
    assert_eq!(out.applied, 1, "the relay's own op is applied");
    assert!(log.contains("op rejected"), "{log}");
    assert!(has_key(&net, C, "y@example.net"));
    assert!(!has_key(&net, C, "x@example.net") && !has_key(&net, C, "z@example.net"));
    assert!(
        net.e(C)
            .core()
            .book()
            .applied()
            .get(&a)
            .copied()
            .unwrap_or(0)
            < seq
    );
    // The genuine op still arrives by the next relay.
    net.send(B, at(12 + RELAY_AFTER_SECS));
    net.recv(C, at(12 + RELAY_AFTER_SECS));
    assert!(has_key(&net, C, "x@example.net"));
    assert!(!has_key(&net, C, "z@example.net"));
}

#[test]
fn acknowledgements_only_grow_except_a_welcomed_joiners_assumed_vector() {
    let mut net = Net::founded(2, at(0));
    let (a, b) = (net.id(A), net.id(B));
    net.nodes[A].learn_key("x@example.net", at(1));
    net.send(A, at(1));
    net.round(B, at(2));
    net.recv(A, at(3));
    let acked = net.e(A).core().book().peer_applied(&b).unwrap()[&a];
    assert_eq!(acked, net.e(A).core().book().last_seq());
    let lower = OpsBody {
        acks: BTreeMap::from([(a.clone(), 1)]),
        ..OpsBody::default()
    };
    let bytes = seal_ops(&mut net, B, A, lower, at(4));
    net.nodes[A].inbox.append(bytes);
    net.recv(A, at(5));
    assert_eq!(
        net.e(A).core().book().peer_applied(&b).unwrap()[&a],
        acked,
        "never shrinks"
    );

    let j = net.join(A, 3, at(6));
    let jid = net.id(j);
    let book = net.e(A).core().book();
    assert!(book.is_assumed(&jid));
    assert_eq!(
        book.peer_applied(&jid).unwrap()[&a],
        net.e(A).core().book().last_seq()
    );
    // J's first report says it holds less: the report replaces the assumption.
    let bytes = seal_ops(&mut net, j, A, OpsBody::default(), at(7));
    net.nodes[A].inbox.append(bytes);
    net.recv(A, at(8));
    let book = net.e(A).core().book();
    assert!(!book.is_assumed(&jid));
    assert!(book.peer_applied(&jid).unwrap().is_empty());
    // Later reports only add.
    let bytes = seal_ops(
        &mut net,
        j,
        A,
        OpsBody {
            acks: BTreeMap::from([(a.clone(), 2)]),
            ..OpsBody::default()
        },
        at(9),
    );
    net.nodes[A].inbox.append(bytes);
    net.recv(A, at(10));
    let bytes = seal_ops(&mut net, j, A, OpsBody::default(), at(11));
    net.nodes[A].inbox.append(bytes);
    net.recv(A, at(12));
    assert_eq!(net.e(A).core().book().peer_applied(&jid).unwrap()[&a], 2);
}

#[test]
fn ops_are_pruned_once_every_active_peer_acknowledged_them_and_a_week_passed() {
    let mut net = Net::founded(3, at(0));
    let a = net.id(A);
    net.nodes[A].learn_key("x@example.net", at(10));
    let id = (a.clone(), net.e(A).core().book().last_seq());
    net.settle(at(10));
    let week = KEEP_OPS_MS / 1000;
    net.send(A, at(10 + week - 1));
    assert!(net.e(A).logged_op(&id).is_some(), "kept for a week");
    net.send(A, at(10 + week));
    assert!(
        net.e(A).logged_op(&id).is_none(),
        "acknowledged by all and a week old"
    );

    // An op one peer has not acknowledged stays, however old.
    net.cut.insert((A, C));
    net.cut.insert((B, C));
    net.nodes[A].learn_key("y@example.net", at(20));
    let id = (a.clone(), net.e(A).core().book().last_seq());
    net.settle(at(20));
    net.settle(at(20 + 2 * week));
    assert!(net.e(A).logged_op(&id).is_some());
    assert!(net.e(B).logged_op(&id).is_some(), "B keeps relaying it too");
    net.cut.clear();
    net.settle(at(21 + 2 * week));
    net.settle(at(22 + 2 * week));
    assert!(has_key(&net, C, "y@example.net"));
    assert!(net.e(A).logged_op(&id).is_none());
}

#[test]
fn a_large_backlog_goes_in_chunks_under_the_size_cap() {
    let mut net = Net::founded(2, at(0));
    let n = 30;
    for i in 0..n {
        let stamp = net.em(A).stamp(at(1));
        let mut p = PeerState::new(&format!("big{i}@example.net"));
        p.autocrypt_timestamp = T0;
        p.public_key = Some("k".repeat(60_000));
        p.stamp = Some(stamp);
        net.em(A).commit(Change::Peer(p), at(1)).unwrap();
    }
    let mut messages = 0;
    for r in 0..10 {
        let now = at(2 + r);
        messages += net.send(A, now).to(B);
        let biggest = net.nodes[B]
            .inbox
            .msgs
            .iter()
            .map(|(_, m)| m.len())
            .max()
            .unwrap_or(0);
        assert!(biggest < MESSAGE_SIZE_CAP, "{biggest} bytes");
        net.round(B, now);
        net.recv(A, now);
    }
    assert!(messages >= 3, "{messages} messages");
    assert_eq!(net.e(B).group().keyring().len(), n);
}

#[test]
fn an_op_of_an_unknown_change_kind_is_kept_relayed_verbatim_and_counted() {
    let mut net = Net::founded(3, at(0));
    net.cut.insert((A, C));
    let a = net.id(A);
    let seq = net.e(A).core().book().last_seq() + 1;
    let raw = format!(
        r#"{{"origin":"{a}","seq":{seq},"stamp":{{"ms":{},"counter":0,"device":"{a}"}},"change":{{"calendar":{{"x":[1,"two"]}}}}}}"#,
        at(5).as_ms()
    );
    let op = forge::raw_op(&identity(1).key, &raw);
    let bytes = seal_ops(
        &mut net,
        A,
        B,
        OpsBody {
            ops: vec![op],
            ..OpsBody::default()
        },
        at(5),
    );
    net.nodes[B].inbox.append(bytes);
    let out = net.recv(B, at(6));
    assert_eq!(out.applied, 1);
    assert_eq!(net.e(B).core().book().applied()[&a], seq);
    assert_eq!(net.e(B).logged_op(&(a.clone(), seq)).unwrap().raw(), raw);
    net.send(B, at(6 + RELAY_AFTER_SECS));
    let out = net.recv(C, at(7 + RELAY_AFTER_SECS));
    assert_eq!(out.applied, 1);
    let relayed = net.e(C).logged_op(&(a.clone(), seq)).unwrap();
    assert_eq!(relayed.raw(), raw, "byte for byte");
    assert!(relayed.change().is_none());
}

/// Random loss between four devices, each writing keys, then healing:
/// every device ends with the same state.
#[test]
fn four_devices_converge_after_random_loss() {
    for seed in 0..3u64 {
        let mut net = Net::founded(4, at(0));
        let mut r = rng(seed);
        let mut now = 0;
        for step in 0..12u64 {
            now += 300;
            net.cut.clear();
            for from in 0..4 {
                for to in 0..4 {
                    if from != to && r.next_u32().is_multiple_of(3) {
                        net.cut.insert((from, to));
                    }
                }
            }
            let i = (r.next_u32() % 4) as usize;
            net.nodes[i].learn_key(&format!("k{seed}-{step}@example.net"), at(now));
            for j in 0..4 {
                net.round(j, at(now));
            }
        }
        net.cut.clear();
        for k in 1..=4 {
            net.settle(at(now + k * RELAY_AFTER_SECS));
        }
        let first = state_json(net.e(0));
        for i in 1..4 {
            assert_eq!(state_json(net.e(i)), first, "seed {seed}: device {i}");
        }
        assert_eq!(net.e(0).group().keyring().len(), 12);
        let _: Vec<DeviceId> = (0..4).map(|i| net.id(i)).collect();
    }
}

#[test]
fn a_joiner_relays_nothing_back_to_its_sponsor() {
    let mut net = Net::founded(3, at(0));
    net.nodes[B].learn_key("b@example.net", at(1));
    net.settle(at(1));
    let j = net.join(A, 4, at(10));
    let sent = net.send(j, at(11));
    let to_sponsor = sent.msgs.iter().find(|(to, _, _)| *to == A).unwrap();
    assert!(
        to_sponsor.2.is_empty(),
        "J carried {:?} back to A",
        to_sponsor.2
    );
    let out = net.recv(A, at(12));
    assert_eq!(out.applied, 0);
    assert_eq!(out.processed.len(), 1);
}

#[test]
fn ops_a_removed_device_wrote_after_its_removal_are_refused_and_flagged() {
    let mut net = Net::founded(4, at(0));
    let a = net.id(A);
    net.em(B).remove(&a, at(10)).unwrap();
    net.cut.insert((B, C));
    net.cut.insert((B, 3));
    net.send(B, at(10));
    // A does not know; C and D do not know yet: C takes A's new op.
    net.nodes[A].learn_key("late@example.net", at(11));
    net.send(A, at(11));
    net.recv(C, at(12));
    assert!(has_key(&net, C, "late@example.net"));
    net.recv(B, at(12));
    assert!(
        net.nodes[B].inbox.is_empty(),
        "B deleted A's message unopened"
    );
    assert!(!has_key(&net, B, "late@example.net"));
    net.cut.clear();
    for k in 1..=3 {
        net.settle(at(12 + k * RELAY_AFTER_SECS));
    }
    // The op came after the removal's final seq: the remover refuses it,
    // nobody relays it once they know, and whoever applied it before it
    // knew (C, and D if A's message reached it first) says so.
    assert!(!has_key(&net, B, "late@example.net"));
    assert!(net.e(B).core().applied_after_removal().is_empty());
    for i in [B, C, 3] {
        assert_eq!(net.e(i).group().status_of(&a), Some(MemberStatus::Removed));
        assert_eq!(
            has_key(&net, i, "late@example.net"),
            net.e(i).core().applied_after_removal().contains_key(&a),
            "device {i} holds the late op exactly when it is flagged"
        );
    }
    assert!(net.e(C).core().applied_after_removal().contains_key(&a));
    let warned = net
        .e(C)
        .withheld(&Default::default(), at(100_000))
        .into_iter()
        .any(|w| matches!(w, sma_proto::sync::Withheld::AfterRemoval { .. }));
    assert!(warned, "status tells C to check its state");
}

/// Random loss while the membership changes: a device joins through a
/// random sponsor and a random other device is removed. After healing,
/// every remaining member holds the same state, and the newcomer has
/// every key written before and after it joined.
#[test]
fn members_converge_through_joins_and_removals_under_random_loss() {
    for seed in 10..13u64 {
        let mut net = Net::founded(4, at(0));
        let mut r = rng(seed);
        let mut now = 0;
        let mut removed = None;
        for step in 0..12u64 {
            now += 300;
            net.cut.clear();
            let n = net.nodes.len();
            for from in 0..n {
                for to in 0..n {
                    if from != to && r.next_u32().is_multiple_of(3) {
                        net.cut.insert((from, to));
                    }
                }
            }
            let writer = (r.next_u32() % 4) as usize;
            if Some(writer) != removed {
                net.nodes[writer].learn_key(&format!("k{seed}-{step}@example.net"), at(now));
            }
            if step == 4 {
                let sponsor = (r.next_u32() % 4) as usize;
                net.join(sponsor, 9, at(now));
            }
            if step == 8 {
                let (by, of) = (
                    1 + (r.next_u32() % 3) as usize,
                    1 + (r.next_u32() % 3) as usize,
                );
                let victim = if by == of { (of % 3) + 1 } else { of };
                let id = net.id(victim);
                net.em(by).remove(&id, at(now)).unwrap();
                removed = Some(victim);
            }
            for j in 0..net.nodes.len() {
                net.round(j, at(now));
            }
        }
        net.cut.clear();
        for k in 1..=5 {
            net.settle(at(now + k * RELAY_AFTER_SECS));
        }
        let victim = removed.unwrap();
        let vid = net.id(victim);
        // Members that applied ops the victim wrote after the remover's
        // last one of it (before they learnt of the removal) keep them and
        // are flagged; the others converge.
        let members: Vec<usize> = (0..net.nodes.len())
            .filter(|i| *i != victim)
            .filter(|i| net.e(*i).core().applied_after_removal().is_empty())
            .collect();
        assert!(
            !members.is_empty(),
            "seed {seed}: the remover is never flagged"
        );
        let first = state_json(net.e(members[0]));
        for &i in &members {
            assert_eq!(state_json(net.e(i)), first, "seed {seed}: device {i}");
            assert_eq!(
                net.e(i).group().status_of(&vid),
                Some(MemberStatus::Removed)
            );
        }
        assert!(net.e(4).group().keyring().len() >= 8, "seed {seed}");
    }
}

#[test]
fn a_gap_and_a_stalled_acknowledgement_are_reported_until_resolved() {
    let mut net = Net::founded(3, at(0));
    let a = net.id(A);
    let week = KEEP_OPS_MS / 1000;
    net.nodes[A].learn_key("x@example.net", at(10));
    net.nodes[A].learn_key("y@example.net", at(10));
    let last = net.e(A).core().book().last_seq();
    let second = net.e(A).logged_op(&(a.clone(), last)).unwrap().clone();
    let bytes = seal_ops(
        &mut net,
        A,
        B,
        OpsBody {
            ops: vec![second],
            ..OpsBody::default()
        },
        at(11),
    );
    net.nodes[B].inbox.append(bytes);
    net.recv(B, at(11));
    assert!(has_key(&net, B, "y@example.net"), "applied out of order");
    let gaps = net.e(B).withheld(&Default::default(), at(12));
    assert!(
        matches!(&gaps[..], [Withheld::Gap { origin, applied, .. }] if origin == &a && *applied == last - 2),
        "{gaps:?}"
    );
    // C hears nothing for a week: A reports C's acknowledgement stalled.
    net.cut.insert((A, C));
    net.cut.insert((B, C));
    net.settle(at(12));
    assert!(
        net.e(B).withheld(&Default::default(), at(12)).is_empty(),
        "the gap is filled"
    );
    let fresh = [net.id(C)].into();
    assert!(net.e(A).withheld(&fresh, at(10 + week - 1)).is_empty());
    let stalled = net.e(A).withheld(&fresh, at(10 + week));
    assert!(
        matches!(&stalled[..], [Withheld::StalledAck { peer, acked, oldest_unacked_ms }]
            if peer == &net.id(C) && *acked == last - 2 && *oldest_unacked_ms == at(10).as_ms()),
        "{stalled:?}"
    );
    net.cut.clear();
    net.settle(at(11 + week));
    assert!(net.e(A).withheld(&fresh, at(11 + week)).is_empty());
}

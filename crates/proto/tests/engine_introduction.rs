//! Introduction (PROTOCOL 10.5, version 2): a joiner whose sponsor's
//! messages never reached a member introduces itself with the sponsor's
//! signed admission op from its welcome; an admission the member cannot
//! trust (signed by the joiner itself, or by a removed member) introduces
//! nobody.

mod common;

use common::forge::{self, marker, msg_id, payload_for};
use common::*;
use sma_proto::engine::StateEvent;
use sma_proto::envelope::{Kind, Recipient};
use sma_proto::ops::SignedOp;
use sma_proto::payload::{OpsBody, SealedContent};
use sma_proto::state::{Change, MemberStatus};
use sma_proto::{DeviceId, Engine, Timestamp};

const A: usize = 0;
const B: usize = 1;

/// The op of `sponsor` that admitted `joiner`.
fn admission(sponsor: &Engine, joiner: &DeviceId) -> SignedOp {
    let me = sponsor.id().clone();
    (1..=sponsor.core().book().last_seq())
        .filter_map(|s| sponsor.logged_op(&(me.clone(), s)).cloned())
        .find(|op| matches!(op.change(), Some(Change::Member(r)) if &r.id == joiner))
        .unwrap()
}

#[test]
fn a_joiner_whose_sponsor_is_silent_introduces_itself() {
    let mut net = Net::founded(2, at(0));
    net.cut.insert((A, B));
    let j = net.join(A, 3, at(10));
    let jid = net.id(j);
    // The sponsor's messages to B are lost, and it falls silent.
    net.send(A, at(10));
    assert_eq!(net.e(B).group().status_of(&jid), None);

    let sent = net.send(j, at(11));
    assert_eq!(sent.to(B), 1, "J writes to every member at once");
    let out = net.recv(B, at(12));
    assert!(out.deferred.is_empty(), "not deferred: {:?}", out.deferred);
    assert_eq!(out.processed.len(), 1, "J's first message is accepted");
    assert!(out.events.contains(&StateEvent::DeviceAdded {
        device_id: jid.clone(),
        name: "device 3".into()
    }));
    assert!(net.e(B).group().is_active(&jid));

    // From now on J's own messages are simply accepted.
    net.nodes[j].learn_key("joiner@example.net", at(20));
    net.send(j, at(20));
    let out = net.recv(B, at(21));
    assert_eq!(out.applied, 1);
    assert!(net
        .e(B)
        .group()
        .keyring()
        .contains_key("joiner@example.net"));
}

#[test]
fn a_joiner_deferred_before_its_introduction_is_accepted_once_it_arrives() {
    let mut net = Net::founded(2, at(0));
    net.cut.insert((A, B));
    let j = net.join(A, 3, at(10));
    let jid = net.id(j);
    // Whatever J sends first, B ends up accepting J through J alone.
    for k in 0..4 {
        let now = at(10 + k * 700);
        net.round(j, now);
        net.round(B, now);
    }
    assert!(net.e(B).group().is_active(&jid));
    assert!(net.nodes[B].inbox.is_empty(), "nothing left behind");
}

/// A sync message from `from` (signed with `signer`'s key) to B carrying `ops`.
fn sync_carrying(
    signer: u8,
    from: &DeviceId,
    to: &DeviceId,
    ops: Vec<SignedOp>,
    now: Timestamp,
) -> Vec<u8> {
    let m = marker(
        Kind::Sync,
        from,
        Recipient::Device(to.clone()),
        msg_id(now.as_secs()),
    );
    let body = OpsBody {
        ops,
        ..OpsBody::default()
    };
    let p = payload_for(&m, std::slice::from_ref(to), now, SealedContent::Ops(body));
    let b_cert = identity(2).cert();
    forge::sealed(&identity(signer), &[&b_cert], m, &p, now)
}

#[test]
fn a_self_signed_admission_introduces_nobody() {
    let mut net = Net::founded(2, at(0));
    let b = net.id(B);
    let j = identity(3);
    // J's own record, as its sponsor would have written it, but signed by J.
    let mut w = Engine::found(identity(9), "x", &account_key(9), at(0)).unwrap();
    let real = admit(&mut w, 3, at(1));
    let rec = real.group().member(&j.id).unwrap().clone();
    let own = forge::op(&j.key, &j.id, 1, at(1), Change::Member(rec));
    let uid = net.nodes[B]
        .inbox
        .append(sync_carrying(3, &j.id, &b, vec![own], at(2)));
    let out = net.recv(B, at(3));
    assert!(out.processed.is_empty());
    assert!(out
        .deferred
        .contains_key(&message_id_of(&net.nodes[B].inbox.msgs[0].1)));
    assert!(!out.delete.contains(&uid), "left for the grace period");
    assert_eq!(net.e(B).group().status_of(&j.id), None);
}

#[test]
fn an_admission_by_a_removed_member_introduces_nobody() {
    let mut net = Net::founded(3, at(0));
    let (b, r) = (net.id(B), net.id(2));
    net.em(B).remove(&r, at(1)).unwrap();
    let j = net.join(2, 5, at(2));
    let jid = net.id(j);
    let op = admission(net.e(2), &jid);
    net.nodes[B]
        .inbox
        .append(sync_carrying(5, &jid, &b, vec![op], at(3)));
    let out = net.recv(B, at(4));
    assert!(out.processed.is_empty());
    assert_eq!(out.deferred.len(), 1);
    assert_eq!(net.e(B).group().status_of(&jid), None);
    assert_eq!(net.e(B).group().status_of(&r), Some(MemberStatus::Removed));
}

#[test]
fn an_introduction_needs_the_admission_of_the_sender_itself() {
    // J carries A's admission of *another* joiner K: that does not vouch for J.
    let mut net = Net::founded(2, at(0));
    net.cut.insert((A, B));
    let b = net.id(B);
    let k = net.join(A, 4, at(1));
    let kid = net.id(k);
    let op = admission(net.e(A), &kid);
    let j = identity(3);
    net.nodes[B]
        .inbox
        .append(sync_carrying(3, &j.id, &b, vec![op], at(2)));
    let out = net.recv(B, at(3));
    assert!(out.processed.is_empty());
    assert_eq!(out.deferred.len(), 1);
    assert_eq!(
        net.e(B).group().status_of(&kid),
        None,
        "nothing applied from it"
    );
}

#[test]
fn a_joiners_own_ops_before_its_admission_in_one_message_are_applied() {
    let mut net = Net::founded(2, at(0));
    net.cut.insert((A, B));
    let j = net.join(A, 3, at(10));
    // J writes before its first message: its own op comes first in it.
    net.nodes[j].learn_key("early@example.net", at(10));
    net.send(j, at(11));
    let out = net.recv(B, at(12));
    assert_eq!(out.processed.len(), 1);
    assert!(
        out.applied >= 2,
        "J's op and its admission: {}",
        out.applied
    );
    assert!(net.e(B).group().is_active(&net.id(j)));
    assert!(net.e(B).group().keyring().contains_key("early@example.net"));
}

#[test]
fn a_joiners_app_message_waits_until_the_joiner_is_known() {
    let mut net = Net::founded(2, at(0));
    net.cut.insert((A, B));
    let b = net.id(B);
    let j = net.join(A, 3, at(10));
    let node = &mut net.nodes[j];
    let content = SealedContent::App(sma_proto::payload::AppBody {
        app_kind: "text".into(),
        body: b"hi".to_vec(),
    });
    let route = (Kind::App, Recipient::Device(b.clone()));
    let msg = node
        .engine
        .seal(
            &mut node.rng,
            at(11),
            route,
            std::slice::from_ref(&b),
            content,
        )
        .unwrap();
    net.nodes[B].inbox.append(msg.bytes);
    let out = net.recv(B, at(12));
    assert!(out.apps.is_empty());
    assert_eq!(out.deferred.len(), 1, "an app message introduces nobody");
    net.send(j, at(13));
    let out = net.recv(B, at(14));
    assert!(
        net.e(B).group().is_active(&net.id(j)),
        "J's sync introduced it"
    );
    assert!(
        out.apps.is_empty(),
        "headers are judged before J became known"
    );
    let out = net.recv(B, at(15));
    assert_eq!(out.apps.len(), 1, "fetched again once J is known");
    assert_eq!(out.apps[0].body, b"hi");
    assert!(net.nodes[B].inbox.is_empty());
}

//! Messages from senders our state does not know (PROTOCOL 13.3,
//! version 2): fetched once and deferred, fetched again only when the
//! member list has grown, deleted seven days after their first sighting
//! whatever their Date says.

mod common;

use common::forge;
use common::*;
use sma_proto::engine::inbox::{Triage, UNKNOWN_SENDER_GRACE_SECS};
use sma_proto::{DeviceId, Engine, Timestamp};

const B: usize = 1;

/// A device of another group that admitted B's identity: it can seal to
/// B, but B's state does not know it.
fn stranger(n: u8, now: Timestamp) -> Engine {
    let mut x = Engine::found(identity(n), "stranger", &account_key(n as u64), now).unwrap();
    let _ = admit(&mut x, 2, now);
    x
}

fn stranger_sync(x: &mut Engine, to: &DeviceId, now: Timestamp) -> Vec<u8> {
    let out = x.outgoing_syncs(&mut rng(77), now, HB).unwrap();
    out.into_iter().find(|o| &o.peer == to).unwrap().bytes
}

#[test]
fn a_message_from_an_unknown_sender_is_deferred_refetched_on_growth_and_expires() {
    let mut net = Net::founded(2, at(0));
    let b = net.id(B);
    let mut x = stranger(30, at(0));
    // The Date header is far in the past: it plays no part.
    let bytes = forge::set_header(
        &stranger_sync(&mut x, &b, at(5)),
        "Date",
        "Mon, 01 Jan 2001 00:00:00 +0000",
    );
    let id = message_id_of(&bytes);
    let uid = net.nodes[B].inbox.append(bytes);
    let t1 = at(100);

    let node = &mut net.nodes[B];
    let mut pass = node.engine.inbox_pass(t1);
    assert_eq!(
        pass.triage(uid, 1000, header_of(&node.inbox.msgs[0].1), &node.memory)
            .unwrap(),
        Triage::Fetch
    );
    drop(pass);
    let out = net.recv(B, t1);
    assert!(out.delete.is_empty() && out.processed.is_empty());
    let d = out.deferred[&id];
    assert_eq!(
        (d.first_seen, d.tried_at_members),
        (t1.as_secs(), 2),
        "first sighting and member count"
    );

    // Same member list: not even fetched again.
    let node = &mut net.nodes[B];
    let mut pass = node.engine.inbox_pass(at(200));
    assert_eq!(
        pass.triage(uid, 1000, header_of(&node.inbox.msgs[0].1), &node.memory)
            .unwrap(),
        Triage::Done
    );
    let out = pass.finish();
    assert!(out.delete.is_empty() && out.deferred.is_empty());

    // The member list grows: fetched once more, still unknown.
    let _ = admit(net.em(B), 7, at(300));
    let out = net.recv(B, at(300));
    assert!(out.delete.is_empty());
    assert_eq!(
        out.deferred[&id].first_seen,
        t1.as_secs(),
        "first sighting kept"
    );
    assert_eq!(out.deferred[&id].tried_at_members, 3);

    // Kept through the grace period, counted from the first sighting.
    let end = T0 + 100 + UNKNOWN_SENDER_GRACE_SECS;
    assert!(net.recv(B, Timestamp::from_secs(end)).delete.is_empty());
    let out = net.recv(B, Timestamp::from_secs(end + 1));
    assert_eq!(out.delete, [uid].into());
}

#[test]
fn a_date_in_the_future_does_not_keep_an_unknown_senders_message() {
    let mut net = Net::founded(2, at(0));
    let b = net.id(B);
    let mut x = stranger(31, at(0));
    let bytes = forge::set_header(
        &stranger_sync(&mut x, &b, at(5)),
        "Date",
        "Fri, 01 Jan 2100 00:00:00 +0000",
    );
    let uid = net.nodes[B].inbox.append(bytes);
    net.recv(B, at(10));
    let out = net.recv(B, at(11 + UNKNOWN_SENDER_GRACE_SECS));
    assert_eq!(out.delete, [uid].into());
}

//! Sync messages that vanish (PROTOCOL 11.3, version 2): a sender probes
//! for its unacknowledged message, sends again at once when the provider
//! deleted it, and otherwise waits for the retransmission interval.

mod common;

use common::*;
use sma_proto::sync::RETRANSMIT_AFTER_SECS;

const A: usize = 0;
const B: usize = 1;

#[test]
fn a_vanished_sync_message_is_sent_again_at_once() {
    let mut net = Net::founded(2, at(0));
    let b = net.id(B);
    net.nodes[A].learn_key("x@example.net", at(10));
    let sent = net.send(A, at(10));
    assert_eq!(sent.to(B), 1);
    let id = sent.msgs[0].1.clone();
    let probes = net.e(A).sync_probes(at(11), HB);
    assert_eq!(probes.len(), 1);
    assert_eq!((&probes[0].0, &probes[0].1.message_id), (&b, &id));
    // Not resent before the retransmission interval while it is in place.
    assert_eq!(net.send(A, at(11)).to(B), 0);
    // The provider deletes it; the driver finds it missing.
    net.nodes[B].inbox.remove_id(&id);
    net.em(A).vanished(&b);
    assert_eq!(net.send(A, at(12)).to(B), 1, "sent again at once");
    net.recv(B, at(13));
    assert!(net.e(B).group().keyring().contains_key("x@example.net"));
}

#[test]
fn an_unacknowledged_sync_is_retransmitted_after_the_interval_and_not_before() {
    let mut net = Net::founded(2, at(0));
    net.probe = false;
    net.cut.insert((A, B));
    net.nodes[A].learn_key("x@example.net", at(10));
    assert_eq!(net.send(A, at(10)).to(B), 1);
    assert_eq!(net.send(A, at(9 + RETRANSMIT_AFTER_SECS)).to(B), 0);
    net.cut.clear();
    assert_eq!(net.send(A, at(10 + RETRANSMIT_AFTER_SECS)).to(B), 1);
    net.round(B, at(11 + RETRANSMIT_AFTER_SECS));
    net.recv(A, at(12 + RETRANSMIT_AFTER_SECS));
    assert!(
        net.e(A)
            .sync_probes(at(13 + RETRANSMIT_AFTER_SECS), HB)
            .is_empty(),
        "all acknowledged"
    );
}

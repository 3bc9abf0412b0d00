//! The inbox rules of PROTOCOL 13.2 (version 2) as the engine applies them:
//! what is left in place, what is deleted by its header alone, what is
//! fetched, deferred, rejected, applied or queued — and what the pass tells
//! the driver to record.

mod common;

use common::forge::{self, marker, msg_id, payload_for};
use common::*;
use sma_proto::device::build_announcement;
use sma_proto::engine::inbox::{Triage, APP_MAX_AGE_SECS};
use sma_proto::engine::StateEvent;
use sma_proto::envelope::{Kind, Recipient, MARKER_HEADER, MESSAGE_SIZE_CAP};
use sma_proto::folders::Layout;
use sma_proto::payload::{AnnouncedState, AppBody, OpsBody, SealedContent};
use sma_proto::state::{Change, MemberStatus};
use sma_proto::Timestamp;

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// A sync message `from` sends `to` now, due or not (not delivered).
fn next_sync(net: &mut Net, from: usize, to: usize, now: Timestamp) -> Vec<u8> {
    let peer = net.id(to);
    let node = &mut net.nodes[from];
    node.engine.vanished(&peer);
    let out = node.engine.outgoing_syncs(&mut node.rng, now, HB).unwrap();
    out.into_iter().find(|o| o.peer == peer).unwrap().bytes
}

/// An application message from node `from` to node `to`, sealed at `now`.
fn app(net: &mut Net, from: usize, to: usize, now: Timestamp, body: &[u8]) -> Vec<u8> {
    let peer = net.id(to);
    let node = &mut net.nodes[from];
    let content = SealedContent::App(AppBody {
        app_kind: "text".into(),
        body: body.to_vec(),
    });
    let route = (Kind::App, Recipient::Device(peer.clone()));
    node.engine
        .seal(&mut node.rng, now, route, &[peer], content)
        .unwrap()
        .bytes
}

/// Puts `bytes` in node `to`'s inbox and runs one pass; returns the UID
/// and the outcome.
fn deliver(
    net: &mut Net,
    to: usize,
    bytes: Vec<u8>,
    now: Timestamp,
) -> (u32, sma_proto::engine::inbox::PassOutcome) {
    let uid = net.nodes[to].inbox.append(bytes);
    (uid, net.recv(to, now))
}

#[test]
fn pairing_messages_are_left_unless_a_day_old_or_undated() {
    let mut net = Net::founded(2, at(0));
    let now = at(10 * 86_400);
    let (a, b) = (net.id(A), net.id(B));
    let to = || Recipient::Device(dev(2));
    let mut fresh = Vec::new();
    for (i, kind) in [
        Kind::PairHello,
        Kind::PairReply,
        Kind::PairConfirm,
        Kind::PairWelcome,
        Kind::PairAbort,
    ]
    .into_iter()
    .enumerate()
    {
        let date = Timestamp::from_secs(now.as_secs() - 3600 - i as u64);
        fresh.push(
            net.nodes[B]
                .inbox
                .append(forge::plain(kind, &a, to(), date, b"{}")),
        );
    }
    let day_old = Timestamp::from_secs(now.as_secs() - 86_401);
    let old = net.nodes[B]
        .inbox
        .append(forge::plain(Kind::PairHello, &a, to(), day_old, b"{}"));
    let undated = forge::drop_header(&forge::plain(Kind::PairReply, &b, to(), now, b"{}"), "Date");
    let undated = net.nodes[B].inbox.append(undated);
    let garbled = forge::set_header(
        &forge::plain(Kind::PairAbort, &b, to(), now, b"{}"),
        "Date",
        "yesterday, about noon",
    );
    let garbled = net.nodes[B].inbox.append(garbled);
    let out = net.recv(B, now);
    assert_eq!(
        out.delete,
        [old, undated, garbled].into(),
        "only the stale, the undated and the unparseably dated go"
    );
    assert_eq!(net.nodes[B].inbox.uids(), fresh.into_iter().collect());
    assert!(out.processed.is_empty() && out.deferred.is_empty());
}

#[test]
fn other_protocol_versions_and_unknown_kinds_are_left() {
    let mut net = Net::founded(2, at(0));
    net.nodes[A].learn_key("bob@example.net", at(1));
    let sync = next_sync(&mut net, A, B, at(1));
    let (a, b) = (net.id(A), net.id(B));
    let value =
        |v: &str, kind: &str| format!("v={v}; kind={kind}; from={a}; to={b}; id={}", msg_id(7));
    for (v, kind) in [
        ("1", "sync"),
        ("3", "sync"),
        ("2", "gossip"),
        ("3", "gossip"),
    ] {
        let bytes = forge::set_header(&sync, MARKER_HEADER, &value(v, kind));
        let (uid, out) = deliver(&mut net, B, bytes, at(2));
        assert!(
            !out.delete.contains(&uid),
            "v={v} kind={kind} left in place"
        );
        assert_eq!(out.applied, 0);
    }
    assert_eq!(net.nodes[B].inbox.len(), 4);
    assert!(!net.e(B).group().keyring().contains_key("bob@example.net"));
}

#[test]
fn messages_that_are_not_for_us_or_not_valid_are_deleted() {
    let mut net = Net::founded(2, at(0));
    let sync = next_sync(&mut net, A, B, at(1));
    let (a, b) = (net.id(A), net.id(B));
    let no_marker = forge::drop_header(&sync, MARKER_HEADER);
    let bad_from = forge::set_header(
        &sync,
        MARKER_HEADER,
        &format!("v=2; kind=sync; from=XYZ; to={b}; id={}", msg_id(1)),
    );
    let no_id = forge::set_header(
        &sync,
        MARKER_HEADER,
        &format!("v=2; kind=sync; from={a}; to={b}"),
    );
    let other = forge::set_header(
        &sync,
        MARKER_HEADER,
        &format!("v=2; kind=sync; from={a}; to={}; id={}", dev(9), msg_id(2)),
    );
    let announce = {
        let me = identity(1);
        build_announcement(
            &mut rng(3),
            &me,
            "device 1",
            T0,
            at(1).as_secs(),
            AnnouncedState::Member,
            Layout::Flat,
            true,
        )
        .unwrap()
    };
    let mut uids = Vec::new();
    for bytes in [no_marker, bad_from, no_id, other, announce] {
        uids.push(net.nodes[B].inbox.append(bytes));
    }
    let out = net.recv(B, at(2));
    assert_eq!(out.delete, uids.into_iter().collect());
    assert!(net.nodes[B].inbox.is_empty());
    assert_eq!(out.applied, 0);
}

#[test]
fn oversized_messages_are_deleted_by_their_header_size() {
    let mut net = Net::founded(2, at(0));
    net.nodes[A].learn_key("bob@example.net", at(1));
    let sync = next_sync(&mut net, A, B, at(1));
    let node = &mut net.nodes[B];
    let mut pass = node.engine.inbox_pass(at(2));
    let big = MESSAGE_SIZE_CAP as u32 + 1;
    assert_eq!(
        pass.triage(7, big, header_of(&sync), &node.memory).unwrap(),
        Triage::Done
    );
    // A body the transport cut at the cap is deleted too.
    assert_eq!(
        pass.triage(8, 100, header_of(&sync), &node.memory).unwrap(),
        Triage::Fetch
    );
    pass.accept(8, None);
    let out = pass.finish();
    assert_eq!(out.delete, [7, 8].into());
    assert_eq!(out.applied, 0);
    assert!(out.processed.is_empty());
}

#[test]
fn an_already_processed_id_is_deleted_unopened() {
    let mut net = Net::founded(2, at(0));
    net.nodes[A].learn_key("bob@example.net", at(1));
    let sync = next_sync(&mut net, A, B, at(1));
    let (_, first) = deliver(&mut net, B, sync.clone(), at(2));
    assert_eq!(first.processed, [message_id_of(&sync)]);
    assert_eq!(first.applied, 1);
    let node = &mut net.nodes[B];
    let mut pass = node.engine.inbox_pass(at(3));
    assert_eq!(
        pass.triage(50, 100, header_of(&sync), &node.memory)
            .unwrap(),
        Triage::Done
    );
    let out = pass.finish();
    assert_eq!(out.delete, [50].into());
    assert!(out.processed.is_empty() && out.events.is_empty());
}

#[test]
fn messages_from_removed_or_stale_senders_are_deleted_without_opening() {
    for status in [MemberStatus::Removed, MemberStatus::Stale] {
        let mut net = Net::founded(3, at(0));
        net.nodes[C].learn_key("carol@example.net", at(1));
        let sync = next_sync(&mut net, C, B, at(1));
        let mut rec = net.e(B).group().member(&net.id(C)).unwrap().clone();
        rec.status = status;
        net.em(B).commit(Change::Member(rec), at(2)).unwrap();
        let node = &mut net.nodes[B];
        let mut pass = node.engine.inbox_pass(at(3));
        let verdict = pass.triage(1, 100, header_of(&sync), &node.memory).unwrap();
        let out = pass.finish();
        assert_eq!(verdict, Triage::Done, "{status:?}: not fetched");
        assert_eq!(out.delete, [1].into(), "{status:?}: deleted");
        assert!(!net.e(B).group().keyring().contains_key("carol@example.net"));
    }
}

fn ops_body() -> OpsBody {
    OpsBody::default()
}

#[test]
fn tampered_or_misattributed_sealed_messages_are_deleted_and_logged() {
    let mut net = Net::founded(3, at(0));
    let (a, b, c) = (net.id(A), net.id(B), net.id(C));
    let b_cert = identity(2).cert();
    let now = at(10);
    let sync_marker = |seed| marker(Kind::Sync, &a, Recipient::Device(b.clone()), msg_id(seed));
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();

    let good = next_sync(&mut net, A, B, now);
    let text = String::from_utf8(good).unwrap();
    let body_at = text.find("-----BEGIN PGP MESSAGE-----").unwrap() + 200;
    let mut tampered = text.into_bytes();
    tampered[body_at] = if tampered[body_at] == b'A' {
        b'B'
    } else {
        b'A'
    };
    cases.push(("cryptographic check failed", tampered));

    let m = sync_marker(1);
    let p = payload_for(
        &m,
        std::slice::from_ref(&b),
        now,
        SealedContent::Ops(ops_body()),
    );
    cases.push((
        "cryptographic check failed",
        forge::sealed(&identity(3), &[&b_cert], m, &p, now),
    ));

    let m = sync_marker(2);
    let mut p = payload_for(
        &m,
        std::slice::from_ref(&b),
        now,
        SealedContent::Ops(ops_body()),
    );
    p.from = c.clone();
    cases.push((
        "(from)",
        forge::sealed(&identity(1), &[&b_cert], m, &p, now),
    ));

    let m = sync_marker(3);
    let mut p = payload_for(
        &m,
        std::slice::from_ref(&b),
        now,
        SealedContent::Ops(ops_body()),
    );
    p.id = msg_id(33);
    cases.push(("(id)", forge::sealed(&identity(1), &[&b_cert], m, &p, now)));

    let m = sync_marker(4);
    let mut p = payload_for(
        &m,
        std::slice::from_ref(&b),
        now,
        SealedContent::Ops(ops_body()),
    );
    p.kind = "app".into();
    cases.push((
        "(kind)",
        forge::sealed(&identity(1), &[&b_cert], m, &p, now),
    ));

    let m = sync_marker(5);
    let p = payload_for(
        &m,
        std::slice::from_ref(&c),
        now,
        SealedContent::Ops(ops_body()),
    );
    cases.push((
        "addressed to another device",
        forge::sealed(&identity(1), &[&b_cert], m, &p, now),
    ));

    for (why, bytes) in cases {
        let ((uid, out), log) = logged(|| deliver(&mut net, B, bytes, now));
        assert_eq!(out.delete, [uid].into(), "{why}");
        assert!(out.processed.is_empty() && out.events.is_empty(), "{why}");
        assert!(
            log.contains("quarantined") && log.contains(why),
            "{why}: {log}"
        );
    }
}

#[test]
fn content_of_the_wrong_kind_is_deleted_unapplied() {
    let mut net = Net::founded(2, at(0));
    let b = net.id(B);
    net.nodes[A].learn_key("bob@example.net", at(1));
    let op = net
        .e(A)
        .logged_op(&(net.id(A), net.e(A).core().book().last_seq()))
        .unwrap()
        .clone();
    let node = &mut net.nodes[A];
    let ops = SealedContent::Ops(OpsBody {
        ops: vec![op],
        ..OpsBody::default()
    });
    let as_app = node
        .engine
        .seal(
            &mut node.rng,
            at(2),
            (Kind::App, Recipient::Device(b.clone())),
            std::slice::from_ref(&b),
            ops,
        )
        .unwrap();
    let text = SealedContent::App(AppBody {
        app_kind: "text".into(),
        body: b"hi".to_vec(),
    });
    let as_sync = node
        .engine
        .seal(
            &mut node.rng,
            at(2),
            (Kind::Sync, Recipient::Device(b.clone())),
            std::slice::from_ref(&b),
            text,
        )
        .unwrap();
    let u1 = net.nodes[B].inbox.append(as_app.bytes);
    let u2 = net.nodes[B].inbox.append(as_sync.bytes);
    let out = net.recv(B, at(3));
    assert_eq!(out.delete, [u1, u2].into());
    assert_eq!(out.applied, 0);
    assert!(out.apps.is_empty() && out.processed.is_empty());
    assert!(!net.e(B).group().keyring().contains_key("bob@example.net"));
}

#[test]
fn application_messages_older_than_30_days_are_deleted_undelivered() {
    let mut net = Net::founded(2, at(0));
    let old = app(&mut net, A, B, at(1), b"old");
    let limit = app(&mut net, A, B, at(2), b"just in time");
    let now = Timestamp::from_secs(at(2).as_secs() + APP_MAX_AGE_SECS);
    let u_old = net.nodes[B].inbox.append(old.clone());
    let out = net.recv(B, now);
    assert_eq!(out.delete, [u_old].into());
    assert!(out.apps.is_empty());
    assert!(
        !out.processed.contains(&message_id_of(&old)),
        "not recorded as processed"
    );
    let (_, out) = deliver(&mut net, B, limit, now);
    assert_eq!(out.apps.len(), 1);
    assert_eq!(out.apps[0].body, b"just in time");
}

#[test]
fn a_duplicate_id_in_one_pass_is_deleted_and_delivered_once() {
    let mut net = Net::founded(2, at(0));
    let msg = app(&mut net, A, B, at(1), b"twice");
    let u1 = net.nodes[B].inbox.append(msg.clone());
    let u2 = net.nodes[B].inbox.append(msg.clone());
    let out = net.recv(B, at(2));
    assert_eq!(out.delete, [u1, u2].into());
    assert_eq!(out.apps.len(), 1);
    assert_eq!(out.processed, [message_id_of(&msg)]);
}

#[test]
fn a_valid_app_is_queued_and_recorded() {
    let mut net = Net::founded(2, at(0));
    let msg = app(&mut net, A, B, at(1), b"hello");
    let (uid, out) = deliver(&mut net, B, msg.clone(), at(2));
    assert_eq!(out.delete, [uid].into());
    let got = &out.apps[..];
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, message_id_of(&msg));
    assert_eq!(
        (&got[0].sender, got[0].kind.as_str(), &got[0].body[..]),
        (&net.id(A), "text", &b"hello"[..])
    );
    assert_eq!(got[0].sent_at, at(1).as_secs());
    assert_eq!(out.processed, [message_id_of(&msg)]);
    assert_eq!(
        net.e(B).last_alive(&net.id(A)),
        at(1).as_secs(),
        "an app is a sign of life"
    );
}

#[test]
fn a_valid_sync_is_applied_and_described() {
    let mut net = Net::founded(2, at(0));
    let now = at(5);
    net.nodes[A].learn_key("Bob@Example.net", now);
    let _ = admit(net.em(A), 3, now);
    let _ = admit(net.em(A), 4, now);
    net.em(A).remove(&dev(4), now).unwrap();
    net.em(A).rotate_account_key(&account_key(2), now).unwrap();
    let sync = next_sync(&mut net, A, B, now);
    let (_, out) = deliver(&mut net, B, sync.clone(), at(6));
    assert_eq!(out.applied, 5);
    assert_eq!(out.processed, [message_id_of(&sync)]);
    assert_eq!(
        out.events[0],
        StateEvent::Applied {
            from: net.id(A),
            ops: 5
        }
    );
    for e in [
        StateEvent::DeviceAdded {
            device_id: dev(3),
            name: "device 3".into(),
        },
        StateEvent::DeviceAdded {
            device_id: dev(4),
            name: "device 4".into(),
        },
        StateEvent::DeviceRemoved { device_id: dev(4) },
        StateEvent::KeyUpdated {
            addr: "bob@example.net".into(),
        },
        StateEvent::KeyUpdated {
            addr: "account".into(),
        },
    ] {
        assert!(out.events.contains(&e), "{e:?} in {:?}", out.events);
    }
    assert_eq!(out.events.len(), 6);
    assert_eq!(state_json(net.e(B)), state_json(net.e(A)));
    assert_eq!(
        net.e(B).group().current_account_key().unwrap().generation,
        2
    );
}

#[test]
fn the_reserved_leave_kind_is_processed_like_sync() {
    let mut net = Net::founded(2, at(0));
    let b = net.id(B);
    net.nodes[A].learn_key("bob@example.net", at(1));
    let op = net
        .e(A)
        .logged_op(&(net.id(A), net.e(A).core().book().last_seq()))
        .unwrap()
        .clone();
    let node = &mut net.nodes[A];
    let body = SealedContent::Ops(OpsBody {
        ops: vec![op],
        ..OpsBody::default()
    });
    let route = (Kind::Leave, Recipient::Device(b.clone()));
    let msg = node
        .engine
        .seal(&mut node.rng, at(2), route, std::slice::from_ref(&b), body)
        .unwrap();
    let (uid, out) = deliver(&mut net, B, msg.bytes, at(3));
    assert_eq!(out.delete, [uid].into());
    assert_eq!(out.applied, 1);
    assert_eq!(out.processed, [msg.id]);
}

#[test]
fn a_broken_copy_of_a_message_does_not_cost_the_good_one() {
    // An APPEND cut off half-way and retried leaves a truncated copy with
    // the same id ahead of the complete one; a hostile copy does the same.
    let mut net = Net::founded(2, at(0));
    let msg = app(&mut net, A, B, at(1), b"once");
    let cut = msg[..msg.len() * 2 / 3].to_vec();
    let u1 = net.nodes[B].inbox.append(cut);
    let u2 = net.nodes[B].inbox.append(msg.clone());
    let out = net.recv(B, at(2));
    assert_eq!(out.delete, [u1, u2].into());
    assert_eq!(out.apps.len(), 1, "the complete copy is delivered");
    assert_eq!(out.apps[0].body, b"once");
    assert_eq!(out.processed, [message_id_of(&msg)]);
}

#[test]
fn an_app_sealed_to_several_members_opens_for_each() {
    let mut net = Net::founded(3, at(0));
    let (b, c) = (net.id(B), net.id(C));
    let node = &mut net.nodes[A];
    let content = SealedContent::App(AppBody {
        app_kind: "text".into(),
        body: b"all".to_vec(),
    });
    let route = (Kind::App, Recipient::All);
    let sealed = node
        .engine
        .seal(&mut node.rng, at(1), route, &[b, c], content)
        .unwrap();
    for i in [B, C] {
        let (_, out) = deliver(&mut net, i, sealed.bytes.clone(), at(2));
        assert_eq!(out.apps.len(), 1, "device {i}");
        assert_eq!(out.apps[0].message_id, sealed.id);
    }
}

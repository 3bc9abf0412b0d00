//! Membership through the engine: removal and its notice, pending
//! removals, leaving, account-key rotation, the welcome's checks, and
//! members whose certificate cannot be sealed to.

mod common;

use common::forge;
use common::*;
use sma_proto::engine::membership::{Joiner, PendingRemoval, Removing};
use sma_proto::engine::StateEvent;
use sma_proto::envelope::{Kind, Recipient};
use sma_proto::error::ProtoError;
use sma_proto::payload::{AppBody, SealedContent, Welcome};
use sma_proto::state::{Change, GroupState, MemberRecord, MemberStatus};
use sma_proto::{Engine, PeerMisbehaved};

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const D: usize = 3;

#[test]
fn remove_commits_once_knows_unknown_devices_and_refuses_self() {
    let mut net = Net::founded(3, at(0));
    let c = net.id(C);
    let seq = net.e(A).core().book().last_seq();
    assert_eq!(net.em(A).remove(&c, at(1)).unwrap(), Removing::Committed);
    assert_eq!(net.e(A).core().book().last_seq(), seq + 1);
    assert_eq!(net.e(A).group().status_of(&c), Some(MemberStatus::Removed));
    assert_eq!(
        net.em(A).remove(&c, at(2)).unwrap(),
        Removing::AlreadyRemoved
    );
    assert_eq!(
        net.em(A).remove(&dev(99), at(2)).unwrap(),
        Removing::Unknown
    );
    assert_eq!(
        net.e(A).core().book().last_seq(),
        seq + 1,
        "nothing more committed"
    );
    let me = net.id(A);
    assert!(matches!(
        net.em(A).remove(&me, at(2)),
        Err(ProtoError::ApiMisuse(_))
    ));
    assert!(!net.e(A).peers().contains(&c));
}

#[test]
fn pending_removals_list_members_until_each_acknowledged() {
    let mut net = Net::founded(4, at(0));
    let d = net.id(D);
    net.em(A).remove(&d, at(1)).unwrap();
    let waiting = |net: &Net| net.e(A).pending_removals();
    assert_eq!(
        waiting(&net),
        [PendingRemoval {
            device: d.clone(),
            waiting_for: vec![net.id(B), net.id(C)]
        }]
    );
    net.send(A, at(2));
    net.round(B, at(3));
    net.recv(A, at(4));
    assert_eq!(waiting(&net)[0].waiting_for, [net.id(C)], "B acknowledged");
    net.round(C, at(5));
    net.recv(A, at(6));
    assert!(waiting(&net).is_empty());
}

#[test]
fn a_removal_notice_tells_the_removed_device_who_removed_it() {
    let mut net = Net::founded(3, at(0));
    let (a, c) = (net.id(A), net.id(C));
    net.em(A).remove(&c, at(1)).unwrap();
    net.send(A, at(2));
    net.recv(B, at(3));
    // B learnt it from A's op: its notice names A, the origin.
    let node = &mut net.nodes[B];
    let (_, bytes) = node
        .engine
        .removal_notice(&mut node.rng, &c, at(4))
        .unwrap();
    let uid = net.nodes[C].inbox.append(bytes);
    let out = net.recv(C, at(5));
    assert_eq!(out.removed_by, Some(a));
    assert!(!out.unproven_removal, "a proven removal needs no check");
    assert!(out.delete.contains(&uid));
    assert!(net.e(C).is_removed());
    assert!(out
        .events
        .contains(&StateEvent::DeviceRemoved { device_id: c }));
}

#[test]
fn a_notice_is_only_for_devices_whose_removal_we_hold() {
    let net = Net::founded(2, at(0));
    assert!(net
        .e(A)
        .removal_notice(&mut rng(1), &net.id(B), at(1))
        .is_none());
}

/// C's member record as A holds it, with `status`.
fn record(net: &Net, of: usize, status: MemberStatus) -> MemberRecord {
    let mut rec = net.e(A).group().member(&net.id(of)).unwrap().clone();
    rec.status = status;
    rec
}

#[test]
fn a_notice_that_proves_nothing_does_not_remove_us() {
    let mut net = Net::founded(3, at(0));
    let (a, b, c) = (net.id(A), net.id(B), net.id(C));
    let removed = Change::Member(record(&net, C, MemberStatus::Removed));
    let stranger = identity(40);
    // Signed by a device C's state does not know.
    let unknown = forge::op(&stranger.key, &stranger.id, 1, at(1), removed.clone());
    // Claiming A as origin, signed by another key.
    let forged = forge::op(&stranger.key, &a, 9, at(1), removed.clone());
    // A's real op that admitted C, its status changed.
    let admission = (1..=net.e(A).core().book().last_seq())
        .filter_map(|s| net.e(A).logged_op(&(a.clone(), s)).cloned())
        .find(|op| matches!(op.change(), Some(Change::Member(r)) if r.id == c))
        .unwrap();
    let flipped = forge::altered(&admission, |j| {
        j.replace("\"status\":\"active\"", "\"status\":\"removed\"")
    });
    // A real removal, of another device.
    net.em(A).remove(&b, at(2)).unwrap();
    let other = net.e(A).core().removals()[&b].ops[0].clone();
    // A record with C's id but another key.
    let mut imposter = record(&net, C, MemberStatus::Removed);
    imposter.fingerprint = identity(41).fingerprint();
    imposter.cert = identity(41).cert().to_armored();
    let wrong_key = forge::op(&identity(1).key, &a, 50, at(2), Change::Member(imposter));

    for (i, ops) in [
        vec![unknown],
        vec![forged],
        vec![flipped],
        vec![other],
        vec![wrong_key],
    ]
    .into_iter()
    .enumerate()
    {
        let bytes = forge::removal_notice(&a, &c, ops, at(10 + i as u64));
        let uid = net.nodes[C].inbox.append(bytes);
        let (out, log) = logged(|| net.recv(C, at(20)));
        assert_eq!(out.removed_by, None, "case {i}");
        assert!(
            out.unproven_removal,
            "case {i}: the driver checks its announcement"
        );
        assert!(out.delete.contains(&uid), "case {i}");
        assert!(
            log.contains("does not prove our removal"),
            "case {i}: {log}"
        );
        assert_eq!(net.e(C).status(), Some(MemberStatus::Active), "case {i}");
    }
}

#[test]
fn a_removed_device_is_never_sealed_to_again() {
    let mut net = Net::founded(3, at(0));
    let c = net.id(C);
    net.em(A).remove(&c, at(1)).unwrap();
    let node = &mut net.nodes[A];
    let content = SealedContent::App(AppBody {
        app_kind: "text".into(),
        body: b"x".to_vec(),
    });
    let err = node.engine.seal(
        &mut node.rng,
        at(2),
        (Kind::App, Recipient::All),
        std::slice::from_ref(&c),
        content,
    );
    assert!(matches!(err, Err(ProtoError::ApiMisuse(_))));
    for t in [at(2), at(3 * HB)] {
        let sent = net.send(A, t);
        assert_eq!(sent.to(C), 0);
        assert_eq!(sent.to(B), 1);
    }
    net.settle(at(4 * HB));
    assert!(
        net.nodes[C].inbox.is_empty(),
        "B, which learnt of it, sends nothing either"
    );
}

#[test]
fn a_rotated_account_key_reaches_only_the_remaining_members() {
    let mut net = Net::founded(3, at(0));
    let c = net.id(C);
    net.em(A).remove(&c, at(1)).unwrap();
    assert_eq!(
        net.em(A)
            .rotate_account_key(&account_key(2), at(1))
            .unwrap(),
        2
    );
    net.settle(at(2));
    net.settle(at(2 + 3600));
    let fpr = account_key(2).fingerprint().to_string();
    assert_eq!(
        net.e(B).group().current_account_key().unwrap().fingerprint,
        fpr
    );
    assert_eq!(
        net.e(C).group().current_account_key().unwrap().generation,
        1
    );
    assert!(!net.e(C).group().account_keys().contains_key(&2));
}

#[test]
fn a_device_that_leaves_is_removed_everywhere() {
    let mut net = Net::founded(3, at(0));
    let b = net.id(B);
    net.em(B).leave(at(1)).unwrap();
    assert!(net.e(B).is_removed());
    assert_eq!(
        net.send(B, at(1)).msgs.len(),
        2,
        "its departure goes to both"
    );
    for i in [A, C] {
        let out = net.recv(i, at(2));
        assert!(out.events.contains(&StateEvent::DeviceRemoved {
            device_id: b.clone()
        }));
        assert_eq!(net.e(i).group().status_of(&b), Some(MemberStatus::Removed));
        assert!(!net.e(i).peers().contains(&b));
    }
}

#[test]
fn a_removal_that_crosses_a_leave_converges() {
    let mut net = Net::founded(3, at(0));
    let b = net.id(B);
    // B leaves while A, which has not heard of it, removes B: A's removal
    // fixes B's final seq below B's leave op.
    net.em(B).leave(at(1)).unwrap();
    assert_eq!(net.em(A).remove(&b, at(1)).unwrap(), Removing::Committed);
    net.send(B, at(1));
    net.settle(at(2));
    net.settle(at(2 + 3600));
    let a = net
        .e(A)
        .group()
        .member(&b)
        .cloned()
        .expect("A's record of B");
    let c = net
        .e(C)
        .group()
        .member(&b)
        .cloned()
        .expect("C's record of B");
    assert_eq!(a.status, MemberStatus::Removed);
    assert_eq!(a, c, "both hold the same record, final seq included");
    assert_eq!(
        a.seq_bound(),
        net.e(B).group().member(&b).expect("own").seq_bound(),
        "the removal and the leave agree on B's last op"
    );
}

/// A welcome from A (which has learnt a key) for device 2.
fn welcome() -> (Engine, Welcome) {
    let mut a = Engine::found(identity(1), "device 1", &account_key(1), at(0)).unwrap();
    let mut node = Node::new(a, 1);
    node.learn_key("bob@example.net", at(0));
    a = node.engine;
    let me = identity(2);
    let cert = me.cert();
    let w = a
        .admit(
            &Joiner {
                id: &me.id,
                cert: &cert,
                name: "two",
                heartbeat: T0,
            },
            at(1),
        )
        .unwrap();
    (a, w)
}

/// The welcome with its state's JSON edited.
fn edited(w: &Welcome, edit: impl Fn(&mut serde_json::Value)) -> Welcome {
    let mut w = w.clone();
    let mut v = serde_json::to_value(&w.state).unwrap();
    edit(&mut v);
    w.state = serde_json::from_value(v).unwrap();
    w
}

fn rename_key(map: &mut serde_json::Value, from: &str, to: &str) {
    let m = map.as_object_mut().unwrap();
    let v = m.remove(from).unwrap();
    m.insert(to.into(), v);
}

#[test]
fn from_welcome_rejects_welcomes_that_break_the_rules() {
    let (_, w) = welcome();
    assert!(
        Engine::from_welcome(identity(2), over_the_wire(&w), at(2)).is_ok(),
        "control"
    );
    let (one, two) = (dev(1).to_string(), dev(2).to_string());
    let mut bad: Vec<(&str, Welcome)> = Vec::new();
    let mut other_account = w.clone();
    other_account.account = "mallory@example.org".into();
    bad.push(("account", other_account));
    let mut other_device = w.clone();
    other_device.joiner_id = dev(3);
    bad.push(("joiner id", other_device));
    bad.push((
        "our key",
        edited(&w, |v| {
            v["members"][&two]["fingerprint"] = identity(5).fingerprint().into()
        }),
    ));
    bad.push((
        "our status",
        edited(&w, |v| v["members"][&two]["status"] = "removed".into()),
    ));
    let mut keyless = w.clone();
    keyless.state = GroupState::default();
    for rec in w.state.members().values() {
        keyless.state.apply(&Change::Member(rec.clone()));
    }
    bad.push(("account key", keyless));
    bad.push((
        "member key",
        edited(&w, |v| {
            rename_key(&mut v["members"], &one, &dev(9).to_string())
        }),
    ));
    bad.push((
        "keyring key",
        edited(&w, |v| {
            rename_key(&mut v["keyring"], "bob@example.net", "eve@example.net")
        }),
    ));
    bad.push((
        "generation",
        edited(&w, |v| rename_key(&mut v["account_keys"], "1", "7")),
    ));
    bad.push((
        "fingerprint",
        edited(&w, |v| {
            v["members"][&one]["fingerprint"] = identity(6).fingerprint().into()
        }),
    ));
    for (what, welcome) in bad {
        let err = Engine::from_welcome(identity(2), welcome, at(2)).err();
        assert!(
            matches!(
                err,
                Some(ProtoError::Peer(PeerMisbehaved::BrokenRule { .. }))
            ),
            "{what}: {err:?}"
        );
    }
    // Installing a bad welcome over a good one changes nothing.
    let mut j = Engine::from_welcome(identity(2), w.clone(), at(2)).unwrap();
    let before = state_json(&j);
    let mut other_device = w.clone();
    other_device.joiner_id = dev(3);
    assert!(j.install_welcome(other_device, at(3)).is_err());
    assert_eq!(state_json(&j), before);
}

#[test]
fn a_member_whose_certificate_cannot_encrypt_is_skipped_and_cannot_be_admitted() {
    let mut net = Net::founded(2, at(0));
    let key = device_key(8);
    let cert = forge::cert_without_encryption(&key);
    let refused = net.em(A).admit(
        &Joiner {
            id: &dev(8),
            cert: &cert,
            name: "signing only",
            heartbeat: T0,
        },
        at(1),
    );
    assert!(matches!(refused, Err(ProtoError::ApiMisuse(_))));
    assert_eq!(
        net.e(A).group().status_of(&dev(8)),
        None,
        "nothing committed"
    );
    // Such a record reaches the state another way (an older version, a
    // buggy peer): syncs to the others still go out.
    let stamp = net.em(A).stamp(at(2));
    let rec = MemberRecord {
        id: dev(8),
        fingerprint: cert.fingerprint().to_string(),
        cert: cert.to_armored(),
        name: "signing only".into(),
        name_stamp: stamp,
        status: MemberStatus::Active,
        heartbeat: T0,
        final_seq: None,
        left_seq: 0,
    };
    net.em(A).commit(Change::Member(rec), at(2)).unwrap();
    let (sent, log) = logged(|| net.send(A, at(3)));
    assert_eq!(sent.to(B), 1);
    assert_eq!(sent.msgs.len(), 1);
    assert!(log.contains("no encryption subkey"), "{log}");
    // An application message to both goes to the one that can read it.
    let b = net.id(B);
    let node = &mut net.nodes[A];
    let text = || {
        SealedContent::App(AppBody {
            app_kind: "text".into(),
            body: b"x".to_vec(),
        })
    };
    let route = (Kind::App, Recipient::All);
    let sealed = node
        .engine
        .seal(
            &mut node.rng,
            at(3),
            route.clone(),
            &[b.clone(), dev(8)],
            text(),
        )
        .unwrap();
    assert_eq!(sealed.recipients, [b]);
    let alone = node
        .engine
        .seal(&mut node.rng, at(3), route, &[dev(8)], text());
    assert!(matches!(alone, Err(ProtoError::ApiMisuse(_))));
    net.recv(B, at(4));
    assert!(net.e(B).group().is_active(&dev(8)));
    let (sent, _) = logged(|| net.send(B, at(5)));
    assert_eq!(sent.to(A), 1);
    assert_eq!(sent.msgs.len(), 1);
}

#[test]
fn two_members_removing_each_other_split_the_others_by_what_they_learnt_first() {
    // A removes B while B removes A. Each removal op was written by a device
    // the other op removes, after the removal's final seq: a member that
    // learnt one removal refuses the other (a removed device's key cannot
    // remove anyone, PROTOCOL 10.5). So each remaining member follows the
    // removal it learnt first; a person must settle the conflict.
    let mut net = Net::founded(4, at(0));
    let (a, b) = (net.id(A), net.id(B));
    net.cut.extend([(A, B), (B, A), (A, D)]);
    net.em(A).remove(&b, at(10)).unwrap();
    net.em(B).remove(&a, at(10)).unwrap();
    // C hears A first, D hears B first.
    net.send(A, at(10));
    net.send(B, at(10));
    net.cut.clear();
    net.send(A, at(11));
    for k in 0..4 {
        net.settle(at(12 + k * 600));
    }
    assert_eq!(net.e(C).group().status_of(&b), Some(MemberStatus::Removed));
    assert_eq!(net.e(C).group().status_of(&a), Some(MemberStatus::Active));
    assert_eq!(net.e(D).group().status_of(&a), Some(MemberStatus::Removed));
    assert_eq!(net.e(D).group().status_of(&b), Some(MemberStatus::Active));
}

//! Liveness and expiry (PROTOCOL 14, version 2): a member expires only when
//! no authenticated sign of life — its own sealed messages, signs of life
//! relayed by other members, announcements signed with its key — is newer
//! than the policy; pending devices and removed devices' folders are
//! cleaned up on time.

mod common;

use std::collections::BTreeSet;

use common::*;
use sma_proto::engine::liveness::{Cleanup, HEARTBEAT_FUTURE_SLACK_SECS, REMOVED_INBOX_GRACE_SECS};
use sma_proto::engine::membership::Joiner;
use sma_proto::state::{Change, MemberStatus};

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const DAY: u64 = 86_400;
const POLICY: u64 = 30 * DAY;

/// Rounds of the given nodes once a day from day `from` to day `to`.
fn days(net: &mut Net, nodes: &[usize], from: u64, to: u64) {
    for d in from..=to {
        for &i in nodes {
            net.round(i, at(d * DAY));
        }
    }
}

#[test]
fn a_silent_member_expires_stale_then_removed_counted_from_its_last_sign_of_life() {
    let mut net = Net::founded(3, at(0));
    let c = net.id(C);
    let last = net.e(A).last_alive(&c);
    assert_eq!(last, T0, "its sync at the founding");
    days(&mut net, &[A, B], 1, 30);
    assert!(
        net.em(A).expire(at(POLICY), POLICY).unwrap().is_empty(),
        "not past the policy"
    );
    let seq = net.e(A).core().book().last_seq();
    assert_eq!(
        net.em(A).expire(at(POLICY + 1), POLICY).unwrap(),
        std::slice::from_ref(&c)
    );
    let a = net.id(A);
    let statuses: Vec<MemberStatus> = [seq + 1, seq + 2]
        .iter()
        .map(
            |s| match net.e(A).logged_op(&(a.clone(), *s)).unwrap().change() {
                Some(Change::Member(r)) if r.id == c => r.status,
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert_eq!(statuses, [MemberStatus::Stale, MemberStatus::Removed]);
    assert_eq!(net.e(A).core().book().last_seq(), seq + 2);
    assert!(net.e(A).core().removals().contains_key(&c));
    assert!(
        net.em(A).expire(at(POLICY + 2), POLICY).unwrap().is_empty(),
        "once"
    );
    assert!(net.e(A).peers().contains(&net.id(B)), "B kept talking");
}

#[test]
fn a_member_whose_syncs_keep_arriving_never_expires() {
    let mut net = Net::founded(3, at(0));
    for d in 1..=100 {
        for i in [A, B, C] {
            net.round(i, at(d * DAY));
        }
        assert!(
            net.em(A).expire(at(d * DAY), POLICY).unwrap().is_empty(),
            "day {d}"
        );
    }
    assert!(net.e(A).last_alive(&net.id(C)) >= at(99 * DAY).as_secs());
}

#[test]
fn signs_of_life_relayed_by_others_count() {
    let mut net = Net::founded(3, at(0));
    net.cut.insert((C, A));
    for d in 1..=60 {
        for i in [A, B, C] {
            net.round(i, at(d * DAY));
        }
        assert!(
            net.em(A).expire(at(d * DAY), POLICY).unwrap().is_empty(),
            "day {d}"
        );
    }
    let c = net.id(C);
    assert!(net.e(A).last_alive(&c) >= at(58 * DAY).as_secs());
    assert!(net.e(A).group().is_active(&c));
}

#[test]
fn announcements_count_only_with_the_records_key_and_at_most_a_day_ahead() {
    let mut net = Net::founded(2, at(0));
    let b = net.id(B);
    let before = net.e(A).last_alive(&b);
    let now = at(10 * DAY);
    let wrong = identity(7).fingerprint();
    net.em(A)
        .note_announcements([(&b, wrong.as_str(), now.as_secs())], now);
    assert_eq!(
        net.e(A).last_alive(&b),
        before,
        "another key's announcement"
    );
    let stranger = dev(50);
    let fp = identity(50).fingerprint();
    net.em(A)
        .note_announcements([(&stranger, fp.as_str(), now.as_secs())], now);
    assert_eq!(net.e(A).last_alive(&stranger), 0);
    let right = identity(2).fingerprint();
    net.em(A)
        .note_announcements([(&b, right.as_str(), now.as_secs() - 5)], now);
    assert_eq!(net.e(A).last_alive(&b), now.as_secs() - 5);
    net.em(A)
        .note_announcements([(&b, right.as_str(), now.as_secs() + 365 * DAY)], now);
    assert_eq!(
        net.e(A).last_alive(&b),
        now.as_secs() + HEARTBEAT_FUTURE_SLACK_SECS
    );
    // And it is what keeps B from expiring.
    let horizon = now.as_secs() + HEARTBEAT_FUTURE_SLACK_SECS + POLICY;
    assert!(net
        .em(A)
        .expire(sma_proto::Timestamp::from_secs(horizon), POLICY)
        .unwrap()
        .is_empty());
    assert_eq!(
        net.em(A)
            .expire(sma_proto::Timestamp::from_secs(horizon + 1), POLICY)
            .unwrap(),
        [b]
    );
}

#[test]
fn silent_pending_lists_only_announced_strangers_past_the_policy() {
    let net = Net::founded(2, at(0));
    let (a, b) = (net.id(A), net.id(B));
    let (old, fresh) = (dev(50), dev(51));
    let now = at(POLICY + 10);
    let pending = [(&old, T0), (&fresh, T0 + 20), (&b, T0), (&a, T0)];
    let silent = net.e(A).silent_pending(pending, now, POLICY);
    assert_eq!(silent, BTreeSet::from([old]));
}

#[test]
fn a_removed_devices_folders_are_kept_for_its_notice_then_deleted() {
    let mut net = Net::founded(3, at(0));
    let c = net.id(C);
    net.em(A).remove(&c, at(DAY)).unwrap();
    assert_eq!(
        net.e(A).removed_cleanup(at(DAY)),
        [Cleanup::Notify(c.clone())]
    );
    let end = DAY + REMOVED_INBOX_GRACE_SECS;
    assert_eq!(
        net.e(A).removed_cleanup(at(end)),
        [Cleanup::Notify(c.clone())]
    );
    assert_eq!(
        net.e(A).removed_cleanup(at(end + 1)),
        [Cleanup::Delete(c.clone())]
    );
    // B learns it later: its 30 days count from then.
    net.send(A, at(2 * DAY));
    net.recv(B, at(3 * DAY));
    assert_eq!(
        net.e(B).removed_cleanup(at(end + 1)),
        [Cleanup::Notify(c.clone())]
    );
    // A device that learnt of the removal from its welcome holds no notice.
    let j = net.join(A, 4, at(4 * DAY));
    assert_eq!(net.e(j).removed_cleanup(at(4 * DAY)), [Cleanup::Delete(c)]);
    // A device that removed itself cleans up only after the others.
    net.em(B).leave(at(5 * DAY)).unwrap();
    assert_eq!(
        net.e(B).removed_cleanup(at(5 * DAY)),
        [Cleanup::Notify(net.id(C))]
    );
}

#[test]
fn a_joiners_announced_heartbeat_counts_at_most_a_day_ahead() {
    let mut net = Net::founded(2, at(0));
    let me = identity(3);
    let cert = me.cert();
    let far = T0 + 10 * 365 * DAY;
    let joiner = Joiner {
        id: &me.id,
        cert: &cert,
        name: "j",
        heartbeat: far,
    };
    net.em(A).admit(&joiner, at(0)).unwrap();
    assert!(net.e(A).last_alive(&me.id) <= T0 + HEARTBEAT_FUTURE_SLACK_SECS);
    // The joiner never ran a round: it expires like any silent member.
    let limit = T0 + HEARTBEAT_FUTURE_SLACK_SECS + POLICY;
    let expired = net
        .em(A)
        .expire(sma_proto::Timestamp::from_secs(limit + 1), POLICY)
        .unwrap();
    assert!(expired.contains(&me.id), "{expired:?}");
}

#[test]
fn a_sign_of_life_from_a_clock_ahead_counts_as_now() {
    let mut net = Net::founded(2, at(0));
    let a = net.id(A);
    // A's clock runs ten days ahead when it writes to B.
    net.nodes[A].learn_key("x@example.net", at(10 * DAY));
    net.send(A, at(10 * DAY));
    net.recv(B, at(DAY));
    assert_eq!(net.e(B).last_alive(&a), at(DAY).as_secs());
    assert_eq!(net.em(B).expire(at(DAY + POLICY + 1), POLICY).unwrap(), [a]);
}

//! Expiry with a simulated clock on a real Dovecot: a silent member goes
//! active → stale → removed (as replicated ops), a device offline for less
//! than the policy stays, heartbeats replace announcements, silent pending
//! devices are cleaned up, and the expired device finds out and stops.

mod common;

use common::{Account, ShiftClock};
use sma::events::Event;
use sma::{ErrorKind, Role};
use sma_proto::state::{Change, MemberStatus};
use sma_proto::timefmt;

const DAY: i64 = 86_400;
const ANNOUNCE: &str = "_Autocrypt_SMA";

#[tokio::test(flavor = "current_thread")]
async fn silent_member_walks_active_stale_removed_and_stops() {
    let acc = Account::new();
    let (ca, cb, cc) = (
        ShiftClock::default(),
        ShiftClock::default(),
        ShiftClock::default(),
    );
    let mut a = acc.init("a", ca.clone()).await;
    let mut b = acc.init("b", cb.clone()).await;
    let mut c = acc.init("c", cc.clone()).await;
    acc.pair(&mut a, &mut b).await;
    acc.pair(&mut a, &mut c).await;
    // A pending device that never pairs.
    let d = acc.init("d", ShiftClock::default()).await;
    let (mut ta, mut tb, mut tc) = (
        acc.connect().await,
        acc.connect().await,
        acc.connect().await,
    );
    for _ in 0..2 {
        a.sync(&mut ta).await.expect("a sync");
        b.sync(&mut tb).await.expect("b sync");
        c.sync(&mut tc).await.expect("c sync");
    }
    let (b_id, c_id, d_id) = (b.id().clone(), c.id().clone(), d.id().clone());
    let b_inbox = b.inbox();
    let d_inbox = d.inbox();
    assert_eq!(acc.count(ANNOUNCE), 4, "one announcement per device");
    assert_eq!(a.expire_after().expect("policy"), 90 * DAY as u64);

    // 89 days later a and c come back; b stays silent (offline for less
    // than the policy): nobody is expired, and heartbeats replace the
    // announcements instead of adding to them.
    ca.set_offset(89 * DAY);
    cc.set_offset(89 * DAY);
    let r = c.sync(&mut tc).await.expect("c sync +89d");
    assert!(r.removed_devices.is_empty(), "{:?}", r.removed_devices);
    let r = a.gc(&mut ta, None).await.expect("a gc +89d");
    assert!(r.removed.is_empty(), "removed too early: {:?}", r.removed);
    assert_eq!(
        a.core().group().status_of(&b_id),
        Some(MemberStatus::Active)
    );
    assert_eq!(acc.count(ANNOUNCE), 4, "heartbeats replaced, not added");
    let seen = b.devices(&mut tb).await.expect("devices");
    let a_view = seen
        .iter()
        .find(|v| &v.device_id == a.id())
        .expect("a listed");
    let b_now = sma::clock::Clock::now(&cb);
    assert_eq!(
        a_view.last_seen,
        timefmt::rfc3339(a.info().announced_at.min(b_now + 86_400)),
        "b sees a's heartbeat from a's announcement, at most 24 h ahead of its own clock"
    );

    // 91 days: b (and the pending d) have been silent past the policy.
    ca.set_offset(91 * DAY);
    let seq_before = a.core().book().last_seq();
    let r = a.gc(&mut ta, None).await.expect("a gc +91d");
    let mut removed = r.removed.clone();
    removed.sort();
    let mut want = vec![b_id.to_string(), d_id.to_string()];
    want.sort();
    assert_eq!(removed, want);
    // The removal is replicated group state: two ops, stale then removed.
    let a_id = a.id().clone();
    let statuses: Vec<MemberStatus> = a
        .core()
        .book()
        .log()
        .range((a_id.clone(), seq_before + 1)..=(a_id, u64::MAX))
        .filter_map(|(_, e)| match e.op.change() {
            Some(Change::Member(rec)) if rec.id == b_id => Some(rec.status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, vec![MemberStatus::Stale, MemberStatus::Removed]);
    assert_eq!(
        a.core().group().status_of(&b_id),
        Some(MemberStatus::Removed)
    );
    assert_eq!(
        a.core().group().status_of(&c_id),
        Some(MemberStatus::Active)
    );
    let notices = common::server()
        .all_messages_on_disk(acc.index)
        .into_iter()
        .filter(|(path, bytes)| {
            path.contains(b_id.as_str()) && String::from_utf8_lossy(bytes).contains("kind=remove;")
        })
        .count();
    assert_eq!(
        notices, 1,
        "the expired member's inbox holds a's removal notice"
    );
    assert!(!acc.has_folder(&d_inbox), "silent pending inbox deleted");
    assert_eq!(acc.count(ANNOUNCE), 2, "only a and c are announced");

    // c (still at +89 d) learns the removal through sync.
    let r = c.sync(&mut tc).await.expect("c sync");
    assert!(
        r.events
            .iter()
            .any(|e| matches!(e, Event::DeviceRemoved { device_id } if *device_id == b_id)),
        "c reports b removed: {:?}",
        r.events
    );
    assert_eq!(
        c.core().group().status_of(&b_id),
        Some(MemberStatus::Removed)
    );
    assert!(
        !c.core().group().active_members().any(|m| m.id == b_id),
        "nobody seals to b any more"
    );

    // b comes back: it finds the signed notice, says so, deletes its own
    // inbox and stays removed.
    let err = b.sync(&mut tb).await.expect_err("b must be removed");
    assert_eq!(err.kind(), ErrorKind::Removed, "{err}");
    assert!(
        err.to_string().contains("was removed from the group"),
        "{err}"
    );
    assert_eq!(b.info().role, Role::Removed);
    let err = b.sync(&mut tb).await.expect_err("still removed");
    assert_eq!(err.kind().exit_code(), 4);
    assert!(
        !acc.has_folder(&b_inbox),
        "b deleted its inbox and never recreates it"
    );
    let err = sma::lifecycle::check_not_removed(b.home()).expect_err("persisted");
    assert_eq!(err.kind(), ErrorKind::Removed);
}

#[test]
fn durations_parse() {
    use sma::lifecycle::parse_duration;
    assert_eq!(parse_duration("90d").unwrap(), 90 * 86_400);
    assert_eq!(parse_duration("12h").unwrap(), 12 * 3_600);
    assert_eq!(parse_duration("30m").unwrap(), 1_800);
    assert_eq!(parse_duration("3s").unwrap(), 3);
    assert_eq!(parse_duration("1d12h").unwrap(), 86_400 + 12 * 3_600);
    for bad in ["", "90", "d", "0s", "5x", "-3s", "99999999999999999999d"] {
        let err = parse_duration(bad).expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::Usage, "{bad}");
    }
}

/// Two paired members `a` and `b` of a fresh account, each with a clock of
/// its own and a session, having synced with each other.
struct Two {
    acc: Account,
    a: sma::Device,
    b: sma::Device,
    ca: ShiftClock,
    cb: ShiftClock,
    ta: sma_imap::ImapSession,
    tb: sma_imap::ImapSession,
}

async fn two_synced(rounds: usize) -> Two {
    let acc = Account::new();
    let (ca, cb) = (ShiftClock::default(), ShiftClock::default());
    let mut a = acc.init("a", ca.clone()).await;
    let mut b = acc.init("b", cb.clone()).await;
    acc.pair(&mut a, &mut b).await;
    let (mut ta, mut tb) = (acc.connect().await, acc.connect().await);
    for _ in 0..rounds {
        a.sync(&mut ta).await.expect("a sync");
        b.sync(&mut tb).await.expect("b sync");
    }
    Two {
        acc,
        a,
        b,
        ca,
        cb,
        ta,
        tb,
    }
}

/// A received message from `addr` with an Autocrypt key, dated `now`.
fn keyed_observation(addr: &str, now: u64) -> sma_proto::autocrypt::Observation {
    sma_proto::autocrypt::Observation {
        from: addr.into(),
        effective_date: now,
        autocrypt: Some(sma_proto::autocrypt::AutocryptHeader {
            addr: addr.into(),
            prefer_encrypt: sma_proto::state::PreferEncrypt::Mutual,
            keydata: addr.bytes().cycle().take(64).collect(),
        }),
        gossip: Vec::new(),
    }
}

/// b is offline for 89 days while a keeps working: on its return b catches
/// up (the keyring change, the application message within the 30-day
/// cutoff), the message older than the cutoff is deleted undelivered, and
/// nobody has expired b.
#[tokio::test(flavor = "current_thread")]
async fn a_member_back_after_89_days_catches_up_and_stays() {
    use base64::Engine as _;

    let Two {
        acc,
        mut a,
        mut b,
        ca,
        cb,
        mut ta,
        mut tb,
    } = two_synced(2).await;
    let b_id = b.id().clone();

    // b is away. Day 5: a learns Dora's key and writes to b; day 70 again.
    ca.set_offset(5 * DAY);
    let dora = "dora@example.net";
    let seen = a
        .observe_all([keyed_observation(dora, sma::clock::Clock::now(&ca))])
        .expect("observe");
    assert_eq!(seen, vec![dora.to_owned()]);
    a.send(&mut ta, Some(&b_id), "text", b"day 5")
        .await
        .expect("send day 5");
    a.sync(&mut ta).await.expect("a sync day 5");
    ca.set_offset(70 * DAY);
    a.send(&mut ta, Some(&b_id), "text", b"day 70")
        .await
        .expect("send day 70");

    // Day 89: b is within the 90-day policy, so a keeps it.
    ca.set_offset(89 * DAY);
    let r = a.gc(&mut ta, None).await.expect("a gc +89d");
    assert!(r.removed.is_empty(), "b expired too early: {:?}", r.removed);
    assert_eq!(
        a.core().group().status_of(&b_id),
        Some(MemberStatus::Active)
    );

    // b comes back on day 89.
    cb.set_offset(89 * DAY);
    let msgs = b
        .recv(&mut tb, std::time::Duration::ZERO)
        .await
        .expect("b recv");
    let bodies: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| {
            base64::engine::general_purpose::STANDARD
                .decode(&m.body_b64)
                .expect("base64")
        })
        .collect();
    assert_eq!(
        bodies,
        vec![b"day 70".to_vec()],
        "the day-5 message is past the 30-day cutoff and is not delivered"
    );
    b.delivered(&msgs).expect("delivered");
    assert!(
        b.core().group().keyring().contains_key(dora),
        "b caught up with the keyring change made while it was away"
    );
    assert_eq!(
        b.core().group().status_of(&b_id),
        Some(MemberStatus::Active)
    );
    b.sync(&mut tb).await.expect("b sync");
    assert_eq!(
        acc.count(&b.inbox()),
        0,
        "b's inbox holds nothing after catching up (the old message was deleted)"
    );

    // a hears from b again: at day 91 (past 90 days after b's last sign of
    // life before its absence) b is not expired.
    a.sync(&mut ta).await.expect("a sync");
    ca.set_offset(91 * DAY);
    let r = a.gc(&mut ta, None).await.expect("a gc +91d");
    assert!(r.removed.is_empty(), "b is alive: {:?}", r.removed);
    assert_eq!(
        a.core().group().status_of(&b_id),
        Some(MemberStatus::Active)
    );
}

/// Acknowledged ops older than 7 days leave the log in a round that sends
/// nothing too, and the store drops them with it: the device reopened from
/// disk holds the log the running one holds.
#[tokio::test(flavor = "current_thread")]
async fn a_quiet_round_saves_the_ops_it_pruned() {
    let Two {
        acc,
        mut a,
        mut b,
        ca,
        cb,
        mut ta,
        mut tb,
    } = two_synced(0).await;
    a.observe_all([keyed_observation(
        "erin@example.net",
        sma::clock::Clock::now(&ca),
    )])
    .expect("observe");
    for _ in 0..3 {
        a.sync(&mut ta).await.expect("a sync");
        b.sync(&mut tb).await.expect("b sync");
    }
    let before = a.core().book().log().len();
    // Just before the 7 days: a round with heartbeats (and acks) each way.
    for c in [&ca, &cb] {
        c.set_offset(7 * DAY - 3_600);
    }
    b.sync(&mut tb).await.expect("b sync day 7");
    a.sync(&mut ta).await.expect("a sync day 7");
    // Two hours later nothing is due, but a's acknowledged ops are now
    // older than 7 days.
    ca.set_offset(7 * DAY + 3_600);
    let r = a.sync(&mut ta).await.expect("a quiet sync");
    assert_eq!(r.sent, 0, "a quiet round: {r:?}");
    let live = a.core().book().log().len();
    assert!(
        live < before,
        "acknowledged ops were pruned ({before} -> {live})"
    );
    let reopened = acc.open("a", ca.clone());
    assert_eq!(
        reopened.core().book().log().len(),
        live,
        "the store holds the log the running device holds"
    );
}

/// A sender whose clock runs 40 days fast: its message, replayed by the
/// provider 61 days later, is not delivered again (the receiver keeps the
/// id past the message's own Date, not only past its receipt).
#[tokio::test(flavor = "current_thread")]
async fn a_replay_from_a_fast_sender_is_not_delivered_twice() {
    use sma_imap::Transport;

    let Two {
        acc,
        mut a,
        mut b,
        ca,
        cb,
        mut ta,
        mut tb,
    } = two_synced(2).await;
    ca.set_offset(40 * DAY);
    let b_id = b.id().clone();
    a.send(&mut ta, Some(&b_id), "text", b"once")
        .await
        .expect("send");
    // The provider keeps a copy of everything in b's inbox.
    let inbox = b.inbox();
    let mut spy = acc.connect().await;
    spy.select(&inbox).await.expect("select");
    let uids: Vec<_> = spy
        .fetch_headers(sma_imap::UidRange::all())
        .await
        .expect("headers")
        .iter()
        .map(|h| h.uid)
        .collect();
    let copies: Vec<Vec<u8>> = spy
        .fetch_messages(&uids, 1 << 20)
        .await
        .expect("fetch")
        .into_iter()
        .filter_map(|m| m.body)
        .collect();
    assert!(!copies.is_empty());

    let got = b
        .recv(&mut tb, std::time::Duration::ZERO)
        .await
        .expect("recv");
    assert_eq!(got.len(), 1, "delivered once");
    b.delivered(&got).expect("delivered");

    // 61 days later (by b's clock, which is right; a's is still 40 days
    // ahead) b processes a new message, which also forgets ids older than
    // 60 days; then the provider puts the copies back.
    cb.set_offset(61 * DAY);
    ca.set_offset(101 * DAY);
    a.send(&mut ta, Some(&b_id), "text", b"later")
        .await
        .expect("send later");
    let later = b
        .recv(&mut tb, std::time::Duration::ZERO)
        .await
        .expect("recv later");
    assert_eq!(later.len(), 1, "{later:?}");
    b.delivered(&later).expect("delivered");
    for bytes in &copies {
        spy.append(&inbox, &[], bytes).await.expect("replay");
    }
    let again = b
        .recv(&mut tb, std::time::Duration::ZERO)
        .await
        .expect("recv");
    assert!(again.is_empty(), "replayed and delivered again: {again:?}");
}

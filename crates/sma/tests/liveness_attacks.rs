//! Liveness and relay attacks with a simulated clock on a real Dovecot:
//! in-process devices (`sma::Device`) whose clock the test shifts, and the
//! provider acting on the account through its own IMAP session.
//!
//! * The provider keeps deleting the remover's sync messages to one
//!   member: the removal still reaches it, relayed by another member once
//!   the relay delay (600 s for ops of an active origin) has passed.
//! * The provider deletes every announcement for 100 days: members that
//!   keep syncing are never expired (their sync messages are the evidence),
//!   while a member that fell silent at day 0 is.

mod common;

use std::time::Instant;

use common::{Account, ShiftClock};
use sma::events::Event;
use sma::{Device, ImapSession};
use sma_imap::{ImapError, Transport, UidRange};
use sma_proto::envelope::{peek_marker, Marker};
use sma_proto::state::MemberStatus;
use sma_proto::sync::RELAY_AFTER_SECS;
use sma_proto::DeviceId;

const DAY: i64 = 86_400;
const ANNOUNCE: &str = "_Autocrypt_SMA";

/// As the provider: deletes the messages of `folder` whose marker satisfies
/// `pred` (every message with a marker, for `|_| true`); returns how many.
async fn delete_where(t: &mut ImapSession, folder: &str, pred: impl Fn(&Marker) -> bool) -> usize {
    match t.select(folder).await {
        Ok(_) => {}
        Err(ImapError::NoSuchFolder { .. }) => return 0,
        Err(e) => panic!("provider: select {folder}: {e}"),
    }
    let headers = t
        .fetch_headers(UidRange::all())
        .await
        .expect("provider: fetch headers");
    let uids: Vec<u32> = headers
        .iter()
        .filter(|h| peek_marker(&h.header).is_ok_and(|m| pred(&m)))
        .map(|h| h.uid)
        .collect();
    if !uids.is_empty() {
        t.delete_messages(&uids)
            .await
            .expect("provider: delete messages");
    }
    uids.len()
}

fn status(dev: &Device, id: &DeviceId) -> Option<MemberStatus> {
    dev.core().group().status_of(id)
}

fn account_key(dev: &Device) -> String {
    dev.core()
        .group()
        .current_account_key()
        .expect("an account key")
        .fingerprint
        .clone()
}

/// A removes LOST (with a new account key). Before every one of C's syncs
/// the provider deletes every message A put in C's inbox — A's removal sync
/// and each copy A sends again when it finds it vanished. B relays the
/// removal (signed by A) to C once it has held it for the relay delay; C
/// learns the removal and the new key, and its acknowledgement reaches A.
/// Every device syncs every 5 minutes of shifted time.
#[tokio::test(flavor = "current_thread")]
async fn the_relay_delivers_a_removal_the_provider_keeps_deleting() {
    let started = Instant::now();
    let acc = Account::new();
    let clock = ShiftClock::default();
    let mut a = acc.init("a", clock.clone()).await;
    let mut b = acc.init("b", clock.clone()).await;
    let mut c = acc.init("c", clock.clone()).await;
    let mut lost = acc.init("lost", clock.clone()).await;
    acc.pair(&mut a, &mut b).await;
    acc.pair(&mut a, &mut c).await;
    acc.pair(&mut a, &mut lost).await;
    let (mut ta, mut tb, mut tc, mut tl) = (
        acc.connect().await,
        acc.connect().await,
        acc.connect().await,
        acc.connect().await,
    );
    for _ in 0..2 {
        a.sync(&mut ta).await.expect("a sync");
        b.sync(&mut tb).await.expect("b sync");
        c.sync(&mut tc).await.expect("c sync");
        lost.sync(&mut tl).await.expect("lost sync");
    }
    let mut provider = acc.connect().await;
    let (a_id, b_id, lost_id) = (a.id().clone(), b.id().clone(), lost.id().clone());
    let c_inbox = c.inbox();
    let from_a = |m: &Marker| m.from == a_id;

    let report = a
        .remove(&mut ta, &lost_id, true)
        .await
        .expect("a removes lost");
    assert_eq!(report.removed, vec![lost_id.to_string()]);
    let new_key = account_key(&a);
    assert_ne!(account_key(&c), new_key);

    let step_secs = 300;
    let mut deleted = 0;
    let mut learnt = None;
    for step in 0..8i64 {
        clock.set_offset(step * step_secs);
        a.sync(&mut ta).await.expect("a sync");
        b.sync(&mut tb).await.expect("b sync");
        deleted += delete_where(&mut provider, &c_inbox, from_a).await;
        let r = c.sync(&mut tc).await.expect("c sync");
        if status(&c, &lost_id) == Some(MemberStatus::Removed) {
            assert!(
                r.events
                    .iter()
                    .any(|e| matches!(e, Event::Applied { from, .. } if *from == b_id)),
                "B's message carried it: {:?}",
                r.events
            );
            assert!(
                r.events.iter().any(
                    |e| matches!(e, Event::DeviceRemoved { device_id } if *device_id == lost_id)
                ),
                "{:?}",
                r.events
            );
            learnt = Some(step);
            break;
        }
    }
    let step = learnt.expect("C never learnt the removal");
    assert!(
        step * step_secs >= RELAY_AFTER_SECS as i64,
        "relayed only after the relay delay (step {step})"
    );
    assert!(
        deleted >= 2,
        "the provider deleted A's removal sync and at least one copy sent again ({deleted})"
    );
    let deleted_before = deleted;
    assert_eq!(account_key(&c), new_key, "C has the new account key");
    assert_eq!(status(&c, &a_id), Some(MemberStatus::Active));
    // C's messages are left alone: its acknowledgement reaches A with its
    // next message to A (C owes A no acknowledgement, so that is its next
    // heartbeat, within a day), while the provider goes on deleting A's.
    let mut acked_at = None;
    for hours in [0, 6, 12, 18, 25] {
        clock.set_offset(step * step_secs + hours * 3_600);
        b.sync(&mut tb).await.expect("b sync");
        deleted += delete_where(&mut provider, &c_inbox, from_a).await;
        c.sync(&mut tc).await.expect("c sync");
        assert_eq!(status(&c, &lost_id), Some(MemberStatus::Removed));
        a.sync(&mut ta).await.expect("a sync");
        if a.engine().pending_removals().is_empty() {
            acked_at = Some(hours);
            break;
        }
    }
    let acked_at = acked_at
        .unwrap_or_else(|| panic!("A still waits for C: {:?}", a.engine().pending_removals()));
    eprintln!("relay test: A saw C's acknowledgement {acked_at} h after C learnt the removal");
    eprintln!(
        "relay test: C learnt the removal at +{} s of shifted time after {deleted_before} deletions ({deleted} in all); {:.1} s",
        step * step_secs,
        started.elapsed().as_secs_f64()
    );
}

/// Members a, b, c sync every ten days (of shifted time) for 100 days, and
/// before every sync the provider deletes every announcement. A fourth
/// member, d, falls silent at day 0. With the default 90-day policy, `gc`
/// at day 91 expires d and only d; at day 100 nobody else is expired, and
/// every member still lists a, b and c as active.
#[tokio::test(flavor = "current_thread")]
async fn deleting_every_announcement_for_100_days_expires_only_the_silent() {
    let started = Instant::now();
    let acc = Account::new();
    let clock = ShiftClock::default();
    let mut a = acc.init("a", clock.clone()).await;
    let mut b = acc.init("b", clock.clone()).await;
    let mut c = acc.init("c", clock.clone()).await;
    let mut d = acc.init("d", clock.clone()).await;
    acc.pair(&mut a, &mut b).await;
    acc.pair(&mut a, &mut c).await;
    acc.pair(&mut a, &mut d).await;
    let mut members: Vec<(Device, ImapSession)> = Vec::new();
    let mut td = acc.connect().await;
    for dev in [a, b, c] {
        let t = acc.connect().await;
        members.push((dev, t));
    }
    for _ in 0..2 {
        for (dev, t) in members.iter_mut() {
            dev.sync(t).await.expect("sync");
        }
        d.sync(&mut td).await.expect("d sync");
    }
    let d_id = d.id().clone();
    drop(d); // d falls silent at day 0
    let ids: Vec<DeviceId> = members.iter().map(|(dev, _)| dev.id().clone()).collect();
    assert_eq!(
        members[0].0.expire_after().expect("policy"),
        90 * DAY as u64
    );
    let mut provider = acc.connect().await;
    let mut deleted = 0;

    for day in [10, 20, 30, 40, 50, 60, 70, 80, 89] {
        clock.set_offset(day * DAY);
        for (dev, t) in members.iter_mut() {
            deleted += delete_where(&mut provider, ANNOUNCE, |_| true).await;
            let r = dev.sync(t).await.expect("sync");
            assert!(
                r.removed_devices.is_empty(),
                "day {day}: {} expired {:?}",
                dev.id(),
                r.removed_devices
            );
        }
    }
    assert!(
        deleted >= 27,
        "every step re-announced and the provider deleted it ({deleted})"
    );
    for (dev, _) in &members {
        assert_eq!(status(dev, &d_id), Some(MemberStatus::Active), "day 89");
    }

    // Day 91: the control device has been silent past the policy.
    clock.set_offset(91 * DAY);
    deleted = delete_where(&mut provider, ANNOUNCE, |_| true).await;
    assert!(deleted >= 1);
    let (first, t) = &mut members[0];
    let r = first.gc(t, None).await.expect("gc");
    assert_eq!(
        r.removed,
        vec![d_id.to_string()],
        "gc at day 91 expires d only"
    );
    for (dev, t) in members.iter_mut().skip(1) {
        delete_where(&mut provider, ANNOUNCE, |_| true).await;
        let r = dev.gc(t, None).await.expect("gc");
        assert!(r.removed.is_empty(), "{} expired {:?}", dev.id(), r.removed);
    }

    // Day 100: still nobody else.
    clock.set_offset(100 * DAY);
    for (dev, t) in members.iter_mut() {
        delete_where(&mut provider, ANNOUNCE, |_| true).await;
        let r = dev.sync(t).await.expect("sync");
        assert!(r.removed_devices.is_empty(), "{:?}", r.removed_devices);
    }
    for (dev, t) in members.iter_mut() {
        delete_where(&mut provider, ANNOUNCE, |_| true).await;
        let r = dev.gc(t, None).await.expect("gc");
        assert!(r.removed.is_empty(), "{} expired {:?}", dev.id(), r.removed);
    }
    for (dev, _) in &members {
        for id in &ids {
            assert_eq!(
                status(dev, id),
                Some(MemberStatus::Active),
                "{} sees {id}",
                dev.id()
            );
        }
        assert_eq!(status(dev, &d_id), Some(MemberStatus::Removed));
    }
    eprintln!(
        "announcement deletion test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

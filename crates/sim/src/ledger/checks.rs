//! The final checks, once the world is quiet: convergence, membership,
//! removals, keyrings, deliveries and the server's footprint.

use std::collections::{BTreeMap, BTreeSet};

use sma::DeviceId;
use sma_proto::envelope::{peek_marker, Kind};
use sma_proto::state::{GroupState, MemberStatus, PeerState};

use super::{departed, live_states, tainted, Ledger};
use crate::world::World;

/// The final checks, once the world is quiet.
pub fn check_final(w: &World, ledger: &Ledger) -> Result<(), String> {
    let all = live_states(w);
    let gone = ledger.gone(&all, &departed(w));
    let stranded = ledger.stranded(&all, &gone);
    let live: Vec<(DeviceId, GroupState)> = all
        .iter()
        .filter(|(id, _)| !gone.contains(id))
        .cloned()
        .collect();
    let tainted = tainted(w, &gone);
    let Some((first_id, first)) = live.iter().find(|(id, _)| !tainted.contains(id)) else {
        return Err(format!(
            "no live member at the end (live: {:?}; gone: {gone:?}; tainted: {tainted:?})",
            live.iter().map(|(id, _)| id).collect::<Vec<_>>()
        ));
    };
    let want = ledger.comparable(first, &stranded);
    for (id, g) in &live {
        ledger.check_state(id.as_str(), g)?;
        if tainted.contains(id) {
            continue;
        }
        let got = ledger.comparable(g, &stranded);
        if got != want {
            return Err(format!(
                "states did not converge: {first_id} and {id} differ\n{}",
                describe_difference(first, g)
            ));
        }
    }
    let live_ids: BTreeSet<DeviceId> = live.iter().map(|(id, _)| id.clone()).collect();
    for id in live_ids
        .iter()
        .chain(ledger.joined.iter().filter(|j| !gone.contains(*j)))
    {
        if !first.is_active_member(id, &ledger.fingerprints[id]) {
            return Err(format!(
                "{id} joined but is not an active member everywhere"
            ));
        }
    }
    check_removals(ledger, &all, &live, &gone)?;
    check_keyring(ledger, first, &gone, &stranded)?;
    check_deliveries(w, ledger, &live_ids, &gone)?;
    check_footprint(w, &live_ids)
}

/// A removal `remove` reported is held by every live member (of `all`,
/// the states of every device): relaying delivers it even when the
/// provider deleted the remover's messages. (Unless the remover itself was
/// removed concurrently and its messages were refused everywhere: then the
/// removal is lost everywhere alike.)
fn check_removals(
    ledger: &Ledger,
    all: &[(DeviceId, GroupState)],
    live: &[(DeviceId, GroupState)],
    gone: &BTreeSet<DeviceId>,
) -> Result<(), String> {
    for (id, _) in ledger.removed.iter().filter(|(_, by)| !gone.contains(*by)) {
        for (member, g) in live {
            if g.status_of(id) != Some(MemberStatus::Removed) {
                let everywhere: Vec<String> = all
                    .iter()
                    .map(|(m, g)| format!("{m}: {:?}", g.status_of(id)))
                    .collect();
                return Err(format!(
                    "{id} was removed (reported by `remove`) but live member {member} does not hold the removal \
                     (status of {id} everywhere: {everywhere:?}; gone: {gone:?})"
                ));
            }
        }
    }
    Ok(())
}

/// Every acknowledged application message reached each live recipient,
/// unless the server lost it or it was old enough to expire (a second
/// delivery is caught as it happens, by [`Ledger::deliver`]).
fn check_deliveries(
    w: &World,
    ledger: &Ledger,
    live_ids: &BTreeSet<DeviceId>,
    gone: &BTreeSet<DeviceId>,
) -> Result<(), String> {
    let lost = lost_message_ids(w);
    for (body, sent) in ledger.acked.iter().filter(|(_, s)| !gone.contains(&s.from)) {
        for r in sent.to.iter().filter(|r| live_ids.contains(*r)) {
            let n = ledger
                .delivered
                .get(&(r.clone(), body.clone()))
                .copied()
                .unwrap_or(0);
            let too_old = ledger.may_expire.contains(&(r.clone(), body.clone()));
            if n == 0 && !lost.contains(&sent.message_id) && !too_old {
                return Err(format!(
                    "acknowledged message {:?} ({}) from {} never reached {r}; {}",
                    String::from_utf8_lossy(body),
                    sent.message_id,
                    sent.from,
                    whereabouts(w, &sent.message_id)
                ));
            }
        }
    }
    Ok(())
}

/// Every keyring change committed by a device that stayed a member reached
/// the live members: their entry equals the merge of those changes, or, where
/// a removed device also wrote, contains it.
fn check_keyring(
    ledger: &Ledger,
    g: &GroupState,
    gone: &BTreeSet<DeviceId>,
    stranded: &BTreeSet<DeviceId>,
) -> Result<(), String> {
    let mut want: BTreeMap<&str, PeerState> = BTreeMap::new();
    let mut touched_by_gone: BTreeSet<&str> = BTreeSet::new();
    for (origin, p) in &ledger.keyring {
        // A device that is gone may have written ops no one received
        // before it went; what any live member received, all hold (the
        // states are equal, checked above).
        if gone.contains(origin) || stranded.contains(origin) {
            touched_by_gone.insert(&p.addr);
            continue;
        }
        match want.get_mut(p.addr.as_str()) {
            Some(w) => {
                w.merge(p);
            }
            None => {
                want.insert(&p.addr, p.clone());
            }
        }
    }
    for (addr, want) in &want {
        let Some(got) = g.keyring().get(*addr) else {
            return Err(format!(
                "acknowledged keyring change for {addr} did not reach the live members"
            ));
        };
        let ok = if touched_by_gone.contains(addr) {
            let mut joined = got.clone();
            joined.merge(want);
            same_peer(&joined, got)
        } else {
            same_peer(got, want)
        };
        if !ok {
            return Err(format!(
                "acknowledged keyring change for {addr} did not reach the live members: want {want:?}, got {got:?}"
            ));
        }
    }
    Ok(())
}

fn same_peer(a: &PeerState, b: &PeerState) -> bool {
    (
        a.last_seen,
        a.autocrypt_timestamp,
        &a.public_key,
        a.prefer_encrypt,
        &a.stamp,
    ) == (
        b.last_seen,
        b.autocrypt_timestamp,
        &b.public_key,
        b.prefer_encrypt,
        &b.stamp,
    )
}

pub(crate) fn describe_difference(a: &GroupState, b: &GroupState) -> String {
    let mut out = String::new();
    if a.members() != b.members() {
        out += &format!(
            "members: {:?}\n   vs    {:?}\n",
            a.members()
                .values()
                .map(|m| (m.id.as_str(), m.status))
                .collect::<Vec<_>>(),
            b.members()
                .values()
                .map(|m| (m.id.as_str(), m.status))
                .collect::<Vec<_>>()
        );
        for (id, ma) in a.members() {
            if let Some(mb) = b.members().get(id) {
                if ma != mb {
                    out += &format!("  record {id}: {ma:?}\n     vs {mb:?}\n");
                }
            }
        }
    }
    if a.keyring() != b.keyring() {
        let ka: BTreeSet<_> = a.keyring().keys().collect();
        let kb: BTreeSet<_> = b.keyring().keys().collect();
        out += &format!(
            "keyring: {} vs {} entries; only left {:?}, only right {:?}\n",
            ka.len(),
            kb.len(),
            ka.difference(&kb).collect::<Vec<_>>(),
            kb.difference(&ka).collect::<Vec<_>>()
        );
    }
    if a.account_keys() != b.account_keys() {
        out += "account keys differ\n";
    }
    if a.prefer_encrypt() != b.prefer_encrypt() {
        out += "prefer-encrypt differs\n";
    }
    out
}

/// Where a message id can still be found: on the server (folder, UID) or
/// queued on a device. For failure reports.
fn whereabouts(w: &World, id: &str) -> String {
    let s = w.net.lock();
    let on_server: Vec<String> = s
        .server
        .all_messages()
        .filter(|(_, _, m)| peek_marker(m.header()).is_ok_and(|k| k.id.as_str() == id))
        .map(|(f, u, _)| format!("{f} UID {u}"))
        .collect();
    let delayed = s
        .server
        .delayed
        .iter()
        .filter(|d| peek_marker(&d.bytes).is_ok_and(|k| k.id.as_str() == id))
        .count();
    let queued: Vec<String> = w
        .slots
        .iter()
        .filter_map(|sl| sl.dev.as_ref())
        .filter(|d| {
            d.pending_messages()
                .is_ok_and(|q| q.iter().any(|m| m.message_id == id))
        })
        .map(|d| d.id().to_string())
        .collect();
    format!("on the server: {on_server:?}, held back: {delayed}, queued on: {queued:?}")
}

/// Message ids of messages the server lost (their folder was deleted).
fn lost_message_ids(w: &World) -> BTreeSet<String> {
    let s = w.net.lock();
    s.server
        .lost
        .iter()
        .filter_map(|(_, bytes)| peek_marker(bytes).ok())
        .map(|m| m.id.to_string())
        .collect()
}

/// Footprint at quiescence: in each live member's inbox at most one
/// (ack-only) sync message per other live member and nothing else from
/// live members; one announcement per live member.
fn check_footprint(w: &World, live: &BTreeSet<DeviceId>) -> Result<(), String> {
    let s = w.net.lock();
    for slot in &w.slots {
        let Some(dev) = slot.dev.as_ref().filter(|d| live.contains(d.id())) else {
            continue;
        };
        let inbox = dev.inbox();
        let announce = dev.info().folders.announce();
        let Some(f) = s.server.folder(&inbox) else {
            return Err(format!("the inbox of live member {} is missing", dev.id()));
        };
        let mut per_sender: BTreeMap<DeviceId, usize> = BTreeMap::new();
        for m in f.messages.values() {
            let Ok(marker) = peek_marker(m.header()) else {
                continue;
            };
            if !live.contains(&marker.from) {
                continue;
            }
            if marker.kind != Kind::Sync {
                return Err(format!(
                    "inbox of {} still holds a {} message from {} at quiescence",
                    dev.id(),
                    marker.kind,
                    marker.from
                ));
            }
            *per_sender.entry(marker.from).or_insert(0) += 1;
        }
        if let Some((from, n)) = per_sender.iter().find(|(_, n)| **n > 1) {
            return Err(format!(
                "inbox of {} holds {n} sync messages from {from} at quiescence (at most 1)",
                dev.id()
            ));
        }
        let own = s
            .server
            .folder(&announce)
            .map(|f| {
                f.messages
                    .values()
                    .filter_map(|m| peek_marker(m.header()).ok())
                    .filter(|m| m.kind == Kind::Announce && &m.from == dev.id())
                    .count()
            })
            .unwrap_or(0);
        if own != 1 {
            return Err(format!(
                "live member {} has {own} announcements at quiescence (exactly 1)",
                dev.id()
            ));
        }
    }
    Ok(())
}

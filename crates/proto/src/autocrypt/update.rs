//! The Autocrypt Level 1 peer-state update algorithm (§"Updating Autocrypt
//! Peer State" and §"Updating Autocrypt Peer State from Key Gossip"), as
//! pure functions producing replicated deltas.
//!
//! # Order (in)dependence and what the CRDT does
//!
//! Run sequentially, Level 1 yields `last_seen` = the newest effective date
//! of any message, `autocrypt_timestamp` = the newest effective date of a
//! message with a valid header, and `public_key`/`prefer_encrypt` from that
//! newest header — all independent of processing order. (A message skipped
//! by step 1 is older than `autocrypt_timestamp`, hence older than
//! `last_seen`, so skipping it never changes `last_seen`.) Gossip likewise
//! keeps the key of the newest gossip.
//!
//! Level 1 *is* order-dependent in one case: two headers (or two gossip
//! headers) with the **same** effective date and different content; step 1
//! only skips strictly older messages, so whichever is processed last wins.
//! The CRDT resolves this with the HLC stamp of the observation: the
//! register whose `(timestamp, stamp)` is greatest wins. Each device's own
//! stamps increase, so on one device this is exactly "processed last wins";
//! across devices it is "processed last in HLC order". The merged state is
//! therefore the Level 1 outcome of processing every observation of every
//! device sequentially in HLC-stamp order, whatever order the sync engine
//! delivers them in.
//!
//! One deliberate refinement: re-observing a header identical to the stored
//! one at the same date (a re-scan of the same message) changes nothing and
//! produces no delta, so re-scans cost no sync traffic.

use std::collections::BTreeMap;

use crate::autocrypt::header::{canonical_addr, AutocryptHeader};
use crate::hlc::Hlc;
use crate::state::{PeerState, PreferEncrypt};

/// One received message as the update algorithm sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The From address (canonicalised by [`observe`]).
    pub from: String,
    /// The effective date (see [`effective_date`]), Unix seconds.
    pub effective_date: u64,
    /// The single valid `Autocrypt` header, if any.
    pub autocrypt: Option<AutocryptHeader>,
    /// The valid `Autocrypt-Gossip` headers.
    pub gossip: Vec<AutocryptHeader>,
}

/// The effective date of a message: its `Date`, or the time of receipt if
/// the date is missing or in the future.
pub fn effective_date(date: Option<u64>, receipt: u64) -> u64 {
    match date {
        Some(d) if d <= receipt => d,
        _ => receipt,
    }
}

/// Level 1 update of `peer` for a message of effective date `date` carrying
/// `header` (`(base64 keydata, prefer-encrypt)`) or none. Returns the new
/// state, or `None` when nothing changes. `stamp` must be fresh (greater
/// than every stamp this device has seen).
pub fn update_autocrypt(
    peer: &PeerState,
    date: u64,
    header: Option<(&str, PreferEncrypt)>,
    stamp: &Hlc,
) -> Option<PeerState> {
    // 1. Older than the newest header seen: ignored.
    if date < peer.autocrypt_timestamp {
        return None;
    }
    let mut next = peer.clone();
    // 2. last_seen.
    next.last_seen = next.last_seen.max(date);
    // 3.–6. The header, if any, replaces the Autocrypt register.
    if let Some((key, prefer)) = header {
        let same = date == peer.autocrypt_timestamp
            && peer.public_key.as_deref() == Some(key)
            && peer.prefer_encrypt == prefer;
        if !same {
            next.autocrypt_timestamp = date;
            next.public_key = Some(key.to_owned());
            next.prefer_encrypt = prefer;
            next.stamp = Some(stamp.clone());
        }
    }
    (next != *peer).then_some(next)
}

/// Level 1 gossip update of `peer` (steps 2–4; step 1, the recipient
/// check, is done when the headers are selected).
pub fn update_gossip(peer: &PeerState, date: u64, key: &str, stamp: &Hlc) -> Option<PeerState> {
    if peer.gossip_timestamp > date {
        return None;
    }
    if peer.gossip_timestamp == date && peer.gossip_key.as_deref() == Some(key) {
        return None;
    }
    let mut next = peer.clone();
    next.gossip_timestamp = date;
    next.gossip_key = Some(key.to_owned());
    next.gossip_stamp = Some(stamp.clone());
    Some(next)
}

/// Runs the update algorithm for one message against `keyring` and returns
/// the changed peer states (whole, ready to be replicated as
/// `Change::Peer`). `stamp` is the fresh stamp of this observation.
pub fn observe(
    keyring: &BTreeMap<String, PeerState>,
    obs: &Observation,
    stamp: &Hlc,
) -> Vec<PeerState> {
    let mut changed: BTreeMap<String, PeerState> = BTreeMap::new();
    let current = |changed: &BTreeMap<String, PeerState>, addr: &str| -> PeerState {
        changed
            .get(addr)
            .or_else(|| keyring.get(addr))
            .cloned()
            .unwrap_or_else(|| PeerState::new(addr))
    };
    let from = canonical_addr(&obs.from);
    let key = obs.autocrypt.as_ref().map(|h| h.keydata_b64());
    let header = obs
        .autocrypt
        .as_ref()
        .zip(key.as_deref())
        .map(|(h, k)| (k, h.prefer_encrypt));
    let peer = current(&changed, &from);
    if let Some(next) = update_autocrypt(&peer, obs.effective_date, header, stamp) {
        changed.insert(from, next);
    }
    for g in &obs.gossip {
        let addr = canonical_addr(&g.addr);
        let peer = current(&changed, &addr);
        if let Some(next) = update_gossip(&peer, obs.effective_date, &g.keydata_b64(), stamp) {
            changed.insert(addr, next);
        }
    }
    changed.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DeviceId;

    fn stamp(ms: u64) -> Hlc {
        Hlc {
            ms,
            counter: 0,
            device: DeviceId::parse("0000000000000001").unwrap(),
        }
    }

    fn header(addr: &str, key: u8, mutual: bool) -> AutocryptHeader {
        AutocryptHeader {
            addr: addr.into(),
            prefer_encrypt: if mutual {
                PreferEncrypt::Mutual
            } else {
                PreferEncrypt::NoPreference
            },
            keydata: vec![key; 8],
        }
    }

    fn obs(date: u64, h: Option<AutocryptHeader>) -> Observation {
        Observation {
            from: "Bob@Example.org".into(),
            effective_date: date,
            autocrypt: h,
            gossip: vec![],
        }
    }

    fn run(ring: &mut BTreeMap<String, PeerState>, o: &Observation, s: u64) -> usize {
        let out = observe(ring, o, &stamp(s));
        let n = out.len();
        for p in out {
            ring.insert(p.addr.clone(), p);
        }
        n
    }

    #[test]
    fn effective_date_rules() {
        assert_eq!(effective_date(Some(10), 20), 10);
        assert_eq!(effective_date(Some(30), 20), 20);
        assert_eq!(effective_date(None, 20), 20);
    }

    #[test]
    fn level1_steps() {
        let mut ring = BTreeMap::new();
        // A message without a header only bumps last_seen.
        run(&mut ring, &obs(100, None), 1);
        let p = &ring["bob@example.org"];
        assert_eq!((p.last_seen, p.autocrypt_timestamp), (100, 0));
        assert!(p.public_key.is_none());
        // A header sets the register.
        run(
            &mut ring,
            &obs(200, Some(header("bob@example.org", 1, true))),
            2,
        );
        let p = ring["bob@example.org"].clone();
        assert_eq!((p.last_seen, p.autocrypt_timestamp), (200, 200));
        assert_eq!(p.prefer_encrypt, PreferEncrypt::Mutual);
        // An older message is ignored entirely, header or not.
        assert_eq!(run(&mut ring, &obs(150, Some(header("b", 2, false))), 3), 0);
        assert_eq!(run(&mut ring, &obs(150, None), 4), 0);
        // A newer message without a header bumps last_seen only.
        run(&mut ring, &obs(300, None), 5);
        let q = &ring["bob@example.org"];
        assert_eq!((q.last_seen, q.autocrypt_timestamp), (300, 200));
        assert_eq!(q.public_key, p.public_key);
        // Same date, other key: processed last wins. Same header again: no change.
        run(
            &mut ring,
            &obs(200, Some(header("bob@example.org", 3, false))),
            6,
        );
        assert_eq!(
            ring["bob@example.org"].public_key,
            Some(header("x", 3, false).keydata_b64())
        );
        assert_eq!(
            run(
                &mut ring,
                &obs(200, Some(header("bob@example.org", 3, false))),
                7
            ),
            0
        );
    }

    #[test]
    fn gossip_steps() {
        let mut ring = BTreeMap::new();
        let mut o = obs(100, None);
        o.gossip = vec![header("carol@example.org", 1, false)];
        run(&mut ring, &o, 1);
        assert_eq!(ring["carol@example.org"].gossip_timestamp, 100);
        assert_eq!(ring["carol@example.org"].last_seen, 0);
        // Older gossip is ignored; equal-date gossip replaces.
        let mut older = obs(50, None);
        older.gossip = vec![header("carol@example.org", 2, false)];
        run(&mut ring, &older, 2);
        assert_eq!(
            ring["carol@example.org"].gossip_key,
            Some(header("x", 1, false).keydata_b64())
        );
        let mut same = obs(100, None);
        same.gossip = vec![header("carol@example.org", 3, false)];
        run(&mut ring, &same, 3);
        assert_eq!(
            ring["carol@example.org"].gossip_key,
            Some(header("x", 3, false).keydata_b64())
        );
    }
}

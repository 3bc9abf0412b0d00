//! What the devices were asked to do and what they reported, and the
//! invariants checked against it.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use sma::{AppMessage, DeviceId};
use sma_proto::state::{
    AccountKeyRecord, GroupState, Lww, MemberRecord, MemberStatus, PeerState, PreferEncrypt,
};

use crate::world::World;

pub use crate::taint::tainted;

mod checks;
pub use checks::check_final;
pub(crate) use checks::describe_difference;

/// An application message `send` acknowledged.
#[derive(Clone, Debug)]
pub struct SentApp {
    /// Its message id.
    pub message_id: String,
    /// The sender.
    pub from: DeviceId,
    /// The recipients `send` reported.
    pub to: Vec<DeviceId>,
}

/// Expectations and observations.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Devices that may legitimately be members: founders, and joiners that
    /// were given the code a member showed.
    pub legit: BTreeSet<DeviceId>,
    /// The real certificate fingerprint of every device.
    pub fingerprints: BTreeMap<DeviceId, String>,
    /// Joiners whose `join` succeeded.
    pub joined: BTreeSet<DeviceId>,
    /// Every keyring change a member committed, with its origin.
    pub keyring: Vec<(DeviceId, PeerState)>,
    /// Devices a `remove` or `leave` was attempted for (it may or may not
    /// have taken effect).
    pub removal_attempted: BTreeSet<DeviceId>,
    /// Devices a `remove` reported as done, with the remover.
    pub removed: BTreeMap<DeviceId, DeviceId>,
    /// Devices that started a `remove`.
    pub removers: BTreeSet<DeviceId>,
    /// Per joined device, the member whose welcome it installed.
    pub sponsor: BTreeMap<DeviceId, DeviceId>,
    /// Addresses only rogue devices ever wrote.
    pub rogue_addrs: BTreeSet<String>,
    /// Every body a `send` was attempted with, and by whom.
    pub attempted: BTreeMap<Vec<u8>, DeviceId>,
    /// Bodies of acknowledged sends.
    pub acked: BTreeMap<Vec<u8>, SentApp>,
    /// How often each device got each body.
    pub delivered: BTreeMap<(DeviceId, Vec<u8>), u32>,
    /// Account keys founders generated (fingerprints).
    pub account_keys: BTreeSet<String>,
    /// (Recipient, body) of messages that waited for their recipient about
    /// 30 days or more by its clock: it may delete them undelivered.
    pub may_expire: BTreeSet<(DeviceId, Vec<u8>)>,
}

impl Ledger {
    /// Records a delivery to `to`; fails on a second delivery or on a body
    /// nobody sent.
    pub fn deliver(&mut self, to: &DeviceId, m: &AppMessage) -> Result<(), String> {
        let body = base64::engine::general_purpose::STANDARD
            .decode(&m.body_b64)
            .map_err(|e| format!("delivered body is not base64: {e}"))?;
        let Some(sender) = self.attempted.get(&body) else {
            return Err(format!(
                "device {to} got a message nobody sent: {:?}",
                String::from_utf8_lossy(&body)
            ));
        };
        if sender.as_str() != m.from {
            return Err(format!(
                "device {to} got {:?} as from {}, but {sender} sent it",
                String::from_utf8_lossy(&body),
                m.from
            ));
        }
        if sender == to {
            return Err(format!("device {to} got its own message"));
        }
        let n = self
            .delivered
            .entry((to.clone(), body.clone()))
            .or_insert(0);
        *n += 1;
        if *n > 1 {
            return Err(format!(
                "device {to} got {:?} {} times (at most once violated)",
                String::from_utf8_lossy(&body),
                n
            ));
        }
        Ok(())
    }

    /// Records a committed keyring change.
    pub fn committed(&mut self, origin: &DeviceId, p: &PeerState) {
        self.keyring.push((origin.clone(), p.clone()));
    }

    /// Safety, checked whenever a device comes back from an operation:
    /// nobody but legitimate devices is a member, every member record
    /// carries the device's real certificate, nothing a rogue wrote is in
    /// the keyring, and the account key is one a founder made.
    pub fn check_state(&self, who: &str, g: &GroupState) -> Result<(), String> {
        for m in g.members().values() {
            if m.status == MemberStatus::Active && !self.legit.contains(&m.id) {
                return Err(format!(
                    "{who} lists {} as an active member, but it never paired",
                    m.id
                ));
            }
            if let Some(f) = self.fingerprints.get(&m.id) {
                if *f != m.fingerprint {
                    return Err(format!(
                        "{who} holds a member record for {} with a foreign certificate",
                        m.id
                    ));
                }
            } else {
                return Err(format!("{who} lists unknown device {}", m.id));
            }
        }
        if let Some(addr) = g.keyring().keys().find(|a| self.rogue_addrs.contains(*a)) {
            return Err(format!(
                "{who} applied keyring entry {addr} forged by a non-member"
            ));
        }
        if let Some(k) = g.current_account_key() {
            // Founders' keys, and rotations by legitimate members (a remove
            // interrupted by a crash may have sent its new key before it
            // could report it).
            if !self.account_keys.contains(&k.fingerprint) && !self.legit.contains(&k.stamp.device)
            {
                return Err(format!(
                    "{who} holds an account key no founder or member made"
                ));
            }
        }
        Ok(())
    }
}

/// The part of a group state every live member must agree on: the whole
/// replicated state (records, keyring entries and account keys written by
/// devices removed since included: relaying makes them converge too),
/// except what stranded joiners wrote, whom no live member can ever accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comparable {
    members: BTreeMap<DeviceId, MemberRecord>,
    keyring: BTreeMap<String, PeerState>,
    account_keys: BTreeMap<u32, AccountKeyRecord>,
    prefer_encrypt: Lww<PreferEncrypt>,
}

/// The honest devices that are members by their own account, with their
/// state.
pub fn live_states(w: &World) -> Vec<(DeviceId, GroupState)> {
    w.slots
        .iter()
        .filter(|s| s.is_member())
        .filter_map(|s| {
            let d = s.dev.as_ref()?;
            Some((d.id().clone(), d.core().group().clone()))
        })
        .collect()
}

impl Ledger {
    /// Devices that are not live members at the end: those some member's
    /// state lists as removed (they may not know it yet: their notice can
    /// be deleted by the provider), those that found themselves removed or
    /// left, and joiners *stranded* because the member that admitted them
    /// is among those and its admission reached no live member while it
    /// could still vouch for them.
    pub fn gone(
        &self,
        all: &[(DeviceId, GroupState)],
        departed: &BTreeSet<DeviceId>,
    ) -> BTreeSet<DeviceId> {
        let mut gone = departed.clone();
        for (_, g) in all {
            for m in g.members().values() {
                if m.status >= MemberStatus::Stale {
                    gone.insert(m.id.clone());
                }
            }
        }
        let sponsors = self.sponsors(all);
        loop {
            let mut grew = false;
            for (j, sponsor) in &sponsors {
                if gone.contains(j) || !gone.contains(sponsor) {
                    continue;
                }
                let known = all
                    .iter()
                    .filter(|(id, _)| !gone.contains(id) && id != j)
                    .all(|(_, g)| g.status_of(j) == Some(MemberStatus::Active));
                if !known {
                    gone.insert(j.clone());
                    grew = true;
                }
            }
            if !grew {
                return gone;
            }
        }
    }

    /// Who admitted each joiner: as recorded when its `join` succeeded, and,
    /// for a joiner whose `join` crashed after installing the welcome, the
    /// member that stamped its record in its own state.
    fn sponsors(&self, all: &[(DeviceId, GroupState)]) -> BTreeMap<DeviceId, DeviceId> {
        let mut sponsors = self.sponsor.clone();
        for (j, g) in all {
            if let Some(rec) = g.member(j) {
                if rec.name_stamp.device != *j {
                    sponsors
                        .entry(j.clone())
                        .or_insert_with(|| rec.name_stamp.device.clone());
                }
            }
        }
        sponsors
    }

    /// The live members at the end, each with its state and the part of
    /// it all must agree on.
    pub fn comparable_live(&self, w: &World) -> Vec<(DeviceId, GroupState, Comparable)> {
        let all = live_states(w);
        let gone = self.gone(&all, &departed(w));
        let stranded = self.stranded(&all, &gone);
        let tainted = tainted(w, &gone);
        all.iter()
            .filter(|(id, _)| !gone.contains(id) && !tainted.contains(id))
            .map(|(id, g)| (id.clone(), g.clone(), self.comparable(g, &stranded)))
            .collect()
    }

    /// Joiners nobody live will ever accept (their sponsor is gone and its
    /// admission did not spread): what they wrote is left out.
    fn stranded(
        &self,
        all: &[(DeviceId, GroupState)],
        gone: &BTreeSet<DeviceId>,
    ) -> BTreeSet<DeviceId> {
        self.sponsors(all)
            .into_keys()
            .filter(|j| gone.contains(j))
            .filter(|j| {
                !all.iter()
                    .filter(|(id, _)| !gone.contains(id))
                    .all(|(_, g)| g.member(j).is_some())
            })
            .collect()
    }

    /// Removers that were themselves targets of a removal: when two
    /// members remove each other concurrently, each remaining member
    /// follows the removal it learnt first (the other remover's op came
    /// after its own removal, PROTOCOL 10.5), so their records may differ.
    pub fn contested(&self) -> BTreeSet<DeviceId> {
        self.removers
            .intersection(&self.removal_attempted)
            .cloned()
            .collect()
    }

    /// The comparable part of a state, without what `stranded` devices wrote.
    pub fn comparable(&self, g: &GroupState, stranded: &BTreeSet<DeviceId>) -> Comparable {
        let mut members = g.members().clone();
        let contested = self.contested();
        let contested_any = !contested.is_empty();
        members.retain(|id, m| {
            let left_out = stranded.contains(id)
                || stranded.contains(&m.name_stamp.device)
                || (contested_any && self.removal_attempted.contains(id));
            !left_out
        });
        // What the two sides of a contested removal wrote reaches only the
        // members that followed the other removal first (PROTOCOL 10.5).
        let left_out = |origin: &DeviceId| stranded.contains(origin) || contested.contains(origin);
        let mut keyring = g.keyring().clone();
        for (origin, p) in &self.keyring {
            if left_out(origin) {
                keyring.remove(&p.addr);
            }
        }
        let mut account_keys = g.account_keys().clone();
        account_keys.retain(|_, k| !left_out(&k.stamp.device));
        Comparable {
            members,
            keyring,
            account_keys,
            prefer_encrypt: g.prefer_encrypt().clone(),
        }
    }
}

/// Devices that found themselves removed or left.
pub(crate) fn departed(w: &World) -> BTreeSet<DeviceId> {
    w.slots
        .iter()
        .filter(|s| s.gone)
        .filter_map(|s| s.id.clone())
        .collect()
}

//! The persistent protocol state of one device, and the form the store
//! keeps it in: one small JSON document (the *head*) plus one row per
//! keyring entry and per op in the relay log, written as they change.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::hlc::HlcClock;
use crate::ids::DeviceId;
use crate::ops::{OpId, SignedOp};
use crate::state::{GroupState, PeerState};
use crate::sync::{LogEntry, SyncBook};

/// Everything a device keeps about the group, durably.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoreState {
    pub(crate) group: GroupState,
    pub(crate) book: SyncBook,
    pub(crate) clock: HlcClock,
    /// Newest authenticated sign of life per device (Unix seconds).
    #[serde(default)]
    pub(crate) alive: BTreeMap<DeviceId, u64>,
    /// Per removed device, the signed ops that removed it (sent to it as
    /// its removal notice) and when this device learnt of it (seconds).
    #[serde(default)]
    pub(crate) removals: BTreeMap<DeviceId, Removal>,
    /// Removed devices whose ops this device applied although they were
    /// written after the removal (it had not learnt of the removal yet):
    /// the highest such seq.
    #[serde(default)]
    pub(crate) applied_after_removal: BTreeMap<DeviceId, u64>,
}

/// How one device was removed, as far as this device knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// The ops that set its record `removed` (usually one).
    pub ops: Vec<SignedOp>,
    /// When this device learnt of the removal (Unix seconds).
    pub learnt_at: u64,
}

/// Rows of a table the store keeps: everything, or only what changed.
pub enum Rows<'a, K, V> {
    /// Replace the table with these rows.
    All(Vec<(&'a K, &'a V)>),
    /// Write these rows (`Some`) and delete these keys (`None`).
    Changed(Vec<(&'a K, Option<&'a V>)>),
}

impl<'a, K: Ord, V> Rows<'a, K, V> {
    fn of(map: &'a BTreeMap<K, V>, changed: Option<&'a BTreeSet<K>>) -> Rows<'a, K, V> {
        match changed {
            None => Rows::All(map.iter().collect()),
            Some(keys) => Rows::Changed(keys.iter().map(|k| (k, map.get(k))).collect()),
        }
    }
}

impl CoreState {
    /// The replicated group state.
    pub fn group(&self) -> &GroupState {
        &self.group
    }

    /// The sync bookkeeping.
    pub fn book(&self) -> &SyncBook {
        &self.book
    }

    /// Newest authenticated sign of life per device (Unix seconds).
    pub fn alive(&self) -> &BTreeMap<DeviceId, u64> {
        &self.alive
    }

    /// Removed devices whose ops written after their removal this device
    /// applied (before it learnt of the removal), with the highest such seq.
    pub fn applied_after_removal(&self) -> &BTreeMap<DeviceId, u64> {
        &self.applied_after_removal
    }

    /// What this device knows about each removal.
    pub fn removals(&self) -> &BTreeMap<DeviceId, Removal> {
        &self.removals
    }

    /// The head document: the state without its keyring and relay log. It
    /// holds the account secret keys, so it comes in a buffer zeroized on
    /// drop.
    pub fn head_json(&mut self) -> Result<zeroize::Zeroizing<String>, serde_json::Error> {
        let keyring = self.group.take_keyring();
        let head = serde_json::to_string(&*self).map(zeroize::Zeroizing::new);
        self.group.put_keyring(keyring);
        head
    }

    /// Keyring rows to write (by lower-cased address).
    pub fn keyring_rows(&self) -> Rows<'_, String, PeerState> {
        Rows::of(self.group.keyring(), self.group.keyring_changes())
    }

    /// Relay-log rows to write.
    pub fn log_rows(&self) -> Rows<'_, OpId, LogEntry> {
        Rows::of(self.book.log(), self.book.log_changes())
    }

    /// Records that the store holds the state as it is now: the next save
    /// writes only later changes.
    pub fn mark_saved(&mut self) {
        self.group.mark_saved();
        self.book.mark_saved();
    }

    /// Marks everything as changed: the next save writes the whole state
    /// (a store that must be rewritten, a benchmark of that).
    pub fn mark_all_changed(&mut self) {
        self.group.mark_all_changed();
        self.book.mark_all_changed();
    }

    /// Rebuilds a state from the store's head document and rows, with
    /// nothing marked as changed.
    pub fn from_parts(
        head: &str,
        keyring: Vec<PeerState>,
        log: Vec<LogEntry>,
    ) -> Result<CoreState, serde_json::Error> {
        let mut core: CoreState = serde_json::from_str(head)?;
        let mut ring = BTreeMap::new();
        for p in keyring {
            ring.insert(p.addr.to_lowercase(), p);
        }
        core.group.put_keyring(ring);
        core.book
            .put_log(log.into_iter().map(|e| (e.op.id(), e)).collect());
        core.mark_saved();
        Ok(core)
    }
}

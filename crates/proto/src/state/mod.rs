//! The replicated group state: a state-based CRDT (join-semilattice).
//!
//! Every component merges commutatively, associatively and idempotently, so
//! devices converge whatever order, duplication or replay the server imposes.

mod keyring;
mod members;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use keyring::{PeerState, PreferEncrypt};
pub use members::{MemberRecord, MemberStatus};

use crate::dirty::Dirty;
use crate::hlc::Hlc;
use crate::ids::DeviceId;

/// One generation of the shared account key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountKeyRecord {
    /// Generation, bumped by every rotation.
    pub generation: u32,
    /// Stamp of the device that made it (tie-break between concurrent rotations).
    pub stamp: Hlc,
    /// Upper-case hex fingerprint.
    pub fingerprint: String,
    /// Armored secret key. Only ever sent inside sealed payloads.
    pub secret: String,
}

/// A last-writer-wins register ordered by HLC stamps (never by wall clock alone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lww<T> {
    /// The value.
    pub value: T,
    /// When and by whom it was written.
    pub stamp: Option<Hlc>,
}

impl<T: Clone + Ord> Lww<T> {
    /// Merges: the later stamp wins (the value breaks exact ties).
    pub fn merge(&mut self, other: &Lww<T>) {
        if (&other.stamp, &other.value) > (&self.stamp, &self.value) {
            *self = other.clone();
        }
    }
}

/// The whole replicated state of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// Devices by id.
    pub members: BTreeMap<DeviceId, MemberRecord>,
    /// Correspondent peer state by lower-cased address.
    pub keyring: BTreeMap<String, PeerState>,
    /// Account key generations.
    pub account_keys: BTreeMap<u32, AccountKeyRecord>,
    /// The account's own Autocrypt prefer-encrypt setting.
    pub prefer_encrypt: Lww<PreferEncrypt>,
    /// Keyring addresses changed since the store last saved them.
    #[serde(skip)]
    pub keyring_dirty: Dirty<String>,
}

impl Default for GroupState {
    fn default() -> Self {
        GroupState {
            members: BTreeMap::new(),
            keyring: BTreeMap::new(),
            account_keys: BTreeMap::new(),
            prefer_encrypt: Lww {
                value: PreferEncrypt::Mutual,
                stamp: None,
            },
            keyring_dirty: Dirty::all(),
        }
    }
}

/// One change to the group state: a small delta that merges like a state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Adds or updates a member record.
    Member(MemberRecord),
    /// Updates one correspondent's state.
    Peer(PeerState),
    /// A new account key generation.
    AccountKey(AccountKeyRecord),
    /// Our own prefer-encrypt setting.
    PreferEncrypt(Lww<PreferEncrypt>),
}

/// A change stamped with its origin and per-origin sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The device that made the change.
    pub origin: DeviceId,
    /// Sequence number per origin, from 1, without gaps.
    pub seq: u64,
    /// When it was made.
    pub stamp: Hlc,
    /// The change.
    pub change: Change,
}

impl GroupState {
    /// Merges another whole state into this one.
    pub fn merge(&mut self, other: &GroupState) {
        for rec in other.members.values() {
            self.apply(&Change::Member(rec.clone()));
        }
        for peer in other.keyring.values() {
            self.apply(&Change::Peer(peer.clone()));
        }
        for key in other.account_keys.values() {
            self.apply(&Change::AccountKey(key.clone()));
        }
        self.prefer_encrypt.merge(&other.prefer_encrypt);
    }

    /// Merges one change. Idempotent and order-independent.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Member(rec) => match self.members.get_mut(&rec.id) {
                Some(mine) => mine.merge(rec),
                None => {
                    self.members.insert(rec.id.clone(), rec.clone());
                }
            },
            Change::Peer(peer) => {
                let key = peer.addr.to_lowercase();
                match self.keyring.get_mut(&key) {
                    Some(mine) => {
                        if mine.merge(peer) {
                            self.keyring_dirty.touch(key);
                        }
                    }
                    None => {
                        let mut p = peer.clone();
                        p.addr = key.clone();
                        self.keyring.insert(key.clone(), p);
                        self.keyring_dirty.touch(key);
                    }
                }
            }
            Change::AccountKey(rec) => match self.account_keys.get_mut(&rec.generation) {
                Some(mine)
                    if (&rec.stamp, &rec.fingerprint, &rec.secret)
                        > (&mine.stamp, &mine.fingerprint, &mine.secret) =>
                {
                    *mine = rec.clone()
                }
                Some(_) => {}
                None => {
                    self.account_keys.insert(rec.generation, rec.clone());
                }
            },
            Change::PreferEncrypt(v) => self.prefer_encrypt.merge(v),
        }
    }

    /// The current account key: the highest generation.
    pub fn current_account_key(&self) -> Option<&AccountKeyRecord> {
        self.account_keys.values().next_back()
    }

    /// Status of a device in the group (None when unknown).
    pub fn status_of(&self, id: &DeviceId) -> Option<MemberStatus> {
        self.members.get(id).map(|m| m.status)
    }

    /// Whether `id` is an active member whose certificate has `fingerprint`.
    pub fn is_active_member(&self, id: &DeviceId, fingerprint: &str) -> bool {
        self.members
            .get(id)
            .is_some_and(|m| m.status == MemberStatus::Active && m.fingerprint == fingerprint)
    }

    /// Active members, ascending id.
    pub fn active_members(&self) -> impl Iterator<Item = &MemberRecord> {
        self.members
            .values()
            .filter(|m| m.status == MemberStatus::Active)
    }
}

#[cfg(test)]
mod tests;

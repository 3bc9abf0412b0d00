//! The replicated group state: a state-based CRDT (join-semilattice).
//!
//! Every component merges commutatively, associatively and idempotently, so
//! devices converge whatever order, duplication or replay the server imposes.
//! The fields are private: the only way to change a state is [`GroupState::apply`]
//! (or [`GroupState::merge`]), which keeps the store's change marks right.

mod keyring;
mod members;
mod rules;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sma_crypto::SecretString;

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
    /// Armored secret key. Only ever sent inside sealed payloads; zeroized
    /// on drop and redacted in `Debug`.
    pub secret: SecretString,
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
    /// Merges: the later stamp wins (the value breaks exact ties). Returns
    /// whether this register changed.
    pub fn merge(&mut self, other: &Lww<T>) -> bool {
        if (&other.stamp, &other.value) > (&self.stamp, &self.value) {
            *self = other.clone();
            return true;
        }
        false
    }
}

/// The whole replicated state of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    members: BTreeMap<DeviceId, MemberRecord>,
    keyring: BTreeMap<String, PeerState>,
    account_keys: BTreeMap<u32, AccountKeyRecord>,
    prefer_encrypt: Lww<PreferEncrypt>,
    /// Keyring addresses changed since the store last saved them.
    #[serde(skip)]
    keyring_dirty: Dirty<String>,
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

    /// Merges one change. Idempotent and order-independent. Returns whether
    /// the state changed.
    pub fn apply(&mut self, change: &Change) -> bool {
        match change {
            Change::Member(rec) => match self.members.get_mut(&rec.id) {
                Some(mine) => mine.merge(rec),
                None => {
                    self.members.insert(rec.id.clone(), rec.clone());
                    true
                }
            },
            Change::Peer(peer) => self.apply_peer(peer),
            Change::AccountKey(rec) => match self.account_keys.get_mut(&rec.generation) {
                Some(mine)
                    if (&rec.stamp, &rec.fingerprint, &rec.secret)
                        > (&mine.stamp, &mine.fingerprint, &mine.secret) =>
                {
                    *mine = rec.clone();
                    true
                }
                Some(_) => false,
                None => {
                    self.account_keys.insert(rec.generation, rec.clone());
                    true
                }
            },
            Change::PreferEncrypt(v) => self.prefer_encrypt.merge(v),
        }
    }

    fn apply_peer(&mut self, peer: &PeerState) -> bool {
        let key = peer.addr.to_lowercase();
        let changed = match self.keyring.get_mut(&key) {
            Some(mine) => mine.merge(peer),
            None => {
                let mut p = peer.clone();
                p.addr = key.clone();
                self.keyring.insert(key.clone(), p);
                true
            }
        };
        if changed {
            self.keyring_dirty.touch(key);
        }
        changed
    }

    /// Every member record, by device id.
    pub fn members(&self) -> &BTreeMap<DeviceId, MemberRecord> {
        &self.members
    }

    /// The record of one device.
    pub fn member(&self, id: &DeviceId) -> Option<&MemberRecord> {
        self.members.get(id)
    }

    /// The replicated Autocrypt keyring, by lower-cased address.
    pub fn keyring(&self) -> &BTreeMap<String, PeerState> {
        &self.keyring
    }

    /// Every account key generation.
    pub fn account_keys(&self) -> &BTreeMap<u32, AccountKeyRecord> {
        &self.account_keys
    }

    /// The account's own prefer-encrypt register.
    pub fn prefer_encrypt(&self) -> &Lww<PreferEncrypt> {
        &self.prefer_encrypt
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

    /// Whether `id` is an active member.
    pub fn is_active(&self, id: &DeviceId) -> bool {
        self.status_of(id) == Some(MemberStatus::Active)
    }

    /// Active members, ascending id.
    pub fn active_members(&self) -> impl Iterator<Item = &MemberRecord> {
        self.members
            .values()
            .filter(|m| m.status == MemberStatus::Active)
    }

    /// Keyring addresses changed since the last [`GroupState::mark_saved`],
    /// or `None` when the store must write the whole keyring.
    pub fn keyring_changes(&self) -> Option<&std::collections::BTreeSet<String>> {
        self.keyring_dirty.changed()
    }

    /// Records that the store holds the keyring as it is now.
    pub fn mark_saved(&mut self) {
        self.keyring_dirty.clear();
    }

    /// Marks the whole keyring as changed.
    pub(crate) fn mark_all_changed(&mut self) {
        self.keyring_dirty = Dirty::all();
    }

    /// Moves the keyring out (for the store, which keeps it as rows; see
    /// [`crate::persist`]); [`GroupState::put_keyring`] puts it back.
    pub(crate) fn take_keyring(&mut self) -> BTreeMap<String, PeerState> {
        std::mem::take(&mut self.keyring)
    }

    pub(crate) fn put_keyring(&mut self, keyring: BTreeMap<String, PeerState>) {
        self.keyring = keyring;
    }
}

#[cfg(test)]
mod tests;

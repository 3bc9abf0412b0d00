//! What applying received ops changed, in words a front end can show.

use serde::Serialize;

use crate::ids::DeviceId;
use crate::state::{Change, GroupState, MemberStatus, PeerState};

/// A change to the group state that a front end may report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StateEvent {
    /// New ops from a peer were applied (its own or relayed ones).
    Applied {
        /// The device whose message carried them.
        from: DeviceId,
        /// How many were new.
        ops: usize,
    },
    /// A device became an active member.
    DeviceAdded {
        /// The device.
        device_id: DeviceId,
        /// Its name.
        name: String,
    },
    /// A device was removed from the group.
    DeviceRemoved {
        /// The device.
        device_id: DeviceId,
    },
    /// A correspondent's key or the account key changed.
    KeyUpdated {
        /// The address (or `account` for the account key).
        addr: String,
    },
}

/// What one change may alter, as it was before applying it (a copy of the
/// whole state would cost megabytes per message).
pub(crate) enum Before {
    Member(Option<MemberStatus>),
    Peer(Option<PeerState>),
    AccountKey(Option<String>),
    Nothing,
}

impl Before {
    pub(crate) fn of(group: &GroupState, change: &Change) -> Before {
        match change {
            Change::Member(rec) => Before::Member(group.status_of(&rec.id)),
            Change::Peer(p) => Before::Peer(group.keyring().get(&p.addr.to_lowercase()).cloned()),
            Change::AccountKey(_) => {
                Before::AccountKey(group.current_account_key().map(|k| k.fingerprint.clone()))
            }
            Change::PreferEncrypt(_) => Before::Nothing,
        }
    }

    pub(crate) fn describe(self, after: &GroupState, change: &Change, out: &mut Vec<StateEvent>) {
        match (self, change) {
            (Before::Member(was), Change::Member(rec)) => {
                let now = after.status_of(&rec.id);
                if now == Some(MemberStatus::Active) && was != Some(MemberStatus::Active) {
                    out.push(StateEvent::DeviceAdded {
                        device_id: rec.id.clone(),
                        name: rec.name.clone(),
                    });
                }
                if now == Some(MemberStatus::Removed) && was != Some(MemberStatus::Removed) {
                    out.push(StateEvent::DeviceRemoved {
                        device_id: rec.id.clone(),
                    });
                }
            }
            (Before::Peer(was), Change::Peer(p)) => {
                let addr = p.addr.to_lowercase();
                if was.as_ref() != after.keyring().get(&addr) {
                    out.push(StateEvent::KeyUpdated {
                        addr: p.addr.clone(),
                    });
                }
            }
            (Before::AccountKey(was), Change::AccountKey(_))
                if was.as_ref() != after.current_account_key().map(|k| &k.fingerprint) =>
            {
                out.push(StateEvent::KeyUpdated {
                    addr: "account".into(),
                });
            }
            _ => {}
        }
    }
}

//! The membership model's state: four devices' durable states, their inbox
//! folders, what the provider has done, and ghost variables that remember
//! what the properties need (who removed whom, who learnt what).

use std::collections::BTreeSet;
use std::fmt;

use sma_proto::state::MemberStatus;
use sma_proto::Timestamp;

use crate::keys::{at, Dev};
use crate::mail::{Inbox, Msg};
use crate::node::Node;

/// Seconds the model's clock moves per tick: the relay delay
/// (`RELAY_AFTER_SECS`), after which members pass on other origins' ops.
pub const TICK_SECS: u64 = sma_proto::sync::RELAY_AFTER_SECS;

/// A device in the model.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Not a member (the joiner before it paired).
    Absent,
    /// A member that runs rounds.
    Running(Node),
    /// A device that stopped: it left, or an authenticated op removed it.
    Stopped {
        /// Its last state.
        node: Node,
        /// The origin of the op that removed it (itself if it left;
        /// `None`: a device the model does not know).
        by: Option<Dev>,
    },
}

impl Slot {
    /// The device's state, if it has one.
    pub fn node(&self) -> Option<&Node> {
        match self {
            Slot::Absent => None,
            Slot::Running(n) | Slot::Stopped { node: n, .. } => Some(n),
        }
    }

    /// The state of a running device.
    pub fn running(&self) -> Option<&Node> {
        match self {
            Slot::Running(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slot::Absent => f.write_str("absent"),
            Slot::Running(n) => write!(f, "running {n:?}"),
            Slot::Stopped { node, by: Some(by) } if *by == node.dev() => {
                write!(f, "stopped (left) {node:?}")
            }
            Slot::Stopped { node, by } => {
                let by = by.map_or_else(|| "an unknown device".into(), |d| format!("{d:?}"));
                write!(f, "stopped (removed by {by}) {node:?}")
            }
        }
    }
}

/// What the provider has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Provider {
    /// Provider actions taken (bounded by the model's budget).
    pub used: u8,
    /// A link whose every message the provider deletes from now on.
    pub cut: Option<(Dev, Dev)>,
    /// Every message it has seen (for replays).
    pub seen: BTreeSet<Msg>,
}

/// Ghost variables: facts about the run that no device holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ghost {
    /// Devices whose pairing with the right code completed.
    pub paired: BTreeSet<Dev>,
    /// Authenticated removals committed: (remover, removed); a device that
    /// left removed itself.
    pub removals: BTreeSet<(Dev, Dev)>,
    /// Per device (index), the removed devices it has learnt of.
    pub learnt: [BTreeSet<Dev>; 4],
    /// A sync message sealed by the first device to the second after the
    /// first had learnt of the second's removal.
    pub sealed_to_removed: Option<(Dev, Dev)>,
    /// Once the remover saw its removal acknowledged by every member it
    /// knew: those members.
    pub completed: Option<BTreeSet<Dev>>,
}

/// The whole model state.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct World {
    /// Seconds since [`crate::keys::T0`].
    pub secs: u64,
    /// Ticks taken (bounded by the model).
    pub ticks: u8,
    /// Devices A, B, C, J.
    pub slots: [Slot; 4],
    /// Their inbox folders.
    pub inboxes: [Inbox; 4],
    /// The adversary.
    pub provider: Provider,
    /// Facts for the properties.
    pub ghost: Ghost,
    /// Whether the fair, adversary-free continuation ran (terminal).
    pub settled: bool,
}

impl World {
    /// No devices, no messages (a placeholder).
    pub fn empty() -> World {
        World {
            secs: 0,
            ticks: 0,
            slots: std::array::from_fn(|_| Slot::Absent),
            inboxes: std::array::from_fn(|_| Inbox::default()),
            provider: Provider::default(),
            ghost: Ghost::default(),
            settled: false,
        }
    }

    /// The model's clock now.
    pub fn now(&self) -> Timestamp {
        at(self.secs)
    }

    /// A device's slot.
    pub fn slot(&self, d: Dev) -> &Slot {
        &self.slots[d.index()]
    }

    /// A device's inbox.
    pub fn inbox(&self, d: Dev) -> &Inbox {
        &self.inboxes[d.index()]
    }

    /// Running devices.
    pub fn running(&self) -> impl Iterator<Item = (Dev, &Node)> {
        Dev::MEMBERS
            .into_iter()
            .filter_map(|d| Some((d, self.slot(d).running()?)))
    }

    /// Whether the provider drops what `from` appends to `to`'s inbox.
    pub fn is_cut(&self, from: Dev, to: Dev) -> bool {
        self.provider.cut == Some((from, to))
    }

    /// Appends to `to`'s inbox unless the link is cut; the provider keeps a
    /// copy. Returns whether it was delivered.
    pub fn deliver(&mut self, from: Dev, to: Dev, msg: Msg) -> bool {
        self.provider.seen.insert(msg.clone());
        if self.is_cut(from, to) {
            return false;
        }
        self.inboxes[to.index()].append(msg);
        true
    }

    /// Devices removed by an authenticated op (ghost truth).
    pub fn removed_truth(&self) -> BTreeSet<Dev> {
        self.ghost.removals.iter().map(|(_, x)| *x).collect()
    }

    /// Running devices that are active members in their own view, that
    /// nobody removed, and that are not stranded (see [`World::stranded`]).
    pub fn live_members(&self) -> Vec<(Dev, &Node)> {
        let removed = self.removed_truth();
        self.running()
            .filter(|(d, n)| !removed.contains(d) && n.status_of(*d) == Some(MemberStatus::Active))
            .filter(|(d, _)| !self.stranded(*d))
            .collect()
    }

    /// A stranded joiner (an outcome the protocol accepts, RELIABILITY.md):
    /// admitted by a member that was removed before the admission reached
    /// anyone else, so only removed devices list it besides itself.
    pub fn stranded(&self, d: Dev) -> bool {
        let removed = self.removed_truth();
        Dev::MEMBERS
            .into_iter()
            .filter(|x| *x != d && !removed.contains(x))
            .filter_map(|x| self.slot(x).node())
            .all(|n| n.status_of(d).is_none())
    }

    /// Updates what each device has learnt from its state.
    pub fn note_learnt(&mut self) {
        for d in Dev::MEMBERS {
            if let Some(node) = self.slots[d.index()].node() {
                let removed = node.removed();
                self.ghost.learnt[d.index()].extend(removed);
            }
        }
    }
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "t={}s provider={:?}", self.secs, self.provider.cut)?;
        for d in Dev::MEMBERS {
            writeln!(f, "  {d:?}: {:?}; inbox {:?}", self.slot(d), self.inbox(d))?;
        }
        Ok(())
    }
}

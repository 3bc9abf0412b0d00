//! The initial state: A founds the group and pairs B and C (and J, if the
//! configuration says so) with the real handshake and the right codes, and
//! the group settles.

use sma_proto::Engine;

use super::{Ghost, Membership, Provider, Slot, World};
use crate::keys::{account_key, at, Dev};
use crate::mail::Inbox;
use crate::node::{Memory, Node};

impl Membership {
    /// The settled group of A, B and C; J and M not paired.
    pub(super) fn founded(&self) -> World {
        let now = at(0);
        let founder = Engine::found(Dev::A.owned_identity(), "A", account_key(1), now)
            .expect("founding works");
        let mut w = World {
            secs: 0,
            ticks: 0,
            slots: [
                Slot::Running(Node::new(Dev::A, founder.core().clone(), Memory::default())),
                Slot::Absent,
                Slot::Absent,
                Slot::Absent,
            ],
            inboxes: std::array::from_fn(|_| Inbox::default()),
            provider: Provider::default(),
            ghost: Ghost::default(),
            settled: false,
        };
        let joined: &[Dev] = if self.config.joined {
            &[Dev::B, Dev::C, Dev::J]
        } else {
            &[Dev::B, Dev::C]
        };
        for &d in joined {
            let a = w.slot(Dev::A).running().expect("A runs").clone();
            let paired = self.cache.pair(self.config.rules, &a, d, true, now);
            w.slots[Dev::A.index()] = Slot::Running(paired.sponsor);
            w.slots[d.index()] = Slot::Running(paired.joiner.expect("the right code pairs"));
        }
        let mut w = self.settle(&w);
        w.settled = false;
        w.provider = Provider::default();
        w.ghost = Ghost::default();
        w.ghost.paired.insert(Dev::A);
        w.ghost.paired.extend(joined);
        w
    }
}

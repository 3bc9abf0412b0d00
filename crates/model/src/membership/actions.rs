//! The model's steps. Device steps call the engine the way the driver
//! (`crates/sma`) does; provider steps move opaque messages.

use sma_proto::state::MemberStatus;

use super::{Action, Membership, Slot, World, TICK_SECS};
use crate::keys::{account_key, Dev};
use crate::node::Node;
use crate::steps;

/// Most sweeps of a settle (each moves the clock one relay delay).
const SETTLE_SWEEPS: usize = 12;

impl Membership {
    /// The devices' possible steps in `w`.
    pub(super) fn device_actions(&self, w: &World, out: &mut Vec<Action>) {
        let c = &self.config;
        let commanded = !w.ghost.removals.is_empty();
        for (d, node) in w.running() {
            out.push(Action::Round(d));
            let active = node.status_of(d) == Some(MemberStatus::Active);
            if !active {
                continue;
            }
            let c_active = node.status_of(Dev::C) == Some(MemberStatus::Active);
            if c.remove && !commanded && d != Dev::C && c_active {
                out.push(Action::Remove(d));
            }
            if c.leave && !commanded && d == Dev::C {
                out.push(Action::Leave(d));
            }
            if c.join && w.slot(Dev::J) == &Slot::Absent {
                out.push(Action::Pair(d));
            }
            if c.guess {
                out.push(Action::Guess(d));
            }
        }
        if w.ticks < c.max_ticks {
            out.push(Action::Tick);
        }
    }

    /// The provider's possible steps in `w` (within its budget).
    pub(super) fn provider_actions(&self, w: &World, out: &mut Vec<Action>) {
        if w.provider.used >= self.config.budget {
            return;
        }
        for d in Dev::MEMBERS {
            let inbox = w.inbox(d);
            let mut seen_here = Vec::new();
            for m in inbox.msgs() {
                if seen_here.contains(&m) {
                    continue;
                }
                seen_here.push(m);
                out.push(Action::Delete(d, m.clone()));
                out.push(Action::Duplicate(d, m.clone()));
                if inbox.msgs().last() != Some(m) {
                    out.push(Action::Reorder(d, m.clone()));
                }
            }
            for m in &w.provider.seen {
                if m.to() == Some(d) && !inbox.has_id(m.id()) {
                    out.push(Action::Replay(d, m.clone()));
                }
            }
            if !inbox.is_empty() {
                out.push(Action::DeleteFolder(d));
            }
        }
        if w.provider.cut.is_none() {
            for a in Dev::MEMBERS {
                for b in Dev::MEMBERS {
                    if a != b {
                        out.push(Action::Cut(a, b));
                    }
                }
            }
        }
    }

    /// A sync round of `d`.
    pub(super) fn round(&self, w: &World, d: Dev) -> Option<World> {
        let mut next = w.clone();
        self.round_in(&mut next, d)?;
        Some(next)
    }

    /// A sync round of `d` in place; returns how many messages it delivered.
    fn round_in(&self, w: &mut World, d: Dev) -> Option<usize> {
        let node = w.slot(d).running()?.clone();
        let mut delivered = 0;
        if let Some(node) = self.pass(w, d, &node) {
            delivered = self.send(w, d, node);
        }
        self.after(w, d);
        Some(delivered)
    }

    /// The inbox pass of `d` into `w`; `None` if it stopped (removed).
    fn pass(&self, w: &mut World, d: Dev, node: &Node) -> Option<Node> {
        let pass = self
            .cache
            .pass(self.config.rules, node, w.inbox(d), w.now());
        w.inboxes[d.index()].delete_uids(&pass.delete);
        if let Some(by) = pass.removed_by {
            w.slots[d.index()] = Slot::Stopped {
                node: pass.node,
                by: Dev::of(&by),
            };
            return None;
        }
        w.slots[d.index()] = Slot::Running(pass.node.clone());
        w.note_learnt();
        Some(pass.node)
    }

    /// The sending half of a round: removal notices, probes, sync
    /// messages. Returns how many messages reached an inbox.
    fn send(&self, w: &mut World, d: Dev, node: Node) -> usize {
        let rules = self.config.rules;
        let now = w.now();
        let mut delivered = 0;
        for (x, msg) in steps::notices(rules, &node, now, |x| w.inbox(x).has_notice_from(d)) {
            delivered += usize::from(w.deliver(d, x, msg));
        }
        let node = steps::probe(rules, &node, now, |p, id| w.inbox(p).has_id(id)).unwrap_or(node);
        let sends = self.cache.sends(rules, &node, now);
        for o in sends.out {
            if w.ghost.learnt[d.index()].contains(&o.peer) {
                w.ghost.sealed_to_removed.get_or_insert((d, o.peer));
            }
            delivered += usize::from(w.deliver(d, o.peer, o.msg));
            if let Some(prev) = &o.replaces {
                w.inboxes[o.peer.index()].delete_id(prev);
            }
        }
        w.slots[d.index()] = Slot::Running(sends.node);
        delivered
    }

    /// Ghost bookkeeping after a step of `d`.
    fn after(&self, w: &mut World, d: Dev) {
        w.note_learnt();
        let Some(&(remover, removed)) = w.ghost.removals.first() else {
            return;
        };
        if remover != d || remover == removed || w.ghost.completed.is_some() {
            return;
        }
        let Some(node) = w.slot(d).node() else {
            return;
        };
        let engine = node.engine(self.config.rules);
        let knows = engine.core().removals().contains_key(&removed.id());
        let pending = engine
            .pending_removals()
            .iter()
            .any(|p| p.device == removed.id());
        if knows && !pending {
            let acked = engine.peers().iter().filter_map(Dev::of).collect();
            w.ghost.completed = Some(acked);
        }
    }

    /// `remove C --rotate-account-key` on `d`.
    pub(super) fn remove(&self, w: &World, d: Dev) -> Option<World> {
        let node = w.slot(d).running()?;
        let now = w.now();
        let mut engine = node.engine(self.config.rules);
        engine.remove(&Dev::C.id(), now).expect("remove commits");
        engine
            .rotate_account_key(account_key(2), now)
            .expect("rotation commits");
        let mut next = w.clone();
        next.slots[d.index()] = Slot::Running(node.after(&engine, node.memory().clone()));
        next.ghost.removals.insert((d, Dev::C));
        self.after(&mut next, d);
        Some(next)
    }

    /// `leave` on `d`: an inbox pass, its departure op sent, its folders
    /// deleted, and it stops.
    pub(super) fn leave(&self, w: &World, d: Dev) -> Option<World> {
        let node = w.slot(d).running()?.clone();
        let mut next = w.clone();
        if let Some(node) = self.pass(&mut next, d, &node) {
            let mut engine = node.engine(self.config.rules);
            engine.leave(next.now()).expect("leave commits");
            next.ghost.removals.insert((d, d));
            self.send(&mut next, d, node.after(&engine, node.memory().clone()));
            let left = next.slot(d).node().expect("just sent").clone();
            next.slots[d.index()] = Slot::Stopped {
                node: left,
                by: Some(d),
            };
            next.inboxes[d.index()].clear();
        }
        self.after(&mut next, d);
        Some(next)
    }

    /// `pair` on `sponsor` for M, whose owner guesses the code: only the
    /// handshake (the inbox pass before it is an ordinary round's). A
    /// rejected code changes nothing, so this step adds no state unless
    /// the handshake let M in.
    pub(super) fn guess(&self, w: &World, sponsor: Dev) -> Option<World> {
        let node = w.slot(sponsor).running()?;
        let paired = self
            .cache
            .pair(self.config.rules, node, Dev::M, false, w.now());
        paired.joiner.as_ref()?;
        let mut next = w.clone();
        self.send(&mut next, sponsor, paired.sponsor);
        Some(next)
    }

    /// `pair` on `sponsor` for J, which types the right code: an inbox
    /// pass, the handshake, and on success the admission, the joiner's
    /// state from the welcome and the sponsor's syncs.
    pub(super) fn pair(&self, w: &World, sponsor: Dev, joiner: Dev) -> Option<World> {
        let node = w.slot(sponsor).running()?.clone();
        let mut next = w.clone();
        let Some(node) = self.pass(&mut next, sponsor, &node) else {
            self.after(&mut next, sponsor);
            return Some(next);
        };
        let paired = self.cache.pair(
            self.config.rules,
            &node,
            joiner,
            joiner == Dev::J,
            next.now(),
        );
        if let Some(j) = paired.joiner {
            if joiner == Dev::J {
                next.slots[Dev::J.index()] = Slot::Running(j);
                next.ghost.paired.insert(Dev::J);
            }
            self.send(&mut next, sponsor, paired.sponsor);
        } else {
            next.slots[sponsor.index()] = Slot::Running(paired.sponsor);
        }
        self.after(&mut next, sponsor);
        Some(next)
    }

    /// The clock moves one relay delay.
    pub(super) fn tick(&self, w: &World) -> World {
        let mut next = w.clone();
        next.secs += TICK_SECS;
        next.ticks += 1;
        next
    }

    /// A provider step.
    pub(super) fn provider_step(&self, w: &World, action: Action) -> World {
        let mut next = w.clone();
        next.provider.used += 1;
        match action {
            Action::Delete(d, m) => {
                let inbox = &mut next.inboxes[d.index()];
                if let Some(p) = inbox.msgs().iter().position(|x| x == &m) {
                    inbox.remove_at(p);
                }
            }
            Action::Duplicate(d, m) | Action::Replay(d, m) => next.inboxes[d.index()].append(m),
            Action::Reorder(d, m) => {
                let inbox = &mut next.inboxes[d.index()];
                if let Some(p) = inbox.msgs().iter().position(|x| x == &m) {
                    let moved = inbox.remove_at(p);
                    inbox.append(moved);
                }
            }
            Action::DeleteFolder(d) => next.inboxes[d.index()].clear(),
            Action::Cut(a, b) => next.provider.cut = Some((a, b)),
            other => unreachable!("not a provider step: {other:?}"),
        }
        next
    }

    /// Fair delivery: rounds of every running device, one relay delay
    /// apart, until two sweeps in a row deliver nothing and every inbox is
    /// empty (at most [`SETTLE_SWEEPS`]).
    pub(super) fn settle(&self, w: &World) -> World {
        let mut next = w.clone();
        let mut quiet = 0;
        for _ in 0..SETTLE_SWEEPS {
            let mut delivered = 0;
            for d in Dev::MEMBERS {
                delivered += self.round_in(&mut next, d).unwrap_or(0);
            }
            let empty = next.running().all(|(d, _)| next.inbox(d).is_empty());
            quiet = if delivered == 0 && empty {
                quiet + 1
            } else {
                0
            };
            if quiet == 2 {
                break;
            }
            next.secs += TICK_SECS;
        }
        next.settled = true;
        next
    }
}

//! One device's durable state as a model value: the engine's
//! [`CoreState`] and the store's memory of message ids, compared and hashed
//! by a digest of their serialised form. The engine itself is rebuilt from
//! it for every step ([`Node::engine`]), so every decision is the real
//! engine's.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use sma_proto::core::CoreState;
use sma_proto::engine::inbox::{Deferral, MessageMemory, PassOutcome};
use sma_proto::state::{GroupState, MemberStatus};
use sma_proto::{Engine, MessageId};

use crate::keys::{name, Dev};

/// Which rules the engines follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rules {
    /// The real protocol.
    Real,
    /// The real protocol with relaying turned off (PROTOCOL 11.3): sync
    /// messages carry only the sender's own ops.
    NoRelay,
}

/// What the store remembers about message ids (the driver's
/// `processed` and `deferred` tables).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    processed: BTreeSet<MessageId>,
    deferred: BTreeMap<MessageId, Deferral>,
}

impl MessageMemory for Memory {
    type Error = Infallible;
    fn was_processed(&self, id: &MessageId) -> Result<bool, Infallible> {
        Ok(self.processed.contains(id))
    }
    fn deferred(&self, id: &MessageId) -> Result<Option<Deferral>, Infallible> {
        Ok(self.deferred.get(id).copied())
    }
}

impl Memory {
    /// Records what a pass decided (the driver's one transaction).
    pub fn record(&mut self, out: &PassOutcome) {
        self.processed.extend(out.processed.iter().cloned());
        self.deferred
            .extend(out.deferred.iter().map(|(k, v)| (k.clone(), *v)));
    }

    fn digest_into(&self, h: &mut Sha256) {
        for id in &self.processed {
            h.update(b"p");
            h.update(id.as_str());
        }
        for (id, d) in &self.deferred {
            h.update(b"d");
            h.update(id.as_str());
            h.update(d.first_seen.to_be_bytes());
            h.update(d.tried_at_members.to_be_bytes());
        }
    }
}

/// A device's durable state: protocol state and message memory.
#[derive(Clone)]
pub struct Node {
    dev: Dev,
    core: Arc<CoreState>,
    memory: Arc<Memory>,
    digest: [u8; 32],
}

impl Node {
    /// A node from its parts (computes the digest).
    pub fn new(dev: Dev, core: CoreState, memory: Memory) -> Node {
        let mut h = Sha256::new();
        h.update([dev as u8]);
        h.update(serde_json::to_vec(&core).expect("core state serialises"));
        for entry in core.book().log().values() {
            h.update(entry.to_row_json().expect("log rows serialise"));
        }
        memory.digest_into(&mut h);
        Node {
            dev,
            core: Arc::new(core),
            memory: Arc::new(memory),
            digest: h.finalize().into(),
        }
    }

    /// The node after `engine` changed it, with `memory`.
    pub fn after(&self, engine: &Engine, memory: Memory) -> Node {
        Node::new(self.dev, engine.core().clone(), memory)
    }

    /// The engine over this state, following `rules`.
    pub fn engine(&self, rules: Rules) -> Engine {
        let me = self.dev.owned_identity();
        let mut engine = Engine::new(me, (*self.core).clone()).expect("a version 2 state loads");
        if rules == Rules::NoRelay {
            engine.set_relay_enabled(false);
        }
        engine
    }

    /// Which device this is.
    pub fn dev(&self) -> Dev {
        self.dev
    }

    /// The protocol state.
    pub fn core(&self) -> &CoreState {
        &self.core
    }

    /// The store's message memory.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// The replicated group state.
    pub fn group(&self) -> &GroupState {
        self.core.group()
    }

    /// The status of `d` in this device's view.
    pub fn status_of(&self, d: Dev) -> Option<MemberStatus> {
        self.group().status_of(&d.id())
    }

    /// Devices this device's state lists as removed.
    pub fn removed(&self) -> BTreeSet<Dev> {
        Dev::ALL
            .into_iter()
            .filter(|d| self.status_of(*d) == Some(MemberStatus::Removed))
            .collect()
    }

    /// Membership as this device sees it, and the current account key's
    /// fingerprint: what every live member must agree on.
    pub fn view(&self) -> (BTreeMap<String, MemberStatus>, Option<String>) {
        let members = self
            .group()
            .members()
            .values()
            .map(|m| (name(&m.id), m.status))
            .collect();
        let key = self
            .group()
            .current_account_key()
            .map(|k| k.fingerprint.clone());
        (members, key)
    }

    /// Digest of the whole durable state.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

impl PartialEq for Node {
    fn eq(&self, other: &Node) -> bool {
        self.digest == other.digest
    }
}

impl Eq for Node {}

impl Hash for Node {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (members, _) = self.view();
        let members: Vec<String> = members
            .iter()
            .map(|(id, st)| format!("{id}:{}", st.as_str()))
            .collect();
        let generation = self.group().current_account_key().map(|k| k.generation);
        write!(
            f,
            "[{}] key g{} seq {}",
            members.join(" "),
            generation.unwrap_or(0),
            self.core.book().last_seq()
        )
    }
}

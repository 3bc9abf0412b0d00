//! Shared harness for the engine tests: in-memory devices, a mailbox model
//! standing in for the IMAP inboxes, and a driver loop that calls the
//! engine the way `crates/sma` does (inbox pass, then outgoing syncs).
//! Everything is deterministic: seeded RNGs and explicit timestamps.

#![allow(dead_code)]

pub mod forge;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sma_crypto::{AccountKey, DeviceKey};
use sma_proto::device::Identity;
use sma_proto::engine::inbox::{Deferral, MessageMemory, PassOutcome, Triage};
use sma_proto::engine::membership::Joiner;
use sma_proto::envelope::peek_marker;
use sma_proto::payload::{self, Welcome};
use sma_proto::state::{Change, PeerState};
use sma_proto::sync::SentRef;
use sma_proto::{DeviceId, Engine, MessageId, Timestamp};

/// The account every test device belongs to.
pub const ACCOUNT: &str = "alice@example.org";
/// Unix seconds at which every test starts.
pub const T0: u64 = 1_700_000_000;
/// Heartbeat threshold passed to `outgoing_syncs` (one day).
pub const HB: u64 = 86_400;

/// `secs` seconds after [`T0`].
pub fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

/// A seeded RNG.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Device id number `n`.
pub fn dev(n: u8) -> DeviceId {
    DeviceId::parse(&format!("{:016x}", 0xd000 + u64::from(n))).unwrap()
}

/// The device key of device `n` (deterministic).
pub fn device_key(n: u8) -> DeviceKey {
    DeviceKey::generate(&mut rng(1000 + u64::from(n)), dev(n).as_str(), T0 - 100).unwrap()
}

/// The identity of device `n` on [`ACCOUNT`].
pub fn identity(n: u8) -> Identity {
    Identity {
        id: dev(n),
        account: ACCOUNT.into(),
        key: device_key(n),
    }
}

/// An account key (deterministic per seed).
pub fn account_key(seed: u64) -> AccountKey {
    AccountKey::generate(&mut rng(5000 + seed), ACCOUNT, T0 - 100).unwrap()
}

/// The header block of a message: its bytes up to the first blank line.
pub fn header_of(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(bytes.len(), |p| p + 4);
    &bytes[..end]
}

/// The marker id of a message.
pub fn message_id_of(bytes: &[u8]) -> MessageId {
    peek_marker(header_of(bytes)).unwrap().id
}

/// What the store remembers about message ids.
#[derive(Default)]
pub struct Memory {
    pub processed: BTreeSet<MessageId>,
    pub deferred: BTreeMap<MessageId, Deferral>,
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
}

/// One IMAP folder: messages by UID.
#[derive(Default)]
pub struct Mailbox {
    pub msgs: Vec<(u32, Vec<u8>)>,
    next_uid: u32,
}

impl Mailbox {
    /// Appends a message; returns its UID.
    pub fn append(&mut self, bytes: Vec<u8>) -> u32 {
        self.next_uid += 1;
        self.msgs.push((self.next_uid, bytes));
        self.next_uid
    }

    /// Deletes messages by UID.
    pub fn remove(&mut self, uids: &BTreeSet<u32>) {
        self.msgs.retain(|(u, _)| !uids.contains(u));
    }

    /// Deletes the message with this marker id, if present.
    pub fn remove_id(&mut self, id: &MessageId) {
        self.msgs.retain(|(_, b)| &message_id_of(b) != id);
    }

    /// Whether a message with this marker id is present.
    pub fn has_id(&self, id: &MessageId) -> bool {
        self.msgs.iter().any(|(_, b)| &message_id_of(b) == id)
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Whether the folder is empty.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// UIDs present.
    pub fn uids(&self) -> BTreeSet<u32> {
        self.msgs.iter().map(|(u, _)| *u).collect()
    }
}

/// One inbox pass the way the driver runs it: triage every header, show
/// the wanted bodies, record the outcome, then delete.
pub fn run_pass(
    engine: &mut Engine,
    inbox: &mut Mailbox,
    memory: &mut Memory,
    now: Timestamp,
) -> PassOutcome {
    let mut pass = engine.inbox_pass(now);
    let mut wanted = Vec::new();
    for (uid, bytes) in &inbox.msgs {
        let size = u32::try_from(bytes.len()).unwrap();
        if pass.triage(*uid, size, header_of(bytes), memory).unwrap() == Triage::Fetch {
            wanted.push(*uid);
        }
    }
    for (uid, bytes) in &inbox.msgs {
        if wanted.contains(uid) {
            pass.accept(*uid, Some(bytes));
        }
    }
    let out = pass.finish();
    memory.record(&out);
    inbox.remove(&out.delete);
    out
}

/// A device: its engine, its inbox and its store's message memory.
pub struct Node {
    pub engine: Engine,
    pub inbox: Mailbox,
    pub memory: Memory,
    pub rng: ChaCha20Rng,
}

impl Node {
    pub fn new(engine: Engine, seed: u64) -> Node {
        Node {
            engine,
            inbox: Mailbox::default(),
            memory: Memory::default(),
            rng: rng(seed),
        }
    }

    /// One pass over this device's inbox.
    pub fn pass(&mut self, now: Timestamp) -> PassOutcome {
        run_pass(&mut self.engine, &mut self.inbox, &mut self.memory, now)
    }

    pub fn id(&self) -> DeviceId {
        self.engine.id().clone()
    }

    /// Commits a keyring change for `addr` (a new key observed).
    pub fn learn_key(&mut self, addr: &str, now: Timestamp) {
        let stamp = self.engine.stamp(now);
        let mut p = PeerState::new(addr);
        p.autocrypt_timestamp = now.as_secs();
        p.last_seen = now.as_secs();
        p.public_key = Some(format!("key-of-{addr}"));
        p.stamp = Some(stamp);
        self.engine.commit(Change::Peer(p), now).unwrap();
    }
}

/// A welcome as the joiner receives it: through its JSON form.
pub fn over_the_wire(welcome: &Welcome) -> Welcome {
    payload::from_json(&payload::to_json(welcome)).unwrap()
}

/// Admits device `n` through `sponsor` at `now`; returns the joiner's engine.
pub fn admit(sponsor: &mut Engine, n: u8, now: Timestamp) -> Engine {
    let me = identity(n);
    let cert = me.cert();
    let id = me.id.clone();
    let welcome = sponsor
        .admit(
            &Joiner {
                id: &id,
                cert: &cert,
                name: &format!("device {n}"),
                heartbeat: now.as_secs(),
            },
            now,
        )
        .unwrap();
    Engine::from_welcome(me, over_the_wire(&welcome), now).unwrap()
}

/// What one `send` delivered.
#[derive(Debug, Default)]
pub struct Sent {
    /// (recipient index, message id, per origin the highest seq carried)
    /// per message appended (or lost on a cut link).
    pub msgs: Vec<(usize, MessageId, BTreeMap<DeviceId, u64>)>,
}

impl Sent {
    /// Messages to node `to`.
    pub fn to(&self, to: usize) -> usize {
        self.msgs.iter().filter(|(t, _, _)| *t == to).count()
    }
}

/// Several devices and the links between them. A cut link models a
/// provider that deletes what one device appends to another's inbox.
pub struct Net {
    pub nodes: Vec<Node>,
    pub cut: BTreeSet<(usize, usize)>,
    /// Whether `send` first looks for its unacknowledged messages in the
    /// peers' inboxes and reports the vanished ones, as the driver does.
    pub probe: bool,
}

impl Net {
    /// A group of `n` devices at `now`: device 1 founds it and admits the
    /// others, then everyone settles.
    pub fn founded(n: usize, now: Timestamp) -> Net {
        let founder = Engine::found(identity(1), "device 1", &account_key(1), now).unwrap();
        let mut net = Net {
            nodes: vec![Node::new(founder, 1)],
            cut: BTreeSet::new(),
            probe: true,
        };
        for k in 2..=n {
            net.join(0, k as u8, now);
        }
        net.settle(now);
        net
    }

    /// Admits device number `n` through node `sponsor`; returns its index.
    pub fn join(&mut self, sponsor: usize, n: u8, now: Timestamp) -> usize {
        let engine = admit(&mut self.nodes[sponsor].engine, n, now);
        self.nodes.push(Node::new(engine, 100 + u64::from(n)));
        self.nodes.len() - 1
    }

    /// The index of a device.
    pub fn idx(&self, id: &DeviceId) -> usize {
        self.nodes.iter().position(|n| n.engine.id() == id).unwrap()
    }

    /// The id of node `i`.
    pub fn id(&self, i: usize) -> DeviceId {
        self.nodes[i].id()
    }

    /// Node `i`'s engine.
    pub fn e(&self, i: usize) -> &Engine {
        &self.nodes[i].engine
    }

    /// Node `i`'s engine, mutably.
    pub fn em(&mut self, i: usize) -> &mut Engine {
        &mut self.nodes[i].engine
    }

    /// Node `i` sends its due sync messages: each replaces its previous one
    /// in the peer's inbox, unless the link is cut (then it is lost).
    pub fn send(&mut self, i: usize, now: Timestamp) -> Sent {
        if self.probe {
            self.probe_vanished(i, now);
        }
        let node = &mut self.nodes[i];
        let out = node.engine.outgoing_syncs(&mut node.rng, now, HB).unwrap();
        let mut sent = Sent::default();
        for o in out {
            let to = self.idx(&o.peer);
            let uid = if self.cut.contains(&(i, to)) {
                None
            } else {
                let inbox = &mut self.nodes[to].inbox;
                if let Some(prev) = &o.replaces {
                    inbox.remove_id(&prev.message_id);
                }
                Some(inbox.append(o.bytes))
            };
            sent.msgs.push((to, o.message_id.clone(), o.covers.clone()));
            self.nodes[i].engine.mark_sent(
                &o.peer,
                SentRef {
                    message_id: o.message_id,
                    uid,
                    uid_validity: uid.map(|_| 1),
                    covers: o.covers,
                    at: now.as_secs(),
                    upto: None,
                },
            );
        }
        sent
    }

    /// The driver's check before sending: node `i`'s unacknowledged sync
    /// messages that are no longer in their peer's inbox are reported.
    pub fn probe_vanished(&mut self, i: usize, now: Timestamp) {
        for (peer, sent) in self.nodes[i].engine.sync_probes(now, HB) {
            let to = self.idx(&peer);
            if !self.nodes[to].inbox.has_id(&sent.message_id) {
                self.nodes[i].engine.vanished(&peer);
            }
        }
    }

    /// Node `i` processes its inbox.
    pub fn recv(&mut self, i: usize, now: Timestamp) -> PassOutcome {
        self.nodes[i].pass(now)
    }

    /// Node `i` processes its inbox, then sends.
    pub fn round(&mut self, i: usize, now: Timestamp) -> PassOutcome {
        let out = self.recv(i, now);
        self.send(i, now);
        out
    }

    /// Rounds of every node until nothing more is sent (at most 12).
    pub fn settle(&mut self, now: Timestamp) {
        for _ in 0..12 {
            let mut quiet = true;
            for i in 0..self.nodes.len() {
                self.recv(i, now);
                quiet &= self.send(i, now).msgs.is_empty();
            }
            if quiet {
                return;
            }
        }
    }
}

/// Runs `f` with a subscriber that captures every log line (debug and up)
/// of this thread; returns its result and the log text.
pub fn logged<R>(f: impl FnOnce() -> R) -> (R, String) {
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf(Arc::new(Mutex::new(Vec::new())));
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let r = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    (r, text)
}

/// The replicated state of an engine in its JSON form (for comparing the
/// states of two devices: the store's change marks are left out).
pub fn state_json(e: &Engine) -> serde_json::Value {
    serde_json::to_value(e.group()).unwrap()
}

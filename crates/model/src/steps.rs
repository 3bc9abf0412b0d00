//! The driver's steps, each a call into the real engine (the way
//! `crates/sma` calls it), memoised: a step is a pure function of the
//! device's state, what it reads and the time, so the same local step
//! reached through different interleavings of the other devices is
//! computed once. Randomness (message ids, session keys) is drawn from an
//! RNG seeded with a digest of the step's inputs, which keeps every step
//! deterministic, as the checker needs to rebuild a path.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use sma_crypto::PairingCode;
use sma_proto::engine::inbox::Triage;
use sma_proto::engine::liveness::Cleanup;
use sma_proto::engine::membership::Joiner;
use sma_proto::pairing::{JoinerPairing, MemberPairing};
use sma_proto::sync::SentRef;
use sma_proto::{DeviceId, Engine, MessageId, Timestamp};

use crate::keys::Dev;
use crate::mail::{Inbox, Msg};
use crate::node::{Node, Rules};

/// Heartbeat threshold passed to `outgoing_syncs` (one day: the model's
/// time never reaches it, so heartbeats play no part).
pub const HB: u64 = 86_400;

type Key = [u8; 32];

/// What one inbox pass decided.
#[derive(Clone, Debug)]
pub struct Pass {
    /// The device's state after the pass (its store's transaction).
    pub node: Node,
    /// UIDs (1-based positions) it deleted.
    pub delete: BTreeSet<u32>,
    /// The origin of an authenticated op that removed this device.
    pub removed_by: Option<DeviceId>,
}

/// One sync message sent.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The recipient.
    pub peer: Dev,
    /// The sealed message.
    pub msg: Msg,
    /// The previous sync message to that peer, which the sender deletes.
    pub replaces: Option<MessageId>,
}

/// The sync messages due, and the state that recorded them as sent.
#[derive(Clone, Debug)]
pub struct Sends {
    /// The device's state afterwards.
    pub node: Node,
    /// The messages.
    pub out: Vec<Outgoing>,
}

/// A completed pairing: the sponsor's state and the joiner's new one.
#[derive(Clone, Debug)]
pub struct Paired {
    /// The sponsor after admitting the joiner.
    pub sponsor: Node,
    /// The joiner, installed from the welcome (`None` if the code was
    /// rejected).
    pub joiner: Option<Node>,
}

/// Memo tables of the expensive steps (sealing and opening).
#[derive(Default)]
pub struct Cache {
    passes: Mutex<HashMap<Key, Pass>>,
    sends: Mutex<HashMap<Key, Sends>>,
    pairs: Mutex<HashMap<Key, Paired>>,
}

fn key(tag: &str, parts: &[&[u8]]) -> Key {
    let mut h = Sha256::new();
    h.update(tag);
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

fn rng_for(k: &Key) -> ChaCha20Rng {
    ChaCha20Rng::from_seed(*k)
}

fn rules_tag(rules: Rules) -> &'static [u8] {
    match rules {
        Rules::Real => b"real",
        Rules::NoRelay => b"no-relay",
    }
}

fn memo<T: Clone>(table: &Mutex<HashMap<Key, T>>, k: Key, make: impl FnOnce() -> T) -> T {
    if let Some(v) = table.lock().expect("memo lock").get(&k) {
        return v.clone();
    }
    let v = make();
    table.lock().expect("memo lock").insert(k, v.clone());
    v
}

impl Cache {
    /// One pass over `inbox`, the way the driver runs it: triage every
    /// header, show the wanted bodies, record the outcome.
    pub fn pass(&self, rules: Rules, node: &Node, inbox: &Inbox, now: Timestamp) -> Pass {
        let inbox_digest = inbox.digest();
        let k = key(
            "pass",
            &[
                rules_tag(rules),
                node.digest(),
                &inbox_digest,
                &now.as_ms().to_be_bytes(),
            ],
        );
        memo(&self.passes, k, || {
            let mut engine = node.engine(rules);
            let mut memory = node.memory().clone();
            let mut pass = engine.inbox_pass(now);
            let mut wanted = Vec::new();
            for (uid, m) in (1u32..).zip(inbox.msgs()) {
                let size = u32::try_from(m.bytes().len()).expect("small messages");
                let triage = pass.triage(uid, size, m.header(), &memory);
                if triage.expect("infallible memory") == Triage::Fetch {
                    wanted.push(uid);
                }
            }
            for (uid, m) in (1u32..).zip(inbox.msgs()) {
                if wanted.contains(&uid) {
                    pass.accept(uid, Some(m.bytes()));
                }
            }
            let out = pass.finish();
            memory.record(&out);
            Pass {
                node: node.after(&engine, memory),
                delete: out.delete,
                removed_by: out.removed_by,
            }
        })
    }

    /// The sync messages due at `now`, sealed and recorded as sent.
    pub fn sends(&self, rules: Rules, node: &Node, now: Timestamp) -> Sends {
        let k = key(
            "sends",
            &[rules_tag(rules), node.digest(), &now.as_ms().to_be_bytes()],
        );
        memo(&self.sends, k, || {
            let mut engine = node.engine(rules);
            let out = engine
                .outgoing_syncs(&mut rng_for(&k), now, HB)
                .expect("sealing works");
            let mut sent = Vec::new();
            for o in out {
                let peer = Dev::of(&o.peer).expect("peers are modelled devices");
                engine.mark_sent(
                    &o.peer,
                    SentRef {
                        message_id: o.message_id.clone(),
                        uid: None,
                        uid_validity: None,
                        covers: o.covers,
                        at: now.as_secs(),
                        upto: None,
                    },
                );
                sent.push(Outgoing {
                    peer,
                    msg: Msg::new(o.bytes),
                    replaces: o.replaces.map(|r| r.message_id),
                });
            }
            Sends {
                node: node.after(&engine, node.memory().clone()),
                out: sent,
            }
        })
    }

    /// `pair` on `sponsor` for `joiner` with the code typed on the joiner
    /// (`right`: the code shown; otherwise a guess that differs in one
    /// digit). The real state machines decide; only a pairing whose key
    /// confirmation verified admits anyone.
    pub fn pair(
        &self,
        rules: Rules,
        sponsor: &Node,
        joiner: Dev,
        right: bool,
        now: Timestamp,
    ) -> Paired {
        let k = key(
            "pair",
            &[
                rules_tag(rules),
                sponsor.digest(),
                &[joiner as u8, u8::from(right)],
                &now.as_ms().to_be_bytes(),
            ],
        );
        memo(&self.pairs, k, || {
            let mut rng = rng_for(&k);
            let mut engine = sponsor.engine(rules);
            let member = sponsor.dev();
            let Some(welcome) = handshake(&mut rng, &mut engine, member, joiner, right, now) else {
                return Paired {
                    sponsor: sponsor.clone(),
                    joiner: None,
                };
            };
            let joined = Engine::from_welcome(joiner.owned_identity(), welcome, now)
                .expect("a welcome from a member installs");
            Paired {
                sponsor: sponsor.after(&engine, sponsor.memory().clone()),
                joiner: Some(Node::new(joiner, joined.core().clone(), Default::default())),
            }
        })
    }
}

/// The pairing handshake between `engine` (the member) and `joiner`:
/// hello, reply, confirmation, admission and the sealed welcome. Returns
/// the welcome as the joiner opened it, or `None` when a step refused.
fn handshake(
    rng: &mut ChaCha20Rng,
    engine: &mut Engine,
    member: Dev,
    joiner: Dev,
    right: bool,
    now: Timestamp,
) -> Option<sma_proto::payload::Welcome> {
    let me = member.identity();
    let them = joiner.identity();
    let code = PairingCode::generate(rng);
    let typed = if right { code.clone() } else { wrong(&code) };
    let (member, hello) = MemberPairing::start(
        rng,
        &me.account,
        &me.id,
        &me.cert(),
        &them.id,
        them.cert(),
        &code,
    );
    let (waiting, reply) =
        JoinerPairing::respond(rng, &them.account, &them.id, &them.cert(), &hello, &typed).ok()?;
    let confirmed = member.on_reply(&reply).ok()?;
    let (id, cert) = confirmed.joiner();
    let welcome = engine
        .admit(
            &Joiner {
                id,
                cert,
                name: &format!("{joiner:?}"),
                heartbeat: now.as_secs(),
            },
            now,
        )
        .ok()?;
    let (confirm, sealed) = confirmed.finish(rng, &welcome, &me.key).ok()?;
    let proof = waiting.on_confirm(&confirm).ok()?;
    let (first, rest) = sealed.split_first()?;
    let welcome = proof.open_welcome(first, &them.key).ok()?;
    let parts = rest
        .iter()
        .map(|m| proof.open_part(m, &them.key))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    sma_proto::welcome_parts::assemble(welcome, parts).ok()
}

/// A code that differs from `code` in its last digit.
pub fn wrong(code: &PairingCode) -> PairingCode {
    let mut digits = code.digits().to_vec();
    let last = digits.last_mut().expect("12 digits");
    *last = if *last == b'9' { b'0' } else { *last + 1 };
    PairingCode::parse(std::str::from_utf8(&digits).expect("ASCII digits")).expect("12 digits")
}

/// The driver's probe before sending: our unacknowledged sync messages
/// that are no longer in their peer's inbox are reported vanished, so they
/// are sent again. Returns the changed node, if anything vanished.
pub fn probe(
    rules: Rules,
    node: &Node,
    now: Timestamp,
    present: impl Fn(Dev, &MessageId) -> bool,
) -> Option<Node> {
    let mut engine = node.engine(rules);
    let gone: Vec<DeviceId> = engine
        .sync_probes(now, HB)
        .into_iter()
        .filter(|(peer, sent)| Dev::of(peer).is_some_and(|p| !present(p, &sent.message_id)))
        .map(|(peer, _)| peer)
        .collect();
    if gone.is_empty() {
        return None;
    }
    for peer in &gone {
        engine.vanished(peer);
    }
    Some(node.after(&engine, node.memory().clone()))
}

/// The driver's removal notices: for every removed device whose inbox
/// lacks our notice (`has_notice` says), the plain message with the signed
/// ops that removed it.
pub fn notices(
    rules: Rules,
    node: &Node,
    now: Timestamp,
    has_notice: impl Fn(Dev) -> bool,
) -> Vec<(Dev, Msg)> {
    let engine = node.engine(rules);
    let mut out = Vec::new();
    for cleanup in engine.removed_cleanup(now) {
        let Cleanup::Notify(id) = cleanup else {
            continue;
        };
        let Some(dev) = Dev::of(&id) else {
            continue;
        };
        if has_notice(dev) {
            continue;
        }
        let k = key("notice", &[node.digest(), id.as_str().as_bytes()]);
        if let Some((_, bytes)) = engine.removal_notice(&mut rng_for(&k), &id, now) {
            out.push((dev, Msg::new(bytes)));
        }
    }
    out
}

//! The pairing parties' steps, each a call into `sma_proto::pairing`.
//! Member and joiner states are not kept (they are consumed by each step);
//! they are rebuilt from fixed seeds and the messages already handled, so
//! every step is deterministic.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use sma_crypto::PairingCode;
use sma_proto::engine::membership::Joiner;
use sma_proto::pairing::{JoinerPairing, MemberPairing};
use sma_proto::payload::{self, PairConfirm, PairHello, PairReply, PairWelcome, Welcome};
use sma_proto::Engine;

use super::Kind;
use super::{Author, JoinerSide, MemberSide, PAction, PMsg, PairWorld};
use crate::keys::{account_key, at, rng, Dev, ACCOUNT};
use crate::steps::wrong;

/// P's key confirmation and sealed welcome, as JSON.
type Sealed = (Vec<u8>, Vec<u8>);

/// The parties' fixed inputs: the code, the seeds, the welcome P hands out.
pub(super) struct Machines {
    code: PairingCode,
    welcome: Welcome,
    /// Sealed confirmation and welcome per accepted reply (sealing the
    /// welcome is the one slow step).
    finished: Mutex<HashMap<[u8; 32], Sealed>>,
}

const MEMBER_SEED: u64 = 11;
const GUESS_SEED: u64 = 21;
const STOLEN_SEED: u64 = 22;
const FAKE_SEED: u64 = 31;

fn parse<T: for<'de> serde::Deserialize<'de>>(m: &PMsg) -> T {
    payload::from_json(&m.json).expect("the model's messages parse")
}

fn seed_of(m: &PMsg) -> u64 {
    let d = Sha256::digest(&m.json);
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

impl Machines {
    /// The code P shows, and the welcome of a group A founded.
    pub(super) fn new() -> Machines {
        let now = at(0);
        let mut a = Engine::found(Dev::A.owned_identity(), "A", account_key(1), now)
            .expect("founding works");
        let j = Dev::J.identity();
        let welcome = a
            .admit(
                &Joiner {
                    id: &j.id,
                    cert: &j.cert(),
                    name: "J",
                    heartbeat: now.as_secs(),
                },
                now,
            )
            .expect("admitting works");
        Machines {
            code: PairingCode::generate(&mut rng(7)),
            welcome,
            finished: Mutex::default(),
        }
    }

    /// P's attempt, rebuilt: its state and its hello.
    fn member(&self) -> (MemberPairing, PairHello) {
        start(Dev::A, MEMBER_SEED, &self.code)
    }

    /// E's fake member, rebuilt (it guesses the code).
    fn fake(&self) -> (MemberPairing, PairHello) {
        start(Dev::M, FAKE_SEED, &wrong(&self.code))
    }

    /// P's hello, as first sent.
    pub(super) fn hello(&self) -> PMsg {
        PMsg::new(
            Kind::Hello,
            Author::Member,
            false,
            payload::to_json(&self.member().1),
        )
    }

    /// A message reaches its recipient.
    pub(super) fn deliver(&self, w: &mut PairWorld, m: PMsg) {
        match m.kind {
            Kind::Hello => self.joiner_hello(w, m),
            Kind::Reply if m.to_fake => {
                if w.attacker.fake_hello.is_some() && w.attacker.tested.is_none() {
                    let (fake, _) = self.fake();
                    w.attacker.tested = Some(fake.on_reply(&parse::<PairReply>(&m)).is_ok());
                }
            }
            Kind::Reply => self.member_reply(w, m),
            Kind::Confirm => {
                if let JoinerSide::Replied(hello) = &w.joiner {
                    let hello = hello.clone();
                    let ok = self.joiner(&hello).on_confirm(&parse(&m)).is_ok();
                    w.joiner = if ok {
                        JoinerSide::Confirmed(hello, m)
                    } else {
                        JoinerSide::Failed(hello)
                    };
                }
            }
            Kind::Welcome => {
                if let JoinerSide::Confirmed(hello, confirm) = &w.joiner {
                    let proof = self.joiner(hello).on_confirm(&parse(confirm));
                    let proof = proof.expect("it verified before");
                    let key = &Dev::J.identity().key;
                    if proof.open_welcome(&parse::<PairWelcome>(&m), key).is_ok() {
                        w.joiner = JoinerSide::Joined(hello.clone());
                    }
                }
            }
        }
    }

    /// J's state after answering `hello` with the code typed into it.
    fn joiner(&self, hello: &PMsg) -> JoinerPairing {
        answer(Dev::J, seed_of(hello), &parse(hello), &self.code).0
    }

    /// J answers the first hello it sees.
    fn joiner_hello(&self, w: &mut PairWorld, hello: PMsg) {
        if w.joiner != JoinerSide::Idle {
            return;
        }
        let parsed: PairHello = parse(&hello);
        let to_fake = parsed.member_id != Dev::A.id();
        let (_, reply) = answer(Dev::J, seed_of(&hello), &parsed, &self.code);
        w.joiner = JoinerSide::Replied(hello);
        w.send(PMsg::new(
            Kind::Reply,
            Author::Joiner,
            to_fake,
            payload::to_json(&reply),
        ));
    }

    /// P handles the first reply: on success it admits J and sends its
    /// confirmation and the sealed welcome.
    fn member_reply(&self, w: &mut PairWorld, reply: PMsg) {
        if w.member != MemberSide::Waiting {
            return;
        }
        w.replies_tried += 1;
        let (member, _) = self.member();
        let Ok(confirmed) = member.on_reply(&parse(&reply)) else {
            w.member = MemberSide::Burnt(reply);
            return;
        };
        assert_eq!(
            confirmed.joiner().0,
            &Dev::J.id(),
            "only J's key is accepted"
        );
        let k: [u8; 32] = Sha256::digest(&reply.json).into();
        let cached = self.finished.lock().expect("lock").get(&k).cloned();
        let (confirm, welcome) = cached.unwrap_or_else(|| {
            let key = &Dev::A.identity().key;
            let (c, sealed) = confirmed
                .finish(&mut rng(seed_of(&reply)), &self.welcome, key)
                .expect("sealing works");
            // The model's group is small: its welcome is one message.
            assert_eq!(sealed.len(), 1, "a small welcome has no continuation parts");
            let pair = (
                payload::to_json(&c).to_vec(),
                payload::to_json(&sealed[0]).to_vec(),
            );
            self.finished.lock().expect("lock").insert(k, pair.clone());
            pair
        });
        w.member = MemberSide::Admitted(reply);
        w.send(PMsg::new(Kind::Confirm, Author::Member, false, confirm));
        w.send(PMsg::new(Kind::Welcome, Author::Member, false, welcome));
    }

    /// An attacker step.
    pub(super) fn attack(&self, w: &mut PairWorld, action: PAction) {
        let hello = self.member().1;
        match action {
            PAction::InjectGuess | PAction::InjectStolen => {
                let stolen = action == PAction::InjectStolen;
                let (seed, code, author) = if stolen {
                    (STOLEN_SEED, self.code.clone(), Author::Stolen)
                } else {
                    (GUESS_SEED, wrong(&self.code), Author::Guess)
                };
                let (_, reply) = answer(Dev::J, seed, &hello, &code);
                let m = PMsg::new(Kind::Reply, author, false, payload::to_json(&reply));
                w.attacker.answered = Some(m.clone());
                w.send(m);
            }
            PAction::FakeHello => {
                let m = PMsg::new(
                    Kind::Hello,
                    Author::Guess,
                    false,
                    payload::to_json(&self.fake().1),
                );
                w.attacker.fake_hello = Some(m.clone());
                w.send(m);
            }
            PAction::ForgeConfirm => {
                if let JoinerSide::Replied(h) = &w.joiner {
                    let attempt = parse::<PairHello>(h).attempt;
                    let forged = PairConfirm {
                        attempt,
                        confirm: vec![0x5a; 32],
                    };
                    w.attacker.forged_confirm = true;
                    w.send(PMsg::new(
                        Kind::Confirm,
                        Author::Guess,
                        false,
                        payload::to_json(&forged),
                    ));
                }
            }
            PAction::AttackerOpens => w.attacker.opened = Some(self.attacker_opens(w, &hello)),
            other => unreachable!("not an attack: {other:?}"),
        }
    }

    /// E's stolen-code session checks P's confirmations and, with its own
    /// key, tries every welcome it has seen.
    fn attacker_opens(&self, w: &mut PairWorld, hello: &PairHello) -> bool {
        for c in w.seen.iter().filter(|m| m.kind == Kind::Confirm) {
            let session = answer(Dev::J, STOLEN_SEED, hello, &self.code).0;
            let Ok(proof) = session.on_confirm(&parse(c)) else {
                continue;
            };
            w.attacker.confirmed = true;
            let key = &Dev::M.identity().key;
            for welcome in w.seen.iter().filter(|m| m.kind == Kind::Welcome) {
                if proof.open_welcome(&parse(welcome), key).is_ok() {
                    return true;
                }
            }
        }
        false
    }
}

/// `MemberPairing::start` by `member` for J, from a fixed seed.
fn start(member: Dev, seed: u64, code: &PairingCode) -> (MemberPairing, PairHello) {
    let me = member.identity();
    let j = Dev::J.identity();
    MemberPairing::start(
        &mut rng(seed),
        ACCOUNT,
        &me.id,
        &me.cert(),
        &j.id,
        j.cert(),
        code,
    )
}

/// `JoinerPairing::respond` as `joiner` (its id and certificate) to
/// `hello` with `code`, from a fixed seed.
fn answer(
    joiner: Dev,
    seed: u64,
    hello: &PairHello,
    code: &PairingCode,
) -> (JoinerPairing, PairReply) {
    let me = joiner.identity();
    JoinerPairing::respond(&mut rng(seed), ACCOUNT, &me.id, &me.cert(), hello, code)
        .expect("a hello naming us is answered")
}

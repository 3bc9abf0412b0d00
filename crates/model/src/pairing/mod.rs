//! The pairing model: the order of pairing's steps (who reveals what
//! first) and one guess per code, with the state machines of
//! `sma_proto::pairing` (SPAKE2 and key confirmation in `sma_crypto::pake`)
//! taking every decision.
//!
//! Member P (device A) has shown a code for the announced joiner J and put
//! its hello in J's inbox. J answers the first hello it sees with the code
//! typed into it, checks the member's key confirmation, and opens the
//! welcome. The attacker E (device M; it reads every folder, as the
//! provider can) may deliver the messages in any order, drop or duplicate
//! them, answer P's hello itself with a guessed code or with a stolen one
//! (using J's public certificate: it has no other key P would accept),
//! send J a hello of its own with a guessed code, and send J a made-up key
//! confirmation. The member's and joiner's states are rebuilt from their
//! seeds and the messages they took in (the state machines are consumed
//! by each step, as in the driver), so the model state holds only bytes.

mod props;
mod steps;

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use stateright::{Model, Property};

use crate::report::{Counter, Explored};

/// What a pairing message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Step 1, member → joiner.
    Hello,
    /// Step 2, joiner → member.
    Reply,
    /// Step 3, member → joiner: the member's key confirmation.
    Confirm,
    /// Step 4, member → joiner: the sealed welcome.
    Welcome,
}

/// Who wrote a message (ghost information, for traces and properties).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Author {
    /// The member P.
    Member,
    /// The joiner J.
    Joiner,
    /// The attacker E with a guessed code.
    Guess,
    /// The attacker E with a stolen (right) code.
    Stolen,
}

/// A pairing message: the JSON the state machine produced, where it goes.
#[derive(Clone)]
pub struct PMsg {
    /// Its kind.
    pub kind: Kind,
    /// Its author.
    pub author: Author,
    /// Whether it goes to the attacker's fake member (a reply to its hello).
    pub to_fake: bool,
    /// The payload JSON.
    pub json: Arc<[u8]>,
    digest: [u8; 32],
}

impl PMsg {
    fn new(kind: Kind, author: Author, to_fake: bool, json: impl AsRef<[u8]>) -> PMsg {
        let json = json.as_ref();
        PMsg {
            kind,
            author,
            to_fake,
            digest: Sha256::digest(json).into(),
            json: json.into(),
        }
    }
}

impl PartialEq for PMsg {
    fn eq(&self, o: &PMsg) -> bool {
        self.digest == o.digest && self.to_fake == o.to_fake
    }
}

impl Eq for PMsg {}

impl Hash for PMsg {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
        self.to_fake.hash(state);
    }
}

impl PartialOrd for PMsg {
    fn partial_cmp(&self, o: &PMsg) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for PMsg {
    fn cmp(&self, o: &PMsg) -> std::cmp::Ordering {
        (self.digest, self.to_fake).cmp(&(o.digest, o.to_fake))
    }
}

impl fmt::Debug for PMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let to = if self.to_fake { " (to E)" } else { "" };
        write!(
            f,
            "{:?} by {:?}{to} #{:02x}",
            self.kind, self.author, self.digest[0]
        )
    }
}

/// The member's side.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MemberSide {
    /// Waiting for a reply (the hello is out).
    Waiting,
    /// The reply verified: confirmation and welcome sent, joiner admitted.
    Admitted(PMsg),
    /// The reply did not verify: the code is burnt.
    Burnt(PMsg),
}

/// The joiner's side.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum JoinerSide {
    /// Waiting for a hello.
    Idle,
    /// Answered this hello; waiting for the key confirmation.
    Replied(PMsg),
    /// The confirmation verified; waiting for the welcome.
    Confirmed(PMsg, PMsg),
    /// The welcome opened: J is a member of the hello's member's group.
    Joined(PMsg),
    /// The confirmation did not verify: this attempt is over.
    Failed(PMsg),
}

/// The attacker's knowledge and sessions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attacker {
    /// Its answer to P's hello, if it sent one (guessed or stolen code).
    pub answered: Option<PMsg>,
    /// Whether its session with the stolen code verified P's confirmation.
    pub confirmed: bool,
    /// Its fake member's hello to J, if it sent one.
    pub fake_hello: Option<PMsg>,
    /// Whether it checked its guess against J's answer to the fake hello
    /// (and whether the guess verified).
    pub tested: Option<bool>,
    /// Whether it sent J a made-up confirmation.
    pub forged_confirm: bool,
    /// Whether it tried to open the welcomes it saw (and whether one
    /// opened).
    pub opened: Option<bool>,
}

/// The pairing model's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PairWorld {
    /// Member P.
    pub member: MemberSide,
    /// Joiner J.
    pub joiner: JoinerSide,
    /// Attacker E.
    pub attacker: Attacker,
    /// Messages in flight, in no particular order.
    pub net: Vec<PMsg>,
    /// Every message ever sent (the attacker reads every folder).
    pub seen: BTreeSet<PMsg>,
    /// Provider and attacker actions taken.
    pub used: u8,
    /// Replies verified by P (ghost: at most one per code).
    pub replies_tried: u8,
}

/// One step of the pairing model.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum PAction {
    /// The message reaches its recipient, which handles it.
    Deliver(PMsg),
    /// The provider deletes it.
    Drop(PMsg),
    /// The provider delivers a copy later too.
    Duplicate(PMsg),
    /// E answers P's hello with a guessed code (and J's certificate).
    InjectGuess,
    /// E answers P's hello with the right code, stolen (and J's certificate).
    InjectStolen,
    /// E sends J a hello of its own, with a guessed code.
    FakeHello,
    /// E sends J a made-up key confirmation for J's attempt.
    ForgeConfirm,
    /// E's stolen-code session checks P's confirmation, then tries to open
    /// every welcome it has seen with its own key.
    AttackerOpens,
}

impl fmt::Debug for PAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PAction::Deliver(m) => write!(f, "deliver [{m:?}]"),
            PAction::Drop(m) => write!(f, "provider drops [{m:?}]"),
            PAction::Duplicate(m) => write!(f, "provider duplicates [{m:?}]"),
            PAction::InjectGuess => write!(f, "E answers P's hello with a guessed code"),
            PAction::InjectStolen => write!(f, "E answers P's hello with the stolen code"),
            PAction::FakeHello => write!(f, "E sends J a hello of its own (guessed code)"),
            PAction::ForgeConfirm => write!(f, "E sends J a made-up key confirmation"),
            PAction::AttackerOpens => write!(f, "E tries to open the welcome"),
        }
    }
}

/// The pairing model.
pub struct Pairing {
    /// Most provider and attacker actions on a path.
    pub budget: u8,
    steps: Arc<steps::Machines>,
    explored: Counter,
}

impl Pairing {
    /// The model with at most `budget` provider and attacker actions.
    pub fn new(budget: u8) -> Pairing {
        Pairing {
            budget,
            steps: Arc::new(steps::Machines::new()),
            explored: Counter::default(),
        }
    }
}

impl Explored for Pairing {
    fn explored(&self) -> usize {
        self.explored.get()
    }
}

impl Model for Pairing {
    type State = PairWorld;
    type Action = PAction;

    fn init_states(&self) -> Vec<PairWorld> {
        let hello = self.steps.hello();
        let mut w = PairWorld {
            member: MemberSide::Waiting,
            joiner: JoinerSide::Idle,
            attacker: Attacker::default(),
            net: Vec::new(),
            seen: BTreeSet::new(),
            used: 0,
            replies_tried: 0,
        };
        w.send(hello);
        vec![w]
    }

    fn actions(&self, w: &PairWorld, out: &mut Vec<PAction>) {
        self.explored.bump();
        let mut listed: Vec<&PMsg> = Vec::new();
        for m in &w.net {
            if listed.contains(&m) {
                continue;
            }
            listed.push(m);
            out.push(PAction::Deliver(m.clone()));
            if w.used < self.budget {
                out.push(PAction::Drop(m.clone()));
                out.push(PAction::Duplicate(m.clone()));
            }
        }
        if w.used >= self.budget {
            return;
        }
        let a = &w.attacker;
        if a.answered.is_none() {
            out.push(PAction::InjectGuess);
            out.push(PAction::InjectStolen);
        }
        if a.fake_hello.is_none() {
            out.push(PAction::FakeHello);
        }
        if !a.forged_confirm && matches!(w.joiner, JoinerSide::Replied(_)) {
            out.push(PAction::ForgeConfirm);
        }
        if a.answered
            .as_ref()
            .is_some_and(|m| m.author == Author::Stolen)
            && a.opened.is_none()
        {
            out.push(PAction::AttackerOpens);
        }
    }

    fn next_state(&self, w: &PairWorld, action: PAction) -> Option<PairWorld> {
        let mut next = w.clone();
        match action {
            PAction::Deliver(m) => {
                next.take(&m);
                self.steps.deliver(&mut next, m);
            }
            PAction::Drop(m) => {
                next.used += 1;
                next.take(&m);
            }
            PAction::Duplicate(m) => {
                next.used += 1;
                next.net.push(m);
            }
            other => {
                next.used += 1;
                self.steps.attack(&mut next, other);
            }
        }
        (next != *w).then_some(next)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        props::all()
    }
}

impl PairWorld {
    /// Puts a message in flight (and in the attacker's view).
    fn send(&mut self, m: PMsg) {
        self.seen.insert(m.clone());
        self.net.push(m);
    }

    /// Takes one copy of a message out of flight.
    fn take(&mut self, m: &PMsg) {
        if let Some(p) = self.net.iter().position(|x| x == m) {
            self.net.remove(p);
        }
    }
}

/// What changed between two pairing states.
pub fn describe(before: &PairWorld, after: &PairWorld) -> String {
    let mut out = String::new();
    if before.member != after.member {
        out.push_str(&format!("P: {:?}\n", after.member));
    }
    if before.joiner != after.joiner {
        out.push_str(&format!("J: {:?}\n", after.joiner));
    }
    if before.attacker != after.attacker {
        out.push_str(&format!("E: {:?}\n", after.attacker));
    }
    out.push_str(&format!("in flight: {:?}\n", after.net));
    out
}

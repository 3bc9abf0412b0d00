//! The membership model: devices A, B and C are members, J joins (through
//! any member, with the right code), C is removed (by any member, with the
//! account key rotated) or leaves, and the attacker's device M guesses a
//! pairing code. The provider may delete, duplicate, reorder and replay any
//! message, delete any folder and cut a link for good (deleting everything
//! one device appends to another's inbox from then on). Every decision is
//! the real engine's (`sma_proto::engine`); the model only moves messages.
//!
//! Fair delivery is modelled by [`Action::Settle`]: from any state, the
//! provider stops interfering (a cut link stays cut) and every running
//! device runs rounds, the clock moving one relay delay per sweep, until
//! two sweeps deliver nothing. The convergence properties are checked on
//! the settled states.

mod actions;
mod props;
mod setup;
mod world;

use std::fmt;
use std::sync::Arc;

use stateright::{Model, Property};

pub use props::CONVERGED;
pub use world::{Ghost, Provider, Slot, World, TICK_SECS};

use crate::keys::Dev;
use crate::mail::Msg;
use crate::node::Rules;
use crate::report::{Counter, Explored};
use crate::steps::Cache;

/// What the model explores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The engines' rules.
    pub rules: Rules,
    /// Most provider actions on a path.
    pub budget: u8,
    /// Most clock ticks on a path (before settling).
    pub max_ticks: u8,
    /// Whether C may be removed by a member.
    pub remove: bool,
    /// Whether C may leave.
    pub leave: bool,
    /// Whether J may pair.
    pub join: bool,
    /// Whether J is a member from the start (paired through A during
    /// setup) instead of joining during the run.
    pub joined: bool,
    /// Whether M may guess a code.
    pub guess: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            rules: Rules::Real,
            budget: 1,
            max_ticks: 1,
            remove: true,
            leave: true,
            join: true,
            joined: false,
            guess: true,
        }
    }
}

/// One step of the model.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// The device runs a sync round: its inbox pass, removal notices,
    /// probes for vanished messages, due sync messages.
    Round(Dev),
    /// The device runs `remove C --rotate-account-key`.
    Remove(Dev),
    /// The device runs `leave` (an inbox pass, its departure, then stop).
    Leave(Dev),
    /// `pair` on the sponsor for J, which types the right code.
    Pair(Dev),
    /// `pair` on the sponsor for M, whose owner guesses the code.
    Guess(Dev),
    /// The clock moves one relay delay.
    Tick,
    /// The provider deletes a message from an inbox.
    Delete(Dev, Msg),
    /// The provider appends a second copy of a message to its inbox.
    Duplicate(Dev, Msg),
    /// The provider moves a message behind the others in its inbox.
    Reorder(Dev, Msg),
    /// The provider appends a message it saw earlier to an inbox.
    Replay(Dev, Msg),
    /// The provider deletes an inbox folder (its owner recreates it).
    DeleteFolder(Dev),
    /// The provider deletes everything the first device appends to the
    /// second's inbox from now on.
    Cut(Dev, Dev),
    /// The provider stops interfering; every device runs rounds until
    /// nothing more is delivered.
    Settle,
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Round(d) => write!(f, "{d:?} runs a sync round"),
            Action::Remove(d) => write!(f, "{d:?} removes C (and rotates the account key)"),
            Action::Leave(d) => write!(f, "{d:?} leaves the group"),
            Action::Pair(d) => write!(f, "{d:?} pairs J (right code)"),
            Action::Guess(d) => write!(f, "{d:?} pairs M, whose owner guesses the code"),
            Action::Tick => write!(f, "{} seconds pass", TICK_SECS),
            Action::Delete(d, m) => write!(f, "provider deletes [{m:?}] from {d:?}'s inbox"),
            Action::Duplicate(d, m) => write!(f, "provider duplicates [{m:?}] in {d:?}'s inbox"),
            Action::Reorder(d, m) => write!(f, "provider moves [{m:?}] last in {d:?}'s inbox"),
            Action::Replay(d, m) => write!(f, "provider replays [{m:?}] into {d:?}'s inbox"),
            Action::DeleteFolder(d) => write!(f, "provider deletes {d:?}'s inbox folder"),
            Action::Cut(a, b) => {
                write!(
                    f,
                    "provider deletes everything {a:?} appends to {b:?}'s inbox from now on"
                )
            }
            Action::Settle => write!(f, "fair delivery: every device runs rounds until quiet"),
        }
    }
}

/// The membership model over the real engine.
pub struct Membership {
    config: Config,
    cache: Arc<Cache>,
    explored: Counter,
    init: World,
}

impl Membership {
    /// The model: founds the group (A, then B and C, and J if
    /// [`Config::joined`], paired through A) and lets it settle; that is the
    /// one initial state.
    pub fn new(config: Config) -> Membership {
        let mut model = Membership {
            config,
            cache: Arc::new(Cache::default()),
            explored: Counter::default(),
            init: World::empty(),
        };
        model.init = model.founded();
        model
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl Explored for Membership {
    fn explored(&self) -> usize {
        self.explored.get()
    }
}

impl Model for Membership {
    type State = World;
    type Action = Action;

    fn init_states(&self) -> Vec<World> {
        vec![self.init.clone()]
    }

    fn actions(&self, w: &World, out: &mut Vec<Action>) {
        self.explored.bump();
        if w.settled {
            return;
        }
        self.device_actions(w, out);
        self.provider_actions(w, out);
        out.push(Action::Settle);
    }

    fn next_state(&self, w: &World, action: Action) -> Option<World> {
        let next = match action {
            Action::Round(d) => self.round(w, d),
            Action::Remove(d) => self.remove(w, d),
            Action::Leave(d) => self.leave(w, d),
            Action::Pair(d) => self.pair(w, d, Dev::J),
            Action::Guess(d) => self.guess(w, d),
            Action::Tick => Some(self.tick(w)),
            Action::Settle => Some(self.settle(w)),
            other => Some(self.provider_step(w, other)),
        }?;
        (next != *w).then_some(next)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        props::all()
    }
}

/// What changed between two states, one line per device or inbox.
pub fn describe(before: &World, after: &World) -> String {
    let mut out = String::new();
    if before.secs != after.secs {
        out.push_str(&format!("clock: t={}s\n", after.secs));
    }
    for d in Dev::MEMBERS {
        if before.slot(d) != after.slot(d) {
            out.push_str(&format!("{d:?}: {:?}\n", after.slot(d)));
        }
        if before.inbox(d) != after.inbox(d) {
            out.push_str(&format!("{d:?}'s inbox: {:?}\n", after.inbox(d)));
        }
    }
    if before.provider.cut != after.provider.cut {
        out.push_str(&format!("cut: {:?}\n", after.provider.cut));
    }
    out
}

//! # sma-model — exhaustive model checks of sma's membership and pairing
//!
//! Two [stateright] models whose every protocol decision is taken by the
//! real core (`sma_proto`), not by a re-statement of its rules:
//!
//! * [`membership`]: three members (one of them removed or leaving), a
//!   joiner, an attacker guessing a pairing code, and the IMAP provider as
//!   the adversary (delete, duplicate, reorder, replay, delete a folder, cut
//!   a link). Devices run the real engine (`sma_proto::engine`) over
//!   in-memory inbox folders; messages are the sealed bytes the engines
//!   produced, opaque to the model.
//! * [`pairing`]: the pairing state machines (`sma_proto::pairing`) with an
//!   attacker that may inject a guess, answer as a fake member, and drop,
//!   duplicate or reorder the four pairing messages.
//!
//! Keys are generated once, deterministically; every randomised step draws
//! from an RNG seeded with a digest of its inputs, and the expensive steps
//! (sealing, opening) are memoised, so a state's successors are a pure
//! function of the state. The bounds, the numbers of states and how to run
//! a deeper check are in `docs/SECURITY.md` ("Model check").

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod keys;
pub mod mail;
pub mod membership;
pub mod node;
pub mod pairing;
pub mod report;
pub mod steps;

pub use report::{check, trace, Outcome};

//! # sma-proto — the sans-IO protocol core of sma
//!
//! Everything here is pure: it builds and parses SMA messages, merges the
//! replicated group state, runs the pairing state machines and decides which
//! sync messages to send. It performs no I/O, reads no clock (callers pass
//! `now`) and draws no randomness it was not handed (callers pass an RNG).
//! The `sma` crate drives it over IMAP and a SQLite store; the simulation
//! drives it over an in-memory server.
//!
//! The wire format is specified in `docs/PROTOCOL.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod autocrypt;
mod b64;
pub mod core;
pub mod device;
pub mod dirty;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod folders;
pub mod hlc;
pub mod ids;
pub mod ops;
pub mod pairing;
pub mod payload;
pub mod state;
pub mod sync;
pub mod time;
pub mod timefmt;
pub mod welcome_parts;

pub use engine::Engine;
pub use error::{InvalidMessage, PeerMisbehaved, ProtoError};
pub use ids::{DeviceId, MessageId, RandomId};
pub use time::Timestamp;

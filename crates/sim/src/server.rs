//! The in-memory IMAP server the simulation drives: `sma_imap::memory`'s
//! (the same model the driver's fast unit tests use), re-exported.

pub use sma_imap::memory::{ConnId, Folder, Message, Server, DELIMITER};

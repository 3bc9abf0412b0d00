//! `sma serve`: the library API as JSON-RPC 2.0, one object per line.
//!
//! Layers, each testable without a network:
//! * [`protocol`]: framing and error codes (sans I/O);
//! * `request`: the typed calls, one enum variant per method with its
//!   params, decoded with JSON-RPC's error codes;
//! * `methods`: the documentation of each method, from which `openrpc`
//!   generates the OpenRPC description (a test checks it against
//!   `request`);
//! * `handlers` and `watch`: one handler per method, calling into the `sma`
//!   library and answering with the views the CLI prints too
//!   (`crate::views`);
//! * [`server`]: the line loop over any reader and writer (stdin/stdout in
//!   `sma serve --stdio`, in-memory pipes in the unit tests).
//!
//! It lives in the binary crate rather than a crate of its own because it
//! is a front end like the CLI: it shares the CLI's home and password
//! resolution, and the `sma` binary is its only consumer.

mod handlers;
mod methods;
pub mod openrpc;
pub mod protocol;
mod request;
pub mod server;
mod watch;

pub use server::{serve, Settings};

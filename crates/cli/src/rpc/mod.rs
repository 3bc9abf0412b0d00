//! `sma serve`: the library API as JSON-RPC 2.0, one object per line.
//!
//! Layers, each testable without a network:
//! * [`protocol`]: framing and error codes (sans I/O);
//! * `methods`: the method table and typed params (also the source of the
//!   OpenRPC description in `openrpc`);
//! * `handlers` and `watch`: calls into the `sma` library;
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
pub mod server;
mod watch;

pub use server::{serve, Settings};

//! IMAP transport for sma.
//!
//! * [`Transport`] is the interface the protocol driver uses: folders,
//!   append, fetch, search, delete, IDLE. A simulated server can implement
//!   it too.
//! * [`ImapSession`] implements it against a real server over TLS,
//!   STARTTLS or (loopback only, unless allowed) plain TCP, using async-imap
//!   for framing and parsing.
//! * [`connect_with_retry`] and [`Backoff`] reconnect after connection-level
//!   failures.
//!
//! Every [`ImapError`] message says what went wrong and what to do; the
//! password never appears in logs or `Debug` output.

#![warn(missing_docs)]

mod backoff;
mod config;
mod conn;
mod error;
mod filter;
mod idle;
mod io;
mod ops;
mod probe;
mod response;
mod session;
mod tls;
mod transport;
mod types;
mod wire;

pub use backoff::{connect_with_retry, Backoff};
pub use config::{is_loopback_host, ImapConfig, Password, Security};
pub use error::ImapError;
pub use session::{ImapSession, CONNECT_TIMEOUT, DEFAULT_POLL_INTERVAL, MAX_IDLE};
pub use transport::Transport;
pub use types::{
    Capabilities, CreateOutcome, FetchedHeader, FetchedMessage, FolderInfo, IdleOutcome,
    MailboxState, MailboxStatus, Namespace, Uid, UidRange,
};

/// Compile-time checks that the session and its futures can move between
/// threads.
#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>(_: &T) {}
    fn futures(s: &mut ImapSession) {
        is_send(&s.idle(std::time::Duration::ZERO));
        is_send(&s.fetch_messages(&[], 0));
        is_send(&s.append("x", &[], b""));
        is_send(&s.idle_until(std::time::Duration::ZERO, async {}));
    }
    let _ = futures;
    is_send(&ImapSession::connect(&ImapConfig::new(
        "h",
        Security::Tls,
        "u",
        "p",
    )));
}

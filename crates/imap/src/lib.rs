//! IMAP transport for sma.
//!
//! * [`Transport`] is the interface the protocol driver uses: folders,
//!   append, fetch, search, delete, IDLE. A simulated server can implement
//!   it too.
//! * [`ImapSession`] implements it against a real server over TLS,
//!   STARTTLS or (loopback only, unless allowed) plain TCP. Responses are
//!   framed here, within bounds (see below), and parsed once each by
//!   imap-proto.
//! * [`connect_with_retry`] and [`Backoff`] reconnect after connection-level
//!   failures; [`ReconnectBackoff`] and [`RoundLimiter`] keep a long-running
//!   loop (`sma watch`) from being driven to spin by a server.
//!
//! The server is treated as an adversary: whatever it sends, a command holds
//! at most one response in memory (its lines under [`MAX_RESPONSE_LINE`],
//! its literals under the command's limit, checked before allocating) plus
//! what the caller asked for, and it ends within the command timeout plus
//! the time its bytes need at the minimum transfer rate
//! ([`DEFAULT_MIN_RATE`]). `docs/TRANSPORT.md` lists every bound.
//!
//! Login is by password (`AUTHENTICATE PLAIN`, else `LOGIN`) or by OAuth 2.0
//! access tokens from a [`TokenSource`] (`AUTHENTICATE OAUTHBEARER`, else
//! `XOAUTH2`; see [`ImapConfig::oauth2`]).
//!
//! Every [`ImapError`] message says what went wrong and what to do; the
//! password and tokens never appear in logs or `Debug` output.

#![warn(missing_docs)]

mod backoff;
mod config;
mod conn;
mod early;
mod error;
mod fetch;
mod framer;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod idle;
mod io;
mod limits;
mod listing;
#[cfg(feature = "memory")]
pub mod memory;
mod moving;
pub mod mutf7;
mod oauth2;
mod open;
mod ops;
mod probe;
mod rate;
mod reconnect;
mod response;
mod resume;
mod session;
mod status;
mod tls;
mod transport;
mod types;
mod wire;

pub use backoff::{connect_with_retry, Backoff};
pub use config::{is_loopback_host, ImapConfig, Password, Security};
pub use error::ImapError;
pub use limits::{
    BODY_SLACK, DEFAULT_MIN_RATE, MAX_HEADER_SIZE, MAX_RESPONSE_LINE, PREFETCH_BYTES,
    PREFETCH_MESSAGES,
};
pub use oauth2::{TokenFuture, TokenSource};
pub use rate::RoundLimiter;
pub use reconnect::{reconnect, ReconnectBackoff};
pub use resume::Resuming;
pub use session::{EarlyLogin, ImapSession, CONNECT_TIMEOUT, DEFAULT_POLL_INTERVAL, MAX_IDLE};
pub use tls::client_config as tls_client_config;
pub use transport::Transport;
pub use types::{
    Capabilities, CheckedAppend, CreateOutcome, FetchedHeader, FetchedMessage, FolderInfo,
    FolderStatuses, IdleOutcome, MailboxState, MailboxStatus, Namespace, Uid, UidRange,
    SPECIAL_USE,
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

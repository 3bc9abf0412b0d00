//! JMAP transport for sma: the [`sma_imap::Transport`] interface over JMAP
//! (RFC 8620 core, RFC 8621 mail), so the driver runs on a JMAP account as
//! it does on an IMAP one, and both see the same folders and messages.
//!
//! * [`JmapConfig`] says where the session resource is and how to log in
//!   (HTTP Basic or a Bearer token); `http://` is refused to hosts that
//!   are not loopback unless [`JmapConfig::allow_insecure`].
//! * [`JmapSession::connect`] reads the session resource and picks the
//!   primary mail account; the session implements [`sma_imap::Transport`].
//!
//! # The session cache
//!
//! With [`JmapConfig::session_cache`] set, a session keeps the session
//! resource and the mailbox list (ids, names, parents, subscriptions) in
//! that file, and the next session starts from it without a request: its
//! first round trip is its first call. The cache is never trusted beyond
//! what it saves: every listing asks `Mailbox/get` of its mailbox in the
//! same request and treats an id that is gone or renamed as stale (Cyrus
//! answers a query for an unknown mailbox with no messages, not an error);
//! an import into a stale id is refused by the server; both look the
//! mailbox up again. An answer that says the cached session resource is
//! wrong (404, 405 or 410 from its URLs, `accountNotFound`) drops the file
//! and is [`sma_imap::ImapError::ConnectionLost`], which the next
//! connection (reading the server again) cures; an API answer with another
//! `sessionState` drops it for the next session.
//!
//! # Folders
//!
//! A folder is a mailbox, named as the IMAP side of the same account names
//! it: the mailbox's name, below its parents' (`parentId` chain) joined
//! with the IMAP delimiter, behind the IMAP personal namespace's prefix
//! ([`JmapConfig::imap_namespace`], guessed as `INBOX.` with `.` on Cyrus).
//! The mailbox with role `inbox` is `INBOX`. On Cyrus with
//! `altnamespace: no` (Debian's default), the top-level mailbox
//! `_Autocrypt_SMA` is `INBOX._Autocrypt_SMA`, a child of the inbox is
//! `INBOX.INBOX.name`, and a `.` inside a mailbox name shows as `^`
//! (docs/COMPATIBILITY.md). Creating a folder creates missing parents in
//! the same request; deleting one removes its messages (as IMAP `DELETE`).
//!
//! # UIDs
//!
//! JMAP has no UIDs, so a session makes them up:
//!
//! * a message keeps its UID for the whole session, in every call;
//! * the messages of a mailbox seen for the first time are numbered in
//!   arrival order (`receivedAt`, then email id), and every message seen
//!   later gets a higher number than any handed out before in the session
//!   (one counter for all mailboxes, so a mailbox deleted and created again
//!   never reuses a UID);
//! * UIDNEXT of a mailbox is one above its highest UID so far and never
//!   goes down;
//! * UIDVALIDITY is one value for the session, taken from the clock in
//!   milliseconds and different from every earlier session of the process:
//!   after a reconnect every stored UID is void, and the driver reads the
//!   folders again (it recognises what it processed by `Message-ID`).
//!
//! # Requests
//!
//! Each operation is one API request where it can be: opening a folder is
//! an `Email/query` with an `Email/get` of the results (`#ids`
//! back-reference), with the header fields when headers are wanted;
//! `status_many` asks every folder in one request; `append_all` uploads
//! the messages side by side and imports them with one `Email/import`;
//! `status_and_append` puts each folder's listing before its
//! `Email/import` in one request (calls run in order, so each status is
//! from before its message). Appending is an upload and an `Email/import`
//! (flags as keywords: `\Seen` → `$seen`); `stage_append` starts the
//! upload on its own connection while the caller does other calls, and a
//! later append of the same bytes takes its blob id. Where the server
//! offers `Blob/get` (RFC 9404), opening a folder for its reader also
//! reads the first [`sma_imap::PREFETCH_BYTES`] of its first
//! [`sma_imap::PREFETCH_MESSAGES`] messages in the same request (whole
//! bodies only are kept). Other bodies are downloaded blob by blob, at most
//! [`session::MAX_MESSAGES`] listed per mailbox, every body read bounded
//! ([`MAX_API_RESPONSE`], the message's size plus
//! [`sma_imap::BODY_SLACK`] for a download), never trusting the server.
//! [`sma_imap::Transport::idle`] listens to the server's event source
//! (`types=Email,Mailbox`, a ping every [`session::PUSH_PING`] s, on an
//! HTTP client of its own so the stream never holds the API's kept-alive
//! connection). At a `state` event that names another `Email` state of the
//! account than the one the selected mailbox was listed at, it lists the
//! mailbox as its reader will and wakes if the mailbox holds other
//! messages, keeping that listing for the reader's next open (so a push
//! costs one request); an event naming that state, only mailboxes or
//! another account wakes nothing, and one it cannot read makes it look.
//! Where the server offers no event
//! stream (Debian's Cyrus 3.6 answers `204 No Content`), or the stream
//! ends or stays silent past its pings, it asks every
//! [`session::IDLE_POLL`] instead for [`session::QUICK_POLLS_FOR`] after
//! the session's last activity, then every [`session::IDLE_POLL_QUIET`].
//!
//! # Errors
//!
//! HTTP and RFC 8620 errors map onto [`sma_imap::ImapError`]: 401 is
//! `AuthRejected` (`TokenRejected` with a Bearer token), a network failure
//! `Unreachable` or `ConnectionLost`, a 5xx or `serverFail`
//! `ServerFailure`, a missing mailbox `NoSuchFolder`, a body over its bound
//! `Oversized`, a malformed answer `Protocol`, other refusals `No` or
//! `Bad`.

#![warn(missing_docs)]

mod cache;
mod config;
mod http;
mod names;
mod push;
pub mod session;
mod uids;

pub use config::{JmapAuth, JmapConfig};
pub use http::{MAX_API_RESPONSE, MAX_SESSION_SIZE, MIN_TRANSFER_RATE};
pub use names::MAX_MAILBOXES;
pub use session::JmapSession;

//! The error type of the IMAP transport.
//!
//! Every message names what went wrong and, where there is something to do,
//! what to do (see `CLI.md`): they are shown to users as they are.

use crate::types::Uid;

/// What can go wrong talking to an IMAP server.
///
/// How a caller should react (the methods say it too):
///
/// | variant | session after it | [`is_transient`](ImapError::is_transient) | what to do |
/// |---|---|---|---|
/// | `Unreachable` | none (connect failed) | yes | retry with backoff |
/// | `ConnectionLost`, `Timeout`, `TooSlow` | lost | yes | reconnect with backoff |
/// | `Oversized` | lost | no | reconnect with backoff; the same data will come again, so never without backoff |
/// | `ServerFailure` | usable | yes | retry the operation later (backoff); never read it as "missing" or "empty" |
/// | `NoSuchFolder` | usable | no | the folder is gone (the server said so unambiguously) |
/// | `No`, `Bad`, `Protocol`, `TooLarge`, `InvalidArgument` | usable (`Protocol`: lost) | no | report |
/// | `Tls`, `AuthRejected`, `TokenRejected`, `OAuth2Unavailable`, `InsecureRefused`, `StartTlsUnavailable` | none | no | report; the user must act |
/// | `TokenUnavailable` | none (connect failed) | yes | retry with backoff (the token command may need the network); report if it persists |
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// The server could not be reached (name resolution, TCP connect or
    /// connect timeout). Worth retrying.
    #[error("cannot reach the {} server at {addr}: {source} — check the host name, the port and the network", protocol_of(.addr))]
    Unreachable {
        /// `host:port` as configured.
        addr: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// TLS could not be established: certificate verification failed, the
    /// CA file is unusable, or the server does not speak TLS. Not retried.
    #[error("TLS connection to the {} server at {addr} failed: {reason}", protocol_of(.addr))]
    Tls {
        /// `host:port` as configured.
        addr: String,
        /// Why, with what to do about it.
        reason: String,
    },
    /// The server refused the login (a `NO` to `LOGIN`/`AUTHENTICATE`;
    /// over JMAP an HTTP 401, with `addr` the session URL).
    #[error("{} login failed for {user} at {addr}: {server_text} — check the password", protocol_of(.addr))]
    AuthRejected {
        /// The login name.
        user: String,
        /// `host:port` as configured.
        addr: String,
        /// The server's text, including its response code, e.g.
        /// `[AUTHENTICATIONFAILED] Authentication failed.`
        server_text: String,
    },
    /// The server refused the OAuth 2.0 access token (a `NO` to
    /// `AUTHENTICATE OAUTHBEARER`/`XOAUTH2`).
    #[error("OAuth 2.0 login failed for {user} at {addr}: {server_text} — the server rejected the access token: check that the token command prints a current token for this account, with the scope for {}", protocol_of(.addr))]
    TokenRejected {
        /// The login name.
        user: String,
        /// `host:port` as configured.
        addr: String,
        /// The server's text with its response code, followed by what its
        /// error challenge said (RFC 7628: the decoded JSON, e.g.
        /// `status=invalid_token`), if it sent one.
        server_text: String,
    },
    /// The OAuth 2.0 token source (the user's token command) gave no
    /// usable token. Worth retrying in long-running loops: the command may
    /// need the network to refresh the token.
    #[error("cannot get an OAuth 2.0 access token: {reason} — check the token command (run it by hand: it must print the access token on its first line)")]
    TokenUnavailable {
        /// Why, never including a token.
        reason: String,
    },
    /// OAuth 2.0 login was asked for, but the server offers neither
    /// `AUTH=OAUTHBEARER` nor `AUTH=XOAUTH2`.
    #[error("the IMAP server at {addr} offers no OAuth 2.0 login (neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2; it offers {offered}) — log in with a password instead of --oauth2-token-command")]
    OAuth2Unavailable {
        /// `host:port` as configured.
        addr: String,
        /// The mechanisms it offers, e.g. `AUTH=PLAIN`, or `no AUTH= mechanism`.
        offered: String,
    },
    /// [`crate::Security::Plain`] to a host that is not loopback without
    /// `allow_insecure`: refused before connecting.
    #[error("refusing to send the password unencrypted to {host}: plain connections (IMAP --security plain, JMAP http://) are only allowed to loopback addresses — use --security tls or starttls, or an https:// JMAP URL (or --allow-insecure if you really mean it)")]
    InsecureRefused {
        /// The host as configured.
        host: String,
    },
    /// STARTTLS was requested but the server does not offer it. The
    /// connection is closed; it is never continued unencrypted.
    #[error("the IMAP server at {addr} does not offer STARTTLS, so the connection cannot be encrypted — use --security tls (usually port 993)")]
    StartTlsUnavailable {
        /// `host:port` as configured.
        addr: String,
    },
    /// The server answered `NO` to a command.
    #[error("the mail server refused {command}: {text}")]
    No {
        /// The command, without credentials (e.g. `CREATE "_Autocrypt_SMA"`).
        command: String,
        /// The server's text, including its response code if any.
        text: String,
    },
    /// The server answered `BAD` to a command (a client bug or an
    /// incompatibility).
    #[error("the mail server rejected {command} as malformed: {text} — this is an incompatibility between sma and the server; please report it")]
    Bad {
        /// The command, without credentials.
        command: String,
        /// The server's text.
        text: String,
    },
    /// The folder does not exist: the server said `[NONEXISTENT]` or
    /// `[TRYCREATE]`, or refused without a response code while `LIST` does
    /// not show the folder. Never inferred from a server failure (see
    /// [`ImapError::ServerFailure`]).
    #[error("IMAP folder {folder:?} does not exist")]
    NoSuchFolder {
        /// The folder name as given.
        folder: String,
    },
    /// A message is larger than the caller's size cap.
    #[error(
        "message UID {uid} is {size} bytes, over the limit of {cap} bytes; it was not downloaded"
    )]
    TooLarge {
        /// The message's UID.
        uid: Uid,
        /// Its RFC822.SIZE.
        size: u32,
        /// The cap.
        cap: u32,
    },
    /// An argument cannot be sent to the server (e.g. a folder name with a
    /// line break, a malformed flag).
    #[error("invalid IMAP argument: {0}")]
    InvalidArgument(String),
    /// The server's answer was not understood or violated the protocol.
    #[error("IMAP protocol error: {0} — the server's answer was not understood; please report it")]
    Protocol(String),
    /// The server answered a command a second time while the commands
    /// sent behind it were being read (Cyrus 3.6 does with commands in the
    /// packet of an `AUTHENTICATE` with an initial response): it took some
    /// of them for something else, and their answers will not come. The
    /// connection is unusable.
    #[error("the mail server answered a command twice while reading {before}: it took the commands sent behind it for something else — reconnect")]
    AnsweredTwice {
        /// The last command of the flight being read.
        before: String,
    },
    /// The connection broke (closed by the server, reset, or left in an
    /// unknown state by an interrupted command). Reconnect.
    #[error("the connection to the mail server was lost: {0} — reconnect (check the network if this persists)")]
    ConnectionLost(String),
    /// The server did not answer in time. The session is unusable afterwards.
    #[error("timed out waiting for the mail server ({what}) — check the network; reconnect")]
    Timeout {
        /// What was being waited for.
        what: String,
    },
    /// The server sent more than sma accepts for the command: a response
    /// line over [`crate::MAX_RESPONSE_LINE`], a literal over the command's
    /// limit (e.g. a body larger than the size asked for), or more bytes in
    /// all than the command can need. Refused before the data was stored;
    /// the connection is closed (the session is lost).
    #[error("the mail server sent {what} in answer to {command}, over sma's limit of {limit}; the connection was closed — the server is misbehaving (or holds a message too large for sma)")]
    Oversized {
        /// The command it answered (without arguments).
        command: String,
        /// What it sent, e.g. `a literal of 530000000 bytes`.
        what: String,
        /// The limit, e.g. `1 MiB`.
        limit: String,
    },
    /// The server kept sending, but too slowly: a command may take the
    /// command timeout plus the time its bytes need at the minimum transfer
    /// rate (see [`crate::ImapSession::set_min_transfer_rate`]). Time spent
    /// parsing is not counted. The session is unusable afterwards.
    #[error("the mail server is too slow: {bytes} bytes in {secs} s while waiting for {what} — check the network (or the server is stalling on purpose); reconnect")]
    TooSlow {
        /// What was being waited for.
        what: String,
        /// Bytes moved (both ways) for the command.
        bytes: u64,
        /// Seconds it ran.
        secs: u64,
    },
    /// The server failed to carry out a command for reasons of its own:
    /// a `NO` with `[SERVERBUG]`, `[UNAVAILABLE]`, `[INUSE]`, `[LIMIT]`,
    /// `[CORRUPTION]` or `[EXPUNGEISSUED]`, a `NO` to a folder command for a
    /// folder `LIST` still shows, or answers that contradict each other (a
    /// mailbox said to hold messages whose FETCH returns none). Usually
    /// temporary: retry later; it is no evidence that a folder or a message
    /// is missing. The session stays usable.
    #[error("the mail server failed to carry out {command}: {text} — a problem on the server's side, usually temporary; try again later")]
    ServerFailure {
        /// The command, without credentials.
        command: String,
        /// The server's text (with its response code), or what contradicts.
        text: String,
    },
}

/// `JMAP` for an address that is a URL (a JMAP session resource), else
/// `IMAP`: the protocol named in login errors.
fn protocol_of(addr: &str) -> &'static str {
    if addr.starts_with("https://") || addr.starts_with("http://") {
        "JMAP"
    } else {
        "IMAP"
    }
}

impl ImapError {
    /// Whether the session this error came from is gone and a new connection
    /// is needed: [`ImapError::ConnectionLost`], [`ImapError::Timeout`] and
    /// [`ImapError::TooSlow`] (an abandoned command leaves the connection in
    /// an unknown state, so the session marks itself lost), and
    /// [`ImapError::Oversized`] (the connection is closed on purpose).
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            ImapError::ConnectionLost(_)
                | ImapError::AnsweredTwice { .. }
                | ImapError::Timeout { .. }
                | ImapError::TooSlow { .. }
                | ImapError::Oversized { .. }
        )
    }

    /// Whether a new connection is what it takes to go on: the session is
    /// lost ([`ImapError::is_connection_lost`]), or a command found it
    /// without one and could not make one ([`ImapError::Unreachable`]: a
    /// login sent before the greeting whose answer found the server gone,
    /// then no connection for the usual login, as during a restart).
    pub fn needs_reconnect(&self) -> bool {
        self.is_connection_lost() || matches!(self, ImapError::Unreachable { .. })
    }

    /// Whether the same operation may succeed when tried again later (on a
    /// new session if [`ImapError::is_connection_lost`]): unreachable, lost,
    /// timed out, too slow, a server failure, or a token command that
    /// failed. Always retry with a backoff that survives the retry (see
    /// [`crate::ReconnectBackoff`]).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ImapError::Unreachable { .. }
                | ImapError::TokenUnavailable { .. }
                | ImapError::ConnectionLost(_)
                | ImapError::Timeout { .. }
                | ImapError::TooSlow { .. }
                | ImapError::ServerFailure { .. }
        )
    }

    /// Whether this is a rejected login, by password or by OAuth 2.0 token
    /// (exit status 3 in the CLI).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            ImapError::AuthRejected { .. } | ImapError::TokenRejected { .. }
        )
    }

    /// Whether connecting again may help: unreachable server, lost
    /// connection, timeout, a token command that failed (it may need a
    /// network that is back by then), a server in trouble (a login answered
    /// `NO [UNAVAILABLE]` while the server starts or stops, a JMAP 503).
    /// Never TLS, authentication or configuration errors. Used by
    /// [`crate::connect_with_retry`].
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ImapError::Unreachable { .. }
                | ImapError::TokenUnavailable { .. }
                | ImapError::ConnectionLost(_)
                | ImapError::Timeout { .. }
                | ImapError::TooSlow { .. }
                | ImapError::ServerFailure { .. }
        )
    }

    /// A short stable name for `{"error": ..., "kind": ...}` output:
    /// `unreachable`, `tls`, `auth` (password or token rejected), `token`,
    /// `oauth2-unavailable`, `insecure`, `starttls-unavailable`, `no`,
    /// `bad`, `no-such-folder`, `too-large`, `invalid-argument`, `protocol`,
    /// `connection-lost`, `timeout`, `oversized`, `too-slow`,
    /// `server-failure`.
    pub fn kind(&self) -> &'static str {
        match self {
            ImapError::Unreachable { .. } => "unreachable",
            ImapError::Tls { .. } => "tls",
            ImapError::AuthRejected { .. } | ImapError::TokenRejected { .. } => "auth",
            ImapError::TokenUnavailable { .. } => "token",
            ImapError::OAuth2Unavailable { .. } => "oauth2-unavailable",
            ImapError::InsecureRefused { .. } => "insecure",
            ImapError::StartTlsUnavailable { .. } => "starttls-unavailable",
            ImapError::No { .. } => "no",
            ImapError::Bad { .. } => "bad",
            ImapError::NoSuchFolder { .. } => "no-such-folder",
            ImapError::TooLarge { .. } => "too-large",
            ImapError::InvalidArgument(_) => "invalid-argument",
            ImapError::Protocol(_) | ImapError::AnsweredTwice { .. } => "protocol",
            ImapError::ConnectionLost(_) => "connection-lost",
            ImapError::Timeout { .. } => "timeout",
            ImapError::Oversized { .. } => "oversized",
            ImapError::TooSlow { .. } => "too-slow",
            ImapError::ServerFailure { .. } => "server-failure",
        }
    }

    /// The CLI exit status for this error (see `CLI.md`): 3 for a rejected
    /// login (password or token), 2 for a refused insecure configuration (a
    /// usage error), 1 for everything else (network, server, protocol, no
    /// OAuth 2.0 on the server, a failed token command).
    pub fn exit_code(&self) -> i32 {
        match self {
            ImapError::AuthRejected { .. } | ImapError::TokenRejected { .. } => 3,
            ImapError::InsecureRefused { .. } => 2,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_protocol_the_device_speaks() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let imap = ImapError::Unreachable {
            addr: "127.0.0.1:993".into(),
            source: refused(),
        };
        assert!(imap
            .to_string()
            .starts_with("cannot reach the IMAP server at 127.0.0.1:993"));
        let jmap = ImapError::Unreachable {
            addr: "https://mail.example.org/.well-known/jmap".into(),
            source: refused(),
        };
        assert!(jmap
            .to_string()
            .starts_with("cannot reach the JMAP server at https://"));
        let tls = ImapError::Tls {
            addr: "https://mail.example.org/.well-known/jmap".into(),
            reason: "unknown issuer".into(),
        };
        assert!(
            tls.to_string()
                .starts_with("TLS connection to the JMAP server"),
            "{tls}"
        );
        // Errors without an address speak of the mail server.
        let lost = ImapError::ConnectionLost("reset".into());
        assert!(!lost.to_string().contains("IMAP"), "{lost}");
    }

    #[test]
    fn auth_message_matches_cli_contract() {
        let e = ImapError::AuthRejected {
            user: "alice@example.org".into(),
            addr: "127.0.0.1:143".into(),
            server_text: "[AUTHENTICATIONFAILED] Authentication failed.".into(),
        };
        assert_eq!(
            e.to_string(),
            "IMAP login failed for alice@example.org at 127.0.0.1:143: \
             [AUTHENTICATIONFAILED] Authentication failed. — check the password"
        );
        assert!(e.is_auth());
        assert!(!e.is_retryable());
        assert_eq!(e.exit_code(), 3);
    }

    #[test]
    fn a_login_rejected_over_jmap_says_jmap() {
        let e = ImapError::AuthRejected {
            user: "alice@example.org".into(),
            addr: "https://mail.example.org/.well-known/jmap".into(),
            server_text: "HTTP 401 Unauthorized".into(),
        };
        assert_eq!(
            e.to_string(),
            "JMAP login failed for alice@example.org at https://mail.example.org/.well-known/jmap: \
             HTTP 401 Unauthorized — check the password"
        );
        let t = ImapError::TokenRejected {
            user: "alice@example.org".into(),
            addr: "http://127.0.0.1:8008/.well-known/jmap".into(),
            server_text: "HTTP 401 Unauthorized".into(),
        };
        assert!(t.to_string().ends_with("with the scope for JMAP"), "{t}");
    }

    #[test]
    fn oauth2_errors_are_classified() {
        let rejected = ImapError::TokenRejected {
            user: "alice@example.org".into(),
            addr: "h:993".into(),
            server_text: "[AUTHENTICATIONFAILED] Authentication failed. (status=invalid_token)"
                .into(),
        };
        assert!(rejected.is_auth() && !rejected.is_retryable());
        assert_eq!((rejected.kind(), rejected.exit_code()), ("auth", 3));
        assert!(rejected.to_string().contains("status=invalid_token"));
        let none = ImapError::OAuth2Unavailable {
            addr: "h:993".into(),
            offered: "AUTH=PLAIN".into(),
        };
        assert!(!none.is_auth() && !none.is_retryable() && !none.is_transient());
        assert_eq!((none.kind(), none.exit_code()), ("oauth2-unavailable", 1));
        let failed = ImapError::TokenUnavailable {
            reason: "the command exited with status 1".into(),
        };
        assert!(failed.is_retryable() && failed.is_transient() && !failed.is_connection_lost());
        assert_eq!((failed.kind(), failed.exit_code()), ("token", 1));
    }

    #[test]
    fn classification() {
        let lost = ImapError::ConnectionLost("eof".into());
        assert!(lost.is_connection_lost() && lost.is_retryable());
        let t = ImapError::Timeout { what: "x".into() };
        assert!(t.is_connection_lost() && t.is_retryable());
        let tls = ImapError::Tls {
            addr: "h:993".into(),
            reason: "r".into(),
        };
        assert!(!tls.is_retryable() && !tls.is_connection_lost());
        let un = ImapError::Unreachable {
            addr: "h:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert!(un.is_retryable() && !un.is_connection_lost());
        assert!(un.to_string().contains("h:1"));
        assert_eq!(un.kind(), "unreachable");
        // A session that could not be made again is replaced, not used.
        assert!(un.needs_reconnect() && lost.needs_reconnect() && t.needs_reconnect());
        assert!(!tls.needs_reconnect());
        // A server in trouble at login: worth connecting again later.
        let busy = ImapError::ServerFailure {
            command: "AUTHENTICATE PLAIN".into(),
            text: "[UNAVAILABLE] Temporary authentication failure.".into(),
        };
        assert!(busy.is_retryable() && busy.is_transient());
        assert!(!busy.is_auth() && !busy.needs_reconnect());
    }

    #[test]
    fn classification_of_hostile_server_errors() {
        let big = ImapError::Oversized {
            command: "UID FETCH".into(),
            what: "a literal of 530000000 bytes".into(),
            limit: "16 MiB".into(),
        };
        assert!(big.is_connection_lost() && !big.is_transient() && !big.is_retryable());
        assert!(!big.to_string().contains("network"), "{big}");
        assert_eq!((big.kind(), big.exit_code()), ("oversized", 1));
        let slow = ImapError::TooSlow {
            what: "NOOP".into(),
            bytes: 20,
            secs: 61,
        };
        assert!(slow.is_connection_lost() && slow.is_transient() && slow.is_retryable());
        assert_eq!(slow.kind(), "too-slow");
        let bug = ImapError::ServerFailure {
            command: "SELECT \"x\"".into(),
            text: "[SERVERBUG] Internal error".into(),
        };
        // Trouble on the server's side: tried again later, on this
        // session (or, met while connecting, by connecting again).
        assert!(!bug.is_connection_lost() && bug.is_transient() && bug.is_retryable());
        assert_eq!(bug.kind(), "server-failure");
        assert!(bug.to_string().contains("[SERVERBUG]"), "{bug}");
        let gone = ImapError::NoSuchFolder { folder: "x".into() };
        assert!(!gone.is_transient());
    }
}

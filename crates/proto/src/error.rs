//! Errors of the protocol core, typed by who is at fault.

use thiserror::Error;

/// Bytes from the server that are not a valid SMA message for us. Such a
/// message is skipped (and deleted or left, per the spec), never applied.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidMessage {
    /// The bytes are not a parseable RFC 5322 message.
    #[error("not a parseable message")]
    Unparseable,
    /// The `Autocrypt-SMA` marker header is missing.
    #[error("no Autocrypt-SMA header")]
    NotSma,
    /// The marker header names a protocol version we do not speak.
    #[error("unsupported protocol version {0:?}")]
    UnsupportedVersion(String),
    /// The marker header names a kind we do not know.
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    /// A required header, attribute or MIME part is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A field has an invalid value.
    #[error("invalid {0}")]
    BadField(&'static str),
    /// The message is bigger than the protocol allows.
    #[error("message too large ({size} bytes, cap {cap})")]
    TooLarge {
        /// Size of the message.
        size: usize,
        /// The applicable cap.
        cap: usize,
    },
    /// The JSON payload does not match its schema.
    #[error("malformed payload: {0}")]
    Payload(String),
}

/// A message that is well-formed but that a peer should not have sent: bad
/// signatures, state from non-members, mismatching routing headers.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// The sender is not an active member of the group.
    #[error("sender {0} is not an active member")]
    NotAMember(String),
    /// The signature or decryption check failed.
    #[error("cryptographic check failed")]
    Crypto(#[source] sma_crypto::CryptoError),
    /// The sealed payload disagrees with the envelope header.
    #[error("payload does not match its envelope ({0})")]
    EnvelopeMismatch(&'static str),
    /// The message is addressed to another device.
    #[error("message is addressed to another device")]
    WrongRecipient,
    /// A replicated value breaks a rule of PROTOCOL 6.5 (an op whose stamp
    /// names another device, a record whose fingerprint is not its
    /// certificate's, a map key that is not its value's id, ...).
    #[error("invalid {what}: {rule}")]
    BrokenRule {
        /// What was checked (`op`, `member record`, `group state`, ...).
        what: &'static str,
        /// The rule it breaks.
        rule: &'static str,
    },
}

impl PeerMisbehaved {
    /// A broken rule of PROTOCOL 6.5.
    pub fn rule(what: &'static str, rule: &'static str) -> PeerMisbehaved {
        PeerMisbehaved::BrokenRule { what, rule }
    }
}

/// Any error the protocol core reports.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// See [`InvalidMessage`].
    #[error(transparent)]
    Invalid(#[from] InvalidMessage),
    /// See [`PeerMisbehaved`].
    #[error(transparent)]
    Peer(#[from] PeerMisbehaved),
    /// The pairing code was wrong (either side).
    #[error("the pairing code was rejected")]
    CodeRejected,
    /// A cryptographic operation on our own data failed.
    #[error("crypto operation on this device's own data failed")]
    Crypto(#[from] sma_crypto::CryptoError),
    /// The API was used in a way the protocol does not allow.
    #[error("{0}")]
    ApiMisuse(String),
}

/// An error and its causes on one line, `outer: cause: cause`, for logs.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

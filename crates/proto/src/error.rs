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
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// The sender is not an active member of the group.
    #[error("sender {0} is not an active member")]
    NotAMember(String),
    /// The signature or decryption check failed.
    #[error("cryptographic check failed: {0}")]
    Crypto(String),
    /// The sealed payload disagrees with the envelope header.
    #[error("payload does not match its envelope ({0})")]
    EnvelopeMismatch(&'static str),
    /// The message is addressed to another device.
    #[error("message is addressed to another device")]
    WrongRecipient,
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
    #[error("crypto: {0}")]
    Crypto(#[from] sma_crypto::CryptoError),
    /// The API was used in a way the protocol does not allow.
    #[error("{0}")]
    ApiMisuse(String),
}

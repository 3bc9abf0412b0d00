//! Error types.
//!
//! [`CryptoError`] is typed so that callers can tell apart the cases that
//! matter for the protocol:
//!
//! * a wrong secret typed by a person ([`CryptoError::WrongPassphrase`],
//!   [`CryptoError::CodeRejected`]),
//! * data that was modified or forged ([`CryptoError::Tampered`],
//!   [`CryptoError::Undecryptable`], [`CryptoError::BadSignature`]),
//! * data that is simply not for us ([`CryptoError::NotForUs`]),
//! * input that cannot be parsed at all ([`CryptoError::Malformed`]).
//!
//! Error messages never contain secret material.

/// Every error this crate returns (except code parsing, see [`CodeError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The input could not be parsed (bad armor, bad packets, wrong
    /// structure, bad lengths). The string says what, for a log line.
    #[error("malformed input: {0}")]
    Malformed(String),

    /// The encrypted message has no session key packet for our encryption
    /// key: it was sent to other devices.
    #[error("message is not encrypted to this device")]
    NotForUs,

    /// A session key packet names our key, but it cannot be decrypted with
    /// it (corrupted or forged session key packet).
    #[error("session key cannot be decrypted with our key")]
    Undecryptable,

    /// The ciphertext failed its integrity check (MDC / AEAD tag): it was
    /// modified or truncated after encryption.
    #[error("integrity check failed: ciphertext was modified")]
    Tampered,

    /// The message or data is not signed by the expected certificate: the
    /// signature is missing, invalid, or made by another key.
    #[error("signature missing, invalid, or not made by the expected sender")]
    BadSignature,

    /// The signature verifies cryptographically only if taken for another
    /// purpose: it lacks the expected context notation (a signature made
    /// for an announcement offered as a sealed payload's, say).
    #[error("signature made for another purpose (expected context {expected})")]
    WrongContext {
        /// The context the verifier required.
        expected: &'static str,
    },

    /// The decrypted plaintext is larger than the caller's limit.
    #[error("plaintext exceeds the limit of {max} bytes")]
    PlaintextTooLarge {
        /// The limit that was exceeded.
        max: usize,
    },

    /// The setup code does not decrypt the Autocrypt Setup Message.
    #[error("wrong setup code")]
    WrongPassphrase,

    /// Pairing key confirmation failed: the other side used a different
    /// code (or the exchange was tampered with).
    #[error("pairing code rejected: key confirmation failed")]
    CodeRejected,

    /// The key is valid OpenPGP but unusable for its role here (no
    /// encryption subkey, passphrase-protected secret, no user id, ...).
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),

    /// A caller-supplied argument is invalid (empty recipient list, an
    /// address with line breaks, an inconsistent pairing transcript, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A pairing or setup code could not be parsed.
    #[error(transparent)]
    Code(#[from] CodeError),

    /// An operation on our own, valid data failed unexpectedly (a bug or
    /// resource problem, not caused by peer input).
    #[error("{what} failed")]
    Internal {
        /// What failed, e.g. `OpenPGP operation`.
        what: &'static str,
        /// The underlying error, if there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

impl CryptoError {
    /// [`CryptoError::Internal`] without an underlying error.
    pub(crate) fn internal_without_source(what: &'static str) -> Self {
        CryptoError::Internal { what, source: None }
    }
}

/// A pairing code or setup code typed by a person could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// After removing the allowed separators the code is not exactly
    /// `expected_digits` ASCII digits.
    #[error("malformed code: expected {expected_digits} digits")]
    Malformed {
        /// How many digits the code must have (12 or 36).
        expected_digits: usize,
    },
}

/// Maps an rPGP error on data we produced ourselves (kept as the source).
pub(crate) fn internal(e: pgp::errors::Error) -> CryptoError {
    CryptoError::Internal {
        what: "OpenPGP operation",
        source: Some(Box::new(e)),
    }
}

/// Maps an rPGP error while parsing untrusted input.
pub(crate) fn malformed(e: impl std::fmt::Display) -> CryptoError {
    CryptoError::Malformed(e.to_string())
}

/// Runs a parser over hostile input, turning a panic inside a dependency
/// into [`CryptoError::Malformed`] instead of unwinding into the caller.
///
/// Belt and braces: rPGP is fuzzed and should not panic, but a panic in a
/// sync loop would be a remote denial of service.
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T, CryptoError>) -> Result<T, CryptoError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(CryptoError::Malformed(
            "parser panicked on hostile input".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_keep_their_cause() {
        let e = internal(pgp::errors::Error::from("boom".to_owned()));
        assert_eq!(e.to_string(), "OpenPGP operation failed");
        let cause = std::error::Error::source(&e).expect("the rPGP error is the source");
        assert!(cause.to_string().contains("boom"), "{cause}");
        let bare = CryptoError::internal_without_source("HKDF expand");
        assert!(std::error::Error::source(&bare).is_none());
    }
}

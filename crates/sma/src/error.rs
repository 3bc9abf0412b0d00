//! The library's error type and its mapping to the CLI's exit statuses.

use std::path::PathBuf;

use sma_imap::ImapError;
use sma_proto::ProtoError;
use sma_store::StoreError;
use thiserror::Error;

/// Broad classes of failure; each maps to one exit status of the CLI contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Operation failed (network, server, protocol): exit 1.
    Failed,
    /// Usage error: exit 2.
    Usage,
    /// Authentication or pairing code rejected: exit 3.
    Rejected,
    /// This device was removed from the group: exit 4.
    Removed,
    /// Timeout: exit 5.
    Timeout,
}

impl ErrorKind {
    /// The process exit status for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Failed => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Rejected => 3,
            ErrorKind::Removed => 4,
            ErrorKind::Timeout => 5,
        }
    }

    /// A short machine-readable name (the `kind` of JSON errors).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Failed => "failed",
            ErrorKind::Usage => "usage",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Removed => "removed",
            ErrorKind::Timeout => "timeout",
        }
    }
}

/// Errors of the sma library. Every message says what went wrong and what to do.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The IMAP transport failed.
    #[error(transparent)]
    Imap(#[from] ImapError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A protocol error.
    #[error("protocol error")]
    Proto(#[from] ProtoError),
    /// No device lives in this home yet.
    #[error("no sma device in {home} — run `sma init` first (or pass the right --home)")]
    NotInitialised {
        /// The home directory.
        home: PathBuf,
    },
    /// `init` on a home that already holds a device.
    #[error("{home} already holds sma device {device_id}; nothing was changed — use another --home to create a second device")]
    AlreadyInitialised {
        /// The home directory.
        home: PathBuf,
        /// The existing device.
        device_id: String,
    },
    /// A member-only operation on a pending device.
    #[error("this device is not paired yet — run `sma pair` on a member device and `sma join --code CODE` here")]
    NotPaired,
    /// A pairing operation on a device that is already a member.
    #[error("this device is already a member of the group; `join` is only for new devices")]
    AlreadyMember,
    /// This device was removed from the group.
    #[error("this device ({device_id}) was removed from the group{why}; it can no longer sync — run `sma init` with a fresh --home to set it up again")]
    Removed {
        /// Our id.
        device_id: String,
        /// Extra detail, e.g. " by device 0123…".
        why: String,
    },
    /// The pairing code did not match.
    #[error("{0}")]
    CodeRejected(String),
    /// `pair`: our pairing request vanished from the joiner's inbox
    /// unanswered (the joiner answered another member's request, or it was
    /// deleted).
    #[error("the pairing request for device {0} is gone from its inbox without an answer: it typed another member's code (see `sma devices` after the next `sma sync`), or the request was deleted — nothing was changed here; run `sma pair` again if it still needs pairing")]
    PairingWithdrawn(String),
    /// Nothing to pair with.
    #[error("no pending device found in the announcements folder — run `sma init` on the new device first, then `sma pair` again")]
    NoPendingDevice,
    /// A device announces itself as a member that this device's state does
    /// not know yet (another member paired it recently).
    #[error("device {0} announces itself as a member, but this device has not learnt of it yet (another member paired it recently?) — run `sma sync` here and try again")]
    NotYetKnown(String),
    /// An unknown device id was named.
    #[error("device {0} is not known in this group — see `sma devices`")]
    UnknownDevice(String),
    /// A recipient's inbox holds too many unprocessed application messages.
    #[error("the inbox of device {0} is full ({1} unprocessed messages); wait until it syncs, or remove it if it is lost")]
    InboxFull(String, usize),
    /// Waited too long.
    #[error("timed out after {secs} s waiting for {what}")]
    Timeout {
        /// What we waited for.
        what: String,
        /// How long.
        secs: u64,
    },
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The server holds something we cannot work with.
    #[error("{0}")]
    Server(String),
    /// Something on this machine is wrong (a damaged home, say).
    #[error("{0}")]
    Local(String),
    /// A value of ours could not be encoded for the store.
    #[error("cannot encode {what} for the local store")]
    Encode {
        /// What.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// One device id is announced under two different keys: one of them
    /// is an impostor, so pairing it is refused.
    #[error("device {device_id} is announced under two different keys ({}); one of them is an impostor — compare the fingerprint `sma init` or `sma join` printed on the new device, and remove the impostor's announcement or pair with --device after checking", fingerprints.join(" and "))]
    LookAlike {
        /// The device id.
        device_id: String,
        /// The fingerprints it is announced under.
        fingerprints: Vec<String>,
    },
    /// A command whose implementation has not landed yet.
    #[error("`sma {0}` is not implemented in this version yet")]
    NotImplemented(&'static str),
}

impl Error {
    /// The class of this error (and so the exit status).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Imap(e) if e.is_auth() => ErrorKind::Rejected,
            Error::Imap(ImapError::Timeout { .. } | ImapError::TooSlow { .. }) => {
                ErrorKind::Timeout
            }
            Error::Imap(ImapError::InsecureRefused { .. }) => ErrorKind::Usage,
            Error::Proto(ProtoError::CodeRejected) | Error::CodeRejected(_) => ErrorKind::Rejected,
            Error::Removed { .. } => ErrorKind::Removed,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Usage(_) | Error::AlreadyInitialised { .. } => ErrorKind::Usage,
            _ => ErrorKind::Failed,
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

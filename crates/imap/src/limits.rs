//! How much a server may send, and how slowly: the bounds every command is
//! held to (see `docs/TRANSPORT.md`).
//!
//! Memory: the framer ([`crate::framer`]) refuses a response line, a literal
//! or a command's total before it allocates for it. Time: a command may take
//! the command timeout plus the time its bytes need at the minimum transfer
//! rate (see `Conn::read`).

/// Longest response line sma accepts: the line bytes of one response (its
/// literals not counted) must stay below this. Legitimate lines are far
/// shorter (a SEARCH result of 100,000 UIDs is about 700 KB).
pub const MAX_RESPONSE_LINE: usize = 1 << 20;

/// Largest message header [`crate::Transport::fetch_headers`] accepts (a
/// literal larger than this fails the command). SMA headers are a few KB.
pub const MAX_HEADER_SIZE: u64 = 256 * 1024;

/// Slack on top of the requested maximum size for a message body literal
/// (servers' RFC822.SIZE and the literal may differ slightly).
pub const BODY_SLACK: u64 = 64 * 1024;

/// Default minimum average transfer rate (bytes per second) a command must
/// keep up after the command timeout: a command that moved `n` bytes may
/// take `timeout + n / rate`.
pub const DEFAULT_MIN_RATE: u64 = 16 * 1024;

/// Largest literal in an answer to any other command (folder names, flag
/// lists, unsolicited data).
pub(crate) const SMALL_LITERAL: u64 = 64 * 1024;

/// Bytes an ordinary command may receive in all (LIST of a large account,
/// SEARCH of a large folder).
pub(crate) const DEFAULT_TOTAL: u64 = 16 << 20;

/// Bytes one header fetch may receive in all.
pub(crate) const HEADERS_TOTAL: u64 = 32 << 20;

/// Messages whose bodies may come with the headers when a folder is opened
/// ([`crate::Transport::open_and_fetch_headers`]).
pub const PREFETCH_MESSAGES: u32 = 16;

/// Bytes of each of those bodies asked for: a message no larger comes whole.
pub const PREFETCH_BYTES: u32 = 32 * 1024;

/// Bytes one IDLE may receive (keep-alive chatter and change reports).
pub(crate) const IDLE_TOTAL: u64 = 1 << 20;

/// Extra bytes a body fetch may receive beyond twice what it asked for
/// (FETCH framing, unsolicited data, data for UIDs it did not ask for,
/// which is dropped without being copied).
pub(crate) const BODY_FETCH_EXTRA: u64 = 8 << 20;

/// Bounds of what the server may send while one command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Largest sum of literal bytes in one response.
    pub(crate) literal: u64,
    /// Bytes the command may receive in all (every response).
    pub(crate) total: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            literal: SMALL_LITERAL,
            total: DEFAULT_TOTAL,
        }
    }
}

impl Limits {
    /// For `IDLE`.
    pub(crate) fn idle() -> Self {
        Limits {
            literal: SMALL_LITERAL,
            total: IDLE_TOTAL,
        }
    }

    /// For `UID FETCH (... BODY.PEEK[HEADER])`.
    pub(crate) fn headers() -> Self {
        Limits {
            literal: MAX_HEADER_SIZE,
            total: HEADERS_TOTAL,
        }
    }

    /// For a header fetch with up to [`PREFETCH_MESSAGES`] bodies of at
    /// most [`PREFETCH_BYTES`] beside it.
    pub(crate) fn headers_and_prefetch() -> Self {
        let prefetch = u64::from(PREFETCH_MESSAGES) * (u64::from(PREFETCH_BYTES) + 1024);
        Limits {
            literal: MAX_HEADER_SIZE + u64::from(PREFETCH_BYTES),
            total: HEADERS_TOTAL + prefetch,
        }
    }

    /// For `UID FETCH (UID BODY.PEEK[])` of messages whose largest announced
    /// size is `largest` and whose sizes add up to `sum`.
    pub(crate) fn bodies(largest: u64, sum: u64) -> Self {
        Limits {
            literal: largest.saturating_add(BODY_SLACK),
            total: sum.saturating_mul(2).saturating_add(BODY_FETCH_EXTRA),
        }
    }
}

/// `n` bytes as a short human figure (`1 MiB`, `530000000 bytes`).
pub(crate) fn bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_limits_scale_with_the_request() {
        let l = Limits::bodies(16 << 20, 16 << 20);
        assert_eq!(l.literal, (16 << 20) + BODY_SLACK);
        assert_eq!(l.total, (32 << 20) + BODY_FETCH_EXTRA);
        let l = Limits::bodies(u64::MAX, u64::MAX);
        assert_eq!((l.literal, l.total), (u64::MAX, u64::MAX));
    }

    #[test]
    fn byte_figures() {
        assert_eq!(bytes(1 << 20), "1 MiB");
        assert_eq!(bytes(256 * 1024), "256 KiB");
        assert_eq!(bytes(530_000_000), "530000000 bytes");
        assert_eq!(bytes(0), "0 bytes");
    }
}

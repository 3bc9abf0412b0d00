//! Response framing: splits the server's bytes into complete responses
//! (lines and `{n}` literals) before anything parses them, and holds the
//! server to [`Limits`] before allocating.
//!
//! Why: imap-proto is a streaming parser that must be handed a growing
//! buffer and re-parses it from the start after every read (async-imap did
//! so after each 4 KiB), which is quadratic in the length of a response, and
//! it asks for a literal's whole announced size at once. Framing first costs
//! one pass over the bytes; the parser then runs exactly once per complete
//! response (see `docs/TRANSPORT.md` for the measurements).
//!
//! Bounds, all checked before the bytes are stored:
//! * the line bytes of one response: [`MAX_RESPONSE_LINE`];
//! * the literal bytes of one response: [`Limits::literal`], checked against
//!   the announced `{n}`, so nothing is reserved for a lie;
//! * everything received for the current command: [`Limits::total`].

use crate::limits::{Limits, MAX_RESPONSE_LINE};

/// Spare capacity reserved after a literal for the rest of its line (`)` and
/// CRLF), so that the buffer of a large literal is not doubled for it.
pub(crate) const AFTER_LITERAL: usize = 256;

/// Growth step of the buffer for lines that follow a literal: exact steps
/// instead of doubling, so a large literal's buffer is never doubled.
const CONTINUATION_GROWTH: usize = 64 * 1024;

/// A bound the server broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Overrun {
    /// The lines of one response exceed [`MAX_RESPONSE_LINE`].
    Line {
        /// The limit.
        limit: u64,
    },
    /// A literal was announced that would exceed [`Limits::literal`].
    Literal {
        /// The announced size.
        announced: u64,
        /// The limit.
        limit: u64,
    },
    /// The command would receive more than [`Limits::total`] bytes.
    Total {
        /// The limit.
        limit: u64,
    },
}

/// One complete response, as the server sent it.
#[derive(Debug)]
pub(crate) struct Frame {
    /// The bytes, from the first byte to the final CRLF.
    pub(crate) bytes: Vec<u8>,
    /// Whether it carries a literal.
    pub(crate) has_literal: bool,
}

impl Frame {
    /// Whether this is an untagged response (`* ...`).
    pub(crate) fn is_untagged(&self) -> bool {
        self.bytes.starts_with(b"* ")
    }

    /// The response with every non-ASCII character (or invalid UTF-8
    /// sequence) written as one `?`: for a response without literals that
    /// the parser refuses only for its 8-bit text (Dovecot puts UTF-8 folder
    /// names into the text of a `NO`). `None` when that cannot help. Never
    /// longer than the frame.
    pub(crate) fn ascii_fallback(&self) -> Option<Vec<u8>> {
        if self.has_literal || self.bytes.is_ascii() {
            return None;
        }
        let text = String::from_utf8_lossy(&self.bytes);
        Some(
            text.chars()
                .map(|c| u8::try_from(c).ok().filter(u8::is_ascii).unwrap_or(b'?'))
                .collect(),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Collecting a line up to its LF.
    Line,
    /// Collecting the bytes of a literal: this many are still to come.
    Literal(u64),
}

/// The framing state machine; see the module documentation.
#[derive(Debug)]
pub(crate) struct Framer {
    mode: Mode,
    /// The response being assembled.
    buf: Vec<u8>,
    /// Where the current line starts in `buf`.
    line_start: usize,
    /// Line bytes of the current response so far.
    line_bytes: usize,
    /// Literal bytes of the current response announced so far.
    literal_bytes: u64,
    /// Whether the current response announced a literal (even `{0}`).
    has_literal: bool,
    /// Bytes received for the current command.
    received: u64,
    limits: Limits,
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            mode: Mode::Line,
            buf: Vec::new(),
            line_start: 0,
            line_bytes: 0,
            literal_bytes: 0,
            has_literal: false,
            received: 0,
            limits: Limits::default(),
        }
    }
}

impl Framer {
    /// Starts a command with these limits: the count of received bytes
    /// starts again (a partial response keeps its framing state).
    pub(crate) fn begin(&mut self, limits: Limits) {
        self.limits = limits;
        self.received = 0;
    }

    /// Bytes of the response being assembled.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes received since [`Framer::begin`].
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Whether part of a response is buffered (the connection ending now
    /// would truncate it).
    pub(crate) fn in_progress(&self) -> bool {
        !self.buf.is_empty() || self.mode != Mode::Line
    }

    /// Takes bytes from `input` up to the end of the first complete
    /// response. Returns how many bytes were used and the response, if one
    /// was completed (the rest of `input` belongs to the next one).
    pub(crate) fn push(&mut self, input: &[u8]) -> Result<(usize, Option<Frame>), Overrun> {
        let mut pos = 0;
        while pos < input.len() {
            match self.mode {
                Mode::Literal(remaining) => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - pos);
                    self.buf.extend_from_slice(&input[pos..pos + take]);
                    pos += take;
                    self.received += take as u64;
                    let left = remaining - take as u64;
                    self.mode = if left == 0 {
                        self.line_start = self.buf.len();
                        Mode::Line
                    } else {
                        Mode::Literal(left)
                    };
                }
                Mode::Line => {
                    let rest = &input[pos..];
                    let (take, complete) = match rest.iter().position(|&b| b == b'\n') {
                        Some(i) => (i + 1, true),
                        None => (rest.len(), false),
                    };
                    self.check_line(take)?;
                    if self.has_literal && self.buf.capacity() - self.buf.len() < take {
                        self.buf.reserve_exact(take.max(CONTINUATION_GROWTH));
                    }
                    self.buf.extend_from_slice(&rest[..take]);
                    pos += take;
                    self.line_bytes += take;
                    self.received += take as u64;
                    if complete {
                        if let Some(frame) = self.end_of_line()? {
                            return Ok((pos, Some(frame)));
                        }
                    }
                }
            }
        }
        Ok((pos, None))
    }

    fn check_line(&self, more: usize) -> Result<(), Overrun> {
        if self.line_bytes.saturating_add(more) > MAX_RESPONSE_LINE {
            return Err(Overrun::Line {
                limit: MAX_RESPONSE_LINE as u64,
            });
        }
        if self.received.saturating_add(more as u64) > self.limits.total {
            return Err(Overrun::Total {
                limit: self.limits.total,
            });
        }
        Ok(())
    }

    /// A line is complete: either a literal follows, or the response is.
    fn end_of_line(&mut self) -> Result<Option<Frame>, Overrun> {
        let Some(n) = literal_suffix(&self.buf[self.line_start..]) else {
            let frame = Frame {
                bytes: std::mem::take(&mut self.buf),
                has_literal: self.has_literal,
            };
            self.line_start = 0;
            self.line_bytes = 0;
            self.literal_bytes = 0;
            self.has_literal = false;
            return Ok(Some(frame));
        };
        let literal_total = self.literal_bytes.saturating_add(n);
        if literal_total > self.limits.literal {
            return Err(Overrun::Literal {
                announced: n,
                limit: self.limits.literal,
            });
        }
        if self.received.saturating_add(n) > self.limits.total {
            return Err(Overrun::Total {
                limit: self.limits.total,
            });
        }
        let reserve = usize::try_from(n).map_err(|_| Overrun::Literal {
            announced: n,
            limit: self.limits.literal,
        })?;
        // Only now, with the size known to be acceptable, is memory taken.
        self.buf
            .reserve_exact(reserve.saturating_add(AFTER_LITERAL));
        self.literal_bytes = literal_total;
        self.has_literal = true;
        self.line_start = self.buf.len();
        if n > 0 {
            self.mode = Mode::Literal(n);
        }
        Ok(None)
    }
}

/// If `line` ends with a literal announcement (`{n}`, `{n+}`, `~{n}`) before
/// its CRLF, the literal's length.
pub(crate) fn literal_suffix(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"\n")?;
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let body = body.strip_suffix(b"}")?;
    let body = body.strip_suffix(b"+").unwrap_or(body);
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
#[path = "framer_tests.rs"]
mod tests;

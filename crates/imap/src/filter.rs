//! A byte-level filter below async-imap's parser.
//!
//! async-imap (through imap-proto) treats an untagged response it cannot
//! parse as a fatal I/O error and closes the stream. imap-proto 0.16 does not
//! know `* NAMESPACE`, for one. This filter sits between the socket and the
//! parser: it follows the response framing (lines and `{n}` literals) and
//! takes out every untagged response line (without literals) that imap-proto
//! cannot parse, keeping it for us to read. Everything else passes through
//! byte for byte.

use std::collections::VecDeque;

use async_imap::imap_proto::Response;

/// How many taken-out lines are kept (the oldest are dropped).
const MAX_CAPTURED: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Collecting a line up to its LF.
    Line,
    /// Passing through the bytes of a literal.
    Literal(u64),
}

/// The framing state machine; see the module documentation.
#[derive(Debug)]
pub(crate) struct ResponseFilter {
    mode: Mode,
    /// The line being collected.
    line: Vec<u8>,
    /// Whether the line being collected continues a response after a literal
    /// (so it is not the start of a response).
    continuation: bool,
    captured: VecDeque<Vec<u8>>,
}

impl Default for ResponseFilter {
    fn default() -> Self {
        ResponseFilter {
            mode: Mode::Line,
            line: Vec::new(),
            continuation: false,
            captured: VecDeque::new(),
        }
    }
}

impl ResponseFilter {
    /// Processes bytes read from the server, appending what the parser
    /// should see to `out`.
    pub(crate) fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match self.mode {
                Mode::Literal(remaining) => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    let left = remaining - take as u64;
                    if left == 0 {
                        self.mode = Mode::Line;
                        self.continuation = true;
                    } else {
                        self.mode = Mode::Literal(left);
                    }
                }
                Mode::Line => match input.iter().position(|&b| b == b'\n') {
                    Some(pos) => {
                        self.line.extend_from_slice(&input[..=pos]);
                        input = &input[pos + 1..];
                        self.finish_line(out);
                    }
                    None => {
                        self.line.extend_from_slice(input);
                        input = &[];
                    }
                },
            }
        }
    }

    /// At end of stream: passes on whatever partial line is left, so the
    /// parser sees the truncation.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.line);
    }

    /// Takes out the oldest captured line starting with `prefix`
    /// (case-insensitive), e.g. `b"* NAMESPACE "`.
    pub(crate) fn take_captured(&mut self, prefix: &[u8]) -> Option<Vec<u8>> {
        let idx = self.captured.iter().position(|l| {
            l.len() >= prefix.len() && l[..prefix.len()].eq_ignore_ascii_case(prefix)
        })?;
        self.captured.remove(idx)
    }

    fn finish_line(&mut self, out: &mut Vec<u8>) {
        let literal = literal_suffix(&self.line);
        let starts_response = !self.continuation;
        if starts_response
            && literal.is_none()
            && self.line.starts_with(b"* ")
            && !parses(&self.line)
        {
            let line = std::mem::take(&mut self.line);
            tracing::debug!(
                line = %String::from_utf8_lossy(&line[..line.len().min(200)]).trim_end(),
                "IMAP response not understood by the parser, set aside"
            );
            if self.captured.len() >= MAX_CAPTURED {
                self.captured.pop_front();
            }
            self.captured.push_back(line);
        } else {
            out.append(&mut self.line);
        }
        match literal {
            Some(n) => self.mode = Mode::Literal(n),
            None => self.continuation = false,
        }
    }
}

/// Whether imap-proto parses this complete line (an incomplete parse counts
/// as parsing: the real parser will wait for more).
fn parses(line: &[u8]) -> bool {
    match Response::from_bytes(line) {
        Ok(_) => true,
        Err(e) => e.is_incomplete(),
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
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, ResponseFilter) {
        let mut f = ResponseFilter::default();
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, &mut out);
        }
        (out, f)
    }

    #[test]
    fn literal_suffixes() {
        assert_eq!(literal_suffix(b"* 1 FETCH (BODY[] {12}\r\n"), Some(12));
        assert_eq!(literal_suffix(b"A1 APPEND x {3+}\r\n"), Some(3));
        assert_eq!(literal_suffix(b"* 1 FETCH (BINARY[] ~{0}\r\n"), Some(0));
        assert_eq!(literal_suffix(b"* OK {x}\r\n"), None);
        assert_eq!(literal_suffix(b"* OK done\r\n"), None);
        assert_eq!(literal_suffix(b"* OK {}\r\n"), None);
    }

    #[test]
    fn namespace_is_set_aside_and_rest_passes() {
        let input: &[u8] = b"* NAMESPACE ((\"\" \".\")) NIL NIL\r\nA1 OK Namespace completed.\r\n";
        let (out, mut f) = run(&[input]);
        assert_eq!(out, b"A1 OK Namespace completed.\r\n");
        let ns = f.take_captured(b"* namespace ").expect("captured");
        assert!(ns.starts_with(b"* NAMESPACE (("));
        assert!(f.take_captured(b"* NAMESPACE ").is_none());
    }

    #[test]
    fn literals_pass_untouched_even_if_they_look_like_responses() {
        let body = b"* NAMESPACE bogus\r\nline two\r\n";
        let mut input = format!("* 1 FETCH (UID 5 BODY[] {{{}}}\r\n", body.len()).into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(b")\r\n* 2 EXISTS\r\nA2 OK done\r\n");
        // Feed byte by byte to exercise every split point.
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        let (out, mut f) = run(&chunks);
        assert_eq!(out, input);
        assert!(f.take_captured(b"* ").is_none());
    }

    #[test]
    fn other_unparseable_untagged_lines_are_set_aside() {
        let input: &[u8] = b"* XWEIRD (this is [not parseable\r\nA1 OK done\r\n";
        let (out, mut f) = run(&[input]);
        assert_eq!(out, b"A1 OK done\r\n");
        assert!(f.take_captured(b"* XWEIRD").is_some());
    }

    #[test]
    fn partial_line_is_flushed_at_eof() {
        let (mut out, mut f) = run(&[b"* OK partial"]);
        assert!(out.is_empty());
        f.finish(&mut out);
        assert_eq!(out, b"* OK partial");
    }

    #[test]
    fn ordinary_responses_pass() {
        let input: &[u8] = b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n* LIST (\\HasNoChildren) \".\" INBOX\r\n* 3 EXISTS\r\n+ idling\r\n";
        let (out, _) = run(&[input]);
        assert_eq!(out, input);
    }
}

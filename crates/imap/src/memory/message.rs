//! A stored message and the header parsing the server needs (header
//! section, unfolded fields, `SEARCH HEADER` matching).

use std::sync::Arc;

/// One stored message.
#[derive(Clone, Debug)]
pub struct Message {
    /// The raw bytes.
    pub bytes: Arc<Vec<u8>>,
    /// Length of the header section, including its blank line.
    pub header_len: usize,
    /// Flagged `\Deleted` and not expunged yet (only a session without
    /// UIDPLUS leaves a message so, between its STORE and its EXPUNGE).
    pub deleted: bool,
}

impl Message {
    /// Stores `bytes` as a message.
    pub fn new(bytes: &[u8]) -> Message {
        Message {
            header_len: header_len(bytes),
            bytes: Arc::new(bytes.to_vec()),
            deleted: false,
        }
    }

    /// The header section.
    pub fn header(&self) -> &[u8] {
        &self.bytes[..self.header_len]
    }

    /// Whether a header field `name` contains `value` (case-insensitive
    /// substring, like IMAP `SEARCH HEADER`).
    pub fn header_matches(&self, name: &str, value: &str) -> bool {
        let value = value.to_ascii_lowercase();
        fields(self.header())
            .into_iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && v.to_ascii_lowercase().contains(&value))
    }
}

/// Length of the header section of `bytes` (up to and including the first
/// empty line; the whole message if there is none).
fn header_len(bytes: &[u8]) -> usize {
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            let rest = &bytes[i + 1..];
            if rest.starts_with(b"\r\n") {
                return i + 3;
            }
            if rest.starts_with(b"\n") {
                return i + 2;
            }
        }
    }
    bytes.len()
}

/// Unfolded header fields, in order.
fn fields(header: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(header);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((n, v)) = line.split_once(':') {
            out.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_search_is_case_insensitive_substring() {
        let m = Message::new(b"Message-ID: <Abc@x>\r\nX-Long: a\r\n b\r\n\r\nbody");
        assert!(m.header_matches("message-id", "<abc@X>"));
        assert!(m.header_matches("X-Long", "a b"));
        assert!(!m.header_matches("Subject", ""));
        assert_eq!(
            m.header(),
            b"Message-ID: <Abc@x>\r\nX-Long: a\r\n b\r\n\r\n"
        );
    }
}

//! Fuzzing entry point (feature `fuzzing`, used by `fuzz/`): server bytes
//! through the real framer, parser and response handlers.

use async_imap::imap_proto::{self, Response};

use crate::fetch::collect_fetch;
use crate::framer::{Frame, Framer, AFTER_LITERAL};
use crate::limits::{Limits, MAX_RESPONSE_LINE};
use crate::response::{done_of, MailboxTracker, SetAside, Watch};
use crate::wire::parse_namespace;

/// Feeds `data` to the response path as a server would send it: the first
/// byte chooses the read size (1 to 256 bytes), the rest is the stream.
/// Every complete response is parsed once and handed to the handlers the
/// session uses (completion codes, mailbox tracking, FETCH collection,
/// set-aside lines, NAMESPACE). Panics only on a broken invariant: the
/// framer must never hold more than the limits allow, nor stall.
pub fn responses(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let read_size = 1 + usize::from(first);
    let limits = Limits {
        literal: 4096,
        total: 1 << 20,
    };
    let mut framer = Framer::default();
    framer.begin(limits);
    let mut state = Handlers::default();
    for read in stream.chunks(read_size) {
        let mut input = read;
        while !input.is_empty() {
            let Ok((used, frame)) = framer.push(input) else {
                // A broken bound closes the connection.
                return;
            };
            assert!(used > 0 && used <= input.len(), "the framer stalled");
            input = &input[used..];
            let bound = MAX_RESPONSE_LINE as u64 + limits.literal + AFTER_LITERAL as u64;
            assert!(framer.buffered() as u64 <= bound, "framer over its bounds");
            if let Some(frame) = frame {
                state.handle(frame);
            }
        }
    }
}

/// A folder name from the server through the modified UTF-7 decoder:
/// whatever the bytes, no panic, and whatever decodes is the canonical
/// encoding of what it decodes to. Any string encodes to something that
/// decodes back to it.
pub fn folder_name(data: &[u8]) {
    if let Ok(name) = crate::mutf7::decode(data) {
        assert_eq!(
            crate::mutf7::encode(&name).as_bytes(),
            data,
            "decoded a non-canonical name"
        );
    }
    let text = String::from_utf8_lossy(data);
    let wire = crate::mutf7::encode(&text);
    assert_eq!(
        crate::mutf7::decode(wire.as_bytes()).as_deref(),
        Ok(&*text),
        "an encoded name does not decode back"
    );
}

#[derive(Default)]
struct Handlers {
    tracker: MailboxTracker,
    set_aside: SetAside,
}

impl Handlers {
    fn handle(&mut self, frame: Frame) {
        let parsed = imap_proto::parser::parse_response(&frame.bytes);
        if let Ok((&[], resp)) = &parsed {
            self.response(resp);
            return;
        }
        drop(parsed);
        if let Some(ascii) = frame.ascii_fallback() {
            assert!(ascii.len() <= frame.bytes.len() && ascii.is_ascii());
            if let Ok((&[], resp)) = imap_proto::parser::parse_response(&ascii) {
                self.response(&resp);
                return;
            }
        }
        if frame.is_untagged() && !frame.has_literal {
            if let Some(Some(ns)) = parse_namespace(&frame.bytes) {
                folder_name(ns.prefix.as_bytes());
            }
            self.set_aside.keep(frame.bytes);
            let _ = self.set_aside.take(b"* NAMESPACE ");
        }
    }

    fn response(&mut self, resp: &Response<'_>) {
        for watch in [Watch::Normal, Watch::OwnExpunge, Watch::Idle] {
            self.tracker.observe(resp, watch);
        }
        match resp {
            Response::Done { .. } => {
                let done = done_of(resp);
                let _ = done.text_code();
                let _ = done.into_error("FUZZ".into()).to_string();
            }
            Response::Fetch(..) => {
                let mut all = std::collections::BTreeMap::new();
                collect_fetch(resp, &|_| true, &mut all);
                let mut none = std::collections::BTreeMap::new();
                collect_fetch(resp, &|_| false, &mut none);
                assert!(none.is_empty(), "data kept for a UID not asked for");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed corpus in `fuzz/corpus/folder_name/`, and every one- and
    /// two-byte mutation of each seed.
    #[test]
    fn folder_name_corpus_and_mutations() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/folder_name");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no seed corpus in {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        assert!(files.len() >= 4, "seed corpus too small: {files:?}");
        for f in files {
            let data = std::fs::read(&f).expect("corpus file");
            folder_name(&data);
            for pos in 0..data.len() {
                for b in [b'&', b'-', b'A', b',', b'+', 0x00, 0x7f, 0xc3, 0xff] {
                    let mut m = data.clone();
                    m[pos] = b;
                    folder_name(&m);
                    m.truncate(pos);
                    folder_name(&m);
                }
            }
        }
    }

    /// The seed corpus in `fuzz/corpus/imap_response/`, and cheap
    /// mutations of it, run on every `cargo test`.
    #[test]
    fn seed_corpus_and_mutations() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/imap_response");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no seed corpus in {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        assert!(files.len() >= 8, "seed corpus too small: {files:?}");
        for f in files {
            let data = std::fs::read(&f).expect("corpus file");
            responses(&data);
            let n = data.len();
            for cut in [1, n / 3, n / 2, n.saturating_sub(2)] {
                responses(&data[..cut.min(n)]);
            }
            for pos in [n / 5, n / 2, n * 4 / 5] {
                for b in [b'{', b'}', b'\r', b'\n', b'"', b'0', 0xff] {
                    let mut m = data.clone();
                    if pos < n {
                        m[pos] = b;
                        responses(&m);
                    }
                }
            }
            for read in 0..=255u8 {
                let mut m = data.clone();
                if let Some(first) = m.first_mut() {
                    *first = read;
                }
                responses(&m);
            }
        }
    }

    #[test]
    fn hostile_inputs_end_cleanly() {
        let mut huge = b"\x40* 1 FETCH (UID 1 BODY[] {530000000}\r\n".to_vec();
        huge.extend_from_slice(&[b'x'; 5000]);
        responses(&huge);
        let mut line = b"\xff* ".to_vec();
        line.resize(MAX_RESPONSE_LINE + 10, b'a');
        responses(&line);
        responses(b"");
        responses(b"\x00");
    }

    /// IMAP-ish token soup from a fixed seed: a cheap stand-in for the
    /// fuzzer on every `cargo test` (3 million inputs ran clean once).
    #[test]
    fn random_token_soup() {
        let tokens: &[&[u8]] = &[
            b"* ",
            b"S1 ",
            b"+ ",
            b"OK ",
            b"NO ",
            b"BAD ",
            b"BYE ",
            b"FETCH ",
            b"(",
            b")",
            b"UID ",
            b"1 ",
            b"42 ",
            b"BODY[] ",
            b"BODY[HEADER] ",
            b"RFC822.SIZE ",
            b"{5}\r\n",
            b"{0}\r\n",
            b"{4096}\r\n",
            b"{9999999}\r\n",
            b"\"",
            b"\\",
            b"\r\n",
            b"\n",
            b"[",
            b"]",
            b"EXISTS",
            b"EXPUNGE",
            b"LIST ",
            b"NIL ",
            b"NAMESPACE ",
            b"SEARCH ",
            b"STATUS ",
            b"CAPABILITY ",
            b"APPENDUID 1 2",
            b"~{3}\r\n",
            b"\x00",
            b"\xff",
            b"abc",
            b"ENVELOPE (",
            b"BODYSTRUCTURE (",
            b"FLAGS (\\Seen)",
            b"MODSEQ (5)",
            b"VANISHED (EARLIER) 1:5",
            b"INTERNALDATE \"01-Jan-2020 00:00:00 +0000\" ",
            b"ESEARCH ",
            b"METADATA ",
            b"QUOTA ",
        ];
        let mut state: u64 = 0x1234_5678;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut data = vec![(next() % 256) as u8];
            let n = next() % 80;
            for _ in 0..n {
                data.extend_from_slice(tokens[(next() % tokens.len() as u64) as usize]);
            }
            responses(&data);
        }
    }
}

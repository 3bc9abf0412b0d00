//! Modified UTF-7 (RFC 3501 §5.1.3): how IMAP writes folder names on the
//! wire.
//!
//! Printable US-ASCII (0x20–0x7E) stands for itself, except `&`, which is
//! written `&-`. Every other character is written as UTF-16 in a base64
//! variant (`,` instead of `/`, no padding) between `&` and `-`.
//!
//! [`encode`] is total. [`decode`] accepts exactly what [`encode`] produces
//! (the canonical form), so the mapping between names and wire forms is one
//! to one; anything else (raw 8-bit bytes, controls, a bad base64 run, an
//! unpaired surrogate, ASCII hidden in base64, two base64 runs side by side,
//! a run without its `-`) is a [`Mutf7Error`]. It never panics and runs in
//! linear time, whatever the bytes.

use std::fmt;

/// The base64 alphabet of modified UTF-7 (RFC 3501: `,` replaces `/`).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Why a wire name is not canonical modified UTF-7.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Mutf7Error {
    /// Byte offset of the problem in the input.
    pub at: usize,
    /// What is wrong there.
    pub reason: &'static str,
}

impl fmt::Display for Mutf7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not modified UTF-7 at byte {}: {}", self.at, self.reason)
    }
}

/// Whether `c` is written as itself (printable US-ASCII; `&` is escaped).
fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

/// Encodes a folder name for the wire. ASCII names without `&` come back
/// unchanged.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut units: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) {
            flush(&mut units, &mut out);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut units, &mut out);
    out
}

/// Writes pending UTF-16 units as one `&...-` run.
fn flush(units: &mut Vec<u16>, out: &mut String) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut bits: u32 = 0;
    let mut nbits = 0u32;
    for u in units.drain(..) {
        bits = (bits << 16) | u32::from(u);
        nbits += 16;
        while nbits >= 6 {
            nbits -= 6;
            out.push(char::from(ALPHABET[((bits >> nbits) & 0x3f) as usize]));
        }
        bits &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        out.push(char::from(
            ALPHABET[((bits << (6 - nbits)) & 0x3f) as usize],
        ));
    }
    out.push('-');
}

/// The value of a modified-base64 digit.
fn digit(b: u8) -> Option<u32> {
    let v = match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes a wire name (canonical modified UTF-7 only, see the module
/// documentation).
pub fn decode(wire: &[u8]) -> Result<String, Mutf7Error> {
    let err = |at, reason| Err(Mutf7Error { at, reason });
    let mut out = String::with_capacity(wire.len());
    let mut i = 0;
    // Where the last base64 run ended (two runs must not touch).
    let mut last_run_end = None;
    while i < wire.len() {
        let b = wire[i];
        if b != b'&' {
            if !(0x20..=0x7e).contains(&b) {
                return err(i, "a byte outside printable US-ASCII");
            }
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        match wire.get(i) {
            None => return err(start, "'&' at the end"),
            Some(b'-') => {
                out.push('&');
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        if last_run_end == Some(start) {
            return err(start, "two base64 runs side by side");
        }
        i = decode_run(wire, i, &mut out)?;
        last_run_end = Some(i);
    }
    Ok(out)
}

/// Decodes the base64 run starting at `i` (after its `&`) into `out`;
/// returns the index after its closing `-`.
fn decode_run(wire: &[u8], mut i: usize, out: &mut String) -> Result<usize, Mutf7Error> {
    let err = |at, reason| Err(Mutf7Error { at, reason });
    let mut bits: u32 = 0;
    let mut nbits = 0u32;
    let mut high: Option<u16> = None;
    loop {
        let Some(&b) = wire.get(i) else {
            return err(i, "a base64 run without its closing '-'");
        };
        if b == b'-' {
            break;
        }
        let Some(v) = digit(b) else {
            return err(i, "not a modified-base64 digit");
        };
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 16 {
            nbits -= 16;
            let unit = ((bits >> nbits) & 0xffff) as u16;
            bits &= (1 << nbits) - 1;
            match (high.take(), unit) {
                (None, 0xd800..=0xdbff) => high = Some(unit),
                (None, 0xdc00..=0xdfff) => return err(i, "an unpaired low surrogate"),
                (None, u) => {
                    let Some(c) = char::from_u32(u32::from(u)) else {
                        return err(i, "not a character");
                    };
                    if is_direct(c) {
                        return err(i, "printable ASCII inside a base64 run");
                    }
                    out.push(c);
                }
                (Some(h), lo @ 0xdc00..=0xdfff) => {
                    let cp = 0x10000 + ((u32::from(h) - 0xd800) << 10) + (u32::from(lo) - 0xdc00);
                    match char::from_u32(cp) {
                        Some(c) => out.push(c),
                        None => return err(i, "not a character"),
                    }
                }
                (Some(_), _) => return err(i, "an unpaired high surrogate"),
            }
        }
        i += 1;
    }
    if high.is_some() {
        return err(i, "an unpaired high surrogate");
    }
    if nbits >= 6 {
        return err(i, "a base64 run with a partial character");
    }
    if bits != 0 {
        return err(i, "nonzero padding bits");
    }
    Ok(i + 1)
}

/// A name from the server, decoded when it is canonical modified UTF-7,
/// else taken as it came (lossily as UTF-8): some servers send raw UTF-8.
/// Sent back, such a name is encoded and so does not match; sma never
/// creates such names.
pub(crate) fn decode_lenient(wire: &str) -> String {
    match decode(wire.as_bytes()) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(name = %wire, error = %e, "folder name is not modified UTF-7; kept as sent");
            wire.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_3501_examples() {
        // RFC 3501 §5.1.3.
        assert_eq!(
            encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(
            decode(b"~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(),
            "~peter/mail/台北/日本語"
        );
        // "&Jjo!" is not canonical ('!' inside a run), "&U,BTFw-&ZeVnLIqe-"
        // has two runs side by side.
        assert!(decode(b"&Jjo!").is_err());
        assert!(decode(b"&U,BTFw-&ZeVnLIqe-").is_err());
    }

    #[test]
    fn known_names() {
        for (name, wire) in [
            ("INBOX", "INBOX"),
            ("", ""),
            ("Entwürfe", "Entw&APw-rfe"),
            ("Ordner-ä", "Ordner-&AOQ-"),
            ("Posteingang/Ordner-ä/", "Posteingang/Ordner-&AOQ-/"),
            ("Tom & Jerry", "Tom &- Jerry"),
            ("&", "&-"),
            ("äö", "&AOQA9g-"),
            ("😀", "&2D3eAA-"),
            ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
            ("a\tb", "a&AAk-b"),
            ("\u{7f}", "&AH8-"),
        ] {
            assert_eq!(encode(name), wire, "encode {name:?}");
            assert_eq!(
                decode(wire.as_bytes()).as_deref(),
                Ok(name),
                "decode {wire}"
            );
        }
    }

    #[test]
    fn hostile_input_is_an_error() {
        for bad in [
            &b"&"[..],
            b"&AOQ",
            b"&AOQ-&AOQ-",
            b"&AGE-",       // 'a' in base64
            b"&2D0-",       // unpaired high surrogate
            b"&3gA-",       // unpaired low surrogate
            b"&AOR-",       // nonzero padding bits
            b"&AOQA-",      // a partial character
            b"&A-",         // a partial character
            b"&*-",         // not a digit
            b"caf\xc3\xa9", // raw UTF-8
            b"a\rb",
            b"\x00",
            b"&2D3eAA2D0-", // surrogate pair, then a lone high one
        ] {
            assert!(
                decode(bad).is_err(),
                "{:?} must not decode",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(decode_lenient("caf\u{e9}"), "caf\u{e9}");
        assert_eq!(decode_lenient("&AOQ-"), "ä");
    }

    proptest::proptest! {
        #[test]
        fn every_name_round_trips(name in "\\PC*|[a-z&ä€😀\\t ]{0,12}") {
            let wire = encode(&name);
            proptest::prop_assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            proptest::prop_assert_eq!(decode(wire.as_bytes()), Ok(name));
        }

        #[test]
        fn whatever_decodes_is_canonical(wire in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            if let Ok(name) = decode(&wire) {
                let again = encode(&name);
                proptest::prop_assert_eq!(again.as_bytes(), &wire[..]);
            }
        }

        #[test]
        fn near_misses_never_panic(wire in "[&A-Za-z0-9+,\\-]{0,24}") {
            if let Ok(name) = decode(wire.as_bytes()) {
                proptest::prop_assert_eq!(encode(&name), wire);
            }
        }
    }

    #[test]
    fn errors_say_where() {
        let e = decode(b"ab&*-").unwrap_err();
        assert_eq!(e.at, 3);
        assert!(e.to_string().contains("byte 3"), "{e}");
    }
}

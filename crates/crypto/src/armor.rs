//! Small ASCII-armor helpers that rPGP does not offer: writing armor with
//! headers in a chosen order and line ending, and finding an armored block
//! inside surrounding text (mail bodies, HTML).

use base64::{engine::general_purpose::STANDARD, Engine as _};

/// OpenPGP CRC-24 (RFC 9580 §6.1).
fn crc24(data: &[u8]) -> u32 {
    const INIT: u32 = 0x00B7_04CE;
    const POLY: u32 = 0x0186_4CFB;
    let mut crc = INIT;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= POLY;
            }
        }
    }
    crc & 0x00FF_FFFF
}

/// Armors `data` as `-----BEGIN <block>-----` with the given headers in
/// order, 64-column base64, a CRC-24 line, and `eol` line endings.
pub(crate) fn write(block: &str, headers: &[(&str, &str)], data: &[u8], eol: &str) -> String {
    let b64 = STANDARD.encode(data);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 * eol.len() + 256);
    out.push_str(&format!("-----BEGIN {block}-----{eol}"));
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}{eol}"));
    }
    out.push_str(eol);
    // base64 output is ASCII, so splitting at any byte offset is safe.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push_str(eol);
    }
    let crc = crc24(data).to_be_bytes();
    out.push('=');
    out.push_str(&STANDARD.encode(&crc[1..]));
    out.push_str(eol);
    out.push_str(&format!("-----END {block}-----{eol}"));
    out
}

/// Finds the first `-----BEGIN <block>-----` … `-----END <block>-----` in
/// `text` (anything may precede or follow the markers on their lines, e.g.
/// HTML tags) and returns it with each line trimmed and `\n` line endings,
/// ready for a strict armor parser.
pub(crate) fn extract(text: &str, block: &str) -> Option<String> {
    let begin = format!("-----BEGIN {block}-----");
    let end = format!("-----END {block}-----");
    let start = text.find(&begin)?;
    let rest = &text[start + begin.len()..];
    let stop = rest.find(&end)?;
    let body = &rest[..stop];
    let mut out = String::with_capacity(body.len() + begin.len() + end.len() + 8);
    out.push_str(&begin);
    out.push('\n');
    // The first "line" is whatever follows BEGIN on its line (normally
    // nothing); the body lines follow.
    let mut lines = body.split('\n');
    if let Some(first) = lines.next() {
        if !first.trim().is_empty() {
            return None;
        }
    }
    for line in lines {
        out.push_str(line.trim());
        out.push('\n');
    }
    // The END marker sits on the last line, which `split` produced as an
    // empty (or whitespace-only) element we already pushed as a blank line;
    // drop that blank line again.
    if out.ends_with("\n\n") {
        out.pop();
    }
    out.push_str(&end);
    out.push('\n');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc24_known_value() {
        // CRC-24 of the empty string is the initial value.
        assert_eq!(crc24(b""), 0x00B7_04CE);
        // `printf 'hello world' | gpg --enarmor` ends with "=sDy3".
        let ours = write("PGP MESSAGE", &[], b"hello world", "\n");
        assert!(ours.ends_with("aGVsbG8gd29ybGQ=\n=sDy3\n-----END PGP MESSAGE-----\n"));
        // And rPGP reads it back.
        let mut d = pgp::armor::Dearmor::new(ours.as_bytes());
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut v).unwrap();
        assert_eq!(d.typ, Some(pgp::armor::BlockType::Message));
        assert_eq!(v, b"hello world");
    }

    #[test]
    fn write_orders_headers_and_uses_eol() {
        let s = write(
            "PGP MESSAGE",
            &[("B", "2"), ("A", "1")],
            &[0u8; 100],
            "\r\n",
        );
        assert!(s.starts_with("-----BEGIN PGP MESSAGE-----\r\nB: 2\r\nA: 1\r\n\r\n"));
        assert!(s.ends_with("-----END PGP MESSAGE-----\r\n"));
        assert!(s.lines().all(|l| l.trim_end_matches('\r').len() <= 64));
    }

    #[test]
    fn extract_from_html_and_crlf() {
        let armored = write("PGP MESSAGE", &[("X", "y")], b"abc", "\r\n");
        let html = format!("<html><pre>\r\n  {armored}</pre></html>");
        let got = extract(&html, "PGP MESSAGE").unwrap();
        assert_eq!(got, armored.replace("\r\n", "\n"));
        assert!(extract("nothing here", "PGP MESSAGE").is_none());
        assert!(extract("-----BEGIN PGP MESSAGE-----\nabc", "PGP MESSAGE").is_none());
    }
}

//! Writing commands (quoting, literals, UID sets) and reading the one
//! response async-imap cannot parse for us (`NAMESPACE`).

use crate::error::ImapError;
use crate::types::{Namespace, Uid};

/// Longest UID set put into one command (servers limit command lines;
/// Dovecot's limit is 64 KiB).
pub(crate) const MAX_UID_SET_LEN: usize = 8 * 1024;

/// One argument of a command.
#[derive(Debug, Clone)]
enum Arg<'a> {
    /// Sent as it is (command names, flag lists, UID sets).
    Raw(String),
    /// An astring: quoted when possible, else a literal.
    Str(&'a str),
    /// A folder name (or LIST pattern) already in modified UTF-7: an
    /// astring.
    Mailbox(String),
    /// An astring that must not appear in logs or errors (a password).
    Secret(&'a str),
    /// Always a literal (message contents).
    Literal(&'a [u8]),
}

/// A command to send, built argument by argument.
#[derive(Debug, Clone)]
pub(crate) struct Command<'a> {
    args: Vec<Arg<'a>>,
}

/// A piece of an encoded command: bytes to write, then whether to wait for
/// the server's `+` continuation before writing the next piece.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) bytes: Vec<u8>,
    pub(crate) wait_continuation: bool,
}

/// Wipes the bytes of sent segments that carried a secret (a password, a
/// token).
pub(crate) fn wipe(segments: &mut [Segment]) {
    for s in segments {
        zeroize::Zeroize::zeroize(&mut s.bytes);
    }
}

impl<'a> Command<'a> {
    /// Starts a command with its name (e.g. `"UID FETCH"`).
    pub(crate) fn new(name: &str) -> Self {
        Command {
            args: vec![Arg::Raw(name.to_owned())],
        }
    }

    /// Appends verbatim text.
    pub(crate) fn raw(mut self, text: impl Into<String>) -> Self {
        self.args.push(Arg::Raw(text.into()));
        self
    }

    /// Appends a string argument (quoted or literal as needed).
    pub(crate) fn string(mut self, s: &'a str) -> Self {
        self.args.push(Arg::Str(s));
        self
    }

    /// Appends a folder name or LIST pattern, encoded in modified UTF-7
    /// (RFC 3501 §5.1.3).
    pub(crate) fn mailbox(mut self, name: &str) -> Self {
        self.args.push(Arg::Mailbox(crate::mutf7::encode(name)));
        self
    }

    /// Appends a secret string argument: shown as `***` in [`Self::label`].
    pub(crate) fn secret(mut self, s: &'a str) -> Self {
        self.args.push(Arg::Secret(s));
        self
    }

    /// Appends a literal (message contents).
    pub(crate) fn literal(mut self, bytes: &'a [u8]) -> Self {
        self.args.push(Arg::Literal(bytes));
        self
    }

    /// The command as shown in logs and error messages: no secrets, literals
    /// summarised by their size.
    pub(crate) fn label(&self) -> String {
        let mut out = String::new();
        for (i, arg) in self.args.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            match arg {
                Arg::Raw(t) => out.push_str(t),
                Arg::Str(s) => out.push_str(&quote_for_display(s)),
                Arg::Mailbox(s) => out.push_str(&quote_for_display(s)),
                Arg::Secret(_) => out.push_str("***"),
                Arg::Literal(b) => out.push_str(&format!("{{{} bytes}}", b.len())),
            }
        }
        out
    }

    /// The command's name (first word(s)), for short log lines.
    pub(crate) fn name(&self) -> &str {
        match self.args.first() {
            Some(Arg::Raw(t)) => t,
            _ => "",
        }
    }

    /// Encodes the command with `tag`. With `literal_plus`, literals are
    /// sent without waiting (`{n+}`), so the whole command is one segment.
    pub(crate) fn encode(&self, tag: &str, literal_plus: bool) -> Vec<Segment> {
        let mut segments = Vec::new();
        let mut cur = Vec::with_capacity(64);
        cur.extend_from_slice(tag.as_bytes());
        for arg in &self.args {
            cur.push(b' ');
            let literal: Option<&[u8]> = match arg {
                Arg::Raw(t) => {
                    cur.extend_from_slice(t.as_bytes());
                    None
                }
                Arg::Mailbox(s) if is_quotable(s) => {
                    cur.extend_from_slice(quote(s).as_bytes());
                    None
                }
                Arg::Mailbox(s) => Some(s.as_bytes()),
                Arg::Str(s) | Arg::Secret(s) => {
                    if is_quotable(s) {
                        cur.extend_from_slice(quote(s).as_bytes());
                        None
                    } else {
                        Some(s.as_bytes())
                    }
                }
                Arg::Literal(b) => Some(b),
            };
            if let Some(bytes) = literal {
                if literal_plus {
                    cur.extend_from_slice(format!("{{{}+}}\r\n", bytes.len()).as_bytes());
                    cur.extend_from_slice(bytes);
                } else {
                    cur.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
                    segments.push(Segment {
                        bytes: std::mem::take(&mut cur),
                        wait_continuation: true,
                    });
                    cur.extend_from_slice(bytes);
                }
            }
        }
        cur.extend_from_slice(b"\r\n");
        segments.push(Segment {
            bytes: cur,
            wait_continuation: false,
        });
        segments
    }
}

/// Whether `s` can be sent as a quoted string (7-bit, no CR, LF or NUL).
fn is_quotable(s: &str) -> bool {
    s.bytes()
        .all(|b| (1..0x80).contains(&b) && b != b'\r' && b != b'\n')
}

/// `s` as an IMAP quoted string.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn quote_for_display(s: &str) -> String {
    if is_quotable(s) {
        quote(s)
    } else {
        format!("{s:?}")
    }
}

/// Checks a folder name can be sent: no CR, LF or NUL.
pub(crate) fn check_folder(name: &str) -> Result<(), ImapError> {
    if name.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(ImapError::InvalidArgument(format!(
            "folder name {name:?} contains a line break or NUL"
        )));
    }
    Ok(())
}

/// Checks a flag is a system flag (`\Seen`) or a keyword atom, and returns
/// the parenthesised flag list for APPEND/STORE (`(\Seen $Label)`).
pub(crate) fn flag_list(flags: &[&str]) -> Result<String, ImapError> {
    for f in flags {
        let atom = f.strip_prefix('\\').unwrap_or(f);
        let ok = !atom.is_empty()
            && atom.bytes().all(|b| {
                b > 0x20
                    && b < 0x7f
                    && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
            });
        if !ok {
            return Err(ImapError::InvalidArgument(format!(
                "{f:?} is not a valid IMAP flag"
            )));
        }
    }
    Ok(format!("({})", flags.join(" ")))
}

/// Compresses UIDs into IMAP sets (`1:3,7,9:10`), each at most `max_len`
/// characters. Sorted and de-duplicated; empty input gives no sets.
pub(crate) fn uid_sets(uids: &[Uid], max_len: usize) -> Vec<String> {
    let mut sorted: Vec<Uid> = uids.iter().copied().filter(|&u| u > 0).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(Uid, Uid)> = Vec::new();
    for u in sorted {
        match ranges.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(u) => *end = u,
            _ => ranges.push((u, u)),
        }
    }
    let mut sets = Vec::new();
    let mut cur = String::new();
    for (a, b) in ranges {
        let item = if a == b {
            a.to_string()
        } else {
            format!("{a}:{b}")
        };
        if !cur.is_empty() && cur.len() + 1 + item.len() > max_len {
            sets.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(',');
        }
        cur.push_str(&item);
    }
    if !cur.is_empty() {
        sets.push(cur);
    }
    sets
}

/// Parses a `* NAMESPACE` line (RFC 2342) and returns the first personal
/// namespace: `Some(None)` when the personal namespace is `NIL`, `None` when
/// the line cannot be understood.
pub(crate) fn parse_namespace(line: &[u8]) -> Option<Option<Namespace>> {
    const PREFIX: &[u8] = b"* NAMESPACE ";
    if line.len() < PREFIX.len() || !line[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let mut p = Parser {
        s: &line[PREFIX.len()..],
    };
    if p.eat_nil() {
        return Some(None);
    }
    p.expect(b'(')?;
    p.expect(b'(')?;
    let prefix = p.string()?;
    p.expect(b' ')?;
    let delimiter = if p.eat_nil() {
        None
    } else {
        let d = p.string()?;
        let mut chars = d.chars();
        let c = chars.next()?;
        if chars.next().is_some() {
            return None;
        }
        Some(c)
    };
    Some(Some(Namespace { prefix, delimiter }))
}

struct Parser<'a> {
    s: &'a [u8],
}

impl Parser<'_> {
    fn expect(&mut self, b: u8) -> Option<()> {
        let (&first, rest) = self.s.split_first()?;
        (first == b).then(|| self.s = rest)
    }

    fn eat_nil(&mut self) -> bool {
        if self.s.len() >= 3 && self.s[..3].eq_ignore_ascii_case(b"NIL") {
            self.s = &self.s[3..];
            true
        } else {
            false
        }
    }

    /// A quoted string (with `\"` and `\\` escapes).
    fn string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let (&b, rest) = self.s.split_first()?;
            self.s = rest;
            match b {
                b'"' => break,
                b'\\' => {
                    let (&e, rest) = self.s.split_first()?;
                    self.s = rest;
                    out.push(e);
                }
                b'\r' | b'\n' => return None,
                _ => out.push(b),
            }
        }
        String::from_utf8(out).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(segs: &[Segment]) -> String {
        segs.iter()
            .map(|s| String::from_utf8_lossy(&s.bytes).into_owned())
            .collect::<Vec<_>>()
            .join("|")
    }

    #[test]
    fn quoting_and_literals() {
        let c = Command::new("LOGIN").string("al\"ice").secret("p\\w");
        assert_eq!(
            joined(&c.encode("A1", false)),
            "A1 LOGIN \"al\\\"ice\" \"p\\\\w\"\r\n"
        );
        assert_eq!(c.label(), "LOGIN \"al\\\"ice\" ***");

        let c = Command::new("LOGIN").string("bob").secret("pässword");
        let segs = c.encode("A2", false);
        assert_eq!(segs.len(), 2);
        assert!(segs[0].wait_continuation);
        assert_eq!(joined(&segs), "A2 LOGIN \"bob\" {9}\r\n|pässword\r\n");
        assert!(!c.label().contains("pässword"));
        let segs = c.encode("A3", true);
        assert_eq!(segs.len(), 1);
        assert_eq!(joined(&segs), "A3 LOGIN \"bob\" {9+}\r\npässword\r\n");
    }

    #[test]
    fn append_encoding() {
        let c = Command::new("APPEND")
            .string("INBOX")
            .raw("(\\Seen)")
            .literal(b"Subject: x\r\n\r\nhi");
        assert_eq!(c.label(), "APPEND \"INBOX\" (\\Seen) {16 bytes}");
        assert_eq!(
            joined(&c.encode("A4", false)),
            "A4 APPEND \"INBOX\" (\\Seen) {16}\r\n|Subject: x\r\n\r\nhi\r\n"
        );
    }

    #[test]
    fn flags() {
        assert_eq!(
            flag_list(&["\\Seen", "$Label1"]).unwrap(),
            "(\\Seen $Label1)"
        );
        assert_eq!(flag_list(&[]).unwrap(), "()");
        assert!(flag_list(&["bad flag"]).is_err());
        assert!(flag_list(&["\\"]).is_err());
        assert!(flag_list(&["a)"]).is_err());
    }

    #[test]
    fn folder_names_go_out_in_modified_utf7() {
        let c = Command::new("CREATE").mailbox("Posteingang/Ordner-ä/_Autocrypt_SMA");
        assert_eq!(
            joined(&c.encode("A5", false)),
            "A5 CREATE \"Posteingang/Ordner-&AOQ-/_Autocrypt_SMA\"\r\n"
        );
        assert_eq!(
            c.label(),
            "CREATE \"Posteingang/Ordner-&AOQ-/_Autocrypt_SMA\""
        );
        let c = Command::new("LIST").mailbox("").mailbox("Tom & \"Jerry\"*");
        assert_eq!(
            joined(&c.encode("A6", false)),
            "A6 LIST \"\" \"Tom &- \\\"Jerry\\\"*\"\r\n"
        );
    }

    #[test]
    fn folder_check() {
        assert!(check_folder("INBOX._Autocrypt_SMA").is_ok());
        assert!(check_folder("a\r\nb").is_err());
    }

    #[test]
    fn uid_set_compression_and_chunking() {
        assert_eq!(uid_sets(&[5, 1, 2, 3, 3, 9, 10], 100), vec!["1:3,5,9:10"]);
        assert!(uid_sets(&[], 100).is_empty());
        assert_eq!(
            uid_sets(&[u32::MAX, u32::MAX - 1], 100),
            vec!["4294967294:4294967295"]
        );
        let many: Vec<Uid> = (1..=1000).map(|i| i * 2).collect();
        let sets = uid_sets(&many, 50);
        assert!(sets.len() > 1);
        assert!(sets.iter().all(|s| s.len() <= 50));
        let back: Vec<Uid> = sets
            .iter()
            .flat_map(|s| s.split(','))
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(back, many);
    }

    #[test]
    fn namespace_parsing() {
        let ns = parse_namespace(b"* NAMESPACE ((\"\" \".\")) NIL NIL\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            ns,
            Namespace {
                prefix: String::new(),
                delimiter: Some('.')
            }
        );
        let ns =
            parse_namespace(b"* NAMESPACE ((\"INBOX.\" \".\")) NIL ((\"#shared.\" \".\"))\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(ns.prefix, "INBOX.");
        let ns = parse_namespace(
            b"* namespace ((\"\" \"/\" \"X-PARAM\" (\"A\"))(\"Other/\" \"/\")) NIL NIL\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(ns.delimiter, Some('/'));
        let ns = parse_namespace(b"* NAMESPACE ((\"\" NIL)) NIL NIL\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(ns.delimiter, None);
        assert_eq!(parse_namespace(b"* NAMESPACE NIL NIL NIL\r\n"), Some(None));
        assert_eq!(parse_namespace(b"* NAMESPACE (({5}\r\n"), None);
        assert_eq!(parse_namespace(b"* LIST x\r\n"), None);
    }
}

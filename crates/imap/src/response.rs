//! Tagged completions and unsolicited mailbox data, as the rest of the
//! crate sees them.

use async_imap::imap_proto::{self, Response, ResponseCode, Status};

use crate::error::ImapError;

/// Tagged completion status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    No,
    Bad,
}

/// The response codes we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Code {
    AppendUid {
        uid: Option<u32>,
    },
    /// `COPYUID` (RFC 4315): the UIDs of the copies, as the server wrote
    /// them (ranges; expand with [`expand_uid_ranges`]).
    CopyUid {
        dest: Vec<(u32, u32)>,
    },
    TryCreate,
    Capabilities(Vec<String>),
    Other,
}

/// A tagged completion.
#[derive(Debug, Clone)]
pub(crate) struct Done {
    pub(crate) outcome: Outcome,
    pub(crate) code: Option<Code>,
    /// The server's text, with a recognised response code written back in
    /// front (`[TRYCREATE] ...`); unknown codes are already part of it.
    pub(crate) text: String,
}

impl Done {
    pub(crate) fn is_ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    /// The response code at the start of the text, upper-cased, when it
    /// is one imap-proto leaves in the text (`[SERVERBUG] ...` gives
    /// `SERVERBUG`; `[TRYCREATE]` is in [`Done::code`]).
    pub(crate) fn text_code(&self) -> Option<String> {
        let rest = self.text.strip_prefix('[')?;
        let end = rest.find([']', ' '])?;
        let atom = &rest[..end];
        (!atom.is_empty()).then(|| atom.to_ascii_uppercase())
    }

    /// Whether a `NO` says the server itself is in trouble (RFC 5530 codes):
    /// no evidence about the mailbox or the data.
    pub(crate) fn is_server_trouble(&self) -> bool {
        self.outcome == Outcome::No
            && self.text_code().is_some_and(|c| {
                matches!(
                    c.as_str(),
                    "SERVERBUG"
                        | "UNAVAILABLE"
                        | "INUSE"
                        | "LIMIT"
                        | "CORRUPTION"
                        | "EXPUNGEISSUED"
                        | "CONTACTADMIN"
                )
            })
    }

    /// The error for a failed command: [`ImapError::ServerFailure`] for a
    /// server in trouble (see [`Done::is_server_trouble`]), else No/Bad.
    pub(crate) fn into_error(self, label: String) -> ImapError {
        if self.is_server_trouble() {
            return ImapError::ServerFailure {
                command: label,
                text: self.text,
            };
        }
        match self.outcome {
            Outcome::Bad => ImapError::Bad {
                command: label,
                text: self.text,
            },
            _ => ImapError::No {
                command: label,
                text: self.text,
            },
        }
    }
}

/// How unsolicited mailbox responses are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    /// Normal commands: new messages and foreign expunges count as changes.
    Normal,
    /// Our own EXPUNGE: expunges are ours, not changes.
    OwnExpunge,
    /// IDLE: anything about the mailbox is a change.
    Idle,
}

/// What the session knows about the selected mailbox from unsolicited data.
#[derive(Debug, Default, Clone)]
pub(crate) struct MailboxTracker {
    pub(crate) exists: Option<u32>,
    pub(crate) changed: bool,
}

impl MailboxTracker {
    pub(crate) fn observe(&mut self, resp: &Response<'_>, watch: Watch) {
        match resp {
            Response::MailboxData(imap_proto::MailboxDatum::Exists(n)) => {
                // Only a count that moved is news: a server repeating the
                // count it already gave must not wake the caller (in IDLE,
                // any other count does, as expunges may have come first).
                let news = match (watch, self.exists) {
                    (_, None) => watch == Watch::Idle,
                    (Watch::Idle, Some(old)) => *n != old,
                    (_, Some(old)) => *n > old,
                };
                if news {
                    self.changed = true;
                }
                self.exists = Some(*n);
            }
            Response::Expunge(_) | Response::Vanished { .. } => {
                if let (Response::Expunge(_), Some(e)) = (resp, self.exists.as_mut()) {
                    *e = e.saturating_sub(1);
                }
                if watch != Watch::OwnExpunge {
                    self.changed = true;
                }
            }
            Response::MailboxData(imap_proto::MailboxDatum::Recent(_)) | Response::Fetch(..)
                if watch == Watch::Idle =>
            {
                self.changed = true;
            }
            _ => {}
        }
    }
}

/// What the server's greeting says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Greeting {
    /// `* OK`: log in next.
    Ok,
    /// `* PREAUTH`: already logged in.
    PreAuth,
    /// `* BYE` (or anything else): go away.
    Refused,
}

/// Capability names as strings.
pub(crate) fn cap_strings(caps: &[imap_proto::Capability<'_>]) -> Vec<String> {
    caps.iter()
        .map(|c| match c {
            imap_proto::Capability::Imap4rev1 => "IMAP4rev1".to_owned(),
            imap_proto::Capability::Auth(m) => format!("AUTH={m}"),
            imap_proto::Capability::Atom(a) => a.to_string(),
        })
        .collect()
}

/// Converts a tagged response (only call with `Response::Done`).
pub(crate) fn done_of(r: &Response<'_>) -> Done {
    let Response::Done {
        status,
        code,
        information,
        ..
    } = r
    else {
        return Done {
            outcome: Outcome::Bad,
            code: None,
            text: String::new(),
        };
    };
    let outcome = match status {
        Status::Ok => Outcome::Ok,
        Status::No => Outcome::No,
        _ => Outcome::Bad,
    };
    let info = information.as_deref().unwrap_or("").to_owned();
    let (code, shown) = match code {
        None => (None, None),
        Some(ResponseCode::AppendUid(_, set)) => {
            let uid = match set.as_slice() {
                [imap_proto::UidSetMember::Uid(u)] => Some(*u),
                [imap_proto::UidSetMember::UidRange(r)] if r.start() == r.end() => Some(*r.start()),
                _ => None,
            };
            (Some(Code::AppendUid { uid }), None)
        }
        Some(ResponseCode::CopyUid(_, _, dest)) => (
            Some(Code::CopyUid {
                dest: uid_ranges(dest),
            }),
            None,
        ),
        Some(ResponseCode::TryCreate) => (Some(Code::TryCreate), Some("TRYCREATE")),
        Some(ResponseCode::Capabilities(c)) => (Some(Code::Capabilities(cap_strings(c))), None),
        Some(ResponseCode::Alert) => (Some(Code::Other), Some("ALERT")),
        Some(ResponseCode::Parse) => (Some(Code::Other), Some("PARSE")),
        Some(ResponseCode::ReadOnly) => (Some(Code::Other), Some("READ-ONLY")),
        Some(_) => (Some(Code::Other), None),
    };
    let text = match shown {
        Some(name) if info.is_empty() => format!("[{name}]"),
        Some(name) => format!("[{name}] {info}"),
        None => info,
    };
    Done {
        outcome,
        code,
        text,
    }
}

/// A UID set from a response code as `(first, last)` ranges (in the
/// server's order; a range may be written backwards).
pub(crate) fn uid_ranges(set: &[imap_proto::UidSetMember]) -> Vec<(u32, u32)> {
    set.iter()
        .map(|m| match m {
            imap_proto::UidSetMember::Uid(u) => (*u, *u),
            imap_proto::UidSetMember::UidRange(r) => (*r.start(), *r.end()),
        })
        .collect()
}

/// The UIDs of `ranges`, in order, or `None` when they are more than `max`
/// (a server's set is never trusted to be small) or include 0.
pub(crate) fn expand_uid_ranges(ranges: &[(u32, u32)], max: usize) -> Option<Vec<u32>> {
    let mut total = 0usize;
    for &(a, b) in ranges {
        if a == 0 || b == 0 {
            return None;
        }
        total = total.checked_add(a.abs_diff(b) as usize + 1)?;
        if total > max {
            return None;
        }
    }
    let mut out = Vec::with_capacity(total);
    for &(a, b) in ranges {
        if a <= b {
            out.extend(a..=b);
        } else {
            out.extend((b..=a).rev());
        }
    }
    Some(out)
}

/// Longest untagged line that is set aside when the parser cannot read it;
/// longer ones are dropped (only `* NAMESPACE` is ever asked for).
const MAX_SET_ASIDE_LINE: usize = 16 * 1024;

/// Bytes of set-aside lines kept in all (the oldest go first).
const MAX_SET_ASIDE_BYTES: usize = 64 * 1024;

/// Untagged lines (without literals) the parser could not read, kept for
/// callers that parse them themselves (imap-proto 0.16 does not know
/// `* NAMESPACE`). Bounded in bytes, whatever the server sends.
#[derive(Debug, Default)]
pub(crate) struct SetAside {
    lines: std::collections::VecDeque<Vec<u8>>,
    bytes: usize,
}

impl SetAside {
    /// Keeps `line` (dropping the oldest lines to stay within the bound),
    /// or drops it if it alone is too long.
    pub(crate) fn keep(&mut self, line: Vec<u8>) {
        tracing::debug!(
            line = %String::from_utf8_lossy(&line[..line.len().min(200)]).trim_end(),
            len = line.len(),
            "IMAP response not understood by the parser, set aside"
        );
        if line.len() > MAX_SET_ASIDE_LINE {
            return;
        }
        while self.bytes + line.len() > MAX_SET_ASIDE_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len(),
                None => break,
            }
        }
        self.bytes += line.len();
        self.lines.push_back(line);
    }

    /// Takes out the oldest line starting with `prefix` (case-insensitive),
    /// e.g. `b"* NAMESPACE "`.
    pub(crate) fn take(&mut self, prefix: &[u8]) -> Option<Vec<u8>> {
        let idx = self.lines.iter().position(|l| {
            l.len() >= prefix.len() && l[..prefix.len()].eq_ignore_ascii_case(prefix)
        })?;
        let line = self.lines.remove(idx)?;
        self.bytes -= line.len();
        Some(line)
    }

    /// Bytes kept.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(outcome: Outcome, text: &str) -> Done {
        Done {
            outcome,
            code: None,
            text: text.to_owned(),
        }
    }

    #[test]
    fn server_trouble_codes_make_server_failures() {
        let d = done(Outcome::No, "[SERVERBUG] Internal error occurred.");
        assert_eq!(d.text_code().as_deref(), Some("SERVERBUG"));
        assert!(d.is_server_trouble());
        let e = d.into_error("SELECT \"x\"".into());
        assert!(matches!(e, ImapError::ServerFailure { .. }), "{e:?}");
        for text in [
            "[unavailable] try later",
            "[INUSE] locked",
            "[LIMIT] too many",
        ] {
            assert!(done(Outcome::No, text).is_server_trouble(), "{text}");
        }
        for text in [
            "[NONEXISTENT] Mailbox doesn't exist",
            "Mailbox does not exist",
            "see [SERVERBUG] later",
            "[]",
            "[SERVERBUG",
        ] {
            assert!(!done(Outcome::No, text).is_server_trouble(), "{text}");
        }
        assert!(!done(Outcome::Bad, "[SERVERBUG] x").is_server_trouble());
        let e = done(Outcome::No, "Permission denied").into_error("CREATE".into());
        assert!(matches!(e, ImapError::No { .. }), "{e:?}");
    }

    #[test]
    fn copyuid_is_read_and_expanded_within_bounds() {
        let (_, r) = imap_proto::parser::parse_response(
            b"S1 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n",
        )
        .expect("parses");
        let d = done_of(&r);
        let Some(Code::CopyUid { dest }) = d.code else {
            panic!("no COPYUID in {d:?}");
        };
        assert_eq!(expand_uid_ranges(&dest, 3), Some(vec![3956, 3957, 3958]));
        assert_eq!(
            expand_uid_ranges(&dest, 2),
            None,
            "more copies than messages"
        );
        assert_eq!(expand_uid_ranges(&[(1, u32::MAX)], 10), None);
        assert_eq!(expand_uid_ranges(&[(0, 3)], 10), None);
        assert_eq!(expand_uid_ranges(&[(5, 3)], 10), Some(vec![5, 4, 3]));
        assert_eq!(expand_uid_ranges(&[], 0), Some(vec![]));
    }

    #[test]
    fn unknown_codes_stay_in_the_text() {
        let (_, r) =
            imap_proto::parser::parse_response(b"S1 NO [SERVERBUG] Internal error occurred.\r\n")
                .expect("parses");
        let d = done_of(&r);
        assert_eq!(d.text, "[SERVERBUG] Internal error occurred.");
        assert_eq!(d.text_code().as_deref(), Some("SERVERBUG"));
    }

    #[test]
    fn a_repeated_exists_is_no_news() {
        let exists = |n| Response::MailboxData(imap_proto::MailboxDatum::Exists(n));
        let mut t = MailboxTracker {
            exists: Some(1),
            changed: false,
        };
        t.observe(&exists(1), Watch::Idle);
        assert!(!t.changed);
        t.observe(&exists(1), Watch::Normal);
        assert!(!t.changed);
        t.observe(&exists(0), Watch::Idle);
        assert!(t.changed, "a count that went down in IDLE is news");
        let mut t = MailboxTracker::default();
        t.observe(&exists(3), Watch::Idle);
        assert!(t.changed);
        let mut t = MailboxTracker {
            exists: Some(1),
            changed: false,
        };
        t.observe(&exists(2), Watch::Normal);
        assert!(t.changed);
    }

    #[test]
    fn set_aside_lines_are_bounded_in_bytes() {
        let mut s = SetAside::default();
        s.keep(vec![b'x'; MAX_SET_ASIDE_LINE + 1]);
        assert_eq!(s.bytes(), 0);
        for i in 0..100 {
            let mut line = format!("* X{i} ").into_bytes();
            line.resize(10_000, b'y');
            s.keep(line);
            assert!(s.bytes() <= MAX_SET_ASIDE_BYTES);
        }
        assert!(s.take(b"* X0 ").is_none(), "the oldest went first");
        assert!(s.take(b"* x99 ").is_some());
        s.keep(b"* NAMESPACE ((\"\" \".\")) NIL NIL\r\n".to_vec());
        assert!(s.take(b"* namespace ").is_some());
        assert!(s.take(b"* NAMESPACE ").is_none());
    }
}

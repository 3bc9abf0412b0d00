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
    AppendUid { uid: Option<u32> },
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

    /// The error for a failed command.
    pub(crate) fn into_error(self, label: String) -> ImapError {
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
                if watch == Watch::Idle || self.exists.is_some_and(|old| *n > old) {
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

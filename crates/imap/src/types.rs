//! Plain data types of the [`crate::Transport`] interface.

use std::fmt;
use std::ops::{RangeFrom, RangeInclusive};

/// An IMAP message UID (unique within a folder for one UIDVALIDITY).
pub type Uid = u32;

/// What the server can do, from its `CAPABILITY` (re-read after STARTTLS
/// and after login).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `IDLE` (RFC 2177).
    pub idle: bool,
    /// `UIDPLUS` (RFC 4315): APPENDUID and UID EXPUNGE.
    pub uidplus: bool,
    /// `MOVE` (RFC 6851).
    pub move_: bool,
    /// `CONDSTORE` (RFC 7162): HIGHESTMODSEQ.
    pub condstore: bool,
    /// `QRESYNC` (RFC 7162).
    pub qresync: bool,
    /// `LITERAL+` (RFC 7888): literals without a round trip.
    pub literal_plus: bool,
    /// `NAMESPACE` (RFC 2342).
    pub namespace: bool,
    /// Every capability as the server wrote it (e.g. `AUTH=PLAIN`).
    pub raw: Vec<String>,
}

impl Capabilities {
    /// Builds the flags from the server's capability names.
    pub fn from_raw(raw: Vec<String>) -> Self {
        let has = |name: &str| raw.iter().any(|c| c.eq_ignore_ascii_case(name));
        Capabilities {
            idle: has("IDLE"),
            uidplus: has("UIDPLUS"),
            move_: has("MOVE"),
            condstore: has("CONDSTORE") || has("QRESYNC"),
            qresync: has("QRESYNC"),
            literal_plus: has("LITERAL+"),
            namespace: has("NAMESPACE"),
            raw,
        }
    }

    /// Whether the server listed `name` (case-insensitive, e.g. `"AUTH=PLAIN"`).
    pub fn has(&self, name: &str) -> bool {
        self.raw.iter().any(|c| c.eq_ignore_ascii_case(name))
    }

    /// The SASL mechanisms listed as `AUTH=...`, upper-cased.
    pub fn auth_mechanisms(&self) -> Vec<String> {
        self.raw
            .iter()
            .filter_map(|c| {
                let (head, mech) = c.split_at_checked(5)?;
                head.eq_ignore_ascii_case("AUTH=")
                    .then(|| mech.to_ascii_uppercase())
            })
            .collect()
    }
}

/// The personal namespace: where the user's own folders live.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    /// Prefix of every personal folder name (`""` on Dovecot, `"INBOX."` on
    /// Cyrus and Courier), decoded from modified UTF-7.
    pub prefix: String,
    /// Hierarchy delimiter, `None` for a flat server.
    pub delimiter: Option<char>,
}

/// The special-use attributes of RFC 6154.
pub const SPECIAL_USE: [&str; 7] = [
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Junk",
    "\\Sent",
    "\\Trash",
];

/// One folder from `LIST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderInfo {
    /// The name, decoded from modified UTF-7; a name that is not canonical
    /// modified UTF-7 (raw UTF-8 from a lax server) is kept as sent.
    pub name: String,
    /// Hierarchy delimiter, if any.
    pub delimiter: Option<char>,
    /// Attributes with their backslash, e.g. `\HasNoChildren`, `\Noselect`.
    pub attributes: Vec<String>,
}

impl FolderInfo {
    /// Whether the folder carries `attribute` (case-insensitive, with backslash).
    pub fn has_attribute(&self, attribute: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case(attribute))
    }

    /// The special-use attribute of the folder (RFC 6154), e.g. `\Trash`,
    /// as the server spelt it; `None` for an ordinary folder.
    pub fn special_use(&self) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| SPECIAL_USE.iter().any(|s| a.eq_ignore_ascii_case(s)))
            .map(String::as_str)
    }

    /// Whether the folder can be selected (no `\Noselect` / `\NonExistent`).
    pub fn is_selectable(&self) -> bool {
        !self.has_attribute("\\Noselect") && !self.has_attribute("\\NonExistent")
    }
}

/// What `SELECT`/`EXAMINE` reported about a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailboxState {
    /// UIDVALIDITY: when it changes, every UID known for the folder is void.
    pub uid_validity: u32,
    /// UIDNEXT, when the server sends it (Courier does not on SELECT).
    pub uid_next: Option<u32>,
    /// Number of messages.
    pub exists: u32,
    /// HIGHESTMODSEQ, with CONDSTORE.
    pub highest_modseq: Option<u64>,
}

/// What `STATUS` reported about a folder (without selecting it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailboxStatus {
    /// Number of messages.
    pub messages: u32,
    /// UIDNEXT, if reported.
    pub uid_next: Option<u32>,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// HIGHESTMODSEQ, with CONDSTORE.
    pub highest_modseq: Option<u64>,
}

/// A message's header, from [`crate::Transport::fetch_headers`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedHeader {
    /// UID.
    pub uid: Uid,
    /// RFC822.SIZE of the whole message.
    pub size: u32,
    /// The header section, including the blank line that ends it.
    pub header: Vec<u8>,
}

/// Folders with their `STATUS`, each its own result, from
/// [`crate::Transport::list_status`].
pub type FolderStatuses = Vec<(String, Result<MailboxStatus, crate::ImapError>)>;

/// One folder's part of [`crate::Transport::status_and_append`]: its
/// `STATUS` as before the `APPEND` (a server may run the two side by
/// side: with the new UID known, a status taken after the append does
/// not count the new message; without it, it may), and what the
/// `APPEND` gave.
#[derive(Debug)]
pub struct CheckedAppend {
    /// The folder's status before the message was appended.
    pub status: Result<MailboxStatus, crate::ImapError>,
    /// The appended message's UID (with UIDPLUS), or why it failed.
    pub appended: Result<Option<Uid>, crate::ImapError>,
}

/// A whole message, from [`crate::Transport::fetch_messages`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedMessage {
    /// UID.
    pub uid: Uid,
    /// RFC822.SIZE.
    pub size: u32,
    /// The raw message; `None` when `size` is over the cap (not downloaded).
    pub body: Option<Vec<u8>>,
}

/// Result of an idempotent [`crate::Transport::create`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The folder was created now.
    Created,
    /// It was already there (the server said NO and LIST shows it).
    AlreadyExisted,
}

/// Why [`crate::Transport::idle`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleOutcome {
    /// The server reported a change to the selected folder (new message,
    /// expunge, flag change) — or one had been seen since the last call.
    Changed,
    /// Nothing happened before the timeout.
    TimedOut,
    /// The cancel future given to [`crate::Transport::idle_until`] completed.
    Interrupted,
}

/// A range of UIDs: `start:end`, or `start:*` when `end` is `None`.
///
/// Note IMAP's quirk that `n:*` always includes the highest UID even when
/// it is below `n`; the fetch functions filter such results out, so the
/// returned messages always satisfy [`UidRange::contains`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UidRange {
    /// First UID (at least 1).
    pub start: Uid,
    /// Last UID, or `None` for "up to the highest".
    pub end: Option<Uid>,
}

impl UidRange {
    /// `start:end` (swapped if given in the wrong order).
    pub fn new(start: Uid, end: Uid) -> Self {
        let (a, b) = if start <= end {
            (start, end)
        } else {
            (end, start)
        };
        UidRange {
            start: a.max(1),
            end: Some(b.max(1)),
        }
    }

    /// `start:*`.
    pub fn from_uid(start: Uid) -> Self {
        UidRange {
            start: start.max(1),
            end: None,
        }
    }

    /// Every message: `1:*`.
    pub fn all() -> Self {
        Self::from_uid(1)
    }

    /// Whether `uid` is inside the range.
    pub fn contains(&self, uid: Uid) -> bool {
        uid >= self.start && self.end.is_none_or(|e| uid <= e)
    }
}

impl fmt::Display for UidRange {
    /// The IMAP sequence-set syntax: `5:*`, `5:9`, `5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            None => write!(f, "{}:*", self.start),
            Some(e) if e == self.start => write!(f, "{e}"),
            Some(e) => write!(f, "{}:{e}", self.start),
        }
    }
}

impl From<RangeFrom<Uid>> for UidRange {
    fn from(r: RangeFrom<Uid>) -> Self {
        UidRange::from_uid(r.start)
    }
}

impl From<RangeInclusive<Uid>> for UidRange {
    fn from(r: RangeInclusive<Uid>) -> Self {
        UidRange::new(*r.start(), *r.end())
    }
}

impl From<Uid> for UidRange {
    fn from(u: Uid) -> Self {
        UidRange::new(u, u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_raw() {
        let c = Capabilities::from_raw(
            [
                "IMAP4rev1",
                "IDLE",
                "uidplus",
                "AUTH=PLAIN",
                "auth=login",
                "LITERAL+",
                "NAMESPACE",
                "QRESYNC",
            ]
            .map(String::from)
            .to_vec(),
        );
        assert!(c.idle && c.uidplus && c.literal_plus && c.namespace && c.qresync && c.condstore);
        assert!(!c.move_);
        assert!(c.has("auth=plain"));
        assert_eq!(c.auth_mechanisms(), vec!["PLAIN", "LOGIN"]);
    }

    #[test]
    fn uid_ranges() {
        assert_eq!(UidRange::from(5..).to_string(), "5:*");
        assert_eq!(UidRange::from(3..=9).to_string(), "3:9");
        assert_eq!(UidRange::new(9, 3).to_string(), "3:9");
        assert_eq!(UidRange::from(7).to_string(), "7");
        assert_eq!(UidRange::from(0..).to_string(), "1:*");
        assert!(UidRange::from(5..).contains(1000));
        assert!(!UidRange::from(5..).contains(4));
        assert!(!UidRange::from(3..=9).contains(10));
    }
}

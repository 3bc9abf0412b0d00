//! The in-memory IMAP server: folders, per-folder UIDs and UIDVALIDITY,
//! messages, subscriptions and per-connection selection state.
//!
//! It models what the protocol relies on, with the semantics of Dovecot
//! where servers differ: `CREATE` of an existing folder is a `NO` that the
//! transport reports as [`CreateOutcome::AlreadyExisted`]; `DELETE` of a
//! folder another connection has selected disconnects that connection;
//! `APPEND` to a missing folder is `[TRYCREATE]`; UIDs of a folder ascend
//! and are never reused within one UIDVALIDITY. Faults (late delivery,
//! UIDVALIDITY resets, deleted folders) are methods a scheduler calls; the
//! server itself is deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::{
    CreateOutcome, FetchedHeader, FetchedMessage, FolderInfo, ImapError, MailboxState,
    MailboxStatus, Uid, UidRange,
};

pub use super::message::Message;

mod expunge;
mod outage;

/// Identifies one connection (one transport).
pub type ConnId = u64;

/// The hierarchy delimiter of the simulated server (Dovecot maildir's).
pub const DELIMITER: char = '.';

/// One folder.
#[derive(Clone, Debug)]
pub struct Folder {
    /// Distinguishes a folder from an earlier one of the same name.
    pub incarnation: u64,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// The next UID to assign.
    pub uid_next: Uid,
    /// Messages by UID.
    pub messages: BTreeMap<Uid, Message>,
    /// Bumped by every change (append, expunge, renumbering).
    pub version: u64,
}

/// What the server knows about one connection.
#[derive(Clone, Debug, Default)]
struct Conn {
    /// Broken (the client sees `ConnectionLost` on every later command).
    dead: bool,
    /// Selected folder: name, incarnation, read-only.
    selected: Option<(String, u64, bool)>,
    /// The selected folder's version the client has been told about.
    seen_version: u64,
    /// Opened while the server was down (see [`Server::go_down`]): every
    /// command gets `Unreachable`.
    unreachable: bool,
}

/// A message whose APPEND was accepted but that is not visible yet.
#[derive(Clone, Debug)]
pub struct Delayed {
    /// Target folder.
    pub folder: String,
    /// The message.
    pub bytes: Vec<u8>,
}

/// The server.
#[derive(Debug)]
pub struct Server {
    pub(crate) folders: BTreeMap<String, Folder>,
    subscribed: BTreeSet<String>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    next_incarnation: u64,
    next_validity: u32,
    /// Accepted appends not delivered yet (late delivery fault).
    pub delayed: Vec<Delayed>,
    /// Messages lost because their folder vanished (for the invariants).
    pub lost: Vec<(String, Arc<Vec<u8>>)>,
    /// Message bodies downloaded, by folder (for cost accounting).
    pub downloads: BTreeMap<String, u64>,
    /// Every APPEND that took effect: the appending actor, the folder and
    /// the message (for the invariants).
    pub journal: Vec<(usize, String, Arc<Vec<u8>>)>,
    /// Messages announced with `stage_append` (nothing anyone else sees;
    /// kept for the tests).
    pub staged: Vec<Arc<Vec<u8>>>,
    /// Gmail's delete semantics, when switched on (see
    /// [`Server::archive_like_gmail`]).
    pub(crate) archiving: Option<super::archive::Archiving>,
    /// What the server advertises (see [`Server::set_capabilities`]).
    pub(crate) capabilities: Vec<String>,
    /// Fault armed by [`Server::reset_uid_validity_after_next_append`].
    reset_after_append: Option<String>,
    /// Sessions still to be opened while the server is down.
    down_for: u32,
}

impl Default for Server {
    fn default() -> Self {
        let mut s = Server {
            folders: BTreeMap::new(),
            subscribed: BTreeSet::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            next_incarnation: 1,
            next_validity: 1000,
            delayed: Vec::new(),
            lost: Vec::new(),
            downloads: BTreeMap::new(),
            journal: Vec::new(),
            staged: Vec::new(),
            archiving: None,
            capabilities: super::archive::DEFAULT_CAPABILITIES
                .map(String::from)
                .to_vec(),
            reset_after_append: None,
            down_for: 0,
        };
        s.create_folder("INBOX");
        s
    }
}

fn no_such(folder: &str) -> ImapError {
    ImapError::NoSuchFolder {
        folder: folder.to_owned(),
    }
}

fn lost(why: &str) -> ImapError {
    ImapError::ConnectionLost(why.to_owned())
}

/// IMAP LIST wildcard match: `*` matches anything, `%` anything but the
/// delimiter.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| wildcard(rest, &name[i..])),
        Some((b'%', rest)) => (0..=name.len())
            .take_while(|&i| i == 0 || name[i - 1] != DELIMITER as u8)
            .any(|i| wildcard(rest, &name[i..])),
        Some((c, rest)) => name.first() == Some(c) && wildcard(rest, &name[1..]),
    }
}

impl Server {
    /// A new server holding only `INBOX`.
    pub fn new() -> Server {
        Server::default()
    }

    fn create_folder(&mut self, name: &str) {
        let f = Folder {
            incarnation: self.next_incarnation,
            uid_validity: self.next_validity,
            uid_next: 1,
            messages: BTreeMap::new(),
            version: 0,
        };
        self.next_incarnation += 1;
        self.next_validity += 1;
        self.folders.insert(name.to_owned(), f);
    }

    /// Opens a connection.
    pub fn connect(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        let unreachable = self.down_for > 0;
        self.down_for = self.down_for.saturating_sub(1);
        self.conns.insert(
            id,
            Conn {
                unreachable,
                ..Conn::default()
            },
        );
        id
    }

    /// Closes a connection.
    pub fn disconnect(&mut self, c: ConnId) {
        self.conns.remove(&c);
    }

    /// Breaks a connection (the network failed, or the server said BYE).
    pub fn kill(&mut self, c: ConnId) {
        if let Some(conn) = self.conns.get_mut(&c) {
            conn.dead = true;
        }
    }

    /// Breaks every open connection (the server restarted); returns how
    /// many were alive.
    pub fn kill_all(&mut self) -> usize {
        let mut alive = 0;
        for conn in self.conns.values_mut().filter(|c| !c.dead) {
            conn.dead = true;
            alive += 1;
        }
        alive
    }

    /// Whether the connection is usable.
    pub fn alive(&self, c: ConnId) -> bool {
        self.conns.get(&c).is_some_and(|c| !c.dead)
    }

    /// Checks the connection; the error every command gets on a broken one.
    pub fn check(&self, c: ConnId) -> Result<(), ImapError> {
        if self.conns.get(&c).is_some_and(|c| c.unreachable) {
            return Err(outage::unreachable());
        }
        if self.alive(c) {
            Ok(())
        } else {
            Err(lost("simulated connection is broken"))
        }
    }

    /// Every folder name with its message count.
    pub fn folder_counts(&self) -> Vec<(String, usize)> {
        self.folders
            .iter()
            .map(|(n, f)| (n.clone(), f.messages.len()))
            .collect()
    }

    /// A folder, for inspection.
    pub fn folder(&self, name: &str) -> Option<&Folder> {
        self.folders.get(name)
    }

    /// Subscribed folder names.
    pub fn subscriptions(&self) -> &BTreeSet<String> {
        &self.subscribed
    }

    /// `LIST reference pattern`.
    pub fn list(&self, reference: &str, pattern: &str) -> Vec<FolderInfo> {
        let full = format!("{reference}{pattern}");
        if full.is_empty() {
            return vec![FolderInfo {
                name: String::new(),
                delimiter: Some(DELIMITER),
                attributes: vec!["\\Noselect".into()],
            }];
        }
        self.folders
            .keys()
            .filter(|n| wildcard(full.as_bytes(), n.as_bytes()))
            .map(|n| FolderInfo {
                name: n.clone(),
                delimiter: Some(DELIMITER),
                attributes: self.attributes(n),
            })
            .collect()
    }

    /// `LSUB "" pattern`.
    pub fn list_subscribed(&self, pattern: &str) -> Vec<String> {
        self.subscribed
            .iter()
            .filter(|n| wildcard(pattern.as_bytes(), n.as_bytes()))
            .cloned()
            .collect()
    }

    /// `CREATE`.
    pub fn create(&mut self, folder: &str) -> Result<CreateOutcome, ImapError> {
        if self.folders.contains_key(folder) {
            return Ok(CreateOutcome::AlreadyExisted);
        }
        self.create_folder(folder);
        Ok(CreateOutcome::Created)
    }

    /// `DELETE` by connection `by` (`None`: by someone outside, e.g. a
    /// person in another mail program). Connections that have the folder
    /// selected are disconnected, except `by`, whose selection is cleared.
    pub fn delete(&mut self, by: Option<ConnId>, folder: &str) -> Result<(), ImapError> {
        let Some(f) = self.folders.remove(folder) else {
            return Err(no_such(folder));
        };
        for (id, c) in self.conns.iter_mut() {
            if c.selected.as_ref().is_some_and(|s| s.0 == folder) {
                c.selected = None;
                if Some(*id) != by {
                    c.dead = true;
                }
            }
        }
        let gone: Vec<Message> = f.messages.into_values().collect();
        for m in self.archive_expunged(folder, gone) {
            self.lost.push((folder.to_owned(), m.bytes));
        }
        Ok(())
    }

    /// `SUBSCRIBE` / `UNSUBSCRIBE`.
    pub fn set_subscribed(&mut self, folder: &str, on: bool) {
        if on {
            self.subscribed.insert(folder.to_owned());
        } else {
            self.subscribed.remove(folder);
        }
    }

    /// `APPEND`: the new message's UID.
    pub fn append(&mut self, folder: &str, message: &[u8]) -> Result<Uid, ImapError> {
        let f = self
            .folders
            .get_mut(folder)
            .ok_or_else(|| no_such(folder))?;
        let uid = f.uid_next;
        f.uid_next += 1;
        f.messages.insert(uid, Message::new(message));
        f.version += 1;
        if self.reset_after_append.as_deref() == Some(folder) {
            self.reset_after_append = None;
            self.reset_uid_validity(folder);
        }
        Ok(uid)
    }

    /// Fault: right after the next APPEND to `folder` has taken effect
    /// (and its UID is answered), [`Server::reset_uid_validity`] on it:
    /// the appender's APPENDUID names the old UIDVALIDITY.
    pub fn reset_uid_validity_after_next_append(&mut self, folder: &str) {
        self.reset_after_append = Some(folder.to_owned());
    }

    /// Accepts an APPEND without making the message visible yet.
    pub fn append_delayed(&mut self, folder: &str, message: &[u8]) -> Result<(), ImapError> {
        if !self.folders.contains_key(folder) {
            return Err(no_such(folder));
        }
        self.delayed.push(Delayed {
            folder: folder.to_owned(),
            bytes: message.to_vec(),
        });
        Ok(())
    }

    /// Delivers the delayed message at `index` (lost if its folder is gone).
    pub fn release(&mut self, index: usize) {
        if index >= self.delayed.len() {
            return;
        }
        let d = self.delayed.remove(index);
        if self.append(&d.folder, &d.bytes).is_err() {
            self.lost.push((d.folder, Arc::new(d.bytes)));
        }
    }

    /// `SELECT`/`EXAMINE`.
    pub fn select(
        &mut self,
        c: ConnId,
        folder: &str,
        read_only: bool,
    ) -> Result<MailboxState, ImapError> {
        let conn = self
            .conns
            .get_mut(&c)
            .ok_or_else(|| lost("no connection"))?;
        conn.selected = None;
        let f = self.folders.get(folder).ok_or_else(|| no_such(folder))?;
        conn.selected = Some((folder.to_owned(), f.incarnation, read_only));
        conn.seen_version = f.version;
        Ok(MailboxState {
            uid_validity: f.uid_validity,
            uid_next: Some(f.uid_next),
            exists: f.messages.len() as u32,
            highest_modseq: None,
        })
    }

    /// `STATUS`.
    pub fn status(&self, folder: &str) -> Result<MailboxStatus, ImapError> {
        let f = self.folders.get(folder).ok_or_else(|| no_such(folder))?;
        Ok(MailboxStatus {
            messages: f.messages.len() as u32,
            uid_next: Some(f.uid_next),
            uid_validity: f.uid_validity,
            highest_modseq: None,
        })
    }

    /// The selected folder of `c` (name, read-only).
    pub(crate) fn selected(&self, c: ConnId, what: &str) -> Result<(String, bool), ImapError> {
        let conn = self.conns.get(&c).ok_or_else(|| lost("no connection"))?;
        let Some((name, inc, ro)) = &conn.selected else {
            return Err(ImapError::InvalidArgument(format!(
                "{what} needs a selected folder: call select first"
            )));
        };
        match self.folders.get(name) {
            Some(f) if f.incarnation == *inc => Ok((name.clone(), *ro)),
            _ => Err(lost("the selected folder vanished")),
        }
    }

    /// `UID FETCH uids (UID RFC822.SIZE BODY.PEEK[HEADER])`.
    pub fn fetch_headers(
        &self,
        c: ConnId,
        uids: UidRange,
    ) -> Result<Vec<FetchedHeader>, ImapError> {
        let (name, _) = self.selected(c, "fetch_headers")?;
        let f = &self.folders[&name];
        Ok(f.messages
            .iter()
            .filter(|(u, _)| uids.contains(**u))
            .map(|(u, m)| FetchedHeader {
                uid: *u,
                size: m.bytes.len() as u32,
                header: m.header().to_vec(),
            })
            .collect())
    }

    /// Sizes, then bodies of those of at most `max_size` bytes.
    pub fn fetch_messages(
        &mut self,
        c: ConnId,
        uids: &[Uid],
        max_size: u32,
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        let (name, _) = self.selected(c, "fetch_messages")?;
        let f = &self.folders[&name];
        let wanted: BTreeSet<Uid> = uids.iter().copied().collect();
        let n = wanted.iter().filter(|u| f.messages.contains_key(u)).count() as u64;
        let key = if name.contains('_') && name.len() > 20 {
            "inbox"
        } else {
            name.as_str()
        };
        *self.downloads.entry(key.to_owned()).or_insert(0) += n;
        let f = &self.folders[&name];
        Ok(wanted
            .into_iter()
            .filter_map(|u| f.messages.get(&u).map(|m| (u, m)))
            .map(|(uid, m)| {
                let size = m.bytes.len() as u32;
                FetchedMessage {
                    uid,
                    size,
                    body: (size <= max_size).then(|| m.bytes.to_vec()),
                }
            })
            .collect())
    }

    /// `UID SEARCH HEADER name value`.
    pub fn search_header(&self, c: ConnId, name: &str, value: &str) -> Result<Vec<Uid>, ImapError> {
        let (folder, _) = self.selected(c, "search_header")?;
        Ok(self.folders[&folder]
            .messages
            .iter()
            .filter(|(_, m)| m.header_matches(name, value))
            .map(|(u, _)| *u)
            .collect())
    }

    /// `UID STORE +FLAGS.SILENT (\Deleted)` + `UID EXPUNGE`. The caller's
    /// own expunge does not count as a change it has to be woken for.
    pub fn delete_messages(&mut self, c: ConnId, uids: &[Uid]) -> Result<(), ImapError> {
        if uids.is_empty() {
            return Ok(());
        }
        let (name, ro) = self.selected(c, "delete_messages")?;
        if ro {
            return Err(ImapError::No {
                command: "UID STORE".into(),
                text: "[READ-ONLY] mailbox is read-only".into(),
            });
        }
        let f = self.folders.get_mut(&name).ok_or_else(|| no_such(&name))?;
        let before = f.messages.len();
        let mut gone = Vec::new();
        for u in uids {
            if let Some(m) = f.messages.remove(u) {
                tracing::trace!(
                    folder = %name,
                    uid = u,
                    bytes = m.bytes.len(),
                    "memory server: expunged"
                );
                gone.push(m);
            }
        }
        let removed = before - f.messages.len();
        self.archive_expunged(&name, gone);
        self.own_change(c, &name, removed);
        Ok(())
    }

    /// After connection `c` changed folder `name` itself (`removed`
    /// messages expunged): a new version, which `c` does not have to be
    /// woken for.
    pub(crate) fn own_change(&mut self, c: ConnId, name: &str, removed: usize) {
        let Some(f) = self.folders.get_mut(name) else {
            return;
        };
        if removed != 0 {
            f.version += 1;
            let version = f.version;
            if let Some(conn) = self.conns.get_mut(&c) {
                if conn.seen_version + 1 == version {
                    conn.seen_version = version;
                }
            }
        }
    }

    /// The provider deletes messages of a folder outside any session (they
    /// count as lost for the invariants). Returns how many went.
    pub fn expunge_as_provider(&mut self, folder: &str, uids: &[Uid]) -> usize {
        let Some(f) = self.folders.get_mut(folder) else {
            return 0;
        };
        let mut gone = 0;
        for u in uids {
            if let Some(m) = f.messages.remove(u) {
                self.lost.push((folder.to_owned(), m.bytes));
                gone += 1;
            }
        }
        if gone > 0 {
            f.version += 1;
        }
        gone
    }

    /// Whether the selected folder of `c` changed since it last looked;
    /// marks the change as seen.
    pub fn take_changed(&mut self, c: ConnId) -> Result<bool, ImapError> {
        let (name, _) = self.selected(c, "idle")?;
        let version = self.folders[&name].version;
        let conn = self
            .conns
            .get_mut(&c)
            .ok_or_else(|| lost("no connection"))?;
        let changed = version > conn.seen_version;
        conn.seen_version = version;
        Ok(changed)
    }

    /// Fault: a new UIDVALIDITY, every message renumbered from 1.
    /// Connections that have the folder selected are disconnected.
    pub fn reset_uid_validity(&mut self, folder: &str) {
        let Some(f) = self.folders.get_mut(folder) else {
            return;
        };
        let msgs: Vec<Message> = std::mem::take(&mut f.messages).into_values().collect();
        f.uid_validity = self.next_validity;
        self.next_validity += 1;
        f.incarnation = self.next_incarnation;
        self.next_incarnation += 1;
        f.uid_next = 1;
        for m in msgs {
            f.messages.insert(f.uid_next, m);
            f.uid_next += 1;
        }
        f.version += 1;
        for c in self.conns.values_mut() {
            if c.selected.as_ref().is_some_and(|s| s.0 == folder) {
                c.dead = true;
                c.selected = None;
            }
        }
    }

    /// Every message in every folder (for footprint checks and for the
    /// hostile actions of a scenario).
    pub fn all_messages(&self) -> impl Iterator<Item = (&str, Uid, &Message)> {
        self.folders
            .iter()
            .flat_map(|(n, f)| f.messages.iter().map(move |(u, m)| (n.as_str(), *u, m)))
    }
}

#[cfg(test)]
mod tests;

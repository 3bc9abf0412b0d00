//! Gmail's delete semantics in the in-memory server, and what the server
//! advertises.
//!
//! With Gmail's default IMAP settings an `EXPUNGE` outside the Trash only
//! removes a label: the message stays in `[Gmail]/All Mail`. The model
//! here is Dovecot's `lazy_expunge` with `lazy_expunge_only_last_instance`
//! (what the test rig's `gmail` profile runs): a message expunged from a
//! folder other than the Trash and All Mail, or left in a deleted folder,
//! is kept in All Mail unless a copy of it is still in some folder. So a
//! move to the Trash followed by an expunge there really deletes.

use std::sync::Arc;

use super::message::Message;
use super::server::{ConnId, Server};
use crate::{Capabilities, ImapError, Uid};

/// What a new [`Server`] advertises (Dovecot's, less what it does not
/// model).
pub const DEFAULT_CAPABILITIES: [&str; 4] = ["IMAP4rev1", "IDLE", "UIDPLUS", "NAMESPACE"];

/// Where an expunge outside the Trash leaves the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archiving {
    /// The `\All` folder: expunged messages without another copy land here.
    pub all_mail: String,
    /// The `\Trash` folder: an expunge there really deletes.
    pub trash: String,
}

impl Server {
    /// Makes the server archive like Gmail: creates `all_mail` (`\All`)
    /// and `trash` (`\Trash`), subscribed, and from now on keeps expunged
    /// messages in `all_mail` (see the module documentation). With
    /// `advertise`, the server also lists `X-GM-EXT-1`, `MOVE`,
    /// `SPECIAL-USE`.
    pub fn archive_like_gmail(&mut self, all_mail: &str, trash: &str, advertise: bool) {
        for name in [all_mail, trash] {
            let _ = self.create(name);
            self.set_subscribed(name, true);
        }
        self.archiving = Some(Archiving {
            all_mail: all_mail.to_owned(),
            trash: trash.to_owned(),
        });
        if advertise {
            for cap in ["X-GM-EXT-1", "MOVE", "SPECIAL-USE"] {
                if !self.capabilities.iter().any(|c| c == cap) {
                    self.capabilities.push(cap.to_owned());
                }
            }
        }
    }

    /// The archiving set up by [`Server::archive_like_gmail`], if any.
    pub fn archiving(&self) -> Option<&Archiving> {
        self.archiving.as_ref()
    }

    /// Replaces what the server advertises to new sessions (e.g. without
    /// `UIDPLUS`: appends and moves then report no UIDs).
    pub fn set_capabilities(&mut self, caps: &[&str]) {
        self.capabilities = caps.iter().map(|c| (*c).to_owned()).collect();
    }

    /// What the server advertises.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities::from_raw(self.capabilities.clone())
    }

    /// `LIST` attributes of folder `name`: its special-use attribute, if
    /// it has one.
    pub(crate) fn attributes(&self, name: &str) -> Vec<String> {
        let mut out = vec!["\\HasNoChildren".to_owned()];
        if let Some(a) = &self.archiving {
            if a.all_mail == name {
                out.push("\\All".into());
            } else if a.trash == name {
                out.push("\\Trash".into());
            }
        }
        out
    }

    /// Messages expunged from `folder` (or left in it when it was deleted):
    /// with archiving, those without another copy go to All Mail. Returns
    /// the messages that are really gone.
    pub(crate) fn archive_expunged(&mut self, folder: &str, gone: Vec<Message>) -> Vec<Message> {
        let Some(a) = self.archiving.clone() else {
            return gone;
        };
        if folder == a.trash || folder == a.all_mail || !self.folders.contains_key(&a.all_mail) {
            return gone;
        }
        let mut lost = Vec::new();
        for m in gone {
            let copied = self
                .folders
                .values()
                .any(|f| f.messages.values().any(|o| Arc::ptr_eq(&o.bytes, &m.bytes)));
            if copied {
                lost.push(m);
                continue;
            }
            if let Some(f) = self.folders.get_mut(&a.all_mail) {
                let uid = f.uid_next;
                f.uid_next += 1;
                f.messages.insert(uid, m);
                f.version += 1;
            }
        }
        lost
    }

    /// `UID MOVE uids dest` from the selected folder of `c`: the UIDs of the
    /// copies, in the order of the moved messages. Missing UIDs are skipped.
    pub fn move_messages(
        &mut self,
        c: ConnId,
        uids: &[Uid],
        dest: &str,
    ) -> Result<Vec<Uid>, ImapError> {
        let (name, ro) = self.selected(c, "move_messages")?;
        if ro {
            return Err(ImapError::No {
                command: "UID MOVE".into(),
                text: "[READ-ONLY] mailbox is read-only".into(),
            });
        }
        if !self.folders.contains_key(dest) {
            return Err(ImapError::NoSuchFolder {
                folder: dest.to_owned(),
            });
        }
        let mut wanted: Vec<Uid> = uids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut moving = Vec::new();
        if let Some(f) = self.folders.get_mut(&name) {
            for u in wanted {
                if let Some(m) = f.messages.remove(&u) {
                    moving.push(m);
                }
            }
        }
        let removed = moving.len();
        let copies = moving.into_iter().map(|m| self.insert(dest, m)).collect();
        self.own_change(c, &name, removed);
        Ok(copies)
    }

    /// Puts a message into an existing folder under a new UID.
    fn insert(&mut self, folder: &str, m: Message) -> Uid {
        let Some(f) = self.folders.get_mut(folder) else {
            return 0;
        };
        let uid = f.uid_next;
        f.uid_next += 1;
        f.messages.insert(uid, m);
        f.version += 1;
        uid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UidRange;

    fn gmail() -> (Server, ConnId) {
        let mut s = Server::new();
        s.archive_like_gmail("All", "Trash", true);
        s.create("F").unwrap();
        let c = s.connect();
        (s, c)
    }

    fn count(s: &Server, folder: &str) -> usize {
        s.folder(folder).map_or(0, |f| f.messages.len())
    }

    #[test]
    fn an_expunge_archives_and_a_move_to_trash_then_expunge_deletes() {
        let (mut s, c) = gmail();
        assert!(s.capabilities().has("X-GM-EXT-1"));
        s.append("F", b"A: 1\r\n\r\n").unwrap();
        s.append("F", b"A: 2\r\n\r\n").unwrap();
        s.select(c, "F", false).unwrap();
        s.delete_messages(c, &[1]).unwrap();
        assert_eq!((count(&s, "F"), count(&s, "All")), (1, 1), "archived");
        let copies = s.move_messages(c, &[2, 99], "Trash").unwrap();
        assert_eq!(copies, vec![1]);
        assert_eq!((count(&s, "F"), count(&s, "All")), (0, 1));
        assert!(!s.take_changed(c).unwrap(), "own move is not a change");
        s.select(c, "Trash", false).unwrap();
        s.delete_messages(c, &copies).unwrap();
        assert_eq!(
            (count(&s, "Trash"), count(&s, "All")),
            (0, 1),
            "really gone"
        );
        let special: Vec<_> = s
            .list("", "*")
            .into_iter()
            .filter_map(|f| f.special_use().map(|u| (f.name.clone(), u.to_owned())))
            .collect();
        assert_eq!(
            special,
            vec![
                ("All".into(), "\\All".into()),
                ("Trash".into(), "\\Trash".into())
            ]
        );
    }

    #[test]
    fn a_deleted_folder_leaves_its_messages_in_all_mail() {
        let (mut s, c) = gmail();
        s.append("F", b"A: 1\r\n\r\n").unwrap();
        s.delete(Some(c), "F").unwrap();
        assert_eq!(count(&s, "All"), 1);
        assert!(s.lost.is_empty());
        s.select(c, "All", true).unwrap();
        assert_eq!(s.fetch_headers(c, UidRange::all()).unwrap().len(), 1);
        assert!(matches!(
            s.move_messages(c, &[1], "Trash"),
            Err(ImapError::No { .. })
        ));
        s.select(c, "All", false).unwrap();
        assert!(matches!(
            s.move_messages(c, &[1], "Nope"),
            Err(ImapError::NoSuchFolder { .. })
        ));
    }
}

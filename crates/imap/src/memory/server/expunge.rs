//! Deleting in two steps, as a session without UIDPLUS does: `STORE
//! \\Deleted`, then a plain `EXPUNGE` that removes every flagged message of
//! the folder, whoever flagged it. A connection lost between the two leaves
//! flagged messages behind, still visible, for the next `EXPUNGE`.

use super::{no_such, ConnId, Server};
use crate::{ImapError, Uid};

impl Server {
    /// `UID STORE +FLAGS.SILENT (\Deleted)` alone: the first half of a
    /// deletion without UIDPLUS.
    pub fn flag_deleted(&mut self, c: ConnId, uids: &[Uid]) -> Result<(), ImapError> {
        let (name, ro) = self.selected(c, "delete_messages")?;
        if ro {
            return Err(ImapError::No {
                command: "UID STORE".into(),
                text: "[READ-ONLY] mailbox is read-only".into(),
            });
        }
        let f = self.folders.get_mut(&name).ok_or_else(|| no_such(&name))?;
        for u in uids {
            if let Some(m) = f.messages.get_mut(u) {
                m.deleted = true;
            }
        }
        Ok(())
    }

    /// Plain `EXPUNGE`: removes every message of the selected folder
    /// flagged `\Deleted`, whoever flagged it (the second half of a
    /// deletion without UIDPLUS).
    pub fn expunge_flagged(&mut self, c: ConnId) -> Result<(), ImapError> {
        let (name, _) = self.selected(c, "expunge")?;
        let flagged: Vec<Uid> = self.folders[&name]
            .messages
            .iter()
            .filter(|(_, m)| m.deleted)
            .map(|(u, _)| *u)
            .collect();
        self.delete_messages(c, &flagged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UidRange;

    #[test]
    fn store_then_plain_expunge_removes_every_flagged_message() {
        let mut s = Server::new();
        s.create("F").unwrap();
        for body in [&b"a\r\n\r\n"[..], b"b\r\n\r\n", b"c\r\n\r\n"] {
            s.append("F", body).unwrap();
        }
        let (c1, c2) = (s.connect(), s.connect());
        s.select(c1, "F", false).unwrap();
        s.select(c2, "F", false).unwrap();
        s.flag_deleted(c1, &[1]).unwrap();
        // c1's connection is lost before its EXPUNGE: still there.
        s.kill(c1);
        assert_eq!(s.fetch_headers(c2, UidRange::all()).unwrap().len(), 3);
        // c2 deletes 3 without UIDPLUS: 1 goes as well.
        s.flag_deleted(c2, &[3]).unwrap();
        s.expunge_flagged(c2).unwrap();
        let left: Vec<Uid> = s
            .fetch_headers(c2, UidRange::all())
            .unwrap()
            .iter()
            .map(|h| h.uid)
            .collect();
        assert_eq!(left, vec![2]);
        assert!(!s.take_changed(c2).unwrap(), "own expunge is not a change");
        let ro = s.connect();
        s.select(ro, "F", true).unwrap();
        assert!(s.flag_deleted(ro, &[2]).is_err());
    }
}

//! Diagnostics that are not part of [`crate::Transport`]: the server's
//! INTERNALDATE of messages (its clock), for `sma doctor`.

use std::collections::BTreeMap;

use async_imap::imap_proto::{AttributeValue, Response};

use crate::error::ImapError;
use crate::session::ImapSession;
use crate::types::Uid;
use crate::wire::{uid_sets, Command, MAX_UID_SET_LEN};

impl ImapSession {
    /// The INTERNALDATE (the server's arrival time, as the server wrote it,
    /// e.g. `26-Nov-2026 14:35:43 +0000`) of these messages of the selected
    /// folder, by UID. UIDs that do not exist are left out.
    pub async fn internal_dates(
        &mut self,
        uids: &[Uid],
    ) -> Result<BTreeMap<Uid, String>, ImapError> {
        self.settle().await?;
        if self.selected.is_none() {
            return Err(ImapError::InvalidArgument(
                "internal_dates needs a selected folder: call select first".into(),
            ));
        }
        let mut out = BTreeMap::new();
        for set in uid_sets(uids, MAX_UID_SET_LEN) {
            let cmd = Command::new("UID FETCH").raw(set).raw("(UID INTERNALDATE)");
            let done = self
                .conn
                .run(&cmd, &mut |r| {
                    let Response::Fetch(_, attrs) = r else { return };
                    let uid = attrs.iter().find_map(|a| match a {
                        AttributeValue::Uid(u) => Some(*u),
                        _ => None,
                    });
                    let date = attrs.iter().find_map(|a| match a {
                        AttributeValue::InternalDate(d) => Some(d.to_string()),
                        _ => None,
                    });
                    if let (Some(uid), Some(date)) = (uid, date) {
                        out.insert(uid, date);
                    }
                })
                .await?;
            if !done.is_ok() {
                return Err(done.into_error(cmd.label()));
            }
        }
        Ok(out)
    }
}

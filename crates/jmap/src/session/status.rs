//! Folder statuses on a [`JmapSession`]: one request listing every folder
//! asked (`Email/query` + `Email/get` each).

use sma_imap::{ImapError, MailboxStatus};

use super::{JmapSession, LIST_PROPS};

impl JmapSession {
    /// `STATUS` of several folders in one request, each its own result. A
    /// folder missing while the mailbox ids came from the session cache
    /// may only have been made again: then the tree is read and the folders
    /// asked once more.
    pub(super) async fn statuses(
        &mut self,
        folders: &[&str],
    ) -> Result<Vec<Result<MailboxStatus, ImapError>>, ImapError> {
        let from_cache = !self.tree_fresh;
        let out = self.statuses_once(folders).await?;
        let missing = out
            .iter()
            .any(|r| matches!(r, Err(ImapError::NoSuchFolder { .. })));
        if missing && from_cache && !self.tree_fresh {
            self.refresh_tree().await?;
            return self.statuses_once(folders).await;
        }
        Ok(out)
    }

    async fn statuses_once(
        &mut self,
        folders: &[&str],
    ) -> Result<Vec<Result<MailboxStatus, ImapError>>, ImapError> {
        let ids = self.mailbox_ids(folders).await?;
        let mut calls = vec![];
        for (i, id) in ids.iter().enumerate() {
            if let Some(id) = id {
                calls.extend(self.listing_calls(id, &i.to_string(), &LIST_PROPS));
            }
        }
        let r = if calls.is_empty() {
            vec![]
        } else {
            self.api(calls, "STATUS of several folders").await?
        };
        let mut out = Vec::with_capacity(folders.len());
        for (i, (folder, id)) in folders.iter().zip(&ids).enumerate() {
            let Some(id) = id else {
                out.push(Err(ImapError::NoSuchFolder {
                    folder: folder.to_string(),
                }));
                continue;
            };
            let res = self
                .absorb_listing(&r, id, folder, &i.to_string())
                .map(|_| self.status_of(id));
            if res
                .as_ref()
                .is_err_and(|e| matches!(e, ImapError::NoSuchFolder { .. }))
            {
                self.tree = None;
            }
            out.push(res);
        }
        Ok(out)
    }

    /// The status of a listed mailbox.
    pub(super) fn status_of(&self, mailbox: &str) -> MailboxStatus {
        let s = self.state_of(mailbox);
        MailboxStatus {
            messages: s.exists,
            uid_next: s.uid_next,
            uid_validity: s.uid_validity,
            highest_modseq: None,
        }
    }

    /// The ids of `folders` from the tree, read again once if one is
    /// missing.
    pub(super) async fn mailbox_ids(
        &mut self,
        folders: &[&str],
    ) -> Result<Vec<Option<String>>, ImapError> {
        let known = |s: &Self, f: &str| s.tree.as_ref().and_then(|t| t.id_of(f)).map(str::to_owned);
        if folders.iter().any(|f| known(self, f).is_none()) {
            self.refresh_tree().await?;
        }
        Ok(folders.iter().map(|f| known(self, f)).collect())
    }
}

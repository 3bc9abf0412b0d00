//! Moving messages between folders ([`Transport::move_messages`]) and
//! finding the special-use folders (RFC 6154) for [`ImapSession`]: what a
//! server whose expunge only archives (Gmail) needs to really delete.

use async_imap::imap_proto::{Response, ResponseCode, Status};

use crate::error::ImapError;
use crate::listing::FolderListing;
use crate::response::{expand_uid_ranges, uid_ranges, Code, Watch};
use crate::session::ImapSession;
use crate::transport::Transport;
use crate::types::{FolderInfo, Uid};
use crate::wire::{check_folder, uid_sets, Command, MAX_UID_SET_LEN};

impl ImapSession {
    /// [`Transport::move_messages`]: `UID MOVE` per chunk of UIDs where
    /// MOVE is advertised, else `UID COPY` per chunk and then the usual
    /// `\Deleted` + expunge of the originals.
    pub(crate) async fn move_messages_impl(
        &mut self,
        uids: &[Uid],
        dest: &str,
    ) -> Result<Option<Vec<Uid>>, ImapError> {
        self.require_selected("move_messages")?;
        check_folder(dest)?;
        let sets = uid_sets(uids, MAX_UID_SET_LEN);
        if sets.is_empty() {
            return Ok(Some(Vec::new()));
        }
        // A set never has more copies than the UIDs we asked for.
        let max = uids.len();
        let mut copies = Some(Vec::new());
        for set in &sets {
            let got = if self.caps.move_ {
                self.uid_move(set, dest, max).await?
            } else {
                self.uid_copy(set, dest, max).await?
            };
            match (copies.as_mut(), got) {
                (Some(all), Some(got)) if all.len() + got.len() <= max => all.extend(got),
                _ => copies = None,
            }
        }
        if !self.caps.move_ {
            self.delete_messages(uids).await?;
        }
        Ok(copies)
    }

    /// `UID MOVE set dest`; the copies' UIDs from an untagged or tagged
    /// `COPYUID`.
    async fn uid_move(
        &mut self,
        set: &str,
        dest: &str,
        max: usize,
    ) -> Result<Option<Vec<Uid>>, ImapError> {
        let cmd = Command::new("UID MOVE").raw(set.to_owned()).mailbox(dest);
        let mut untagged: Option<Vec<(u32, u32)>> = None;
        self.conn.set_watch(Watch::OwnExpunge);
        let done = self
            .conn
            .run(&cmd, &mut |r| {
                if let Response::Data {
                    status: Status::Ok,
                    code: Some(ResponseCode::CopyUid(_, _, d)),
                    ..
                } = r
                {
                    untagged = Some(uid_ranges(d));
                }
            })
            .await;
        self.conn.set_watch(Watch::Normal);
        let done = done?;
        if !done.is_ok() {
            return Err(self.folder_error(dest, done, cmd.label()).await?);
        }
        let ranges = match done.code {
            Some(Code::CopyUid { dest }) => Some(dest),
            _ => untagged,
        };
        Ok(ranges.and_then(|r| expand_uid_ranges(&r, max)))
    }

    /// `UID COPY set dest`; the copies' UIDs from the tagged `COPYUID`.
    async fn uid_copy(
        &mut self,
        set: &str,
        dest: &str,
        max: usize,
    ) -> Result<Option<Vec<Uid>>, ImapError> {
        let cmd = Command::new("UID COPY").raw(set.to_owned()).mailbox(dest);
        let done = self.conn.run_simple(&cmd).await?;
        if !done.is_ok() {
            return Err(self.folder_error(dest, done, cmd.label()).await?);
        }
        Ok(match done.code {
            Some(Code::CopyUid { dest }) => expand_uid_ranges(&dest, max),
            _ => None,
        })
    }

    /// [`Transport::special_use_folders`]: `LIST (SPECIAL-USE) "" "*"`
    /// (RFC 6154 with LIST-EXTENDED) where advertised, else — or when the
    /// server refuses that — `LIST "" "*"`, keeping the folders with a
    /// special-use attribute.
    pub(crate) async fn special_use_folders_impl(&mut self) -> Result<Vec<FolderInfo>, ImapError> {
        if let FolderListing::Got(mut listed) = std::mem::take(&mut self.listing) {
            listed.retain(|f| f.special_use().is_some());
            return Ok(listed);
        }
        if self.caps.has("SPECIAL-USE") && self.caps.has("LIST-EXTENDED") {
            let cmd = Command::new("LIST")
                .raw("(SPECIAL-USE)")
                .mailbox("")
                .mailbox("*");
            match self.list_with(&cmd).await {
                Ok(mut found) => {
                    found.retain(|f| f.special_use().is_some());
                    return Ok(found);
                }
                Err(e) if e.is_connection_lost() => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "LIST (SPECIAL-USE) refused; using LIST");
                }
            }
        }
        let mut all = self.list("", "*").await?;
        all.retain(|f| f.special_use().is_some());
        Ok(all)
    }

    /// Runs a `LIST` command and collects its folders.
    pub(crate) async fn list_with(
        &mut self,
        cmd: &Command<'_>,
    ) -> Result<Vec<FolderInfo>, ImapError> {
        let mut out = Vec::new();
        let done = self
            .conn
            .run(cmd, &mut |r| out.extend(crate::listing::folder_of(r)))
            .await?;
        if !done.is_ok() {
            return Err(done.into_error(cmd.label()));
        }
        Ok(out)
    }
}

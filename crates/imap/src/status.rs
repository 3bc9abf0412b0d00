//! `STATUS` of folders without selecting them: one, or many in one flight.

use std::collections::BTreeMap;

use async_imap::imap_proto::{MailboxDatum, Response, StatusAttribute};

use crate::error::ImapError;
use crate::limits::Limits;
use crate::ops::append_command;
use crate::response::{Done, Watch};
use crate::session::ImapSession;
use crate::transport::{lost_is_final, Transport};
use crate::types::{CheckedAppend, FolderInfo, FolderStatuses, MailboxStatus, Uid};
use crate::wire::{check_folder, Command};

/// The attributes of one `STATUS` answer, gathered as they come.
#[derive(Default)]
struct Gathered {
    messages: Option<u32>,
    uid_next: Option<u32>,
    uid_validity: Option<u32>,
    highest_modseq: Option<u64>,
}

impl Gathered {
    /// Takes the attributes of a `STATUS` untagged response.
    fn take(&mut self, r: &Response<'_>) {
        let Response::MailboxData(MailboxDatum::Status { status, .. }) = r else {
            return;
        };
        for a in status {
            match a {
                StatusAttribute::Messages(n) => self.messages = Some(*n),
                StatusAttribute::UidNext(n) => self.uid_next = Some(*n),
                StatusAttribute::UidValidity(n) => self.uid_validity = Some(*n),
                StatusAttribute::HighestModSeq(n) => self.highest_modseq = Some(*n),
                _ => {}
            }
        }
    }

    /// The status, if the server sent the attributes every answer needs.
    fn finish(self, folder: &str) -> Result<MailboxStatus, ImapError> {
        match (self.messages, self.uid_validity) {
            (Some(messages), Some(uid_validity)) => Ok(MailboxStatus {
                messages,
                uid_next: self.uid_next,
                uid_validity,
                highest_modseq: self.highest_modseq,
            }),
            _ => Err(ImapError::Protocol(format!(
                "STATUS of {folder:?} lacks MESSAGES or UIDVALIDITY"
            ))),
        }
    }
}

impl ImapSession {
    /// The `STATUS` command for `folder`.
    fn status_command<'a>(&self, folder: &'a str) -> Result<Command<'a>, ImapError> {
        check_folder(folder)?;
        let items = if self.caps.condstore {
            "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"
        } else {
            "(MESSAGES UIDNEXT UIDVALIDITY)"
        };
        Ok(Command::new("STATUS").mailbox(folder).raw(items))
    }

    /// [`crate::Transport::status`].
    pub(crate) async fn status_impl(&mut self, folder: &str) -> Result<MailboxStatus, ImapError> {
        let cmd = self.status_command(folder)?;
        let mut got = Gathered::default();
        let done = self.conn.run(&cmd, &mut |r| got.take(r)).await?;
        self.status_result(folder, got, done, cmd.label()).await
    }

    /// [`crate::Transport::status_many`]: every `STATUS` in one flight
    /// (flights of at most 64). An answer's data is credited to the folder
    /// it names. The selected folder's count is this session's view of it
    /// (RFC 3501 6.3.10).
    pub(crate) async fn status_many_impl(
        &mut self,
        folders: &[&str],
    ) -> Result<Vec<Result<MailboxStatus, ImapError>>, ImapError> {
        let cmds = folders
            .iter()
            .map(|f| self.status_command(f))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&Command<'_>> = cmds.iter().collect();
        let mut got: Vec<Gathered> = folders.iter().map(|_| Gathered::default()).collect();
        let dones = self
            .conn
            .run_many(&refs, Watch::Normal, Limits::default(), &mut |i, r| {
                let k = answer_of(r, folders.iter().copied(), &got).unwrap_or(i);
                if let Some(g) = got.get_mut(k) {
                    g.take(r);
                }
            })
            .await?;
        let mut out = Vec::with_capacity(folders.len());
        for (((folder, g), done), cmd) in folders.iter().zip(got).zip(dones).zip(&cmds) {
            out.push(lost_is_final(
                self.status_result(folder, g, done, cmd.label()).await,
            )?);
        }
        Ok(out)
    }

    /// [`crate::Transport::status_and_append`]: every `STATUS` and
    /// `APPEND` in one flight (with `LITERAL+`; one after the other
    /// without it).
    pub(crate) async fn status_and_append_impl(
        &mut self,
        items: &[(&str, &[u8])],
    ) -> Result<Vec<CheckedAppend>, ImapError> {
        // A server answers STATUS of the selected folder from this
        // session's view (RFC 3501 6.3.10): a NOOP first brings it up to
        // date, as a count that decides whether to append must be.
        if let Some(sel) = &self.selected {
            if items.iter().any(|(f, _)| *f == sel.name) {
                let done = self.conn.run_simple(&Command::new("NOOP")).await?;
                if !done.is_ok() {
                    return Err(done.into_error("NOOP".into()));
                }
            }
        }
        let mut cmds = Vec::with_capacity(items.len() * 2);
        for (folder, message) in items {
            cmds.push(self.status_command(folder)?);
            cmds.push(append_command(folder, &[], message)?);
        }
        let refs: Vec<&Command<'_>> = cmds.iter().collect();
        let mut got: Vec<Gathered> = items.iter().map(|_| Gathered::default()).collect();
        let dones = self
            .conn
            .run_many(&refs, Watch::Normal, Limits::default(), &mut |i, r| {
                let names = items.iter().map(|(f, _)| *f);
                let k = answer_of(r, names, &got).unwrap_or(i / 2);
                if let Some(g) = got.get_mut(k) {
                    g.take(r);
                }
            })
            .await?;
        let mut dones = dones.into_iter();
        let mut out = Vec::with_capacity(items.len());
        for (((folder, message), g), pair) in items.iter().zip(got).zip(cmds.chunks(2)) {
            let (Some(status_done), Some(append_done)) = (dones.next(), dones.next()) else {
                return Err(ImapError::Protocol(
                    "a pipelined flight lost an answer".into(),
                ));
            };
            let status = lost_is_final(
                self.status_result(folder, g, status_done, pair[0].label())
                    .await,
            )?;
            let appended = if append_done.is_ok() || !self.is_examined(folder) {
                self.append_outcome(folder, append_done, pair[1].label())
            } else {
                // The folder selected read-only: Courier refuses that
                // APPEND, and the single APPEND knows what to do.
                lost_is_final(self.append(folder, &[], message).await)?
            };
            out.push(CheckedAppend {
                status: status
                    .map(|st| not_counting(st, appended.as_ref().ok().copied().flatten())),
                appended,
            });
        }
        Ok(out)
    }

    /// [`crate::Transport::append_all`]: every `APPEND` in one flight
    /// (with `LITERAL+`; one after the other without it).
    pub(crate) async fn append_all_impl(
        &mut self,
        folder: &str,
        messages: &[&[u8]],
    ) -> Result<Vec<Option<Uid>>, ImapError> {
        if messages.len() < 2 || self.is_examined(folder) {
            // Courier refuses APPEND to the folder selected read-only:
            // the single APPEND knows what to do.
            return crate::transport::append_one_by_one(self, folder, messages).await;
        }
        let cmds = messages
            .iter()
            .map(|m| append_command(folder, &[], m))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&Command<'_>> = cmds.iter().collect();
        let dones = self
            .conn
            .run_many(&refs, Watch::Normal, Limits::default(), &mut |_, _| {})
            .await?;
        cmds.iter()
            .zip(dones)
            .map(|(cmd, done)| self.append_outcome(folder, done, cmd.label()))
            .collect()
    }

    /// [`crate::Transport::list_status`] with `LIST-STATUS`: one command
    /// (behind the login, if its answer is outstanding). A selectable
    /// folder the server lists without its STATUS is asked on its own.
    pub(crate) async fn list_status_impl(
        &mut self,
        pattern: &str,
    ) -> Result<FolderStatuses, ImapError> {
        check_folder(pattern)?;
        let mut listing = Listing::default();
        let behind = if self.login_pending() {
            let cmd = self.list_status_command(pattern);
            let limits = Limits::default();
            self.flight_behind_login(&[&cmd], limits, &mut |_, r| listing.take(r))
                .await?
        } else {
            None
        };
        let cmd = self.list_status_command(pattern);
        let done = match behind.and_then(|dones| dones.into_iter().next()) {
            Some(done) => done,
            None => self.conn.run(&cmd, &mut |r| listing.take(r)).await?,
        };
        if !done.is_ok() {
            return Err(done.into_error(cmd.label()));
        }
        let Listing { listed, mut got } = listing;
        let mut out = Vec::with_capacity(listed.len());
        for name in listed
            .into_iter()
            .filter(FolderInfo::is_selectable)
            .map(|f| f.name)
        {
            let status = match got.remove(&name) {
                Some(g) => g.finish(&name),
                None => lost_is_final(self.status_impl(&name).await)?,
            };
            out.push((name, status));
        }
        Ok(out)
    }

    /// `LIST … RETURN (STATUS …)` of `pattern`.
    fn list_status_command<'a>(&self, pattern: &'a str) -> Command<'a> {
        let items = if self.caps.condstore {
            "RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ))"
        } else {
            "RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY))"
        };
        Command::new("LIST").mailbox("").mailbox(pattern).raw(items)
    }

    /// The status, or the error the tagged answer `done` stands for.
    async fn status_result(
        &mut self,
        folder: &str,
        got: Gathered,
        done: Done,
        label: String,
    ) -> Result<MailboxStatus, ImapError> {
        if !done.is_ok() {
            return Err(self.folder_error(folder, done, label).await?);
        }
        got.finish(folder)
    }
}

/// Which of `folders` the `STATUS` data `r` answers: the first of that
/// name not answered yet (a server may run pipelined commands side by
/// side, so the name decides, not the order).
fn answer_of<'a>(
    r: &Response<'_>,
    folders: impl Iterator<Item = &'a str>,
    got: &[Gathered],
) -> Option<usize> {
    let Response::MailboxData(MailboxDatum::Status { mailbox, .. }) = r else {
        return None;
    };
    let named = crate::mutf7::decode(mailbox.as_bytes()).ok()?;
    let same = |f: &str| {
        f == named || (f.eq_ignore_ascii_case("INBOX") && named.eq_ignore_ascii_case("INBOX"))
    };
    folders
        .enumerate()
        .find(|(k, f)| same(f) && got.get(*k).is_some_and(|g| g.messages.is_none()))
        .map(|(k, _)| k)
}

/// `status` without the message appended as `uid`, if the server took the
/// status after that append (it runs the two side by side): its UIDNEXT is
/// then above the new UID. Without the UID (no UIDPLUS) it cannot tell,
/// and the count may include the new message.
fn not_counting(status: MailboxStatus, uid: Option<Uid>) -> MailboxStatus {
    match (uid, status.uid_next) {
        (Some(uid), Some(next)) if next > uid => MailboxStatus {
            messages: status.messages.saturating_sub(1),
            ..status
        },
        _ => status,
    }
}

/// What a `LIST … RETURN (STATUS …)` answered, gathered as it comes.
#[derive(Default)]
struct Listing {
    listed: Vec<FolderInfo>,
    got: BTreeMap<String, Gathered>,
}

impl Listing {
    fn take(&mut self, r: &Response<'_>) {
        match r {
            Response::MailboxData(MailboxDatum::List {
                name_attributes,
                delimiter,
                name,
            }) => self.listed.push(FolderInfo {
                name: crate::mutf7::decode_lenient(name),
                delimiter: delimiter.as_deref().and_then(|d| d.chars().next()),
                attributes: name_attributes
                    .iter()
                    .map(crate::listing::attribute_name)
                    .collect(),
            }),
            Response::MailboxData(MailboxDatum::Status { mailbox, .. }) => {
                self.got
                    .entry(crate::mutf7::decode_lenient(mailbox))
                    .or_default()
                    .take(r);
            }
            _ => {}
        }
    }
}

//! Opening a folder (`SELECT` / `EXAMINE`), alone or with a header
//! `FETCH` in the same flight.

use async_imap::imap_proto::{MailboxDatum, Response, ResponseCode, Status};

use crate::error::ImapError;
use crate::fetch::{collect_fetch, headers_of, Partial};
use crate::limits::Limits;
use crate::ops::LIST_SHOWS_IT;
use crate::response::{MailboxTracker, Watch};
use crate::session::{ImapSession, Selected};
use crate::types::{FetchedHeader, MailboxState, Uid, UidRange};
use crate::wire::{check_folder, Command};

/// What a `SELECT` / `EXAMINE` answered, gathered as it comes.
#[derive(Default)]
struct Opened {
    validity: Option<u32>,
    next: Option<u32>,
    exists: Option<u32>,
    modseq: Option<u64>,
}

impl Opened {
    /// Takes what `r` says about the folder being opened.
    fn take(&mut self, r: &Response<'_>) {
        match r {
            Response::Data {
                status: Status::Ok,
                code: Some(code),
                ..
            } => match code {
                ResponseCode::UidValidity(v) => self.validity = Some(*v),
                ResponseCode::UidNext(n) => self.next = Some(*n),
                ResponseCode::HighestModSeq(m) => self.modseq = Some(*m),
                _ => {}
            },
            Response::MailboxData(MailboxDatum::Exists(n)) => self.exists = Some(*n),
            _ => {}
        }
    }

    /// The folder's state; an answer without UIDVALIDITY is refused.
    fn finish(self, folder: &str) -> Result<MailboxState, ImapError> {
        let uid_validity = self.validity.ok_or_else(|| {
            ImapError::Protocol(format!("the server sent no UIDVALIDITY for {folder:?}"))
        })?;
        Ok(MailboxState {
            uid_validity,
            uid_next: self.next,
            exists: self.exists.unwrap_or(0),
            highest_modseq: self.modseq,
        })
    }
}

impl ImapSession {
    /// Opens `folder`. A `NO` for a folder that `LIST` then shows is tried
    /// once more: another client may have created the folder between the
    /// two commands (two devices founding at once). A server that keeps
    /// refusing a folder it lists is a [`ImapError::ServerFailure`].
    pub(crate) async fn open(
        &mut self,
        folder: &str,
        read_only: bool,
    ) -> Result<MailboxState, ImapError> {
        match self.open_once(folder, read_only).await {
            Err(ImapError::ServerFailure { text, .. }) if text.ends_with(LIST_SHOWS_IT) => {
                self.open_once(folder, read_only).await
            }
            other => other,
        }
    }

    /// The `SELECT` or `EXAMINE` command for `folder`; forgets the folder
    /// selected before.
    fn open_command<'a>(&mut self, folder: &'a str, read_only: bool) -> Command<'a> {
        let mut cmd = Command::new(if read_only { "EXAMINE" } else { "SELECT" }).mailbox(folder);
        if self.caps.condstore {
            cmd = cmd.raw("(CONDSTORE)");
        }
        self.selected = None;
        self.conn.mailbox = MailboxTracker::default();
        cmd
    }

    /// Records `folder` as selected, its message count as `exists`.
    fn mark_selected(&mut self, folder: &str, read_only: bool, exists: u32) {
        if self.conn.mailbox.exists.is_none() {
            self.conn.mailbox.exists = Some(exists);
        }
        self.selected = Some(Selected {
            name: folder.to_owned(),
            read_only,
            sizes: Default::default(),
        });
    }

    async fn open_once(
        &mut self,
        folder: &str,
        read_only: bool,
    ) -> Result<MailboxState, ImapError> {
        check_folder(folder)?;
        let cmd = self.open_command(folder, read_only);
        let mut opened = Opened::default();
        let done = self.conn.run(&cmd, &mut |r| opened.take(r)).await?;
        if !done.is_ok() {
            return Err(self.folder_error(folder, done, cmd.label()).await?);
        }
        let state = opened.finish(folder)?;
        self.conn.mailbox = MailboxTracker {
            exists: Some(state.exists),
            changed: false,
        };
        self.mark_selected(folder, read_only, state.exists);
        Ok(state)
    }

    /// [`crate::Transport::open_and_fetch_headers`]: `SELECT` (or
    /// `EXAMINE`) and the header `FETCH` in one flight. If the folder
    /// cannot be opened, or the answer needs the checks of
    /// [`crate::Transport::fetch_headers`] (a folder said to hold messages
    /// that gave none), the two run again one after the other, so errors
    /// and retries are theirs.
    pub(crate) async fn open_and_fetch_headers_impl(
        &mut self,
        folder: &str,
        read_only: bool,
        uids: UidRange,
    ) -> Result<(MailboxState, Vec<FetchedHeader>), ImapError> {
        check_folder(folder)?;
        let open = self.open_command(folder, read_only);
        let fetch = Self::header_fetch_command(uids);
        let mut opened = Opened::default();
        let mut got: std::collections::BTreeMap<Uid, Partial> = Default::default();
        let mut answered = 0usize;
        let dones = self
            .conn
            .run_many(
                &[&open, &fetch],
                Watch::Normal,
                Limits::headers(),
                &mut |i, r| {
                    if i == 0 {
                        opened.take(r);
                    }
                    if collect_fetch(r, &|u| uids.contains(u), &mut got) {
                        answered += 1;
                    }
                },
            )
            .await?;
        let (Some(open_done), Some(fetch_done)) = (dones.first(), dones.get(1)) else {
            return Err(ImapError::Protocol(
                "a pipelined pair lost an answer".into(),
            ));
        };
        if !open_done.is_ok() || opened.validity.is_none() {
            return self.open_then_fetch(folder, read_only, uids).await;
        }
        let state = opened.finish(folder)?;
        self.mark_selected(folder, read_only, state.exists);
        if !fetch_done.is_ok() {
            return Err(fetch_done.clone().into_error(fetch.label()));
        }
        let exists = state.exists.min(self.conn.mailbox.exists.unwrap_or(0));
        if uids.end.is_none() && exists > 0 && answered == 0 {
            return Ok((state, self.fetch_headers_impl(uids).await?));
        }
        let headers = headers_of(got)?;
        if let Some(sel) = self.selected.as_mut() {
            sel.sizes.extend(headers.iter().map(|h| (h.uid, h.size)));
        }
        Ok((state, headers))
    }

    /// The two steps of [`Self::open_and_fetch_headers_impl`], one after
    /// the other.
    async fn open_then_fetch(
        &mut self,
        folder: &str,
        read_only: bool,
        uids: UidRange,
    ) -> Result<(MailboxState, Vec<FetchedHeader>), ImapError> {
        let state = self.open(folder, read_only).await?;
        Ok((state, self.fetch_headers_impl(uids).await?))
    }
}

//! Opening a folder (`SELECT` / `EXAMINE`), alone or with a header
//! `FETCH` in the same flight.

use std::collections::BTreeMap;

use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response, ResponseCode, Status};

use crate::error::ImapError;
use crate::fetch::{collect_fetch, headers_of, Partial};
use crate::limits::{Limits, PREFETCH_BYTES, PREFETCH_MESSAGES};
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
            bodies: Default::default(),
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
    /// `EXAMINE`), the header `FETCH` and the body prefetch in one flight.
    /// If the folder cannot be opened, or the answer needs the checks of
    /// [`crate::Transport::fetch_headers`] (a folder said to hold messages
    /// that gave none), the steps run again one after the other, so errors
    /// and retries are theirs.
    pub(crate) async fn open_and_fetch_headers_impl(
        &mut self,
        folder: &str,
        read_only: bool,
        uids: UidRange,
        prefetch_from: Option<Uid>,
    ) -> Result<(MailboxState, Vec<FetchedHeader>), ImapError> {
        check_folder(folder)?;
        let open = self.open_command(folder, read_only);
        let fetch = Self::header_fetch_command(uids);
        let prefetch = prefetch_from.map(prefetch_range);
        let prefetch_cmd = prefetch.map(prefetch_command);
        let mut cmds = vec![&open, &fetch];
        cmds.extend(prefetch_cmd.as_ref());
        let mut opened = Opened::default();
        let mut got: BTreeMap<Uid, Partial> = BTreeMap::new();
        let mut early: BTreeMap<Uid, Partial> = BTreeMap::new();
        let mut answered = 0usize;
        let dones = self
            .conn
            .run_many(
                &cmds,
                Watch::Normal,
                if prefetch.is_some() {
                    Limits::headers_and_prefetch()
                } else {
                    Limits::headers()
                },
                &mut |i, r| {
                    if i == 0 {
                        opened.take(r);
                    }
                    // Dovecot runs pipelined FETCHes side by side: their
                    // data is told apart by what it carries, not by order.
                    if carries_body(r) {
                        collect_fetch(r, &|u| prefetch.is_some_and(|p| p.contains(u)), &mut early);
                    } else if collect_fetch(r, &|u| uids.contains(u), &mut got) {
                        answered += 1;
                    }
                },
            )
            .await?;
        let (Some(open_done), Some(fetch_done)) = (dones.first(), dones.get(1)) else {
            return Err(ImapError::Protocol(
                "a pipelined flight lost an answer".into(),
            ));
        };
        if !open_done.is_ok() {
            // Nothing is selected; the FETCH failed with it. Only a folder
            // that LIST shows is worth opening again (created meanwhile).
            let label = open.label();
            return match self.folder_error(folder, open_done.clone(), label).await? {
                ImapError::ServerFailure { text, .. } if text.ends_with(LIST_SHOWS_IT) => {
                    self.open_then_fetch(folder, read_only, uids).await
                }
                e => Err(e),
            };
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
            sel.bodies = whole_bodies(early, &sel.sizes);
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

/// The UIDs a prefetch from `first` covers.
fn prefetch_range(first: Uid) -> UidRange {
    let first = first.max(1);
    UidRange::new(first, first.saturating_add(PREFETCH_MESSAGES - 1))
}

/// The `FETCH` of the first [`PREFETCH_BYTES`] of each message in `uids`.
fn prefetch_command(uids: UidRange) -> Command<'static> {
    Command::new("UID FETCH")
        .raw(uids.to_string())
        .raw(format!("(UID BODY.PEEK[]<0.{PREFETCH_BYTES}>)"))
}

/// The prefetched bodies that are whole: as long as the size the header
/// fetch gave.
fn whole_bodies(
    early: BTreeMap<Uid, Partial>,
    sizes: &BTreeMap<Uid, u32>,
) -> BTreeMap<Uid, Vec<u8>> {
    early
        .into_iter()
        .filter_map(|(uid, p)| {
            let body = p.into_body()?;
            let size = *sizes.get(&uid)?;
            (body.len() == size as usize).then_some((uid, body))
        })
        .collect()
}

/// Whether `r` is FETCH data with a whole-message section (`BODY[]`,
/// partial or not), as only the prefetch asks for.
fn carries_body(r: &Response<'_>) -> bool {
    let Response::Fetch(_, attrs) = r else {
        return false;
    };
    attrs
        .iter()
        .any(|a| matches!(a, AttributeValue::BodySection { section: None, .. }))
}

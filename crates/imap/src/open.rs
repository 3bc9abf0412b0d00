//! Opening a folder (`SELECT` / `EXAMINE`), alone or with a header
//! `FETCH` in the same flight.

use std::collections::BTreeMap;

use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response, ResponseCode, Status};

use crate::error::ImapError;
use crate::fetch::{collect_fetch, headers_of, Partial};
use crate::limits::{Limits, PREFETCH_BYTES, PREFETCH_MESSAGES};
use crate::listing::FolderListing;
use crate::ops::LIST_SHOWS_IT;
use crate::response::{Done, MailboxTracker, Watch};
use crate::session::{ImapSession, Selected};
use crate::types::{FetchedHeader, FolderInfo, MailboxState, Uid, UidRange};
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

    /// The listing to send with this open, if one was asked for
    /// ([`crate::Transport::list_with_next_open`]).
    fn listing_command(&mut self) -> Option<Command<'static>> {
        if !matches!(self.listing, FolderListing::Wanted) {
            return None;
        }
        self.listing = FolderListing::NotWanted;
        Some(crate::listing::command(&self.caps))
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
    /// `EXAMINE`), the header `FETCH` and the body prefetch in one flight
    /// (behind the login, if its answer is still outstanding: see
    /// [`ImapSession::settle`]). If the folder cannot be opened, or the
    /// answer needs the checks of [`crate::Transport::fetch_headers`] (a
    /// folder said to hold messages that gave none), the steps run again
    /// one after the other, so errors and retries are theirs.
    pub(crate) async fn open_and_fetch_headers_impl(
        &mut self,
        folder: &str,
        read_only: bool,
        uids: UidRange,
        prefetch_from: Option<Uid>,
    ) -> Result<(MailboxState, Vec<FetchedHeader>), ImapError> {
        check_folder(folder)?;
        let prefetch = prefetch_from.map(prefetch_range);
        let listing = self.listing_command();
        let mut flight = HeaderFlight::new(uids, prefetch, listing);
        flight.create = self.create_rider.create.take();
        let dones = match self
            .open_behind_login(folder, read_only, &mut flight)
            .await?
        {
            Some(dones) => dones,
            None => {
                let open = self.open_command(folder, read_only);
                let after = flight.commands_after_open();
                let cmds: Vec<&Command<'_>> = std::iter::once(&open).chain(&after).collect();
                self.conn
                    .run_many(&cmds, Watch::Normal, flight.limits(), &mut |i, r| {
                        flight.take(i, r)
                    })
                    .await?
            }
        };
        self.open_flight_answered(folder, read_only, flight, &dones)
            .await
    }

    /// The flight of [`Self::open_and_fetch_headers_impl`] sent behind a
    /// login whose answer is outstanding, and its answers; `None` when it
    /// was not (see [`ImapSession::flight_behind_login`]).
    async fn open_behind_login(
        &mut self,
        folder: &str,
        read_only: bool,
        flight: &mut HeaderFlight,
    ) -> Result<Option<Vec<Done>>, ImapError> {
        if !self.login_pending() {
            return Ok(None);
        }
        let open = self.open_command(folder, read_only);
        let after = flight.commands_after_open();
        let cmds: Vec<&Command<'_>> = std::iter::once(&open).chain(&after).collect();
        let limits = flight.limits();
        self.flight_behind_login(&cmds, limits, &mut |i, r| flight.take(i, r))
            .await
    }

    /// Checks the answers of the flight of
    /// [`Self::open_and_fetch_headers_impl`] and keeps what it gathered.
    async fn open_flight_answered(
        &mut self,
        folder: &str,
        read_only: bool,
        mut flight: HeaderFlight,
        dones: &[Done],
    ) -> Result<(MailboxState, Vec<FetchedHeader>), ImapError> {
        let (Some(open_done), Some(fetch_done)) = (dones.first(), dones.get(1)) else {
            return Err(ImapError::Protocol(
                "a pipelined flight lost an answer".into(),
            ));
        };
        let uids = flight.uids;
        if flight.created(dones) {
            self.create_rider.created = flight.create.take();
        }
        let listed = flight.listed(dones);
        if let Some(listed) = &listed {
            self.listing = FolderListing::Got(listed.clone());
        }
        if !open_done.is_ok() {
            // Nothing is selected; the FETCH failed with it. Only a folder
            // that LIST shows is worth opening again (created meanwhile).
            let label = self.open_command(folder, read_only).label();
            let error = self
                .folder_error_listed(folder, open_done.clone(), label, listed.as_deref())
                .await?;
            return match error {
                ImapError::ServerFailure { text, .. } if text.ends_with(LIST_SHOWS_IT) => {
                    self.open_then_fetch(folder, read_only, uids).await
                }
                e => Err(e),
            };
        }
        let state = flight.opened.finish(folder)?;
        self.mark_selected(folder, read_only, state.exists);
        if !fetch_done.is_ok() {
            // Stalwart checks each command of a flight against the state
            // before the first one ran, so a FETCH behind the SELECT finds
            // nothing selected ("BAD No mailbox is selected."): ask again,
            // now that the folder is open.
            tracing::debug!(folder, answer = ?fetch_done, "the FETCH behind the open failed: sent again alone");
            return Ok((state, self.fetch_headers_impl(uids).await?));
        }
        let exists = state.exists.min(self.conn.mailbox.exists.unwrap_or(0));
        if uids.end.is_none() && exists > 0 && flight.answered == 0 {
            return Ok((state, self.fetch_headers_impl(uids).await?));
        }
        let headers = headers_of(flight.got)?;
        if let Some(sel) = self.selected.as_mut() {
            sel.sizes.extend(headers.iter().map(|h| (h.uid, h.size)));
            sel.bodies = whole_bodies(flight.early, &sel.sizes);
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

/// What the flight of [`ImapSession::open_and_fetch_headers_impl`]
/// gathers as its answers come.
struct HeaderFlight {
    uids: UidRange,
    prefetch: Option<UidRange>,
    /// A folder to create (and unsubscribe) in the flight, after the
    /// prefetch.
    create: Option<String>,
    /// The listing sent last in the flight, if any, and what it listed.
    listing: Option<Command<'static>>,
    listed: Vec<FolderInfo>,
    opened: Opened,
    got: BTreeMap<Uid, Partial>,
    early: BTreeMap<Uid, Partial>,
    /// How many header FETCH answers came.
    answered: usize,
}

impl HeaderFlight {
    fn new(uids: UidRange, prefetch: Option<UidRange>, listing: Option<Command<'static>>) -> Self {
        HeaderFlight {
            uids,
            prefetch,
            create: None,
            listing,
            listed: Vec::new(),
            opened: Opened::default(),
            got: BTreeMap::new(),
            early: BTreeMap::new(),
            answered: 0,
        }
    }

    /// What follows the `SELECT`/`EXAMINE`: the header `FETCH`, then the
    /// prefetch, the `CREATE` and `UNSUBSCRIBE`, and the listing, if any.
    fn commands_after_open(&self) -> Vec<Command<'static>> {
        let mut cmds = vec![ImapSession::header_fetch_command(self.uids)];
        cmds.extend(self.prefetch.map(prefetch_command));
        if let Some(folder) = &self.create {
            cmds.push(Command::new("CREATE").mailbox(folder));
            cmds.push(Command::new("UNSUBSCRIBE").mailbox(folder));
        }
        cmds.extend(self.listing.clone());
        cmds
    }

    /// Whether the flight's `CREATE` (after the open, the header fetch and
    /// the prefetch) succeeded.
    fn created(&self, dones: &[Done]) -> bool {
        let at = 2 + usize::from(self.prefetch.is_some());
        self.create.is_some() && dones.get(at).is_some_and(Done::is_ok)
    }

    /// The folders the listing showed, if it was sent and succeeded (its
    /// answer is the flight's last).
    fn listed(&mut self, dones: &[Done]) -> Option<Vec<FolderInfo>> {
        self.listing.as_ref()?;
        let ok = dones.last().is_some_and(Done::is_ok);
        ok.then(|| std::mem::take(&mut self.listed))
    }

    fn limits(&self) -> Limits {
        if self.prefetch.is_some() {
            Limits::headers_and_prefetch()
        } else {
            Limits::headers()
        }
    }

    /// Takes `r`, an untagged answer while command `i` is the first not
    /// answered.
    fn take(&mut self, i: usize, r: &Response<'_>) {
        if i == 0 {
            self.opened.take(r);
        }
        if self.listing.is_some() {
            if let Some(folder) = crate::listing::folder_of(r) {
                self.listed.push(folder);
                return;
            }
        }
        // Dovecot runs pipelined FETCHes side by side: their data is told
        // apart by what it carries, not by order.
        let (uids, prefetch) = (self.uids, self.prefetch);
        if carries_body(r) {
            collect_fetch(
                r,
                &|u| prefetch.is_some_and(|p| p.contains(u)),
                &mut self.early,
            );
        } else if collect_fetch(r, &|u| uids.contains(u), &mut self.got) {
            self.answered += 1;
        }
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

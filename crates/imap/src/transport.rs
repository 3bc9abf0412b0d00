//! The interface the protocol driver talks to: one logged-in IMAP session.
//!
//! [`crate::ImapSession`] implements it over the network; a simulated
//! in-memory server can implement it for tests. All futures are `Send`.
//!
//! Cancellation contract (for every implementation): dropping any returned
//! future must leave the session either usable or reporting
//! [`ImapError::is_connection_lost`] on its next call — never silently
//! desynchronised.

use std::future::Future;
use std::time::Duration;

use crate::error::ImapError;
use crate::types::{
    Capabilities, CheckedAppend, CreateOutcome, FetchedHeader, FetchedMessage, FolderInfo,
    FolderStatuses, IdleOutcome, MailboxState, MailboxStatus, Namespace, Uid, UidRange,
};

/// One logged-in IMAP session, as the protocol driver uses it.
///
/// Folder names are Unicode strings on this side; an implementation that
/// speaks the wire protocol converts them to modified UTF-7 (RFC 3501
/// §5.1.3) and back ([`crate::mutf7`]), so a namespace prefix with
/// non-ASCII characters works. Operations on messages act on the
/// folder selected last with [`Transport::select`] (or read-only with
/// [`Transport::examine`]).
pub trait Transport: Send {
    /// The server's capabilities (as of login).
    fn capabilities(&self) -> &Capabilities;

    /// When this session's login sent before the greeting failed and it
    /// logged in the usual way instead: the capabilities the server
    /// advertised before login, to keep as the next
    /// [`crate::ImapConfig::login_hint`] (see
    /// [`crate::ImapSession::early_login`]). `None` otherwise, and for
    /// transports without such logins (the default).
    fn early_login_fell_back(&self) -> Option<&[String]> {
        None
    }

    /// Whether commands this session sent behind its login, before the
    /// login's answer, were lost, so that it logged in again and sent them
    /// after the answer ([`crate::EarlyLogin::FlightLost`]): the next
    /// connection should get no [`crate::ImapConfig::caps_hint`]. `false`
    /// for transports without such logins (the default).
    fn commands_behind_login_lost(&self) -> bool {
        false
    }

    /// A hint for the next [`Self::open_and_fetch_headers`]: also list
    /// every folder of the account in that flight. A session then tells a
    /// missing folder from the listing instead of asking `LIST` once more,
    /// and answers the next [`Self::special_use_folders`] from it (once).
    /// For a command that opens a folder which may not exist yet and then
    /// needs the special-use folders (`init`). The default does nothing:
    /// the results are the same without it.
    fn list_with_next_open(&mut self) {}

    /// A hint for the next [`Self::open_and_fetch_headers`]: also send
    /// `CREATE` and `UNSUBSCRIBE` of `folder` in that flight (whatever the
    /// open answers). If that `CREATE` succeeded, the next
    /// [`Self::create_unsubscribed`] or [`Self::create_unsubscribed_all`]
    /// of `folder` answers [`CreateOutcome::Created`] without asking the
    /// server again; otherwise they run as usual. For a folder the caller
    /// will create anyway (`init`: the device's inbox). The default does
    /// nothing: the results are the same without it.
    fn create_with_next_open(&mut self, folder: &str) {
        let _ = folder;
    }

    /// The personal namespace: from `NAMESPACE`, or without it prefix `""`
    /// and the delimiter from `LIST "" ""`.
    fn namespace(&mut self) -> impl Future<Output = Result<Namespace, ImapError>> + Send;

    /// `LIST reference pattern` (`*` and `%` are wildcards).
    fn list(
        &mut self,
        reference: &str,
        pattern: &str,
    ) -> impl Future<Output = Result<Vec<FolderInfo>, ImapError>> + Send;

    /// `LSUB "" pattern`: the names of subscribed folders.
    fn list_subscribed(
        &mut self,
        pattern: &str,
    ) -> impl Future<Output = Result<Vec<String>, ImapError>> + Send;

    /// Creates a folder, idempotently: a `NO` counts as
    /// [`CreateOutcome::AlreadyExisted`] if and only if `LIST` then shows
    /// the folder (servers differ in how they say "exists").
    fn create(
        &mut self,
        folder: &str,
    ) -> impl Future<Output = Result<CreateOutcome, ImapError>> + Send;

    /// Creates a folder as [`Self::create`] does and unsubscribes it (some
    /// servers subscribe what they create; a refused `UNSUBSCRIBE` is
    /// ignored, the folder is usable either way). A session sends both in
    /// one flight; this default runs them in turn.
    fn create_unsubscribed(
        &mut self,
        folder: &str,
    ) -> impl Future<Output = Result<CreateOutcome, ImapError>> + Send {
        async move {
            let created = self.create(folder).await?;
            lost_is_final(self.unsubscribe(folder).await)?.ok();
            Ok(created)
        }
    }

    /// [`Self::create_unsubscribed`] for each folder, in order, each
    /// outcome in its place; the first error ends it. A session sends
    /// every `CREATE` and `UNSUBSCRIBE` in one flight, which a server may
    /// run side by side: give siblings, not a parent and its child (a child
    /// created first may leave the parent unselectable). This default
    /// creates one after the other.
    fn create_unsubscribed_all(
        &mut self,
        folders: &[&str],
    ) -> impl Future<Output = Result<Vec<CreateOutcome>, ImapError>> + Send {
        async move {
            let mut out = Vec::with_capacity(folders.len());
            for folder in folders {
                out.push(self.create_unsubscribed(folder).await?);
            }
            Ok(out)
        }
    }

    /// Deletes a folder; a missing one gives [`ImapError::NoSuchFolder`].
    fn delete(&mut self, folder: &str) -> impl Future<Output = Result<(), ImapError>> + Send;

    /// `SUBSCRIBE`.
    fn subscribe(&mut self, folder: &str) -> impl Future<Output = Result<(), ImapError>> + Send;

    /// `UNSUBSCRIBE` (unsubscribing an unsubscribed folder is fine).
    fn unsubscribe(&mut self, folder: &str) -> impl Future<Output = Result<(), ImapError>> + Send;

    /// A message this session is about to append (with
    /// [`Self::status_and_append`] or [`Self::append_all`]), perhaps after
    /// other calls: a transport whose append takes two steps may take the
    /// first now, beside those calls (a JMAP session starts the upload).
    /// The append may never come (the caller found it had to build the
    /// message again); nothing is changed on the server that anyone sees.
    /// The default does nothing.
    fn stage_append(&mut self, message: &[u8]) {
        let _ = message;
    }

    /// Appends a message with `flags` (e.g. `["\\Seen"]`). Returns its UID
    /// when the server reports it (`APPENDUID`, only if it advertises
    /// UIDPLUS). A missing
    /// folder (`[TRYCREATE]`) gives [`ImapError::NoSuchFolder`].
    fn append(
        &mut self,
        folder: &str,
        flags: &[&str],
        message: &[u8],
    ) -> impl Future<Output = Result<Option<Uid>, ImapError>> + Send;

    /// Selects a folder read-write; a missing one gives
    /// [`ImapError::NoSuchFolder`].
    fn select(
        &mut self,
        folder: &str,
    ) -> impl Future<Output = Result<MailboxState, ImapError>> + Send;

    /// Selects a folder read-only (`EXAMINE`).
    fn examine(
        &mut self,
        folder: &str,
    ) -> impl Future<Output = Result<MailboxState, ImapError>> + Send;

    /// `STATUS` of a folder without selecting it.
    fn status(
        &mut self,
        folder: &str,
    ) -> impl Future<Output = Result<MailboxStatus, ImapError>> + Send;

    /// Opens `folder` (read-only: `EXAMINE`, else `SELECT`) and returns
    /// its state and the headers of `uids` in it, as [`Self::select`] or
    /// [`Self::examine`] followed by [`Self::fetch_headers`] would. A
    /// session sends both in one flight; this default runs them in turn.
    ///
    /// With `prefetch_from`, a session also asks in that flight for the
    /// bodies of the [`crate::PREFETCH_MESSAGES`] UIDs from there on (the
    /// messages that arrived since the caller last looked, on a server
    /// that numbers new messages in a row), the first
    /// [`crate::PREFETCH_BYTES`] of each: bodies that came whole are
    /// handed out by the next [`Self::fetch_messages`] without asking the
    /// server again. A hint only; the results are the same without it.
    fn open_and_fetch_headers(
        &mut self,
        folder: &str,
        read_only: bool,
        uids: UidRange,
        prefetch_from: Option<Uid>,
    ) -> impl Future<Output = Result<(MailboxState, Vec<FetchedHeader>), ImapError>> + Send {
        let _ = prefetch_from;
        async move {
            let state = if read_only {
                self.examine(folder).await?
            } else {
                self.select(folder).await?
            };
            Ok((state, self.fetch_headers(uids).await?))
        }
    }

    /// For each `(folder, message)`, in order: the folder's `STATUS`, then
    /// the message appended to it, whatever the status said. A session
    /// sends them all in one flight (with `LITERAL+`); this default runs
    /// them in turn. The caller checks the statuses afterwards and undoes
    /// appends it should not have made. The outer error is a lost
    /// connection or an invalid name.
    fn status_and_append(
        &mut self,
        items: &[(&str, &[u8])],
    ) -> impl Future<Output = Result<Vec<CheckedAppend>, ImapError>> + Send {
        async move {
            let mut out = Vec::with_capacity(items.len());
            for (folder, message) in items {
                let status = lost_is_final(self.status(folder).await)?;
                let appended = lost_is_final(self.append(folder, &[], message).await)?;
                out.push(CheckedAppend { status, appended });
            }
            Ok(out)
        }
    }

    /// Appends `messages` to `folder` in this order and returns their UIDs
    /// as [`Self::append`] does. A session sends every `APPEND` in one
    /// flight (with `LITERAL+`); this default appends one after the other.
    /// The first refusal is the error: the messages before it are in the
    /// folder, and with one flight later ones may be too.
    fn append_all(
        &mut self,
        folder: &str,
        messages: &[&[u8]],
    ) -> impl Future<Output = Result<Vec<Option<Uid>>, ImapError>> + Send {
        append_one_by_one(self, folder, messages)
    }

    /// The selectable folders `LIST "" pattern` shows, each with its
    /// `STATUS` (its own result). A session with `LIST-STATUS` (RFC 5819)
    /// asks both in one command; this default lists, then asks every
    /// STATUS in one [`Self::status_many`].
    fn list_status(
        &mut self,
        pattern: &str,
    ) -> impl Future<Output = Result<FolderStatuses, ImapError>> + Send {
        list_then_status(self, pattern)
    }

    /// `STATUS` of several folders, in order: each its own result, the
    /// outer error only for a lost connection or an invalid name. A
    /// session sends them in one flight; this default asks one by one.
    fn status_many(
        &mut self,
        folders: &[&str],
    ) -> impl Future<Output = Result<Vec<Result<MailboxStatus, ImapError>>, ImapError>> + Send {
        async move {
            let mut out = Vec::with_capacity(folders.len());
            for f in folders {
                out.push(lost_is_final(self.status(f).await)?);
            }
            Ok(out)
        }
    }

    /// UID, size and header of the messages of the selected folder in
    /// `uids`, sorted by UID. Only UIDs inside the range are returned (IMAP
    /// returns the last message for `n:*` even when its UID is below `n`).
    fn fetch_headers(
        &mut self,
        uids: UidRange,
    ) -> impl Future<Output = Result<Vec<FetchedHeader>, ImapError>> + Send;

    /// The messages with these UIDs, sorted by UID: sizes first, then only
    /// those of at most `max_size` bytes are downloaded; bigger ones come
    /// back with `body: None`. UIDs that do not exist are left out.
    fn fetch_messages(
        &mut self,
        uids: &[Uid],
        max_size: u32,
    ) -> impl Future<Output = Result<Vec<FetchedMessage>, ImapError>> + Send;

    /// `UID SEARCH HEADER name value` in the selected folder, sorted. Like
    /// IMAP's search, this is a case-insensitive *substring* match: check
    /// the header of what you fetch.
    fn search_header(
        &mut self,
        name: &str,
        value: &str,
    ) -> impl Future<Output = Result<Vec<Uid>, ImapError>> + Send;

    /// Removes exactly these messages from the selected folder:
    /// `UID STORE +FLAGS.SILENT (\Deleted)`, then `UID EXPUNGE` with
    /// UIDPLUS. Without UIDPLUS a plain `EXPUNGE` is used, which also
    /// removes any other message already flagged `\Deleted` (acceptable in
    /// SMA folders, where `\Deleted` means gone).
    fn delete_messages(
        &mut self,
        uids: &[Uid],
    ) -> impl Future<Output = Result<(), ImapError>> + Send;

    /// Moves exactly these messages of the selected folder to `dest`:
    /// `UID MOVE` where MOVE is advertised, else `UID COPY` followed by the
    /// removal of [`Transport::delete_messages`]. Returns the UIDs of the
    /// copies in `dest` when the server reported all of them (`COPYUID`,
    /// with UIDPLUS), else `None` (then find them by `Message-ID`). A
    /// missing `dest` gives [`ImapError::NoSuchFolder`]; UIDs that do not
    /// exist are skipped.
    fn move_messages(
        &mut self,
        uids: &[Uid],
        dest: &str,
    ) -> impl Future<Output = Result<Option<Vec<Uid>>, ImapError>> + Send;

    /// The folders with a special-use attribute (RFC 6154: `\All`,
    /// `\Trash`, ...; see [`FolderInfo::special_use`]). The default
    /// filters `LIST "" "*"`; a server that only reports the attributes
    /// when asked overrides it.
    fn special_use_folders(
        &mut self,
    ) -> impl Future<Output = Result<Vec<FolderInfo>, ImapError>> + Send
    where
        Self: Sized,
    {
        async move {
            let mut all = self.list("", "*").await?;
            all.retain(|f| f.special_use().is_some());
            Ok(all)
        }
    }

    /// Waits until the server reports a change to the selected folder
    /// ([`IdleOutcome::Changed`]) or `timeout` passes
    /// ([`IdleOutcome::TimedOut`]). A change seen in the responses to
    /// earlier commands (a new message announced during a fetch, say) makes
    /// it return `Changed` at once, so nothing slips between a fetch and the
    /// next wait; the caller's own APPEND into the selected folder counts
    /// too. Dropping the future is allowed (see the module documentation).
    fn idle(
        &mut self,
        timeout: Duration,
    ) -> impl Future<Output = Result<IdleOutcome, ImapError>> + Send;

    /// [`Transport::idle`] that also ends with [`IdleOutcome::Interrupted`]
    /// when `cancel` completes (e.g. a `tokio::sync::Notify` or a shutdown
    /// signal), leaving the session usable.
    fn idle_until<C>(
        &mut self,
        timeout: Duration,
        cancel: C,
    ) -> impl Future<Output = Result<IdleOutcome, ImapError>> + Send
    where
        C: Future<Output = ()> + Send,
        Self: Sized,
    {
        async move {
            tokio::pin!(cancel);
            tokio::select! {
                biased;
                r = self.idle(timeout) => r,
                _ = &mut cancel => Ok(IdleOutcome::Interrupted),
            }
        }
    }

    /// `NOOP`: keeps the connection alive and collects pending updates.
    fn noop(&mut self) -> impl Future<Output = Result<(), ImapError>> + Send;

    /// `LOGOUT` and close. Never fails because the connection is already
    /// gone.
    fn logout(self) -> impl Future<Output = Result<(), ImapError>> + Send
    where
        Self: Sized;

    /// Replaces a lost session with a new one, logged in the same way (no
    /// folder selected). One attempt: the caller paces retries. A transport
    /// that cannot reconnect keeps the default, which says so.
    fn reconnect(&mut self) -> impl Future<Output = Result<(), ImapError>> + Send {
        async {
            Err(ImapError::ConnectionLost(
                "this transport cannot reconnect".into(),
            ))
        }
    }
}

/// `Err` for a lost connection (nothing after it can run), otherwise the
/// result itself, error or not.
pub(crate) fn lost_is_final<T>(r: Result<T, ImapError>) -> Result<Result<T, ImapError>, ImapError> {
    match r {
        Err(e) if e.is_connection_lost() => Err(e),
        other => Ok(other),
    }
}

/// `LIST "" pattern`, then every selectable folder's `STATUS` in one
/// [`Transport::status_many`] (servers without `LIST-STATUS`).
pub(crate) async fn list_then_status<T: Transport + ?Sized>(
    t: &mut T,
    pattern: &str,
) -> Result<FolderStatuses, ImapError> {
    let names: Vec<String> = t
        .list("", pattern)
        .await?
        .into_iter()
        .filter(|f| f.is_selectable())
        .map(|f| f.name)
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let statuses = t.status_many(&refs).await?;
    Ok(names.into_iter().zip(statuses).collect())
}

/// Appends `messages` to `folder` one [`Transport::append`] after the
/// other, stopping at the first refusal.
pub(crate) async fn append_one_by_one<T: Transport + ?Sized>(
    t: &mut T,
    folder: &str,
    messages: &[&[u8]],
) -> Result<Vec<Option<Uid>>, ImapError> {
    let mut out = Vec::with_capacity(messages.len());
    for message in messages {
        out.push(t.append(folder, &[], message).await?);
    }
    Ok(out)
}

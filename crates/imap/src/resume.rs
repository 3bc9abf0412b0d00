//! [`Resuming`]: a transport that survives dropped connections for the
//! short exchanges that must not start over (`pair`, `join`), where the
//! other side is waiting and the pairing code allows one attempt.
//!
//! When an operation fails because the connection was lost, it reconnects
//! (with backoff, a bounded number of times in a row), selects again the
//! folder that was selected, and runs the operation once more. A server
//! that is not back yet (refused connections, logins answered
//! `NO [UNAVAILABLE]`, a login sent before the greeting that finds the
//! server gone) counts as one more failed reconnect, not as the end. UIDs stay
//! meaningful only while the folder's UIDVALIDITY does: if it changed
//! across the reconnect, the original error is returned instead of running
//! an operation on UIDs that may now name other messages.
//!
//! An IDLE cut short is not repeated: it reports a change, so the caller
//! reads the folder again on the new session. Repeating an operation whose
//! answer was lost is safe for what pairing does: reads and deletions are
//! idempotent, and an `APPEND` that had landed leaves a duplicate the
//! receiver treats like the first copy.

use std::future::Future;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::error::ImapError;
use crate::transport::Transport;
use crate::types::{
    Capabilities, CreateOutcome, FetchedHeader, FetchedMessage, FolderInfo, IdleOutcome,
    MailboxState, MailboxStatus, Namespace, Uid, UidRange,
};

/// Reconnects without an operation succeeding in between before giving
/// up (with the backoff below, about 30 s: a server restart, a network
/// change; a server that drops every session at once cannot keep it busy
/// for longer).
pub const MAX_RECONNECTS: u32 = 6;

/// The folder selected last, to select again after a reconnect.
#[derive(Clone, Debug)]
struct Selection {
    folder: String,
    read_only: bool,
    uid_validity: u32,
}

/// A transport (borrowed) that reconnects and retries after a lost
/// connection; see the module documentation.
#[derive(Debug)]
pub struct Resuming<'a, T: Transport> {
    inner: &'a mut T,
    selected: Option<Selection>,
    backoff: Backoff,
    reconnects: u32,
}

impl<'a, T: Transport> Resuming<'a, T> {
    /// Wraps `inner`, with backoff from 0.5 s doubling to 8 s.
    pub fn new(inner: &'a mut T) -> Self {
        Resuming {
            inner,
            selected: None,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(8)),
            reconnects: 0,
        }
    }

    /// How many times it reconnected so far.
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }

    /// After `err`: `Ok` once a new session is up with the same folder
    /// selected (same UIDVALIDITY), so the operation may run again;
    /// otherwise the error to report.
    async fn recover(&mut self, err: ImapError) -> Result<(), ImapError> {
        if !err.needs_reconnect() {
            return Err(err);
        }
        loop {
            if self.backoff.attempts() >= MAX_RECONNECTS {
                return Err(err);
            }
            tokio::time::sleep(self.backoff.next_delay()).await;
            tracing::info!(error = %err, "connection lost; reconnecting");
            match self.inner.reconnect().await {
                Ok(()) => {}
                Err(e) if e.is_transient() => continue,
                Err(e) => return Err(e),
            }
            self.reconnects += 1;
            let Some(sel) = self.selected.clone() else {
                return Ok(());
            };
            let state = if sel.read_only {
                self.inner.examine(&sel.folder).await
            } else {
                self.inner.select(&sel.folder).await
            };
            match state {
                Ok(s) if s.uid_validity == sel.uid_validity => return Ok(()),
                Ok(_) => return Err(err),
                // Lost again, or the server not ready yet (`NO
                // [UNAVAILABLE]` right after a restart): back off and retry.
                Err(e) if e.is_transient() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Selects (or examines) and remembers the folder.
    async fn open(&mut self, folder: &str, read_only: bool) -> Result<MailboxState, ImapError> {
        loop {
            let r = if read_only {
                self.inner.examine(folder).await
            } else {
                self.inner.select(folder).await
            };
            match r {
                Ok(state) => {
                    self.backoff.reset();
                    self.selected = Some(Selection {
                        folder: folder.to_owned(),
                        read_only,
                        uid_validity: state.uid_validity,
                    });
                    return Ok(state);
                }
                Err(e) => {
                    // A failed SELECT leaves nothing selected.
                    self.selected = None;
                    self.recover(e).await?;
                }
            }
        }
    }
}

/// Runs `$call` on the inner transport; after a lost connection, recovers
/// and runs it again.
macro_rules! retried {
    ($self:ident, |$t:ident| $call:expr) => {
        loop {
            let $t = &mut *$self.inner;
            match $call.await {
                Err(e) => $self.recover(e).await?,
                ok => {
                    $self.backoff.reset();
                    return ok;
                }
            }
        }
    };
}

impl<T: Transport> Transport for Resuming<'_, T> {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn early_login_fell_back(&self) -> Option<&[String]> {
        self.inner.early_login_fell_back()
    }

    fn commands_behind_login_lost(&self) -> bool {
        self.inner.commands_behind_login_lost()
    }

    fn list_with_next_open(&mut self) {
        self.inner.list_with_next_open();
    }

    fn create_with_next_open(&mut self, folder: &str) {
        self.inner.create_with_next_open(folder);
    }

    async fn namespace(&mut self) -> Result<Namespace, ImapError> {
        retried!(self, |t| t.namespace())
    }

    async fn list(&mut self, reference: &str, pattern: &str) -> Result<Vec<FolderInfo>, ImapError> {
        retried!(self, |t| t.list(reference, pattern))
    }

    async fn list_subscribed(&mut self, pattern: &str) -> Result<Vec<String>, ImapError> {
        retried!(self, |t| t.list_subscribed(pattern))
    }

    async fn create(&mut self, folder: &str) -> Result<CreateOutcome, ImapError> {
        retried!(self, |t| t.create(folder))
    }

    async fn delete(&mut self, folder: &str) -> Result<(), ImapError> {
        retried!(self, |t| t.delete(folder))
    }

    async fn subscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        retried!(self, |t| t.subscribe(folder))
    }

    async fn unsubscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        retried!(self, |t| t.unsubscribe(folder))
    }

    async fn append(
        &mut self,
        folder: &str,
        flags: &[&str],
        message: &[u8],
    ) -> Result<Option<Uid>, ImapError> {
        retried!(self, |t| t.append(folder, flags, message))
    }

    async fn append_all(
        &mut self,
        folder: &str,
        messages: &[&[u8]],
    ) -> Result<Vec<Option<Uid>>, ImapError> {
        retried!(self, |t| t.append_all(folder, messages))
    }

    async fn select(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        self.open(folder, false).await
    }

    async fn examine(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        self.open(folder, true).await
    }

    async fn status(&mut self, folder: &str) -> Result<MailboxStatus, ImapError> {
        retried!(self, |t| t.status(folder))
    }

    async fn open_and_fetch_headers(
        &mut self,
        folder: &str,
        read_only: bool,
        uids: UidRange,
        prefetch_from: Option<Uid>,
    ) -> Result<(MailboxState, Vec<FetchedHeader>), ImapError> {
        loop {
            let r = self
                .inner
                .open_and_fetch_headers(folder, read_only, uids, prefetch_from)
                .await;
            match r {
                Ok((state, headers)) => {
                    self.backoff.reset();
                    self.selected = Some(Selection {
                        folder: folder.to_owned(),
                        read_only,
                        uid_validity: state.uid_validity,
                    });
                    return Ok((state, headers));
                }
                Err(e) => {
                    // Whether the SELECT went through is unknown: nothing
                    // is taken as selected, and the whole step runs again.
                    self.selected = None;
                    self.recover(e).await?;
                }
            }
        }
    }

    async fn status_many(
        &mut self,
        folders: &[&str],
    ) -> Result<Vec<Result<MailboxStatus, ImapError>>, ImapError> {
        retried!(self, |t| t.status_many(folders))
    }

    async fn fetch_headers(&mut self, uids: UidRange) -> Result<Vec<FetchedHeader>, ImapError> {
        retried!(self, |t| t.fetch_headers(uids))
    }

    async fn fetch_messages(
        &mut self,
        uids: &[Uid],
        max_size: u32,
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        retried!(self, |t| t.fetch_messages(uids, max_size))
    }

    async fn search_header(&mut self, name: &str, value: &str) -> Result<Vec<Uid>, ImapError> {
        retried!(self, |t| t.search_header(name, value))
    }

    async fn delete_messages(&mut self, uids: &[Uid]) -> Result<(), ImapError> {
        retried!(self, |t| t.delete_messages(uids))
    }

    async fn move_messages(
        &mut self,
        uids: &[Uid],
        dest: &str,
    ) -> Result<Option<Vec<Uid>>, ImapError> {
        retried!(self, |t| t.move_messages(uids, dest))
    }

    async fn idle(&mut self, timeout: Duration) -> Result<IdleOutcome, ImapError> {
        match self.inner.idle(timeout).await {
            Ok(outcome) => {
                self.backoff.reset();
                Ok(outcome)
            }
            // Not waited on again: what was awaited may have arrived while
            // the connection was down, so the caller reads the folder first.
            Err(e) => {
                self.recover(e).await?;
                Ok(IdleOutcome::Changed)
            }
        }
    }

    async fn noop(&mut self) -> Result<(), ImapError> {
        retried!(self, |t| t.noop())
    }

    async fn logout(self) -> Result<(), ImapError> {
        // The session is borrowed: its owner logs out.
        Ok(())
    }

    fn reconnect(&mut self) -> impl Future<Output = Result<(), ImapError>> + Send {
        self.inner.reconnect()
    }
}

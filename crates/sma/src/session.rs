//! The connection a device works over: an IMAP session or a JMAP one.
//!
//! A device made with `init --jmap URL` talks JMAP (`sma-jmap`), every
//! other one IMAP (`sma-imap`). Both implement [`Transport`], the seam the
//! driver talks through; [`Session`] is either, delegating every call, so
//! that commands, `watch` and the JSON-RPC server work on both without
//! knowing which. [`SessionConfig`] is how to open one (and open it again
//! after a lost connection).

use std::sync::Arc;
use std::time::Duration;

use sma_imap::{
    Backoff, Capabilities, CheckedAppend, CreateOutcome, FetchedHeader, FetchedMessage, FolderInfo,
    FolderStatuses, IdleOutcome, ImapConfig, ImapError, ImapSession, MailboxState, MailboxStatus,
    Namespace, TokenSource, Transport, Uid, UidRange,
};
use sma_jmap::{JmapAuth, JmapConfig, JmapSession};

/// How to open a [`Session`].
#[derive(Clone, Debug)]
pub enum SessionConfig {
    /// An IMAP server (with the stored login hint).
    Imap(ImapConfig),
    /// A JMAP session resource.
    Jmap {
        /// Where and whom; its `auth` is Basic with the password unless a
        /// token source is given.
        config: JmapConfig,
        /// OAuth 2.0: asked for a Bearer token at every connect.
        token: Option<Arc<dyn TokenSource>>,
    },
}

impl SessionConfig {
    /// Opens a session: an IMAP login, or JMAP's session resource read
    /// (with a fresh access token when login is by OAuth 2.0).
    pub async fn connect(&self) -> Result<Session, ImapError> {
        match self {
            SessionConfig::Imap(c) => Ok(Session::Imap(ImapSession::connect(c).await?)),
            SessionConfig::Jmap { config, token } => {
                let mut config = config.clone();
                if let Some(source) = token {
                    let token = source
                        .token()
                        .await
                        .map_err(|reason| ImapError::TokenUnavailable { reason })?;
                    config.auth = JmapAuth::Bearer(token);
                }
                Ok(Session::Jmap(JmapSession::connect(&config).await?))
            }
        }
    }

    /// [`SessionConfig::connect`], retrying connection-level failures
    /// ([`ImapError::is_retryable`]) after `backoff`'s delays, at most
    /// `max_attempts` attempts in all, as [`sma_imap::connect_with_retry`]
    /// does for IMAP; `on_retry(attempt, error, delay)` is called before
    /// each wait.
    pub async fn connect_with_retry(
        &self,
        backoff: &mut Backoff,
        max_attempts: u32,
        mut on_retry: impl FnMut(u32, &ImapError, Duration),
    ) -> Result<Session, ImapError> {
        let max_attempts = max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.connect().await {
                Ok(session) => {
                    backoff.reset();
                    return Ok(session);
                }
                Err(e) if e.is_retryable() && attempt < max_attempts => {
                    let delay = backoff.next_delay();
                    tracing::info!(attempt, error = %e, ?delay, "connect failed; retrying");
                    on_retry(attempt, &e, delay);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether this opens a JMAP session.
    pub fn is_jmap(&self) -> bool {
        matches!(self, SessionConfig::Jmap { .. })
    }
}

/// A logged-in session over IMAP or JMAP; a [`Transport`] either way.
// A process holds one or two sessions, moved rarely: boxing either side
// would buy nothing but an indirection on every call.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Session {
    /// IMAP (RFC 3501/9051).
    Imap(ImapSession),
    /// JMAP (RFC 8620/8621).
    Jmap(JmapSession),
}

impl Session {
    /// The IMAP session, if this is one (login hints, IMAP-only checks).
    pub fn as_imap(&self) -> Option<&ImapSession> {
        match self {
            Session::Imap(s) => Some(s),
            Session::Jmap(_) => None,
        }
    }

    /// Whether this is an IMAP session.
    pub fn is_imap(&self) -> bool {
        matches!(self, Session::Imap(_))
    }

    /// The IMAP session, mutably, if this is one.
    pub fn as_imap_mut(&mut self) -> Option<&mut ImapSession> {
        match self {
            Session::Imap(s) => Some(s),
            Session::Jmap(_) => None,
        }
    }

    /// The JMAP session, if this is one.
    pub fn as_jmap_mut(&mut self) -> Option<&mut JmapSession> {
        match self {
            Session::Jmap(s) => Some(s),
            Session::Imap(_) => None,
        }
    }

    /// The protocol's name as shown to users: `IMAP` or `JMAP`.
    pub fn protocol(&self) -> &'static str {
        match self {
            Session::Imap(_) => "IMAP",
            Session::Jmap(_) => "JMAP",
        }
    }

    /// Whether an IMAP connection is known to be gone (a JMAP session has
    /// no connection to lose between requests: never).
    pub fn is_lost(&self) -> bool {
        match self {
            Session::Imap(s) => s.is_lost(),
            Session::Jmap(_) => false,
        }
    }
}

/// Runs `$e` with `$t` bound to whichever session `$s` holds.
macro_rules! each {
    ($s:expr, $t:ident => $e:expr) => {
        match $s {
            Session::Imap($t) => $e,
            Session::Jmap($t) => $e,
        }
    };
}

impl Transport for Session {
    fn capabilities(&self) -> &Capabilities {
        each!(self, t => t.capabilities())
    }

    fn early_login_fell_back(&self) -> Option<&[String]> {
        each!(self, t => t.early_login_fell_back())
    }

    fn commands_behind_login_lost(&self) -> bool {
        each!(self, t => t.commands_behind_login_lost())
    }

    fn list_with_next_open(&mut self) {
        each!(self, t => t.list_with_next_open())
    }

    fn create_with_next_open(&mut self, folder: &str) {
        each!(self, t => t.create_with_next_open(folder))
    }

    async fn namespace(&mut self) -> Result<Namespace, ImapError> {
        each!(self, t => t.namespace().await)
    }

    async fn list(&mut self, reference: &str, pattern: &str) -> Result<Vec<FolderInfo>, ImapError> {
        each!(self, t => t.list(reference, pattern).await)
    }

    async fn list_subscribed(&mut self, pattern: &str) -> Result<Vec<String>, ImapError> {
        each!(self, t => t.list_subscribed(pattern).await)
    }

    async fn create(&mut self, folder: &str) -> Result<CreateOutcome, ImapError> {
        each!(self, t => t.create(folder).await)
    }

    async fn create_unsubscribed(&mut self, folder: &str) -> Result<CreateOutcome, ImapError> {
        each!(self, t => t.create_unsubscribed(folder).await)
    }

    async fn create_unsubscribed_all(
        &mut self,
        folders: &[&str],
    ) -> Result<Vec<CreateOutcome>, ImapError> {
        each!(self, t => t.create_unsubscribed_all(folders).await)
    }

    async fn delete(&mut self, folder: &str) -> Result<(), ImapError> {
        each!(self, t => t.delete(folder).await)
    }

    async fn subscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        each!(self, t => t.subscribe(folder).await)
    }

    async fn unsubscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        each!(self, t => t.unsubscribe(folder).await)
    }

    async fn append(
        &mut self,
        folder: &str,
        flags: &[&str],
        message: &[u8],
    ) -> Result<Option<Uid>, ImapError> {
        each!(self, t => t.append(folder, flags, message).await)
    }

    async fn select(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        each!(self, t => t.select(folder).await)
    }

    async fn examine(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        each!(self, t => t.examine(folder).await)
    }

    async fn status(&mut self, folder: &str) -> Result<MailboxStatus, ImapError> {
        each!(self, t => t.status(folder).await)
    }

    async fn open_and_fetch_headers(
        &mut self,
        folder: &str,
        read_only: bool,
        uids: UidRange,
        prefetch_from: Option<Uid>,
    ) -> Result<(MailboxState, Vec<FetchedHeader>), ImapError> {
        each!(self, t => t.open_and_fetch_headers(folder, read_only, uids, prefetch_from).await)
    }

    async fn status_and_append(
        &mut self,
        items: &[(&str, &[u8])],
    ) -> Result<Vec<CheckedAppend>, ImapError> {
        each!(self, t => t.status_and_append(items).await)
    }

    fn stage_append(&mut self, message: &[u8]) {
        each!(self, t => t.stage_append(message))
    }

    async fn append_all(
        &mut self,
        folder: &str,
        messages: &[&[u8]],
    ) -> Result<Vec<Option<Uid>>, ImapError> {
        each!(self, t => t.append_all(folder, messages).await)
    }

    async fn list_status(&mut self, pattern: &str) -> Result<FolderStatuses, ImapError> {
        each!(self, t => t.list_status(pattern).await)
    }

    async fn status_many(
        &mut self,
        folders: &[&str],
    ) -> Result<Vec<Result<MailboxStatus, ImapError>>, ImapError> {
        each!(self, t => t.status_many(folders).await)
    }

    async fn fetch_headers(&mut self, uids: UidRange) -> Result<Vec<FetchedHeader>, ImapError> {
        each!(self, t => t.fetch_headers(uids).await)
    }

    async fn fetch_messages(
        &mut self,
        uids: &[Uid],
        max_size: u32,
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        each!(self, t => t.fetch_messages(uids, max_size).await)
    }

    async fn search_header(&mut self, name: &str, value: &str) -> Result<Vec<Uid>, ImapError> {
        each!(self, t => t.search_header(name, value).await)
    }

    async fn delete_messages(&mut self, uids: &[Uid]) -> Result<(), ImapError> {
        each!(self, t => t.delete_messages(uids).await)
    }

    async fn move_messages(
        &mut self,
        uids: &[Uid],
        dest: &str,
    ) -> Result<Option<Vec<Uid>>, ImapError> {
        each!(self, t => t.move_messages(uids, dest).await)
    }

    async fn special_use_folders(&mut self) -> Result<Vec<FolderInfo>, ImapError>
    where
        Self: Sized,
    {
        each!(self, t => t.special_use_folders().await)
    }

    async fn idle(&mut self, timeout: Duration) -> Result<IdleOutcome, ImapError> {
        each!(self, t => t.idle(timeout).await)
    }

    async fn idle_until<C>(
        &mut self,
        timeout: Duration,
        cancel: C,
    ) -> Result<IdleOutcome, ImapError>
    where
        C: std::future::Future<Output = ()> + Send,
        Self: Sized,
    {
        each!(self, t => t.idle_until(timeout, cancel).await)
    }

    async fn noop(&mut self) -> Result<(), ImapError> {
        each!(self, t => t.noop().await)
    }

    async fn logout(self) -> Result<(), ImapError> {
        each!(self, t => t.logout().await)
    }

    async fn reconnect(&mut self) -> Result<(), ImapError> {
        each!(self, t => t.reconnect().await)
    }
}

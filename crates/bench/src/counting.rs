//! A [`Transport`] wrapper that records what crosses it: every call by
//! name, and the size of every appended message.
//!
//! The product's driver is generic over [`Transport`], so wrapping the real
//! [`ImapSession`] lets the benchmark see the bytes and round trips of the
//! library without touching it.

use std::time::Duration;

use sma_imap::{
    Capabilities, CreateOutcome, FetchedHeader, FetchedMessage, FolderInfo, IdleOutcome, ImapError,
    ImapSession, MailboxState, MailboxStatus, Namespace, Transport, Uid, UidRange,
};

/// One message appended through the wrapper.
#[derive(Clone, Debug)]
pub struct Appended {
    /// Message size in bytes.
    pub size: usize,
}

/// What crossed a [`Counting`] transport.
#[derive(Clone, Debug, Default)]
pub struct IoLog {
    /// Transport calls by name, in order.
    pub calls: Vec<&'static str>,
    /// Messages appended.
    pub appended: Vec<Appended>,
    /// How long each wait for a change ([`Transport::idle`]) took.
    pub waits: Vec<Duration>,
    /// Time spent inside transport calls other than waits, by call name.
    pub busy: std::collections::BTreeMap<&'static str, Duration>,
}

impl IoLog {
    /// Total time spent inside transport calls other than waits.
    pub fn busy_total(&self) -> Duration {
        self.busy.values().sum()
    }
}

/// Records the call and the time it took.
async fn timed<F: std::future::Future>(log: &mut IoLog, name: &'static str, call: F) -> F::Output {
    log.calls.push(name);
    let start = tokio::time::Instant::now();
    let out = call.await;
    *log.busy.entry(name).or_default() += start.elapsed();
    out
}

/// A transport that logs calls and message sizes, then delegates.
pub struct Counting<T> {
    /// The wrapped transport.
    pub inner: T,
    /// What crossed it so far.
    pub log: IoLog,
    /// With `Some(every)`, [`Transport::idle`] re-selects the selected
    /// folder this often and compares UIDNEXT, instead of using IMAP IDLE
    /// (whose notifications Dovecot delays by about half a second). STATUS
    /// would not do: Dovecot answers it for the selected folder from the
    /// session's own, unrefreshed view.
    poll_idle: Option<Duration>,
    /// The folder selected last (read-only?) and its UIDNEXT as last seen.
    selected: Option<(String, bool, Option<u32>)>,
}

impl<T> Counting<T> {
    /// Wraps `inner` with an empty log.
    pub fn new(inner: T) -> Self {
        Counting {
            inner,
            log: IoLog::default(),
            poll_idle: None,
            selected: None,
        }
    }

    /// Wraps `inner`; waiting for changes re-selects every `every` instead
    /// of using IDLE.
    pub fn polling(inner: T, every: Duration) -> Self {
        Counting {
            poll_idle: Some(every),
            ..Self::new(inner)
        }
    }

    /// Returns the log so far and starts a fresh one.
    pub fn take_log(&mut self) -> IoLog {
        std::mem::take(&mut self.log)
    }
}

impl Counting<ImapSession> {
    /// IMAP commands the real session has sent so far.
    pub fn commands_sent(&self) -> u64 {
        self.inner.commands_sent()
    }
}

impl<T: Transport> Transport for Counting<T> {
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
        timed(&mut self.log, "namespace", self.inner.namespace()).await
    }

    async fn list(&mut self, reference: &str, pattern: &str) -> Result<Vec<FolderInfo>, ImapError> {
        timed(&mut self.log, "list", self.inner.list(reference, pattern)).await
    }

    async fn list_subscribed(&mut self, pattern: &str) -> Result<Vec<String>, ImapError> {
        timed(&mut self.log, "lsub", self.inner.list_subscribed(pattern)).await
    }

    async fn create(&mut self, folder: &str) -> Result<CreateOutcome, ImapError> {
        timed(&mut self.log, "create", self.inner.create(folder)).await
    }

    async fn delete(&mut self, folder: &str) -> Result<(), ImapError> {
        timed(&mut self.log, "delete", self.inner.delete(folder)).await
    }

    async fn subscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        timed(&mut self.log, "subscribe", self.inner.subscribe(folder)).await
    }

    async fn unsubscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        timed(&mut self.log, "unsubscribe", self.inner.unsubscribe(folder)).await
    }

    async fn append(
        &mut self,
        folder: &str,
        flags: &[&str],
        message: &[u8],
    ) -> Result<Option<Uid>, ImapError> {
        let uid = timed(
            &mut self.log,
            "append",
            self.inner.append(folder, flags, message),
        )
        .await?;
        self.log.appended.push(Appended {
            size: message.len(),
        });
        Ok(uid)
    }

    async fn select(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        let state = timed(&mut self.log, "select", self.inner.select(folder)).await?;
        self.selected = Some((folder.to_owned(), false, state.uid_next));
        Ok(state)
    }

    async fn examine(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        let state = timed(&mut self.log, "examine", self.inner.examine(folder)).await?;
        self.selected = Some((folder.to_owned(), true, state.uid_next));
        Ok(state)
    }

    async fn status(&mut self, folder: &str) -> Result<MailboxStatus, ImapError> {
        timed(&mut self.log, "status", self.inner.status(folder)).await
    }

    async fn fetch_headers(&mut self, uids: UidRange) -> Result<Vec<FetchedHeader>, ImapError> {
        timed(
            &mut self.log,
            "fetch_headers",
            self.inner.fetch_headers(uids),
        )
        .await
    }

    async fn fetch_messages(
        &mut self,
        uids: &[Uid],
        max_size: u32,
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        timed(
            &mut self.log,
            "fetch_messages",
            self.inner.fetch_messages(uids, max_size),
        )
        .await
    }

    async fn search_header(&mut self, name: &str, value: &str) -> Result<Vec<Uid>, ImapError> {
        timed(
            &mut self.log,
            "search",
            self.inner.search_header(name, value),
        )
        .await
    }

    async fn delete_messages(&mut self, uids: &[Uid]) -> Result<(), ImapError> {
        timed(
            &mut self.log,
            "delete_messages",
            self.inner.delete_messages(uids),
        )
        .await
    }

    async fn move_messages(
        &mut self,
        uids: &[Uid],
        dest: &str,
    ) -> Result<Option<Vec<Uid>>, ImapError> {
        timed(
            &mut self.log,
            "move_messages",
            self.inner.move_messages(uids, dest),
        )
        .await
    }

    async fn special_use_folders(&mut self) -> Result<Vec<FolderInfo>, ImapError> {
        timed(
            &mut self.log,
            "special_use_folders",
            self.inner.special_use_folders(),
        )
        .await
    }

    async fn idle(&mut self, timeout: Duration) -> Result<IdleOutcome, ImapError> {
        self.log.calls.push("idle");
        let start = tokio::time::Instant::now();
        let outcome = self.wait(timeout).await;
        self.log.waits.push(start.elapsed());
        outcome
    }

    async fn noop(&mut self) -> Result<(), ImapError> {
        timed(&mut self.log, "noop", self.inner.noop()).await
    }

    async fn logout(self) -> Result<(), ImapError> {
        self.inner.logout().await
    }

    async fn reconnect(&mut self) -> Result<(), ImapError> {
        self.inner.reconnect().await
    }
}

impl<T: Transport> Counting<T> {
    /// IDLE, or with `poll_idle` polling by re-selecting.
    async fn wait(&mut self, timeout: Duration) -> Result<IdleOutcome, ImapError> {
        let (Some(every), Some((folder, read_only, Some(seen)))) =
            (self.poll_idle, self.selected.clone())
        else {
            return self.inner.idle(timeout).await;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = if read_only {
                self.inner.examine(&folder).await?.uid_next
            } else {
                self.inner.select(&folder).await?.uid_next
            };
            if now.is_some_and(|n| n != seen) {
                self.selected = Some((folder, read_only, now));
                return Ok(IdleOutcome::Changed);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(IdleOutcome::TimedOut);
            }
            tokio::time::sleep(every).await;
        }
    }
}

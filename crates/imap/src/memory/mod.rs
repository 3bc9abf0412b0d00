//! An IMAP server in memory, and a [`Transport`] onto it (feature `memory`).
//!
//! The server ([`Server`]) keeps IMAP's semantics that the protocol relies
//! on — per-folder UIDs and UIDVALIDITY, APPENDUID, EXPUNGE, CREATE and
//! DELETE races, STATUS, header search, change notices for IDLE — with
//! Dovecot's behaviour where servers differ. [`MemoryTransport`] is one
//! logged-in session onto a shared [`MemoryServer`]: fast unit tests of the
//! driver run against it without a real server. The deterministic
//! simulation (`sma-sim`) drives the same server through its own gated
//! transport, injecting faults.

mod archive;
mod message;
pub mod server;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use archive::{Archiving, DEFAULT_CAPABILITIES};
pub use message::Message;
pub use server::{ConnId, Folder, Server, DELIMITER};

use crate::{
    Capabilities, CreateOutcome, FetchedHeader, FetchedMessage, FolderInfo, IdleOutcome, ImapError,
    MailboxState, MailboxStatus, Namespace, Transport, Uid, UidRange,
};

/// A shared in-memory server: clone it to give several sessions (devices)
/// the same mailboxes.
#[derive(Clone, Debug, Default)]
pub struct MemoryServer(Arc<Mutex<Server>>);

impl MemoryServer {
    /// A server holding only `INBOX`.
    pub fn new() -> MemoryServer {
        MemoryServer::default()
    }

    /// Locks the server, to look at it or change it as the provider would
    /// (a poisoned lock is taken over: the panic is reported elsewhere).
    pub fn lock(&self) -> MutexGuard<'_, Server> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new logged-in session.
    pub fn connect(&self) -> MemoryTransport {
        let (conn, caps) = {
            let mut s = self.lock();
            (s.connect(), s.capabilities())
        };
        MemoryTransport {
            server: self.clone(),
            conn,
            caps,
        }
    }
}

/// One logged-in session onto a [`MemoryServer`].
#[derive(Debug)]
pub struct MemoryTransport {
    server: MemoryServer,
    conn: ConnId,
    caps: Capabilities,
}

impl MemoryTransport {
    fn run<R>(
        &mut self,
        f: impl FnOnce(&mut Server, ConnId) -> Result<R, ImapError>,
    ) -> Result<R, ImapError> {
        let mut s = self.server.lock();
        s.check(self.conn)?;
        f(&mut s, self.conn)
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        self.server.lock().disconnect(self.conn);
    }
}

/// How often a waiting IDLE looks for changes.
const IDLE_CHECK: Duration = Duration::from_millis(5);

impl Transport for MemoryTransport {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn stage_append(&mut self, message: &[u8]) {
        self.server.lock().staged.push(Arc::new(message.to_vec()));
    }

    async fn namespace(&mut self) -> Result<Namespace, ImapError> {
        self.run(|_, _| {
            Ok(Namespace {
                prefix: String::new(),
                delimiter: Some(DELIMITER),
            })
        })
    }

    async fn list(&mut self, reference: &str, pattern: &str) -> Result<Vec<FolderInfo>, ImapError> {
        self.run(|s, _| Ok(s.list(reference, pattern)))
    }

    async fn list_subscribed(&mut self, pattern: &str) -> Result<Vec<String>, ImapError> {
        self.run(|s, _| Ok(s.list_subscribed(pattern)))
    }

    async fn create(&mut self, folder: &str) -> Result<CreateOutcome, ImapError> {
        self.run(|s, _| s.create(folder))
    }

    async fn delete(&mut self, folder: &str) -> Result<(), ImapError> {
        self.run(|s, c| s.delete(Some(c), folder))
    }

    async fn subscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        self.run(|s, _| {
            s.set_subscribed(folder, true);
            Ok(())
        })
    }

    async fn unsubscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        self.run(|s, _| {
            s.set_subscribed(folder, false);
            Ok(())
        })
    }

    async fn append(
        &mut self,
        folder: &str,
        _flags: &[&str],
        message: &[u8],
    ) -> Result<Option<Uid>, ImapError> {
        let uidplus = self.caps.uidplus;
        self.run(|s, _| s.append(folder, message).map(|u| uidplus.then_some(u)))
    }

    async fn select(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        self.run(|s, c| s.select(c, folder, false))
    }

    async fn examine(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        self.run(|s, c| s.select(c, folder, true))
    }

    async fn status(&mut self, folder: &str) -> Result<MailboxStatus, ImapError> {
        self.run(|s, _| s.status(folder))
    }

    async fn fetch_headers(&mut self, uids: UidRange) -> Result<Vec<FetchedHeader>, ImapError> {
        self.run(|s, c| s.fetch_headers(c, uids))
    }

    async fn fetch_messages(
        &mut self,
        uids: &[Uid],
        max_size: u32,
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        self.run(|s, c| s.fetch_messages(c, uids, max_size))
    }

    async fn search_header(&mut self, name: &str, value: &str) -> Result<Vec<Uid>, ImapError> {
        self.run(|s, c| s.search_header(c, name, value))
    }

    async fn delete_messages(&mut self, uids: &[Uid]) -> Result<(), ImapError> {
        self.run(|s, c| s.delete_messages(c, uids))
    }

    async fn move_messages(
        &mut self,
        uids: &[Uid],
        dest: &str,
    ) -> Result<Option<Vec<Uid>>, ImapError> {
        let uidplus = self.caps.uidplus;
        self.run(|s, c| s.move_messages(c, uids, dest))
            .map(|copies| uidplus.then_some(copies))
    }

    async fn idle(&mut self, timeout: Duration) -> Result<IdleOutcome, ImapError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.run(|s, c| s.take_changed(c))? {
                return Ok(IdleOutcome::Changed);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(IdleOutcome::TimedOut);
            }
            tokio::time::sleep(IDLE_CHECK.min(deadline - now)).await;
        }
    }

    async fn noop(&mut self) -> Result<(), ImapError> {
        self.run(|_, _| Ok(()))
    }

    async fn logout(self) -> Result<(), ImapError> {
        Ok(())
    }

    async fn reconnect(&mut self) -> Result<(), ImapError> {
        let mut s = self.server.lock();
        s.disconnect(self.conn);
        self.conn = s.connect();
        self.caps = s.capabilities();
        Ok(())
    }
}

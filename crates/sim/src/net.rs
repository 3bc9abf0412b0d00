//! The simulated network: every IMAP command waits at a *gate* until the
//! scheduler lets it through, and the scheduler decides there whether the
//! connection breaks before the command takes effect, after it (the client
//! cannot tell which), or whether an APPEND is duplicated or delivered late.
//!
//! [`SimTransport`] implements [`sma_imap::Transport`] over the in-memory
//! [`Server`], so the real driver code runs unchanged.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use sma_imap::{
    Capabilities, CreateOutcome, FetchedHeader, FetchedMessage, FolderInfo, IdleOutcome, ImapError,
    MailboxState, MailboxStatus, Namespace, Transport, Uid, UidRange,
};

use crate::server::{ConnId, Server, DELIMITER};

/// The IMAP command a gate is holding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// `NAMESPACE`, `LIST`, `LSUB`, `STATUS`, `NOOP`: reads outside a folder.
    Info,
    /// `CREATE`, `SUBSCRIBE`, `UNSUBSCRIBE`.
    Create,
    /// `DELETE` of a folder.
    Delete,
    /// `APPEND`.
    Append,
    /// `SELECT`/`EXAMINE`.
    Select,
    /// `FETCH`, `SEARCH`.
    Read,
    /// `STORE \Deleted` + `EXPUNGE`, `MOVE`.
    Expunge,
    /// `IDLE`.
    Idle,
}

/// What the scheduler decided for a gated command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Run it normally.
    Go,
    /// The connection breaks before the command reaches the server.
    DropBefore,
    /// The command takes effect, then the connection breaks before the
    /// answer arrives.
    DropAfter,
    /// (APPEND) the server stores the message twice.
    Duplicate,
    /// (APPEND) the server accepts the message but shows it only later.
    Delay,
}

/// A command waiting at a gate.
#[derive(Clone, Debug)]
pub struct Waiting {
    /// The actor (device slot) that issued it.
    pub actor: usize,
    /// Its connection.
    pub conn: ConnId,
    /// The command.
    pub cmd: Cmd,
}

/// Gate bookkeeping.
#[derive(Debug, Default)]
pub struct Gates {
    next: u64,
    /// Registered and not yet let through, by ticket.
    pub waiting: BTreeMap<u64, Waiting>,
    granted: BTreeMap<u64, Grant>,
}

/// Extensions the simulated server does without (drawn per seed). The
/// transport then behaves as [`sma_imap::ImapSession`] does on such a
/// server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lacks {
    /// No UIDPLUS: APPEND reports no UID, and a deletion is a `STORE
    /// \Deleted` and a plain `EXPUNGE` (two commands, each of which may be
    /// cut off) that also removes what other sessions flagged.
    pub uidplus: bool,
    /// No IDLE: waiting is polling with `NOOP` every
    /// [`sma_imap::DEFAULT_POLL_INTERVAL`], each poll a command at a gate.
    pub idle: bool,
    /// No MOVE: only the capability changes (the driver moves nothing yet).
    pub move_: bool,
}

/// Server plus gates, behind one lock (never held across an await).
#[derive(Debug, Default)]
pub struct Shared {
    /// The IMAP server.
    pub server: Server,
    /// The gates.
    pub gates: Gates,
    /// What the server lacks; read by each new connection.
    pub lacks: Lacks,
}

/// A handle on the simulated network.
#[derive(Clone, Debug, Default)]
pub struct Net(Arc<Mutex<Shared>>);

impl Net {
    /// A network with a fresh server.
    pub fn new() -> Net {
        Net::default()
    }

    /// Locks the shared state. A poisoned lock (a panic elsewhere) is taken
    /// over: the simulation reports that panic itself.
    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets the command holding `ticket` through with `grant`.
    pub fn grant(&self, ticket: u64, grant: Grant) {
        let mut s = self.lock();
        if s.gates.waiting.remove(&ticket).is_some() {
            s.gates.granted.insert(ticket, grant);
        }
    }

    /// Commands waiting at gates, ascending ticket.
    pub fn waiting(&self) -> Vec<(u64, Waiting)> {
        self.lock()
            .gates
            .waiting
            .iter()
            .map(|(t, w)| (*t, w.clone()))
            .collect()
    }
}

/// A future that completes when the scheduler lets its command through.
struct Gate {
    net: Net,
    actor: usize,
    conn: ConnId,
    cmd: Cmd,
    ticket: Option<u64>,
}

impl Future for Gate {
    type Output = Grant;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Grant> {
        let net = self.net.clone();
        let mut s = net.lock();
        match self.ticket {
            None => {
                let t = s.gates.next;
                s.gates.next += 1;
                s.gates.waiting.insert(
                    t,
                    Waiting {
                        actor: self.actor,
                        conn: self.conn,
                        cmd: self.cmd,
                    },
                );
                self.ticket = Some(t);
                // The scheduler polls every actor again after each grant,
                // so no waker is needed.
                Poll::Pending
            }
            Some(t) => match s.gates.granted.remove(&t) {
                Some(g) => {
                    self.ticket = None;
                    Poll::Ready(g)
                }
                None => Poll::Pending,
            },
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(t) = self.ticket {
            let mut s = self.net.lock();
            s.gates.waiting.remove(&t);
            s.gates.granted.remove(&t);
        }
    }
}

fn capabilities(lacks: Lacks) -> Capabilities {
    let raw = [
        ("IMAP4rev1", false),
        ("IDLE", lacks.idle),
        ("UIDPLUS", lacks.uidplus),
        ("NAMESPACE", false),
        ("LITERAL+", false),
        ("MOVE", lacks.move_),
    ]
    .into_iter()
    .filter(|(_, lacked)| !lacked)
    .map(|(name, _)| name.to_owned())
    .collect();
    Capabilities::from_raw(raw)
}

/// One simulated IMAP connection of one actor.
#[derive(Debug)]
pub struct SimTransport {
    net: Net,
    actor: usize,
    conn: ConnId,
    caps: Capabilities,
}

impl SimTransport {
    /// Connects (and logs in) as `actor`.
    pub fn connect(net: &Net, actor: usize) -> SimTransport {
        let (conn, lacks) = {
            let mut s = net.lock();
            (s.server.connect(), s.lacks)
        };
        SimTransport {
            net: net.clone(),
            actor,
            conn,
            caps: capabilities(lacks),
        }
    }

    /// This connection's id on the server.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// Runs one command: waits at the gate, then applies the scheduler's
    /// decision around `f`.
    async fn run<R>(
        &mut self,
        cmd: Cmd,
        f: impl FnOnce(&mut Server, ConnId, Grant) -> Result<R, ImapError>,
    ) -> Result<R, ImapError> {
        let grant = Gate {
            net: self.net.clone(),
            actor: self.actor,
            conn: self.conn,
            cmd,
            ticket: None,
        }
        .await;
        let mut s = self.net.lock();
        s.server.check(self.conn)?;
        match grant {
            Grant::DropBefore => {
                s.server.kill(self.conn);
                Err(ImapError::ConnectionLost(
                    "simulated: connection dropped before the command".into(),
                ))
            }
            Grant::DropAfter => {
                let _ = f(&mut s.server, self.conn, Grant::Go);
                s.server.kill(self.conn);
                Err(ImapError::ConnectionLost(
                    "simulated: connection dropped after the command".into(),
                ))
            }
            g => f(&mut s.server, self.conn, g),
        }
    }
}

impl Drop for SimTransport {
    fn drop(&mut self) {
        self.net.lock().server.disconnect(self.conn);
    }
}

impl Transport for SimTransport {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn namespace(&mut self) -> Result<Namespace, ImapError> {
        self.run(Cmd::Info, |_, _, _| {
            Ok(Namespace {
                prefix: String::new(),
                delimiter: Some(DELIMITER),
            })
        })
        .await
    }

    async fn list(&mut self, reference: &str, pattern: &str) -> Result<Vec<FolderInfo>, ImapError> {
        self.run(Cmd::Info, |s, _, _| Ok(s.list(reference, pattern)))
            .await
    }

    async fn list_subscribed(&mut self, pattern: &str) -> Result<Vec<String>, ImapError> {
        self.run(Cmd::Info, |s, _, _| Ok(s.list_subscribed(pattern)))
            .await
    }

    async fn create(&mut self, folder: &str) -> Result<CreateOutcome, ImapError> {
        self.run(Cmd::Create, |s, _, _| s.create(folder)).await
    }

    async fn delete(&mut self, folder: &str) -> Result<(), ImapError> {
        self.run(Cmd::Delete, |s, c, _| s.delete(Some(c), folder))
            .await
    }

    async fn subscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        self.run(Cmd::Create, |s, _, _| {
            s.set_subscribed(folder, true);
            Ok(())
        })
        .await
    }

    async fn unsubscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        self.run(Cmd::Create, |s, _, _| {
            s.set_subscribed(folder, false);
            Ok(())
        })
        .await
    }

    async fn append(
        &mut self,
        folder: &str,
        _flags: &[&str],
        message: &[u8],
    ) -> Result<Option<Uid>, ImapError> {
        let actor = self.actor;
        let uidplus = self.caps.uidplus;
        self.run(Cmd::Append, |s, _, g| {
            s.journal
                .push((actor, folder.to_owned(), Arc::new(message.to_vec())));
            append_as(s, folder, message, g).map(|uid| uid.filter(|_| uidplus))
        })
        .await
    }

    async fn select(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        self.run(Cmd::Select, |s, c, _| s.select(c, folder, false))
            .await
    }

    async fn examine(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        self.run(Cmd::Select, |s, c, _| s.select(c, folder, true))
            .await
    }

    async fn status(&mut self, folder: &str) -> Result<MailboxStatus, ImapError> {
        self.run(Cmd::Info, |s, _, _| s.status(folder)).await
    }

    async fn fetch_headers(&mut self, uids: UidRange) -> Result<Vec<FetchedHeader>, ImapError> {
        self.run(Cmd::Read, |s, c, _| s.fetch_headers(c, uids))
            .await
    }

    async fn fetch_messages(
        &mut self,
        uids: &[Uid],
        max_size: u32,
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        self.run(Cmd::Read, |s, c, _| s.fetch_messages(c, uids, max_size))
            .await
    }

    async fn search_header(&mut self, name: &str, value: &str) -> Result<Vec<Uid>, ImapError> {
        self.run(Cmd::Read, |s, c, _| s.search_header(c, name, value))
            .await
    }

    async fn delete_messages(&mut self, uids: &[Uid]) -> Result<(), ImapError> {
        if self.caps.uidplus {
            return self
                .run(Cmd::Expunge, |s, c, _| s.delete_messages(c, uids))
                .await;
        }
        if uids.is_empty() {
            return Ok(());
        }
        self.run(Cmd::Expunge, |s, c, _| s.flag_deleted(c, uids))
            .await?;
        self.run(Cmd::Expunge, |s, c, _| s.expunge_flagged(c)).await
    }

    async fn move_messages(
        &mut self,
        uids: &[Uid],
        dest: &str,
    ) -> Result<Option<Vec<Uid>>, ImapError> {
        self.run(Cmd::Expunge, |s, c, _| {
            s.move_messages(c, uids, dest).map(Some)
        })
        .await
    }

    async fn idle(&mut self, timeout: Duration) -> Result<IdleOutcome, ImapError> {
        if !self.caps.idle {
            return self.poll(timeout).await;
        }
        if self.run(Cmd::Idle, |s, c, _| s.take_changed(c)).await? {
            return Ok(IdleOutcome::Changed);
        }
        let sleep = tokio::time::sleep(timeout);
        tokio::pin!(sleep);
        let net = self.net.clone();
        let conn = self.conn;
        std::future::poll_fn(|cx| {
            {
                let mut s = net.lock();
                s.server.check(conn)?;
                if s.server.take_changed(conn)? {
                    return Poll::Ready(Ok(IdleOutcome::Changed));
                }
            }
            match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Ok(IdleOutcome::TimedOut)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    async fn noop(&mut self) -> Result<(), ImapError> {
        self.run(Cmd::Info, |_, _, _| Ok(())).await
    }

    async fn logout(self) -> Result<(), ImapError> {
        Ok(())
    }

    /// A new connection of the same actor (what `pair` and `join` do after
    /// a dropped one); the server may drop it again like any other.
    async fn reconnect(&mut self) -> Result<(), ImapError> {
        let mut s = self.net.lock();
        s.server.disconnect(self.conn);
        self.conn = s.server.connect();
        Ok(())
    }
}

impl SimTransport {
    /// [`Transport::idle`] on a server without IDLE: a `NOOP` at a gate,
    /// then another every poll interval, until one sees a change or the
    /// time is up.
    async fn poll(&mut self, timeout: Duration) -> Result<IdleOutcome, ImapError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.run(Cmd::Info, |s, c, _| s.take_changed(c)).await? {
                return Ok(IdleOutcome::Changed);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(IdleOutcome::TimedOut);
            }
            tokio::time::sleep(sma_imap::DEFAULT_POLL_INTERVAL.min(deadline - now)).await;
        }
    }
}

/// An APPEND as the scheduler granted it.
fn append_as(
    s: &mut Server,
    folder: &str,
    message: &[u8],
    g: Grant,
) -> Result<Option<Uid>, ImapError> {
    match g {
        Grant::Duplicate => {
            let uid = s.append(folder, message)?;
            s.append(folder, message)?;
            Ok(Some(uid))
        }
        // Without APPENDUID: the UID is not known yet.
        Grant::Delay => s.append_delayed(folder, message).map(|_| None),
        _ => s.append(folder, message).map(Some),
    }
}

//! The command engine: tags, literals, timeouts, unsolicited responses, and
//! recovery from interrupted (dropped) commands.
//!
//! async-imap is used for framing and parsing (its `Client` reads responses
//! through imap-proto); commands are written here, so every command's
//! tagged status, response code and text are available (async-imap's
//! high-level calls drop response codes such as APPENDUID and TRYCREATE).
//!
//! Cancellation: the state machine below records how far a command got. If
//! a future is dropped while waiting for a response, the next command first
//! reads and discards the rest of that response (or ends an IDLE with
//! `DONE`). If it was dropped while bytes were being written, the stream is
//! in an unknown state and the session reports itself lost.

use std::time::{Duration, Instant};

use async_imap::imap_proto::{Response, ResponseCode, Status};
use tokio::io::AsyncWriteExt;

use crate::error::ImapError;
use crate::io::{ImapIo, NetStream};
use crate::response::{cap_strings, done_of, Done, Greeting, MailboxTracker, Watch};
use crate::wire::{Command, Segment};

mod idle_cmd;

pub(crate) type Client = async_imap::Client<ImapIo>;

/// Default time without any progress after which a command fails.
pub(crate) const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How far the connection is through the current command.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Ready,
    /// Bytes of a command are being written.
    Writing,
    /// A command waits for the server's `+` before sending a literal.
    AwaitingContinuation(String),
    /// The command is sent; its tagged response is outstanding.
    AwaitingTagged(String),
    /// `IDLE` is sent; its `+` is outstanding.
    IdleStarting(String),
    /// In IDLE: `DONE` ends it.
    Idling(String),
    /// Unusable; the message says why.
    Broken(String),
}

/// Result of waiting for a continuation.
enum Step {
    Continue,
    Done(Done),
    Other,
}

/// One connection: the async-imap client plus the command state.
pub(crate) struct Conn {
    client: Client,
    state: State,
    next_tag: u64,
    commands_sent: u64,
    timeout: Duration,
    watch: Watch,
    bye: Option<String>,
    pub(crate) mailbox: MailboxTracker,
    pub(crate) literal_plus: bool,
}

impl Conn {
    /// Wraps a fresh stream. `tag_base` / `commands_sent` carry counters
    /// over a STARTTLS upgrade.
    pub(crate) fn new(stream: NetStream, next_tag: u64, commands_sent: u64) -> Self {
        Conn {
            client: Client::new(ImapIo::new(stream)),
            state: State::Ready,
            next_tag,
            commands_sent,
            timeout: DEFAULT_COMMAND_TIMEOUT,
            watch: Watch::Normal,
            bye: None,
            mailbox: MailboxTracker::default(),
            literal_plus: false,
        }
    }

    /// Takes the socket back (STARTTLS), with the counters to carry over.
    pub(crate) fn into_parts(self) -> (NetStream, u64, u64) {
        (
            self.client.into_inner().into_stream(),
            self.next_tag,
            self.commands_sent,
        )
    }

    pub(crate) fn commands_sent(&self) -> u64 {
        self.commands_sent
    }

    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout.max(Duration::from_millis(10));
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.client.get_ref().is_tls()
    }

    /// Whether the connection is known to be unusable.
    pub(crate) fn is_broken(&self) -> bool {
        matches!(self.state, State::Broken(_))
    }

    pub(crate) fn set_watch(&mut self, watch: Watch) {
        self.watch = watch;
    }

    /// Takes out a response line the parser could not handle.
    pub(crate) fn take_captured(&mut self, prefix: &[u8]) -> Option<Vec<u8>> {
        self.client.get_mut().take_captured(prefix)
    }

    fn new_tag(&mut self) -> String {
        self.next_tag += 1;
        format!("S{}", self.next_tag)
    }

    fn fail_lost(&mut self, why: String) -> ImapError {
        let why = match self.bye.take() {
            Some(bye) => format!("{why} (the server said: {bye})"),
            None => why,
        };
        self.state = State::Broken(why.clone());
        ImapError::ConnectionLost(why)
    }

    fn fail_io(&mut self, e: std::io::Error) -> ImapError {
        let msg = e.to_string();
        if msg.contains("during parsing") || msg.contains("incoming data too large") {
            let short: String = msg.chars().take(300).collect();
            self.state = State::Broken(format!("unparseable server response: {short}"));
            ImapError::Protocol(format!("unparseable server response: {short}"))
        } else {
            self.fail_lost(msg)
        }
    }

    fn fail_timeout(&mut self, what: &str) -> ImapError {
        self.state = State::Broken(format!("an earlier command timed out ({what})"));
        ImapError::Timeout {
            what: what.to_owned(),
        }
    }

    /// Reads one response and hands it to `f` (after the mailbox tracker has
    /// seen it). With `deadline`, returns `Ok(None)` when it passes; without,
    /// fails when nothing arrived for the command timeout.
    async fn read<R>(
        &mut self,
        what: &str,
        deadline: Option<Instant>,
        f: impl FnOnce(&Response<'_>) -> R,
    ) -> Result<Option<R>, ImapError> {
        loop {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => self
                    .timeout
                    .saturating_sub(self.client.get_ref().last_progress().elapsed()),
            };
            if wait.is_zero() {
                return match deadline {
                    Some(_) => Ok(None),
                    None => Err(self.fail_timeout(what)),
                };
            }
            match tokio::time::timeout(wait, self.client.read_response()).await {
                Err(_) => continue,
                Ok(Ok(Some(data))) => {
                    let resp = data.parsed();
                    if let Response::Data {
                        status: Status::Bye,
                        information,
                        ..
                    } = resp
                    {
                        self.bye = Some(information.as_deref().unwrap_or("BYE").to_owned());
                    }
                    self.mailbox.observe(resp, self.watch);
                    return Ok(Some(f(resp)));
                }
                Ok(Ok(None)) => {
                    return Err(self.fail_lost("the server closed the connection".to_owned()))
                }
                Ok(Err(e)) => return Err(self.fail_io(e)),
            }
        }
    }

    async fn write_all(&mut self, bytes: &[u8], what: &str) -> Result<(), ImapError> {
        let timeout = self.timeout;
        let io = self.client.get_mut();
        io.touch();
        let mut pos = 0;
        let mut result = Ok(());
        while pos < bytes.len() {
            match tokio::time::timeout(timeout, io.write(&bytes[pos..])).await {
                Err(_) => {
                    result = Err(None);
                    break;
                }
                Ok(Ok(0)) => {
                    result = Err(Some(std::io::Error::from(std::io::ErrorKind::WriteZero)));
                    break;
                }
                Ok(Ok(n)) => pos += n,
                Ok(Err(e)) => {
                    result = Err(Some(e));
                    break;
                }
            }
        }
        if result.is_ok() {
            result = match tokio::time::timeout(timeout, io.flush()).await {
                Err(_) => Err(None),
                Ok(r) => r.map_err(Some),
            };
        }
        match result {
            Ok(()) => Ok(()),
            Err(None) => Err(self.fail_timeout(what)),
            Err(Some(e)) => Err(self.fail_lost(format!("while sending {what}: {e}"))),
        }
    }

    /// Reads the server greeting: `(status, capabilities from its code, text)`.
    pub(crate) async fn read_greeting(
        &mut self,
    ) -> Result<(Greeting, Option<Vec<String>>, String), ImapError> {
        let got = self
            .read("the server greeting", None, |r| match r {
                Response::Data {
                    status,
                    code,
                    information,
                } => Some((
                    match status {
                        Status::Ok => Greeting::Ok,
                        Status::PreAuth => Greeting::PreAuth,
                        _ => Greeting::Refused,
                    },
                    match code {
                        Some(ResponseCode::Capabilities(c)) => Some(cap_strings(c)),
                        _ => None,
                    },
                    information.as_deref().unwrap_or("").to_owned(),
                )),
                _ => None,
            })
            .await?;
        match got.flatten() {
            Some(g) => Ok(g),
            None => {
                let e = ImapError::Protocol("the server's greeting is not an IMAP greeting".into());
                self.state = State::Broken(e.to_string());
                Err(e)
            }
        }
    }

    /// Brings the connection back to a clean state after an interrupted
    /// command; see the module documentation.
    pub(crate) async fn ensure_ready(&mut self) -> Result<(), ImapError> {
        loop {
            match self.state.clone() {
                State::Ready => return Ok(()),
                State::Broken(why) => return Err(ImapError::ConnectionLost(why)),
                State::Writing | State::AwaitingContinuation(_) => {
                    return Err(self.fail_lost(
                        "an earlier command was interrupted while being sent, leaving the connection in an unknown state".into(),
                    ))
                }
                State::AwaitingTagged(tag) => {
                    self.drain(&tag).await?;
                    self.state = State::Ready;
                }
                State::IdleStarting(tag) => {
                    if self.wait_continuation(&tag, "IDLE", &mut |_| {}).await?.is_none() {
                        self.state = State::Idling(tag);
                    } else {
                        self.state = State::Ready;
                    }
                }
                State::Idling(tag) => {
                    self.state = State::Writing;
                    self.write_all(b"DONE\r\n", "DONE").await?;
                    self.state = State::AwaitingTagged(tag);
                }
            }
        }
    }

    /// Reads until the tagged response for `tag`, discarding data.
    async fn drain(&mut self, tag: &str) -> Result<Done, ImapError> {
        self.client.get_mut().touch();
        loop {
            let got = self
                .read("the end of an interrupted command", None, |r| match r {
                    Response::Done { tag: t, .. } if t.0 == tag => Some(done_of(r)),
                    _ => None,
                })
                .await?;
            if let Some(Some(done)) = got {
                return Ok(done);
            }
        }
    }

    /// Waits for `+`: `Ok(None)` when it came, `Ok(Some(done))` when the
    /// command completed instead.
    async fn wait_continuation(
        &mut self,
        tag: &str,
        what: &str,
        on_untagged: &mut (dyn FnMut(&Response<'_>) + Send),
    ) -> Result<Option<Done>, ImapError> {
        loop {
            let step = self
                .read(what, None, |r| match r {
                    Response::Continue { .. } => Step::Continue,
                    Response::Done { tag: t, .. } if t.0 == tag => Step::Done(done_of(r)),
                    Response::Done { .. } => Step::Other,
                    other => {
                        on_untagged(other);
                        Step::Other
                    }
                })
                .await?;
            match step {
                Some(Step::Continue) => return Ok(None),
                Some(Step::Done(d)) => return Ok(Some(d)),
                Some(Step::Other) | None => {}
            }
        }
    }

    /// Sends `cmd` and reads up to its tagged response, handing every
    /// untagged response to `on_untagged`.
    pub(crate) async fn run(
        &mut self,
        cmd: &Command<'_>,
        on_untagged: &mut (dyn FnMut(&Response<'_>) + Send),
    ) -> Result<Done, ImapError> {
        self.ensure_ready().await?;
        if self.watch == Watch::Idle {
            // Left over from an IDLE whose future was dropped.
            self.watch = Watch::Normal;
        }
        let tag = self.new_tag();
        let segments = cmd.encode(&tag, self.literal_plus);
        tracing::debug!(tag = %tag, command = %cmd.label(), "IMAP command");
        self.run_segments(tag, cmd.name(), segments, on_untagged)
            .await
    }

    /// Like [`Conn::run`] without interest in untagged data.
    pub(crate) async fn run_simple(&mut self, cmd: &Command<'_>) -> Result<Done, ImapError> {
        self.run(cmd, &mut |_| {}).await
    }

    /// Sends pre-encoded segments (e.g. `AUTHENTICATE` with its response).
    pub(crate) async fn run_segments(
        &mut self,
        tag: String,
        name: &str,
        segments: Vec<Segment>,
        on_untagged: &mut (dyn FnMut(&Response<'_>) + Send),
    ) -> Result<Done, ImapError> {
        self.commands_sent += 1;
        for seg in &segments {
            self.state = State::Writing;
            self.write_all(&seg.bytes, name).await?;
            if seg.wait_continuation {
                self.state = State::AwaitingContinuation(tag.clone());
                if let Some(done) = self.wait_continuation(&tag, name, on_untagged).await? {
                    self.state = State::Ready;
                    return Ok(done);
                }
            }
        }
        self.state = State::AwaitingTagged(tag.clone());
        loop {
            let got = self
                .read(name, None, |r| match r {
                    Response::Done { tag: t, .. } if t.0 == tag => Some(done_of(r)),
                    Response::Done { tag: t, .. } => {
                        tracing::warn!(tag = %t.0, "IMAP: tagged response for an unknown command ignored");
                        None
                    }
                    Response::Continue { .. } => None,
                    other => {
                        on_untagged(other);
                        None
                    }
                })
                .await?;
            if let Some(Some(done)) = got {
                self.state = State::Ready;
                tracing::debug!(tag = %tag, outcome = ?done.outcome, text = %done.text, "IMAP done");
                return Ok(done);
            }
        }
    }

    /// A new tag for a command built by hand (see [`Conn::run_segments`]).
    pub(crate) fn tag(&mut self) -> String {
        self.new_tag()
    }

    /// Sends `LOGOUT` and closes the socket; errors are ignored (the
    /// connection is going away anyway).
    pub(crate) async fn logout(mut self) {
        if self.ensure_ready().await.is_ok() {
            let _ = self.run_simple(&Command::new("LOGOUT")).await;
        }
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.client.get_mut().shutdown()).await;
    }
}

//! The command engine: tags, literals, limits, deadlines, unsolicited
//! responses, and recovery from interrupted (dropped) commands.
//!
//! Responses are framed by [`crate::framer`] (which enforces the
//! [`Limits`] of the command before storing anything) and each complete
//! response is parsed once by imap-proto. Commands are written here, so
//! every command's tagged status, response code and text are available.
//!
//! Time: a command fails with [`ImapError::Timeout`] when nothing moved for
//! the command timeout, and with [`ImapError::TooSlow`] when it ran longer
//! than the timeout plus its bytes at the minimum rate (time spent parsing
//! is added back, so a slow parse is never blamed on the network).
//!
//! Cancellation: the state machine below records how far a command got. If
//! a future is dropped while waiting for a response, the next command first
//! reads and discards the rest of that response (or ends an IDLE with
//! `DONE`). If it was dropped while bytes were being written, the stream is
//! in an unknown state and the session reports itself lost.

use std::time::{Duration, Instant};

use async_imap::imap_proto::{self, Response, ResponseCode, Status};

use crate::error::ImapError;
use crate::framer::{Frame, Overrun};
use crate::io::{ImapIo, NetStream, ReadError};
use crate::limits::{self, Limits, DEFAULT_MIN_RATE};
use crate::response::{cap_strings, done_of, Done, Greeting, MailboxTracker, SetAside, Watch};
use crate::wire::{Command, Segment};

mod idle_cmd;
mod pipeline;
mod sasl;

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

/// Where the time allowance of the current wait started.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    /// [`ImapIo::moved`] at `start`.
    moved_at_start: u64,
    /// Time spent parsing since `start` (not charged to the server).
    parsing: Duration,
}

/// One connection: the framed stream plus the command state.
pub(crate) struct Conn {
    io: ImapIo,
    state: State,
    next_tag: u64,
    commands_sent: u64,
    timeout: Duration,
    /// Minimum average transfer rate in bytes per second (at least 1).
    min_rate: u64,
    clock: Clock,
    /// The command running (its name), for error messages.
    command: String,
    watch: Watch,
    bye: Option<String>,
    set_aside: SetAside,
    pub(crate) mailbox: MailboxTracker,
    pub(crate) literal_plus: bool,
    /// The last tag of a flight written behind a command whose answer is
    /// outstanding (a login, an IDLE's `DONE`: [`Conn::send_behind`]): an
    /// interrupted wait for that answer drains the flight's answers too.
    behind_last: Option<String>,
    /// Tagged answers read while waiting for the answer a flight went
    /// behind, which came before it (Stalwart checks every command of a
    /// read against the state before the first runs, so a flight behind
    /// a login is refused at once, ahead of the login's answer); at most
    /// [`pipeline::MAX_FLIGHT`]. The flight's reading counts them.
    pub(crate) answered_early: Vec<(String, crate::response::Done)>,
    /// The watch to go back to once a flight [`Conn::send_behind`] wrote
    /// is read.
    watch_behind: Option<Watch>,
    /// An IDLE that saw a change: its `DONE` is written, its answer
    /// outstanding, and the next flight goes behind it
    /// ([`Conn::run_behind_idle`]).
    idle_ending: Option<String>,
}

impl Conn {
    /// Wraps a fresh stream. `tag_base` / `commands_sent` carry counters
    /// over a STARTTLS upgrade.
    pub(crate) fn new(stream: NetStream, next_tag: u64, commands_sent: u64) -> Self {
        Conn {
            io: ImapIo::new(stream),
            state: State::Ready,
            next_tag,
            commands_sent,
            timeout: DEFAULT_COMMAND_TIMEOUT,
            min_rate: DEFAULT_MIN_RATE,
            clock: Clock {
                start: Instant::now(),
                moved_at_start: 0,
                parsing: Duration::ZERO,
            },
            command: "the server greeting".to_owned(),
            watch: Watch::Normal,
            bye: None,
            set_aside: SetAside::default(),
            mailbox: MailboxTracker::default(),
            literal_plus: false,
            behind_last: None,
            answered_early: Vec::new(),
            watch_behind: None,
            idle_ending: None,
        }
    }

    /// Takes the socket back (STARTTLS), with the counters to carry over.
    pub(crate) fn into_parts(self) -> (NetStream, u64, u64) {
        (self.io.into_stream(), self.next_tag, self.commands_sent)
    }

    pub(crate) fn commands_sent(&self) -> u64 {
        self.commands_sent
    }

    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout.max(Duration::from_millis(10));
    }

    pub(crate) fn set_min_rate(&mut self, bytes_per_sec: u64) {
        self.min_rate = bytes_per_sec.max(1);
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.io.is_tls()
    }

    /// Whether a flight was written behind a command (a login, an IDLE) whose answer is still
    /// outstanding ([`Conn::send_behind`]).
    pub(crate) fn has_flight_behind(&self) -> bool {
        self.behind_last.is_some()
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
        self.set_aside.take(prefix)
    }

    /// Starts a command: its limits, its byte counts and its clock.
    fn begin(&mut self, name: &str, limits: Limits) {
        self.io.begin(limits);
        name.clone_into(&mut self.command);
        self.restart_clock();
    }

    /// Starts the time allowance again (a new wait within the same command:
    /// draining an interrupted command, ending an IDLE).
    fn restart_clock(&mut self) {
        self.io.touch();
        self.clock = Clock {
            start: Instant::now(),
            moved_at_start: self.io.moved(),
            parsing: Duration::ZERO,
        };
    }

    /// How long the current wait may still take: the least of the
    /// inactivity timeout and the total allowance (timeout + bytes moved at
    /// the minimum rate + time spent parsing). Fails when either is used up.
    fn time_left(&mut self, what: &str) -> Result<Duration, ImapError> {
        let idle = self
            .timeout
            .saturating_sub(self.io.last_progress().elapsed());
        if idle.is_zero() {
            return Err(self.fail_timeout(what));
        }
        let moved = self.io.moved().saturating_sub(self.clock.moved_at_start);
        let allowance = self
            .timeout
            .saturating_add(Duration::from_millis(
                moved.saturating_mul(1000) / self.min_rate,
            ))
            .saturating_add(self.clock.parsing);
        let elapsed = self.clock.start.elapsed();
        let total = allowance.saturating_sub(elapsed);
        if total.is_zero() {
            self.state = State::Broken(format!("an earlier command was too slow ({what})"));
            return Err(ImapError::TooSlow {
                what: what.to_owned(),
                bytes: moved,
                secs: elapsed.as_secs(),
            });
        }
        Ok(idle.min(total))
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

    fn fail_read(&mut self, e: ReadError) -> ImapError {
        match e {
            ReadError::Io(e) => self.fail_lost(e.to_string()),
            ReadError::Truncated => self
                .fail_lost("the server closed the connection in the middle of a response".into()),
            ReadError::Overrun(o) => {
                let (what, limit) = match o {
                    Overrun::Line { limit } => ("an overlong response line".to_owned(), limit),
                    Overrun::Literal { announced, limit } => {
                        (format!("a literal of {announced} bytes"), limit)
                    }
                    Overrun::Total { limit } => (
                        "more data in all than the command can need".to_owned(),
                        limit,
                    ),
                };
                let e = ImapError::Oversized {
                    command: self.command.clone(),
                    what,
                    limit: limits::bytes(limit),
                };
                self.state = State::Broken(e.to_string());
                e
            }
        }
    }

    /// A complete response imap-proto cannot read (and that cannot be set
    /// aside): the stream can no longer be trusted.
    fn fail_protocol(&mut self, why: &str, bytes: &[u8]) -> ImapError {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]);
        let msg = format!(
            "unparseable server response ({why}, {} bytes): {}",
            bytes.len(),
            shown.trim_end()
        );
        self.state = State::Broken(msg.clone());
        ImapError::Protocol(msg)
    }

    fn fail_timeout(&mut self, what: &str) -> ImapError {
        self.state = State::Broken(format!("an earlier command timed out ({what})"));
        ImapError::Timeout {
            what: what.to_owned(),
        }
    }

    /// Reads one response and hands it to `f` (after the mailbox tracker has
    /// seen it). With `deadline`, returns `Ok(None)` when it passes; without,
    /// fails when the command's time is up (see [`Conn::time_left`]).
    async fn read<R>(
        &mut self,
        what: &str,
        deadline: Option<Instant>,
        f: impl FnOnce(&Response<'_>) -> R,
    ) -> Result<Option<R>, ImapError> {
        loop {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => self.time_left(what)?,
            };
            if wait.is_zero() {
                return Ok(None);
            }
            let frame = match tokio::time::timeout(wait, self.io.next_response()).await {
                Err(_) => continue,
                Ok(Ok(Some(frame))) => frame,
                Ok(Ok(None)) => {
                    return Err(self.fail_lost("the server closed the connection".to_owned()))
                }
                Ok(Err(e)) => return Err(self.fail_read(e)),
            };
            let parse_started = Instant::now();
            let why = match imap_proto::parser::parse_response(&frame.bytes) {
                Ok((&[], resp)) => {
                    self.note(&resp);
                    let out = f(&resp);
                    self.clock.parsing += parse_started.elapsed();
                    return Ok(Some(out));
                }
                Ok(_) => "data after the end of the response",
                Err(e) if e.is_incomplete() => "incomplete",
                Err(_) => "not understood",
            };
            if let Some(ascii) = frame.ascii_fallback() {
                if let Ok((&[], resp)) = imap_proto::parser::parse_response(&ascii) {
                    tracing::debug!(
                        "IMAP response with 8-bit text read with '?' for its non-ASCII characters"
                    );
                    self.note(&resp);
                    let out = f(&resp);
                    self.clock.parsing += parse_started.elapsed();
                    return Ok(Some(out));
                }
            }
            self.clock.parsing += parse_started.elapsed();
            self.unparseable(frame, why)?;
        }
    }

    /// Looks at every response: BYE text, mailbox changes.
    fn note(&mut self, resp: &Response<'_>) {
        if let Response::Data {
            status: Status::Bye,
            information,
            ..
        } = resp
        {
            self.bye = Some(information.as_deref().unwrap_or("BYE").to_owned());
        }
        self.mailbox.observe(resp, self.watch);
    }

    /// A response imap-proto cannot read: an untagged line without
    /// literals is set aside (bounded); anything else breaks the session.
    fn unparseable(&mut self, frame: Frame, why: &str) -> Result<(), ImapError> {
        if frame.is_untagged() && !frame.has_literal {
            self.set_aside.keep(frame.bytes);
            Ok(())
        } else {
            Err(self.fail_protocol(why, &frame.bytes))
        }
    }

    async fn write_all(&mut self, bytes: &[u8], what: &str) -> Result<(), ImapError> {
        self.io.touch();
        let mut pos = 0;
        while pos < bytes.len() {
            let wait = self.time_left(what)?;
            match tokio::time::timeout(wait, self.io.write(&bytes[pos..])).await {
                Err(_) => {}
                Ok(Ok(0)) => {
                    let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                    return Err(self.fail_lost(format!("while sending {what}: {e}")));
                }
                Ok(Ok(n)) => pos += n,
                Ok(Err(e)) => return Err(self.fail_lost(format!("while sending {what}: {e}"))),
            }
        }
        loop {
            let wait = self.time_left(what)?;
            match tokio::time::timeout(wait, self.io.flush()).await {
                Err(_) => {}
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => return Err(self.fail_lost(format!("while sending {what}: {e}"))),
            }
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
        if !matches!(self.state, State::Ready | State::Broken(_)) {
            // Finishing what was left is a new wait: the time the caller
            // spent elsewhere (or idling) is not the server's.
            self.restart_clock();
        }
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
                    self.idle_ending = None;
                    self.drain(&tag).await?;
                    if let Some(last) = self.behind_last.take() {
                        self.drain(&last).await?;
                    }
                    if let Some(before) = self.watch_behind.take() {
                        self.watch = before;
                    }
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

    /// Reads until the tagged response for `tag`, discarding data (within
    /// the limits of the command that was interrupted).
    async fn drain(&mut self, tag: &str) -> Result<Done, ImapError> {
        self.restart_clock();
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
    /// untagged response to `on_untagged`, within the default [`Limits`].
    pub(crate) async fn run(
        &mut self,
        cmd: &Command<'_>,
        on_untagged: &mut (dyn FnMut(&Response<'_>) + Send),
    ) -> Result<Done, ImapError> {
        self.run_limited(cmd, Limits::default(), on_untagged).await
    }

    /// [`Conn::run`] within `limits`.
    pub(crate) async fn run_limited(
        &mut self,
        cmd: &Command<'_>,
        limits: Limits,
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
        self.run_segments(tag, cmd.name(), limits, segments, on_untagged)
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
        limits: Limits,
        segments: Vec<Segment>,
        on_untagged: &mut (dyn FnMut(&Response<'_>) + Send),
    ) -> Result<Done, ImapError> {
        self.begin(name, limits);
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

    /// Sends `LOGOUT` and closes the socket without waiting for the
    /// server's answer (a round trip nobody needs: the server ends the
    /// session either way); errors are ignored (the connection is going
    /// away anyway).
    pub(crate) async fn logout(mut self) {
        if self.ensure_ready().await.is_ok() {
            let tag = self.new_tag();
            let bytes: Vec<u8> = Command::new("LOGOUT")
                .encode(&tag, self.literal_plus)
                .into_iter()
                .flat_map(|s| s.bytes)
                .collect();
            self.begin("LOGOUT", Limits::default());
            self.commands_sent += 1;
            let _ = self.write_all(&bytes, "LOGOUT").await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.io.shutdown()).await;
    }
}

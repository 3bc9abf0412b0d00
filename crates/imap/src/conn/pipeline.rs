//! Several commands in one flight: one round trip instead of one each.

use async_imap::imap_proto::Response;

use super::{Conn, State};
use crate::error::ImapError;
use crate::limits::Limits;
use crate::response::{done_of, Done, Watch};
use crate::wire::Command;

/// At most this many commands go out in one flight; more are sent in
/// further flights (a server reads a pipeline as fast as it runs it, but
/// its input buffer is not unlimited).
pub(crate) const MAX_FLIGHT: usize = 64;

impl Conn {
    /// Sends `first` and `second` in one flight and reads both tagged
    /// responses: one round trip instead of two. Every response of both is
    /// watched with `watch`: a server may send the second command's
    /// untagged data before the first one's tagged reply (Dovecot sends
    /// the EXPUNGE of a pipelined `UID STORE` + `UID EXPUNGE` that way).
    /// `second` runs whatever `first` answered: use this only where that
    /// is harmless. A server may also run the two side by side (Dovecot
    /// under load lets a `UID EXPUNGE` miss the `\Deleted` of the `UID
    /// STORE` before it): check `second`'s effect through `on_untagged`,
    /// which sees every untagged response of both. Commands that need a
    /// continuation run one after the other.
    pub(crate) async fn run_pair(
        &mut self,
        first: &Command<'_>,
        second: &Command<'_>,
        watch: Watch,
        on_untagged: &mut (dyn FnMut(&Response<'_>) + Send),
    ) -> Result<(Done, Done), ImapError> {
        let mut dones = self
            .run_many(&[first, second], watch, Limits::default(), &mut |_, r| {
                on_untagged(r)
            })
            .await?
            .into_iter();
        match (dones.next(), dones.next()) {
            (Some(d1), Some(d2)) => Ok((d1, d2)),
            _ => Err(ImapError::Protocol(
                "a pipelined pair lost an answer".into(),
            )),
        }
    }

    /// Sends `cmds` in flights of at most [`MAX_FLIGHT`] and returns their
    /// tagged answers in the order of `cmds`. Each command runs whatever
    /// the ones before it answered, and a server may run them side by side
    /// and answer in any order (Dovecot does for FETCH, STATUS, APPEND):
    /// use this only for commands that are independent, or where a failed
    /// predecessor makes the later ones fail harmlessly. `on_untagged` sees
    /// every untagged response with the index of the first command not yet
    /// answered, a hint only: data of commands run side by side is told
    /// apart by what it says (a folder name, the attributes fetched). Every response is
    /// watched with `watch`, and the whole flight is read within `limits`.
    /// Commands that need a continuation (no `LITERAL+`) run one after the
    /// other.
    pub(crate) async fn run_many(
        &mut self,
        cmds: &[&Command<'_>],
        watch: Watch,
        limits: Limits,
        on_untagged: &mut (dyn FnMut(usize, &Response<'_>) + Send),
    ) -> Result<Vec<Done>, ImapError> {
        let mut out = Vec::with_capacity(cmds.len());
        for flight in cmds.chunks(MAX_FLIGHT) {
            let base = out.len();
            let mut shifted = |i: usize, r: &Response<'_>| on_untagged(base + i, r);
            let dones = self.run_flight(flight, watch, limits, &mut shifted).await?;
            out.extend(dones);
        }
        Ok(out)
    }

    /// One flight of [`Conn::run_many`].
    async fn run_flight(
        &mut self,
        cmds: &[&Command<'_>],
        watch: Watch,
        limits: Limits,
        on_untagged: &mut (dyn FnMut(usize, &Response<'_>) + Send),
    ) -> Result<Vec<Done>, ImapError> {
        if let Some(dones) = self
            .run_behind_idle(cmds, watch, limits, on_untagged)
            .await?
        {
            return Ok(dones);
        }
        self.ensure_ready().await?;
        if self.watch == Watch::Idle {
            self.watch = Watch::Normal;
        }
        let before = self.watch;
        self.watch = watch;
        let result = self.send_and_read(cmds, limits, on_untagged).await;
        self.watch = before;
        result
    }

    /// Writes the flight and reads every tagged answer (in order).
    async fn send_and_read(
        &mut self,
        cmds: &[&Command<'_>],
        limits: Limits,
        on_untagged: &mut (dyn FnMut(usize, &Response<'_>) + Send),
    ) -> Result<Vec<Done>, ImapError> {
        let tags: Vec<String> = cmds.iter().map(|_| self.new_tag()).collect();
        let encoded: Vec<_> = cmds
            .iter()
            .zip(&tags)
            .map(|(c, t)| c.encode(t, self.literal_plus))
            .collect();
        if encoded.iter().flatten().any(|s| s.wait_continuation) {
            let mut dones = Vec::with_capacity(cmds.len());
            for (i, ((cmd, tag), segs)) in cmds.iter().zip(tags).zip(encoded).enumerate() {
                let mut at = |r: &Response<'_>| on_untagged(i, r);
                dones.push(
                    self.run_segments(tag, cmd.name(), limits, segs, &mut at)
                        .await?,
                );
            }
            return Ok(dones);
        }
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let flight = self.write_flight(cmds, tags, encoded, limits).await?;
        self.read_flight(flight, on_untagged).await
    }

    /// Writes `cmds` in one flight behind the command whose answer is
    /// still outstanding: a login sent before the greeting
    /// ([`crate::early::send`]; the server runs the flight only if the
    /// login succeeds) or an IDLE ended by `DONE` ([`Conn::run_behind_idle`]).
    /// Its answers are watched with `watch` until [`Conn::read_behind`] has
    /// read them, after the caller read the outstanding answer. Fails with
    /// [`ImapError::InvalidArgument`] if a command needs a continuation
    /// (no `LITERAL+`) or no answer is outstanding.
    pub(crate) async fn send_behind(
        &mut self,
        cmds: &[&Command<'_>],
        watch: Watch,
        limits: Limits,
    ) -> Result<Flight, ImapError> {
        let State::AwaitingTagged(before) = self.state.clone() else {
            return Err(ImapError::InvalidArgument(
                "commands go behind a command only while its answer is outstanding".into(),
            ));
        };
        let tags: Vec<String> = cmds.iter().map(|_| self.new_tag()).collect();
        let encoded: Vec<_> = cmds
            .iter()
            .zip(&tags)
            .map(|(c, t)| c.encode(t, self.literal_plus))
            .collect();
        if cmds.is_empty() || encoded.iter().flatten().any(|s| s.wait_continuation) {
            return Err(ImapError::InvalidArgument(
                "only a flight without continuations goes behind a command".into(),
            ));
        }
        let mut flight = self.write_flight(cmds, tags, encoded, limits).await?;
        // The outstanding answer comes first; an interrupted wait drains both.
        self.behind_last = flight.tags.last().cloned();
        flight.answered_before = Some(before.clone());
        self.state = State::AwaitingTagged(before);
        self.watch_behind = Some(std::mem::replace(&mut self.watch, watch));
        Ok(flight)
    }

    /// Reads the answers to a flight [`Conn::send_behind`] wrote, once
    /// the answer it went behind has been read.
    pub(crate) async fn read_behind(
        &mut self,
        flight: Flight,
        on_untagged: &mut (dyn FnMut(usize, &Response<'_>) + Send),
    ) -> Result<Vec<Done>, ImapError> {
        self.behind_last = None;
        let result = self.read_flight(flight, on_untagged).await;
        if let Some(before) = self.watch_behind.take() {
            self.watch = before;
        }
        result
    }

    /// Writes a flight (no command needs a continuation).
    async fn write_flight(
        &mut self,
        cmds: &[&Command<'_>],
        tags: Vec<String>,
        encoded: Vec<Vec<crate::wire::Segment>>,
        limits: Limits,
    ) -> Result<Flight, ImapError> {
        let name = cmds.last().map_or("", |c| c.name()).to_owned();
        if let Some(last) = cmds.last() {
            tracing::debug!(first = %tags[0], commands = cmds.len(), last = %last.label(), "IMAP commands pipelined");
        }
        self.begin(&name, limits);
        self.commands_sent += cmds.len() as u64;
        let bytes: Vec<u8> = encoded
            .iter()
            .flatten()
            .flat_map(|s| s.bytes.clone())
            .collect();
        self.state = State::Writing;
        self.write_all(&bytes, &name).await?;
        if cmds.len() > 1 {
            self.io.quickack();
        }
        Ok(Flight {
            tags,
            name,
            answered_before: None,
        })
    }

    /// Reads every tagged answer of `flight` (returned in the order of its
    /// commands).
    async fn read_flight(
        &mut self,
        flight: Flight,
        on_untagged: &mut (dyn FnMut(usize, &Response<'_>) + Send),
    ) -> Result<Vec<Done>, ImapError> {
        let Flight {
            tags,
            name,
            answered_before,
        } = flight;
        self.state = State::AwaitingTagged(tags[tags.len() - 1].clone());
        let mut dones: Vec<Option<Done>> = vec![None; tags.len()];
        let mut answered = 0;
        for (tag, done) in std::mem::take(&mut self.answered_early) {
            if let Some(i) = tags.iter().position(|t| *t == tag) {
                if dones[i].replace(done).is_none() {
                    answered += 1;
                }
            }
        }
        while answered < tags.len() {
            // Untagged data goes with the first command not answered yet;
            // the tagged answers may come in any order (Dovecot runs some
            // pipelined commands side by side).
            let next = dones.iter().position(Option::is_none).unwrap_or(0);
            let got = self
                .read(&name, None, |r| match r {
                    Response::Done { tag: t, .. } => match tags.iter().position(|x| *x == t.0) {
                        Some(i) => Some(Ok((i, done_of(r)))),
                        None if answered_before.as_deref() == Some(&*t.0) => Some(Err(())),
                        None => {
                            tracing::warn!(tag = %t.0, "IMAP: tagged response for an unknown command ignored");
                            None
                        }
                    },
                    Response::Continue { .. } => None,
                    other => {
                        on_untagged(next, other);
                        None
                    }
                })
                .await?;
            if let Some(Some(Err(()))) = got {
                // Cyrus 3.6 does this when commands arrive in the packet
                // of an AUTHENTICATE with an initial response: "S1 OK",
                // then "S1 BAD Already authenticated", and the flight's
                // later commands are never answered.
                let e = ImapError::AnsweredTwice {
                    before: name.clone(),
                };
                self.state = State::Broken(e.to_string());
                return Err(e);
            }
            if let Some(Some(Ok((i, done)))) = got {
                if dones[i].replace(done).is_some() {
                    return Err(ImapError::Protocol(format!(
                        "the server answered {} twice",
                        tags[i]
                    )));
                }
                answered += 1;
            }
        }
        let dones: Vec<Done> = dones.into_iter().flatten().collect();
        self.state = State::Ready;
        Ok(dones)
    }
}

/// A flight written, its answers outstanding.
#[derive(Debug)]
pub(crate) struct Flight {
    tags: Vec<String>,
    /// The last command's name, for messages.
    name: String,
    /// The tag of the command the flight went behind (a login, an IDLE),
    /// answered already: a second answer to it means the server took
    /// part of the flight for something else.
    answered_before: Option<String>,
}

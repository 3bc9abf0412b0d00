//! `AUTHENTICATE` exchanges that go on after the initial response: the
//! error challenge of the OAuth 2.0 mechanisms (RFC 7628 section 3.2.2).

use async_imap::imap_proto::Response;

use super::{Conn, State};
use crate::error::ImapError;
use crate::limits::Limits;
use crate::response::{done_of, Done};
use crate::wire::Segment;

/// The longest challenge kept (the line itself is bounded by the framer).
const MAX_CHALLENGE: usize = 8 * 1024;

/// The command's name, for messages.
const NAME: &str = "AUTHENTICATE";

/// What came in answer to `AUTHENTICATE`.
enum Sasl {
    Done(Done),
    Challenge(String),
}

impl Conn {
    /// Sends `AUTHENTICATE` as `segments` (the command with its initial
    /// response, or the command and, after the server's `+`, the response),
    /// and answers one challenge that comes after the initial response with
    /// `answer` (a whole line). A second challenge is a protocol violation:
    /// the connection is given up. Returns the tagged response and the
    /// challenge's text (at most 8 KiB of it), if there was one. `tag`
    /// comes from [`Conn::tag`].
    pub(crate) async fn authenticate(
        &mut self,
        tag: String,
        segments: &[Segment],
        answer: &[u8],
        on_untagged: &mut (dyn FnMut(&Response<'_>) + Send),
    ) -> Result<(Done, Option<String>), ImapError> {
        if let Some(done) = self.send_authenticate(&tag, segments, on_untagged).await? {
            return Ok((done, None));
        }
        self.finish_authenticate(tag, answer, on_untagged).await
    }

    /// The sending half of [`Conn::authenticate`]: writes `segments`
    /// (waiting for `+` where a segment asks for it). `Some(done)` when the
    /// server completed the command before it was all sent. Afterwards the
    /// tagged answer is outstanding: [`Conn::finish_authenticate`] reads it
    /// (the greeting may be read in between, for a login sent before it).
    pub(crate) async fn send_authenticate(
        &mut self,
        tag: &str,
        segments: &[Segment],
        on_untagged: &mut (dyn FnMut(&Response<'_>) + Send),
    ) -> Result<Option<Done>, ImapError> {
        self.begin(NAME, Limits::default());
        self.commands_sent += 1;
        for seg in segments {
            self.state = State::Writing;
            self.write_all(&seg.bytes, NAME).await?;
            if seg.wait_continuation {
                self.state = State::AwaitingContinuation(tag.to_owned());
                if let Some(done) = self.wait_continuation(tag, NAME, on_untagged).await? {
                    self.state = State::Ready;
                    return Ok(Some(done));
                }
            }
        }
        self.state = State::AwaitingTagged(tag.to_owned());
        Ok(None)
    }

    /// The reading half of [`Conn::authenticate`]: the tagged answer,
    /// answering one challenge with `answer`.
    pub(crate) async fn finish_authenticate(
        &mut self,
        tag: String,
        answer: &[u8],
        on_untagged: &mut (dyn FnMut(&Response<'_>) + Send),
    ) -> Result<(Done, Option<String>), ImapError> {
        let mut challenge: Option<String> = None;
        // Answers to a flight behind this login that come before its own.
        let behind = self.has_flight_behind();
        let mut early = std::mem::take(&mut self.answered_early);
        loop {
            let got = self
                .read(NAME, None, |r| match r {
                    Response::Done { tag: t, .. } if t.0 == tag => Some(Sasl::Done(done_of(r))),
                    Response::Done { tag: t, .. } => {
                        if behind && early.len() < super::pipeline::MAX_FLIGHT {
                            early.push((t.0.to_string(), done_of(r)));
                        }
                        None
                    }
                    Response::Continue { information, .. } => Some(Sasl::Challenge(
                        information
                            .as_deref()
                            .unwrap_or("")
                            .chars()
                            .take(MAX_CHALLENGE)
                            .collect(),
                    )),
                    other => {
                        on_untagged(other);
                        None
                    }
                })
                .await?;
            match got.flatten() {
                Some(Sasl::Done(done)) => {
                    self.state = State::Ready;
                    self.answered_early = early;
                    return Ok((done, challenge));
                }
                Some(Sasl::Challenge(text)) if challenge.is_none() => {
                    challenge = Some(text);
                    self.state = State::Writing;
                    self.write_all(answer, NAME).await?;
                    self.state = State::AwaitingTagged(tag.clone());
                }
                Some(Sasl::Challenge(_)) => {
                    let e = ImapError::Protocol(
                        "the server sent a second challenge in answer to AUTHENTICATE".into(),
                    );
                    self.state = State::Broken(e.to_string());
                    return Err(e);
                }
                None => {}
            }
        }
    }
}

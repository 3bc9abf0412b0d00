//! The IDLE command itself (RFC 2177), on the command engine.

use std::time::Instant;

use async_imap::imap_proto::Response;

use super::{Conn, State};
use crate::error::ImapError;
use crate::limits::Limits;
use crate::response::{done_of, Done, Watch};
use crate::wire::Command;

impl Conn {
    /// One IDLE, until a change is seen, `deadline` passes, or the server
    /// ends it. Returns whether a change was seen. Falls back with
    /// `Err(No/Bad)` if the server refuses IDLE.
    pub(crate) async fn idle_once(&mut self, deadline: Instant) -> Result<bool, ImapError> {
        self.ensure_ready().await?;
        let tag = self.new_tag();
        self.commands_sent += 1;
        // Few bytes are expected while idling: a server flooding the idle
        // connection ends it (see `Limits::idle`).
        self.begin("IDLE", Limits::idle());
        tracing::debug!(tag = %tag, "IMAP command IDLE");
        self.watch = Watch::Idle;
        let result = self.idle_inner(&tag, deadline).await;
        self.watch = Watch::Normal;
        result
    }

    /// Sends `cmds` right behind the `DONE` of an IDLE that saw a change,
    /// then reads the IDLE's answer and the flight's (as
    /// [`Conn::run_many`] does). `None` when no IDLE is ending or a command
    /// needs a continuation: the caller sends the flight the usual way.
    pub(crate) async fn run_behind_idle(
        &mut self,
        cmds: &[&Command<'_>],
        watch: Watch,
        limits: Limits,
        on_untagged: &mut (dyn FnMut(usize, &Response<'_>) + Send),
    ) -> Result<Option<Vec<Done>>, ImapError> {
        let Some(idle) = self.idle_ending.take() else {
            return Ok(None);
        };
        if self.state != State::AwaitingTagged(idle.clone()) {
            return Ok(None);
        }
        // Nothing is written when a command needs a continuation.
        let sent = match self.send_behind(cmds, watch, limits).await {
            Ok(sent) => sent,
            Err(ImapError::InvalidArgument(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let done = self.drain(&idle).await?;
        if !done.is_ok() {
            tracing::debug!(text = %done.text, "IMAP IDLE ended with a refusal after DONE");
        }
        Ok(Some(self.read_behind(sent, on_untagged).await?))
    }

    async fn idle_inner(&mut self, tag: &str, deadline: Instant) -> Result<bool, ImapError> {
        self.state = State::Writing;
        self.write_all(format!("{tag} IDLE\r\n").as_bytes(), "IDLE")
            .await?;
        self.state = State::IdleStarting(tag.to_owned());
        if let Some(done) = self.wait_continuation(tag, "IDLE", &mut |_| {}).await? {
            self.state = State::Ready;
            return if done.is_ok() {
                Ok(self.mailbox.changed)
            } else {
                Err(done.into_error("IDLE".into()))
            };
        }
        self.state = State::Idling(tag.to_owned());
        while !self.mailbox.changed {
            let got = self
                .read("IDLE", Some(deadline), |r| match r {
                    Response::Done { tag: t, .. } if t.0 == tag => Some(done_of(r)),
                    _ => None,
                })
                .await?;
            match got {
                None => break,
                Some(Some(done)) => {
                    // The server ended the IDLE by itself.
                    self.state = State::Ready;
                    return if done.is_ok() {
                        Ok(self.mailbox.changed)
                    } else {
                        Err(done.into_error("IDLE".into()))
                    };
                }
                Some(None) => {}
            }
        }
        self.restart_clock();
        self.state = State::Writing;
        self.write_all(b"DONE\r\n", "DONE").await?;
        self.state = State::AwaitingTagged(tag.to_owned());
        if self.mailbox.changed {
            // The caller reads what changed next: that flight goes behind
            // the DONE, one round trip less ([`Conn::run_behind_idle`]).
            self.idle_ending = Some(tag.to_owned());
            return Ok(true);
        }
        let done = self.drain(tag).await?;
        self.state = State::Ready;
        if !done.is_ok() {
            return Err(done.into_error("IDLE".into()));
        }
        Ok(self.mailbox.changed)
    }
}

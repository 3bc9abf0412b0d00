//! The event source (RFC 8620 §7.3): a `text/event-stream` of `state`
//! events, read within bounds.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use sma_imap::ImapError;

/// The longest event (or line) accepted from the server.
pub const MAX_EVENT: usize = 64 << 10;

type Chunks = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// An open event stream.
pub(crate) struct EventStream {
    chunks: Chunks,
    buf: Vec<u8>,
    event: String,
}

/// What arrived.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A `state` event: something of the requested types changed.
    State,
    /// Anything else (`ping`, comments are skipped).
    Other,
}

impl EventStream {
    /// Wraps a `200` response whose type is `text/event-stream`; `None`
    /// for anything else (Cyrus without push answers `204 No Content`).
    pub fn from_response(resp: reqwest::Response) -> Option<EventStream> {
        let ok = resp.status() == reqwest::StatusCode::OK
            && resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        ok.then(|| EventStream {
            chunks: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
            event: String::new(),
        })
    }

    /// The next event; `Ok(None)` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, ImapError> {
        loop {
            while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    // End of an event (if any field came).
                    let ev = std::mem::take(&mut self.event);
                    if ev.is_empty() {
                        continue;
                    }
                    return Ok(Some(if ev == "state" {
                        Event::State
                    } else {
                        Event::Other
                    }));
                }
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => self.event = value.chars().take(64).collect(),
                    // A data-only event is a `message`.
                    _ if self.event.is_empty() => self.event = "message".into(),
                    _ => {}
                }
            }
            if self.buf.len() > MAX_EVENT {
                return Err(ImapError::Oversized {
                    command: "the event source".into(),
                    what: format!("a line of more than {MAX_EVENT} bytes"),
                    limit: format!("{MAX_EVENT} bytes"),
                });
            }
            match self.chunks.next().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(ImapError::ConnectionLost(format!(
                        "the event source: {}",
                        crate::http::error_chain(&e)
                    )))
                }
                // A chunk is bounded by the HTTP client's read buffer.
                Some(Ok(c)) => self.buf.extend_from_slice(&c),
            }
        }
    }
}

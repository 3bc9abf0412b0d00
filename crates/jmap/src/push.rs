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
    data: String,
}

/// What arrived.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A `state` event: something of the requested types changed; its
    /// data (a `StateChange` object, unparsed, at most [`MAX_EVENT`]
    /// bytes).
    State(String),
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
            data: String::new(),
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
                    let data = std::mem::take(&mut self.data);
                    if ev.is_empty() {
                        continue;
                    }
                    return Ok(Some(if ev == "state" {
                        Event::State(data)
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
                    "data" => {
                        if self.event.is_empty() {
                            // A data-only event is a `message`.
                            self.event = "message".into();
                        }
                        if self.data.len() + value.len() < MAX_EVENT {
                            if !self.data.is_empty() {
                                self.data.push('\n');
                            }
                            self.data.push_str(value);
                        }
                    }
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

/// The `Email` state a `StateChange` (RFC 8620 §7.1) names for `account`:
/// `Err(())` when the data is not a `StateChange` that can be read (then
/// the caller looks for itself), `Ok(None)` when it names no `Email`
/// change of that account (another account, or mailboxes only).
pub(crate) fn email_state(data: &str, account: &str) -> Result<Option<String>, ()> {
    let v: serde_json::Value = serde_json::from_str(data).map_err(|_| ())?;
    let changed = v.get("changed").and_then(|c| c.as_object()).ok_or(())?;
    let Some(types) = changed.get(account) else {
        return Ok(None);
    };
    let types = types.as_object().ok_or(())?;
    match types.get("Email") {
        None => Ok(None),
        Some(s) => s.as_str().map(|s| Some(s.to_owned())).ok_or(()),
    }
}

#[cfg(test)]
mod tests {
    use super::email_state;

    #[test]
    fn the_email_state_of_an_account_is_read_from_a_state_change() {
        let d = r#"{"@type":"StateChange","changed":{"a1":{"Email":"s7","Mailbox":"m3"},"a2":{"Email":"x"}}}"#;
        assert_eq!(email_state(d, "a1"), Ok(Some("s7".into())));
        assert_eq!(email_state(d, "a2"), Ok(Some("x".into())));
        assert_eq!(email_state(d, "a3"), Ok(None));
        let mailboxes_only = r#"{"@type":"StateChange","changed":{"a1":{"Mailbox":"m4"}}}"#;
        assert_eq!(email_state(mailboxes_only, "a1"), Ok(None));
        for unreadable in [
            "",
            "not json",
            r#"{"changed":[]}"#,
            r#"{"changed":{"a1":{"Email":7}}}"#,
        ] {
            assert_eq!(email_state(unreadable, "a1"), Err(()), "{unreadable}");
        }
    }
}

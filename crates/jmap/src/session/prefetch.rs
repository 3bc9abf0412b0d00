//! Bodies read with the listing: where the server offers `Blob/get`
//! (RFC 9404, `urn:ietf:params:jmap:blob`), the listing that opens a
//! folder for its reader also asks for the first
//! [`sma_imap::PREFETCH_BYTES`] of the first
//! [`sma_imap::PREFETCH_MESSAGES`] messages (oldest first), as the IMAP
//! session's prefetch does, so a message that fits costs no download of
//! its own: the push, one request, and the message is read.
//!
//! Nothing here is trusted more than a download: a body is kept only when
//! it is whole (as long as the size the server gave) and is served for its
//! blob id alone; any error of the three calls leaves the bodies to be
//! downloaded as before.

use base64::Engine as _;
use serde_json::{json, Value};
use sma_imap::{PREFETCH_BYTES, PREFETCH_MESSAGES};

use super::{JmapSession, Selected, HEADER_PROPS};
use crate::http::{take, MethodResponse};
use sma_imap::ImapError;

/// The capability that brings `Blob/get`.
pub(crate) const BLOB_CAPABILITY: &str = "urn:ietf:params:jmap:blob";

impl JmapSession {
    /// The calls that read the first bytes of the first messages of
    /// `mailbox`, to follow its listing in the same request; none when the
    /// server has no `Blob/get`.
    pub(super) fn prefetch_calls(&self, mailbox: &str) -> Vec<Value> {
        if !self.blob_get {
            return vec![];
        }
        vec![
            json!(["Email/query", {
                "accountId": self.account_id,
                "filter": {"inMailbox": mailbox},
                "sort": [{"property": "receivedAt", "isAscending": true}],
                "limit": PREFETCH_MESSAGES,
            }, "pq"]),
            json!(["Email/get", {
                "accountId": self.account_id,
                "#ids": {"resultOf": "pq", "name": "Email/query", "path": "/ids"},
                "properties": ["blobId", "size"],
            }, "pg"]),
            json!(["Blob/get", {
                "accountId": self.account_id,
                "#ids": {"resultOf": "pg", "name": "Email/get", "path": "/list/*/blobId"},
                "properties": ["data:asBase64", "size"],
                "offset": 0,
                "length": PREFETCH_BYTES,
            }, "pb"]),
        ]
    }

    /// Keeps the whole bodies the answer to [`Self::prefetch_calls`] holds,
    /// by blob id (replacing what an earlier listing kept).
    pub(super) fn absorb_prefetch(&mut self, r: &[MethodResponse]) {
        self.prefetched.clear();
        if !self.blob_get {
            return;
        }
        let Ok(Ok(got)) = take(r, "pb", "Blob/get") else {
            tracing::debug!("Blob/get with the listing failed: bodies are downloaded");
            return;
        };
        for blob in got
            .get("list")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some((id, body)) = whole_body(blob) {
                self.prefetched.insert(id, body);
            }
        }
    }

    /// The prefetched body of blob `blob_id` if it is `size` bytes long.
    pub(super) fn prefetched_body(&self, blob_id: &str, size: u32) -> Option<Vec<u8>> {
        self.prefetched
            .get(blob_id)
            .filter(|b| b.len() == size as usize)
            .cloned()
    }
}

/// A listing made by `idle` at a push, kept for the reader's open.
pub(crate) struct FreshListing {
    /// The folder (as the reader names it) and its mailbox id.
    pub folder: String,
    pub id: String,
    /// The `Email/get` list (with headers).
    pub list: Vec<Value>,
    /// The account's `Email` state at that listing.
    pub email_state: Option<String>,
}

impl JmapSession {
    /// The look at a push that names a new `Email` state: the selected
    /// mailbox listed as its reader will list it (headers, and the first
    /// bodies where the server has `Blob/get`), in one request. Whether
    /// it holds other messages than the session knew; if so, the listing
    /// is kept for the reader's next open, so the push costs the reader
    /// that one request. A push for other mailboxes (the user's own mail,
    /// another device's inbox) costs the look and wakes nothing.
    pub(super) async fn look_at_push(&mut self, sel: &Selected) -> Result<bool, ImapError> {
        let before: std::collections::HashSet<String> = self
            .maps
            .get(&sel.id)
            .map(|m| m.by_id.keys().cloned().collect())
            .unwrap_or_default();
        self.last_listing = None;
        let (id, list) = self.list_mailbox(&sel.name, &HEADER_PROPS, true).await?;
        let email_state = self
            .last_listing
            .take()
            .filter(|(m, _)| *m == id)
            .map(|(_, s)| s);
        let now: std::collections::HashSet<&str> = list
            .iter()
            .filter_map(|e| e.get("id").and_then(Value::as_str))
            .collect();
        let changed = now.len() != before.len() || now.iter().any(|i| !before.contains(*i));
        if changed {
            self.fresh_listing = Some(FreshListing {
                folder: sel.name.clone(),
                id,
                list,
                email_state,
            });
        } else {
            self.selected_state = email_state;
        }
        Ok(changed)
    }
}

/// A `Blob/get` entry's id and bytes, if the server says they are the
/// whole blob and nothing went wrong with them.
fn whole_body(blob: &Value) -> Option<(String, Vec<u8>)> {
    // `isTruncated` says the range asked for ran past the blob's end (so
    // the data reaches it: Stalwart sets it for every blob shorter than
    // the prefetch); whether the data is the whole blob is told by its
    // length against `size` below.
    if blob.get("isEncodingProblem").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let id = blob.get("id")?.as_str()?;
    let size = blob.get("size")?.as_u64()?;
    let data = blob.get("data:asBase64")?.as_str()?;
    // A base64 text longer than a prefetch could be is not decoded.
    if data.len() > (PREFETCH_BYTES as usize).div_ceil(3) * 4 + 4 {
        return None;
    }
    let body = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()?;
    (body.len() as u64 == size).then(|| (id.to_owned(), body))
}

#[cfg(test)]
mod tests {
    use super::whole_body;
    use serde_json::json;

    #[test]
    fn only_whole_bodies_are_kept() {
        let whole = json!({"id": "b1", "data:asBase64": "aGVsbG8=", "size": 5});
        assert_eq!(whole_body(&whole), Some(("b1".into(), b"hello".to_vec())));
        // The first bytes of a longer blob.
        let cut = json!({"id": "b2", "data:asBase64": "aGVsbG8=", "size": 50000});
        assert_eq!(whole_body(&cut), None);
        // The range ran past the end: the data is the whole blob.
        let to_the_end =
            json!({"id": "b3", "data:asBase64": "aGVsbG8=", "size": 5, "isTruncated": true});
        assert_eq!(
            whole_body(&to_the_end),
            Some(("b3".into(), b"hello".to_vec()))
        );
        let problem =
            json!({"id": "b7", "data:asBase64": "aGVsbG8=", "size": 5, "isEncodingProblem": true});
        assert_eq!(whole_body(&problem), None);
        let not_base64 = json!({"id": "b4", "data:asBase64": "!!", "size": 1});
        assert_eq!(whole_body(&not_base64), None);
        let too_long = json!({"id": "b5", "data:asBase64": "A".repeat(50_000), "size": 37_500});
        assert_eq!(whole_body(&too_long), None);
        assert_eq!(whole_body(&json!({"id": "b6", "size": 5})), None);
    }
}

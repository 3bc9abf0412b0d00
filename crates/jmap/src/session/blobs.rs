//! Blobs of a [`JmapSession`]: upload, `Email/import`, download.

use std::time::Duration;

use reqwest::Url;
use serde_json::{json, Value};
use sma_imap::{ImapError, Uid};

use crate::http::{read_capped, take_ok, MIN_TRANSFER_RATE};

use super::JmapSession;

impl JmapSession {
    /// Fills in a URL template of the session (RFC 6570 level 1).
    pub(super) fn template(&self, t: &str, vars: &[(&str, &str)]) -> Result<Url, ImapError> {
        let mut s = t.to_owned();
        for (k, v) in vars {
            s = s.replace(&format!("{{{k}}}"), &encode(v));
        }
        let url = self.base.join(&s).map_err(|e| {
            ImapError::Protocol(format!(
                "the JMAP server's URL template {t:?} is invalid: {e}"
            ))
        })?;
        self.http.config.check_url(&url)?;
        Ok(url)
    }

    /// Uploads a message; returns its blob id.
    pub(super) async fn upload(&self, message: &[u8]) -> Result<String, ImapError> {
        if message.len() as u64 > self.max_upload {
            return Err(ImapError::InvalidArgument(format!(
                "the message is {} bytes, over the JMAP server's upload limit of {} bytes",
                message.len(),
                self.max_upload
            )));
        }
        let url = self.template(&self.upload_url, &[("accountId", &self.account_id)])?;
        let req = self
            .http
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "message/rfc822")
            .body(message.to_vec());
        let timeout = transfer_timeout(self.http.config.timeout, message.len() as u64);
        let body = self.http.send(req, "the upload", 64 << 10, timeout).await?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ImapError::Protocol(format!("the JMAP upload answer is not JSON: {e}")))?;
        v.get("blobId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ImapError::Protocol("the JMAP upload answer has no blobId".into()))
    }

    /// Imports uploaded blobs into a mailbox; returns the email ids.
    pub(super) async fn import(
        &mut self,
        folder: &str,
        blobs: &[String],
        keywords: &Value,
    ) -> Result<Vec<Option<Uid>>, ImapError> {
        let mailbox = self.resolve(folder).await?;
        let emails: serde_json::Map<String, Value> = blobs
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    format!("e{i}"),
                    json!({"blobId": b, "mailboxIds": {mailbox.clone(): true}, "keywords": keywords}),
                )
            })
            .collect();
        let what = format!("Email/import into {folder:?}");
        let r = self
            .api(
                vec![
                    json!(["Email/import", {"accountId": self.account_id, "emails": emails}, "i"]),
                ],
                &what,
            )
            .await?;
        let v = take_ok(&r, "i", &what)?;
        let mut out = Vec::with_capacity(blobs.len());
        for i in 0..blobs.len() {
            let key = format!("e{i}");
            if let Some(id) = v
                .pointer(&format!("/created/{key}/id"))
                .and_then(Value::as_str)
            {
                let counter = &mut self.counter;
                let uid = self
                    .maps
                    .get_mut(&mailbox)
                    .map(|m| m.add(id.to_owned(), counter));
                if let Some(size) = v
                    .pointer(&format!("/created/{key}/size"))
                    .and_then(Value::as_u64)
                {
                    if let (Some(m), Some(u)) = (self.maps.get_mut(&mailbox), uid) {
                        if let Some(e) = m.entries.get_mut(&u) {
                            e.size = Some(size.min(u32::MAX as u64) as u32);
                            e.blob_id = v
                                .pointer(&format!("/created/{key}/blobId"))
                                .and_then(Value::as_str)
                                .map(str::to_owned);
                        }
                    }
                }
                if self.selected.as_ref().is_some_and(|s| s.id == mailbox) {
                    self.changed = true;
                }
                out.push(uid);
            } else {
                let err = v.pointer(&format!("/notCreated/{key}"));
                let kind = err
                    .and_then(|e| e.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("unknown");
                let existing = err
                    .and_then(|e| e.get("existingId"))
                    .and_then(Value::as_str);
                if let (Some(id), "alreadyExists") = (existing, kind) {
                    // The server keeps one email per content: the same
                    // bytes in another mailbox (a broadcast) join it.
                    out.push(self.join_mailbox(&mailbox, folder, id).await?);
                    continue;
                }
                return Err(self.import_refused(err, kind, folder, what));
            }
        }
        Ok(out)
    }

    /// The error for an import the server refused (`notCreated` entry
    /// `err` of type `kind`): a mailbox it does not know is a folder gone.
    fn import_refused(
        &mut self,
        err: Option<&Value>,
        kind: &str,
        folder: &str,
        what: String,
    ) -> ImapError {
        let props = err
            .and_then(|e| e.get("properties"))
            .map(Value::to_string)
            .unwrap_or_default();
        if props.contains("mailboxIds") {
            self.tree = None;
            return ImapError::NoSuchFolder {
                folder: folder.to_owned(),
            };
        }
        ImapError::No {
            command: what,
            text: format!("{kind} {props}"),
        }
    }

    /// Adds the existing email `id` to `mailbox` (RFC 8621 `alreadyExists`
    /// on import) and numbers it there if the mailbox was listed in this
    /// session; it is then in several mailboxes.
    async fn join_mailbox(
        &mut self,
        mailbox: &str,
        folder: &str,
        id: &str,
    ) -> Result<Option<Uid>, ImapError> {
        let what = format!("Email/set adding an identical message to {folder:?}");
        let patch = json!({ format!("mailboxIds/{mailbox}"): true });
        let r = self
            .api(
                vec![json!(["Email/set", {
                    "accountId": self.account_id,
                    "update": { id: patch },
                }, "j"])],
                &what,
            )
            .await?;
        let v = take_ok(&r, "j", &what)?;
        if let Some(e) = v.get("notUpdated").and_then(|n| n.get(id)) {
            return Err(ImapError::No {
                command: what,
                text: e.to_string(),
            });
        }
        let counter = &mut self.counter;
        let uid = self.maps.get_mut(mailbox).map(|m| {
            let uid = m.add(id.to_owned(), counter);
            if let Some(e) = m.entries.get_mut(&uid) {
                e.shared = true;
            }
            uid
        });
        if self.selected.as_ref().is_some_and(|s| s.id == mailbox) {
            self.changed = true;
        }
        Ok(uid)
    }

    /// Downloads one blob, at most `cap` bytes.
    pub(super) async fn download(&self, blob_id: &str, cap: usize) -> Result<Vec<u8>, ImapError> {
        let url = self.template(
            &self.download_url,
            &[
                ("accountId", &self.account_id),
                ("blobId", blob_id),
                ("name", "message.eml"),
                ("type", "message/rfc822"),
            ],
        )?;
        let timeout = transfer_timeout(self.http.config.timeout, cap as u64);
        let req = self.http.client.get(url);
        let fut = async {
            let resp = self
                .http
                .auth(req)
                .send()
                .await
                .map_err(|e| self.http.transport_error(e, "a download"))?;
            let status = resp.status();
            if status == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !status.is_success() {
                let body = read_capped(resp, 16 << 10, "a download", true)
                    .await
                    .unwrap_or_default();
                return Err(self.http.status_error(status, &body, "a download"));
            }
            read_capped(resp, cap, "a download", false).await.map(Some)
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(Some(b))) => Ok(b),
            Ok(Ok(None)) => Err(ImapError::NoSuchFolder {
                folder: String::new(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ImapError::Timeout {
                what: "a download from the JMAP server".into(),
            }),
        }
    }
}

/// The request deadline plus the time `bytes` need at the minimum rate.
fn transfer_timeout(base: Duration, bytes: u64) -> Duration {
    base + Duration::from_secs(bytes / MIN_TRANSFER_RATE)
}

/// Percent-encodes a template value (RFC 6570 simple expansion).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// IMAP flags as JMAP keywords (`\Seen` → `$seen`, ...).
pub(super) fn keywords(flags: &[&str]) -> Result<Value, ImapError> {
    let mut k = serde_json::Map::new();
    for f in flags {
        let kw = match f.to_ascii_lowercase().as_str() {
            "\\seen" => "$seen".to_owned(),
            "\\flagged" => "$flagged".to_owned(),
            "\\answered" => "$answered".to_owned(),
            "\\draft" => "$draft".to_owned(),
            other if other.starts_with('\\') => {
                return Err(ImapError::InvalidArgument(format!(
                    "the flag {f} has no JMAP keyword"
                )))
            }
            other
                if other.is_empty()
                    || other.len() > 255
                    || other
                        .bytes()
                        .any(|b| !(0x21..0x7f).contains(&b) || b"(){]%*\"\\".contains(&b)) =>
            {
                return Err(ImapError::InvalidArgument(format!("invalid flag {f:?}")))
            }
            other => other.to_owned(),
        };
        k.insert(kw, Value::Bool(true));
    }
    Ok(Value::Object(k))
}

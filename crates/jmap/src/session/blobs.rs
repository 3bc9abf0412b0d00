//! Blobs of a [`JmapSession`]: upload, `Email/import`, download.

use std::time::Duration;

use reqwest::Url;
use serde_json::Value;
use sma_imap::ImapError;

use crate::http::{read_capped, MIN_TRANSFER_RATE};

use super::{JmapSession, MAX_STAGED};

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
        self.upload_task(message.to_vec()).await
    }

    /// The upload of `message` as a future that borrows nothing from the
    /// session (so that it can run on its own: [`Self::stage`]).
    pub(super) fn upload_task(
        &self,
        message: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<String, ImapError>> + Send + 'static {
        let prepared = if message.len() as u64 > self.max_upload {
            Err(ImapError::InvalidArgument(format!(
                "the message is {} bytes, over the JMAP server's upload limit of {} bytes",
                message.len(),
                self.max_upload
            )))
        } else {
            self.template(&self.upload_url, &[("accountId", &self.account_id)])
                .map(|url| (url, self.http.clone()))
        };
        async move {
            let (url, http) = prepared?;
            let timeout = transfer_timeout(http.config.timeout, message.len() as u64);
            let req = http
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "message/rfc822")
                .body(message);
            let body = http.send(req, "the upload", 64 << 10, timeout).await?;
            let v: Value = serde_json::from_slice(&body).map_err(|e| {
                ImapError::Protocol(format!("the JMAP upload answer is not JSON: {e}"))
            })?;
            v.get("blobId")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ImapError::Protocol("the JMAP upload answer has no blobId".into()))
        }
    }

    /// Starts uploading `message` on its own (a task beside the session's
    /// other requests, on a connection of its own), for an append of the
    /// same bytes later in the session ([`Self::upload_all`] takes it).
    /// At most [`MAX_STAGED`] wait; a further one replaces the oldest.
    pub(super) fn stage(&mut self, message: &[u8]) {
        if self.staged.len() >= MAX_STAGED {
            let (_, old) = self.staged.remove(0);
            old.abort();
        }
        let task = tokio::spawn(self.upload_task(message.to_vec()));
        self.staged.push((message.to_vec(), task));
    }

    /// The blob id of a staged upload of exactly `message`, if one was
    /// staged and succeeded (a failed one is uploaded again by the caller).
    pub(super) async fn take_staged(&mut self, message: &[u8]) -> Option<String> {
        let i = self.staged.iter().position(|(m, _)| m == message)?;
        let (_, task) = self.staged.remove(i);
        match task.await {
            Ok(Ok(blob)) => Some(blob),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the staged upload failed; uploading again");
                None
            }
            Err(_) => None,
        }
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

//! What `idle` uses besides the listing: the poll interval, the quick
//! look at the selected mailbox, and the event source.

use std::time::Duration;

use serde_json::json;
use sma_imap::ImapError;

use super::{
    JmapSession, Selected, IDLE_POLL, IDLE_POLL_QUIET, MAX_MESSAGES, PUSH_PING, QUICK_POLLS_FOR,
};
use crate::http::{strings, take};

impl JmapSession {
    /// How long to wait between polls now ([`IDLE_POLL`] soon after the
    /// last activity, [`IDLE_POLL_QUIET`] later).
    pub(super) fn poll_interval(&self) -> Duration {
        if self.active_at.elapsed() < QUICK_POLLS_FOR {
            IDLE_POLL
        } else {
            IDLE_POLL_QUIET
        }
    }

    /// The ids of the messages in the selected mailbox now (one query).
    async fn current_ids(&self, sel: &Selected) -> Result<Vec<String>, ImapError> {
        let what = format!("Email/query of {:?}", sel.name);
        let r = self
            .api(
                vec![json!(["Email/query", {
                    "accountId": self.account_id,
                    "filter": {"inMailbox": sel.id},
                    "limit": MAX_MESSAGES,
                }, "q"])],
                &what,
            )
            .await?;
        let q = match take(&r, "q", &what)? {
            Ok(q) => q,
            Err(e) if e.kind == "invalidArguments" => {
                return Err(ImapError::NoSuchFolder {
                    folder: sel.name.clone(),
                })
            }
            Err(e) => return Err(e.clone().into_imap(&what)),
        };
        Ok(strings(q.get("ids")))
    }

    /// Whether the selected mailbox holds other messages than this session
    /// last saw.
    pub(super) async fn selected_changed(&self, sel: &Selected) -> Result<bool, ImapError> {
        let ids = self.current_ids(sel).await?;
        Ok(!self.maps.get(&sel.id).is_some_and(|m| m.same_ids(&ids)))
    }

    /// Whether the server pushes changes: its event source answers with
    /// an event stream (which is closed again at once). `false` without
    /// an event-source URL, or when it answers otherwise (Debian's Cyrus:
    /// `204 No Content`); then `idle` polls.
    pub async fn push_available(&mut self) -> bool {
        self.open_events().await.is_some()
    }

    /// Opens the event source for email and mailbox changes; `None` when
    /// the server has none, answers without an event stream (then the
    /// session stops trying) or cannot be reached.
    pub(super) async fn open_events(&mut self) -> Option<crate::push::EventStream> {
        let t = self.event_source_url.clone().filter(|_| self.push)?;
        let ping = PUSH_PING.to_string();
        let url = self
            .template(
                &t,
                &[
                    ("types", "Email,Mailbox"),
                    ("closeafter", "no"),
                    ("ping", &ping),
                ],
            )
            .ok()?;
        let req = self
            .http
            .push_client
            .get(url)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let sent = tokio::time::timeout(self.http.config.timeout, self.http.auth(req).send()).await;
        match sent {
            Ok(Ok(resp)) => {
                let es = crate::push::EventStream::from_response(resp);
                if es.is_none() {
                    tracing::debug!("the JMAP event source answered without events: polling");
                    self.push = false;
                }
                es
            }
            _ => None,
        }
    }
}

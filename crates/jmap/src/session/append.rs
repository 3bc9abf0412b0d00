//! Appending on a [`JmapSession`]: uploads side by side, then one
//! `Email/import` — with the folders' listings ahead of it in the same
//! request when the caller wants each folder's status from before the
//! message arrived (`status_and_append`).

use serde_json::{json, Value};
use sma_imap::{CheckedAppend, ImapError, Uid};

use crate::http::{take, take_ok, MethodResponse};

use super::{JmapSession, LIST_PROPS, PARALLEL_DOWNLOADS};

impl JmapSession {
    /// Uploads `messages` (at most [`PARALLEL_DOWNLOADS`] side by side);
    /// returns their blob ids in order.
    /// A message staged earlier ([`Self::stage`]) is not uploaded again,
    /// and identical messages (a broadcast) are uploaded once.
    pub(super) async fn upload_all(
        &mut self,
        messages: &[&[u8]],
    ) -> Result<Vec<String>, ImapError> {
        let mut blobs: Vec<Option<String>> = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let same = messages[..i].iter().position(|p| p == m);
            blobs.push(match same {
                Some(j) => blobs[j].clone(),
                None => self.take_staged(m).await,
            });
        }
        let missing: Vec<usize> = (0..messages.len())
            .filter(|&i| blobs[i].is_none() && !messages[..i].contains(&messages[i]))
            .collect();
        for chunk in missing.chunks(PARALLEL_DOWNLOADS) {
            let this = &*self;
            let futs: Vec<_> = chunk.iter().map(|&i| this.upload(messages[i])).collect();
            for (&i, r) in chunk.iter().zip(futures::future::join_all(futs).await) {
                blobs[i] = Some(r?);
            }
        }
        (0..messages.len())
            .map(|i| {
                let first = messages.iter().position(|p| *p == messages[i]).unwrap_or(i);
                blobs[first]
                    .clone()
                    .ok_or_else(|| ImapError::Protocol("an upload gave no blob id".into()))
            })
            .collect()
    }

    /// Imports uploaded blobs into a mailbox; returns their UIDs. A
    /// mailbox id taken from the session cache that turned out stale (the
    /// folder was deleted and made again) is looked up once more.
    pub(super) async fn import(
        &mut self,
        folder: &str,
        blobs: &[String],
        keywords: &Value,
    ) -> Result<Vec<Option<Uid>>, ImapError> {
        let mut mailbox = self.resolve(folder).await?;
        for attempt in 0..2 {
            match self.import_into(&mailbox, folder, blobs, keywords).await {
                Err(ImapError::NoSuchFolder { .. }) if attempt == 0 && !self.tree_fresh => {
                    mailbox = self.resolve_fresh(folder).await?;
                }
                r => return r,
            }
        }
        Err(ImapError::NoSuchFolder {
            folder: folder.to_owned(),
        })
    }

    /// `Email/import` of `blobs` (as `e0`, `e1`, …), each into every
    /// mailbox of `mailboxes`.
    fn import_call(
        &self,
        mailboxes: &[&str],
        blobs: &[String],
        keywords: &Value,
        id: &str,
    ) -> Value {
        let boxes: serde_json::Map<String, Value> = mailboxes
            .iter()
            .map(|m| (m.to_string(), Value::Bool(true)))
            .collect();
        let emails: serde_json::Map<String, Value> = blobs
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    format!("e{i}"),
                    json!({"blobId": b, "mailboxIds": boxes, "keywords": keywords}),
                )
            })
            .collect();
        json!(["Email/import", {"accountId": self.account_id, "emails": emails}, id])
    }

    async fn import_into(
        &mut self,
        mailbox: &str,
        folder: &str,
        blobs: &[String],
        keywords: &Value,
    ) -> Result<Vec<Option<Uid>>, ImapError> {
        let what = format!("Email/import into {folder:?}");
        let call = self.import_call(&[mailbox], blobs, keywords, "i");
        let r = self.api(vec![call], &what).await?;
        let v = take_ok(&r, "i", &what)?.clone();
        let mut out = Vec::with_capacity(blobs.len());
        for i in 0..blobs.len() {
            let key = format!("e{i}");
            out.push(
                self.imported(&v, &key, (mailbox, false), folder, &what)
                    .await?,
            );
        }
        Ok(out)
    }

    /// The UID of the email created as `key` in an `Email/import` answer
    /// `v`, numbered in `mailbox`'s map if the session listed it; `shared`
    /// when it was imported into other mailboxes too.
    async fn imported(
        &mut self,
        v: &Value,
        key: &str,
        (mailbox, shared): (&str, bool),
        folder: &str,
        what: &str,
    ) -> Result<Option<Uid>, ImapError> {
        let Some(id) = v
            .pointer(&format!("/created/{key}/id"))
            .and_then(Value::as_str)
        else {
            let err = v.pointer(&format!("/notCreated/{key}"));
            let kind = err
                .and_then(|e| e.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            let existing = err
                .and_then(|e| e.get("existingId"))
                .and_then(Value::as_str);
            if let (Some(id), "alreadyExists") = (existing, kind) {
                // The server keeps one email per content: the same bytes
                // in another mailbox (a broadcast) join it.
                return self.join_mailbox(mailbox, folder, id).await;
            }
            return Err(self.import_refused(err, kind, folder, what.to_owned()));
        };
        let counter = &mut self.counter;
        let uid = self
            .maps
            .get_mut(mailbox)
            .map(|m| m.add(id.to_owned(), counter));
        let created = |f: &str| v.pointer(&format!("/created/{key}/{f}"));
        if let (Some(size), Some(m), Some(u)) = (
            created("size").and_then(Value::as_u64),
            self.maps.get_mut(mailbox),
            uid,
        ) {
            if let Some(e) = m.entries.get_mut(&u) {
                e.size = Some(size.min(u32::MAX as u64) as u32);
                e.blob_id = created("blobId").and_then(Value::as_str).map(str::to_owned);
            }
        }
        if let (Some(m), Some(u)) = (self.maps.get_mut(mailbox), uid) {
            if let Some(e) = m.entries.get_mut(&u) {
                e.shared |= shared;
            }
        }
        if self.selected.as_ref().is_some_and(|s| s.id == mailbox) {
            self.changed = true;
        }
        self.selected_state = None;
        self.active_at = tokio::time::Instant::now();
        Ok(uid)
    }

    /// Appends each `(folder, message)` with the folder's status from
    /// before: the uploads side by side, then one request holding, for
    /// every item, the folder's listing and the message's `Email/import`
    /// (JMAP runs a request's calls in order, so each listing is from
    /// before its import). Mailbox ids come from the session's tree; one
    /// taken from the cache that turned out stale is looked up again and
    /// that item retried alone.
    pub(super) async fn status_and_import(
        &mut self,
        items: &[(&str, &[u8])],
    ) -> Result<Vec<CheckedAppend>, ImapError> {
        let messages: Vec<&[u8]> = items.iter().map(|(_, m)| *m).collect();
        let blobs = self.upload_all(&messages).await?;
        let folders: Vec<&str> = items.iter().map(|(f, _)| *f).collect();
        let ids = self.mailbox_ids(&folders).await?;
        // Identical messages (a broadcast) are one email in all their
        // mailboxes: one import, as JMAP allows (Cyrus would refuse the
        // second import of the same content anyway).
        let group: Vec<usize> = (0..items.len())
            .map(|i| messages.iter().position(|m| *m == messages[i]).unwrap_or(i))
            .collect();
        let mut calls = vec![];
        for (i, id) in ids.iter().enumerate() {
            if let Some(id) = id {
                calls.extend(self.listing_calls(id, &i.to_string(), &LIST_PROPS));
            }
        }
        for g in (0..items.len()).filter(|&i| group[i] == i) {
            let boxes: Vec<&str> = (0..items.len())
                .filter(|&i| group[i] == g)
                .filter_map(|i| ids[i].as_deref())
                .collect();
            if !boxes.is_empty() {
                let blob = std::slice::from_ref(&blobs[g]);
                calls.push(self.import_call(&boxes, blob, &json!({}), &format!("i{g}")));
            }
        }
        let r = if calls.is_empty() {
            vec![]
        } else {
            self.api(calls, "STATUS and APPEND of several folders")
                .await?
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, (folder, id)) in folders.iter().zip(&ids).enumerate() {
            let shared = group.iter().filter(|&&g| g == group[i]).count() > 1;
            let checked = match id {
                Some(id) => {
                    self.checked_append(&r, (i, group[i]), (id, shared), folder)
                        .await?
                }
                None => None,
            };
            out.push(match checked {
                Some(c) => c,
                // Unknown, or stale in the cache: on its own, afresh.
                None => self.status_then_import(folder, &blobs[i]).await?,
            });
        }
        Ok(out)
    }

    /// Item `i` of [`Self::status_and_import`]'s answer, whose message
    /// was imported as call `i<g>` (`shared` with other items' mailboxes);
    /// `None` when a mailbox id of the import was unknown to the server
    /// and came from the cache.
    async fn checked_append(
        &mut self,
        r: &[MethodResponse],
        (i, g): (usize, usize),
        (id, shared): (&str, bool),
        folder: &str,
    ) -> Result<Option<CheckedAppend>, ImapError> {
        let tag = i.to_string();
        let status = self
            .absorb_listing(r, id, folder, &tag)
            .map(|_| self.status_of(id));
        let what = format!("Email/import into {folder:?}");
        let appended = match take(r, &format!("i{g}"), &what)? {
            Ok(v) => {
                self.imported(&v.clone(), "e0", (id, shared), folder, &what)
                    .await
            }
            Err(e) => Err(e.clone().into_imap(&what)),
        };
        let stale = |e: &Result<_, ImapError>| matches!(e, Err(ImapError::NoSuchFolder { .. }));
        if stale(&appended) && !self.tree_fresh {
            self.tree = None;
            return Ok(None);
        }
        match appended {
            Err(e) if e.is_connection_lost() => Err(e),
            appended => Ok(Some(CheckedAppend { status, appended })),
        }
    }

    /// One item alone: the folder's status, then the import.
    async fn status_then_import(
        &mut self,
        folder: &str,
        blob: &str,
    ) -> Result<CheckedAppend, ImapError> {
        let lost = |e: &ImapError| e.is_connection_lost();
        let status = match self.list_mailbox(folder, &LIST_PROPS, false).await {
            Ok((id, _)) => Ok(self.status_of(&id)),
            Err(e) if lost(&e) => return Err(e),
            Err(e) => Err(e),
        };
        let appended = match self.import(folder, &[blob.to_owned()], &json!({})).await {
            Ok(mut uids) => Ok(uids.pop().flatten()),
            Err(e) if lost(&e) => return Err(e),
            Err(e) => Err(e),
        };
        Ok(CheckedAppend { status, appended })
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
        self.selected_state = None;
        Ok(uid)
    }
}

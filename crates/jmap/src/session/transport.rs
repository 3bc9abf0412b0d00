//! The [`Transport`](sma_imap::Transport) implementation of [`JmapSession`].

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use sma_imap::{
    Capabilities, CheckedAppend, CreateOutcome, FetchedHeader, FetchedMessage, FolderInfo,
    IdleOutcome, ImapError, MailboxState, MailboxStatus, Namespace, Transport, Uid, UidRange,
};

use crate::http::take_ok;
use crate::names::list_match;

use super::blobs::keywords;
use super::{
    JmapSession, Selected, HEADER_PROPS, LIST_PROPS, MAX_MESSAGES, PARALLEL_DOWNLOADS, PUSH_SILENCE,
};

impl Transport for JmapSession {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    async fn namespace(&mut self) -> Result<Namespace, ImapError> {
        Ok(self.namespace.clone())
    }

    async fn list(&mut self, reference: &str, pattern: &str) -> Result<Vec<FolderInfo>, ImapError> {
        let full = format!("{reference}{pattern}");
        let ns = self.namespace.clone();
        let tree = self.refresh_tree().await?;
        Ok(tree
            .folders(&ns)
            .into_iter()
            .filter(|f| list_match(&full, &f.name, ns.delimiter))
            .collect())
    }

    async fn list_subscribed(&mut self, pattern: &str) -> Result<Vec<String>, ImapError> {
        let ns = self.namespace.clone();
        let tree = self.refresh_tree().await?;
        let mut out: Vec<String> = tree
            .mailboxes
            .iter()
            .filter(|m| m.is_subscribed)
            .filter_map(|m| tree.full.get(&m.id).cloned())
            .filter(|n| list_match(pattern, n, ns.delimiter))
            .collect();
        out.sort();
        Ok(out)
    }

    async fn create(&mut self, folder: &str) -> Result<CreateOutcome, ImapError> {
        let ns = self.namespace.clone();
        let tree = self.refresh_tree().await?;
        if tree.id_of(folder).is_some() {
            return Ok(CreateOutcome::AlreadyExisted);
        }
        let what = format!("Mailbox/set create {folder:?}");
        let Some((parent, names)) = tree.plan_create(folder, &ns) else {
            return Err(ImapError::No {
                command: what,
                text: format!(
                    "the name is outside the personal namespace {:?} of this account",
                    ns.prefix
                ),
            });
        };
        let mut create = serde_json::Map::new();
        for (i, name) in names.iter().enumerate() {
            let parent_id = if i == 0 {
                parent.clone().map_or(Value::Null, Value::String)
            } else {
                Value::String(format!("#c{}", i - 1))
            };
            create.insert(
                format!("c{i}"),
                json!({"name": name, "parentId": parent_id, "isSubscribed": false}),
            );
        }
        let r = self
            .api(
                vec![json!(["Mailbox/set", {"accountId": self.account_id, "create": create}, "s"])],
                &what,
            )
            .await?;
        let v = take_ok(&r, "s", &what)?.clone();
        let last = format!("c{}", names.len() - 1);
        if v.pointer(&format!("/created/{last}/id")).is_some() {
            self.tree = None;
            return Ok(CreateOutcome::Created);
        }
        // Refused: "exists" if it is there now (another client, a race).
        if self.refresh_tree().await?.id_of(folder).is_some() {
            return Ok(CreateOutcome::AlreadyExisted);
        }
        Err(ImapError::No {
            command: what,
            text: v
                .get("notCreated")
                .map(Value::to_string)
                .unwrap_or_else(|| "not created".into()),
        })
    }

    async fn delete(&mut self, folder: &str) -> Result<(), ImapError> {
        let id = self.resolve_fresh(folder).await?;
        let what = format!("Mailbox/set destroy {folder:?}");
        let r = self
            .api(
                vec![json!(["Mailbox/set", {
                    "accountId": self.account_id,
                    "destroy": [id],
                    "onDestroyRemoveEmails": true,
                }, "s"])],
                &what,
            )
            .await?;
        let v = take_ok(&r, "s", &what)?;
        self.tree = None;
        if let Some(e) = v.pointer(&format!("/notDestroyed/{id}")) {
            return Err(match e.get("type").and_then(Value::as_str) {
                Some("notFound") => ImapError::NoSuchFolder {
                    folder: folder.to_owned(),
                },
                _ => ImapError::No {
                    command: what,
                    text: e.to_string(),
                },
            });
        }
        self.maps.remove(&id);
        if self.selected.as_ref().is_some_and(|s| s.id == id) {
            self.selected = None;
        }
        Ok(())
    }

    async fn subscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        self.set_subscribed(folder, true).await
    }

    async fn unsubscribe(&mut self, folder: &str) -> Result<(), ImapError> {
        match self.set_subscribed(folder, false).await {
            Err(ImapError::NoSuchFolder { .. }) => Ok(()),
            r => r,
        }
    }

    async fn append(
        &mut self,
        folder: &str,
        flags: &[&str],
        message: &[u8],
    ) -> Result<Option<Uid>, ImapError> {
        let keywords = keywords(flags)?;
        let blob = self.upload(message).await?;
        let mut uids = self.import(folder, &[blob], &keywords).await?;
        Ok(uids.pop().flatten())
    }

    async fn append_all(
        &mut self,
        folder: &str,
        messages: &[&[u8]],
    ) -> Result<Vec<Option<Uid>>, ImapError> {
        if messages.is_empty() {
            return Ok(vec![]);
        }
        let blobs = self.upload_all(messages).await?;
        self.import(folder, &blobs, &json!({})).await
    }

    fn stage_append(&mut self, message: &[u8]) {
        self.stage(message);
    }

    async fn status_and_append(
        &mut self,
        items: &[(&str, &[u8])],
    ) -> Result<Vec<CheckedAppend>, ImapError> {
        self.status_and_import(items).await
    }

    async fn select(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        Ok(self.open(folder, &LIST_PROPS, false).await?.0)
    }

    async fn examine(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        Ok(self.open(folder, &LIST_PROPS, false).await?.0)
    }

    async fn status(&mut self, folder: &str) -> Result<MailboxStatus, ImapError> {
        let (id, _) = self.list_mailbox(folder, &LIST_PROPS, false).await?;
        Ok(self.status_of(&id))
    }

    async fn status_many(
        &mut self,
        folders: &[&str],
    ) -> Result<Vec<Result<MailboxStatus, ImapError>>, ImapError> {
        self.statuses(folders).await
    }

    async fn open_and_fetch_headers(
        &mut self,
        folder: &str,
        _read_only: bool,
        uids: UidRange,
        prefetch_from: Option<Uid>,
    ) -> Result<(MailboxState, Vec<FetchedHeader>), ImapError> {
        let prefetch = prefetch_from.is_some();
        let (state, list) = self.open(folder, &HEADER_PROPS, prefetch).await?;
        let id = self.selected()?.id;
        Ok((state, self.headers_in(&id, &list, uids)))
    }

    async fn fetch_headers(&mut self, uids: UidRange) -> Result<Vec<FetchedHeader>, ImapError> {
        let sel = self.selected()?;
        let (_, list) = self.list_mailbox(&sel.name, &HEADER_PROPS, false).await?;
        Ok(self.headers_in(&sel.id, &list, uids))
    }

    async fn fetch_messages(
        &mut self,
        uids: &[Uid],
        max_size: u32,
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        let sel = self.selected()?;
        let known = |s: &Self| {
            s.maps.get(&sel.id).is_some_and(|m| {
                uids.iter().all(|u| {
                    m.entries
                        .get(u)
                        .is_none_or(|e| e.size.is_some() && e.blob_id.is_some())
                })
            })
        };
        if !known(self) {
            self.list_mailbox(&sel.name, &LIST_PROPS, false).await?;
        }
        let mut wanted: Vec<(Uid, u32, Option<String>)> = {
            let Some(map) = self.maps.get(&sel.id) else {
                return Ok(vec![]);
            };
            uids.iter()
                .filter_map(|u| {
                    let e = map.entries.get(u)?;
                    Some((*u, e.size?, e.blob_id.clone()))
                })
                .collect()
        };
        wanted.sort_by_key(|w| w.0);
        wanted.dedup_by_key(|w| w.0);
        let this = &*self;
        let results =
            futures::stream::iter(wanted.into_iter().map(|(uid, size, blob)| async move {
                if size > max_size {
                    return Ok(Some(FetchedMessage {
                        uid,
                        size,
                        body: None,
                    }));
                }
                let Some(blob) = blob else { return Ok(None) };
                if let Some(body) = this.prefetched_body(&blob, size) {
                    return Ok(Some(FetchedMessage {
                        uid,
                        size,
                        body: Some(body),
                    }));
                }
                let cap = (size as usize).saturating_add(sma_imap::BODY_SLACK as usize);
                match this.download(&blob, cap).await {
                    Ok(body) => Ok(Some(FetchedMessage {
                        uid,
                        size,
                        body: Some(body),
                    })),
                    // Gone since it was listed.
                    Err(ImapError::NoSuchFolder { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }))
            .buffered(PARALLEL_DOWNLOADS)
            .collect::<Vec<_>>()
            .await;
        let mut out = vec![];
        for r in results {
            if let Some(m) = r? {
                out.push(m);
            }
        }
        Ok(out)
    }

    async fn search_header(&mut self, name: &str, value: &str) -> Result<Vec<Uid>, ImapError> {
        let sel = self.selected()?;
        let what = format!("Email/query by header in {:?}", sel.name);
        let mut calls = self.listing_calls(&sel.id, "", &LIST_PROPS);
        calls.push(json!(["Email/query", {
            "accountId": self.account_id,
            "filter": {"operator": "AND", "conditions": [
                {"inMailbox": sel.id},
                {"header": [name, value]},
            ]},
            "limit": MAX_MESSAGES,
        }, "h"]));
        let r = self.api(calls, &what).await?;
        self.absorb_listing(&r, &sel.id, &sel.name, "")?;
        let h = take_ok(&r, "h", &what)?;
        let map = self.maps.get(&sel.id);
        let mut out: Vec<Uid> = h
            .get("ids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| map?.by_id.get(i.as_str()?).copied())
            .collect();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    async fn delete_messages(&mut self, uids: &[Uid]) -> Result<(), ImapError> {
        let sel = self.selected()?;
        let ids = self.email_ids(&sel, uids);
        if ids.is_empty() {
            return Ok(());
        }
        // An email in other mailboxes too only leaves this one.
        let (shared, single): (Vec<_>, Vec<_>) = ids
            .iter()
            .cloned()
            .partition(|(u, _)| self.is_shared(&sel, *u));
        let leave = format!("mailboxIds/{}", sel.id);
        let update: serde_json::Map<String, Value> = shared
            .iter()
            .map(|(_, id)| (id.clone(), json!({ leave.clone(): null })))
            .collect();
        let mut set_args = json!({ "accountId": self.account_id });
        if !single.is_empty() {
            set_args["destroy"] = json!(single.iter().map(|(_, i)| i).collect::<Vec<_>>());
        }
        if !update.is_empty() {
            set_args["update"] = Value::Object(update);
        }
        let what = format!("Email/set destroy in {:?}", sel.name);
        self.selected_state = None;
        self.fresh_listing = None;
        let r = self
            .api(vec![json!(["Email/set", set_args, "d"])], &what)
            .await?;
        let v = take_ok(&r, "d", &what)?.clone();
        self.forget_done(&sel, &single, v.get("notDestroyed"), what.clone())?;
        self.forget_done(&sel, &shared, v.get("notUpdated"), what)
    }

    async fn move_messages(
        &mut self,
        uids: &[Uid],
        dest: &str,
    ) -> Result<Option<Vec<Uid>>, ImapError> {
        let sel = self.selected()?;
        let dest_id = self.resolve_fresh(dest).await?;
        let ids = self.email_ids(&sel, uids);
        if ids.is_empty() {
            return Ok(None);
        }
        let what = format!("Email/set move from {:?} to {dest:?}", sel.name);
        let update: serde_json::Map<String, Value> = ids
            .iter()
            .map(|(_, id)| {
                let patch = json!({
                    format!("mailboxIds/{}", sel.id): null,
                    format!("mailboxIds/{dest_id}"): true,
                });
                (id.clone(), patch)
            })
            .collect();
        self.selected_state = None;
        let r = self
            .api(
                vec![json!(["Email/set", {"accountId": self.account_id, "update": update}, "m"])],
                &what,
            )
            .await?;
        let v = take_ok(&r, "m", &what)?;
        self.forget_done(&sel, &ids, v.get("notUpdated"), what)?;
        Ok(None)
    }

    async fn idle(&mut self, timeout: Duration) -> Result<IdleOutcome, ImapError> {
        let sel = self.selected()?;
        let deadline = tokio::time::Instant::now() + timeout;
        if std::mem::take(&mut self.changed) {
            self.active_at = tokio::time::Instant::now();
            return Ok(IdleOutcome::Changed);
        }
        // Listen first, then look: a change after the look is pushed.
        let mut events = self.open_events().await;
        let mut look = true;
        loop {
            if look && self.selected_changed(&sel).await? {
                self.active_at = tokio::time::Instant::now();
                return Ok(IdleOutcome::Changed);
            }
            look = true;
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(IdleOutcome::TimedOut);
            }
            match &mut events {
                Some(es) => {
                    let until = deadline.min(now + PUSH_SILENCE);
                    match tokio::time::timeout_at(until, es.next()).await {
                        Err(_) if until == deadline => return Ok(IdleOutcome::TimedOut),
                        // Silent past its pings: poll from now on.
                        Err(_) => events = None,
                        Ok(Ok(Some(crate::push::Event::State(data)))) => {
                            match crate::push::email_state(&data, &self.account_id) {
                                // No email of this account changed.
                                Ok(None) => look = false,
                                // Nothing new since the mailbox was listed.
                                Ok(Some(s)) if self.selected_state.as_ref() == Some(&s) => {
                                    look = false
                                }
                                // Emails changed: look at the mailbox as
                                // its reader will (kept for it).
                                Ok(Some(_)) => {
                                    if self.look_at_push(&sel).await? {
                                        self.active_at = tokio::time::Instant::now();
                                        return Ok(IdleOutcome::Changed);
                                    }
                                    look = false;
                                }
                                // Unreadable: look for ourselves.
                                Err(()) => {}
                            }
                        }
                        // A ping: nothing to look at.
                        Ok(Ok(Some(crate::push::Event::Other))) => look = false,
                        // Closed or broken: poll for the rest of this wait.
                        Ok(Ok(None)) | Ok(Err(_)) => events = None,
                    }
                }
                None => tokio::time::sleep((deadline - now).min(self.poll_interval())).await,
            }
        }
    }

    async fn noop(&mut self) -> Result<(), ImapError> {
        let r = self
            .api(vec![json!(["Core/echo", {}, "n"])], "Core/echo")
            .await?;
        take_ok(&r, "n", "Core/echo").map(|_| ())
    }

    async fn logout(self) -> Result<(), ImapError> {
        Ok(())
    }

    async fn reconnect(&mut self) -> Result<(), ImapError> {
        let config = (*self.http.config).clone();
        *self = JmapSession::connect(&config).await?;
        Ok(())
    }
}

impl JmapSession {
    /// Whether the email at `uid` of the selected mailbox was in other
    /// mailboxes too when last listed.
    fn is_shared(&self, sel: &Selected, uid: Uid) -> bool {
        self.maps
            .get(&sel.id)
            .and_then(|m| m.entries.get(&uid))
            .is_some_and(|e| e.shared)
    }

    /// The JMAP ids of `uids` in the selected mailbox (those it knows).
    fn email_ids(&self, sel: &Selected, uids: &[Uid]) -> Vec<(Uid, String)> {
        match self.maps.get(&sel.id) {
            Some(m) => uids
                .iter()
                .filter_map(|u| Some((*u, m.entries.get(u)?.id.clone())))
                .collect(),
            None => vec![],
        }
    }

    /// After an `Email/set` that takes `ids` out of the selected mailbox:
    /// forgets the UIDs it took out (or that were gone already), and fails
    /// naming those `not_done` (`notDestroyed`/`notUpdated`) kept.
    fn forget_done(
        &mut self,
        sel: &Selected,
        ids: &[(Uid, String)],
        not_done: Option<&Value>,
        what: String,
    ) -> Result<(), ImapError> {
        let mut failed = vec![];
        for (uid, id) in ids {
            match not_done.and_then(|n| n.get(id)) {
                Some(e) if e.get("type").and_then(Value::as_str) != Some("notFound") => {
                    failed.push(format!("UID {uid}: {e}"))
                }
                _ => {
                    if let Some(m) = self.maps.get_mut(&sel.id) {
                        m.remove_uid(*uid);
                    }
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(ImapError::No {
                command: what,
                text: failed.join("; "),
            })
        }
    }
}

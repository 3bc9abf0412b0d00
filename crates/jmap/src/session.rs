//! [`JmapSession`]: one JMAP session, and its [`Transport`] implementation.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use reqwest::Url;
use serde_json::{json, Value};
use sma_imap::{
    Capabilities, CreateOutcome, FetchedHeader, FetchedMessage, FolderInfo, IdleOutcome, ImapError,
    MailboxState, MailboxStatus, Namespace, Transport, Uid, UidRange,
};

use crate::config::JmapConfig;
use crate::http::{read_capped, take, take_ok, Http, MAX_SESSION_SIZE, MIN_TRANSFER_RATE};
use crate::names::{list_match, Tree};
use crate::uids::{new_validity, Listed, UidMap};

/// The most messages of one mailbox a session lists.
pub const MAX_MESSAGES: usize = 100_000;
/// How often [`Transport::idle`] asks whether the selected mailbox changed.
pub const IDLE_POLL: Duration = Duration::from_millis(250);
/// The ping interval asked of the event source, in seconds.
pub const PUSH_PING: u64 = 15;
/// Silence on the event source after which it counts as dead (then the
/// session polls).
const PUSH_SILENCE: Duration = Duration::from_secs(2 * PUSH_PING + 5);
/// Downloads run side by side, at most this many.
const PARALLEL_DOWNLOADS: usize = 4;
/// Email properties of a listing.
const LIST_PROPS: [&str; 4] = ["id", "receivedAt", "size", "blobId"];
/// The same with the header fields.
const HEADER_PROPS: [&str; 5] = ["id", "receivedAt", "size", "blobId", "headers"];

/// The mailbox operations act on ([`Transport::select`]).
#[derive(Clone, Debug)]
struct Selected {
    id: String,
    name: String,
}

/// One JMAP session (RFC 8620) on the primary mail account, usable as an
/// sma [`Transport`]. See the crate documentation for how folders and UIDs
/// map.
pub struct JmapSession {
    http: Http,
    account_id: String,
    api_url: Url,
    upload_url: String,
    download_url: String,
    event_source_url: Option<String>,
    base: Url,
    namespace: Namespace,
    caps: Capabilities,
    uid_validity: u32,
    counter: Uid,
    max_upload: u64,
    tree: Option<Tree>,
    maps: HashMap<String, UidMap>,
    selected: Option<Selected>,
    changed: bool,
    /// Whether the event source may work (cleared when it answered
    /// without an event stream).
    push: bool,
}

impl std::fmt::Debug for JmapSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JmapSession")
            .field("account_id", &self.account_id)
            .field("api_url", &self.api_url.as_str())
            .field("uid_validity", &self.uid_validity)
            .finish_non_exhaustive()
    }
}

impl JmapSession {
    /// Fetches the session resource and picks the primary mail account
    /// and the API, upload, download and event-source URLs. Refuses
    /// `http://` to hosts that are not loopback unless
    /// [`JmapConfig::allow_insecure`]; a rejected login is
    /// [`ImapError::AuthRejected`] (or `TokenRejected` for a Bearer token).
    pub async fn connect(config: &JmapConfig) -> Result<JmapSession, ImapError> {
        let base = Url::parse(&config.session_url).map_err(|e| {
            ImapError::InvalidArgument(format!(
                "the JMAP session URL {:?} is not a URL: {e}",
                config.session_url
            ))
        })?;
        config.check_url(&base)?;
        let http = Http::new(config.clone())?;
        let req = http.client.get(base.clone());
        let body = http
            .send(
                req,
                "the session resource",
                MAX_SESSION_SIZE,
                config.timeout,
            )
            .await?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            ImapError::Protocol(format!("the JMAP session resource is not JSON: {e}"))
        })?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let proto = |what: &str| ImapError::Protocol(format!("the JMAP session resource {what}"));
        if v.pointer("/capabilities/urn:ietf:params:jmap:mail")
            .is_none()
        {
            return Err(proto("does not offer mail (urn:ietf:params:jmap:mail)"));
        }
        let account_id = v
            .pointer("/primaryAccounts/urn:ietf:params:jmap:mail")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| proto("names no primary mail account"))?;
        let api = s("apiUrl").ok_or_else(|| proto("has no apiUrl"))?;
        let api_url = base
            .join(&api)
            .map_err(|e| proto(&format!("has an invalid apiUrl: {e}")))?;
        config.check_url(&api_url)?;
        let upload_url = s("uploadUrl").ok_or_else(|| proto("has no uploadUrl"))?;
        let download_url = s("downloadUrl").ok_or_else(|| proto("has no downloadUrl"))?;
        let max_upload = v
            .pointer("/capabilities/urn:ietf:params:jmap:core/maxSizeUpload")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        let cyrus = v
            .get("capabilities")
            .and_then(Value::as_object)
            .is_some_and(|c| c.keys().any(|k| k.contains("cyrusimap.org")));
        let namespace = config.imap_namespace.clone().unwrap_or(if cyrus {
            Namespace {
                prefix: "INBOX.".into(),
                delimiter: Some('.'),
            }
        } else {
            Namespace {
                prefix: String::new(),
                delimiter: Some('/'),
            }
        });
        let caps = Capabilities::from_raw(
            ["JMAP", "IDLE", "UIDPLUS", "MOVE", "NAMESPACE"]
                .map(String::from)
                .to_vec(),
        );
        Ok(JmapSession {
            http,
            account_id,
            api_url,
            upload_url,
            download_url,
            event_source_url: s("eventSourceUrl"),
            base,
            namespace,
            caps,
            uid_validity: new_validity(),
            counter: 1,
            max_upload,
            tree: None,
            maps: HashMap::new(),
            selected: None,
            changed: false,
            push: true,
        })
    }

    /// The JMAP account the session works on.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The session's UIDVALIDITY (one for every mailbox, new with every
    /// session).
    pub fn uid_validity(&self) -> u32 {
        self.uid_validity
    }

    /// The event-source URL the server named, if any.
    pub fn event_source_url(&self) -> Option<&str> {
        self.event_source_url.as_deref()
    }

    async fn api(
        &self,
        calls: Vec<Value>,
        what: &str,
    ) -> Result<Vec<crate::http::MethodResponse>, ImapError> {
        self.http.api(&self.api_url, calls, what).await
    }

    fn mailbox_get_call(&self, id: &str) -> Value {
        json!(["Mailbox/get", {
            "accountId": self.account_id,
            "ids": null,
            "properties": ["id", "name", "parentId", "role", "isSubscribed"],
        }, id])
    }

    /// Reads every mailbox again.
    async fn refresh_tree(&mut self) -> Result<&Tree, ImapError> {
        let r = self
            .api(vec![self.mailbox_get_call("m")], "Mailbox/get")
            .await?;
        let tree = Tree::from_get(take_ok(&r, "m", "Mailbox/get")?, &self.namespace)?;
        self.maps.retain(|id, _| tree.get(id).is_some());
        Ok(self.tree.insert(tree))
    }

    /// The id of the mailbox named `folder`: from the cached tree, else
    /// after reading it again.
    async fn resolve(&mut self, folder: &str) -> Result<String, ImapError> {
        if let Some(id) = self.tree.as_ref().and_then(|t| t.id_of(folder)) {
            return Ok(id.to_owned());
        }
        self.resolve_fresh(folder).await
    }

    async fn resolve_fresh(&mut self, folder: &str) -> Result<String, ImapError> {
        self.refresh_tree()
            .await?
            .id_of(folder)
            .map(str::to_owned)
            .ok_or_else(|| ImapError::NoSuchFolder {
                folder: folder.to_owned(),
            })
    }

    /// `Email/query` of every message in a mailbox and `Email/get` of
    /// `props` for them, as calls `q<tag>` and `g<tag>`.
    fn listing_calls(&self, mailbox: &str, tag: &str, props: &[&str]) -> Vec<Value> {
        vec![
            json!(["Email/query", {
                "accountId": self.account_id,
                "filter": {"inMailbox": mailbox},
                "sort": [{"property": "receivedAt", "isAscending": true}],
                "limit": MAX_MESSAGES,
            }, format!("q{tag}")]),
            json!(["Email/get", {
                "accountId": self.account_id,
                "#ids": {"resultOf": format!("q{tag}"), "name": "Email/query", "path": "/ids"},
                "properties": props,
            }, format!("g{tag}")]),
        ]
    }

    /// Applies the answer to [`Self::listing_calls`] to the mailbox's UID
    /// map; returns the `Email/get` list. A query refused for its mailbox
    /// is [`ImapError::NoSuchFolder`].
    fn absorb_listing(
        &mut self,
        r: &[crate::http::MethodResponse],
        mailbox: &str,
        folder: &str,
        tag: &str,
    ) -> Result<Vec<Value>, ImapError> {
        let what = format!("Email/query of {folder:?}");
        let q = match take(r, &format!("q{tag}"), &what)? {
            Ok(q) => q,
            Err(e) if e.kind == "invalidArguments" || e.kind == "notFound" => {
                return Err(ImapError::NoSuchFolder {
                    folder: folder.to_owned(),
                })
            }
            Err(e) => return Err(e.clone().into_imap(&what)),
        };
        let total = q.get("total").and_then(Value::as_u64).unwrap_or(0);
        if total as usize > MAX_MESSAGES {
            return Err(ImapError::Oversized {
                command: what,
                what: format!("{total} messages"),
                limit: format!("{MAX_MESSAGES} messages"),
            });
        }
        let ids_len = q.get("ids").and_then(Value::as_array).map_or(0, Vec::len);
        if (ids_len as u64) < total {
            return Err(ImapError::ServerFailure {
                command: what,
                text: format!("the server listed {ids_len} of {total} messages"),
            });
        }
        let g = take_ok(r, &format!("g{tag}"), &format!("Email/get in {folder:?}"))?;
        let list = g
            .get("list")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let listed = list
            .iter()
            .filter_map(|e| {
                Some(Listed {
                    id: e.get("id")?.as_str()?.to_owned(),
                    received_at: e
                        .get("receivedAt")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    size: e
                        .get("size")
                        .and_then(Value::as_u64)
                        .map(|s| s.min(u32::MAX as u64) as u32),
                    blob_id: e.get("blobId").and_then(Value::as_str).map(str::to_owned),
                })
            })
            .collect();
        let map = self.maps.entry(mailbox.to_owned()).or_default();
        map.absorb(listed, &mut self.counter);
        Ok(list)
    }

    /// Lists a mailbox (by name) and brings its UID map up to date; one
    /// request, or two when the cached mailbox id turned out stale.
    async fn list_mailbox(
        &mut self,
        folder: &str,
        props: &[&str],
    ) -> Result<(String, Vec<Value>), ImapError> {
        let mut id = self.resolve(folder).await?;
        for attempt in 0..2 {
            let calls = self.listing_calls(&id, "", props);
            let r = self
                .api(calls, &format!("Email/query of {folder:?}"))
                .await?;
            match self.absorb_listing(&r, &id, folder, "") {
                Ok(list) => return Ok((id, list)),
                Err(ImapError::NoSuchFolder { .. }) if attempt == 0 => {
                    id = self.resolve_fresh(folder).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ImapError::NoSuchFolder {
            folder: folder.to_owned(),
        })
    }

    fn state_of(&self, mailbox: &str) -> MailboxState {
        let map = self.maps.get(mailbox);
        MailboxState {
            uid_validity: self.uid_validity,
            uid_next: Some(map.map_or(1, |m| m.next)),
            exists: map.map_or(0, |m| m.entries.len() as u32),
            highest_modseq: None,
        }
    }

    async fn open(
        &mut self,
        folder: &str,
        props: &[&str],
    ) -> Result<(MailboxState, Vec<Value>), ImapError> {
        self.selected = None;
        let (id, list) = self.list_mailbox(folder, props).await?;
        self.changed = false;
        self.selected = Some(Selected {
            id: id.clone(),
            name: folder.to_owned(),
        });
        Ok((self.state_of(&id), list))
    }

    fn selected(&self) -> Result<Selected, ImapError> {
        self.selected
            .clone()
            .ok_or_else(|| ImapError::InvalidArgument("no folder is selected".into()))
    }

    /// Headers of the messages in `uids` from an `Email/get` list with
    /// `headers`, sorted by UID.
    fn headers_in(&self, mailbox: &str, list: &[Value], uids: UidRange) -> Vec<FetchedHeader> {
        let Some(map) = self.maps.get(mailbox) else {
            return vec![];
        };
        let mut out: Vec<FetchedHeader> = list
            .iter()
            .filter_map(|e| {
                let uid = *map.by_id.get(e.get("id")?.as_str()?)?;
                if !uids.contains(uid) {
                    return None;
                }
                let size = e.get("size").and_then(Value::as_u64).unwrap_or(0);
                let mut header = Vec::new();
                for h in e.get("headers").and_then(Value::as_array)? {
                    let name = h.get("name").and_then(Value::as_str)?;
                    let value = h.get("value").and_then(Value::as_str)?;
                    header.extend_from_slice(name.as_bytes());
                    header.push(b':');
                    header.extend_from_slice(value.as_bytes());
                    header.extend_from_slice(b"\r\n");
                    if header.len() as u64 > sma_imap::MAX_HEADER_SIZE {
                        break;
                    }
                }
                header.extend_from_slice(b"\r\n");
                Some(FetchedHeader {
                    uid,
                    size: size.min(u32::MAX as u64) as u32,
                    header,
                })
            })
            .collect();
        out.sort_by_key(|h| h.uid);
        out
    }

    /// Fills in a URL template of the session (RFC 6570 level 1).
    fn template(&self, t: &str, vars: &[(&str, &str)]) -> Result<Url, ImapError> {
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
    async fn upload(&self, message: &[u8]) -> Result<String, ImapError> {
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
    async fn import(
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
                let props = err
                    .and_then(|e| e.get("properties"))
                    .map(Value::to_string)
                    .unwrap_or_default();
                if props.contains("mailboxIds") {
                    self.tree = None;
                    return Err(ImapError::NoSuchFolder {
                        folder: folder.to_owned(),
                    });
                }
                return Err(ImapError::No {
                    command: what,
                    text: format!("{kind} {props}"),
                });
            }
        }
        Ok(out)
    }

    /// Downloads one blob, at most `cap` bytes.
    async fn download(&self, blob_id: &str, cap: usize) -> Result<Vec<u8>, ImapError> {
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
        Ok(q.get("ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Whether the selected mailbox holds other messages than this session
    /// last saw.
    async fn selected_changed(&self, sel: &Selected) -> Result<bool, ImapError> {
        let ids = self.current_ids(sel).await?;
        Ok(!self.maps.get(&sel.id).is_some_and(|m| m.same_ids(&ids)))
    }

    /// Opens the event source for email and mailbox changes; `None` when
    /// the server has none, answers without an event stream (then the
    /// session stops trying) or cannot be reached.
    async fn open_events(&mut self) -> Option<crate::push::EventStream> {
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
            .client
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

    /// `Mailbox/set` of one mailbox's `isSubscribed`.
    async fn set_subscribed(&mut self, folder: &str, on: bool) -> Result<(), ImapError> {
        let id = self.resolve_fresh(folder).await?;
        let what = format!("Mailbox/set isSubscribed of {folder:?}");
        let r = self
            .api(
                vec![json!(["Mailbox/set", {
                    "accountId": self.account_id,
                    "update": {id.clone(): {"isSubscribed": on}},
                }, "s"])],
                &what,
            )
            .await?;
        let v = take_ok(&r, "s", &what)?;
        if let Some(e) = v.pointer(&format!("/notUpdated/{id}")) {
            if e.get("type").and_then(Value::as_str) == Some("notFound") {
                return Err(ImapError::NoSuchFolder {
                    folder: folder.to_owned(),
                });
            }
            return Err(ImapError::No {
                command: what,
                text: e.to_string(),
            });
        }
        Ok(())
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
fn keywords(flags: &[&str]) -> Result<Value, ImapError> {
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
        let mut blobs = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(PARALLEL_DOWNLOADS) {
            let this = &*self;
            let futs: Vec<_> = chunk.iter().map(|m| this.upload(m)).collect();
            for r in futures::future::join_all(futs).await {
                blobs.push(r?);
            }
        }
        self.import(folder, &blobs, &json!({})).await
    }

    async fn select(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        Ok(self.open(folder, &LIST_PROPS).await?.0)
    }

    async fn examine(&mut self, folder: &str) -> Result<MailboxState, ImapError> {
        Ok(self.open(folder, &LIST_PROPS).await?.0)
    }

    async fn status(&mut self, folder: &str) -> Result<MailboxStatus, ImapError> {
        let (id, _) = self.list_mailbox(folder, &LIST_PROPS).await?;
        let s = self.state_of(&id);
        Ok(MailboxStatus {
            messages: s.exists,
            uid_next: s.uid_next,
            uid_validity: s.uid_validity,
            highest_modseq: None,
        })
    }

    async fn status_many(
        &mut self,
        folders: &[&str],
    ) -> Result<Vec<Result<MailboxStatus, ImapError>>, ImapError> {
        if folders
            .iter()
            .any(|f| self.tree.as_ref().and_then(|t| t.id_of(f)).is_none())
        {
            self.refresh_tree().await?;
        }
        let ids: Vec<Option<String>> = folders
            .iter()
            .map(|f| {
                self.tree
                    .as_ref()
                    .and_then(|t| t.id_of(f))
                    .map(str::to_owned)
            })
            .collect();
        let mut calls = vec![];
        for (i, id) in ids.iter().enumerate() {
            if let Some(id) = id {
                calls.extend(self.listing_calls(id, &i.to_string(), &LIST_PROPS));
            }
        }
        let r = if calls.is_empty() {
            vec![]
        } else {
            self.api(calls, "STATUS of several folders").await?
        };
        let mut out = Vec::with_capacity(folders.len());
        for (i, (folder, id)) in folders.iter().zip(&ids).enumerate() {
            let Some(id) = id else {
                out.push(Err(ImapError::NoSuchFolder {
                    folder: folder.to_string(),
                }));
                continue;
            };
            let res = self
                .absorb_listing(&r, id, folder, &i.to_string())
                .map(|_| {
                    let s = self.state_of(id);
                    MailboxStatus {
                        messages: s.exists,
                        uid_next: s.uid_next,
                        uid_validity: s.uid_validity,
                        highest_modseq: None,
                    }
                });
            if res
                .as_ref()
                .is_err_and(|e| matches!(e, ImapError::NoSuchFolder { .. }))
            {
                self.tree = None;
            }
            out.push(res);
        }
        Ok(out)
    }

    async fn open_and_fetch_headers(
        &mut self,
        folder: &str,
        _read_only: bool,
        uids: UidRange,
        _prefetch_from: Option<Uid>,
    ) -> Result<(MailboxState, Vec<FetchedHeader>), ImapError> {
        let (state, list) = self.open(folder, &HEADER_PROPS).await?;
        let id = self.selected()?.id;
        Ok((state, self.headers_in(&id, &list, uids)))
    }

    async fn fetch_headers(&mut self, uids: UidRange) -> Result<Vec<FetchedHeader>, ImapError> {
        let sel = self.selected()?;
        let (_, list) = self.list_mailbox(&sel.name, &HEADER_PROPS).await?;
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
            self.list_mailbox(&sel.name, &LIST_PROPS).await?;
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
        let ids: Vec<(Uid, String)> = match self.maps.get(&sel.id) {
            Some(m) => uids
                .iter()
                .filter_map(|u| Some((*u, m.entries.get(u)?.id.clone())))
                .collect(),
            None => vec![],
        };
        if ids.is_empty() {
            return Ok(());
        }
        let what = format!("Email/set destroy in {:?}", sel.name);
        let r = self
            .api(
                vec![json!(["Email/set", {
                    "accountId": self.account_id,
                    "destroy": ids.iter().map(|(_, i)| i).collect::<Vec<_>>(),
                }, "d"])],
                &what,
            )
            .await?;
        let v = take_ok(&r, "d", &what)?;
        let mut failed = vec![];
        for (uid, id) in &ids {
            match v.pointer(&format!("/notDestroyed/{id}")) {
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

    async fn move_messages(
        &mut self,
        uids: &[Uid],
        dest: &str,
    ) -> Result<Option<Vec<Uid>>, ImapError> {
        let sel = self.selected()?;
        let dest_id = self.resolve_fresh(dest).await?;
        let ids: Vec<(Uid, String)> = match self.maps.get(&sel.id) {
            Some(m) => uids
                .iter()
                .filter_map(|u| Some((*u, m.entries.get(u)?.id.clone())))
                .collect(),
            None => vec![],
        };
        if ids.is_empty() {
            return Ok(None);
        }
        let what = format!("Email/set move from {:?} to {dest:?}", sel.name);
        let update: serde_json::Map<String, Value> = ids
            .iter()
            .map(|(_, id)| (id.clone(), json!({"mailboxIds": {dest_id.clone(): true}})))
            .collect();
        let r = self
            .api(
                vec![json!(["Email/set", {"accountId": self.account_id, "update": update}, "m"])],
                &what,
            )
            .await?;
        let v = take_ok(&r, "m", &what)?;
        let mut failed = vec![];
        for (uid, id) in &ids {
            match v.pointer(&format!("/notUpdated/{id}")) {
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
            Ok(None)
        } else {
            Err(ImapError::No {
                command: what,
                text: failed.join("; "),
            })
        }
    }

    async fn idle(&mut self, timeout: Duration) -> Result<IdleOutcome, ImapError> {
        let sel = self.selected()?;
        let deadline = tokio::time::Instant::now() + timeout;
        if std::mem::take(&mut self.changed) {
            return Ok(IdleOutcome::Changed);
        }
        // Listen first, then look: a change after the look is pushed.
        let mut events = self.open_events().await;
        let mut look = true;
        loop {
            if look && self.selected_changed(&sel).await? {
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
                        Ok(Ok(Some(crate::push::Event::State))) => {}
                        // A ping: nothing to look at.
                        Ok(Ok(Some(crate::push::Event::Other))) => look = false,
                        // Closed or broken: poll for the rest of this wait.
                        Ok(Ok(None)) | Ok(Err(_)) => events = None,
                    }
                }
                None => tokio::time::sleep((deadline - now).min(IDLE_POLL)).await,
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

//! [`JmapSession`]: one JMAP session; its [`Transport`](sma_imap::Transport) implementation is
//! in `session/transport.rs`, its blobs in `session/blobs.rs`.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Url;
use serde_json::{json, Value};
use sma_imap::{Capabilities, FetchedHeader, ImapError, MailboxState, Namespace, Uid, UidRange};

use crate::cache::SessionCache;
use crate::http::{take, take_ok, Http};
use crate::names::Tree;
use crate::uids::{Listed, UidMap};

mod append;
mod blobs;
mod idle;
mod prefetch;
pub(crate) use prefetch::BLOB_CAPABILITY;
mod resource;
mod status;
mod transport;

/// The most messages of one mailbox a session lists.
pub const MAX_MESSAGES: usize = 100_000;
/// How often [`Transport::idle`](sma_imap::Transport::idle) asks whether
/// the selected mailbox changed, without an event source, for
/// [`QUICK_POLLS_FOR`] after the session's last activity (its start, a
/// change seen, a message it appended): replies come soon after.
pub const IDLE_POLL: Duration = Duration::from_millis(250);
/// How often it asks later, when all is quiet: a device left watching
/// costs the server one request every 2 s, not four a second.
pub const IDLE_POLL_QUIET: Duration = Duration::from_secs(2);
/// How long after the last activity polls stay at [`IDLE_POLL`].
pub const QUICK_POLLS_FOR: Duration = Duration::from_secs(30);
/// The ping interval asked of the event source, in seconds.
pub const PUSH_PING: u64 = 15;
/// Silence on the event source after which it counts as dead (then the
/// session polls).
const PUSH_SILENCE: Duration = Duration::from_secs(2 * PUSH_PING + 5);
/// Downloads run side by side, at most this many.
const PARALLEL_DOWNLOADS: usize = 4;
/// An upload running on its own: its blob id when done.
type StagedUpload = tokio::task::JoinHandle<Result<String, ImapError>>;

/// The most uploads [`JmapSession::stage`] keeps waiting.
const MAX_STAGED: usize = 8;
/// Email properties of a listing.
const LIST_PROPS: [&str; 5] = ["id", "receivedAt", "size", "blobId", "mailboxIds"];
/// The same with the header fields.
const HEADER_PROPS: [&str; 6] = [
    "id",
    "receivedAt",
    "size",
    "blobId",
    "mailboxIds",
    "headers",
];

/// The mailbox operations act on ([`Transport::select`](sma_imap::Transport::select)).
#[derive(Clone, Debug)]
struct Selected {
    id: String,
    name: String,
}

/// One JMAP session (RFC 8620) on the primary mail account, usable as an
/// sma [`Transport`](sma_imap::Transport). See the crate documentation for how folders and UIDs
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
    /// The account's `Email` state when the last listing was read: its
    /// mailbox id and the state (`Email/get`'s `state`).
    last_listing: Option<(String, String)>,
    /// Whether the server offers `Blob/get` (RFC 9404): a listing for a
    /// reader then brings the first bytes of the first messages.
    blob_get: bool,
    /// Whole bodies the last listing brought, by blob id.
    prefetched: HashMap<String, Vec<u8>>,
    /// The listing `idle` made at a push that showed new messages, for the
    /// reader's next open of that mailbox (taken by the next open).
    fresh_listing: Option<prefetch::FreshListing>,
    /// The `Email` state at which the selected mailbox was listed, while
    /// nothing was written since: a pushed `StateChange` that names it
    /// again brings nothing new.
    selected_state: Option<String>,
    /// Whether the event source may work (cleared when it answered
    /// without an event stream).
    push: bool,
    /// Whether `tree` was read in this session (not taken from the cache).
    tree_fresh: bool,
    /// The session resource (for the cache).
    resource: Value,
    /// Where the session resource and the mailbox list are kept for the
    /// next session.
    cache: Option<SessionCache>,
    /// The last `Mailbox/get` answer (the one the cache holds, if any).
    cached_mailboxes: Option<Value>,
    /// Uploads started ahead of their append: the message and its task.
    staged: Vec<(Vec<u8>, StagedUpload)>,
    /// The session's last activity (start, a change seen, an append),
    /// which sets the poll interval without an event source.
    active_at: tokio::time::Instant,
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
    /// The JMAP account the session works on.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The session's UIDVALIDITY (one for every mailbox, new with every
    /// session).
    pub fn uid_validity(&self) -> u32 {
        self.uid_validity
    }

    /// Whether the session started from the session cache
    /// ([`crate::JmapConfig::session_cache`]) instead of reading the session
    /// resource.
    pub fn started_from_cache(&self) -> bool {
        self.http.started_from_cache()
    }

    /// The account's `Email` state at which the selected mailbox was
    /// listed, while this session has written nothing since (`None`
    /// otherwise, or when the server named no state): a pushed state
    /// change naming this state brings nothing new to the mailbox.
    pub fn selected_email_state(&self) -> Option<&str> {
        self.selected_state.as_deref()
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
        let got = take_ok(&r, "m", "Mailbox/get")?;
        let tree = Tree::from_get(got, &self.namespace)?;
        self.maps.retain(|id, _| tree.get(id).is_some());
        self.keep_mailboxes(got);
        self.tree_fresh = true;
        Ok(self.tree.insert(tree))
    }

    /// Keeps a `Mailbox/get` answer in the session cache, if it differs
    /// from the one there (only the list: its state changes with every
    /// message count).
    fn keep_mailboxes(&mut self, got: &Value) {
        let list = json!({"list": got.get("list")});
        if self.cached_mailboxes.as_ref() == Some(&list) {
            return;
        }
        if let Some(cache) = &self.cache {
            cache.save(&self.resource, Some(&list));
        }
        self.cached_mailboxes = Some(list);
    }

    /// Keeps what this session learnt (the session resource, the mailbox
    /// list) in `path` for the next sessions, as
    /// [`crate::JmapConfig::session_cache`] does: for a session opened
    /// before its cache file could exist (`sma init`, which makes the
    /// home only once it succeeded).
    pub fn keep_in(&mut self, path: std::path::PathBuf) {
        let mut config = (*self.http.config).clone();
        config.session_cache = Some(path);
        let Some(cache) = SessionCache::of(&config) else {
            return;
        };
        cache.save(&self.resource, self.cached_mailboxes.as_ref());
        self.cache = Some(cache);
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
    ///
    /// Ahead of them, a `Mailbox/get` of the mailbox (call `m<tag>`): a
    /// query for a mailbox id the server no longer knows answers no
    /// messages on Cyrus, not an error, so the id is checked in the same
    /// request (it may come from the session cache).
    fn listing_calls(&self, mailbox: &str, tag: &str, props: &[&str]) -> Vec<Value> {
        vec![
            json!(["Mailbox/get", {
                "accountId": self.account_id,
                "ids": [mailbox],
                "properties": ["id", "name", "parentId"],
            }, format!("m{tag}")]),
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
        if !self.still_there(r, mailbox, tag) {
            return Err(ImapError::NoSuchFolder {
                folder: folder.to_owned(),
            });
        }
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
        self.last_listing = g
            .get("state")
            .and_then(Value::as_str)
            .map(|s| (mailbox.to_owned(), s.to_owned()));
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
                    shared: in_several_mailboxes(e),
                })
            })
            .collect();
        let map = self.maps.entry(mailbox.to_owned()).or_default();
        map.absorb(listed, &mut self.counter);
        Ok(list)
    }

    /// Whether the `Mailbox/get` of [`Self::listing_calls`] found the
    /// mailbox as the tree knows it (same name and parent).
    fn still_there(&self, r: &[crate::http::MethodResponse], mailbox: &str, tag: &str) -> bool {
        let Ok(Ok(got)) = take(r, &format!("m{tag}"), "Mailbox/get") else {
            return false;
        };
        let Some(found) = got.get("list").and_then(Value::as_array).and_then(|l| {
            l.iter()
                .find(|m| m.get("id").and_then(Value::as_str) == Some(mailbox))
        }) else {
            return false;
        };
        let Some(known) = self.tree.as_ref().and_then(|t| t.get(mailbox)) else {
            // Not in the tree (read again meanwhile): the server's word.
            return true;
        };
        found.get("name").and_then(Value::as_str) == Some(known.name.as_str())
            && found.get("parentId").and_then(Value::as_str) == known.parent_id.as_deref()
    }

    /// Lists a mailbox (by name) and brings its UID map up to date, with
    /// the first bodies if `prefetch` (where the server has `Blob/get`);
    /// one request, or two when the cached mailbox id turned out stale.
    async fn list_mailbox(
        &mut self,
        folder: &str,
        props: &[&str],
        prefetch: bool,
    ) -> Result<(String, Vec<Value>), ImapError> {
        let mut id = self.resolve(folder).await?;
        for attempt in 0..2 {
            let mut calls = self.listing_calls(&id, "", props);
            if prefetch {
                calls.extend(self.prefetch_calls(&id));
            }
            let r = self
                .api(calls, &format!("Email/query of {folder:?}"))
                .await?;
            match self.absorb_listing(&r, &id, folder, "") {
                Ok(list) => {
                    if prefetch {
                        self.absorb_prefetch(&r);
                    }
                    return Ok((id, list));
                }
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
        prefetch: bool,
    ) -> Result<(MailboxState, Vec<Value>), ImapError> {
        if let Some(fresh) = self.fresh_listing.take() {
            if fresh.folder == folder && props == HEADER_PROPS {
                self.changed = false;
                self.selected_state = fresh.email_state;
                self.selected = Some(Selected {
                    id: fresh.id.clone(),
                    name: folder.to_owned(),
                });
                return Ok((self.state_of(&fresh.id), fresh.list));
            }
        }
        self.selected = None;
        self.last_listing = None;
        self.prefetched.clear();
        let (id, list) = self.list_mailbox(folder, props, prefetch).await?;
        self.changed = false;
        self.selected_state = self
            .last_listing
            .take()
            .filter(|(m, _)| *m == id)
            .map(|(_, s)| s);
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

/// Whether an `Email/get` entry is in more than one mailbox.
fn in_several_mailboxes(email: &Value) -> bool {
    email
        .get("mailboxIds")
        .and_then(Value::as_object)
        .is_some_and(|m| m.values().filter(|v| v.as_bool() == Some(true)).count() > 1)
}

//! Opening a [`JmapSession`]: reading the session resource, or taking it
//! from the session cache.

use std::collections::HashMap;

use reqwest::Url;
use serde_json::Value;
use sma_imap::{Capabilities, ImapError, Namespace};

use crate::cache::SessionCache;
use crate::config::JmapConfig;
use crate::http::{Http, MAX_SESSION_SIZE};
use crate::names::Tree;
use crate::uids::new_validity;

use super::JmapSession;

impl JmapSession {
    /// Reads the session resource (or takes it from the session cache,
    /// [`JmapConfig::session_cache`]) and picks the primary mail account
    /// and the API, upload, download and event-source URLs. Refuses
    /// `http://` to hosts that are not loopback unless
    /// [`JmapConfig::allow_insecure`]; a rejected login is
    /// [`ImapError::AuthRejected`] (or `TokenRejected` for a Bearer token).
    /// A session started from the cache sends nothing here: its first
    /// request is its first call.
    pub async fn connect(config: &JmapConfig) -> Result<JmapSession, ImapError> {
        let base = Url::parse(&config.session_url).map_err(|e| {
            ImapError::InvalidArgument(format!(
                "the JMAP session URL {:?} is not a URL: {e}",
                config.session_url
            ))
        })?;
        config.check_url(&base)?;
        let mut http = Http::new(config.clone())?;
        let cache = SessionCache::of(config);
        if let Some((c, cached)) = cache.as_ref().and_then(|c| Some((c, c.load()?))) {
            let state = cached.session.get("state").and_then(Value::as_str);
            http.started_from(c.clone(), state.map(str::to_owned));
            if let Ok(mut session) =
                JmapSession::from_resource(http.clone(), base.clone(), cached.session)
            {
                if let Some(m) = cached.mailboxes {
                    session.tree = Tree::from_get(&m, &session.namespace).ok();
                    session.cached_mailboxes = Some(m);
                }
                session.cache = cache;
                return Ok(session);
            }
            http = Http::new(config.clone())?;
        }
        let req = http.client.get(base.clone());
        let body = http
            .send_with(
                req,
                "the session resource",
                (MAX_SESSION_SIZE, config.timeout),
                true,
            )
            .await?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            ImapError::Protocol(format!("the JMAP session resource is not JSON: {e}"))
        })?;
        let mut session = JmapSession::from_resource(http, base, v)?;
        if let Some(c) = &cache {
            c.save(&session.resource, None);
        }
        session.cache = cache;
        Ok(session)
    }

    /// A session from the session resource `v` (read from `base`).
    fn from_resource(http: Http, base: Url, v: Value) -> Result<JmapSession, ImapError> {
        let config = http.config.clone();
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
        let blob_get = offers_blob_get(&v, &account_id);
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
            tree_fresh: false,
            maps: HashMap::new(),
            selected: None,
            changed: false,
            last_listing: None,
            selected_state: None,
            blob_get,
            prefetched: HashMap::new(),
            fresh_listing: None,
            push: true,
            resource: v,
            cache: None,
            cached_mailboxes: None,
            staged: Vec::new(),
            active_at: tokio::time::Instant::now(),
        })
    }
}

/// Whether the session resource `v` gives account `account_id`
/// `Blob/get` (RFC 9404 §3: the capability in its `accountCapabilities`).
fn offers_blob_get(v: &Value, account_id: &str) -> bool {
    v.pointer(&format!(
        "/accounts/{}/accountCapabilities/{}",
        json_pointer_escape(account_id),
        super::prefetch::BLOB_CAPABILITY
    ))
    .is_some()
}

/// `s` as one JSON pointer segment (RFC 6901: `~` is `~0`, `/` is `~1`).
fn json_pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::session::{IDLE_POLL, IDLE_POLL_QUIET, QUICK_POLLS_FOR};

    fn session() -> JmapSession {
        let url = "http://127.0.0.1:9/.well-known/jmap";
        let http = Http::new(JmapConfig::new(url, "u@x", "pw")).expect("client");
        let resource = json!({
            "apiUrl": "/jmap/",
            "uploadUrl": "/jmap/upload/{accountId}/",
            "downloadUrl": "/jmap/download/{accountId}/{blobId}/{name}?accept={type}",
            "capabilities": {"urn:ietf:params:jmap:mail": {}},
            "primaryAccounts": {"urn:ietf:params:jmap:mail": "u@x"},
        });
        JmapSession::from_resource(http, Url::parse(url).expect("url"), resource).expect("session")
    }

    #[tokio::test(start_paused = true)]
    async fn polls_slow_down_when_all_is_quiet_and_speed_up_at_activity() {
        let mut s = session();
        assert_eq!(s.poll_interval(), IDLE_POLL, "quick after the start");
        tokio::time::advance(QUICK_POLLS_FOR - Duration::from_secs(1)).await;
        assert_eq!(s.poll_interval(), IDLE_POLL);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(s.poll_interval(), IDLE_POLL_QUIET, "slow when quiet");
        s.active_at = tokio::time::Instant::now();
        assert_eq!(s.poll_interval(), IDLE_POLL, "quick again after activity");
    }

    #[test]
    fn a_resource_without_mail_or_an_account_is_refused() {
        let url = "http://127.0.0.1:9/.well-known/jmap";
        let http = Http::new(JmapConfig::new(url, "u@x", "pw")).expect("client");
        let base = Url::parse(url).expect("url");
        let no_mail = json!({"apiUrl": "/jmap/", "capabilities": {}});
        assert!(JmapSession::from_resource(http.clone(), base.clone(), no_mail).is_err());
        let no_account = json!({
            "apiUrl": "/jmap/",
            "capabilities": {"urn:ietf:params:jmap:mail": {}},
        });
        assert!(JmapSession::from_resource(http, base, no_account).is_err());
    }
}

//! HTTP underneath: the client (rustls), bounded reads of every response,
//! API requests with their method calls, and the mapping of HTTP and
//! RFC 8620 errors onto [`ImapError`].

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::{StatusCode, Url};
use rustls::ClientConfig;
use serde_json::{json, Value};
use sma_imap::ImapError;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::cache::SessionCache;
use crate::config::{JmapAuth, JmapConfig};

/// The capabilities every request uses.
pub(crate) const USING: [&str; 2] = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"];

/// The most bytes read of the session resource.
pub const MAX_SESSION_SIZE: usize = 1 << 20;
/// The most bytes read of one API response.
pub const MAX_API_RESPONSE: usize = 128 << 20;
/// The most bytes read of an error response's body (kept for the message).
const MAX_ERROR_BODY: usize = 16 << 10;
/// The slowest transfer a download is given time for, in bytes per second,
/// on top of [`JmapConfig::timeout`].
pub const MIN_TRANSFER_RATE: u64 = 64 << 10;

/// The HTTP client and what every request needs.
#[derive(Clone)]
pub(crate) struct Http {
    pub client: reqwest::Client,
    /// The client of the event source, with connections of its own: a
    /// stream held open on a connection of `client`'s pool would take
    /// the API's kept-alive connection, and the first request after a
    /// push would pay for a new one.
    pub push_client: reqwest::Client,
    pub config: Arc<JmapConfig>,
    /// Set when the session started from the cache.
    hint: Option<Arc<Hint>>,
}

/// A session started from the session cache: how it notices the cache is
/// stale.
struct Hint {
    cache: SessionCache,
    /// The cached session resource's `state`.
    state: Option<String>,
    /// Cleared once the cache was found stale (and dropped).
    live: AtomicBool,
}

impl Http {
    /// Builds the client: rustls with the web PKI roots or only the CA
    /// file's certificates; redirects followed only to URLs
    /// [`JmapConfig::check_url`] accepts.
    pub fn new(config: JmapConfig) -> Result<Http, ImapError> {
        let tls = tls_config(&config)?;
        let allow_insecure = config.allow_insecure;
        let policy = move || {
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    return attempt.error("too many redirects");
                }
                let url = attempt.url();
                let ok = url.scheme() == "https"
                    || (url.scheme() == "http"
                        && (allow_insecure
                            || sma_imap::is_loopback_host(url.host_str().unwrap_or(""))));
                if ok {
                    attempt.follow()
                } else {
                    attempt.error("redirect to an insecure URL refused")
                }
            })
        };
        let build = || {
            reqwest::Client::builder()
                .use_preconfigured_tls(tls.clone())
                .redirect(policy())
                .connect_timeout(config.timeout)
                .tcp_nodelay(true)
                .user_agent(concat!("sma-jmap/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ImapError::Tls {
                    addr: config.session_url.clone(),
                    reason: format!("cannot set up the HTTP client: {e}"),
                })
        };
        Ok(Http {
            client: build()?,
            push_client: build()?,
            config: Arc::new(config),
            hint: None,
        })
    }

    /// Marks the session as started from `cache`, whose session resource
    /// had the state `state`.
    pub fn started_from(&mut self, cache: SessionCache, state: Option<String>) {
        self.hint = Some(Arc::new(Hint {
            cache,
            state,
            live: AtomicBool::new(true),
        }));
    }

    /// Whether the session started from the cache.
    pub fn started_from_cache(&self) -> bool {
        self.hint.is_some()
    }

    /// A session started from the cache met an answer that says the cache
    /// no longer describes the server (the URLs it named are gone, the
    /// account is unknown): the cache is dropped and the error is a lost
    /// connection, which the next connection (reading the server's session
    /// resource again) cures. `None` when the session did not start from
    /// the cache or this was already said.
    fn stale_hint(&self, what: &str) -> Option<ImapError> {
        let hint = self.hint.as_ref()?;
        if !hint.live.swap(false, Ordering::SeqCst) {
            return None;
        }
        hint.cache.forget();
        Some(ImapError::ConnectionLost(format!(
            "the JMAP server no longer answers {what} as its cached session resource said; \
             it is read again at the next connection"
        )))
    }

    /// An API answer's `sessionState`: if it differs from the cached
    /// session resource's, the cache is dropped (this session goes on; the
    /// next one reads the session resource again).
    fn saw_session_state(&self, state: &str) {
        if let Some(hint) = &self.hint {
            if hint.state.as_deref() != Some(state) && hint.live.swap(false, Ordering::SeqCst) {
                hint.cache.forget();
            }
        }
    }

    /// Adds the credentials to a request.
    pub fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.auth {
            JmapAuth::Basic(p) => req.basic_auth(&self.config.user, Some(p.expose())),
            JmapAuth::Bearer(t) => req.bearer_auth(t.expose()),
        }
    }

    /// Sends a request and reads its body, at most `cap` bytes, within
    /// `timeout`. A status other than 2xx becomes the matching error.
    pub async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
        cap: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, ImapError> {
        self.send_with(req, what, (cap, timeout), false).await
    }

    /// [`Self::send`]; with `read_only`, a request cut on its way (a
    /// pooled connection the server closed as the request went out: "connection
    /// closed before message completed") is sent once more, on a new
    /// connection — only for requests that change nothing, as the server
    /// may have run the first one.
    pub async fn send_with(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
        (cap, timeout): (usize, Duration),
        read_only: bool,
    ) -> Result<Vec<u8>, ImapError> {
        tracing::debug!(target: "sma_jmap::wire", what, "HTTP request");
        let fut = async {
            let again = req.try_clone().filter(|_| read_only);
            let resp = match (self.auth(req).send().await, again) {
                (Err(e), Some(again)) if is_cut(&e) => {
                    tracing::debug!(error = %error_chain(&e), what, "a read was cut on its way; sent again");
                    self.auth(again).send().await
                }
                (r, _) => r,
            }
            .map_err(|e| self.transport_error(e, what))?;
            let status = resp.status();
            if matches!(
                status,
                StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::METHOD_NOT_ALLOWED
            ) {
                if let Some(e) = self.stale_hint(what) {
                    return Err(e);
                }
            }
            if !status.is_success() {
                let body = read_capped(resp, MAX_ERROR_BODY, what, true)
                    .await
                    .unwrap_or_default();
                return Err(self.status_error(status, &body, what));
            }
            read_capped(resp, cap, what, false).await
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ImapError::Timeout {
                what: format!("the JMAP server's answer to {what}"),
            }),
        }
    }

    /// One API request: `calls` as `[name, arguments, call id]`; returns
    /// the method responses in order, each an error when the method failed.
    pub async fn api(
        &self,
        api_url: &Url,
        calls: Vec<Value>,
        what: &str,
    ) -> Result<Vec<MethodResponse>, ImapError> {
        let methods: Vec<&str> = calls
            .iter()
            .filter_map(|c| c.get(0).and_then(Value::as_str))
            .collect();
        tracing::debug!(target: "sma_jmap::wire", ?methods, "API request");
        let mut using = USING.to_vec();
        if methods.iter().any(|m| m.starts_with("Blob/")) {
            using.push(crate::session::BLOB_CAPABILITY);
        }
        let body = json!({ "using": using, "methodCalls": calls });
        let read_only = methods.iter().all(|m| is_read_only(m));
        let req = self
            .client
            .post(api_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).map_err(|e| ImapError::Protocol(e.to_string()))?);
        let bytes = self
            .send_with(
                req,
                what,
                (MAX_API_RESPONSE, self.config.timeout),
                read_only,
            )
            .await?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ImapError::Protocol(format!("the JMAP answer to {what} is not JSON: {e}"))
        })?;
        self.method_responses(&v, what)
    }

    /// The method responses of an API answer `v`, in order, each an error
    /// when the method failed.
    fn method_responses(&self, v: &Value, what: &str) -> Result<Vec<MethodResponse>, ImapError> {
        let responses = v
            .get("methodResponses")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ImapError::Protocol(format!("the JMAP answer to {what} has no methodResponses"))
            })?;
        if let Some(state) = v.get("sessionState").and_then(Value::as_str) {
            self.saw_session_state(state);
        }
        let mut out = Vec::with_capacity(responses.len());
        for r in responses {
            let (name, args, id) = match r.as_array().map(Vec::as_slice) {
                Some([Value::String(n), args @ Value::Object(_), Value::String(id)]) => {
                    (n.as_str(), args, id.clone())
                }
                _ => {
                    return Err(ImapError::Protocol(format!(
                        "a JMAP method response to {what} is malformed"
                    )))
                }
            };
            let result = if name == "error" {
                let kind = args.get("type").and_then(Value::as_str);
                if matches!(
                    kind,
                    Some("accountNotFound" | "accountNotSupportedByMethod")
                ) {
                    if let Some(e) = self.stale_hint(what) {
                        return Err(e);
                    }
                }
                Err(MethodError {
                    kind: args
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                        .to_owned(),
                    description: args
                        .get("description")
                        .and_then(Value::as_str)
                        .map(|d| d.chars().take(300).collect()),
                    arguments: strings(args.get("arguments")),
                })
            } else {
                Ok(args.clone())
            };
            out.push(MethodResponse {
                name: name.to_owned(),
                id,
                result,
            });
        }
        Ok(out)
    }

    /// A failure below HTTP: connect, TLS, timeout, a dropped connection.
    pub fn transport_error(&self, e: reqwest::Error, what: &str) -> ImapError {
        let addr = self.config.session_url.clone();
        if e.is_timeout() {
            ImapError::Timeout {
                what: format!("the JMAP server's answer to {what}"),
            }
        } else if e.is_redirect() {
            ImapError::Protocol(format!("the JMAP server redirected {what}: {e}"))
        } else if e.is_connect() {
            let text = error_chain(&e);
            if text.contains("certificate") || text.contains("tls") || text.contains("TLS") {
                ImapError::Tls { addr, reason: text }
            } else {
                ImapError::Unreachable {
                    addr,
                    source: std::io::Error::other(text),
                }
            }
        } else {
            ImapError::ConnectionLost(format!("{what}: {}", error_chain(&e)))
        }
    }

    /// A non-2xx answer: 401 is a rejected login, 5xx a server failure, a
    /// request over a limit (413, RFC 8620 `limit`) refused, the rest
    /// RFC 7807 problems the server found with the request.
    pub fn status_error(&self, status: StatusCode, body: &[u8], what: &str) -> ImapError {
        let problem: Option<Value> = serde_json::from_slice(body).ok();
        let detail = problem
            .as_ref()
            .and_then(|p| p.get("detail").or_else(|| p.get("title")))
            .and_then(Value::as_str)
            .map(|s| s.chars().take(300).collect::<String>())
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&body[..body.len().min(300)])
                    .trim()
                    .to_owned();
                // An HTML error page says nothing the status does not.
                if text.starts_with('<') {
                    String::new()
                } else {
                    text
                }
            });
        let kind = problem
            .as_ref()
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let text = if detail.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {detail}")
        };
        let addr = self.config.session_url.clone();
        let user = self.config.user.clone();
        match status.as_u16() {
            401 => match self.config.auth {
                JmapAuth::Basic(_) => ImapError::AuthRejected {
                    user,
                    addr,
                    server_text: text,
                },
                JmapAuth::Bearer(_) => ImapError::TokenRejected {
                    user,
                    addr,
                    server_text: text,
                },
            },
            500..=599 => ImapError::ServerFailure {
                command: what.to_owned(),
                text,
            },
            413 => ImapError::No {
                command: what.to_owned(),
                text,
            },
            _ if kind.ends_with(":limit") => ImapError::ServerFailure {
                command: what.to_owned(),
                text,
            },
            404 => ImapError::No {
                command: what.to_owned(),
                text,
            },
            _ => ImapError::Bad {
                command: what.to_owned(),
                text,
            },
        }
    }
}

/// Whether a JMAP method only reads (RFC 8620 `/get`, `/query`,
/// `/changes`, `/queryChanges`, `Core/echo`).
fn is_read_only(method: &str) -> bool {
    method == "Core/echo"
        || ["/get", "/query", "/changes", "/queryChanges"]
            .iter()
            .any(|s| method.ends_with(s))
}

/// Whether a request failed on its way rather than at connecting or by
/// waiting too long (then sending it again on a new connection may work).
fn is_cut(e: &reqwest::Error) -> bool {
    !e.is_timeout() && !e.is_connect() && !e.is_redirect() && !e.is_builder()
}

/// Reads a response's body, refusing more than `cap` bytes (by its
/// `Content-Length` before reading, and while reading). With `truncate`,
/// keeps the first `cap` bytes instead of failing (error bodies).
pub(crate) async fn read_capped(
    resp: reqwest::Response,
    cap: usize,
    what: &str,
    truncate: bool,
) -> Result<Vec<u8>, ImapError> {
    let oversized = |n: String| ImapError::Oversized {
        command: what.to_owned(),
        what: n,
        limit: format!("{cap} bytes"),
    };
    if let Some(len) = resp.content_length() {
        if len > cap as u64 && !truncate {
            return Err(oversized(format!("a body of {len} bytes")));
        }
    }
    let initial = resp.content_length().unwrap_or(0).min(cap as u64) as usize;
    let mut out = Vec::with_capacity(initial.min(1 << 20));
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if e.is_timeout() {
                ImapError::Timeout {
                    what: format!("the JMAP server's answer to {what}"),
                }
            } else {
                ImapError::ConnectionLost(format!("{what}: {}", error_chain(&e)))
            }
        })?;
        if out.len() + chunk.len() > cap {
            if truncate {
                out.extend_from_slice(&chunk[..cap - out.len()]);
                return Ok(out);
            }
            return Err(oversized(format!("more than {cap} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An error and its sources, as one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// One method response.
#[derive(Debug)]
pub(crate) struct MethodResponse {
    /// The method's name.
    #[allow(dead_code)]
    pub name: String,
    /// The call id it answers.
    pub id: String,
    /// Its arguments, or the method-level error.
    pub result: Result<Value, MethodError>,
}

/// A method-level error (RFC 8620 §3.6.2).
#[derive(Debug, Clone)]
pub(crate) struct MethodError {
    /// `type`, e.g. `serverFail`, `invalidArguments`.
    pub kind: String,
    /// `description`, if the server gave one (shortened).
    pub description: Option<String>,
    /// `arguments` of `invalidArguments`, if given.
    pub arguments: Vec<String>,
}

impl MethodError {
    /// The matching [`ImapError`]: server failures are transient, an
    /// unknown account is a refusal, the rest are requests the server did
    /// not accept.
    pub fn into_imap(self, what: &str) -> ImapError {
        let text = match &self.description {
            Some(d) => format!("{} ({d})", self.kind),
            None if !self.arguments.is_empty() => {
                format!("{} ({})", self.kind, self.arguments.join(", "))
            }
            None => self.kind.clone(),
        };
        let command = what.to_owned();
        match self.kind.as_str() {
            "serverFail"
            | "serverUnavailable"
            | "serverPartialFail"
            | "cannotCalculateChanges"
            | "tooManyChanges"
            | "rateLimit" => ImapError::ServerFailure { command, text },
            "accountNotFound"
            | "accountNotSupportedByMethod"
            | "accountReadOnly"
            | "forbidden"
            | "requestTooLarge"
            | "tooLarge"
            | "overQuota" => ImapError::No { command, text },
            _ => ImapError::Bad { command, text },
        }
    }
}

/// The strings of a JSON array (others skipped); none if `v` is no array.
pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The result of the call with id `id` in `responses`, or a protocol error
/// when the server left it out.
pub(crate) fn take<'a>(
    responses: &'a [MethodResponse],
    id: &str,
    what: &str,
) -> Result<&'a Result<Value, MethodError>, ImapError> {
    responses
        .iter()
        .find(|r| r.id == id)
        .map(|r| &r.result)
        .ok_or_else(|| ImapError::Protocol(format!("the JMAP answer to {what} lacks call {id}")))
}

/// [`take`], with a method error turned into an [`ImapError`].
pub(crate) fn take_ok<'a>(
    responses: &'a [MethodResponse],
    id: &str,
    what: &str,
) -> Result<&'a Value, ImapError> {
    match take(responses, id, what)? {
        Ok(v) => Ok(v),
        Err(e) => Err(e.clone().into_imap(what)),
    }
}

/// The rustls configuration of the IMAP side (the CA file's certificates
/// only, else the web PKI roots), speaking HTTP/1.1.
fn tls_config(config: &JmapConfig) -> Result<ClientConfig, ImapError> {
    let shared = sma_imap::tls_client_config(&config.session_url, config.ca_file.as_deref())?;
    let mut tls = Arc::unwrap_or_clone(shared);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

#[cfg(test)]
mod tests;

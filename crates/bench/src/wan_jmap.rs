//! The WAN part over JMAP (`--server cyrus-jmap`, `--server jmap-script`):
//! the same `sma` commands on devices made with `sma init --jmap`, the
//! delay proxy in front of the server's JMAP HTTP port (and, with
//! `--security tls`, the rig's TLS front behind the proxy).
//!
//! The floor of a command is what any JMAP client pays at the least: a
//! new connection (TCP, and the TLS handshake with `--security tls`) and
//! one API request (`Core/echo`) with its answer. A JMAP request carries
//! every method call a step needs, so one request is the floor whatever
//! the command — except an append: the message's bytes go up first (an
//! upload, RFC 8620 §6.1) and `Email/import` names the blob the upload
//! made, so the floor of a `send` (to one device or to all: one import
//! names every recipient inbox) is the connection, the upload and the
//! import. (RFC 9404's `Blob/upload` carries the bytes inside an API
//! request, but no server measured here resolves its creation id in an
//! `Email/import` of the same request; see docs/PERFORMANCE.md.) The
//! pairing adds its two protocol hops; `watch` delivery, on a connection
//! already open, is one request.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::rig::{raw_message, Rig};
use crate::wan_steps::{jmap_session_url, BROADCAST, COMMANDS, PAIRING_HOPS, WATCH_DELIVERY};

/// The `send` figure; its floor, and the broadcast's, is an append.
const SEND: &str = "send --to one device";
/// Size of the message the append floor uploads: about a sealed
/// application message with a short body.
const FLOOR_MESSAGE_BYTES: usize = 3_000;

/// Round trips issue 19 allows at 50 ms RTT over JMAP.
pub fn target(command: &str) -> Option<f64> {
    match command {
        SEND | "recv, nothing to do" | "sync, nothing to do" => Some(3.0),
        _ => None,
    }
}

/// What the floor's requests need to know of the account (read before
/// any timing).
struct FloorAccount {
    api_url: String,
    upload_url: String,
    account_id: String,
    inbox: String,
    user: String,
    password: String,
}

/// The floor of every command, in [`COMMANDS`] order.
pub async fn floor(rig: &Rig, port: u16, account: usize, rtt_ms: f64) -> Result<Vec<Duration>> {
    let acct = FloorAccount::read(rig, port, account).await?;
    let mut out = Vec::new();
    for command in COMMANDS {
        // A new client is a new connection.
        let client = client(rig)?;
        let mut start = Instant::now();
        if command == WATCH_DELIVERY {
            // A watching client's connection is open already: one request
            // on it (the proxy holds a new connection's first bytes one
            // RTT, as a real handshake would cost).
            acct.echo(&client).await?;
            start = Instant::now();
        }
        if command == SEND || command == BROADCAST {
            // One `Email/import` names every recipient inbox of a
            // broadcast: the same floor.
            acct.append(&client).await?;
        } else {
            acct.echo(&client).await?;
        }
        let mut d = start.elapsed();
        if command.starts_with("pairing") {
            d += Duration::from_secs_f64(PAIRING_HOPS * rtt_ms / 1000.0);
        }
        out.push(d);
    }
    Ok(out)
}

/// An HTTP/1.1 client that trusts the rig's TLS front (if any) alone.
fn client(rig: &Rig) -> Result<reqwest::Client> {
    let ca = rig.jmap_tls.as_ref().map(|f| f.ca_file());
    let tls = sma_imap::tls_client_config("the JMAP floor", ca).context("floor TLS setup")?;
    let mut tls = (*tls).clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .context("floor HTTP client")
}

impl FloorAccount {
    /// The session resource and the inbox's id, through the proxy on `port`.
    async fn read(rig: &Rig, port: u16, account: usize) -> Result<FloorAccount> {
        let a = rig.server.account(account);
        let session_url = jmap_session_url(rig, port);
        let c = client(rig)?;
        let what = format!("the session resource {session_url}");
        let s = answer(c.get(&session_url), (&a.user, &a.password), &what).await?;
        let base = reqwest::Url::parse(&session_url)?;
        let account_id = s
            .pointer("/primaryAccounts/urn:ietf:params:jmap:mail")
            .and_then(Value::as_str)
            .context("floor: no mail account")?
            .to_owned();
        let url = |k: &str| -> Result<String> {
            let t = s.get(k).and_then(Value::as_str).context("floor: no URL")?;
            Ok(base
                .join(&t.replace("{accountId}", &account_id))?
                .to_string())
        };
        let mut acct = FloorAccount {
            api_url: url("apiUrl")?,
            upload_url: url("uploadUrl")?,
            account_id,
            inbox: String::new(),
            user: a.user.clone(),
            password: a.password.clone(),
        };
        let r = acct
            .api(
                &c,
                json!([["Mailbox/get", {"accountId": acct.account_id, "properties": ["role"]}, "m"]]),
            )
            .await?;
        acct.inbox = r
            .pointer("/methodResponses/0/1/list")
            .and_then(Value::as_array)
            .and_then(|l| l.iter().find(|m| m["role"] == "inbox"))
            .and_then(|m| m["id"].as_str())
            .context("floor: the account has no inbox")?
            .to_owned();
        Ok(acct)
    }

    /// One API request; its whole answer.
    async fn api(&self, c: &reqwest::Client, calls: Value) -> Result<Value> {
        let body = json!({
            "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
            "methodCalls": calls,
        });
        self.post(c.post(&self.api_url).json(&body), "an API request")
            .await
    }

    /// Sends `req` with the account's credentials; its JSON answer.
    async fn post(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value> {
        answer(req, (&self.user, &self.password), what).await
    }

    /// One `Core/echo` request and its whole answer.
    async fn echo(&self, c: &reqwest::Client) -> Result<()> {
        let r = self
            .api(c, json!([["Core/echo", {"floor": true}, "0"]]))
            .await?;
        if r.pointer("/methodResponses/0/0").and_then(Value::as_str) != Some("Core/echo") {
            bail!("floor: Core/echo answered {r}");
        }
        Ok(())
    }

    /// An append as any JMAP client makes it: the upload, then
    /// `Email/import` of its blob into the inbox.
    async fn append(&self, c: &reqwest::Client) -> Result<()> {
        let upload = c
            .post(&self.upload_url)
            .header(reqwest::header::CONTENT_TYPE, "message/rfc822")
            .body(raw_message(FLOOR_MESSAGE_BYTES, "floor"));
        let up = self.post(upload, "the upload").await?;
        let blob = up["blobId"].as_str().context("floor: no blobId")?;
        let r = self
            .api(
                c,
                json!([["Email/import", {
                    "accountId": self.account_id,
                    "emails": {"e": {"blobId": blob, "mailboxIds": {&self.inbox: true}}},
                }, "i"]]),
            )
            .await?;
        if r.pointer("/methodResponses/0/1/created/e").is_none() {
            bail!("floor: Email/import answered {r}");
        }
        Ok(())
    }
}

/// Sends `req` with Basic authentication; its JSON answer.
async fn answer(
    req: reqwest::RequestBuilder,
    (user, password): (&str, &str),
    what: &str,
) -> Result<Value> {
    Ok(req
        .basic_auth(user, Some(password))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("floor: {what}"))?
        .json()
        .await?)
}

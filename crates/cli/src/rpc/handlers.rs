//! The methods: each decodes its params, calls the library and returns the
//! same JSON the CLI prints.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use sma::pair::{PairEvent, JOIN_TIMEOUT, PAIR_TIMEOUT};
use sma::DeviceId;
use sma_proto::state::PreferEncrypt;

use super::methods::{self as m, lookup, parse};
use super::protocol::{RpcError, METHOD_NOT_FOUND};
use super::server::Shared;
use super::{openrpc, watch};

/// How often a waiting `recv` looks at the inbox. It does not IDLE: the
/// connection belongs to every call of this server, and a wait holding it
/// would stall them all. One idle round is one SELECT.
const RECV_POLL: Duration = Duration::from_millis(500);

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn device_id(method: &str, s: &str) -> Result<DeviceId, RpcError> {
    DeviceId::parse(s).map_err(|_| {
        RpcError::invalid_params(
            method,
            format!("{s:?} is not a device id: expected 16 lower-case hex digits (see `devices`)"),
        )
    })
}

impl Shared {
    /// Runs one method.
    pub(super) async fn dispatch(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        if lookup(method).is_none() {
            return Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("unknown method `{method}` — `rpc.discover` (or `sma serve --openrpc`) lists the methods"),
            ));
        }
        match method {
            "rpc.discover" => {
                parse::<m::NoParams>(method, params)?;
                Ok(openrpc::document())
            }
            "status" => {
                parse::<m::NoParams>(method, params)?;
                let mut g = self.core.lock().await;
                let (dev, t) = g.connected().await?;
                let r = dev.status(t).await;
                Ok(to_value(&g.check(r)?))
            }
            "devices" => {
                parse::<m::NoParams>(method, params)?;
                let mut g = self.core.lock().await;
                let (dev, t) = g.connected().await?;
                let r = dev.devices(t).await;
                Ok(to_value(&g.check(r)?))
            }
            "sync" => {
                parse::<m::NoParams>(method, params)?;
                let mut g = self.core.lock().await;
                let (dev, t) = g.connected().await?;
                let r = dev.sync(t).await;
                let r = g.check(r)?;
                self.kick.notify_one();
                Ok(to_value(&r))
            }
            "pair" => self.pair(parse(method, params)?).await,
            "join" => self.join(parse(method, params)?).await,
            "send" => self.send(parse(method, params)?).await,
            "recv" => self.recv(parse(method, params)?).await,
            "watch" => {
                parse::<m::NoParams>(method, params)?;
                watch::start(self).await?;
                Ok(json!({ "watching": true }))
            }
            "unwatch" => {
                parse::<m::NoParams>(method, params)?;
                self.stop_watch().await;
                Ok(json!({ "watching": false }))
            }
            "account_key.show" => {
                parse::<m::NoParams>(method, params)?;
                let mut g = self.core.lock().await;
                let key = account_key(g.device()?)?;
                Ok(json!({
                    "fingerprint": key.fingerprint().to_string(),
                    "created": sma_proto::timefmt::rfc3339(key.created_unix()),
                    "algorithm": key.algorithm(),
                }))
            }
            "account_key.export" => {
                let p: m::ExportParams = parse(method, params)?;
                let mut g = self.core.lock().await;
                let key = account_key(g.device()?)?;
                let armored = if p.secret {
                    key.to_armored_secret()
                } else {
                    key.public_armored()
                };
                Ok(json!({
                    "fingerprint": key.fingerprint().to_string(),
                    "secret": p.secret,
                    "armored": armored,
                }))
            }
            "setup_message.export" => self.setup_export(parse(method, params)?).await,
            "keys.observe" => self.observe(parse(method, params)?).await,
            "keys.import" => {
                let p: m::ImportParams = parse(method, params)?;
                let prefer = match p.prefer_encrypt.as_deref() {
                    None => PreferEncrypt::NoPreference,
                    Some(value) => PreferEncrypt::parse(value).ok_or_else(|| {
                        RpcError::invalid_params(
                            method,
                            format!("prefer_encrypt {value:?}: use mutual or nopreference"),
                        )
                    })?,
                };
                let mut g = self.core.lock().await;
                let dev = g.device()?;
                let r =
                    dev.import_peer_key(&p.addr, p.key.as_bytes(), p.date.as_deref(), prefer)?;
                Ok(to_value(&r))
            }
            "keys.list" => {
                parse::<m::NoParams>(method, params)?;
                let mut g = self.core.lock().await;
                Ok(to_value(&g.device()?.peers()?))
            }
            "keys.show" => {
                let p: m::AddrParams = parse(method, params)?;
                let mut g = self.core.lock().await;
                let peer = g.device()?.peer(&p.addr)?.ok_or_else(|| {
                    sma::Error::Usage(format!(
                        "{} is not in the keyring — see `keys.list`, or add it with `keys.observe` or `keys.import`",
                        p.addr
                    ))
                })?;
                Ok(to_value(&peer))
            }
            "keys.recommend" => {
                let p: m::AddrsParams = parse(method, params)?;
                if p.addrs.is_empty() {
                    return Err(RpcError::invalid_params(
                        method,
                        "`addrs` must name at least one address",
                    ));
                }
                let mut g = self.core.lock().await;
                Ok(to_value(
                    &g.device()?.recommend(&p.addrs, p.reply_to_encrypted)?,
                ))
            }
            "autocrypt_header" => {
                parse::<m::NoParams>(method, params)?;
                let mut g = self.core.lock().await;
                Ok(to_value(&g.device()?.own_autocrypt_header()?))
            }
            "remove" => self.remove(parse(method, params)?).await,
            "leave" => {
                parse::<m::NoParams>(method, params)?;
                let mut g = self.core.lock().await;
                let (dev, t) = g.connected().await?;
                let r = dev.leave(t).await;
                Ok(to_value(&g.check(r)?))
            }
            "gc" => {
                let p: m::GcParams = parse(method, params)?;
                let policy = p
                    .expire_after
                    .as_deref()
                    .map(sma::lifecycle::parse_duration)
                    .transpose()?;
                let mut g = self.core.lock().await;
                let (dev, t) = g.connected().await?;
                let r = dev.gc(t, policy).await;
                Ok(to_value(&g.check(r)?))
            }
            other => Err(RpcError::not_implemented(other)),
        }
    }

    async fn observe(&self, p: m::ObserveParams) -> Result<Value, RpcError> {
        let raw = match (p.message, p.message_b64) {
            (Some(text), None) => Some(text.into_bytes()),
            (None, Some(b64)) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| {
                        RpcError::invalid_params("keys.observe", format!("message_b64: {e}"))
                    })?,
            ),
            (None, None) => None,
            _ => {
                return Err(RpcError::invalid_params(
                    "keys.observe",
                    "give `message` or `message_b64`, not both",
                ))
            }
        };
        let mut g = self.core.lock().await;
        let dev = g.device()?;
        let report = match (raw, p.from, p.date) {
            (Some(raw), None, None) => dev.observe_message(&raw)?,
            (None, Some(from), Some(date)) => {
                dev.observe_headers(&from, &date, p.autocrypt.as_deref(), &p.gossip)?
            }
            _ => {
                return Err(RpcError::invalid_params(
                    "keys.observe",
                    "give the whole message (`message`), or `from` and `date` (and `autocrypt`/`gossip` if present)",
                ))
            }
        };
        Ok(to_value(&report))
    }

    async fn remove(&self, p: m::RemoveParams) -> Result<Value, RpcError> {
        let id = device_id("remove", &p.id)?;
        let mut g = self.core.lock().await;
        let (dev, t) = g.connected().await?;
        let r = dev.remove(t, &id, p.rotate_account_key).await;
        Ok(to_value(&g.check(r)?))
    }

    async fn pair(&self, p: m::PairParams) -> Result<Value, RpcError> {
        let device = p
            .device
            .as_deref()
            .map(|d| device_id("pair", d))
            .transpose()?;
        let timeout = p.timeout.map_or(PAIR_TIMEOUT, Duration::from_secs);
        let mut g = self.core.lock().await;
        let (dev, t) = g.connected().await?;
        let r = dev
            .pair(t, device.as_ref(), timeout, |ev| {
                if let PairEvent::Code { .. } = ev {
                    self.event(to_value(ev));
                }
            })
            .await;
        let id = g.check(r)?;
        self.kick.notify_one();
        Ok(json!({ "event": "paired", "device_id": id }))
    }

    async fn join(&self, p: m::JoinParams) -> Result<Value, RpcError> {
        let code = sma::PairingCode::parse(&p.code).map_err(|_| {
            RpcError::from_sma(&sma::Error::Usage(
                "the pairing code must be 12 digits (dashes and spaces are ignored), e.g. 1234-5678-9012".into(),
            ))
        })?;
        let timeout = p.timeout.map_or(JOIN_TIMEOUT, Duration::from_secs);
        let mut g = self.core.lock().await;
        let (dev, t) = g.connected().await?;
        let r = dev
            .join_with_progress(t, &code, timeout, |p| self.event(to_value(p)))
            .await;
        let report = g.check(r)?;
        self.kick.notify_one();
        Ok(to_value(&report))
    }

    async fn send(&self, p: m::SendParams) -> Result<Value, RpcError> {
        let to = match (&p.to, p.all) {
            (Some(to), false) => Some(device_id("send", to)?),
            (None, true) => None,
            _ => {
                return Err(RpcError::invalid_params(
                    "send",
                    "give exactly one of `to` (a device id) and `all: true`",
                ))
            }
        };
        let body = match (p.body, p.body_b64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| RpcError::invalid_params("send", format!("body_b64: {e}")))?,
            _ => {
                return Err(RpcError::invalid_params(
                    "send",
                    "give exactly one of `body` (text) and `body_b64`",
                ))
            }
        };
        let kind = p.kind.unwrap_or_else(|| "text".into());
        let mut g = self.core.lock().await;
        let (dev, t) = g.connected().await?;
        let r = async {
            dev.sync(t).await?;
            dev.send(t, to.as_ref(), &kind, &body).await
        }
        .await;
        let report = g.check(r)?;
        self.kick.notify_one();
        Ok(to_value(&report))
    }

    /// `recv`; with `wait`, polls every [`RECV_POLL`] and holds the device
    /// only during each round, so other calls are answered meanwhile.
    async fn recv(&self, p: m::RecvParams) -> Result<Value, RpcError> {
        let wait = Duration::from_secs(p.wait.unwrap_or(0));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msgs = {
                let mut g = self.core.lock().await;
                let (dev, t) = g.connected().await?;
                let r = async {
                    let msgs = dev.recv(t, Duration::ZERO).await?;
                    dev.delivered(&msgs)?;
                    Ok(msgs)
                }
                .await;
                g.check(r)?
            };
            if !msgs.is_empty() || p.wait.is_none() {
                return Ok(to_value(&msgs));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(RpcError::from_sma(&sma::Error::Timeout {
                    what: "a message".into(),
                    secs: wait.as_secs(),
                }));
            }
            tokio::time::sleep(left.min(RECV_POLL)).await;
        }
    }

    async fn setup_export(&self, p: m::SetupExportParams) -> Result<Value, RpcError> {
        let mut g = self.core.lock().await;
        let dev = g.device()?;
        let key = account_key(dev)?;
        let date = sma_proto::timefmt::rfc5322(sma::clock::Clock::now(&sma::clock::SystemClock));
        let (message, code) = sma_crypto::setup_message::export(
            &mut rand::rngs::OsRng,
            &key,
            &dev.info().account,
            &date,
        )
        .map_err(sma_proto::ProtoError::from)
        .map_err(sma::Error::from)?;
        if let Some(out) = &p.out {
            crate::outfile::write_new_file(out, message.as_bytes(), crate::outfile::Readers::Owner)
                .map_err(|e| sma::Error::Local(format!("{e:#}")))?;
        }
        Ok(json!({ "setup_code": code.display_grouped(), "message": message }))
    }
}

fn account_key(dev: &sma::Device) -> Result<sma_crypto::AccountKey, RpcError> {
    dev.account_key()?.ok_or_else(|| {
        RpcError::from_sma(&sma::Error::Server("this group has no account key".into()))
    })
}

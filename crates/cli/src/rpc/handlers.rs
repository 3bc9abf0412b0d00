//! The methods: [`Shared::dispatch`] decodes a call into a
//! [`Request`] and runs its handler, one method per variant. Handlers call
//! the library and return the same views the CLI prints
//! ([`crate::views`] or the library's reports); `dispatch` serialises them.

use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use sma::pair::{PairEvent, JOIN_TIMEOUT, PAIR_TIMEOUT};
use sma::DeviceId;
use sma_proto::state::PreferEncrypt;

use super::protocol::{to_value, RpcError};
use super::request::{self as r, NoParams, Request};
use super::server::Shared;
use super::{openrpc, watch};
use crate::views::{self, AccountKeyExport, AccountKeyView, SetupMessageExport, WatchState};

/// How often a waiting `recv` looks at the inbox. It does not IDLE: the
/// connection belongs to every call of this server, and a wait holding it
/// would stall them all. One idle round is one SELECT.
const RECV_POLL: Duration = Duration::from_millis(500);

/// A handler's result as the call's `result`.
fn reply<T: Serialize>(r: Result<T, RpcError>) -> Result<Value, RpcError> {
    to_value(&r?)
}

fn device_id(method: &str, s: &str) -> Result<DeviceId, RpcError> {
    DeviceId::parse(s).map_err(|_| {
        RpcError::invalid_params(
            method,
            format!("{s:?} is not a device id: expected 16 lower-case hex digits (see `devices`)"),
        )
    })
}

/// Decodes base64 `text` given for `param` of `method`.
fn base64(method: &str, param: &str, text: &str) -> Result<Vec<u8>, RpcError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| RpcError::invalid_params(method, format!("{param}: {e}")))
}

impl Shared {
    /// Runs one call: unknown methods are -32601 and bad params -32602
    /// ([`Request::parse`]); otherwise the answer of its handler.
    pub(super) async fn dispatch(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        match Request::parse(method, params)? {
            Request::Discover(NoParams {}) => Ok(openrpc::document()),
            Request::Status(NoParams {}) => reply(self.status().await),
            Request::Devices(NoParams {}) => reply(self.devices().await),
            Request::Sync(NoParams {}) => reply(self.sync().await),
            Request::Pair(p) => reply(self.pair(p).await),
            Request::Join(p) => reply(self.join(p).await),
            Request::Send(p) => reply(self.send(p).await),
            Request::Recv(p) => reply(self.recv(p).await),
            Request::Watch(NoParams {}) => reply(self.watch().await),
            Request::Unwatch(NoParams {}) => reply(self.unwatch().await),
            Request::AccountKeyShow(NoParams {}) => reply(self.account_key_show().await),
            Request::AccountKeyExport(p) => reply(self.account_key_export(p).await),
            Request::SetupMessageExport(p) => reply(self.setup_export(p).await),
            Request::KeysObserve(p) => reply(self.observe(p).await),
            Request::KeysImport(p) => reply(self.import(p).await),
            Request::KeysList(NoParams {}) => reply(self.keys_list().await),
            Request::KeysShow(p) => reply(self.keys_show(p).await),
            Request::KeysRecommend(p) => reply(self.recommend(p).await),
            Request::AutocryptHeader(NoParams {}) => reply(self.autocrypt_header().await),
            Request::Remove(p) => reply(self.remove(p).await),
            Request::Leave(NoParams {}) => reply(self.leave().await),
            Request::Gc(p) => reply(self.gc(p).await),
            Request::ConfigList(NoParams {}) => self.config(None).await,
            Request::ConfigGet(p) => self.config(Some((p.key, None))).await,
            Request::ConfigSet(p) => self.config(Some((p.key, Some(p.value)))).await,
        }
    }

    async fn status(&self) -> Result<sma::status::StatusReport, RpcError> {
        let mut g = self.core.lock().await;
        let (dev, t) = g.connected().await?;
        let r = dev.status(t).await;
        g.check(r)
    }

    async fn devices(&self) -> Result<Vec<sma::status::DeviceView>, RpcError> {
        let mut g = self.core.lock().await;
        let (dev, t) = g.connected().await?;
        let r = dev.devices(t).await;
        g.check(r)
    }

    async fn sync(&self) -> Result<sma::round::SyncReport, RpcError> {
        let mut g = self.core.lock().await;
        let (dev, t) = g.connected().await?;
        let r = dev.sync(t).await;
        let r = g.check(r)?;
        self.kick.notify_one();
        Ok(r)
    }

    async fn watch(&self) -> Result<WatchState, RpcError> {
        watch::start(self).await?;
        Ok(WatchState { watching: true })
    }

    async fn unwatch(&self) -> Result<WatchState, RpcError> {
        self.stop_watch().await;
        Ok(WatchState { watching: false })
    }

    async fn pair(&self, p: r::PairParams) -> Result<PairEvent, RpcError> {
        let device = p
            .device
            .as_deref()
            .map(|d| device_id("pair", d))
            .transpose()?;
        let timeout = p.timeout.map_or(PAIR_TIMEOUT, Duration::from_secs);
        let mut g = self.core.lock().await;
        let (dev, t) = g.connected().await?;
        let mut unsent = None;
        let r = dev
            .pair(t, device.as_ref(), timeout, |ev| {
                if let PairEvent::Code { .. } = ev {
                    if let Err(e) = self.event(ev) {
                        unsent.get_or_insert(e);
                    }
                }
            })
            .await;
        let device_id = g.check(r)?;
        self.kick.notify_one();
        match unsent {
            Some(e) => Err(e),
            None => Ok(PairEvent::Paired { device_id }),
        }
    }

    async fn join(&self, p: r::JoinParams) -> Result<sma::pair::JoinReport, RpcError> {
        let code = sma::PairingCode::parse(&p.code).map_err(|_| {
            RpcError::from_sma(&sma::Error::Usage(
                "the pairing code must be 12 digits (dashes and spaces are ignored), e.g. 1234-5678-9012".into(),
            ))
        })?;
        let timeout = p.timeout.map_or(JOIN_TIMEOUT, Duration::from_secs);
        let mut g = self.core.lock().await;
        let (dev, t) = g.connected().await?;
        let mut unsent = None;
        let r = dev
            .join_with_progress(t, &code, timeout, |p| {
                if let Err(e) = self.event(p) {
                    unsent.get_or_insert(e);
                }
            })
            .await;
        let report = g.check(r)?;
        self.kick.notify_one();
        unsent.map_or(Ok(report), Err)
    }

    async fn send(&self, p: r::SendParams) -> Result<sma::SendReport, RpcError> {
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
            (None, Some(b64)) => base64("send", "body_b64", &b64)?,
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
        let r = dev.sync_and_send(t, to.as_ref(), &kind, &body).await;
        let report = g.check(r)?;
        self.kick.notify_one();
        Ok(report)
    }

    /// `recv`; with `wait`, polls every [`RECV_POLL`] and holds the device
    /// only during each round, so other calls are answered meanwhile.
    async fn recv(&self, p: r::RecvParams) -> Result<Vec<sma::AppMessage>, RpcError> {
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
                return Ok(msgs);
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

    async fn account_key_show(&self) -> Result<AccountKeyView, RpcError> {
        let mut g = self.core.lock().await;
        let key = views::account_key(g.device()?)?;
        Ok(AccountKeyView::of(&key))
    }

    async fn account_key_export(&self, p: r::ExportParams) -> Result<AccountKeyExport, RpcError> {
        let mut g = self.core.lock().await;
        let key = views::account_key(g.device()?)?;
        Ok(AccountKeyExport {
            armored: Some(AccountKeyExport::armored(&key, p.secret)),
            fingerprint: key.fingerprint().to_string(),
            out: None,
            secret: p.secret,
        })
    }

    async fn setup_export(&self, p: r::SetupExportParams) -> Result<SetupMessageExport, RpcError> {
        let mut g = self.core.lock().await;
        let (message, code) = views::setup_message(g.device()?)?;
        if let Some(out) = &p.out {
            crate::outfile::write_new_file(out, message.as_bytes(), crate::outfile::Readers::Owner)
                .map_err(|e| sma::Error::Local(format!("{e:#}")))?;
        }
        Ok(SetupMessageExport {
            message: Some(message),
            setup_code: code.display_grouped(),
        })
    }

    async fn observe(&self, p: r::ObserveParams) -> Result<sma::keys::ObserveReport, RpcError> {
        let raw = match (p.message, p.message_b64) {
            (Some(text), None) => Some(text.into_bytes()),
            (None, Some(b64)) => Some(base64("keys.observe", "message_b64", &b64)?),
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
        Ok(report)
    }

    async fn import(&self, p: r::ImportParams) -> Result<sma::keys::ObserveReport, RpcError> {
        let prefer = match p.prefer_encrypt.as_deref() {
            None => PreferEncrypt::NoPreference,
            Some(value) => PreferEncrypt::parse(value).ok_or_else(|| {
                RpcError::invalid_params(
                    "keys.import",
                    format!("prefer_encrypt {value:?}: use mutual or nopreference"),
                )
            })?,
        };
        let mut g = self.core.lock().await;
        let dev = g.device()?;
        Ok(dev.import_peer_key(&p.addr, p.key.as_bytes(), p.date.as_deref(), prefer)?)
    }

    async fn keys_list(&self) -> Result<Vec<sma::keys::PeerView>, RpcError> {
        let mut g = self.core.lock().await;
        Ok(g.device()?.peers()?)
    }

    async fn keys_show(&self, p: r::AddrParams) -> Result<sma::keys::PeerDetail, RpcError> {
        let mut g = self.core.lock().await;
        let peer = g.device()?.peer(&p.addr)?.ok_or_else(|| {
            sma::Error::Usage(format!(
                "{} is not in the keyring — see `keys.list`, or add it with `keys.observe` or `keys.import`",
                p.addr
            ))
        })?;
        Ok(peer)
    }

    async fn recommend(&self, p: r::AddrsParams) -> Result<sma::keys::RecommendReport, RpcError> {
        if p.addrs.is_empty() {
            return Err(RpcError::invalid_params(
                "keys.recommend",
                "`addrs` must name at least one address",
            ));
        }
        let mut g = self.core.lock().await;
        Ok(g.device()?.recommend(&p.addrs, p.reply_to_encrypted)?)
    }

    async fn autocrypt_header(&self) -> Result<sma::keys::OwnHeader, RpcError> {
        let mut g = self.core.lock().await;
        Ok(g.device()?.own_autocrypt_header()?)
    }

    async fn remove(&self, p: r::RemoveParams) -> Result<sma::lifecycle::RemovalReport, RpcError> {
        let id = device_id("remove", &p.id)?;
        let mut g = self.core.lock().await;
        let (dev, t) = g.connected().await?;
        let r = dev.remove(t, &id, p.rotate_account_key).await;
        g.check(r)
    }

    async fn leave(&self) -> Result<sma::lifecycle::RemovalReport, RpcError> {
        let mut g = self.core.lock().await;
        let (dev, t) = g.connected().await?;
        let r = dev.leave(t).await;
        g.check(r)
    }

    async fn gc(&self, p: r::GcParams) -> Result<sma::lifecycle::RemovalReport, RpcError> {
        let policy = p
            .expire_after
            .as_deref()
            .map(sma::lifecycle::parse_duration)
            .transpose()?;
        let mut g = self.core.lock().await;
        let (dev, t) = g.connected().await?;
        let r = dev.gc(t, policy).await;
        g.check(r)
    }

    /// `config.list` (`None`), `config.get` (a key) and `config.set` (a key
    /// and a value). A change drops the kept session and password, so the
    /// next call connects with the new settings.
    async fn config(&self, call: Option<(String, Option<String>)>) -> Result<Value, RpcError> {
        use sma::settings::Setting;
        let mut g = self.core.lock().await;
        let dev = g.device()?;
        match call {
            None => {
                let all = Setting::ALL
                    .into_iter()
                    .map(|s| dev.setting(s))
                    .collect::<sma::Result<Vec<_>>>()?;
                to_value(&all)
            }
            Some((key, None)) => to_value(&dev.setting(Setting::from_key(&key)?)?),
            Some((key, Some(value))) => {
                let set = dev.set_setting(Setting::from_key(&key)?, &value)?;
                g.settings_changed();
                to_value(&set)
            }
        }
    }
}

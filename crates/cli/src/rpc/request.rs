//! The calls the server understands, typed: [`Request`] has one variant per
//! method holding its decoded params, and [`Request::parse`] turns a
//! method name and params into one with the JSON-RPC error semantics
//! (unknown method: -32601; bad params: -32602 naming the method).
//!
//! The method list is written once, in the `requests!` invocation below;
//! a test in `methods` checks the OpenRPC description against it.

use serde::Deserialize;
use serde_json::Value;

use super::protocol::{RpcError, METHOD_NOT_FOUND};

/// Declares [`Request`] (one `#[serde(rename = NAME)]` variant per method)
/// and [`Request::NAMES`] from one list, so the two cannot disagree.
macro_rules! requests {
    ($($(#[$doc:meta])* $name:literal => $variant:ident($params:ty),)*) => {
        /// A decoded call: the method and its params.
        #[derive(Debug, Deserialize)]
        #[serde(tag = "method", content = "params")]
        pub(super) enum Request {
            $($(#[$doc])* #[serde(rename = $name)] $variant($params),)*
        }

        impl Request {
            /// Every method name, in the order of the list.
            pub(super) const NAMES: &'static [&'static str] = &[$($name),*];
        }
    };
}

requests! {
    /// `rpc.discover`: the OpenRPC description.
    "rpc.discover" => Discover(NoParams),
    /// `status`.
    "status" => Status(NoParams),
    /// `devices`.
    "devices" => Devices(NoParams),
    /// `sync`.
    "sync" => Sync(NoParams),
    /// `pair`.
    "pair" => Pair(PairParams),
    /// `join`.
    "join" => Join(JoinParams),
    /// `send`.
    "send" => Send(SendParams),
    /// `recv`.
    "recv" => Recv(RecvParams),
    /// `watch`.
    "watch" => Watch(NoParams),
    /// `unwatch`.
    "unwatch" => Unwatch(NoParams),
    /// `account_key.show`.
    "account_key.show" => AccountKeyShow(NoParams),
    /// `account_key.export`.
    "account_key.export" => AccountKeyExport(ExportParams),
    /// `setup_message.export`.
    "setup_message.export" => SetupMessageExport(SetupExportParams),
    /// `keys.observe`.
    "keys.observe" => KeysObserve(ObserveParams),
    /// `keys.import`.
    "keys.import" => KeysImport(ImportParams),
    /// `keys.list`.
    "keys.list" => KeysList(NoParams),
    /// `keys.show`.
    "keys.show" => KeysShow(AddrParams),
    /// `keys.recommend`.
    "keys.recommend" => KeysRecommend(AddrsParams),
    /// `autocrypt_header`.
    "autocrypt_header" => AutocryptHeader(NoParams),
    /// `remove`.
    "remove" => Remove(RemoveParams),
    /// `leave`.
    "leave" => Leave(NoParams),
    /// `gc`.
    "gc" => Gc(GcParams),
    /// `config.list`.
    "config.list" => ConfigList(NoParams),
    /// `config.get`.
    "config.get" => ConfigGet(KeyParams),
    /// `config.set`.
    "config.set" => ConfigSet(SetParams),
}

impl Request {
    /// Decodes a call of `method` with `params` (an object). An unknown
    /// method is -32601; params the method's struct refuses (unknown names,
    /// missing or mistyped values) are -32602 naming the method.
    pub(super) fn parse(method: &str, params: Value) -> Result<Request, RpcError> {
        if !Self::NAMES.contains(&method) {
            return Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("unknown method `{method}` — `rpc.discover` (or `sma serve --openrpc`) lists the methods"),
            ));
        }
        let mut call = serde_json::Map::new();
        call.insert("method".into(), Value::String(method.to_owned()));
        call.insert("params".into(), params);
        serde_json::from_value(Value::Object(call)).map_err(|e| RpcError::invalid_params(method, e))
    }
}

/// Params of methods without params.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoParams {}

/// `pair`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PairParams {
    /// The pending device.
    pub(super) device: Option<String>,
    /// Seconds.
    pub(super) timeout: Option<u64>,
}

/// `join`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JoinParams {
    /// The code.
    pub(super) code: String,
    /// Seconds.
    pub(super) timeout: Option<u64>,
}

/// `send`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendParams {
    /// One recipient.
    pub(super) to: Option<String>,
    /// All other members.
    #[serde(default)]
    pub(super) all: bool,
    /// The kind.
    pub(super) kind: Option<String>,
    /// Text body.
    pub(super) body: Option<String>,
    /// Base64 body.
    pub(super) body_b64: Option<String>,
}

/// `recv`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecvParams {
    /// Seconds to wait.
    pub(super) wait: Option<u64>,
}

/// `account_key.export`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportParams {
    /// Secret key.
    #[serde(default)]
    pub(super) secret: bool,
}

/// `setup_message.export`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetupExportParams {
    /// Output file.
    pub(super) out: Option<std::path::PathBuf>,
}

/// `keys.observe`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ObserveParams {
    /// The whole message, text.
    pub(super) message: Option<String>,
    /// The whole message, base64.
    pub(super) message_b64: Option<String>,
    /// From address.
    pub(super) from: Option<String>,
    /// Date header.
    pub(super) date: Option<String>,
    /// Autocrypt header.
    pub(super) autocrypt: Option<String>,
    /// Gossip headers.
    #[serde(default)]
    pub(super) gossip: Vec<String>,
}

/// `keys.import`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportParams {
    /// The address.
    pub(super) addr: String,
    /// The key.
    pub(super) key: String,
    /// Effective date.
    pub(super) date: Option<String>,
    /// `mutual` or `nopreference`.
    pub(super) prefer_encrypt: Option<String>,
}

/// `keys.show`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddrParams {
    /// The address.
    pub(super) addr: String,
}

/// `keys.recommend`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddrsParams {
    /// The addresses.
    pub(super) addrs: Vec<String>,
    /// Replying to an encrypted message.
    #[serde(default)]
    pub(super) reply_to_encrypted: bool,
}

/// `remove`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RemoveParams {
    /// The device.
    pub(super) id: String,
    /// Rotate the account key.
    #[serde(default)]
    pub(super) rotate_account_key: bool,
}

/// `gc`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GcParams {
    /// Duration.
    pub(super) expire_after: Option<String>,
}

/// `config.get`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyParams {
    /// The setting.
    pub(super) key: String,
}

/// `config.set`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetParams {
    /// The setting.
    pub(super) key: String,
    /// Its new value (empty: unset or default).
    pub(super) value: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::protocol::INVALID_PARAMS;
    use serde_json::json;

    fn error(method: &str, params: Value) -> RpcError {
        Request::parse(method, params).expect_err("the call must be refused")
    }

    #[test]
    fn unknown_methods_are_32601() {
        for m in ["no.such.method", "", "Status", "status ", "keys"] {
            let e = error(m, json!({}));
            assert_eq!(e.code, METHOD_NOT_FOUND, "{m:?}");
            assert!(e.message.contains("rpc.discover"), "{}", e.message);
        }
    }

    #[test]
    fn bad_params_are_32602_naming_the_method() {
        let cases = [
            ("status", json!({"bogus": 1}), "unknown field `bogus`"),
            ("join", json!({}), "missing field `code`"),
            ("recv", json!({"wait": "soon"}), "invalid type"),
            ("keys.recommend", json!({"addrs": "a@b"}), "invalid type"),
            ("pair", json!({"device": 5}), "invalid type"),
        ];
        for (method, params, why) in cases {
            let e = error(method, params);
            assert_eq!(e.code, INVALID_PARAMS, "{method}");
            assert!(
                e.message
                    .starts_with(&format!("invalid params for `{method}`: {why}")),
                "{method}: {}",
                e.message
            );
        }
    }

    #[test]
    fn good_calls_decode_to_their_variant() {
        assert!(matches!(
            Request::parse("account_key.show", json!({})),
            Ok(Request::AccountKeyShow(NoParams {}))
        ));
        let Ok(Request::Send(p)) = Request::parse("send", json!({"all": true, "body": "hi"}))
        else {
            panic!("send did not decode")
        };
        assert!(p.all);
        assert_eq!(p.body.as_deref(), Some("hi"));
        let Ok(Request::Remove(p)) = Request::parse("remove", json!({"id": "x"})) else {
            panic!("remove did not decode")
        };
        assert_eq!(p.id, "x");
        assert!(!p.rotate_account_key);
    }
}

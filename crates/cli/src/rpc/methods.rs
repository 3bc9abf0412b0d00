//! The method table (one source of truth for dispatch and the OpenRPC
//! description) and the typed params of every method.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::protocol::RpcError;

/// One parameter of a method.
pub struct ParamSpec {
    /// Its name.
    pub name: &'static str,
    /// Whether it must be given.
    pub required: bool,
    /// JSON Schema of its value (JSON text).
    pub schema: &'static str,
    /// What it means.
    pub description: &'static str,
}

/// One method.
pub struct MethodSpec {
    /// Its name.
    pub name: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Its params, by name.
    pub params: &'static [ParamSpec],
    /// JSON Schema of its result (JSON text).
    pub result: &'static str,
}

const fn p(
    name: &'static str,
    required: bool,
    schema: &'static str,
    description: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        required,
        schema,
        description,
    }
}

const STRING: &str = r#"{"type":"string"}"#;
const SECS: &str = r#"{"type":"integer","minimum":0}"#;
const BOOL: &str = r#"{"type":"boolean"}"#;
const OBJECT: &str = r#"{"type":"object"}"#;
const REMOVED: &str =
    r#"{"type":"object","properties":{"removed":{"type":"array","items":{"type":"string"}}}}"#;
const DEVICE: &str = r#"{"type":"object","properties":{"device_id":{"type":"string"},"name":{"type":"string"},"state":{"enum":["active","stale","removed","pending"]},"last_seen":{"type":"string"},"self":{"type":"boolean"}}}"#;
const MESSAGE: &str = r#"{"type":"object","properties":{"from":{"type":"string"},"kind":{"type":"string"},"body_b64":{"type":"string"},"sent_at":{"type":"string"}}}"#;

const DEVICES: &str = r#"{"type":"array","items":{"type":"object","properties":{"device_id":{"type":"string"},"name":{"type":"string"},"state":{"enum":["active","stale","removed","pending"]},"last_seen":{"type":"string"},"self":{"type":"boolean"}}}}"#;
const MESSAGES: &str = r#"{"type":"array","items":{"type":"object","properties":{"from":{"type":"string"},"kind":{"type":"string"},"body_b64":{"type":"string"},"sent_at":{"type":"string"}}}}"#;

/// Every method the server knows, in the order of the OpenRPC description.
pub const METHODS: &[MethodSpec] = &[
    MethodSpec {
        name: "rpc.discover",
        summary: "This server's OpenRPC description.",
        params: &[],
        result: OBJECT,
    },
    MethodSpec {
        name: "status",
        summary: "This device, the group, the server and the SMA folders (like `sma status`).",
        params: &[],
        result: r#"{"type":"object","required":["device_id","role","account","members","folders"],"properties":{"device_id":{"type":"string"},"name":{"type":"string"},"role":{"enum":["founder","member","pending","removed"]},"account":{"type":"string"},"server":{"type":"object"},"members":{"type":"array"},"folders":{"type":"array"},"keyring_size":{"type":"integer"},"sync_warnings":{"type":"array","items":{"type":"object","properties":{"kind":{"enum":["gap","stalled_ack"]},"device_id":{"type":"string"},"since":{"type":"string"},"message":{"type":"string"}}}}}}"#,
    },
    MethodSpec {
        name: "devices",
        summary: "Every known device (like `sma devices`).",
        params: &[],
        result: DEVICES,
    },
    MethodSpec {
        name: "sync",
        summary: "One sync round (like `sma sync`).",
        params: &[],
        result: r#"{"type":"object","properties":{"applied":{"type":"integer"},"sent":{"type":"integer"},"removed_devices":{"type":"array","items":{"type":"string"}}}}"#,
    },
    MethodSpec {
        name: "pair",
        summary: "Pair a pending device: emits an `event` notification {\"event\":\"code\",\"code\",\"device_id\"} to show, then answers once the device has joined.",
        params: &[
            p("device", false, STRING, "The pending device id (default: the newest)."),
            p("timeout", false, SECS, "Seconds to wait for the joiner (default 600)."),
        ],
        result: r#"{"type":"object","properties":{"event":{"const":"paired"},"device_id":{"type":"string"}}}"#,
    },
    MethodSpec {
        name: "join",
        summary: "Complete pairing on this pending device with the code shown by `pair`; `event` notifications {\"event\":\"progress\",\"stage\",\"done\",\"total\"} report the download of the group state.",
        params: &[
            p("code", true, STRING, "The pairing code (spaces and dashes ignored)."),
            p("timeout", false, SECS, "Seconds to wait (default 300)."),
        ],
        result: r#"{"type":"object","properties":{"event":{"const":"joined"},"device_id":{"type":"string"},"members":{"type":"integer"}}}"#,
    },
    MethodSpec {
        name: "send",
        summary: "Send an application message to one device (`to`) or to all other members (`all`).",
        params: &[
            p("to", false, STRING, "Recipient device id (or give `all`)."),
            p("all", false, BOOL, "Send to every other member."),
            p("kind", false, STRING, "Application-defined kind (default `text`)."),
            p("body", false, STRING, "The body as UTF-8 text (or give `body_b64`)."),
            p("body_b64", false, STRING, "The body, base64."),
        ],
        result: r#"{"type":"object","properties":{"message_id":{"type":"string"},"to":{"type":"array","items":{"type":"string"}}}}"#,
    },
    MethodSpec {
        name: "recv",
        summary: "Every waiting application message (removed once answered); with `wait`, waits for at least one (error 5 on timeout).",
        params: &[p("wait", false, SECS, "Seconds to wait for a message.")],
        result: MESSAGES,
    },
    MethodSpec {
        name: "watch",
        summary: "Start watching in the background: every event (applied, message, device_added, device_removed, key_updated, reconnected, watch_stopped) arrives as an `event` notification.",
        params: &[],
        result: r#"{"type":"object","properties":{"watching":{"type":"boolean"}}}"#,
    },
    MethodSpec {
        name: "unwatch",
        summary: "Stop the background watch.",
        params: &[],
        result: r#"{"type":"object","properties":{"watching":{"type":"boolean"}}}"#,
    },
    MethodSpec {
        name: "account_key.show",
        summary: "Fingerprint, creation time and algorithm of the account key.",
        params: &[],
        result: r#"{"type":"object","properties":{"fingerprint":{"type":"string"},"created":{"type":"string"},"algorithm":{"type":"string"}}}"#,
    },
    MethodSpec {
        name: "account_key.export",
        summary: "The account key, ASCII-armored (public, or secret with `secret`).",
        params: &[p("secret", false, BOOL, "Export the secret key.")],
        result: r#"{"type":"object","properties":{"fingerprint":{"type":"string"},"secret":{"type":"boolean"},"armored":{"type":"string"}}}"#,
    },
    MethodSpec {
        name: "setup_message.export",
        summary: "An Autocrypt Setup Message of the account key and its setup code (written to `out` if given).",
        params: &[p("out", false, STRING, "File to write the message to.")],
        result: r#"{"type":"object","properties":{"setup_code":{"type":"string"},"message":{"type":"string"}}}"#,
    },
    MethodSpec {
        name: "keys.observe",
        summary: "Apply the Autocrypt Level 1 update rules for one received message: give the whole message (`message` or `message_b64`), or its headers (`from`, `date`, `autocrypt`, `gossip`).",
        params: &[
            p("message", false, STRING, "The whole received RFC 5322 message, as text."),
            p("message_b64", false, STRING, "The whole received message, base64 (for 8-bit messages)."),
            p("from", false, STRING, "The From address (without `message`)."),
            p("date", false, STRING, "The Date header, RFC 2822 (without `message`)."),
            p("autocrypt", false, STRING, "The Autocrypt header value (absent: the message had none)."),
            p("gossip", false, r#"{"type":"array","items":{"type":"string"}}"#, "Autocrypt-Gossip header values."),
        ],
        result: r#"{"type":"object","properties":{"updated":{"type":"array","items":{"type":"string"}},"autocrypt":{"enum":["valid","invalid","none"]},"gossip":{"type":"integer"}}}"#,
    },
    MethodSpec {
        name: "keys.import",
        summary: "Import a correspondent's public key (armored text), applied like an Autocrypt header.",
        params: &[
            p("addr", true, STRING, "The address."),
            p("key", true, STRING, "The key: ASCII-armored, or base64 keydata."),
            p("date", false, STRING, "Effective date, RFC 2822 (default: now)."),
            p("prefer_encrypt", false, r#"{"enum":["mutual","nopreference"]}"#, "Prefer-encrypt (default nopreference)."),
        ],
        result: OBJECT,
    },
    MethodSpec {
        name: "keys.list",
        summary: "Every peer in the replicated keyring (like `sma keys list`).",
        params: &[],
        result: r#"{"type":"array","items":{"type":"object"}}"#,
    },
    MethodSpec {
        name: "keys.show",
        summary: "One peer with its public key (error 2 if unknown).",
        params: &[p("addr", true, STRING, "The address.")],
        result: OBJECT,
    },
    MethodSpec {
        name: "keys.recommend",
        summary: "Autocrypt recommendation for encrypting to these addresses.",
        params: &[
            p(
                "addrs",
                true,
                r#"{"type":"array","items":{"type":"string"},"minItems":1}"#,
                "The addresses.",
            ),
            p("reply_to_encrypted", false, BOOL, "The message replies to an encrypted one."),
        ],
        result: r#"{"type":"object","properties":{"recommendation":{"enum":["disable","discourage","available","encrypt"]}}}"#,
    },
    MethodSpec {
        name: "autocrypt_header",
        summary: "The Autocrypt header for outgoing mail of the account (like `sma autocrypt-header`).",
        params: &[],
        result: r#"{"type":"object","properties":{"autocrypt":{"type":"string"},"addr":{"type":"string"},"prefer_encrypt":{"type":"string"},"fingerprint":{"type":"string"}}}"#,
    },
    MethodSpec {
        name: "remove",
        summary: "Expel a device from the group.",
        params: &[
            p("id", true, STRING, "The device to remove."),
            p("rotate_account_key", false, BOOL, "Also make a new account key."),
        ],
        result: REMOVED,
    },
    MethodSpec {
        name: "leave",
        summary: "Leave the group from this device.",
        params: &[],
        result: REMOVED,
    },
    MethodSpec {
        name: "gc",
        summary: "Expire devices silent for longer than the policy.",
        params: &[p("expire_after", false, STRING, "Silence after which a device expires, e.g. `90d` (default).")],
        result: REMOVED,
    },
];

/// Schemas of the notifications, for the OpenRPC description.
pub const EVENT_SCHEMAS: &[(&str, &str)] = &[("device", DEVICE), ("message", MESSAGE)];

/// The method called `name`.
pub fn lookup(name: &str) -> Option<&'static MethodSpec> {
    METHODS.iter().find(|m| m.name == name)
}

/// Decodes the params of `method` into `T` (unknown names are refused).
pub fn parse<T: DeserializeOwned>(method: &str, params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params).map_err(|e| RpcError::invalid_params(method, e))
}

/// Params of methods without params.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// `pair`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairParams {
    /// The pending device.
    pub device: Option<String>,
    /// Seconds.
    pub timeout: Option<u64>,
}

/// `join`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinParams {
    /// The code.
    pub code: String,
    /// Seconds.
    pub timeout: Option<u64>,
}

/// `send`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendParams {
    /// One recipient.
    pub to: Option<String>,
    /// All other members.
    #[serde(default)]
    pub all: bool,
    /// The kind.
    pub kind: Option<String>,
    /// Text body.
    pub body: Option<String>,
    /// Base64 body.
    pub body_b64: Option<String>,
}

/// `recv`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecvParams {
    /// Seconds to wait.
    pub wait: Option<u64>,
}

/// `account_key.export`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// Secret key.
    #[serde(default)]
    pub secret: bool,
}

/// `setup_message.export`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupExportParams {
    /// Output file.
    pub out: Option<std::path::PathBuf>,
}

/// `keys.observe`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObserveParams {
    /// The whole message, text.
    pub message: Option<String>,
    /// The whole message, base64.
    pub message_b64: Option<String>,
    /// From address.
    pub from: Option<String>,
    /// Date header.
    pub date: Option<String>,
    /// Autocrypt header.
    pub autocrypt: Option<String>,
    /// Gossip headers.
    #[serde(default)]
    pub gossip: Vec<String>,
}

/// `keys.import`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// The address.
    pub addr: String,
    /// The key.
    pub key: String,
    /// Effective date.
    pub date: Option<String>,
    /// `mutual` or `nopreference`.
    pub prefer_encrypt: Option<String>,
}

/// `keys.show`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddrParams {
    /// The address.
    pub addr: String,
}

/// `keys.recommend`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddrsParams {
    /// The addresses.
    pub addrs: Vec<String>,
    /// Replying to an encrypted message.
    #[serde(default)]
    pub reply_to_encrypted: bool,
}

/// `remove`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveParams {
    /// The device.
    pub id: String,
    /// Rotate the account key.
    #[serde(default)]
    pub rotate_account_key: bool,
}

/// `gc`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcParams {
    /// Duration.
    pub expire_after: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::protocol::INVALID_PARAMS;
    use serde_json::json;

    #[test]
    fn every_schema_is_valid_json_and_names_are_unique() {
        let mut names = std::collections::BTreeSet::new();
        for m in METHODS {
            assert!(names.insert(m.name), "duplicate method {}", m.name);
            serde_json::from_str::<Value>(m.result)
                .unwrap_or_else(|e| panic!("{} result schema: {e}", m.name));
            for p in m.params {
                serde_json::from_str::<Value>(p.schema)
                    .unwrap_or_else(|e| panic!("{}.{} schema: {e}", m.name, p.name));
            }
        }
        for (n, s) in EVENT_SCHEMAS {
            serde_json::from_str::<Value>(s).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn bad_params_are_refused_with_32602() {
        let e = parse::<NoParams>("status", json!({"bogus": 1})).unwrap_err();
        assert_eq!(e.code, INVALID_PARAMS);
        assert!(e.message.contains("status"), "{}", e.message);
        let e = parse::<JoinParams>("join", json!({})).unwrap_err();
        assert_eq!(e.code, INVALID_PARAMS);
        assert!(e.message.contains("code"), "{}", e.message);
        let e = parse::<RecvParams>("recv", json!({"wait": "soon"})).unwrap_err();
        assert_eq!(e.code, INVALID_PARAMS);
        let ok = parse::<SendParams>("send", json!({"all": true, "body": "hi"})).unwrap();
        assert!(ok.all);
        assert_eq!(ok.body.as_deref(), Some("hi"));
    }

    #[test]
    fn table_params_match_the_structs() {
        // Every documented param name is accepted by its method's struct.
        fn accepts(method: &str, name: &str) -> bool {
            let mut v = serde_json::Map::new();
            v.insert(name.to_owned(), json!(null));
            let e = match method {
                "pair" => parse::<PairParams>(method, Value::Object(v)).err(),
                "join" => parse::<JoinParams>(method, Value::Object(v)).err(),
                "send" => parse::<SendParams>(method, Value::Object(v)).err(),
                "recv" => parse::<RecvParams>(method, Value::Object(v)).err(),
                "account_key.export" => parse::<ExportParams>(method, Value::Object(v)).err(),
                "setup_message.export" => {
                    parse::<SetupExportParams>(method, Value::Object(v)).err()
                }
                "keys.observe" => parse::<ObserveParams>(method, Value::Object(v)).err(),
                "keys.import" => parse::<ImportParams>(method, Value::Object(v)).err(),
                "keys.show" => parse::<AddrParams>(method, Value::Object(v)).err(),
                "keys.recommend" => parse::<AddrsParams>(method, Value::Object(v)).err(),
                "remove" => parse::<RemoveParams>(method, Value::Object(v)).err(),
                "gc" => parse::<GcParams>(method, Value::Object(v)).err(),
                other => panic!("no params struct for {other}"),
            };
            // An error may only be about the value (null), never an unknown field.
            e.is_none_or(|e| !e.message.contains("unknown field"))
        }
        for m in METHODS {
            for p in m.params {
                assert!(accepts(m.name, p.name), "{}: {}", m.name, p.name);
            }
        }
    }
}

//! The documentation of every method (summary, params and result schemas),
//! from which `openrpc` generates the OpenRPC description. The methods
//! themselves are [`super::request::Request`]; a test below checks that
//! the two list the same methods with the same params.

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

const SETTING: &str = r#"{"type":"object","properties":{"key":{"type":"string"},"value":{"type":["string","null"]},"default":{"type":"boolean"}}}"#;
const SETTINGS: &str = r#"{"type":"array","items":{"type":"object","properties":{"key":{"type":"string"},"value":{"type":["string","null"]},"default":{"type":"boolean"}}}}"#;

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
        params: &[p("expire_after", false, STRING, "Silence after which a device expires, e.g. `30d`, for this call only [default: the stored policy, else `90d`].")],
        result: REMOVED,
    },
    MethodSpec {
        name: "config.list",
        summary: "Every stored setting of this device with its value (`sma config list`).",
        params: &[],
        result: SETTINGS,
    },
    MethodSpec {
        name: "config.get",
        summary: "One setting's value.",
        params: &[p("key", true, STRING, "The setting, e.g. `expire-after` (`config.list` names them all).")],
        result: SETTING,
    },
    MethodSpec {
        name: "config.set",
        summary: "Changes a setting after checking the value (usage error otherwise); later calls use it.",
        params: &[
            p("key", true, STRING, "The setting, e.g. `expire-after`."),
            p("value", true, STRING, "The new value, e.g. `30d`; empty unsets an optional setting or restores a default."),
        ],
        result: SETTING,
    },
];

/// Schemas of the notifications, for the OpenRPC description.
pub const EVENT_SCHEMAS: &[(&str, &str)] = &[("device", DEVICE), ("message", MESSAGE)];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{json, Map, Value};

    use super::*;
    use crate::rpc::protocol::{RpcError, INVALID_PARAMS};
    use crate::rpc::request::Request;

    fn spec(name: &str) -> &'static MethodSpec {
        METHODS
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} is not documented"))
    }

    /// The names in backticks in an error message, e.g. the fields serde
    /// lists in "unknown field `x`, expected one of `a`, `b`".
    fn quoted(message: &str) -> Vec<String> {
        message
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    /// A value of the param's schema (its type, or its first enum value).
    fn example(p: &ParamSpec) -> Value {
        let schema: Value = serde_json::from_str(p.schema).expect("schema");
        if let Some(first) = schema["enum"].get(0) {
            return first.clone();
        }
        match schema["type"].as_str() {
            Some("string") => json!("x"),
            Some("integer") => json!(1),
            Some("boolean") => json!(true),
            Some("array") => json!(["x@example.org"]),
            other => panic!("{}: no example for type {other:?}", p.name),
        }
    }

    fn decode(method: &str, params: Map<String, Value>) -> Result<Request, RpcError> {
        Request::parse(method, Value::Object(params))
    }

    #[test]
    fn every_schema_is_valid_json_and_names_are_unique() {
        let mut names = BTreeSet::new();
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
    fn the_description_lists_exactly_the_methods_of_the_request_enum() {
        let documented: BTreeSet<&str> = METHODS.iter().map(|m| m.name).collect();
        let served: BTreeSet<&str> = Request::NAMES.iter().copied().collect();
        assert_eq!(
            served.len(),
            Request::NAMES.len(),
            "a method is listed twice"
        );
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "not in the OpenRPC description: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "documented but not served: {unserved:?}"
        );
    }

    #[test]
    fn documented_params_are_exactly_those_of_the_request_enum() {
        for &name in Request::NAMES {
            let m = spec(name);
            // The params struct names its fields when it refuses one.
            let mut bogus = Map::new();
            bogus.insert("no_such_param".into(), json!(null));
            let e = decode(name, bogus).expect_err("an unknown param is refused");
            assert_eq!(e.code, INVALID_PARAMS, "{name}: {}", e.message);
            let why = e
                .message
                .strip_prefix(&format!("invalid params for `{name}`: "))
                .and_then(|m| m.split(" — ").next())
                .unwrap_or_else(|| panic!("{name}: unexpected message {}", e.message));
            let accepted: BTreeSet<String> = quoted(why).into_iter().skip(1).collect();
            let documented: BTreeSet<String> = m.params.iter().map(|p| p.name.to_owned()).collect();
            assert_eq!(
                accepted, documented,
                "{name}: params of the enum vs the description"
            );

            // The documented required params suffice ...
            let required: Map<String, Value> = m
                .params
                .iter()
                .filter(|p| p.required)
                .map(|p| (p.name.to_owned(), example(p)))
                .collect();
            if let Err(e) = decode(name, required.clone()) {
                panic!("{name}: the required params do not decode: {}", e.message);
            }
            // ... and each of them is needed.
            for p in m.params.iter().filter(|p| p.required) {
                let mut without = required.clone();
                without.remove(p.name);
                let e = decode(name, without).expect_err("a required param is missing");
                assert!(
                    e.message.contains(&format!("missing field `{}`", p.name)),
                    "{name}.{} is documented as required: {}",
                    p.name,
                    e.message
                );
            }
        }
    }
}

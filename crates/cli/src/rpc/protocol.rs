//! JSON-RPC 2.0 framing, sans I/O: one JSON object per line in, one per line
//! out (the convention of Delta Chat's RPC server).
//!
//! [`parse_line`] turns a line into a [`Call`] or into the error response to
//! send back; [`success`], [`failure`] and [`notification`] build the lines
//! to write. [`RpcError`] carries the standard codes and the application
//! codes derived from [`sma::ErrorKind`].

use serde_json::{json, Map, Value};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal JSON-RPC error (a bug in the server).
pub const INTERNAL_ERROR: i64 = -32603;
/// Application error: the method exists but is not implemented in this
/// version (`data.kind` = `"not_implemented"`).
pub const NOT_IMPLEMENTED: i64 = 6;

/// An error answer: `{"code", "message", "data"}`.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    /// The JSON-RPC error code (negative: protocol; 1–6: application).
    pub code: i64,
    /// What went wrong and what to do.
    pub message: String,
    /// Extra data; application errors carry `{"kind": "..."}`.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// -32602 with a message naming the method.
    pub fn invalid_params(method: &str, why: impl std::fmt::Display) -> Self {
        RpcError::new(
            INVALID_PARAMS,
            format!("invalid params for `{method}`: {why} — see `sma serve --openrpc`"),
        )
    }

    /// The application error for a library error: the code is the CLI's exit
    /// status of its kind (1 failed, 2 usage, 3 rejected, 4 removed, 5 timeout)
    /// and `data.kind` its name. "Not implemented" gets its own code.
    pub fn from_sma(e: &sma::Error) -> Self {
        if let sma::Error::NotImplemented(what) = e {
            return RpcError::not_implemented(what);
        }
        Self::of_kind(e.kind(), e.to_string())
    }

    /// An application error of `kind`.
    pub fn of_kind(kind: sma::ErrorKind, message: String) -> Self {
        RpcError {
            code: i64::from(kind.exit_code()),
            message,
            data: Some(json!({ "kind": kind.as_str() })),
        }
    }

    /// The typed "not implemented" application error.
    pub fn not_implemented(what: &str) -> Self {
        RpcError {
            code: NOT_IMPLEMENTED,
            message: format!("`{what}` is not implemented in this version of sma yet"),
            data: Some(json!({ "kind": "not_implemented" })),
        }
    }

    /// The application error for a front-end error: the first [`sma::Error`]
    /// in the chain decides the kind (else `failed`); the message is the
    /// whole cause chain.
    pub fn from_anyhow(e: &anyhow::Error) -> Self {
        match e.chain().find_map(|c| c.downcast_ref::<sma::Error>()) {
            Some(sma::Error::NotImplemented(what)) => RpcError::not_implemented(what),
            Some(s) => Self::of_kind(s.kind(), format!("{e:#}")),
            None => Self::of_kind(sma::ErrorKind::Failed, format!("{e:#}")),
        }
    }

    fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("code".into(), json!(self.code));
        obj.insert("message".into(), json!(self.message));
        if let Some(d) = &self.data {
            obj.insert("data".into(), d.clone());
        }
        Value::Object(obj)
    }
}

impl From<sma::Error> for RpcError {
    fn from(e: sma::Error) -> Self {
        RpcError::from_sma(&e)
    }
}

impl From<anyhow::Error> for RpcError {
    fn from(e: anyhow::Error) -> Self {
        RpcError::from_anyhow(&e)
    }
}

/// A well-formed request or notification.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The request id; `None` for a notification (no answer is sent).
    pub id: Option<Value>,
    /// The method name.
    pub method: String,
    /// The params: an object (by name), `{}` when absent. Positional
    /// (array) params are accepted when empty.
    pub params: Value,
}

/// What a line turned out to be.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    /// Something to execute.
    Call(Call),
    /// A line that deserves this error response (already complete).
    Reply(Value),
    /// A blank line: ignored.
    Empty,
}

/// Parses one input line.
pub fn parse_line(line: &str) -> Parsed {
    let line = line.trim();
    if line.is_empty() {
        return Parsed::Empty;
    }
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return Parsed::Reply(failure(
                &Value::Null,
                &RpcError::new(
                    PARSE_ERROR,
                    format!("parse error: {e} — send one JSON object per line"),
                ),
            ))
        }
    };
    let invalid = |id: &Value, why: &str| {
        Parsed::Reply(failure(
            id,
            &RpcError::new(INVALID_REQUEST, format!("invalid request: {why}")),
        ))
    };
    let Value::Object(mut obj) = value else {
        let why = if value.is_array() {
            "batch requests are not supported — send one request object per line"
        } else {
            "expected a JSON object"
        };
        return invalid(&Value::Null, why);
    };
    // The id, if usable, is echoed even in an "invalid request" answer.
    let id = match obj.remove("id") {
        None => None,
        Some(v @ (Value::Null | Value::String(_) | Value::Number(_))) => Some(v),
        Some(_) => return invalid(&Value::Null, "\"id\" must be a string, a number or null"),
    };
    let echo = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return invalid(&echo, "\"jsonrpc\" must be \"2.0\"");
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        _ => return invalid(&echo, "\"method\" must be a string"),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Array(a)) if a.is_empty() => Value::Object(Map::new()),
        Some(p @ Value::Object(_)) => p,
        Some(Value::Array(_)) => {
            return Parsed::Reply(failure(
                &echo,
                &RpcError::invalid_params(&method, "params must be given by name (an object)"),
            ))
        }
        Some(_) => return invalid(&echo, "\"params\" must be an object or an array"),
    };
    Parsed::Call(Call { id, method, params })
}

/// `v` as JSON, for a result or a notification. Failing is a bug of the
/// server (-32603), never an empty answer.
pub fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| {
        RpcError::new(
            INTERNAL_ERROR,
            format!("cannot serialise the answer as JSON: {e}"),
        )
    })
}

/// `{"jsonrpc":"2.0","id":ID,"result":RESULT}`
pub fn success(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// `{"jsonrpc":"2.0","id":ID,"error":{...}}`
pub fn failure(id: &Value, error: &RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": error.to_value() })
}

/// `{"jsonrpc":"2.0","method":METHOD,"params":PARAMS}` (no id: no answer expected).
pub fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(line: &str) -> Value {
        match parse_line(line) {
            Parsed::Reply(v) => v,
            other => panic!("expected an error reply for {line:?}, got {other:?}"),
        }
    }

    fn code(v: &Value) -> i64 {
        v["error"]["code"].as_i64().expect("error code")
    }

    #[test]
    fn malformed_json_is_a_parse_error_with_null_id() {
        for line in ["{", "{\"jsonrpc\": \"2.0\", ", "nonsense", "{'a': 1}"] {
            let v = reply(line);
            assert_eq!(code(&v), PARSE_ERROR, "{line}");
            assert_eq!(v["id"], Value::Null);
            assert_eq!(v["jsonrpc"], "2.0");
        }
    }

    #[test]
    fn invalid_requests() {
        let cases = [
            (r#"[]"#, Value::Null),
            (
                r#"[{"jsonrpc":"2.0","method":"status","id":1}]"#,
                Value::Null,
            ),
            (r#"42"#, Value::Null),
            (r#"{"method":"status","id":7}"#, json!(7)),
            (
                r#"{"jsonrpc":"1.0","method":"status","id":"a"}"#,
                json!("a"),
            ),
            (r#"{"jsonrpc":"2.0","id":3}"#, json!(3)),
            (r#"{"jsonrpc":"2.0","method":5,"id":3}"#, json!(3)),
            (
                r#"{"jsonrpc":"2.0","method":"x","id":{"a":1}}"#,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","method":"x","params":"s","id":4}"#,
                json!(4),
            ),
        ];
        for (line, id) in cases {
            let v = reply(line);
            assert_eq!(code(&v), INVALID_REQUEST, "{line}: {v}");
            assert_eq!(v["id"], id, "{line}");
        }
    }

    #[test]
    fn positional_params_are_bad_params() {
        let v = reply(r#"{"jsonrpc":"2.0","method":"recv","params":[5],"id":9}"#);
        assert_eq!(code(&v), INVALID_PARAMS);
        assert_eq!(v["id"], 9);
    }

    #[test]
    fn requests_and_notifications() {
        let Parsed::Call(c) = parse_line(r#"{"jsonrpc":"2.0","method":"status","id":"x"}"#) else {
            panic!("not a call")
        };
        assert_eq!(c.id, Some(json!("x")));
        assert_eq!(c.method, "status");
        assert_eq!(c.params, json!({}));
        let Parsed::Call(n) = parse_line(r#"{"jsonrpc":"2.0","method":"sync","params":{"a":1}}"#)
        else {
            panic!("not a call")
        };
        assert_eq!(n.id, None);
        assert_eq!(n.params, json!({"a": 1}));
        assert_eq!(parse_line("   "), Parsed::Empty);
    }

    #[test]
    fn application_errors_follow_the_exit_codes() {
        let cases = [
            (sma::Error::Usage("bad".into()), 2, "usage"),
            (sma::Error::CodeRejected("no".into()), 3, "rejected"),
            (
                sma::Error::Removed {
                    device_id: "x".into(),
                    why: String::new(),
                },
                4,
                "removed",
            ),
            (
                sma::Error::Timeout {
                    what: "a message".into(),
                    secs: 1,
                },
                5,
                "timeout",
            ),
            (sma::Error::Server("broken".into()), 1, "failed"),
            (sma::Error::NotPaired, 1, "failed"),
        ];
        for (err, code, kind) in cases {
            let e = RpcError::from_sma(&err);
            assert_eq!(e.code, code, "{err}");
            assert_eq!(e.data, Some(json!({ "kind": kind })), "{err}");
            assert_eq!(e.message, err.to_string());
        }
        let ni = RpcError::from_sma(&sma::Error::NotImplemented("gc"));
        assert_eq!(ni.code, NOT_IMPLEMENTED);
        assert_eq!(ni.data, Some(json!({"kind": "not_implemented"})));
    }

    #[test]
    fn anyhow_errors_keep_the_kind_of_the_library_error() {
        let e = anyhow::Error::from(sma::Error::Timeout {
            what: "x".into(),
            secs: 2,
        })
        .context("while receiving");
        let r = RpcError::from_anyhow(&e);
        assert_eq!(r.code, 5);
        assert!(r.message.starts_with("while receiving: "), "{}", r.message);
        let plain = RpcError::from_anyhow(&anyhow::anyhow!("disk full"));
        assert_eq!(plain.code, 1);
        assert_eq!(plain.data, Some(json!({"kind": "failed"})));
    }

    #[test]
    fn response_shapes() {
        let s = success(&json!(1), json!({"ok": true}));
        assert_eq!(
            s,
            json!({"jsonrpc": "2.0", "id": 1, "result": {"ok": true}})
        );
        let f = failure(&json!("a"), &RpcError::new(METHOD_NOT_FOUND, "nope"));
        assert_eq!(
            f,
            json!({"jsonrpc": "2.0", "id": "a", "error": {"code": -32601, "message": "nope"}})
        );
        let n = notification("event", json!({"event": "applied"}));
        assert_eq!(n["method"], "event");
        assert!(n.get("id").is_none());
    }
}

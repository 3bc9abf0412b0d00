//! The OpenRPC description (`sma serve --openrpc`, method `rpc.discover`),
//! generated from the method table.

use serde_json::{json, Value};

use super::methods::{EVENT_SCHEMAS, METHODS};
use super::protocol::{
    INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, NOT_IMPLEMENTED, PARSE_ERROR,
};

fn schema(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

/// The OpenRPC 1.2.6 document of this server.
pub fn document() -> Value {
    let methods: Vec<Value> = METHODS
        .iter()
        .map(|m| {
            let params: Vec<Value> = m
                .params
                .iter()
                .map(|p| {
                    json!({
                        "name": p.name,
                        "required": p.required,
                        "description": p.description,
                        "schema": schema(p.schema),
                    })
                })
                .collect();
            json!({
                "name": m.name,
                "summary": m.summary,
                "paramStructure": "by-name",
                "params": params,
                "result": { "name": "result", "schema": schema(m.result) },
                "errors": [{ "$ref": "#/components/errors/application" }],
            })
        })
        .collect();
    let mut schemas = serde_json::Map::new();
    for (name, text) in EVENT_SCHEMAS {
        schemas.insert((*name).to_owned(), schema(text));
    }
    json!({
        "openrpc": "1.2.6",
        "info": {
            "title": "sma JSON-RPC",
            "version": env!("CARGO_PKG_VERSION"),
            "description": concat!(
                "JSON-RPC 2.0 over standard input and output of `sma serve --stdio`, one JSON object per line. ",
                "Requests run concurrently; those using the device take turns, so wait for an answer before a request that depends on it. ",
                "Notifications from the server have method `event` and params like the JSON lines of `sma watch` ",
                "(`applied`, `message`, `device_added`, `device_removed`, `key_updated`, `reconnected`), plus `code` during `pair` ",
                "and `watch_stopped` {error, kind, code} when the background watch ends with an error. ",
                "Errors: -32700 parse error, -32600 invalid request, -32601 unknown method, -32602 invalid params; ",
                "application errors use the exit status of the CLI as code (1 failed, 2 usage, 3 rejected, 4 removed, 5 timeout; ",
                "6 not implemented) with data.kind naming it."
            ),
        },
        "methods": methods,
        "components": {
            "schemas": schemas,
            "errors": {
                "application": {
                    "code": 1,
                    "message": "operation failed; data.kind is one of failed, usage, rejected, removed, timeout, not_implemented",
                },
                "codes": [
                    { "code": PARSE_ERROR, "message": "parse error" },
                    { "code": INVALID_REQUEST, "message": "invalid request" },
                    { "code": METHOD_NOT_FOUND, "message": "unknown method" },
                    { "code": INVALID_PARAMS, "message": "invalid params" },
                    { "code": 1, "message": "failed" },
                    { "code": 2, "message": "usage" },
                    { "code": 3, "message": "rejected" },
                    { "code": 4, "message": "removed" },
                    { "code": 5, "message": "timeout" },
                    { "code": NOT_IMPLEMENTED, "message": "not implemented" },
                ],
            },
        },
    })
}

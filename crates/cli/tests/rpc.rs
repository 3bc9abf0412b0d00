//! Acceptance: `sma serve --stdio` driven through the Python client of
//! examples/python/sma_rpc.py, against a real Dovecot.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::{json_lines, run_with_input, Account};
use serde_json::Value;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/python")
}

/// Runs a Python driver (`script`) that imports sma_rpc, for device `name`
/// of `acc`, with piped stdin/stdout.
fn python(acc: &Account, name: &str, script: &str) -> Child {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PYTHONPATH", examples_dir())
        .env("SMA_BIN", env!("CARGO_BIN_EXE_sma"))
        .env("SMA_HOME", acc.home(name))
        .env("SMA_PASSWORD", &acc.password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed to run the JSON-RPC tests")
}

fn finish(child: Child) -> Vec<Value> {
    let out = child.wait_with_output().expect("python driver");
    assert!(
        out.status.success(),
        "python driver failed ({:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&out.stdout)
}

const ERRORS: &str = r#"
import json, os
from sma_rpc import SmaRpc, RpcError

def err(fn):
    try:
        fn()
    except RpcError as e:
        return {"code": e.code, "kind": e.kind, "message": e.message}
    return None

with SmaRpc(home=os.environ["SMA_HOME"]) as rpc:
    print(json.dumps({"status": rpc.call("status")}))
    print(json.dumps({"unknown": err(lambda: rpc.call("no_such_method"))}))
    rpc.send_line('{"jsonrpc": "2.0", "method": "status", "id": 77')
    print(json.dumps({"malformed": rpc.answer(None)}))
    rpc.send_line('{"jsonrpc": "2.0", "method": "status", "id": 78, "params": 5}')
    print(json.dumps({"invalid": rpc.answer(78)}))
    print(json.dumps({"bad_params": err(lambda: rpc.call("recv", wait="soon"))}))
    print(json.dumps({"bad_device": err(lambda: rpc.call("send", to="nope", body="x"))}))
    print(json.dumps({"no_peer": err(lambda: rpc.call("send", all=True, body="x"))}))
    print(json.dumps({"timeout": err(lambda: rpc.call("recv", wait=1))}))
    print(json.dumps({"account_key": rpc.call("account_key.show")}))
    print(json.dumps({"devices": rpc.call("devices")}))
"#;

#[test]
fn status_unknown_method_malformed_json_and_typed_errors() {
    let acc = Account::new();
    let founded = acc.init("a");
    let id = founded["device_id"].as_str().expect("device id");
    let lines = finish(python(&acc, "a", ERRORS));
    let get = |key: &str| -> &Value {
        lines
            .iter()
            .find_map(|l| l.get(key))
            .unwrap_or_else(|| panic!("no {key} line in {lines:?}"))
    };
    let status = get("status");
    assert_eq!(status["device_id"], id);
    assert_eq!(status["role"], "founder");
    assert_eq!(status["account"], acc.user.as_str());
    assert_eq!(get("unknown")["code"], -32601);
    let malformed = get("malformed");
    assert_eq!(malformed["error"]["code"], -32700, "{malformed}");
    assert_eq!(malformed["id"], Value::Null);
    assert_eq!(get("invalid")["error"]["code"], -32600);
    assert_eq!(get("bad_params")["code"], -32602);
    assert_eq!(get("bad_device")["code"], -32602);
    let no_peer = get("no_peer");
    assert_eq!(
        (no_peer["code"].as_i64(), no_peer["kind"].as_str()),
        (Some(2), Some("usage"))
    );
    let timeout = get("timeout");
    assert_eq!(
        (timeout["code"].as_i64(), timeout["kind"].as_str()),
        (Some(5), Some("timeout"))
    );
    assert_eq!(
        get("account_key")["fingerprint"].as_str().map(str::len),
        Some(40)
    );
    let devices = get("devices").as_array().expect("devices array");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["self"], true);
}

const WAIT_DOES_NOT_BLOCK: &str = r#"
import json, os, time
from sma_rpc import SmaRpc, RpcError

with SmaRpc(home=os.environ["SMA_HOME"]) as rpc:
    started = time.monotonic()
    waiting = rpc.request("recv", wait=15)
    time.sleep(1)
    status = rpc.call("status", timeout=60)
    status_at = time.monotonic() - started
    try:
        rpc.result(waiting, timeout=60)
        outcome = "messages"
    except RpcError as e:
        outcome = e.kind
    print(json.dumps({"status_at": status_at, "recv_at": time.monotonic() - started,
                      "outcome": outcome, "role": status["role"]}))
"#;

/// A `recv` waiting for messages does not hold the device: other calls are
/// answered while it waits.
#[test]
fn a_waiting_recv_does_not_block_other_calls() {
    let acc = Account::new();
    acc.init("a");
    let lines = finish(python(&acc, "a", WAIT_DOES_NOT_BLOCK));
    let line = &lines[0];
    assert_eq!(line["role"], "founder", "{line}");
    assert_eq!(line["outcome"], "timeout", "{line}");
    let status_at = line["status_at"].as_f64().expect("status_at");
    let recv_at = line["recv_at"].as_f64().expect("recv_at");
    assert!(recv_at >= 15.0, "recv waited its 15 s: {line}");
    assert!(
        status_at < recv_at - 5.0,
        "status was answered while recv waited, not after it: {line}"
    );
}

const PAIR_AND_WATCH: &str = r#"
import json, os, sys
from sma_rpc import SmaRpc

def out(obj):
    print(json.dumps(obj), flush=True)

joiner = sys.stdin.readline().strip()
with SmaRpc(home=os.environ["SMA_HOME"]) as rpc:
    rid = rpc.request("pair", device=joiner, timeout=60)
    code = rpc.wait_event(lambda e: e.get("event") == "code", timeout=30)
    out(code)
    out({"paired": rpc.result(rid, timeout=90)})
    out({"watch": rpc.call("watch")})
    sys.stdin.readline()  # the test has sent a message to us
    msg = rpc.wait_event(lambda e: e.get("event") == "message", timeout=60)
    out({"message": msg})
    out({"sent": rpc.call("send", to=joiner, kind="note", body="hello from rpc")})
    out({"unwatch": rpc.call("unwatch")})
"#;

#[test]
fn pair_watch_events_and_send_over_rpc() {
    let acc = Account::new();
    acc.init("a");
    assert_eq!(acc.init("b")["role"], "pending");
    let b_id = acc.device_id("b");
    let mut py = python(&acc, "a", PAIR_AND_WATCH);
    let mut stdin = py.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(py.stdout.take().expect("stdout"));
    let mut next = || -> Value {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read driver line");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("driver line {line:?}: {e}"))
    };
    writeln!(stdin, "{b_id}").expect("write");
    let code = next();
    assert_eq!(code["event"], "code");
    assert_eq!(code["device_id"], b_id.as_str());
    let joined = acc.ok(
        "b",
        &["join", "--code", code["code"].as_str().expect("code")],
    );
    assert_eq!(joined.last().expect("joined line")["event"], "joined");
    assert_eq!(next()["paired"]["device_id"], b_id.as_str());
    assert_eq!(next()["watch"]["watching"], true);

    // A message from b arrives as a `message` event of the watch.
    let a_id = acc.device_id("a");
    let mut send = acc.cmd("b");
    send.args(["send", "--to", &a_id, "--kind", "ping"]);
    let sent = run_with_input(send, b"ping from b");
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    writeln!(stdin).expect("write");
    let msg = next();
    assert_eq!(msg["message"]["from"], b_id.as_str());
    assert_eq!(msg["message"]["kind"], "ping");
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD
        .decode(msg["message"]["body_b64"].as_str().expect("body"))
        .expect("base64");
    assert_eq!(body, b"ping from b");
    assert_eq!(next()["sent"]["to"][0], b_id.as_str());
    assert_eq!(next()["unwatch"]["watching"], false);
    drop(stdin);
    finish(py);

    // b receives what a sent over RPC.
    let got = acc.ok("b", &["recv", "--wait", "30"]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["from"], a_id.as_str());
    assert_eq!(got[0]["kind"], "note");
}

#[test]
fn openrpc_description_lists_the_methods() {
    let out = Command::new(env!("CARGO_BIN_EXE_sma"))
        .args(["serve", "--openrpc"])
        .output()
        .expect("run sma");
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).expect("OpenRPC JSON");
    assert_eq!(doc["openrpc"], "1.2.6");
    let names: Vec<&str> = doc["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    for m in [
        "status",
        "devices",
        "pair",
        "join",
        "send",
        "recv",
        "sync",
        "watch",
        "account_key.show",
        "account_key.export",
        "setup_message.export",
        "keys.observe",
        "keys.list",
        "keys.show",
        "keys.recommend",
        "keys.import",
        "autocrypt_header",
        "remove",
        "leave",
        "gc",
    ] {
        assert!(names.contains(&m), "{m} missing: {names:?}");
    }
}

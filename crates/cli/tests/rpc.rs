//! Acceptance: `sma serve --stdio` driven through the Python package of
//! clients/python (`sma_client`), against a real Dovecot.
//!
//! The Python tests (clients/python/tests, stdlib `unittest`) do the
//! talking and the checking; each test here prepares the fixture of one
//! test class (a fresh account and its devices), runs that class and fails
//! if any of its tests fails, errs or is skipped. A last test checks that
//! every Python test class is run from here.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Account;
use serde_json::Value;

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/python")
}

/// The Python test classes, each run by one test below.
const OPENRPC: &str = "test_openrpc.OpenRpcTest";
const WITHOUT_DEVICE: &str = "test_openrpc.WithoutDeviceTest";
const ERRORS: &str = "test_server.ErrorsTest";
const CONCURRENCY: &str = "test_server.ConcurrencyTest";
const PAIR_WATCH: &str = "test_server.PairWatchTest";
const RUN_HERE: &[&str] = &[OPENRPC, WITHOUT_DEVICE, ERRORS, CONCURRENCY, PAIR_WATCH];

/// Runs `python3 -m unittest -v CLASS` in clients/python/tests with the
/// package on PYTHONPATH, this `sma` as SMA_BIN and `env`; requires that
/// every test ran and passed (a skip is a failure: it means a fixture is
/// missing).
fn unittest(class: &str, env: &[(&str, &Path)], password: Option<&str>) {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "unittest", "-v", class])
        .current_dir(client_dir().join("tests"))
        .env("PYTHONPATH", client_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SMA_BIN", env!("CARGO_BIN_EXE_sma"))
        .env_remove("SMA_HOME")
        .env_remove("SMA_PASSWORD")
        .env_remove("SMA_TEST_HOME")
        .env_remove("SMA_TEST_JOINER_HOME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(p) = password {
        cmd.env("SMA_PASSWORD", p);
    }
    let out = cmd
        .output()
        .expect("python3 must be installed to run the JSON-RPC tests");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!(
        "python3 -m unittest {class}: {:?}\nstdout: {}\nstderr: {stderr}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.status.success(), "{report}");
    // unittest ends with "Ran N tests in T" and "OK", or "OK (skipped=K)".
    let ran = stderr.lines().find_map(|l| {
        l.strip_prefix("Ran ")?
            .split(' ')
            .next()?
            .parse::<u32>()
            .ok()
    });
    assert!(ran.is_some_and(|n| n > 0), "no test ran: {report}");
    assert_eq!(
        stderr.lines().rev().find(|l| !l.trim().is_empty()),
        Some("OK"),
        "some tests did not pass (skipped?): {report}"
    );
}

/// One account with a founded device `a`.
fn founded() -> Account {
    let acc = Account::new();
    assert_eq!(acc.init("a")["role"], "founder");
    acc
}

#[test]
fn python_package_matches_the_openrpc_description() {
    unittest(OPENRPC, &[], None);
}

#[test]
fn python_protocol_and_application_errors_without_a_device() {
    unittest(WITHOUT_DEVICE, &[], None);
}

#[test]
fn python_typed_methods_and_errors() {
    let acc = founded();
    let home = acc.home("a");
    unittest(ERRORS, &[("SMA_TEST_HOME", &home)], Some(&acc.password));
}

/// A `recv` waiting for messages does not hold the device.
#[test]
fn python_a_waiting_recv_does_not_block_other_calls() {
    let acc = founded();
    let home = acc.home("a");
    unittest(
        CONCURRENCY,
        &[("SMA_TEST_HOME", &home)],
        Some(&acc.password),
    );
}

#[test]
fn python_pair_watch_events_and_send() {
    let acc = founded();
    assert_eq!(acc.init("b")["role"], "pending");
    let (a, b) = (acc.home("a"), acc.home("b"));
    unittest(
        PAIR_WATCH,
        &[("SMA_TEST_HOME", &a), ("SMA_TEST_JOINER_HOME", &b)],
        Some(&acc.password),
    );
}

/// Every `class X(unittest.TestCase)` of clients/python/tests/test_*.py is
/// run by a test above (a new class must get its fixture here).
#[test]
fn every_python_test_class_is_run_by_cargo_test() {
    let mut found = BTreeSet::new();
    let dir = client_dir().join("tests");
    for entry in std::fs::read_dir(&dir).expect("clients/python/tests") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(module) = name
            .strip_prefix("test_")
            .and_then(|_| name.strip_suffix(".py"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("test module");
        for line in text.lines() {
            if let Some(class) = line
                .strip_prefix("class ")
                .filter(|l| l.contains("TestCase)"))
                .and_then(|l| l.split('(').next())
            {
                found.insert(format!("{module}.{class}"));
            }
        }
    }
    let run: BTreeSet<String> = RUN_HERE.iter().map(|s| (*s).to_owned()).collect();
    assert!(!found.is_empty(), "no Python test classes in {dir:?}");
    assert_eq!(found, run, "Python test classes vs those run by rpc.rs");
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

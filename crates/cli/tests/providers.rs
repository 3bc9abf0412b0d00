//! `sma init` without `--server`: the built-in provider table (see
//! crates/sma/src/providers.rs and docs/COMPATIBILITY.md).
//!
//! Tests never reach a real provider: the one entry on loopback, Proton Mail
//! Bridge (127.0.0.1:1143, STARTTLS), is played by a private Dovecot for
//! the domain proton.me.

mod common;

use std::process::{Command, Output, Stdio};

use serde_json::Value;

use common::{json_lines, stderr_json};

const BRIDGE_PORT: u16 = 1143;

fn sma(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sma"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("SMA_PASSWORD", "pass1")
        .env_remove("SMA_HOME")
        .stdin(Stdio::null())
        .output()
        .expect("run sma")
}

#[test]
fn unknown_domain_without_server_is_a_usage_error_that_says_what_to_pass() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("a");
    let out = sma(&home, &["--json", "init", "--user", "alice@example.org"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr_json(&out);
    assert_eq!(err["kind"], "usage", "{err}");
    let text = err["error"].as_str().expect("error text");
    assert!(
        text.contains("example.org") && text.contains("--server HOST[:PORT]"),
        "{text}"
    );
    assert!(!home.exists(), "nothing written");

    // Human output says the same.
    let out = sma(&home, &["init", "--user", "alice"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server"));
    // --security belongs to --server.
    let out = sma(
        &home,
        &[
            "init",
            "--user",
            "alice@gmail.com",
            "--security",
            "starttls",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// A Dovecot on 127.0.0.1:1143 for proton.me, stopped on drop.
struct Bridge {
    script: std::path::PathBuf,
    dir: tempfile::TempDir,
    ca: String,
}

impl Bridge {
    /// `None` when something else already listens on the Bridge port.
    fn start() -> Option<Bridge> {
        if std::net::TcpListener::bind(("127.0.0.1", BRIDGE_PORT)).is_err() {
            return None;
        }
        sma_testrig::ensure_installed();
        let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let script = sma_testrig::script_path();
        let dir = tempfile::Builder::new()
            .prefix("sma-bridge-")
            .tempdir()
            .expect("temp dir");
        let out = Command::new("bash")
            .arg(&script)
            .args(["start", "--accounts", "1", "--domain", "proton.me"])
            .args(["--plain-port", &BRIDGE_PORT.to_string()])
            .args(["--tls-port", &tls_port.to_string()])
            .args(["--owner-pid", &std::process::id().to_string()])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run imap-server");
        assert!(
            out.status.success(),
            "cannot start Dovecot on the Bridge port: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = String::from_utf8_lossy(&out.stdout).into_owned();
        let ca = env
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("SMA_CA_FILE="))
            .expect("SMA_CA_FILE")
            .to_owned();
        Some(Bridge { script, dir, ca })
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .args(["stop", "--dir"])
            .arg(self.dir.path())
            .output();
    }
}

#[test]
fn known_domain_takes_host_port_and_security_from_the_table_and_says_so() {
    let Some(bridge) = Bridge::start() else {
        eprintln!("port {BRIDGE_PORT} is taken (a real Proton Mail Bridge?): skipped");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let user = "user1@proton.me";
    let out = sma(
        &dir.path().join("a"),
        &["--json", "init", "--user", user, "--ca-file", &bridge.ca],
    );
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = json_lines(&out.stdout).remove(0);
    assert_eq!(report["role"], "founder", "{report}");
    assert_eq!(
        report["server"],
        serde_json::json!({
            "host": "127.0.0.1",
            "port": BRIDGE_PORT,
            "security": "starttls",
            "provider": "Proton Mail Bridge",
        })
    );
    let status = json_lines(&sma(&dir.path().join("a"), &["--json", "status"]).stdout).remove(0);
    assert_eq!(status["server"]["host"], "127.0.0.1", "{status}");

    // Without --json, the person is told which settings were used.
    let out = sma(
        &dir.path().join("b"),
        &["init", "--user", user, "--ca-file", &bridge.ca],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "Using the built-in settings for Proton Mail Bridge: 127.0.0.1:1143 (starttls)"
        ),
        "{text}"
    );

    // An explicit --server still wins (here: the same server, by hand).
    let server = format!("127.0.0.1:{BRIDGE_PORT}");
    let out = sma(
        &dir.path().join("c"),
        &[
            "--json",
            "init",
            "--user",
            user,
            "--server",
            &server,
            "--security",
            "starttls",
            "--ca-file",
            &bridge.ca,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let report: Value = json_lines(&out.stdout).remove(0);
    assert_eq!(report["server"]["provider"], Value::Null, "{report}");
}

//! Acceptance: the command-line contract (help, exit codes, JSON shapes,
//! error messages) on a real Dovecot.

mod common;

use common::{one, run_with_input, server, stderr_json, Account};

const COMMANDS: &[&str] = &[
    "init",
    "pair",
    "join",
    "status",
    "devices",
    "send",
    "recv",
    "sync",
    "watch",
    "keys",
    "account-key",
    "setup-message",
    "remove",
    "leave",
    "gc",
    "config",
    "serve",
];

fn sma() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_sma"));
    c.env_remove("SMA_HOME").env_remove("SMA_PASSWORD");
    c
}

#[test]
fn help_lists_every_command_of_the_contract() {
    let out = sma().arg("--help").output().expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in COMMANDS {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{cmd} "))),
            "`sma --help` does not list {cmd}:\n{help}"
        );
    }
    for flag in [
        "--home",
        "--json",
        "--verbose",
        "--quiet",
        "--password-file",
        "--password-command",
    ] {
        assert!(help.contains(flag), "missing global flag {flag}");
    }
    let bad = sma().arg("frobnicate").output().expect("run");
    assert_eq!(
        bad.status.code(),
        Some(2),
        "unknown command is a usage error"
    );
}

#[test]
fn usage_errors_are_one_json_object_under_json() {
    for args in [
        &["--json", "status", "--frob"][..],
        &["--json", "gc", "--expire-after"],
        &["--json"],
        &["--json", "config", "set", "expire-after"],
    ] {
        let out = sma().args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(text.lines().count(), 1, "{args:?}: one line: {text}");
        let err = stderr_json(&out);
        assert_eq!(err["kind"], "usage", "{args:?}: {err}");
        let msg = err["error"].as_str().expect("message");
        assert!(!msg.starts_with("error:"), "{msg}");
        assert!(msg.contains("--help"), "says where to look: {msg}");
    }
    // Without --json, clap's own text; help itself is not an error.
    let out = sma().args(["status", "--frob"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: unexpected argument"));
    let out = sma().args(["--json", "--help"]).output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Typical first steps:\n"));
}

#[test]
fn config_shows_checks_and_stores_settings() {
    let acc = Account::new();
    acc.init("a");
    let list = acc.ok("a", &["config", "list"]);
    let keys: Vec<&str> = list.iter().filter_map(|v| v["key"].as_str()).collect();
    assert_eq!(
        keys,
        [
            "expire-after",
            "server.host",
            "server.port",
            "server.security",
            "server.ca-file",
            "server.allow-insecure",
            "user",
            "password-command",
            "oauth2-token-command",
            "password-saved",
        ]
    );
    let get = |key: &str| one(acc.ok("a", &["config", "get", key]));
    assert_eq!(get("expire-after")["value"], "90d");
    assert_eq!(get("expire-after")["default"], true);
    assert_eq!(get("user")["value"], acc.user.as_str());
    assert_eq!(get("password-saved")["value"], "false");
    assert!(get("password-command")["value"].is_null());

    // Bad keys and values are usage errors that change nothing.
    let port = get("server.port")["value"]
        .as_str()
        .expect("port")
        .to_owned();
    for args in [
        &["config", "get", "expire_after"][..],
        &["config", "set", "expire-after", "soon"],
        &["config", "set", "server.port", "70000"],
        &["config", "set", "server.security", "ssl3"],
        &["config", "set", "user", "mallory@example.org"],
        &["config", "set", "password-saved", "true"],
    ] {
        let out = acc.run("a", args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr_json(&out)["kind"], "usage", "{args:?}");
    }
    assert_eq!(get("server.port")["value"], port.as_str(), "unchanged");

    // A stored expiry policy, and back to the default.
    let set = one(acc.ok("a", &["config", "set", "expire-after", "1d12h"]));
    assert_eq!(
        (set["value"].as_str(), set["default"].as_bool()),
        (Some("1d12h"), Some(false))
    );
    assert_eq!(get("expire-after")["value"], "1d12h");
    assert_eq!(
        one(acc.ok("a", &["config", "set", "expire-after", ""]))["default"],
        true
    );

    // A stored password command replaces the password option: a command
    // that prints a wrong password makes the login fail (exit 3), the right
    // one makes it work without any password option.
    acc.ok("a", &["config", "set", "password-command", "echo wrong"]);
    let mut sync = acc.cmd("a");
    sync.env_remove("SMA_PASSWORD").args(["sync"]);
    let out = sync.output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let right = format!("printf '%s\\n' '{}'", acc.password);
    acc.ok("a", &["config", "set", "password-command", &right]);
    let mut sync = acc.cmd("a");
    sync.env_remove("SMA_PASSWORD").args(["sync"]);
    let out = sync.output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get("password-command")["value"], right.as_str());

    // The server's port, changed to a closed one, is what the next
    // connection uses; changed back, everything works again.
    acc.ok("a", &["config", "set", "server.port", "1"]);
    let out = acc.run("a", &["sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_json(&out)["error"]
        .as_str()
        .expect("msg")
        .contains(":1"));
    acc.ok("a", &["config", "set", "server.port", &port]);
    acc.ok("a", &["sync"]);
}

#[test]
fn init_error_paths_use_the_contract_exit_codes() {
    let acc = Account::new();
    let s = server();
    let tls = format!("127.0.0.1:{}", s.tls_port());
    let ca = common::path_str(s.ca_file()).to_owned();
    let home = acc.home("dev");
    let home_s = common::path_str(&home).to_owned();

    // Wrong password: exit 3, names the account and the server, home untouched.
    let out = sma()
        .args([
            "--json",
            "--home",
            &home_s,
            "init",
            "--server",
            &tls,
            "--ca-file",
            &ca,
            "--user",
            &acc.user,
        ])
        .env("SMA_PASSWORD", "not-the-password")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let err = stderr_json(&out);
    assert_eq!(err["kind"], "rejected");
    let msg = err["error"].as_str().expect("message");
    assert!(msg.contains(&acc.user) && msg.contains(&tls), "{msg}");
    assert!(msg.contains("password"), "says what to do: {msg}");
    assert!(!home.exists(), "a failed init leaves no home behind");

    // Unreachable server: exit 1.
    let out = sma()
        .args([
            "--home",
            &home_s,
            "init",
            "--server",
            "127.0.0.1:1",
            "--security",
            "plain",
            "--user",
            &acc.user,
        ])
        .env("SMA_PASSWORD", &acc.password)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert_eq!(
        stderr.matches("refused").count(),
        1,
        "the cause once: {stderr}"
    );
    assert!(!home.exists());

    // Untrusted certificate: exit 1 with a clear TLS message.
    let out = sma()
        .args([
            "--home", &home_s, "init", "--server", &tls, "--user", &acc.user,
        ])
        .env("SMA_PASSWORD", &acc.password)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("TLS") && text.contains("--ca-file"), "{text}");

    // Plain IMAP to a non-loopback host is refused before connecting.
    let out = sma()
        .args([
            "--home",
            &home_s,
            "init",
            "--server",
            "imap.example.invalid",
            "--security",
            "plain",
            "--user",
            &acc.user,
        ])
        .env("SMA_PASSWORD", &acc.password)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-insecure"));

    // Success over STARTTLS, then a second init on the same home changes nothing.
    let plain = format!("127.0.0.1:{}", s.plain_port());
    let starttls_init = [
        "init",
        "--server",
        &plain,
        "--security",
        "starttls",
        "--ca-file",
        &ca,
        "--user",
        &acc.user,
    ];
    let ok = acc.ok("dev", &starttls_init);
    assert_eq!(ok[0]["role"], "founder");
    let id = ok[0]["device_id"].as_str().expect("id").to_owned();
    assert!(
        id.len() == 16
            && id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let db = home.join("sma.sqlite");
    let before = std::fs::read(&db).expect("store");
    let again = acc.run("dev", &starttls_init);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr_json(&again)["error"]
        .as_str()
        .unwrap_or_default()
        .contains(&id));
    assert_eq!(
        std::fs::read(&db).expect("store"),
        before,
        "a second init must not change the home"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&home).expect("home").permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(&db).expect("db").permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn status_json_shows_capabilities_namespace_members_and_folders() {
    let acc = Account::new();
    acc.init("a");
    acc.init("b");
    let s = &acc.ok("a", &["status"])[0];
    for key in [
        "device_id",
        "name",
        "role",
        "account",
        "server",
        "members",
        "folders",
        "keyring_size",
        "sync_warnings",
    ] {
        assert!(s.get(key).is_some(), "status lacks {key}: {s}");
    }
    assert_eq!(s["role"], "founder");
    assert_eq!(s["sync_warnings"], serde_json::json!([]), "in sync: {s}");
    let caps: Vec<&str> = s["server"]["capabilities"]
        .as_array()
        .expect("capabilities")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(
        caps.contains(&"IMAP4rev1") && caps.contains(&"IDLE"),
        "{caps:?}"
    );
    assert_eq!(s["server"]["host"], "127.0.0.1");
    assert_eq!(s["server"]["namespace_prefix"], "");
    let members = s["members"].as_array().expect("members");
    assert_eq!(members.len(), 2, "self and the pending device: {members:?}");
    assert!(members.iter().any(|m| m["state"] == "pending"));
    assert!(members.iter().any(|m| m["state"] == "active"));
    for m in members {
        let seen = m["last_seen"].as_str().expect("last_seen");
        assert!(
            seen.ends_with('Z') && seen.len() == 20,
            "RFC 3339 UTC: {seen}"
        );
    }
    let folders: Vec<(String, u64)> = s["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap_or_default().to_owned(),
                f["messages"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert!(
        folders.contains(&("_Autocrypt_SMA".to_owned(), 2)),
        "{folders:?}"
    );
    assert_eq!(folders.len(), 3);
    let b = &acc.ok("b", &["status"])[0];
    assert_eq!(b["role"], "pending");
}

#[test]
fn member_only_commands_explain_themselves_on_a_pending_device() {
    let acc = Account::new();
    acc.init("a");
    acc.init("b");
    let out = acc.run("b", &["send", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_json(&out)["error"]
        .as_str()
        .unwrap_or_default()
        .contains("sma pair"));
    let out = acc.run("a", &["join", "--code", "1234-5678-9012"]);
    assert_eq!(out.status.code(), Some(1), "join on a member");
    // Without --code the code comes from standard input: none is a usage
    // error, a malformed one too.
    let join = || {
        let mut c = acc.cmd("b");
        c.arg("join");
        c
    };
    let out = run_with_input(join(), b"");
    assert_eq!(out.status.code(), Some(2), "join with an empty stdin");
    assert!(stderr_json(&out)["error"]
        .as_str()
        .unwrap_or_default()
        .contains("no pairing code"));
    let out = run_with_input(join(), b"12-34\n");
    assert_eq!(out.status.code(), Some(2), "join with a malformed code");
    // No pending device left after pairing: pair says what to do.
    acc.pair("a", "b");
    let out = acc.run("a", &["pair", "--timeout", "5"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_json(&out)["error"]
        .as_str()
        .unwrap_or_default()
        .contains("sma init"));
    // recv --wait with nothing waiting: exit 5.
    let out = acc.run("a", &["recv", "--wait", "1"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not initialised home.
    let out = acc.run("nowhere", &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_json(&out)["error"]
        .as_str()
        .unwrap_or_default()
        .contains("sma init"));
}

#[test]
fn simultaneous_founders_settle_on_exactly_one() {
    for _round in 0..2 {
        let acc = Account::new();
        let roles: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = ["x", "y"]
                .into_iter()
                .map(|d| {
                    let acc = &acc;
                    s.spawn(move || acc.init(d)["role"].as_str().unwrap_or_default().to_owned())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("init thread"))
                .collect()
        });
        let x = acc.ok("x", &["status"])[0]["role"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let y = acc.ok("y", &["status"])[0]["role"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut settled = [x, y];
        settled.sort();
        assert_eq!(settled, ["founder", "pending"], "init reported {roles:?}");
        let founders = roles.iter().filter(|r| *r == "founder").count();
        assert_eq!(
            founders, 1,
            "init itself must report one founder: {roles:?}"
        );
        // The pending one can be paired by the founder.
        let (founder, pending) = if settled_role(&acc, "x") == "founder" {
            ("x", "y")
        } else {
            ("y", "x")
        };
        acc.pair(founder, pending);
        assert_eq!(acc.ok(pending, &["status"])[0]["role"], "member");
    }
}

fn settled_role(acc: &Account, d: &str) -> String {
    acc.ok(d, &["status"])[0]["role"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

//! The device scenario on less common servers: Dovecot playing a server
//! that advertises almost no extension (`minimal`: no UIDPLUS, so no
//! APPENDUID; no IDLE, MOVE, CONDSTORE, LITERAL+), one without NAMESPACE
//! (`no-namespace`), and one whose personal namespace has the separator `/`
//! and a non-ASCII prefix (`utf7`: modified UTF-7 on the wire). Each runs
//! init, pair, messages both ways, watch, keyring sync, remove, status and
//! doctor through the real `sma` binary (see `scripts/imap-server --help`
//! for the profiles).

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use sma_testrig::Dovecot;

use common::{json_lines, read_code, run_with_input, RawImap};

/// One account on a Dovecot of one profile, with device homes.
struct Target {
    server: Dovecot,
    user: String,
    password: String,
    homes: tempfile::TempDir,
}

impl Target {
    fn start(profile: &str) -> Target {
        let server = Dovecot::start_profile(1, profile);
        let acc = server.account(0);
        Target {
            user: acc.user.clone(),
            password: acc.password.clone(),
            homes: tempfile::tempdir().expect("temp dir"),
            server,
        }
    }

    fn cmd(&self, dev: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sma"));
        c.arg("--home")
            .arg(self.homes.path().join(dev))
            .arg("--json")
            .env("SMA_PASSWORD", &self.password)
            .env_remove("SMA_HOME");
        c
    }

    fn run(&self, dev: &str, args: &[&str]) -> Output {
        self.cmd(dev).args(args).output().expect("run sma")
    }

    fn ok(&self, dev: &str, args: &[&str]) -> Vec<Value> {
        common::expect_ok(&self.run(dev, args), dev, args)
    }

    /// `init` over implicit TLS with the rig's CA.
    fn init(&self, dev: &str) -> Value {
        let server = format!("127.0.0.1:{}", self.server.tls_port());
        let ca = self
            .server
            .ca_file()
            .to_str()
            .expect("utf-8 path")
            .to_owned();
        let args = [
            "init",
            "--server",
            &server,
            "--ca-file",
            &ca,
            "--user",
            &self.user,
            "--name",
            dev,
        ];
        self.ok(dev, &args).remove(0)
    }

    fn pair(&self, member: &str, joiner: &str, joiner_id: &str) {
        let mut pair = self
            .cmd(member)
            .args(["pair", "--device", joiner_id, "--timeout", "150"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pair");
        let code = read_code(&mut pair);
        let joined = self.ok(joiner, &["join", "--code", &code, "--timeout", "150"]);
        assert_eq!(joined.last().expect("joined")["event"], "joined");
        let out = pair.wait_with_output().expect("pair");
        assert!(
            out.status.success(),
            "pair failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn send(&self, dev: &str, to: &str, body: &str) {
        let mut send = self.cmd(dev);
        send.args(["send", "--to", to]);
        let out = run_with_input(send, body.as_bytes());
        assert!(
            out.status.success(),
            "send failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `recv --wait`: exactly one message, from `from`, with `body`.
    fn recv_one(&self, dev: &str, from: &str, body: &str) {
        let got = self.ok(dev, &["recv", "--wait", "120"]);
        assert_eq!(got.len(), 1, "{dev}: {got:?}");
        assert_eq!(
            (got[0]["from"].as_str(), body_of(&got[0]).as_str()),
            (Some(from), body)
        );
    }

    /// Every folder name `LIST "" "*"` shows, exactly as on the wire.
    fn wire_folders(&self) -> Vec<String> {
        let mut imap = RawImap::login(&self.server, &self.user, &self.password);
        let listed = imap.command("LIST \"\" \"*\"");
        imap.logout();
        listed
            .lines()
            .filter(|l| l.starts_with("* LIST "))
            .filter_map(|l| {
                l.rsplit_once(' ')
                    .map(|(_, n)| n.trim_matches('"').to_owned())
            })
            .collect()
    }
}

fn body_of(line: &Value) -> String {
    let b = base64::engine::general_purpose::STANDARD
        .decode(line["body_b64"].as_str().expect("body_b64"))
        .expect("base64");
    String::from_utf8(b).expect("utf-8")
}

fn id_of(init: &Value) -> String {
    init["device_id"].as_str().expect("device id").to_owned()
}

/// `watch` on `dev` delivers a message sent by `from` as an event and
/// stops cleanly on Ctrl-C.
fn watch_delivers(t: &Target, dev: &str, dev_id: &str, from: &str) {
    let mut cmd = t.cmd(dev);
    cmd.arg("watch");
    let (mut watch, rx) = common::spawn_lines(cmd);
    t.send(from, dev_id, "while watching");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut got = None;
    while got.is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
            let v: Value = serde_json::from_str(&line).expect("watch prints JSON lines");
            if v["event"] == "message" {
                got = Some(v);
            }
        }
    }
    let _ = Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status();
    let status = watch.wait().expect("watch exit");
    let got = got.expect("watch delivered the message");
    assert_eq!(body_of(&got), "while watching");
    assert!(status.success(), "watch exits 0 on Ctrl-C: {status:?}");
}

/// A correspondent's key observed on `a` reaches `b` with the next syncs.
fn keyring_replicates(t: &Target, a: &str, b: &str) {
    let key =
        sma_crypto::AccountKey::generate(&mut rand::rngs::OsRng, "bob@example.org", 1_700_000_000)
            .expect("key");
    let header = format!(
        "addr=bob@example.org; prefer-encrypt=mutual; keydata={}",
        base64::engine::general_purpose::STANDARD.encode(key.public_bytes())
    );
    let observed = t.ok(
        a,
        &[
            "keys",
            "observe",
            "--from",
            "bob@example.org",
            "--date",
            "Fri, 1 Mar 2024 10:00:00 +0000",
            "--autocrypt",
            &header,
        ],
    );
    assert_eq!(observed[0]["autocrypt"], "valid", "{observed:?}");
    t.ok(a, &["sync"]);
    t.ok(b, &["sync"]);
    let shown = t.ok(b, &["keys", "show", "bob@example.org"]);
    assert_eq!(
        shown[0]["fingerprint"],
        key.fingerprint().to_string().as_str(),
        "{shown:?}"
    );
}

/// The whole scenario; `prefix` and `delimiter` are what the server's
/// namespace should come out as.
fn scenario(t: &Target, prefix: &str, delimiter: &str) -> Value {
    let a = t.init("a");
    assert_eq!(a["role"], "founder", "{a}");
    let announce = format!("{prefix}_Autocrypt_SMA");
    assert_eq!(a["folders"]["announce"], announce.as_str());
    let b = t.init("b");
    assert_eq!(b["role"], "pending", "{b}");
    let (a_id, b_id) = (id_of(&a), id_of(&b));
    t.pair("a", "b", &b_id);

    t.send("a", &b_id, "hello b");
    t.recv_one("b", &a_id, "hello b");
    t.send("b", &a_id, "hello a");
    t.recv_one("a", &b_id, "hello a");
    watch_delivers(t, "b", &b_id, "a");
    keyring_replicates(t, "a", "b");

    // A third device joins and is removed again.
    let c = t.init("c");
    let c_id = id_of(&c);
    let c_inbox = c["folders"]["inbox"].as_str().expect("inbox").to_owned();
    t.pair("a", "c", &c_id);
    t.ok("c", &["sync"]);
    let removed = t.ok("a", &["remove", &c_id]);
    assert_eq!(
        removed[0]["removed"],
        serde_json::json!([c_id]),
        "{removed:?}"
    );
    let gone = t.run("c", &["sync"]);
    assert_eq!(gone.status.code(), Some(4), "a removed device exits 4");
    for dev in ["b", "a"] {
        t.ok(dev, &["sync"]);
    }

    let mut status = Value::Null;
    for dev in ["a", "b"] {
        let s = t.ok(dev, &["status"]).remove(0);
        let members = s["members"].as_array().expect("members");
        let state = |id: &str| {
            members
                .iter()
                .find(|m| m["device_id"] == id)
                .map(|m| m["state"].clone())
        };
        assert_eq!(state(&a_id), Some("active".into()), "{dev}: {s}");
        assert_eq!(state(&b_id), Some("active".into()), "{dev}: {s}");
        assert_ne!(state(&c_id), Some("active".into()), "{dev}: {s}");
        let folders: Vec<&str> = s["folders"]
            .as_array()
            .expect("folders")
            .iter()
            .filter_map(|f| f["name"].as_str())
            .collect();
        for f in [
            announce.clone(),
            format!("{announce}_{a_id}"),
            format!("{announce}_{b_id}"),
        ] {
            assert!(
                folders.contains(&f.as_str()),
                "{dev}: {f} missing in {folders:?}"
            );
        }
        assert!(!folders.contains(&c_inbox.as_str()), "{dev}: {folders:?}");
        assert_eq!(s["server"]["namespace_prefix"], prefix, "{s}");
        assert_eq!(s["server"]["delimiter"], delimiter, "{s}");
        status = s;
    }

    let out = t.run("a", &["doctor"]);
    assert!(
        out.status.success(),
        "doctor found failures: {:#?}\n{}",
        json_lines(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    status
}

/// Nothing piles up: each SMA folder holds at most a few messages.
fn footprint_is_small(t: &Target) {
    for (name, count) in t.server.folders_on_disk(0) {
        if name == "_Autocrypt_SMA" {
            assert!(count <= 2, "{name} holds {count} announcements");
        } else if name.starts_with("_Autocrypt_SMA_") {
            assert!(count <= 3, "{name} holds {count} messages");
        } else {
            assert_eq!(count, 0, "{name} must stay empty");
        }
    }
}

#[test]
fn minimal_server_without_uidplus_idle_move_or_condstore() {
    let t = Target::start("minimal");
    let status = scenario(&t, "", ".");
    let caps: Vec<&str> = status["server"]["capabilities"]
        .as_array()
        .expect("capabilities")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for absent in [
        "UIDPLUS",
        "IDLE",
        "MOVE",
        "CONDSTORE",
        "QRESYNC",
        "LITERAL+",
    ] {
        assert!(!caps.contains(&absent), "{absent} advertised: {caps:?}");
    }
    footprint_is_small(&t);
}

#[test]
fn server_without_namespace() {
    let t = Target::start("no-namespace");
    let status = scenario(&t, "", ".");
    assert!(
        !status["server"]["capabilities"]
            .as_array()
            .expect("capabilities")
            .iter()
            .any(|c| c == "NAMESPACE"),
        "{status}"
    );
    footprint_is_small(&t);
}

#[test]
fn non_ascii_namespace_prefix_with_slash_separator() {
    let t = Target::start("utf7");
    scenario(&t, "Posteingang/Ordner-ä/", "/");
    let wire = t.wire_folders();
    assert!(
        wire.iter()
            .any(|n| n == "Posteingang/Ordner-&AOQ-/_Autocrypt_SMA"),
        "the announcements folder in modified UTF-7 on the wire: {wire:?}"
    );
    assert!(
        wire.iter().all(|n| n.is_ascii()),
        "8-bit folder names on the wire: {wire:?}"
    );
    footprint_is_small(&t);
}

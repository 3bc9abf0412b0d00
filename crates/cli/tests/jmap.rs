//! One group across two protocols (issue 19): devices of one Cyrus 3.6
//! account, some made with `sma init --jmap URL`, some over IMAP, found,
//! pair and message each other through the real `sma` binary, because both
//! protocols see the same folders and messages.
//!
//! Cyrus serves JMAP and IMAP through the rig's `scripts/cyrus-server start
//! --jmap`. Without an unpacked Cyrus with its httpd
//! (`scripts/cyrus-server install`, as root) every test prints `SKIPPED:`
//! with the reason and returns.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use serde_json::Value;
use sma_testrig::ScriptServer;

use common::{read_code, run_with_input};

/// The protocol a device is made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Imap,
    Jmap,
}

/// One Cyrus account serving both protocols, with device homes.
struct Account {
    server: ScriptServer,
    jmap_url: String,
    user: String,
    password: String,
    homes: tempfile::TempDir,
}

impl Account {
    /// A fresh Cyrus with JMAP and one account, or `None` after printing
    /// `SKIPPED: <why>` when Cyrus or its httpd is not unpacked here.
    fn start(test: &str) -> Option<Account> {
        let root =
            std::env::var("SMA_COMPAT_ROOT").unwrap_or_else(|_| "/var/tmp/sma-compat".into());
        let httpd = Path::new(&root).join("cyrus/root/usr/lib/cyrus/bin/httpd");
        if !httpd.exists() {
            eprintln!(
                "SKIPPED: {test}: Cyrus with its JMAP httpd is not unpacked ({} missing; run scripts/cyrus-server install as root)",
                httpd.display()
            );
            return None;
        }
        let server = ScriptServer::start("cyrus", 1, &["--jmap"]);
        let jmap_url = server
            .jmap_url()
            .expect("the rig printed no SMA_JMAP_URL")
            .to_owned();
        let acc = server.account(0);
        Some(Account {
            user: acc.user.clone(),
            password: acc.password.clone(),
            jmap_url,
            homes: tempfile::tempdir().expect("temp dir"),
            server,
        })
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

    /// `init` of device `dev` over `proto`; returns its JSON report.
    fn init(&self, dev: &str, proto: Proto) -> Value {
        let server = format!("127.0.0.1:{}", self.server.port());
        let mut args = vec!["init", "--user", &self.user, "--name", dev];
        match proto {
            Proto::Jmap => args.extend(["--jmap", &self.jmap_url]),
            Proto::Imap => args.extend(["--server", &server, "--security", "plain"]),
        }
        let report = self.ok(dev, &args).remove(0);
        assert_eq!(report["account"], self.user.as_str(), "{report}");
        let jmap_url = report["server"]["jmap_url"].as_str();
        match proto {
            Proto::Jmap => assert_eq!(jmap_url, Some(self.jmap_url.as_str()), "{report}"),
            Proto::Imap => assert_eq!(jmap_url, None, "{report}"),
        }
        report
    }

    /// `pair` on `member`, `join` on `joiner` with the code from its stdin.
    fn pair(&self, member: &str, joiner: &str, joiner_id: &str) {
        let mut child = self
            .cmd(member)
            .args(["pair", "--timeout", "120", "--device", joiner_id])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pair");
        let code = read_code(&mut child);
        let mut join = self.cmd(joiner);
        join.args(["join", "--timeout", "120"]);
        let out = run_with_input(join, format!("{code}\n").as_bytes());
        let joined = common::expect_ok(&out, joiner, &["join"]);
        let last = joined.last().expect("a joined line");
        assert_eq!(last["event"], "joined", "{joined:?}");
        assert_eq!(last["device_id"], joiner_id);
        let out = child.wait_with_output().expect("pair output");
        let paired = common::expect_ok(&out, member, &["pair"]);
        let last = paired.last().expect("a paired line");
        assert_eq!(last["event"], "paired", "{paired:?}");
        assert_eq!(last["device_id"], joiner_id);
    }

    /// `send --to` from `from`, then `recv --wait` on `to`: exactly that
    /// message arrives, from `from_id`, body intact.
    fn message(&self, from: &str, from_id: &str, to: &str, to_id: &str, body: &str) {
        let mut send = self.cmd(from);
        send.args(["send", "--to", to_id, "--kind", "note"]);
        let sent = common::expect_ok(&run_with_input(send, body.as_bytes()), from, &["send"]);
        assert_eq!(sent[0]["to"], serde_json::json!([to_id]), "{sent:?}");
        let got = self.ok(to, &["recv", "--wait", "30"]);
        assert_eq!(got.len(), 1, "one message for {to}: {got:?}");
        let m = &got[0];
        assert_eq!(m["from"], from_id, "{m}");
        assert_eq!(m["kind"], "note", "{m}");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(m["body_b64"].as_str().expect("body_b64"))
            .expect("base64 body");
        assert_eq!(String::from_utf8_lossy(&decoded), body, "{m}");
        // Received once: nothing waits any more.
        assert!(self.ok(to, &["recv"]).is_empty(), "{to} received twice");
    }

    /// `status` of `dev`: every id in `members` is an active member.
    fn assert_members(&self, dev: &str, members: &[&str]) {
        let s = self.ok(dev, &["status"]).remove(0);
        let listed = s["members"].as_array().expect("members");
        for id in members {
            assert!(
                listed
                    .iter()
                    .any(|m| m["device_id"] == *id && m["state"] == "active"),
                "{dev} does not list {id} as active: {s}"
            );
        }
        assert_eq!(listed.len(), members.len(), "{s}");
    }
}

/// The device scenario with the founder on `founder` and the joiner on
/// `joiner`: init both (same folders), pair, messages both ways, status.
fn scenario(test: &str, founder: Proto, joiner: Proto) {
    let Some(acc) = Account::start(test) else {
        return;
    };
    let a = acc.init("a", founder);
    assert_eq!(a["role"], "founder", "{a}");
    let b = acc.init("b", joiner);
    assert_eq!(b["role"], "pending", "{b}: the joiner must find the group");
    // Both name the announcements folder as IMAP shows it (Cyrus with
    // altnamespace: no puts it below INBOX).
    assert_eq!(a["folders"]["announce"], "INBOX._Autocrypt_SMA", "{a}");
    assert_eq!(a["folders"]["announce"], b["folders"]["announce"]);
    let a_id = a["device_id"].as_str().expect("id").to_owned();
    let b_id = b["device_id"].as_str().expect("id").to_owned();

    acc.pair("a", "b", &b_id);
    acc.message(
        "a",
        &a_id,
        "b",
        &b_id,
        "from a to b: grüße über zwei Protokolle\n",
    );
    acc.message("b", &b_id, "a", &a_id, "from b to a\n");
    acc.assert_members("a", &[&a_id, &b_id]);
    acc.assert_members("b", &[&a_id, &b_id]);
    eprintln!("== {test}: founder {founder:?}, joiner {joiner:?}: paired, messages both ways");
}

#[test]
fn jmap_founder_pairs_and_messages_with_an_imap_device() {
    scenario(
        "jmap_founder_pairs_and_messages_with_an_imap_device",
        Proto::Jmap,
        Proto::Imap,
    );
}

#[test]
fn imap_founder_pairs_and_messages_with_a_jmap_device() {
    scenario(
        "imap_founder_pairs_and_messages_with_a_jmap_device",
        Proto::Imap,
        Proto::Jmap,
    );
}

#[test]
fn a_jmap_only_group_pairs_and_messages() {
    scenario(
        "a_jmap_only_group_pairs_and_messages",
        Proto::Jmap,
        Proto::Jmap,
    );
}

#[test]
fn an_http_jmap_url_to_another_host_is_refused_without_allow_insecure() {
    // No server needed: the URL is refused before anything is sent.
    let homes = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_sma"))
        .arg("--home")
        .arg(homes.path().join("x"))
        .args([
            "--json",
            "init",
            "--jmap",
            "http://jmap.example.org/.well-known/jmap",
            "--user",
            "alice@example.org",
        ])
        .env("SMA_PASSWORD", "secret")
        .env_remove("SMA_HOME")
        .output()
        .expect("run sma");
    assert_eq!(out.status.code(), Some(2), "an insecure URL is a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jmap.example.org"), "{err}");
    assert!(!err.contains("secret"), "the password leaked: {err}");
    assert!(
        !homes.path().join("x").join("sma.sqlite").exists(),
        "a refused init left a home"
    );
}

//! The Cyrus side of the JMAP tests (`tests/jmap.rs`): one account that
//! serves IMAP and JMAP, device homes, and the `sma` commands the scenarios
//! run on them. Cyrus comes from the rig (`scripts/cyrus-server`); where it
//! is not unpacked, [`require_cyrus`] fails (the tests are ignored by default).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use sma_imap::{ImapConfig, ImapSession, Security, Transport, Uid, UidRange};
use sma_testrig::ScriptServer;

use super::{read_code, run_with_input};

/// The protocol a device is made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Imap,
    Jmap,
}

/// A fresh IMAP session on an account (the hostile provider's hands on
/// it, beside sma's devices), with the runtime to drive it.
struct Imap {
    rt: tokio::runtime::Runtime,
    t: ImapSession,
}

impl Imap {
    fn login(acc: &Account) -> Imap {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut c = ImapConfig::new(
            "127.0.0.1",
            Security::Plain,
            &acc.user,
            acc.password.as_str(),
        );
        c.port = acc.imap_port;
        let t = rt.block_on(ImapSession::connect(&c)).expect("IMAP login");
        Imap { rt, t }
    }
}

/// Fails unless Cyrus with its JMAP httpd is unpacked here: the tests that
/// call this are ignored by default and run by `scripts/compat-test cyrus`.
pub fn require_cyrus(test: &str) {
    let root = std::env::var("SMA_COMPAT_ROOT").unwrap_or_else(|_| "/var/tmp/sma-compat".into());
    let httpd = Path::new(&root).join("cyrus/root/usr/lib/cyrus/bin/httpd");
    assert!(
        httpd.exists(),
        "{test}: Cyrus with its JMAP httpd is not unpacked ({} missing): run scripts/compat-test cyrus (as root)",
        httpd.display()
    );
}

/// One Cyrus account serving both protocols, with device homes.
pub struct Account {
    /// The rig's server, stopped on drop (`None`: the test runs its own).
    _rig: Option<ScriptServer>,
    imap_port: u16,
    jmap_url: String,
    user: String,
    password: String,
    homes: tempfile::TempDir,
    /// Where the IMAP side puts a top-level JMAP mailbox: `INBOX.` on
    /// Cyrus (`altnamespace: no`).
    pub prefix: String,
    /// Whether the server pushes changes (JMAP event source): not
    /// Debian's Cyrus.
    pub pushes: bool,
}

/// Another JMAP server for the scenarios than the rig's Cyrus:
/// `SMA_JMAP_SERVER_SCRIPT` names a script that speaks
/// `scripts/cyrus-server`'s interface
/// ([`ScriptServer::try_start_script`]), and `SMA_JMAP_SERVER_PREFIX`
/// (default empty) is its IMAP personal namespace's prefix, and
/// `SMA_JMAP_SERVER_PUSHES=1` says that it pushes. This is how
/// the scenarios run against a server the project cannot install, such as
/// one that pushes (docs/COMPATIBILITY.md); run them one at a time
/// (`--test-threads 1`) unless the script starts an instance per call.
fn other_server() -> Option<(std::path::PathBuf, String)> {
    let script = std::env::var_os("SMA_JMAP_SERVER_SCRIPT")?;
    let prefix = std::env::var("SMA_JMAP_SERVER_PREFIX").unwrap_or_default();
    Some((script.into(), prefix))
}

impl Account {
    /// A fresh Cyrus with JMAP and one account; fails when Cyrus or its
    /// httpd is not unpacked here.
    pub fn start(test: &str) -> Account {
        let (server, prefix_pushes) = match other_server() {
            Some((script, prefix)) => (
                ScriptServer::try_start_script(&script, 1, &["--jmap"])
                    .unwrap_or_else(|e| panic!("{test}: {e}")),
                (
                    prefix,
                    std::env::var("SMA_JMAP_SERVER_PUSHES").is_ok_and(|v| v == "1"),
                ),
            ),
            None => {
                require_cyrus(test);
                (
                    ScriptServer::start("cyrus", 1, &["--jmap"]),
                    ("INBOX.".to_owned(), false),
                )
            }
        };
        let jmap_url = server
            .jmap_url()
            .expect("the rig printed no SMA_JMAP_URL")
            .to_owned();
        let acc = server.account(0);
        Account {
            user: acc.user.clone(),
            password: acc.password.clone(),
            imap_port: server.port(),
            jmap_url,
            homes: tempfile::tempdir().expect("temp dir"),
            _rig: Some(server),
            pushes: prefix_pushes.1,
            prefix: prefix_pushes.0,
        }
    }

    /// The first account of `own`.
    pub fn on(own: &OwnCyrus) -> Account {
        Account {
            _rig: None,
            imap_port: own.port,
            jmap_url: format!("http://127.0.0.1:{}/.well-known/jmap", own.http_port),
            user: "user1@sma.test".into(),
            password: "pass1".into(),
            homes: tempfile::tempdir().expect("temp dir"),
            prefix: "INBOX.".into(),
            pushes: false,
        }
    }

    pub fn cmd(&self, dev: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sma"));
        c.arg("--home")
            .arg(self.homes.path().join(dev))
            .arg("--json")
            .env("SMA_PASSWORD", &self.password)
            .env_remove("SMA_HOME");
        c
    }

    /// The home of device `dev`.
    pub fn home(&self, dev: &str) -> std::path::PathBuf {
        self.homes.path().join(dev)
    }

    pub fn run(&self, dev: &str, args: &[&str]) -> Output {
        self.cmd(dev).args(args).output().expect("run sma")
    }

    pub fn ok(&self, dev: &str, args: &[&str]) -> Vec<Value> {
        super::expect_ok(&self.run(dev, args), dev, args)
    }

    /// `init` of device `dev` over `proto`; returns its JSON report.
    pub fn init(&self, dev: &str, proto: Proto) -> Value {
        let server = format!("127.0.0.1:{}", self.imap_port);
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

    /// The protocol device `dev` was made with (its name ends in `-jmap`
    /// or `-imap`).
    pub fn proto(&self, dev: &str) -> Proto {
        if dev.ends_with("-jmap") {
            Proto::Jmap
        } else {
            Proto::Imap
        }
    }

    /// `pair` on `member`, `join` on `joiner` with the code from its stdin.
    pub fn pair(&self, member: &str, joiner: &str, joiner_id: &str) {
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
        let joined = super::expect_ok(&out, joiner, &["join"]);
        let last = joined.last().expect("a joined line");
        assert_eq!(last["event"], "joined", "{joined:?}");
        assert_eq!(last["device_id"], joiner_id);
        let out = child.wait_with_output().expect("pair output");
        let paired = super::expect_ok(&out, member, &["pair"]);
        let last = paired.last().expect("a paired line");
        assert_eq!(last["event"], "paired", "{paired:?}");
        assert_eq!(last["device_id"], joiner_id);
    }

    /// `send --to` from `from`, then `recv --wait` on `to`: exactly that
    /// message arrives, from `from_id`, body intact.
    pub fn message(&self, from: &str, from_id: &str, to: &str, to_id: &str, body: &str) {
        let mut send = self.cmd(from);
        send.args(["send", "--to", to_id, "--kind", "note"]);
        let sent = super::expect_ok(&run_with_input(send, body.as_bytes()), from, &["send"]);
        assert_eq!(sent[0]["to"], serde_json::json!([to_id]), "{sent:?}");
        let got = self.ok(to, &["recv", "--wait", "30"]);
        assert_eq!(got.len(), 1, "one message for {to}: {got:?}");
        let m = &got[0];
        assert_eq!(m["from"], from_id, "{m}");
        assert_eq!(m["kind"], "note", "{m}");
        assert_eq!(body_of(m), body, "{m}");
        // Received once: nothing waits any more.
        assert!(self.ok(to, &["recv"]).is_empty(), "{to} received twice");
    }

    /// `watch` on `dev` delivers, as an event, a message `from` sends while
    /// it runs, and stops cleanly on Ctrl-C. Returns how long delivery took.
    pub fn watch_delivers(&self, dev: &str, dev_id: &str, from: &str) -> Duration {
        self.watch_delivers_after(dev, dev_id, from, || {})
    }

    /// [`Account::watch_delivers`], running `meanwhile` once the watch is
    /// up, before the message is sent.
    pub fn watch_delivers_after(
        &self,
        dev: &str,
        dev_id: &str,
        from: &str,
        meanwhile: impl FnOnce(),
    ) -> Duration {
        let mut cmd = self.cmd(dev);
        cmd.arg("watch");
        let (mut watch, rx) = super::spawn_lines(cmd);
        // Let the first round pass, so that the message arrives while the
        // watch waits.
        std::thread::sleep(Duration::from_secs(2));
        meanwhile();
        let body = format!("while {dev} watches\n");
        let mut send = self.cmd(from);
        send.args(["send", "--to", dev_id]);
        super::expect_ok(&run_with_input(send, body.as_bytes()), from, &["send"]);
        let sent = Instant::now();
        let deadline = sent + Duration::from_secs(60);
        let mut got = None;
        while got.is_none() && Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                let v: Value = serde_json::from_str(&line).expect("watch prints JSON lines");
                if v["event"] == "message" {
                    got = Some((v, sent.elapsed()));
                }
            }
        }
        let _ = Command::new("kill")
            .args(["-INT", &watch.id().to_string()])
            .status();
        let status = watch.wait().expect("watch exit");
        let (got, took) = got.expect("watch delivered the message");
        assert_eq!(body_of(&got), body, "{got}");
        assert!(status.success(), "watch exits 0 on Ctrl-C: {status:?}");
        took
    }

    /// `init --jmap` with a wrong password exits 3, names JMAP and leaves
    /// no home behind.
    pub fn wrong_password_is_rejected(&self, dev: &str) {
        let out = self
            .cmd(dev)
            .env("SMA_PASSWORD", "not-the-password")
            .args(["init", "--user", &self.user, "--jmap", &self.jmap_url])
            .output()
            .expect("run sma");
        assert_eq!(out.status.code(), Some(3), "a wrong password is exit 3");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("JMAP login failed"), "{err}");
        assert!(
            !err.contains("not-the-password"),
            "the password leaked: {err}"
        );
        assert!(
            !self.homes.path().join(dev).join("sma.sqlite").exists(),
            "a failed init left a home"
        );
    }

    /// `serve --stdio` on JMAP device `dev` answers `status` over JMAP.
    pub fn serve_answers(&self, dev: &str, members: &[&str]) {
        let mut serve = self.cmd(dev);
        serve.args(["serve", "--stdio"]);
        let input = r#"{"jsonrpc":"2.0","method":"status","id":1}"#.to_owned() + "\n";
        let out = run_with_input(serve, input.as_bytes());
        let replies = super::json_lines(&out.stdout);
        assert_eq!(replies.len(), 1, "{replies:?}");
        let status = &replies[0]["result"];
        assert_eq!(
            status["server"]["jmap_url"],
            self.jmap_url.as_str(),
            "{replies:?}"
        );
        let listed = status["members"].as_array().expect("members");
        assert_eq!(listed.len(), members.len(), "{status}");
    }

    /// `config set` refuses host, port and security on JMAP device `dev`
    /// (the URL gives them) and leaves it working.
    pub fn server_settings_are_the_url(&self, dev: &str) {
        for (key, value) in [
            ("server.host", "elsewhere.example.org"),
            ("server.port", "993"),
            ("server.security", "tls"),
        ] {
            let out = self.run(dev, &["config", "set", key, value]);
            assert_eq!(out.status.code(), Some(2), "config set {key} on {dev}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("JMAP"), "{err}");
        }
        let host = self.ok(dev, &["config", "get", "server.host"]);
        assert_eq!(host[0]["value"], "127.0.0.1", "{host:?}");
    }

    /// `send --all` of `body` from `from`: it names every one of `to`, and
    /// each receives it exactly once.
    pub fn broadcast(&self, from: &str, to: &[(&str, &str)], body: &str) {
        let mut send = self.cmd(from);
        send.args(["send", "--all"]);
        let sent = super::expect_ok(&run_with_input(send, body.as_bytes()), from, &["send"]);
        let named = sent[0]["to"].as_array().expect("to").clone();
        for (dev, id) in to {
            assert!(named.iter().any(|t| t == id), "{dev} not sent to: {sent:?}");
            let got = self.ok(dev, &["recv", "--wait", "30"]);
            let bodies: Vec<String> = got.iter().map(body_of).collect();
            assert_eq!(bodies, [body], "{dev} received {got:?}");
        }
    }

    /// `send --to to_id` of `body` from `from`; the message id.
    pub fn send(&self, from: &str, to_id: &str, body: &str) -> String {
        let mut send = self.cmd(from);
        send.args(["send", "--to", to_id]);
        let sent = super::expect_ok(&run_with_input(send, body.as_bytes()), from, &["send"]);
        sent[0]["message_id"]
            .as_str()
            .expect("message id")
            .to_owned()
    }

    /// The bodies `recv` on `dev` gives now.
    pub fn recv_bodies(&self, dev: &str) -> Vec<String> {
        self.ok(dev, &["recv"]).iter().map(body_of).collect()
    }

    /// Every message of `folder`, read over IMAP: UID and bytes.
    pub fn messages_in(&self, folder: &str) -> Vec<(Uid, Vec<u8>)> {
        let Imap { rt, mut t } = Imap::login(self);
        rt.block_on(async {
            t.select(folder).await.expect("select");
            let uids: Vec<Uid> = t
                .fetch_headers(UidRange::all())
                .await
                .expect("headers")
                .iter()
                .map(|h| h.uid)
                .collect();
            let all = t.fetch_messages(&uids, u32::MAX).await.expect("messages");
            let _ = t.logout().await;
            all.into_iter()
                .map(|m| (m.uid, m.body.expect("a whole body")))
                .collect()
        })
    }

    /// The message of `folder` whose bytes contain `needle`, taken away
    /// over IMAP before its device sees it: its bytes.
    pub fn intercept(&self, folder: &str, needle: &str) -> Vec<u8> {
        let (uid, bytes) = self
            .messages_in(folder)
            .into_iter()
            .find(|(_, m)| String::from_utf8_lossy(m).contains(needle))
            .unwrap_or_else(|| panic!("no message with {needle} in {folder}"));
        let Imap { rt, mut t } = Imap::login(self);
        rt.block_on(async {
            t.select(folder).await.expect("select");
            t.delete_messages(&[uid]).await.expect("expunge");
            let _ = t.logout().await;
        });
        bytes
    }

    /// Appends `bytes` to `folder` over IMAP (a replay or a forgery).
    pub fn append(&self, folder: &str, bytes: &[u8]) {
        let Imap { rt, mut t } = Imap::login(self);
        rt.block_on(async {
            t.append(folder, &[], bytes).await.expect("append");
            let _ = t.logout().await;
        });
    }

    /// `status` of `dev`: every id in `members` is an active member.
    pub fn assert_members(&self, dev: &str, members: &[&str]) {
        let s = self.ok(dev, &["status"]).remove(0);
        match self.proto(dev) {
            Proto::Jmap => assert_eq!(s["server"]["jmap_url"], self.jmap_url.as_str(), "{s}"),
            Proto::Imap => assert!(s["server"].get("jmap_url").is_none(), "{s}"),
        }
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

/// The decoded body of a received message.
pub fn body_of(m: &Value) -> String {
    let b = base64::engine::general_purpose::STANDARD
        .decode(m["body_b64"].as_str().expect("body_b64"))
        .expect("base64 body");
    String::from_utf8(b).expect("utf-8 body")
}

/// A Cyrus with JMAP that a test stops and starts again itself, on the
/// same directory and ports (the rig's `ScriptServer` only starts once).
pub struct OwnCyrus {
    dir: tempfile::TempDir,
    port: u16,
    http_port: u16,
}

impl OwnCyrus {
    pub fn script() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cyrus-server")
    }

    pub fn new() -> OwnCyrus {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        };
        let (port, mut http_port) = (free(), free());
        while http_port == port {
            http_port = free();
        }
        let own = OwnCyrus {
            dir: tempfile::Builder::new()
                .prefix("sma-cyrus-own-")
                .tempdir()
                .expect("temp dir"),
            port,
            http_port,
        };
        own.start();
        own
    }

    pub fn start(&self) {
        let out = Command::new("bash")
            .arg(Self::script())
            .args(["start", "--accounts", "1", "--jmap", "--dir"])
            .arg(self.dir.path())
            .args(["--port", &self.port.to_string()])
            .args(["--http-port", &self.http_port.to_string()])
            .stdin(Stdio::null())
            .output()
            .expect("run cyrus-server");
        assert!(
            out.status.success(),
            "cyrus-server start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&self) {
        let _ = Command::new("bash")
            .arg(Self::script())
            .args(["stop", "--dir"])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .status();
    }
}

impl Drop for OwnCyrus {
    fn drop(&mut self) {
        self.stop();
    }
}

//! Server chaos: Dovecot stopped and started again while `sma watch` runs.
//! The watch reconnects with backoff, reports a `reconnected` event, and
//! delivers every message exactly once, including one sent just before the
//! outage and those sent after it.
//!
//! The test runs its own Dovecot instance, so stopping it disturbs no other
//! test.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{json_lines, read_code};
use serde_json::Value;
use sma_testrig::Dovecot;

/// Devices of one account on a server of their own.
struct Rig {
    server: Dovecot,
    dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            server: Dovecot::start(1),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sma"));
        c.arg("--home").arg(self.home(name)).arg("--json");
        c.env("SMA_PASSWORD", &self.server.account(0).password)
            .env_remove("SMA_HOME");
        c
    }

    /// [`Rig::cmd`] logging at debug level to a file of the rig's (a pipe
    /// nobody reads while the command runs could fill and stall it); read
    /// it with [`Rig::log_of`].
    fn logged(&self, name: &str, log: &str) -> Command {
        let file =
            std::fs::File::create(self.dir.path().join(format!("{log}.log"))).expect("log file");
        let mut c = self.cmd(name);
        c.env("SMA_LOG", "sma=debug,sma_imap=debug").stderr(file);
        c
    }

    /// What a [`Rig::logged`] command wrote to its log.
    fn log_of(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{log}.log"))).unwrap_or_default()
    }

    fn ok(&self, name: &str, args: &[&str]) -> Vec<Value> {
        let out = self.cmd(name).args(args).output().expect("run sma");
        assert!(
            out.status.success(),
            "sma {args:?} on {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&out.stdout)
    }

    fn init(&self, name: &str) {
        let server = format!("127.0.0.1:{}", self.server.tls_port());
        let ca = self.server.ca_file().to_str().expect("utf-8").to_owned();
        let user = self.server.account(0).user.clone();
        self.ok(
            name,
            &[
                "init",
                "--server",
                &server,
                "--ca-file",
                &ca,
                "--user",
                &user,
                "--name",
                name,
            ],
        );
    }

    fn device_id(&self, name: &str) -> String {
        self.ok(name, &["status"])[0]["device_id"]
            .as_str()
            .expect("device id")
            .to_owned()
    }

    fn pair(&self, member: &str, joiner: &str) {
        let id = self.device_id(joiner);
        let mut pair = self
            .cmd(member)
            .args(["pair", "--device", &id])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pair");
        let code = read_code(&mut pair);
        self.ok(joiner, &["join", "--code", &code]);
        assert!(pair.wait().expect("pair").success(), "pair failed");
    }

    fn send(&self, from: &str, body: &str) {
        let file = self.dir.path().join(format!("{body}.txt"));
        std::fs::write(&file, body).expect("body file");
        self.ok(from, &["send", "--all", path(&file)]);
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A running `sma watch` whose JSON lines arrive on a channel.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Watch {
    fn start(rig: &Rig, name: &str) -> Watch {
        let mut child = rig
            .cmd(name)
            .arg("watch")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Watch {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for an event matching `pred`; panics after `within`.
    fn wait_for(&mut self, what: &str, within: Duration, pred: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + within;
        if self.seen.iter().any(&pred) {
            return;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    let hit = pred(&v);
                    self.seen.push(v);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "watch did not report {what} within {within:?}; it printed {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Stops the watch as a person would (Ctrl-C), so it finishes
    /// recording what it printed; kills it only if it does not stop.
    fn stop(mut self) -> Vec<Value> {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        while let Ok(v) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(v);
        }
        self.seen
    }
}

/// Bodies of the `message` events among `events`.
fn bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|v| v["event"] == "message")
        .map(|v| {
            let b = base64::engine::general_purpose::STANDARD
                .decode(v["body_b64"].as_str().expect("body_b64"))
                .expect("base64");
            String::from_utf8(b).expect("utf-8")
        })
        .collect()
}

fn message(body: &'static str) -> impl Fn(&Value) -> bool {
    move |v: &Value| {
        v["event"] == "message"
            && v["body_b64"].as_str()
                == Some(&base64::engine::general_purpose::STANDARD.encode(body))
    }
}

#[test]
fn watch_survives_server_restarts_and_delivers_everything_once() {
    let mut rig = Rig::new();
    rig.init("a");
    rig.init("b");
    rig.pair("a", "b");
    rig.ok("a", &["sync"]);
    rig.ok("b", &["sync"]);
    let mut watch = Watch::start(&rig, "b");
    rig.send("a", "before");
    watch.wait_for(
        "the first message",
        Duration::from_secs(40),
        message("before"),
    );

    // A message sent just before the server goes down: the watch may or may
    // not have fetched it, and must deliver it once either way.
    rig.send("a", "edge");
    rig.server.stop();
    std::thread::sleep(Duration::from_secs(2));
    rig.server.start_again();
    watch.wait_for("reconnected", Duration::from_secs(40), |v| {
        v["event"] == "reconnected" && v["attempts"].as_u64().is_some_and(|n| n >= 1)
    });
    rig.send("a", "after");
    watch.wait_for(
        "the message sent after the restart",
        Duration::from_secs(40),
        message("after"),
    );
    watch.wait_for(
        "the message sent before the outage",
        Duration::from_secs(40),
        message("edge"),
    );

    // A longer outage: the backoff grows, the watch still comes back.
    rig.server.stop();
    std::thread::sleep(Duration::from_secs(5));
    rig.server.start_again();
    rig.send("a", "after-second");
    watch.wait_for(
        "the message sent after the second restart",
        Duration::from_secs(60),
        message("after-second"),
    );
    let seen = watch.stop();
    let reconnects = seen.iter().filter(|v| v["event"] == "reconnected").count();
    assert!(
        reconnects >= 2,
        "two outages, {reconnects} reconnections: {seen:?}"
    );
    let mut bodies = bodies(&seen);
    bodies.sort();
    assert_eq!(
        bodies,
        vec!["after", "after-second", "before", "edge"],
        "every message delivered exactly once"
    );
    // Nothing is left to deliver afterwards.
    assert!(rig.ok("b", &["recv"]).is_empty());
}

/// `pair` and `join` resume after the server restarts under them: first
/// while the member waits for the joiner, then while the joiner is in the
/// middle of the exchange. The code allows one attempt, so neither may
/// start over; both finish and the joiner is a member.
#[test]
fn pair_and_join_survive_server_restarts() {
    let mut rig = Rig::new();
    rig.init("a");
    rig.init("b");
    let b_id = rig.device_id("b");
    let mut pair = rig
        .logged("a", "pair")
        .args(["pair", "--device", &b_id, "--timeout", "120"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn pair");
    let code = read_code(&mut pair);
    // The member's session dies while it waits for the reply.
    rig.server.restart();

    let mut join = rig
        .logged("b", "join")
        .args(["join", "--code", &code, "--timeout", "120"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn join");
    let mut lines = BufReader::new(join.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("read");
    assert!(first.contains("\"waiting\""), "{first}");
    // The joiner is connected and at work: cut it off mid-exchange.
    rig.server.restart();

    let rest: Vec<String> = lines.map(|l| l.expect("read")).collect();
    let joined = join.wait().expect("join");
    if !joined.success() {
        // What the member did is the other half of the story.
        let _ = pair.kill();
        let paired = pair.wait().expect("pair");
        panic!(
            "join failed after the restart ({joined}): {rest:?}\n--- join's log:\n{}\n--- pair ({paired}), its log:\n{}",
            rig.log_of("join"),
            rig.log_of("pair"),
        );
    }
    let last: Value = serde_json::from_str(rest.last().expect("a result line")).expect("JSON");
    assert_eq!(last["event"], "joined", "{rest:?}");
    let paired = pair.wait().expect("pair");
    assert!(
        paired.success(),
        "pair failed after the restart ({paired}): {}",
        rig.log_of("pair")
    );
    for dev in ["a", "b"] {
        rig.ok(dev, &["sync"]);
    }
    let status = &rig.ok("b", &["status"])[0];
    let active = status["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["state"] == "active")
        .count();
    assert_eq!(active, 2, "{status}");
}

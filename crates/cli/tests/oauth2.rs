//! OAuth 2.0 login end to end: the real `sma` binary against Dovecot's
//! `oauth2` profile, which accepts only bearer tokens (HS256 JWTs whose
//! signature and expiry it checks locally) and no password at all.
//!
//! The token command is the rig's [`TokenHelper`]: it prints the token set
//! last and counts its runs, so the tests can expire or forge the token
//! between two commands and see that every connection asks for a new one.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::Value;
use sma_testrig::oauth2::{mint_jwt, unix_now, TokenHelper};
use sma_testrig::Dovecot;

use common::{json_lines, read_code, stderr_json};

/// Accounts on the shared server; each test takes its own.
const ACCOUNTS: usize = 3;

/// One OAuth-only Dovecot per test binary.
fn server() -> &'static Dovecot {
    static SERVER: OnceLock<Dovecot> = OnceLock::new();
    SERVER.get_or_init(|| Dovecot::start_profile(ACCOUNTS, "oauth2"))
}

/// One account of the server, device homes, and its token helper (which
/// starts out handing out a valid token).
struct Account<'s> {
    server: &'s Dovecot,
    index: usize,
    user: String,
    homes: tempfile::TempDir,
    helper: TokenHelper,
}

impl Account<'static> {
    /// The next account of the shared server.
    fn new() -> Account<'static> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let index = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(index < ACCOUNTS, "raise ACCOUNTS");
        Account::on(server(), index, &server().oauth2_token(index, 3600))
    }
}

impl<'s> Account<'s> {
    /// Account `index` of `server`, its helper handing out `token`.
    fn on(server: &'s Dovecot, index: usize, token: &str) -> Account<'s> {
        Account {
            server,
            index,
            user: server.account(index).user.clone(),
            homes: tempfile::tempdir().expect("temp dir"),
            helper: TokenHelper::new(token),
        }
    }

    fn home(&self, dev: &str) -> PathBuf {
        self.homes.path().join(dev)
    }

    /// `sma --home DEV --json` with no password anywhere in reach.
    fn cmd(&self, dev: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sma"));
        c.arg("--home")
            .arg(self.home(dev))
            .arg("--json")
            .env_remove("SMA_PASSWORD")
            .env_remove("SMA_HOME")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, dev: &str, args: &[&str]) -> Output {
        self.cmd(dev).args(args).output().expect("run sma")
    }

    fn ok(&self, dev: &str, args: &[&str]) -> Vec<Value> {
        common::expect_ok(&self.run(dev, args), dev, args)
    }

    /// `init` over implicit TLS with the rig's CA and `token_command`.
    fn init(&self, dev: &str, token_command: &str, extra: &[&str]) -> Output {
        let s = self.server;
        let addr = format!("127.0.0.1:{}", s.tls_port());
        let ca = s.ca_file().to_str().expect("utf-8 path").to_owned();
        let mut args = vec![
            "init",
            "--server",
            &addr,
            "--ca-file",
            &ca,
            "--user",
            &self.user,
            "--name",
            dev,
            "--oauth2-token-command",
            token_command,
        ];
        args.extend_from_slice(extra);
        self.run(dev, &args)
    }

    fn init_ok(&self, dev: &str) -> Value {
        let out = self.init(dev, &self.helper.command(), &[]);
        assert!(
            out.status.success(),
            "init of {dev} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&out.stdout).remove(0)
    }

    /// `pair` on `member`, `join` with its code on `joiner`; neither is
    /// given a token command: both use the one `init` stored.
    fn pair(&self, member: &str, joiner: &str) {
        let joiner_id = self.ok(joiner, &["status"])[0]["device_id"]
            .as_str()
            .expect("device id")
            .to_owned();
        let mut pair = self
            .cmd(member)
            .args(["pair", "--device", &joiner_id, "--timeout", "150"])
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
        let lines = json_lines(&out.stdout);
        assert_eq!(lines.last().expect("paired")["event"], "paired");
    }
}

/// Every byte of every file under `dir`.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p, bytes));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Whether `out` shows `token`, as it is or base64-encoded inside a longer
/// message (a SASL response) at any of the three alignments.
fn shows(out: &[u8], token: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    contains(out, token)
        || (0..3).any(|shift| {
            let encoded = b64.encode(format!("{}{token}", "x".repeat(shift)));
            // The first and last groups mix in neighbouring bytes.
            let core = &encoded[4..encoded.len() - 4];
            contains(out, core)
        })
}

/// Asserts that `out` failed with `code` and a JSON error of `kind` that
/// says `says`, and that neither output shows `token`.
fn assert_fails(out: &Output, code: i32, kind: &str, says: &str, token: &str) -> String {
    let err = stderr_json(out);
    let text = err["error"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        (out.status.code(), err["kind"].as_str()),
        (Some(code), Some(kind)),
        "{text}"
    );
    assert!(text.contains(says), "expected {says:?} in: {text}");
    for stream in [&out.stdout, &out.stderr] {
        assert!(!shows(stream, token), "the token was printed");
    }
    text
}

#[test]
fn a_device_pair_works_on_an_oauth_only_server_with_a_token_per_connection() {
    let acc = Account::new();
    let first = acc.helper.command();
    let founded = acc.init_ok("laptop");
    assert_eq!(founded["role"], "founder");
    assert_eq!(founded["server"]["auth"], "oauth2");
    assert!(acc.helper.runs() >= 1, "init ran no token command");
    let pending = acc.init_ok("phone");
    assert_eq!(pending["role"], "pending");

    // Later commands get neither a token command nor a password: the
    // stored command is run for each connection.
    let before = acc.helper.runs();
    acc.pair("laptop", "phone");
    let mut send = acc.cmd("laptop");
    send.args(["send", "--all"]);
    let out = common::run_with_input(send, b"over OAuth");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = acc.ok("phone", &["recv", "--wait", "120"]);
    assert_eq!(got.len(), 1, "{got:?}");
    let body = base64::engine::general_purpose::STANDARD
        .decode(got[0]["body_b64"].as_str().expect("body"))
        .expect("base64");
    assert_eq!(body, b"over OAuth");
    // A password option for a device with a token command is refused,
    // not silently ignored.
    let out = acc.run("laptop", &["sync", "--password-command", "echo pw"]);
    assert_fails(&out, 2, "usage", "token command", "SECRET-NONE");
    // Not even the most verbose log shows the token, plain or in base64.
    let out = acc.run("laptop", &["-vvv", "sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        contains(&out.stderr, "AUTHENTICATE"),
        "no login logged at -vvv"
    );
    let current = acc.server.oauth2_token(acc.index, 3600);
    acc.helper.set(&current);
    let out = acc.run("laptop", &["-vvv", "sync"]);
    assert!(!shows(&out.stderr, &current), "the token was logged");
    let synced = acc.ok("laptop", &["sync"]);
    assert!(synced[0]["applied"].is_number(), "{synced:?}");
    assert!(
        acc.helper.runs() >= before + 5,
        "pair, join, status, send, recv and sync must each run the token command ({} runs)",
        acc.helper.runs() - before
    );

    // The homes keep the command, never a token.
    let token = acc.server.oauth2_token(acc.index, 3600);
    acc.helper.set(&token);
    acc.ok("phone", &["sync"]);
    let files = files_under(acc.homes.path());
    assert!(
        files.iter().any(|(_, b)| contains(b, &first)),
        "command not stored"
    );
    for (path, bytes) in &files {
        assert!(
            !contains(bytes, &token),
            "{} holds the token",
            path.display()
        );
    }

    // An expired token: the server's refusal, exit 3; a current one works
    // again at the next connection (nothing was cached).
    let expired = acc.server.oauth2_token(acc.index, -120);
    acc.helper.set(&expired);
    let out = acc.run("laptop", &["sync"]);
    assert_fails(&out, 3, "rejected", "rejected the access token", &expired);
    acc.helper.set(&token);
    acc.ok("laptop", &["sync"]);

    // A token signed with another key: refused the same way.
    let forged = mint_jwt(b"not the server's key", &acc.user, unix_now() + 3600);
    acc.helper.set(&forged);
    let out = acc.run("phone", &["status"]);
    assert_fails(&out, 3, "rejected", "rejected the access token", &forged);
    acc.helper.set(&token);
    let status = acc.ok("phone", &["status"]);
    assert_eq!(status[0]["role"], "member");
    assert_eq!(status[0]["server"]["auth"], "oauth2");

    // JSON-RPC: `serve` logs in with the stored command as well, and a
    // rejected token is the error of the request that needed the login.
    let sync = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sync\",\"params\":{}}\n";
    let replies = serve(&acc, "laptop", sync);
    assert!(replies[0]["result"]["applied"].is_number(), "{replies:?}");
    acc.helper.set(&expired);
    let replies = serve(&acc, "laptop", sync);
    let message = replies[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("rejected the access token"), "{replies:?}");
    assert!(!message.contains(&expired));
}

/// `sma serve --stdio` on `dev` with `input`; its replies.
fn serve(acc: &Account, dev: &str, input: &str) -> Vec<Value> {
    let mut serve = acc.cmd(dev);
    serve.args(["serve", "--stdio"]);
    let out = common::run_with_input(serve, input.as_bytes());
    let replies = json_lines(&out.stdout);
    assert_eq!(replies.len(), 1, "{replies:?}");
    replies
}

#[test]
fn a_failing_token_command_is_a_clear_error_and_leaves_no_home() {
    let acc = Account::new();
    let home = acc.home("dev");
    for (cmd, says) in [
        (
            "echo SECRET-$((6 * 7))-TOKEN; echo helper broke >&2; exit 7",
            "failed (exit status: 7)",
        ),
        ("true", "printed no token"),
        ("printf '\\n\\n'", "printed no token"),
        ("/nonexistent/token-helper", "failed (exit status: 127)"),
    ] {
        let out = acc.init("dev", cmd, &[]);
        // What the command printed is never shown (the command line is).
        let text = assert_fails(&out, 1, "failed", says, "SECRET-42-TOKEN");
        assert!(text.contains("token command"), "{text}");
        assert!(!home.exists(), "a failed init left {}", home.display());
    }
    // The helper's own messages reach the user.
    let out = acc.init("dev", "echo helper broke >&2; exit 7", &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("helper broke"));
}

#[test]
fn a_server_without_oauth_is_a_clear_error_before_the_token_command_runs() {
    let password_only = Dovecot::start(1);
    let acc = Account::on(&password_only, 0, "a-token-never-asked-for");
    let out = acc.init("dev", &acc.helper.command(), &[]);
    assert_fails(
        &out,
        1,
        "failed",
        "offers no OAuth 2.0 login",
        "SECRET-NONE",
    );
    assert_eq!(acc.helper.runs(), 0, "the token command ran for nothing");
    assert!(!acc.home("dev").exists());
}

#[test]
fn token_commands_do_not_mix_with_passwords() {
    let acc = Account::new();
    let cmd = acc.helper.command();
    let out = acc.init("dev", &cmd, &["--save-password"]);
    assert_fails(&out, 2, "usage", "--save-password", "SECRET-NONE");
    let out = acc.init("dev", &cmd, &["--password-command", "echo pw"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!acc.home("dev").exists());
    assert_eq!(
        acc.helper.runs(),
        0,
        "the token command ran for a usage error"
    );
}

#[test]
fn outlook_without_a_token_command_is_a_usage_error_that_names_the_option() {
    let homes = tempfile::tempdir().expect("temp dir");
    let home = homes.path().join("dev");
    let out = Command::new(env!("CARGO_BIN_EXE_sma"))
        .arg("--home")
        .arg(&home)
        .args(["--json", "init", "--user", "alice@outlook.com"])
        .env("SMA_PASSWORD", "a password Outlook would refuse")
        .env_remove("SMA_HOME")
        .stdin(Stdio::null())
        .output()
        .expect("run sma");
    let err = stderr_json(&out);
    let text = err["error"].as_str().unwrap_or_default();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("Outlook.com") && text.contains("--oauth2-token-command"),
        "{text}"
    );
    assert!(!home.exists());
}

/// A `watch` keeps working across a reconnect after its first token has
/// expired: the reconnect runs the token command again and logs in with the
/// fresh token it prints (a token kept from the first login would be
/// refused). Own server: it is restarted to cut the connection.
#[test]
fn watch_reconnects_with_a_fresh_token_after_the_first_expired() {
    let mut dovecot = Dovecot::start_profile(1, "oauth2");
    let lifetime = 12;
    // The account borrows the server, which the restart needs mutably:
    // keep its parts, not the account.
    let (homes, helper, user, mut watch) = {
        let acc = Account::on(&dovecot, 0, &dovecot.oauth2_token(0, lifetime));
        let deadline = unix_now() + lifetime as u64;
        assert_eq!(acc.init_ok("laptop")["role"], "founder");
        let watch = acc
            .cmd("laptop")
            .arg("watch")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn watch");
        // Let the first token expire while the watch is connected.
        while unix_now() <= deadline + 1 {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        (acc.homes, acc.helper, acc.user, watch)
    };
    let runs = helper.runs();
    let fresh = mint_jwt(&dovecot.oauth2_key(), &user, unix_now() + 3600);
    helper.set(&fresh);
    dovecot.restart();

    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut reconnected = false;
    while !reconnected && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(1)) {
            let v: Value = serde_json::from_str(&line).expect("watch prints JSON lines");
            reconnected = v["event"] == "reconnected";
        }
    }
    let _ = Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status();
    let out = watch.wait_with_output().expect("watch exit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(reconnected, "no reconnected event; stderr: {stderr}");
    assert!(helper.runs() > runs, "the reconnect ran no token command");
    assert!(
        out.status.success(),
        "watch exits 0 on Ctrl-C: {:?} {stderr}",
        out.status
    );
    assert!(!shows(&out.stderr, &fresh), "the token was printed");
    drop(homes);
}

//! Shared harness for the CLI acceptance tests: a real Dovecot and the real
//! `sma` binary, driven exactly as a user or script would.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde_json::Value;
use sma_testrig::Dovecot;

pub mod cyrus;

/// Accounts on the shared server; each test takes its own.
const ACCOUNTS: usize = 16;

/// One Dovecot per test binary, shared by its tests (each uses other accounts).
pub fn server() -> &'static Dovecot {
    static SERVER: OnceLock<Dovecot> = OnceLock::new();
    SERVER.get_or_init(|| Dovecot::start(ACCOUNTS))
}

/// Hands out a fresh account index per call.
pub fn next_account() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let i = NEXT.fetch_add(1, Ordering::SeqCst);
    assert!(
        i < ACCOUNTS,
        "test harness ran out of accounts; raise ACCOUNTS"
    );
    i
}

/// One account on the server with a temp dir for device homes.
pub struct Account {
    pub index: usize,
    pub user: String,
    pub password: String,
    pub dir: tempfile::TempDir,
}

impl Account {
    pub fn new() -> Account {
        let index = next_account();
        let a = server().account(index);
        Account {
            index,
            user: a.user.clone(),
            password: a.password.clone(),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `sma` command for device `name` with the password in the environment.
    pub fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sma"));
        c.arg("--home").arg(self.home(name)).arg("--json");
        c.env("SMA_PASSWORD", &self.password).env_remove("SMA_HOME");
        c
    }

    /// Runs `sma --home <name> --json ARGS` and returns its output.
    pub fn run(&self, name: &str, args: &[&str]) -> Output {
        self.cmd(name).args(args).output().expect("run sma")
    }

    /// Runs and requires success; returns the JSON lines of stdout.
    pub fn ok(&self, name: &str, args: &[&str]) -> Vec<Value> {
        let out = self.run(name, args);
        assert!(
            out.status.success(),
            "sma {args:?} on {name} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&out.stdout)
    }

    /// `init` over implicit TLS with the test CA; requires success.
    pub fn init(&self, name: &str) -> Value {
        let out = self.init_with(name, &[]);
        assert!(
            out.status.success(),
            "init of {name} failed with {:?}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&out.stdout).remove(0)
    }

    /// Runs `pair` on `member` and `join` on `joiner` with the shown code,
    /// which `join` reads from its standard input as a person's pipe would
    /// give it (not from the command line, visible to other users).
    pub fn pair(&self, member: &str, joiner: &str) {
        let joiner_id = self.device_id(joiner);
        let mut child = self.spawn_pair(member, &["--device", &joiner_id]);
        let code = read_code(&mut child);
        let mut join = self.cmd(joiner);
        join.arg("join");
        let out = run_with_input(join, format!("{code}\n").as_bytes());
        assert!(
            out.status.success(),
            "join on {joiner} failed with {:?}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let joined = json_lines(&out.stdout);
        // Progress lines may come first; the last line is the result.
        assert_eq!(joined.last().expect("joined line")["event"], "joined");
        let out = child.wait_with_output().expect("pair output");
        assert!(
            out.status.success(),
            "pair failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = json_lines(&out.stdout);
        assert_eq!(lines.last().expect("paired line")["event"], "paired");
    }

    pub fn spawn_pair(&self, member: &str, extra: &[&str]) -> Child {
        self.cmd(member)
            .arg("pair")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pair")
    }

    pub fn device_id(&self, name: &str) -> String {
        let s = self.ok(name, &["status"]);
        s[0]["device_id"].as_str().expect("device id").to_owned()
    }

    /// Folders of this account on disk with message counts.
    pub fn folders(&self) -> Vec<(String, usize)> {
        server().folders_on_disk(self.index)
    }

    pub fn count(&self, folder: &str) -> usize {
        self.folders()
            .into_iter()
            .find(|(n, _)| n == folder)
            .map(|(_, c)| c)
            .unwrap_or(0)
    }
}

/// Reads the first JSON line of a running `pair` and returns the code.
pub fn read_code(child: &mut Child) -> String {
    let stdout = child.stdout.as_mut().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read code line");
    let v: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad code line {line:?}: {e}"));
    assert_eq!(v["event"], "code");
    v["code"].as_str().expect("code").to_owned()
}

/// Runs `cmd` with `input` on its standard input and waits for it.
pub fn run_with_input(mut cmd: Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sma");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait for sma")
}

/// The JSON lines of a run of `sma ARGS` on device `dev`, which must have
/// succeeded (the failure message shows its exit code and both streams).
pub fn expect_ok(out: &Output, dev: &str, args: &[&str]) -> Vec<Value> {
    assert!(
        out.status.success(),
        "sma {args:?} on {dev} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&out.stdout)
}

pub fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// The only JSON line of a command's output.
pub fn one(lines: Vec<Value>) -> Value {
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines.into_iter().next().expect("one line")
}

pub fn stderr_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON error on stderr: {text}"));
    serde_json::from_str(line).expect("JSON error line")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

impl Account {
    /// `init` over implicit TLS with the test CA and extra arguments;
    /// returns the raw output (for failure cases).
    pub fn init_with(&self, name: &str, extra: &[&str]) -> Output {
        let s = server();
        let server_arg = format!("127.0.0.1:{}", s.tls_port());
        let ca = s.ca_file().to_str().expect("utf-8 path").to_owned();
        let mut args = vec![
            "init",
            "--server",
            &server_arg,
            "--ca-file",
            &ca,
            "--user",
            &self.user,
            "--name",
            name,
        ];
        args.extend_from_slice(extra);
        self.run(name, &args)
    }
}

// ---------------------------------------------------------------------------
// Reliability helpers (crash, chaos and hostile-provider tests).

/// A raw IMAP session over the plain port, as someone holding the account
/// password would use it: no protocol knowledge, just commands.
pub struct RawImap {
    tcp: std::net::TcpStream,
    tag: u32,
}

impl RawImap {
    /// Logs in to `server` as `user`.
    pub fn login(server: &Dovecot, user: &str, password: &str) -> RawImap {
        let tcp =
            std::net::TcpStream::connect(("127.0.0.1", server.plain_port())).expect("connect");
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("read timeout");
        let mut s = RawImap { tcp, tag: 0 };
        s.read_until(|t| t.contains("\r\n"));
        let resp = s.command(&format!("LOGIN {user} {password}"));
        assert!(resp.contains(" OK"), "raw login failed: {resp}");
        s
    }

    /// Logs in to the shared server as the account's user.
    pub fn for_account(acc: &Account) -> RawImap {
        RawImap::login(server(), &acc.user, &acc.password)
    }

    fn read_until(&mut self, done: impl Fn(&str) -> bool) -> String {
        use std::io::Read;
        let mut text = String::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = self.tcp.read(&mut buf).expect("read from IMAP server");
            assert!(n > 0, "the IMAP server closed the connection: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if done(&text) {
                return text;
            }
        }
    }

    /// Reads up to and including the tagged completion line of `tag`.
    fn read_tagged(&mut self, tag: &str) -> String {
        let start = format!("{tag} ");
        let mid = format!("\r\n{tag} ");
        self.read_until(|t| {
            let at = if t.starts_with(&start) {
                Some(0)
            } else {
                t.find(&mid).map(|i| i + 2)
            };
            at.is_some_and(|i| t[i..].contains("\r\n"))
        })
    }

    /// Runs one command; returns every line up to and including the tagged
    /// completion.
    pub fn command(&mut self, cmd: &str) -> String {
        use std::io::Write;
        self.tag += 1;
        let tag = format!("x{}", self.tag);
        write!(self.tcp, "{tag} {cmd}\r\n").expect("write command");
        self.read_tagged(&tag)
    }

    /// `APPEND folder {n+}` with `bytes`; panics unless OK.
    pub fn append(&mut self, folder: &str, bytes: &[u8]) {
        use std::io::Write;
        self.tag += 1;
        let tag = format!("x{}", self.tag);
        write!(
            self.tcp,
            "{tag} APPEND \"{folder}\" {{{}+}}\r\n",
            bytes.len()
        )
        .expect("write");
        self.tcp.write_all(bytes).expect("write literal");
        self.tcp.write_all(b"\r\n").expect("write");
        let resp = self.read_tagged(&tag);
        assert!(
            resp.contains(&format!("{tag} OK")),
            "append to {folder} failed: {resp}"
        );
    }

    /// `DELETE folder`; returns whether the server said OK.
    pub fn delete_folder(&mut self, folder: &str) -> bool {
        self.command(&format!("DELETE \"{folder}\""))
            .contains(" OK")
    }

    /// Deletes the messages of `folder` whose Message-ID contains `needle`;
    /// returns how many.
    pub fn expunge_message_id(&mut self, folder: &str, needle: &str) -> usize {
        let resp = self.command(&format!("SELECT \"{folder}\""));
        assert!(resp.contains(" OK"), "select {folder}: {resp}");
        let found = self.command(&format!("UID SEARCH HEADER Message-ID \"{needle}\""));
        let uids: Vec<String> = found
            .lines()
            .filter_map(|l| l.strip_prefix("* SEARCH"))
            .flat_map(|l| l.split_whitespace().map(str::to_owned))
            .collect();
        if !uids.is_empty() {
            let set = uids.join(",");
            self.command(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"));
            self.command("EXPUNGE");
        }
        self.command("CLOSE");
        uids.len()
    }

    /// `LOGOUT`.
    pub fn logout(mut self) {
        let _ = self.command("LOGOUT");
    }
}

/// Appends raw bytes to a folder of the account as someone holding the
/// IMAP password would (a replay, a forgery).
pub fn replay_into(acc: &Account, folder: &str, bytes: &[u8]) {
    let mut imap = RawImap::for_account(acc);
    imap.append(folder, bytes);
    imap.logout();
}

/// The raw messages of one folder of the account, read from the server's
/// disk.
pub fn messages_in(acc: &Account, folder: &str) -> Vec<Vec<u8>> {
    let dir = server().maildir(acc.index);
    let folder_dir = if folder == "INBOX" {
        dir
    } else {
        dir.join(format!(".{folder}"))
    };
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(rd) = std::fs::read_dir(folder_dir.join(sub)) else {
            continue;
        };
        let mut files: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            if let Ok(b) = std::fs::read(&f) {
                out.push(b);
            }
        }
    }
    out
}

/// How a run of `sma` that may have been killed ended.
pub struct MaybeKilled {
    /// Whether it was killed before it exited on its own.
    pub killed: bool,
    /// Its exit status when it was not killed.
    pub status: Option<i32>,
    /// The complete JSON lines it printed (a line cut by the kill is dropped).
    pub lines: Vec<Value>,
    /// Its standard error.
    pub stderr: String,
}

/// Starts `cmd`, sends it SIGKILL after `after` unless it exited before,
/// and collects what it printed.
pub fn run_and_kill(mut cmd: Command, after: std::time::Duration) -> MaybeKilled {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sma");
    let deadline = std::time::Instant::now() + after;
    let mut killed = false;
    loop {
        if child.try_wait().expect("poll child").is_some() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            // SIGKILL: no destructor, no flush beyond what was written.
            let _ = child.kill();
            killed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let out = child.wait_with_output().expect("collect output");
    let killed = killed && out.status.code().is_none();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    MaybeKilled {
        killed,
        status: out.status.code(),
        lines,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The member record a verified announcement (`ann`, signed by `cert`)
/// stands for, with `status` and `heartbeat`: what a forger who read the
/// announcements folder can build.
pub fn member_record(
    ann: sma_proto::payload::Announcement,
    cert: &sma_crypto::Certificate,
    status: sma_proto::state::MemberStatus,
    heartbeat: u64,
) -> sma_proto::state::MemberRecord {
    sma_proto::state::MemberRecord {
        id: ann.device_id.clone(),
        fingerprint: cert.fingerprint().to_string(),
        cert: ann.cert.clone(),
        name: ann.name.clone(),
        name_stamp: sma_proto::hlc::Hlc {
            ms: 0,
            counter: 0,
            device: ann.device_id,
        },
        status,
        heartbeat,
        final_seq: None,
        left_seq: 0,
    }
}

/// The offset of a base64 character in the middle of the armored block
/// that starts with `begin` (a body line, not a header): where a test
/// changes one character to tamper with a message.
pub fn inside_armor(text: &str, begin: &str) -> usize {
    let at = text.find(begin).expect("armor");
    let lines: Vec<(usize, &str)> = text[at..]
        .split("\r\n")
        .scan(at, |off, l| {
            let start = *off;
            *off += l.len() + 2;
            Some((start, l))
        })
        .take_while(|(_, l)| !l.starts_with("-----END"))
        .filter(|(_, l)| l.len() >= 40 && !l.contains(':'))
        .collect();
    let (start, line) = lines[lines.len() / 2];
    start + line.len() / 2
}

/// Starts `cmd` (e.g. `sma watch`) with its stdout piped and its stderr
/// dropped; returns the child and its output lines as they come.
pub fn spawn_lines(mut cmd: Command) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

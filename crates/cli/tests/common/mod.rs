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

    /// `init` over implicit TLS with the test CA.
    pub fn init(&self, name: &str) -> Value {
        let s = server();
        let server_arg = format!("127.0.0.1:{}", s.tls_port());
        let ca = s.ca_file().to_str().expect("utf-8 path").to_owned();
        let mut v = self.ok(
            name,
            &[
                "init",
                "--server",
                &server_arg,
                "--ca-file",
                &ca,
                "--user",
                &self.user,
                "--name",
                name,
            ],
        );
        v.remove(0)
    }

    /// Runs `pair` on `member` and `join` on `joiner` with the shown code.
    pub fn pair(&self, member: &str, joiner: &str) {
        let joiner_id = self.device_id(joiner);
        let mut child = self.spawn_pair(member, &["--device", &joiner_id]);
        let code = read_code(&mut child);
        let joined = self.ok(joiner, &["join", "--code", &code]);
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

pub fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
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

//! Test rig for sma's integration tests: a real, private, unprivileged Dovecot
//! IMAP server on 127.0.0.1, a misbehaving proxy to put in front of it
//! ([`hostile::HostileProxy`]), and [`run_measured`] to run a program and
//! read its peak memory.
//!
//! [`Dovecot::start`] drives `scripts/imap-server` (the single source of truth
//! for how the server is installed, configured, started and stopped) with a
//! fresh temporary directory, and hands out everything a test needs: host,
//! ports, CA files, accounts, plus raw views of the mail store on disk for
//! assertions that must not go through IMAP.
//!
//! Each instance has
//! * a plain IMAP port offering STARTTLS ([`Dovecot::plain_port`]) and an
//!   implicit-TLS port ([`Dovecot::tls_port`]), both on 127.0.0.1 only;
//! * a server certificate for `localhost` and `127.0.0.1` signed by a throwaway
//!   CA ([`Dovecot::ca_file`]), and an unrelated CA with the same subject name
//!   ([`Dovecot::wrong_ca_file`]) for certificate-rejection tests;
//! * accounts `user1@sma.test` … `userN@sma.test` with passwords `pass1` …
//!   `passN`, in maildirs with the personal namespace `("" ".")`.
//!
//! [`Dovecot::start_profile`] makes Dovecot play other kinds of servers; with
//! profile `oauth2` it accepts only OAuth 2.0 bearer tokens, which
//! [`Dovecot::oauth2_token`] mints (see [`oauth2`]).
//!
//! Failures panic with a clear message: a test that needs the server must fail,
//! never silently skip. Dropping a [`Dovecot`] stops the server and deletes its
//! directory. Should the test process exit without dropping it (a crash, or a
//! server shared through a `static`, which is never dropped), a watcher started
//! by the script stops the server and deletes the directory within a few
//! seconds.
//!
//! ```no_run
//! use sma_testrig::Dovecot;
//!
//! let server = Dovecot::start(2);
//! let account = server.account(0); // user1@sma.test / pass1
//! let addr = (server.host(), server.plain_port());
//! # let _ = (account, addr);
//! ```

#![warn(missing_docs)]

pub mod hostile;
mod measure;
pub mod oauth2;
mod script_server;

pub use measure::{run_measured, Measured};
pub use oauth2::TokenHelper;
pub use script_server::ScriptServer;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// One IMAP account of a [`Dovecot`] instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The login name, a full address such as `user1@sma.test`.
    pub user: String,
    /// The password, such as `pass1`.
    pub password: String,
}

/// A running (or stopped) private Dovecot instance in a temporary directory.
///
/// Stopped and its directory deleted on drop.
#[derive(Debug)]
pub struct Dovecot {
    /// The instance directory; `None` only during drop.
    dir: Option<tempfile::TempDir>,
    /// Canonical path of `dir`.
    path: PathBuf,
    host: String,
    plain_port: u16,
    tls_port: u16,
    ca_file: PathBuf,
    wrong_ca_file: PathBuf,
    domain: String,
    accounts: Vec<Account>,
    /// The master's pid while running.
    pid: Option<u32>,
}

/// Path of `scripts/imap-server`, relative to this crate.
pub fn script_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/imap-server");
    path.canonicalize().unwrap_or(path)
}

/// Runs `scripts/imap-server install` once per process: installs
/// `dovecot-imapd`, `openssl` and `gnupg` when missing, else does nothing.
///
/// Panics when the installation fails. [`Dovecot::start`] calls this itself.
pub fn ensure_installed() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let out = run_script(["install"])?;
        if out.status.success() {
            Ok(())
        } else {
            Err(describe_failure("install", &out))
        }
    });
    if let Err(e) = result {
        panic!("sma-testrig: cannot install Dovecot: {e}");
    }
}

/// Runs the script with `args` (through bash, so a lost executable bit does no
/// harm), stdin closed, stdout and stderr captured.
fn run_script<I, S>(args: I) -> Result<Output, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let script = script_path();
    Command::new("bash")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))
}

fn describe_failure(what: &str, out: &Output) -> String {
    format!(
        "`{} {what}` failed ({}):\n{}{}",
        script_path().display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `KEY=VALUE` pairs of the script's env line (last non-empty line).
fn parse_env(stdout: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn env_value<'a>(env: &'a [(String, String)], key: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| {
            panic!("sma-testrig: {key} missing in the output of imap-server start: {env:?}")
        })
}

fn env_parse<T: std::str::FromStr>(env: &[(String, String)], key: &str) -> T {
    let value = env_value(env, key);
    value
        .parse()
        .unwrap_or_else(|_| panic!("sma-testrig: bad {key}={value} from imap-server start"))
}

/// Undoes Dovecot's tab-escaping (`\x01` + `1`/`t`/`r`/`n`/`0`) of a
/// subscriptions-file line.
fn tab_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\x01' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('1') => out.push('\x01'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Regular files directly in `dir`, sorted by name; nothing if `dir` is missing.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| e.path())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// All regular files below `dir`, recursively, sorted.
fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        match entry.file_type() {
            Ok(t) if t.is_dir() => files_below(&entry.path(), out),
            Ok(t) if t.is_file() => out.push(entry.path()),
            _ => {}
        }
    }
}

fn read_file(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("sma-testrig: cannot read {}: {e}", path.display()))
}

impl Dovecot {
    /// Installs Dovecot if missing (via `scripts/imap-server install`) and
    /// starts a private instance with `accounts` accounts (`user1@sma.test` /
    /// `pass1` …) on free ports of 127.0.0.1.
    ///
    /// Safe to call from many tests in parallel. Panics with a clear message
    /// (including Dovecot's log) on failure: tests must fail, never silently
    /// skip.
    pub fn start(accounts: usize) -> Dovecot {
        Self::start_profile(accounts, "standard")
    }

    /// Like [`Dovecot::start`], with Dovecot playing another kind of server:
    /// `profile` is one of `scripts/imap-server start --profile` (see its
    /// `--help`).
    pub fn start_profile(accounts: usize, profile: &str) -> Dovecot {
        ensure_installed();
        let dir = tempfile::Builder::new()
            .prefix("sma-dovecot-")
            .tempdir()
            .unwrap_or_else(|e| panic!("sma-testrig: cannot create a temporary directory: {e}"));
        let path = dir
            .path()
            .canonicalize()
            .unwrap_or_else(|_| dir.path().to_owned());
        let mut dovecot = Dovecot {
            dir: Some(dir),
            path,
            host: String::new(),
            plain_port: 0,
            tls_port: 0,
            ca_file: PathBuf::new(),
            wrong_ca_file: PathBuf::new(),
            domain: String::new(),
            accounts: Vec::new(),
            pid: None,
        };
        let env = dovecot.run_start(&[
            "--accounts".to_owned(),
            accounts.to_string(),
            "--profile".to_owned(),
            profile.to_owned(),
        ]);
        dovecot.host = env_value(&env, "SMA_IMAP_HOST").to_owned();
        dovecot.plain_port = env_parse(&env, "SMA_IMAP_PORT");
        dovecot.tls_port = env_parse(&env, "SMA_IMAPS_PORT");
        dovecot.ca_file = PathBuf::from(env_value(&env, "SMA_CA_FILE"));
        dovecot.wrong_ca_file = PathBuf::from(env_value(&env, "SMA_WRONG_CA_FILE"));
        dovecot.domain = env_value(&env, "SMA_IMAP_DOMAIN").to_owned();
        let n: usize = env_parse(&env, "SMA_ACCOUNTS");
        dovecot.accounts = (1..=n)
            .map(|i| Account {
                user: format!("user{i}@{}", dovecot.domain),
                password: format!("pass{i}"),
            })
            .collect();
        dovecot
    }

    /// Runs `imap-server start --dir DIR --owner-pid OURS --remove-dir EXTRA...`, records
    /// the pid and returns the env pairs. Panics on failure.
    fn run_start(&mut self, extra: &[String]) -> Vec<(String, String)> {
        let mut args: Vec<String> = vec![
            "start".into(),
            "--dir".into(),
            self.path.display().to_string(),
            "--owner-pid".into(),
            std::process::id().to_string(),
            // Should this process die without dropping us (or keep us in a
            // `static`, which is never dropped), the script's watcher stops
            // the server and deletes the directory.
            "--remove-dir".into(),
        ];
        args.extend_from_slice(extra);
        let out = run_script(&args).unwrap_or_else(|e| panic!("sma-testrig: {e}"));
        if !out.status.success() {
            panic!(
                "sma-testrig: cannot start Dovecot: {}",
                describe_failure("start", &out)
            );
        }
        let env = parse_env(&out.stdout);
        self.pid = Some(env_parse(&env, "SMA_DOVECOT_PID"));
        env
    }

    /// The address to connect to: `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port of plain IMAP, with STARTTLS available (like port 143).
    pub fn plain_port(&self) -> u16 {
        self.plain_port
    }

    /// Port of IMAP over implicit TLS (like port 993).
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// PEM file of the CA that signed the server certificate (valid for
    /// `localhost` and `127.0.0.1`).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// PEM file of an unrelated CA (same subject name, different key): a
    /// client trusting only this CA must reject the server.
    pub fn wrong_ca_file(&self) -> &Path {
        &self.wrong_ca_file
    }

    /// The mail domain, `"sma.test"`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// All accounts; `accounts()[0]` is `user1@sma.test` / `pass1`.
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// Account number `i`, counted from 0: `account(0)` is `user1@sma.test`.
    /// Panics if there is no such account.
    pub fn account(&self, i: usize) -> &Account {
        self.accounts.get(i).unwrap_or_else(|| {
            panic!(
                "sma-testrig: account index {i} out of range: this server has {} account(s), indexed from 0",
                self.accounts.len()
            )
        })
    }

    /// The instance directory (configuration, certificates, log, mail).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The Dovecot master's pid while running, `None` after [`Dovecot::stop`].
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether the server was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.pid.is_some()
    }

    /// The `SMA_*` variables the script printed (host, ports, CA files, …),
    /// e.g. for `Command::envs` when a test runs the `sma` binary.
    pub fn envs(&self) -> Vec<(String, String)> {
        let env = fs::read(self.path.join("env")).unwrap_or_default();
        parse_env(&env)
    }

    /// Dovecot's log so far (useful in assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.path.join("dovecot.log")).unwrap_or_default()
    }

    /// Stops the server and waits until all its processes have exited and the
    /// ports are free (1–3 s). Clients get disconnected. No-op when stopped.
    /// Panics on failure.
    pub fn stop(&mut self) {
        if self.pid.is_none() {
            return;
        }
        if let Err(e) = self.try_stop() {
            panic!("sma-testrig: cannot stop Dovecot: {e}");
        }
    }

    fn try_stop(&mut self) -> Result<(), String> {
        let out = run_script(["stop", "--dir", &self.path.display().to_string()])?;
        if !out.status.success() {
            return Err(describe_failure("stop", &out));
        }
        self.pid = None;
        Ok(())
    }

    /// Starts the server again after [`Dovecot::stop`], with the same ports,
    /// certificates, accounts and mail. Panics if it is running, or if a port
    /// has been taken by another process meanwhile.
    pub fn start_again(&mut self) {
        assert!(
            self.pid.is_none(),
            "sma-testrig: start_again() while the server is running (pid {:?}); call stop() first",
            self.pid
        );
        let env = self.run_start(&[]);
        self.check_same_ports(&env);
    }

    /// Stops and starts the server again: same ports, certificates, accounts
    /// and mail. Clients get disconnected. Works when stopped, too.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    fn check_same_ports(&self, env: &[(String, String)]) {
        let plain: u16 = env_parse(env, "SMA_IMAP_PORT");
        let tls: u16 = env_parse(env, "SMA_IMAPS_PORT");
        assert_eq!(
            (plain, tls),
            (self.plain_port, self.tls_port),
            "sma-testrig: the server came back on other ports"
        );
    }

    /// Maildir of account `i` (0-based); it exists once the user has logged in.
    pub fn maildir(&self, account: usize) -> PathBuf {
        let user = &self.account(account).user;
        let local = user.split_once('@').map_or(user.as_str(), |(l, _)| l);
        self.path.join("mail").join(&self.domain).join(local)
    }

    /// Maildir folders of account `i` (0-based) with their message counts, read
    /// from disk (files in `cur/` and `new/`), sorted by name.
    ///
    /// Names are as on the IMAP wire: `INBOX`, `Foo`, `Foo.Bar` (hierarchy
    /// separator `.`), non-ASCII names in modified UTF-7 (`&AMQ-rger`). Only
    /// selectable folders appear (a `\Noselect` parent such as `Foo` of
    /// `Foo.Bar` created alone does not). Empty until the user's first login
    /// (Dovecot creates the maildir then).
    pub fn folders_on_disk(&self, account: usize) -> Vec<(String, usize)> {
        self.folder_dirs(account)
            .into_iter()
            .map(|(name, dir)| {
                let count = files_in(&dir.join("cur")).len() + files_in(&dir.join("new")).len();
                (name, count)
            })
            .collect()
    }

    /// `(IMAP name, directory)` of every folder of the account, sorted.
    fn folder_dirs(&self, account: usize) -> Vec<(String, PathBuf)> {
        let root = self.maildir(account);
        let mut folders = Vec::new();
        if root.join("cur").is_dir() {
            folders.push(("INBOX".to_owned(), root.clone()));
        }
        if let Ok(entries) = fs::read_dir(&root) {
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(folder) = name.strip_prefix('.') else {
                    continue;
                };
                if folder.is_empty() || folder == "." {
                    continue;
                }
                let dir = entry.path();
                if dir.join("cur").is_dir() {
                    folders.push((folder.to_owned(), dir));
                }
            }
        }
        folders.sort();
        folders
    }

    /// Raw bytes of every message file of account `i` (0-based), in every
    /// folder (`cur/`, `new/` and in-flight `tmp/`), as `(path relative to the
    /// maildir, bytes)`, sorted by path: for "no secret in clear on the
    /// server" assertions. See also [`Dovecot::all_files_on_disk`], which adds
    /// Dovecot's indexes and caches (they hold copies of headers).
    pub fn all_messages_on_disk(&self, account: usize) -> Vec<(String, Vec<u8>)> {
        let root = self.maildir(account);
        let mut messages = Vec::new();
        for (_, dir) in self.folder_dirs(account) {
            for sub in ["cur", "new", "tmp"] {
                for file in files_in(&dir.join(sub)) {
                    let rel = file
                        .strip_prefix(&root)
                        .unwrap_or(&file)
                        .display()
                        .to_string();
                    messages.push((rel, read_file(&file)));
                }
            }
        }
        messages.sort();
        messages
    }

    /// Every file below account `i`'s maildir (messages, `dovecot.index*`,
    /// caches, uid lists, subscriptions) as `(relative path, bytes)`, sorted:
    /// the strictest "nothing in clear on the server" check.
    pub fn all_files_on_disk(&self, account: usize) -> Vec<(String, Vec<u8>)> {
        let root = self.maildir(account);
        let mut files = Vec::new();
        files_below(&root, &mut files);
        files
            .into_iter()
            .map(|file| {
                let rel = file
                    .strip_prefix(&root)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                let bytes = read_file(&file);
                (rel, bytes)
            })
            .collect()
    }

    /// Subscribed folders of account `i` (0-based), read from the maildir's
    /// `subscriptions` file, in file order, with `.` as hierarchy separator
    /// (IMAP names, like [`Dovecot::folders_on_disk`]). Empty if none.
    pub fn subscriptions_on_disk(&self, account: usize) -> Vec<String> {
        let Ok(text) = fs::read_to_string(self.maildir(account).join("subscriptions")) else {
            return Vec::new();
        };
        let mut lines = text.lines().peekable();
        // Version 2 files start with "V\t2" and an empty line; version 1 files
        // are just names.
        if lines.peek().is_some_and(|l| l.starts_with("V\t")) {
            lines.next();
        }
        lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split('\t')
                    .map(tab_unescape)
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .collect()
    }
}

impl Drop for Dovecot {
    /// Stops the server (waiting for it), then deletes its directory.
    fn drop(&mut self) {
        if self.pid.is_some() {
            if let Err(e) = self.try_stop() {
                // No panic in drop: report, the watcher cleans up after us.
                eprintln!(
                    "sma-testrig: cannot stop Dovecot in {}: {e}",
                    self.path.display()
                );
            }
        }
        drop(self.dir.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_env_line() {
        let env =
            parse_env(b"SMA_IMAP_HOST=127.0.0.1 SMA_IMAP_PORT=20001 SMA_CA_FILE=/tmp/x/ca.pem\n");
        assert_eq!(env_value(&env, "SMA_IMAP_HOST"), "127.0.0.1");
        assert_eq!(env_parse::<u16>(&env, "SMA_IMAP_PORT"), 20001);
        assert_eq!(env_value(&env, "SMA_CA_FILE"), "/tmp/x/ca.pem");
    }

    #[test]
    fn unescapes_subscription_names() {
        assert_eq!(tab_unescape("a\x01tb\x011c"), "a\tb\x01c");
        assert_eq!(tab_unescape("plain"), "plain");
    }

    #[test]
    fn script_exists() {
        assert!(
            script_path().is_file(),
            "{} missing",
            script_path().display()
        );
    }
}

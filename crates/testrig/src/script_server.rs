//! [`ScriptServer`]: a private Cyrus or Courier started by its script in
//! `scripts/` (which unpacks nothing: run `scripts/<kind>-server install`
//! first), on 127.0.0.1, plain IMAP (and, for Cyrus started with `--jmap`,
//! plain-HTTP JMAP: [`ScriptServer::jmap_url`]); stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Account;

/// A private server started by `scripts/<kind>-server start`.
#[derive(Debug)]
pub struct ScriptServer {
    script: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    jmap_url: Option<String>,
    accounts: Vec<Account>,
}

impl ScriptServer {
    /// Starts `scripts/<kind>-server` (`cyrus` or `courier`) with
    /// `accounts` accounts (`user<i>@sma.test` / `pass<i>`, from 1) and the
    /// script's `extra` options; the error says why it could not.
    pub fn try_start(kind: &str, accounts: usize, extra: &[&str]) -> Result<ScriptServer, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts")
            .join(format!("{kind}-server"));
        Self::try_start_script(&script, accounts, extra).map_err(|e| {
            format!("{e}\n(unpack it first: scripts/{kind}-server install, or run scripts/compat-test {kind})")
        })
    }

    /// Starts a server by any script that speaks the interface of
    /// `scripts/cyrus-server`: `SCRIPT start --accounts N --dir DIR
    /// [EXTRA…]` starts a fresh instance with its state in DIR and accounts
    /// `user<i>@sma.test` / `pass<i>` (i from 1), and prints `KEY=VALUE`
    /// pairs with at least `SMA_IMAP_PORT` (plain IMAP on 127.0.0.1) and,
    /// where it serves JMAP, `SMA_JMAP_URL`; `SCRIPT stop --dir DIR` stops
    /// it. This is how a server the project cannot install (a JMAP server
    /// with push, say) is measured: `sma-bench --server jmap-script
    /// --server-script PATH`.
    pub fn try_start_script(
        script: &Path,
        accounts: usize,
        extra: &[&str],
    ) -> Result<ScriptServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("sma-server-")
            .tempdir()
            .map_err(|e| format!("cannot create the server's directory: {e}"))?;
        let out = Command::new("bash")
            .arg(script)
            .args(["start", "--accounts", &accounts.to_string(), "--dir"])
            .arg(dir.path())
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "cannot start a server with {}:\n{}{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let env = String::from_utf8_lossy(&out.stdout).into_owned();
        let port = env
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("SMA_IMAP_PORT="))
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("no SMA_IMAP_PORT in the script's output: {env:?}"))?;
        let jmap_url = env
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("SMA_JMAP_URL="))
            .map(str::to_owned);
        let accounts = (1..=accounts)
            .map(|i| Account {
                user: format!("user{i}@sma.test"),
                password: format!("pass{i}"),
            })
            .collect();
        Ok(ScriptServer {
            script: script.to_owned(),
            dir,
            port,
            jmap_url,
            accounts,
        })
    }

    /// [`ScriptServer::try_start`], panicking with its error (for tests).
    pub fn start(kind: &str, accounts: usize, extra: &[&str]) -> ScriptServer {
        Self::try_start(kind, accounts, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The plain-IMAP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JMAP session resource (`http://127.0.0.1:P/.well-known/jmap`)
    /// when the server was started with `--jmap` (Cyrus only), else `None`.
    pub fn jmap_url(&self) -> Option<&str> {
        self.jmap_url.as_deref()
    }

    /// Account `i` (0-based: `user<i+1>`).
    pub fn account(&self, i: usize) -> &Account {
        &self.accounts[i]
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .args(["stop", "--dir"])
            .arg(self.dir.path())
            .output();
    }
}

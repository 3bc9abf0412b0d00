//! The IMAP server a run measures: the private Dovecot of `sma-testrig`
//! (every part), a private Cyrus IMAP started by `scripts/cyrus-server`
//! (plain IMAP; the latency and WAN parts), whose IDLE wakes at once, or
//! a JMAP server started by a script of the user's that speaks
//! `scripts/cyrus-server`'s interface (the WAN part over JMAP).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Result};
use sma_testrig::{Account, Dovecot, ScriptServer};

/// Which server to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// Debian's Dovecot, as the tests use it (TLS and plain).
    Dovecot,
    /// Debian's Cyrus IMAP with `idled`, unpacked privately by
    /// `scripts/cyrus-server install` (plain IMAP only).
    Cyrus,
    /// The same Cyrus also serving JMAP (`cyrus-server start --jmap`): the
    /// WAN part then makes its devices with `sma init --jmap`.
    CyrusJmap,
    /// A JMAP server (with IMAP on the same accounts) started by this
    /// script, which speaks the interface of `scripts/cyrus-server`
    /// ([`ScriptServer::try_start_script`]), called with `--jmap`: a
    /// server the project cannot install, such as one that pushes.
    JmapScript(PathBuf),
}

impl ServerKind {
    /// The name used in messages.
    pub fn name(&self) -> String {
        match self {
            ServerKind::Dovecot => "Dovecot".into(),
            ServerKind::Cyrus => "Cyrus".into(),
            ServerKind::CyrusJmap => "Cyrus (JMAP)".into(),
            ServerKind::JmapScript(script) => format!("the JMAP server of {}", script.display()),
        }
    }

    /// Whether the devices speak JMAP.
    pub fn is_jmap(&self) -> bool {
        matches!(self, ServerKind::CyrusJmap | ServerKind::JmapScript(_))
    }
}

/// A running server with its accounts; stopped on drop.
pub enum Server {
    /// The private Dovecot.
    Dovecot(Dovecot),
    /// A server started by a script, with its description for reports
    /// (the version its IMAP greeting names).
    Script(ScriptServer, String),
}

impl Server {
    /// Starts `kind` with `accounts` accounts.
    pub fn start(kind: &ServerKind, accounts: usize) -> Result<Server> {
        let (server, label) = match kind {
            ServerKind::Dovecot => return Ok(Server::Dovecot(Dovecot::start(accounts))),
            ServerKind::Cyrus => (
                ScriptServer::try_start("cyrus", accounts, &[]),
                "Cyrus IMAP",
            ),
            ServerKind::CyrusJmap => (
                ScriptServer::try_start("cyrus", accounts, &["--jmap"]),
                "Cyrus IMAP",
            ),
            ServerKind::JmapScript(script) => (
                ScriptServer::try_start_script(script, accounts, &["--jmap"]),
                "JMAP server",
            ),
        };
        let server = server.map_err(|e| anyhow!(e))?;
        if kind.is_jmap() && server.jmap_url().is_none() {
            bail!("the server's script printed no SMA_JMAP_URL");
        }
        let version = greeting(server.port()).unwrap_or_else(|| "version unknown".into());
        Ok(Server::Script(server, format!("{label} ({version})")))
    }

    /// The address it listens on.
    pub fn host(&self) -> &str {
        match self {
            Server::Dovecot(d) => d.host(),
            Server::Script(..) => "127.0.0.1",
        }
    }

    /// The plain-IMAP port.
    pub fn plain_port(&self) -> u16 {
        match self {
            Server::Dovecot(d) => d.plain_port(),
            Server::Script(s, _) => s.port(),
        }
    }

    /// The JMAP HTTP port, when the server serves JMAP.
    pub fn jmap_port(&self) -> Option<u16> {
        match self {
            Server::Dovecot(_) => None,
            Server::Script(s, _) => {
                let url = s.jmap_url()?;
                let rest = url.strip_prefix("http://")?;
                let authority = rest.split('/').next()?;
                authority.rsplit_once(':')?.1.parse().ok()
            }
        }
    }

    /// The implicit-TLS port (Dovecot only: the rig refuses TLS otherwise).
    pub fn tls_port(&self) -> u16 {
        match self {
            Server::Dovecot(d) => d.tls_port(),
            Server::Script(s, _) => s.port(),
        }
    }

    /// The CA that signed the TLS certificate (Dovecot only: the rig
    /// refuses TLS otherwise, and this is an empty path).
    pub fn ca_file(&self) -> &Path {
        match self {
            Server::Dovecot(d) => d.ca_file(),
            Server::Script(..) => Path::new(""),
        }
    }

    /// Account `i` (0-based).
    pub fn account(&self, i: usize) -> &Account {
        match self {
            Server::Dovecot(d) => d.account(i),
            Server::Script(s, _) => s.account(i),
        }
    }

    /// Where a client may create its own folders: Cyrus allows no
    /// top-level folder, only folders below `INBOX.`.
    pub fn folder_prefix(&self) -> &'static str {
        match self {
            Server::Dovecot(_) => "",
            Server::Script(..) => "INBOX.",
        }
    }

    /// The server and its version, for reports.
    pub fn describe(&self) -> String {
        match self {
            Server::Dovecot(_) => format!("Dovecot {}", dovecot_version()),
            Server::Script(_, description) => description.clone(),
        }
    }
}

/// `dovecot --version`, or `unknown`.
pub fn dovecot_version() -> String {
    Command::new("dovecot")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The server's greeting line without its `* OK` (Cyrus names its version
/// there).
fn greeting(port: u16) -> Option<String> {
    use std::io::{BufRead, BufReader};
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    let mut line = String::new();
    BufReader::new(tcp).read_line(&mut line).ok()?;
    let text = line.trim().trim_start_matches("* OK").trim();
    // Drop a leading [CAPABILITY …] response code.
    let text = match text.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(_, t)| t).trim(),
        None => text,
    };
    Some(text.chars().take(80).collect())
}

//! The IMAP server a run measures: the private Dovecot of `sma-testrig`
//! (every part), or a private Cyrus IMAP started by `scripts/cyrus-server`
//! (plain IMAP; the latency and WAN parts), whose IDLE wakes at once.

use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, Result};
use sma_testrig::{Account, Dovecot, ScriptServer};

/// Which server to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// Debian's Dovecot, as the tests use it (TLS and plain).
    Dovecot,
    /// Debian's Cyrus IMAP with `idled`, unpacked privately by
    /// `scripts/cyrus-server install` (plain IMAP only).
    Cyrus,
    /// The same Cyrus also serving JMAP (`cyrus-server start --jmap`): the
    /// WAN part then makes its devices with `sma init --jmap`.
    CyrusJmap,
}

impl ServerKind {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Dovecot => "Dovecot",
            ServerKind::Cyrus => "Cyrus",
            ServerKind::CyrusJmap => "Cyrus (JMAP)",
        }
    }
}

/// A running server with its accounts; stopped on drop.
pub enum Server {
    /// The private Dovecot.
    Dovecot(Dovecot),
    /// A server started by its script in `scripts/`, with the version its
    /// greeting names.
    Script(ScriptServer, String),
}

impl Server {
    /// Starts `kind` with `accounts` accounts.
    pub fn start(kind: ServerKind, accounts: usize) -> Result<Server> {
        Ok(match kind {
            ServerKind::Dovecot => Server::Dovecot(Dovecot::start(accounts)),
            ServerKind::Cyrus | ServerKind::CyrusJmap => {
                let extra: &[&str] = if kind == ServerKind::CyrusJmap {
                    &["--jmap"]
                } else {
                    &[]
                };
                let server =
                    ScriptServer::try_start("cyrus", accounts, extra).map_err(|e| anyhow!(e))?;
                let version = greeting(server.port()).unwrap_or_else(|| "version unknown".into());
                Server::Script(server, version)
            }
        })
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
            Server::Script(_, version) => format!("Cyrus IMAP ({version})"),
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

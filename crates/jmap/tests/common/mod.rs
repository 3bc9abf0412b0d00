//! What the Cyrus tests of sma-jmap share: the rig's Cyrus with JMAP and
//! an IMAP session on the same accounts.

#![allow(dead_code)]

use std::path::Path;

use sma_imap::{ImapConfig, ImapSession, Security};
use sma_testrig::ScriptServer;

/// The rig's Cyrus with JMAP and `accounts` accounts; fails when Cyrus or
/// its httpd is not unpacked here (the tests are ignored unless asked for).
pub fn cyrus(test: &str, accounts: usize) -> ScriptServer {
    let root = std::env::var("SMA_COMPAT_ROOT").unwrap_or_else(|_| "/var/tmp/sma-compat".into());
    let httpd = Path::new(&root).join("cyrus/root/usr/lib/cyrus/bin/httpd");
    assert!(
        httpd.exists(),
        "{test}: Cyrus with httpd is not unpacked ({} missing): run scripts/compat-test cyrus (as root)",
        httpd.display()
    );
    let server = ScriptServer::start("cyrus", accounts, &["--jmap"]);
    assert!(
        server.jmap_url().is_some(),
        "the rig printed no SMA_JMAP_URL"
    );
    server
}

/// An IMAP session on account `i` of `server`.
pub async fn imap(server: &ScriptServer, i: usize) -> ImapSession {
    let a = server.account(i);
    let mut c = ImapConfig::new("127.0.0.1", Security::Plain, &a.user, a.password.as_str());
    c.port = server.port();
    ImapSession::connect(&c).await.expect("IMAP session")
}

//! Shared helpers for the Dovecot integration tests.
#![allow(dead_code)]

use std::sync::OnceLock;

use sma_imap::{ImapConfig, ImapSession, Security, Transport};
use sma_testrig::Dovecot;

/// Accounts of the shared server: each test uses its own, so tests can run
/// in parallel without seeing each other's folders.
pub const ACCOUNTS: usize = 16;

/// One Dovecot for every test of this test binary (stopped by the rig's
/// watcher when the process exits).
pub fn server() -> &'static Dovecot {
    static SERVER: OnceLock<Dovecot> = OnceLock::new();
    SERVER.get_or_init(|| Dovecot::start(ACCOUNTS))
}

/// A configuration for account `i` of `d`.
pub fn config(d: &Dovecot, i: usize, security: Security) -> ImapConfig {
    let account = &d.accounts()[i];
    let mut c = ImapConfig::new(
        d.host(),
        security,
        account.user.clone(),
        account.password.clone(),
    );
    c.port = match security {
        Security::Tls => d.tls_port(),
        Security::StartTls | Security::Plain => d.plain_port(),
    };
    if security != Security::Plain {
        c.ca_file = Some(d.ca_file().to_owned());
    }
    c
}

/// A TLS session for account `i` of the shared server.
pub async fn session(i: usize) -> ImapSession {
    let d = server();
    ImapSession::connect(&config(d, i, Security::Tls))
        .await
        .unwrap_or_else(|e| panic!("connect failed: {e}"))
}

/// A small RFC 5322 message.
pub fn message(subject: &str, extra_header: &str, body_len: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <a@sma.test>\r\nTo: <a@sma.test>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@sma.invalid>\r\n{extra_header}MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n";
    while m.len() < body_len {
        m.extend_from_slice(line);
    }
    m.extend_from_slice(b"end\r\n");
    m
}

/// Creates `folder` and selects it.
pub async fn fresh_folder(s: &mut ImapSession, folder: &str) {
    s.create(folder).await.expect("create");
    s.select(folder).await.expect("select");
}

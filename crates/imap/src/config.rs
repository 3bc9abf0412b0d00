//! Connection settings: where the server is, how to secure the connection
//! and whom to log in as.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use zeroize::Zeroize;

use crate::oauth2::TokenSource;

/// How the connection to the IMAP server is secured.
///
/// Serialised as its lower-case name ([`Security::as_str`]: `tls`,
/// `starttls`, `plain`), the form stored in device configurations;
/// deserialising accepts exactly these names, so an unknown or misspelt
/// mode is an error rather than a silent default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS ("IMAPS"): TLS from the first byte, usually port 993.
    Tls,
    /// Plain TCP upgraded with `STARTTLS` before logging in, usually port 143.
    /// If the server does not offer STARTTLS the connection fails
    /// ([`crate::ImapError::StartTlsUnavailable`]); it is never downgraded.
    StartTls,
    /// No encryption at all. Only allowed to loopback addresses unless
    /// [`ImapConfig::allow_insecure`] is set.
    Plain,
}

impl Security {
    /// The lower-case name used on the command line (`tls`, `starttls`, `plain`).
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Tls => "tls",
            Security::StartTls => "starttls",
            Security::Plain => "plain",
        }
    }
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Security {
    type Err = String;

    /// Parses `tls`, `starttls` or `plain` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tls" | "ssl" | "imaps" => Ok(Security::Tls),
            "starttls" => Ok(Security::StartTls),
            "plain" | "none" => Ok(Security::Plain),
            _ => Err(format!(
                "unknown security mode {s:?}: use one of tls, starttls, plain"
            )),
        }
    }
}

/// A password that never shows up in `Debug` output or logs, and is wiped
/// from memory when dropped.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// The password in clear, for sending it to the server. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the password is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Password {
    fn from(s: String) -> Self {
        Password(s)
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Self {
        Password(s.to_owned())
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Everything needed to connect and log in to one IMAP account.
#[derive(Clone, Debug)]
pub struct ImapConfig {
    /// Host name or IP address of the server (IPv6 addresses without brackets).
    pub host: String,
    /// TCP port; see [`ImapConfig::default_port`].
    pub port: u16,
    /// How the connection is secured.
    pub security: Security,
    /// PEM file with the CA certificate(s) to trust *instead of* the web PKI
    /// roots (for a private CA). Host name verification stays on.
    pub ca_file: Option<PathBuf>,
    /// Allow [`Security::Plain`] to hosts that are not loopback addresses.
    pub allow_insecure: bool,
    /// The login name (usually the mail address).
    pub user: String,
    /// The password; its `Debug` output is `***`. Not used when
    /// [`ImapConfig::oauth2`] is set.
    pub password: Password,
    /// OAuth 2.0 instead of the password: where access tokens come from.
    /// When set, every connect asks it for a token (tokens expire; a kept
    /// token would fail the next login) and logs in with `AUTHENTICATE
    /// OAUTHBEARER`, else `XOAUTH2`.
    pub oauth2: Option<Arc<dyn TokenSource>>,
    /// The capabilities this server advertised before login on an earlier
    /// connection (its greeting's, else its answer to `CAPABILITY`), as
    /// [`crate::ImapSession::pre_login_capabilities`] reported them. Not a
    /// secret. When they allow it (`SASL-IR` with `AUTH=PLAIN`, or with the
    /// OAuth 2.0 mechanism that would be chosen) and the security is
    /// [`Security::Tls`] or [`Security::Plain`], the login is sent without
    /// waiting for the greeting: one round trip less. A hint that turns out
    /// wrong costs one more connection, made the usual way. `None` (the
    /// default): always wait for the greeting.
    pub login_hint: Option<Vec<String>>,
    /// The capabilities this server advertised after login on an earlier
    /// connection ([`crate::Transport::capabilities`]). Not a secret. With
    /// a [`ImapConfig::login_hint`] that allows an early login, the login's
    /// answer is not waited for either: the session starts with these
    /// capabilities and sends its first commands in the same flight as the
    /// login (see [`crate::ImapSession::connect`]), one more round trip
    /// less. If the server's answer then shows other capabilities, what was
    /// sent on the hint's word is set aside and done again. `None` (the
    /// default): the login's answer is awaited.
    pub caps_hint: Option<Vec<String>>,
}

impl ImapConfig {
    /// A configuration with the default port for `security`, no private CA
    /// and `allow_insecure` off.
    pub fn new(
        host: impl Into<String>,
        security: Security,
        user: impl Into<String>,
        password: impl Into<Password>,
    ) -> Self {
        ImapConfig {
            host: host.into(),
            port: Self::default_port(security),
            security,
            ca_file: None,
            allow_insecure: false,
            user: user.into(),
            password: password.into(),
            oauth2: None,
            login_hint: None,
            caps_hint: None,
        }
    }

    /// The same configuration logging in with OAuth 2.0 access tokens from
    /// `source` instead of the password.
    pub fn with_oauth2(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.oauth2 = Some(source);
        self
    }

    /// The conventional port: 993 for implicit TLS, 143 otherwise.
    pub fn default_port(security: Security) -> u16 {
        match security {
            Security::Tls => 993,
            Security::StartTls | Security::Plain => 143,
        }
    }

    /// `host:port` as shown in messages (IPv6 addresses in brackets).
    pub fn addr(&self) -> String {
        let host = bare_host(&self.host);
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Whether the configured host is a loopback address (`127.0.0.0/8`,
    /// `::1`) or the name `localhost`.
    pub fn is_loopback_host(&self) -> bool {
        is_loopback_host(&self.host)
    }
}

/// The host without the brackets an IPv6 address may have been written with.
pub(crate) fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Whether `host` names the loopback interface: an address in `127.0.0.0/8`,
/// `::1` (also IPv4-mapped loopback), or `localhost` / `*.localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = bare_host(host).trim_end_matches('.');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return is_loopback_ip(ip);
    }
    let lower = host.to_ascii_lowercase();
    lower == "localhost" || lower.ends_with(".localhost")
}

/// Whether `ip` is a loopback address (including IPv4-mapped `::ffff:127.x.y.z`).
pub(crate) fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports() {
        assert_eq!(ImapConfig::default_port(Security::Tls), 993);
        assert_eq!(ImapConfig::default_port(Security::StartTls), 143);
        assert_eq!(ImapConfig::default_port(Security::Plain), 143);
    }

    #[test]
    fn password_is_not_printed() {
        let c = ImapConfig::new("h", Security::Tls, "alice", "s3cret");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(dbg.contains("***"));
        assert_eq!(c.password.expose(), "s3cret");
    }

    #[test]
    fn loopback_detection() {
        for h in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST.",
            "x.localhost",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "10.0.0.1",
            "example.org",
            "localhost.example.org",
            "::2",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn addr_formatting() {
        let mut c = ImapConfig::new("::1", Security::Plain, "u", "p");
        assert_eq!(c.addr(), "[::1]:143");
        c.host = "mail.example.org".into();
        c.port = 10993;
        assert_eq!(c.addr(), "mail.example.org:10993");
    }

    #[test]
    fn security_parsing() {
        assert_eq!("TLS".parse::<Security>(), Ok(Security::Tls));
        assert_eq!("starttls".parse::<Security>(), Ok(Security::StartTls));
        assert_eq!("plain".parse::<Security>(), Ok(Security::Plain));
        assert!("bogus".parse::<Security>().is_err());
    }
}

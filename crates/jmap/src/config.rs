//! Connection settings: where the JMAP session resource is and how to log in.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use sma_imap::{ImapError, Namespace, Password};

/// How requests authenticate (RFC 8620 leaves it to HTTP).
#[derive(Clone)]
pub enum JmapAuth {
    /// HTTP Basic with [`JmapConfig::user`] and this password.
    Basic(Password),
    /// `Authorization: Bearer` with this (OAuth 2.0 access) token.
    Bearer(Password),
}

impl fmt::Debug for JmapAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JmapAuth::Basic(_) => f.write_str("Basic(<redacted>)"),
            JmapAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Where the JMAP server is and whom to log in as.
#[derive(Clone, Debug)]
pub struct JmapConfig {
    /// The session resource, e.g. `https://host/.well-known/jmap`.
    pub session_url: String,
    /// The login name (for Basic authentication and error messages).
    pub user: String,
    /// How to authenticate.
    pub auth: JmapAuth,
    /// Trust only the certificates in this PEM file instead of the web PKI
    /// roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Allow `http://` to hosts that are not loopback (credentials then go
    /// unencrypted). Off by default.
    pub allow_insecure: bool,
    /// Deadline of one HTTP request (a download gets more time for its
    /// size: see [`crate::MIN_TRANSFER_RATE`]).
    pub timeout: Duration,
    /// The personal namespace of the same account over IMAP, which
    /// mailbox names are mapped into (see the crate documentation). `None`:
    /// guessed from the session (Cyrus: `INBOX.` and `.`, as with Debian's
    /// default `altnamespace: no`; other servers: `""` and `/`).
    pub imap_namespace: Option<Namespace>,
    /// A file where a session keeps the session resource and the mailbox
    /// list for the next one, which then starts without asking for them
    /// (see the crate documentation). `None`: every session asks.
    pub session_cache: Option<PathBuf>,
}

impl JmapConfig {
    /// Basic authentication with `user` and `password`, a 30 s timeout,
    /// web PKI roots, no insecure HTTP, the IMAP namespace guessed.
    pub fn new(
        session_url: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        JmapConfig {
            session_url: session_url.into(),
            user: user.into(),
            auth: JmapAuth::Basic(Password::new(password)),
            ca_file: None,
            allow_insecure: false,
            timeout: Duration::from_secs(30),
            imap_namespace: None,
            session_cache: None,
        }
    }

    /// Checks a URL the session uses (the session resource and the URLs it
    /// names): `https`, or `http` only to loopback unless
    /// [`JmapConfig::allow_insecure`].
    pub(crate) fn check_url(&self, url: &reqwest::Url) -> Result<(), ImapError> {
        match url.scheme() {
            "https" => Ok(()),
            "http" => {
                let host = url.host_str().unwrap_or("");
                if self.allow_insecure || sma_imap::is_loopback_host(host) {
                    Ok(())
                } else {
                    Err(ImapError::InsecureRefused {
                        host: host.to_owned(),
                    })
                }
            }
            other => Err(ImapError::InvalidArgument(format!(
                "the JMAP URL {url} has the scheme {other:?}: use https:// (or http:// to a loopback address)"
            ))),
        }
    }
}

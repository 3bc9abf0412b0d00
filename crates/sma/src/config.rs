//! Connection settings and per-device configuration kept in the home.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sma_imap::{ImapConfig, Password, Security};

/// How to reach the IMAP server (everything but the password).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `tls`, `starttls` or `plain`.
    pub security: String,
    /// Private CA bundle to trust instead of the web PKI.
    pub ca_file: Option<PathBuf>,
    /// Allow plain IMAP to a non-loopback host.
    pub allow_insecure: bool,
    /// The login (also the account address).
    pub user: String,
}

impl ServerConfig {
    /// Parses `--security`.
    pub fn parse_security(s: &str) -> Option<Security> {
        match s {
            "tls" => Some(Security::Tls),
            "starttls" => Some(Security::StartTls),
            "plain" => Some(Security::Plain),
            _ => None,
        }
    }

    /// The transport configuration with a password.
    pub fn imap_config(&self, password: &Password) -> ImapConfig {
        ImapConfig {
            host: self.host.clone(),
            port: self.port,
            security: Self::parse_security(&self.security).unwrap_or(Security::Tls),
            ca_file: self.ca_file.clone(),
            allow_insecure: self.allow_insecure,
            user: self.user.clone(),
            password: password.clone(),
            oauth2: None,
        }
    }
}

/// This device's role in the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Founded the group (and is a member).
    Founder,
    /// Paired member.
    Member,
    /// Announced, waiting to be paired.
    Pending,
    /// Removed from the group (final).
    Removed,
}

impl Role {
    /// The CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Founder => "founder",
            Role::Member => "member",
            Role::Pending => "pending",
            Role::Removed => "removed",
        }
    }

    /// Whether the device holds the group state.
    pub fn is_member(self) -> bool {
        matches!(self, Role::Founder | Role::Member)
    }
}

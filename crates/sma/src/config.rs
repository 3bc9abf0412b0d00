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
    /// How the connection is secured (stored as `tls`, `starttls` or
    /// `plain`).
    pub security: Security,
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
            security: self.security,
            ca_file: self.ca_file.clone(),
            allow_insecure: self.allow_insecure,
            user: self.user.clone(),
            password: password.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(security: &str) -> String {
        format!(
            r#"{{"host":"imap.example.org","port":143,"security":"{security}","ca_file":null,"allow_insecure":false,"user":"alice@example.org"}}"#
        )
    }

    #[test]
    fn configs_stored_with_a_security_string_still_open() {
        for (text, security) in [
            ("tls", Security::Tls),
            ("starttls", Security::StartTls),
            ("plain", Security::Plain),
        ] {
            let c: ServerConfig = serde_json::from_str(&stored(text)).expect(text);
            assert_eq!(c.security, security);
            assert_eq!(c.imap_config(&Password::new("p")).security, security);
            // Written back in the same form.
            assert_eq!(serde_json::to_string(&c).ok(), Some(stored(text)));
        }
    }

    #[test]
    fn an_unknown_security_is_an_error_not_tls() {
        for bad in ["ssl", "TLS", "", "starttls "] {
            let e = serde_json::from_str::<ServerConfig>(&stored(bad))
                .expect_err("an unknown security mode must not open");
            assert!(e.to_string().contains("unknown variant"), "{bad}: {e}");
        }
    }
}

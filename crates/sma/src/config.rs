//! Connection settings and per-device configuration kept in the home.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sma_imap::{ImapConfig, Password, Security};

use crate::oauth2::TokenCommand;

/// How to reach the IMAP server and how to log in (everything but the
/// password or token).
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
    /// OAuth 2.0 instead of a password: the shell command that prints an
    /// access token, run for every login (see [`TokenCommand`]). Never a
    /// token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2_token_command: Option<String>,
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

    /// Whether login is by OAuth 2.0 token (then no password is needed).
    pub fn uses_oauth2(&self) -> bool {
        self.oauth2_token_command.is_some()
    }

    /// The transport configuration: with the password, or, when a token
    /// command is set, with that command as the source of access tokens
    /// (the password is then ignored and may be empty). Without a login
    /// hint: [`crate::Device::imap_config`] adds the stored one.
    pub fn imap_config(&self, password: &Password) -> ImapConfig {
        let config = ImapConfig {
            host: self.host.clone(),
            port: self.port,
            security: self.security,
            ca_file: self.ca_file.clone(),
            allow_insecure: self.allow_insecure,
            user: self.user.clone(),
            password: password.clone(),
            oauth2: None,
            login_hint: None,
            caps_hint: None,
        };
        match &self.oauth2_token_command {
            Some(cmd) => config.with_oauth2(Arc::new(TokenCommand::new(cmd.clone()))),
            None => config,
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

/// What deleting a message does on this device's server, as found out at
/// `init` (PROTOCOL 3.5). Kept in the home with the rest of the device
/// description; `status` and `doctor` show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteBehaviour {
    /// Whether an expunge outside the Trash only archives the message, so
    /// that it stays in the `\All` folder (Gmail's default).
    pub archives: bool,
    /// How that was found out.
    pub detected_by: Detection,
    /// The `\Trash` special-use folder: where sma moves its messages and
    /// expunges them when the server archives.
    pub trash: Option<String>,
    /// The `\All` special-use folder, where archived messages end up.
    pub all_mail: Option<String>,
}

/// How [`DeleteBehaviour`] was found out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Detection {
    /// Not checked: a home set up by an sma that did not check (the
    /// `X-GM-EXT-1` capability still counts at run time; `doctor --fix`
    /// checks and records it).
    #[default]
    NotChecked,
    /// The server advertises `X-GM-EXT-1`: it is Gmail.
    Capability,
    /// `init`'s probe: a message appended to the own inbox and expunged
    /// was (or was not) found again in the `\All` folder; a server without
    /// an `\All` folder has nowhere to archive to.
    Probe,
}

impl Detection {
    /// The JSON and CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Detection::NotChecked => "not-checked",
            Detection::Capability => "capability",
            Detection::Probe => "probe",
        }
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
    fn a_token_command_is_stored_and_makes_the_login_oauth2() {
        // Older homes have no token command: password login, as before.
        let c: ServerConfig = serde_json::from_str(&stored("tls")).expect("stored");
        assert!(!c.uses_oauth2());
        assert!(c.imap_config(&Password::new("p")).oauth2.is_none());
        let with = ServerConfig {
            oauth2_token_command: Some("oama access alice@example.org".into()),
            ..c
        };
        let text = serde_json::to_string(&with).expect("encode");
        assert!(text.ends_with(r#","oauth2_token_command":"oama access alice@example.org"}"#));
        let back: ServerConfig = serde_json::from_str(&text).expect("decode");
        assert_eq!(back, with);
        assert!(back.uses_oauth2());
        assert!(back.imap_config(&Password::default()).oauth2.is_some());
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

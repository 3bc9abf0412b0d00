//! Connection settings and per-device configuration kept in the home.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sma_imap::{ImapConfig, Password, Security, TokenSource};
use sma_jmap::{JmapAuth, JmapConfig};

use crate::oauth2::TokenCommand;
use crate::session::SessionConfig;

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
    /// JMAP instead of IMAP: the URL of the JMAP session resource (e.g.
    /// `https://host/.well-known/jmap`), set by `init --jmap`. `host`,
    /// `port` and `security` then describe that URL (`tls` for `https`,
    /// `plain` for `http`) and serve only for display. Absent: IMAP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jmap_url: Option<String>,
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

    /// The settings of a JMAP device (`init --jmap URL`) for `url`, the
    /// JMAP session resource: host, port and security taken from the URL
    /// (for display and the insecure-connection checks), no CA file,
    /// nothing insecure allowed, no token command. A URL that is not
    /// `http(s)://HOST[:PORT]/...` is a usage error.
    pub fn for_jmap(url: &str, user: &str) -> crate::Result<ServerConfig> {
        let bad = |why: &str| {
            crate::Error::Usage(format!(
                "--jmap {url:?}: {why}; give the JMAP session resource, e.g. https://mail.example.org/.well-known/jmap"
            ))
        };
        let (security, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (Security::Tls, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (Security::Plain, rest)
        } else {
            return Err(bad("not an https:// (or loopback http://) URL"));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or_default();
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, tail) = v6
                    .split_once(']')
                    .ok_or_else(|| bad("unclosed [ in the host"))?;
                (host, tail.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
            None if security == Security::Tls => 443,
            None => 80,
        };
        Ok(ServerConfig {
            host: host.to_owned(),
            port,
            security,
            ca_file: None,
            allow_insecure: false,
            user: user.to_owned(),
            oauth2_token_command: None,
            jmap_url: Some(url.to_owned()),
        })
    }

    /// Whether this device talks JMAP ([`ServerConfig::jmap_url`]).
    pub fn is_jmap(&self) -> bool {
        self.jmap_url.is_some()
    }

    /// The protocol's name as shown to users: `IMAP` or `JMAP`.
    pub fn protocol(&self) -> &'static str {
        if self.is_jmap() {
            "JMAP"
        } else {
            "IMAP"
        }
    }

    /// How to open a session of this device's protocol, without the IMAP
    /// login hint ([`crate::Device::session_config`] adds it): a JMAP
    /// device logs in with HTTP Basic and the password, or with a Bearer
    /// token from the token command.
    pub fn session_config(&self, password: &Password) -> SessionConfig {
        let Some(url) = &self.jmap_url else {
            return SessionConfig::Imap(self.imap_config(password));
        };
        let mut config = JmapConfig::new(url.clone(), self.user.clone(), String::new());
        config.auth = JmapAuth::Basic(password.clone());
        config.ca_file = self.ca_file.clone();
        config.allow_insecure = self.allow_insecure;
        let token = self
            .oauth2_token_command
            .as_ref()
            .map(|cmd| Arc::new(TokenCommand::new(cmd.clone())) as Arc<dyn TokenSource>);
        SessionConfig::Jmap { config, token }
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
    fn a_jmap_url_gives_host_port_and_security() {
        let c = ServerConfig::for_jmap("https://mail.example.org/.well-known/jmap", "a@b")
            .expect("https");
        assert_eq!(
            (c.host.as_str(), c.port, c.security),
            ("mail.example.org", 443, Security::Tls)
        );
        assert!(c.is_jmap());
        let c = ServerConfig::for_jmap("http://[::1]:8080/jmap", "a@b").expect("v6");
        assert_eq!(
            (c.host.as_str(), c.port, c.security),
            ("::1", 8080, Security::Plain)
        );
        let c =
            ServerConfig::for_jmap("http://127.0.0.1:8008/.well-known/jmap", "a@b").expect("v4");
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 8008));
        // Stored and read back with its URL; older homes have none (IMAP).
        let text = serde_json::to_string(&c).expect("encode");
        assert_eq!(serde_json::from_str::<ServerConfig>(&text).ok(), Some(c));
        assert!(!serde_json::from_str::<ServerConfig>(&stored("tls"))
            .expect("imap")
            .is_jmap());
        for bad in [
            "imap.example.org",
            "ftp://x/",
            "https:///jmap",
            "https://h:port/",
        ] {
            assert!(ServerConfig::for_jmap(bad, "a@b").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_jmap_device_opens_a_jmap_session_with_its_settings() {
        let mut c =
            ServerConfig::for_jmap("https://h.example/.well-known/jmap", "a@b").expect("url");
        c.ca_file = Some("/etc/ca.pem".into());
        match c.session_config(&Password::new("p")) {
            SessionConfig::Jmap { config, token } => {
                assert_eq!(config.session_url, "https://h.example/.well-known/jmap");
                assert_eq!(config.user, "a@b");
                assert_eq!(config.ca_file, c.ca_file);
                assert!(matches!(config.auth, JmapAuth::Basic(ref p) if p.expose() == "p"));
                assert!(token.is_none());
            }
            other => panic!("not JMAP: {other:?}"),
        }
        c.oauth2_token_command = Some("print-token".into());
        assert!(matches!(
            c.session_config(&Password::default()),
            SessionConfig::Jmap { token: Some(_), .. }
        ));
        let imap: ServerConfig = serde_json::from_str(&stored("tls")).expect("imap");
        assert!(matches!(
            imap.session_config(&Password::new("p")),
            SessionConfig::Imap(_)
        ));
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

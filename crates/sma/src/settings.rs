//! The device's stored settings, as `sma config` shows and changes them:
//! the expiry policy, how to reach the server, and where the password or
//! access token comes from. Secrets themselves are never settings: a saved
//! password is only reported as present.

use std::path::PathBuf;

use serde::Serialize;

use crate::config::ServerConfig;
use crate::lifecycle::{parse_duration, DEFAULT_EXPIRE_AFTER_SECS};
use crate::{Device, Error, Result};

/// Store key of the password command (`sma config set password-command`).
const META_PASSWORD_COMMAND: &str = "password_command";

/// Name of the saved IMAP password among the home's secrets.
pub const SAVED_PASSWORD: &str = "imap_password";

/// One setting `sma config` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Silence after which a member expires (`90d`).
    ExpireAfter,
    /// The IMAP server's host name.
    Host,
    /// The IMAP server's port.
    Port,
    /// `tls`, `starttls` or `plain`.
    Security,
    /// Private CA bundle trusted instead of the web PKI.
    CaFile,
    /// Whether plain IMAP to a host other than loopback is allowed.
    AllowInsecure,
    /// The login, which is the account: shown, never changed.
    User,
    /// Shell command printing the IMAP password, used when no password
    /// option is given.
    PasswordCommand,
    /// Shell command printing an OAuth 2.0 access token (login by token).
    Oauth2TokenCommand,
    /// Whether a password is saved in the home: shown, never the password.
    PasswordSaved,
}

impl Setting {
    /// Every setting, in the order `sma config list` shows them.
    pub const ALL: [Setting; 10] = [
        Setting::ExpireAfter,
        Setting::Host,
        Setting::Port,
        Setting::Security,
        Setting::CaFile,
        Setting::AllowInsecure,
        Setting::User,
        Setting::PasswordCommand,
        Setting::Oauth2TokenCommand,
        Setting::PasswordSaved,
    ];

    /// The key users type.
    pub fn key(self) -> &'static str {
        match self {
            Setting::ExpireAfter => "expire-after",
            Setting::Host => "server.host",
            Setting::Port => "server.port",
            Setting::Security => "server.security",
            Setting::CaFile => "server.ca-file",
            Setting::AllowInsecure => "server.allow-insecure",
            Setting::User => "user",
            Setting::PasswordCommand => "password-command",
            Setting::Oauth2TokenCommand => "oauth2-token-command",
            Setting::PasswordSaved => "password-saved",
        }
    }

    /// The setting named `key`, or a usage error listing the keys.
    pub fn from_key(key: &str) -> Result<Setting> {
        Setting::ALL
            .into_iter()
            .find(|s| s.key() == key)
            .ok_or_else(|| {
                let keys: Vec<&str> = Setting::ALL.iter().map(|s| s.key()).collect();
                Error::Usage(format!(
                    "no setting {key:?}: the settings are {}",
                    keys.join(", ")
                ))
            })
    }

    /// Why the setting cannot be changed with `sma config set`, if so.
    fn read_only(self) -> Option<&'static str> {
        match self {
            Setting::User => Some(
                "the login is the account this device belongs to: set up another account with `sma init` and a new --home",
            ),
            Setting::PasswordSaved => Some(
                "a password is saved with `sma init --save-password`; use `password-command` to take it from a command instead",
            ),
            _ => None,
        }
    }
}

/// A setting's current value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SettingValue {
    /// The key.
    pub key: &'static str,
    /// The value as text; `None` when unset.
    pub value: Option<String>,
    /// Whether the value is the built-in default (nothing stored).
    pub default: bool,
}

impl Device {
    /// The current value of `setting`.
    pub fn setting(&self, setting: Setting) -> Result<SettingValue> {
        let server = &self.info().server;
        let stored = |value: Option<String>| (value, false);
        let (value, default) = match setting {
            Setting::ExpireAfter => {
                let secs = self.expire_after()?;
                (Some(format_duration(secs)), !self.expire_after_is_stored()?)
            }
            Setting::Host => stored(Some(server.host.clone())),
            Setting::Port => stored(Some(server.port.to_string())),
            Setting::Security => stored(Some(server.security.to_string())),
            Setting::CaFile => stored(server.ca_file.as_ref().map(|p| p.display().to_string())),
            Setting::AllowInsecure => stored(Some(server.allow_insecure.to_string())),
            Setting::User => stored(Some(server.user.clone())),
            Setting::PasswordCommand => stored(self.password_command()?),
            Setting::Oauth2TokenCommand => stored(server.oauth2_token_command.clone()),
            Setting::PasswordSaved => stored(Some(
                self.saved_secret(SAVED_PASSWORD)?.is_some().to_string(),
            )),
        };
        Ok(SettingValue {
            key: setting.key(),
            value,
            default,
        })
    }

    /// Changes `setting` to `value` (checked first; nothing changes on an
    /// error). An empty value unsets the optional ones (`server.ca-file`,
    /// `password-command`, `oauth2-token-command`) and restores the default
    /// of `expire-after`.
    pub fn set_setting(&mut self, setting: Setting, value: &str) -> Result<SettingValue> {
        if let Some(why) = setting.read_only() {
            return Err(Error::Usage(format!(
                "{} cannot be changed: {why}",
                setting.key()
            )));
        }
        if let (Some(url), Setting::Host | Setting::Port | Setting::Security) =
            (&self.info().server.jmap_url, setting)
        {
            return Err(Error::Usage(format!(
                "{} cannot be changed: this device talks JMAP to {url}, whose URL gives host, port and security; to use another server, set the device up again with `sma init --jmap URL` and a new --home",
                setting.key()
            )));
        }
        let value = value.trim();
        match setting {
            Setting::ExpireAfter if value.is_empty() => self.clear_expire_after()?,
            Setting::ExpireAfter => self.set_expire_after(parse_duration(value)?)?,
            Setting::PasswordCommand => self.set_password_command(value)?,
            _ => {
                let mut server = self.info().server.clone();
                apply_server_setting(&mut server, setting, value)?;
                self.set_server(server)?;
            }
        }
        self.setting(setting)
    }

    /// The stored password command, if any.
    pub fn password_command(&self) -> Result<Option<String>> {
        Ok(self
            .store
            .read()
            .meta(META_PASSWORD_COMMAND)?
            .filter(|c| !c.is_empty()))
    }

    fn set_password_command(&mut self, command: &str) -> Result<()> {
        if !command.is_empty() && self.info().server.uses_oauth2() {
            return Err(Error::Usage(
                "this device logs in with its OAuth 2.0 token command, not a password: unset it first with `sma config set oauth2-token-command ''`".into(),
            ));
        }
        self.store
            .write(|db| db.set_meta(META_PASSWORD_COMMAND, command))?;
        Ok(())
    }
}

/// Sets one server setting in `server`, checking the value.
fn apply_server_setting(server: &mut ServerConfig, setting: Setting, value: &str) -> Result<()> {
    let bad = |what: &str| Error::Usage(format!("{}: {value:?} is not {what}", setting.key()));
    match setting {
        Setting::Host if value.is_empty() || value.contains(char::is_whitespace) => {
            return Err(bad("a host name"))
        }
        Setting::Host => server.host = value.to_owned(),
        Setting::Port => {
            server.port = value
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("a port number (1 to 65535)"))?
        }
        Setting::Security => {
            server.security =
                ServerConfig::parse_security(value).ok_or_else(|| bad("tls, starttls or plain"))?
        }
        Setting::CaFile if value.is_empty() => server.ca_file = None,
        Setting::CaFile => {
            let path = PathBuf::from(value);
            if !path.is_file() {
                return Err(bad("a readable file"));
            }
            server.ca_file = Some(path);
        }
        Setting::AllowInsecure => {
            server.allow_insecure = value.parse().map_err(|_| bad("true or false"))?
        }
        Setting::Oauth2TokenCommand if value.is_empty() => server.oauth2_token_command = None,
        Setting::Oauth2TokenCommand => server.oauth2_token_command = Some(value.to_owned()),
        other => {
            return Err(Error::Usage(format!(
                "{} is not a server setting",
                other.key()
            )))
        }
    }
    Ok(())
}

/// `secs` in the largest units that write it exactly, e.g. `90d`, `1d12h`,
/// `3s` (what [`parse_duration`] reads back).
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut rest = secs;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// Whether `DEFAULT_EXPIRE_AFTER_SECS` is what [`format_duration`] shows
/// as `90d` (documented default).
const _: () = assert!(DEFAULT_EXPIRE_AFTER_SECS == 90 * 86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_back() {
        for secs in [
            1,
            59,
            60,
            3_600,
            86_400,
            90 * 86_400,
            86_400 + 12 * 3_600,
            93_784,
        ] {
            let text = format_duration(secs);
            assert_eq!(parse_duration(&text).unwrap(), secs, "{text}");
        }
        assert_eq!(format_duration(90 * 86_400), "90d");
        assert_eq!(format_duration(93_784), "1d2h3m4s");
    }

    #[test]
    fn every_key_names_its_setting() {
        for s in Setting::ALL {
            assert_eq!(Setting::from_key(s.key()).unwrap(), s);
        }
        let err = Setting::from_key("expire_after").unwrap_err().to_string();
        assert!(err.contains("expire-after"), "{err}");
    }

    fn server() -> ServerConfig {
        ServerConfig {
            host: "imap.example.org".into(),
            port: 993,
            security: sma_imap::Security::Tls,
            ca_file: None,
            allow_insecure: false,
            user: "alice@example.org".into(),
            oauth2_token_command: None,
            jmap_url: None,
        }
    }

    #[test]
    fn server_settings_are_checked() {
        let mut s = server();
        apply_server_setting(&mut s, Setting::Port, "143").unwrap();
        apply_server_setting(&mut s, Setting::Security, "starttls").unwrap();
        apply_server_setting(&mut s, Setting::Host, "mail.example.net").unwrap();
        assert_eq!((s.port, s.host.as_str()), (143, "mail.example.net"));
        assert_eq!(s.security, sma_imap::Security::StartTls);
        let before = s.clone();
        for (setting, value) in [
            (Setting::Port, "0"),
            (Setting::Port, "99999"),
            (Setting::Security, "ssl3"),
            (Setting::Host, "two words"),
            (Setting::AllowInsecure, "yes"),
            (Setting::CaFile, "/no/such/ca.pem"),
        ] {
            assert!(
                matches!(
                    apply_server_setting(&mut s, setting, value),
                    Err(Error::Usage(_))
                ),
                "{setting:?} = {value}"
            );
        }
        assert_eq!(s, before, "a refused value changes nothing");
    }
}

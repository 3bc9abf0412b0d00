//! `init`: create this device, with the server from `--server` or the
//! built-in provider table, and a password or an OAuth 2.0 token command.

use anyhow::{Context, Result};
use sma::init::{InitOptions, InitReport};
use sma::{Device, Error, ServerConfig};
use sma_imap::{ImapConfig, Security};
use sma_proto::folders::Layout;

use super::{data_dir, doctor, import_setup_file, Ctx};
use crate::args::{InitArgs, LayoutArg, SecurityArg};
use crate::secrets::SAVED_PASSWORD;

impl Ctx<'_> {
    /// `sma init`.
    pub(super) async fn init(&self, a: &InitArgs) -> Result<()> {
        let (host, port, security, provider) = match &a.jmap {
            Some(url) => {
                let s = ServerConfig::for_jmap(url, &a.user)?;
                (s.host, s.port, s.security, None)
            }
            None => init_server(a)?,
        };
        let home = match &self.cli.home {
            Some(h) => h.clone(),
            None => data_dir()
                .context("cannot find a data directory: pass --home DIR")?
                .join(&a.user),
        };
        sma::init::check_home_free(&home)?;
        let account_key = imported_account_key(a)?;
        let oauth2 = self.cli.oauth2_token_command.is_some();
        check_login(a, provider, oauth2)?;
        let password = self.password(None)?;
        let opts = InitOptions {
            home: home.clone(),
            server: ServerConfig {
                host: host.clone(),
                port,
                security,
                ca_file: a.ca_file.clone(),
                allow_insecure: a.allow_insecure,
                user: a.user.clone(),
                oauth2_token_command: self.cli.oauth2_token_command.clone(),
                jmap_url: a.jmap.clone(),
            },
            name: a.name.clone().unwrap_or_else(default_name),
            layout: match a.layout {
                LayoutArg::Flat => Layout::Flat,
                LayoutArg::Nested => Layout::Nested,
            },
            account_key,
        };
        doctor::warn_if_insecure(&opts.server);
        let report: InitReport = sma::init::init(opts, &password).await?;
        if a.save_password {
            let mut dev = Device::open(&home)?;
            dev.save_secret(SAVED_PASSWORD, password.expose().as_bytes())?;
        }
        let mut shown = serde_json::to_value(&report).context("encoding the init report")?;
        shown["server"] = serde_json::json!({
            "host": host,
            "port": port,
            "security": security.as_str(),
            "provider": provider.map(|p| p.name),
            "auth": if oauth2 { "oauth2" } else { "password" },
        });
        if let Some(url) = &a.jmap {
            shown["server"]["jmap_url"] = serde_json::json!(url);
        }
        self.out.emit(&shown, || {
            let settings = match &a.jmap {
                Some(url) => format!("Talking JMAP to {url}.\n"),
                None => settings_line(provider, &host, port, security, oauth2),
            };
            let what = match report.role {
                sma::Role::Founder => "founded the group for".to_string(),
                _ => "announced itself as pending for".to_string(),
            };
            let next = match report.role {
                sma::Role::Founder => "Next: run `sma init` on another device, then `sma pair` here.".to_string(),
                _ => "Next: run `sma pair` on a member device and type its code here with `sma join --code CODE`.".to_string(),
            };
            format!(
                "{settings}Device {} (key {}) {what} {} (home {}).\nAnnouncements: {}  Inbox: {}\n{next}",
                report.device_id,
                sma::pair::short_fingerprint(&report.fingerprint),
                report.account,
                home.display(),
                report.folders.announce,
                report.folders.inbox
            )
        })
    }
}

/// Host, port, security and (without --server) the built-in provider
/// settings `init` uses. Without --server, an address whose provider is not
/// built in is a usage error that says what to pass.
fn init_server(
    a: &InitArgs,
) -> Result<(
    String,
    u16,
    Security,
    Option<&'static sma::providers::Provider>,
)> {
    let Some(server) = &a.server else {
        let p = sma::providers::for_address(&a.user).ok_or_else(|| {
            let domain = sma::providers::domain_of(&a.user)
                .map(|d| format!("for {d} "))
                .unwrap_or_default();
            Error::Usage(format!(
                "sma has no built-in server settings {domain}(it knows Gmail, Outlook.com, Yahoo, AOL, iCloud, GMX, WEB.DE, Fastmail, mailbox.org, Posteo, Proton Mail Bridge, Zoho and Yandex): pass --server HOST[:PORT] and, unless it is implicit TLS on port 993, --security starttls|plain"
            ))
        })?;
        return Ok((p.host.to_owned(), p.port, p.security, Some(p)));
    };
    let (host, port) = split_host_port(server)?;
    let security = match a.security.unwrap_or(SecurityArg::Tls) {
        SecurityArg::Tls => Security::Tls,
        SecurityArg::Starttls => Security::StartTls,
        SecurityArg::Plain => Security::Plain,
    };
    let port = port.unwrap_or(ImapConfig::default_port(security));
    Ok((host, port, security, None))
}

/// The line `init` starts with when it took the server from the provider
/// table (empty otherwise).
fn settings_line(
    provider: Option<&'static sma::providers::Provider>,
    host: &str,
    port: u16,
    security: Security,
    oauth2: bool,
) -> String {
    let Some(p) = provider else {
        return String::new();
    };
    let login = if oauth2 {
        "OAuth 2.0 access tokens from the token command"
    } else {
        p.login
    };
    format!(
        "Using the built-in settings for {}: {host}:{port} ({security}); log in with {login}.\n",
        p.name
    )
}

/// Refuses, before anything is read or connected, a login that cannot
/// work: `--save-password` with a token command (tokens are never saved),
/// or a password for a provider that takes only OAuth 2.0 tokens.
fn check_login(
    a: &InitArgs,
    provider: Option<&'static sma::providers::Provider>,
    oauth2: bool,
) -> Result<()> {
    if a.save_password && oauth2 {
        return Err(Error::Usage(
            "--save-password has no use with --oauth2-token-command: the token command is stored, and tokens are never saved".into(),
        )
        .into());
    }
    match provider {
        Some(p) if p.oauth2 == sma::providers::OAuth2::Required && !oauth2 => {
            Err(Error::Usage(format!(
                "{} accepts only OAuth 2.0 access tokens over IMAP, no password: pass --oauth2-token-command CMD, a command that prints a current access token for {} (e.g. `oama access {}`; see `sma init --help`)",
                p.name, a.user, a.user
            ))
            .into())
        }
        _ => Ok(()),
    }
}

fn split_host_port(server: &str) -> Result<(String, Option<u16>)> {
    let bad = || Error::Usage(format!("--server {server:?}: expected HOST or HOST:PORT"));
    if let Some(rest) = server.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| bad())?),
            None if tail.is_empty() => None,
            None => return Err(bad().into()),
        };
        return Ok((host.to_owned(), port));
    }
    match server.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h.to_owned(), Some(p.parse().map_err(|_| bad())?))),
        _ if server.is_empty() => Err(bad().into()),
        _ => Ok((server.to_owned(), None)),
    }
}

/// The account key of `--import-setup FILE`, with its setup code from
/// `--setup-code` or the prompt; `None` without `--import-setup`.
fn imported_account_key(a: &InitArgs) -> Result<Option<sma_crypto::AccountKey>> {
    match &a.import_setup {
        Some(file) => {
            let code = crate::secrets::code(a.setup_code.as_deref(), "setup code")?;
            Ok(Some(import_setup_file(file, &code)?))
        }
        None => Ok(None),
    }
}

fn default_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "sma device".into())
}

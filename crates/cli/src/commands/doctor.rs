//! `doctor` (is this device's setup healthy, and what to fix), plus the
//! other newcomer's helpers generated from the clap definitions:
//! `completions SHELL` and `man`.

use anyhow::Result;
use clap::CommandFactory;
use serde::Serialize;
use sma::{Device, Error, ImapSession, Role};
use sma_imap::{is_loopback_host, Security, Transport};
use sma_proto::folders::ANNOUNCE_BASE;

use super::probe::probe;
use super::Ctx;
use crate::args::Cli;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// Fine.
    Ok,
    /// Works, but something should be changed.
    Warn,
    /// Broken: sma cannot work like this.
    Fail,
}

/// One line of `doctor`'s report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Check {
    /// What was checked.
    pub(super) check: &'static str,
    /// How it came out.
    pub(super) status: Status,
    /// What was found.
    pub(super) detail: String,
    /// What to do about it (not for `ok`).
    pub(super) fix: Option<String>,
}

pub(super) fn ok(check: &'static str, detail: impl Into<String>) -> Check {
    Check {
        check,
        status: Status::Ok,
        detail: detail.into(),
        fix: None,
    }
}

pub(super) fn warn(
    check: &'static str,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        check,
        status: Status::Warn,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

pub(super) fn fail(
    check: &'static str,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        check,
        status: Status::Fail,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Collects the checks and prints each as soon as it is known.
struct Report<'a> {
    ctx: &'a Ctx<'a>,
    failed: Vec<&'static str>,
}

impl Report<'_> {
    fn add(&mut self, c: Check) -> Result<()> {
        if c.status == Status::Fail {
            self.failed.push(c.check);
        }
        self.ctx.out.emit(&c, || {
            let tag = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            let mut line = format!("{tag}  {:<14} {}", c.check, c.detail);
            if let Some(fix) = &c.fix {
                line += &format!("\n      {:<14} fix: {fix}", "");
            }
            line
        })
    }

    fn finish(self) -> Result<()> {
        if self.failed.is_empty() {
            return Ok(());
        }
        Err(Error::Server(format!(
            "{} check(s) failed ({}) — see the fixes above",
            self.failed.len(),
            self.failed.join(", ")
        ))
        .into())
    }
}

impl Ctx<'_> {
    /// `sma doctor [--fix]`
    pub(crate) async fn doctor(&self, fix: bool) -> Result<()> {
        let mut r = Report {
            ctx: self,
            failed: Vec::new(),
        };
        let mut dev = match self.open() {
            Ok(d) => d,
            Err(e) => {
                r.add(fail(
                    "device",
                    format!("{e:#}"),
                    "create a device with `sma init --server HOST --user USER`, or pass the right --home",
                ))?;
                return r.finish();
            }
        };
        r.add(device_check(&dev))?;
        r.add(security_check(&dev))?;
        let password = match self.password(Some(&dev)) {
            Ok(p) => p,
            Err(e) => {
                r.add(fail("login", format!("{e:#}"), "give the IMAP password with --password-file, --password-command or SMA_PASSWORD"))?;
                return r.finish();
            }
        };
        warn_if_insecure(&dev.info().server);
        if dev.info().server.is_jmap() {
            jmap_checks(&mut r, &mut dev, &password, fix).await?;
            return r.finish();
        }
        let config = dev.info().server.imap_config(&password);
        let mut t = match ImapSession::connect(&config).await {
            Ok(t) => t,
            Err(e) => {
                r.add(fail(
                    "login",
                    e.to_string(),
                    "follow the advice in the message; `sma -v doctor` shows the IMAP conversation",
                ))?;
                return r.finish();
            }
        };
        r.add(ok(
            "login",
            format!(
                "logged in to {} as {} ({}; greeting: {})",
                t.addr(),
                t.user(),
                if t.is_tls() { "TLS" } else { "unencrypted" },
                t.server_greeting().trim()
            ),
        ))?;
        r.add(capabilities_check(t.capabilities()))?;
        if folder_and_delete_checks(&mut r, &mut dev, &mut t, fix).await? {
            for c in probe(&dev, &config, &mut t).await {
                r.add(c)?;
            }
        }
        let _ = t.logout().await;
        r.finish()
    }
}

/// The server checks of a JMAP device: the session resource, folders,
/// subscriptions and what deleting does (the IDLE and clock probes are
/// IMAP's).
async fn jmap_checks(
    r: &mut Report<'_>,
    dev: &mut Device,
    password: &sma::Password,
    fix: bool,
) -> Result<()> {
    let url = dev.info().server.jmap_url.clone().unwrap_or_default();
    let mut t = match dev.info().server.session_config(password).connect().await {
        Ok(t) => t,
        Err(e) => {
            return r.add(fail(
                "login",
                e.to_string(),
                "follow the advice in the message; `sma -vv doctor` shows the JMAP requests",
            ));
        }
    };
    r.add(ok(
        "login",
        format!(
            "read the JMAP session resource {url} as {}",
            dev.info().server.user
        ),
    ))?;
    folder_and_delete_checks(r, dev, &mut t, fix).await?;
    if let Some(j) = t.as_jmap_mut() {
        r.add(push_check(j.push_available().await))?;
    }
    let _ = t.logout().await;
    Ok(())
}

/// Whether `watch` on this JMAP device is woken by the server or polls.
fn push_check(push: bool) -> Check {
    if push {
        ok(
            "push",
            "the server pushes changes (JMAP event source): `watch` wakes as they happen",
        )
    } else {
        warn(
            "push",
            "the server offers no JMAP event source: `watch` asks for changes instead, every 0.25 s for 30 s after activity, then every 2 s",
            "nothing to fix on this device: messages still arrive, within about 2 s when all was quiet",
        )
    }
}

/// The folder and subscription checks, then, when the folders are usable
/// and the device is not removed, what deleting does; returns whether the
/// latter ran (the IMAP probes follow it).
async fn folder_and_delete_checks<T: Transport>(
    r: &mut Report<'_>,
    dev: &mut Device,
    t: &mut T,
    fix: bool,
) -> Result<bool> {
    let checks = server_checks(dev, t, fix).await;
    let inbox_ok = checks
        .iter()
        .all(|c| c.check != "folders" || c.status != Status::Fail);
    for c in checks {
        r.add(c)?;
    }
    let usable = inbox_ok && dev.info().role != Role::Removed;
    if usable {
        r.add(super::delete::delete_check(dev, t, fix).await)?;
    }
    Ok(usable)
}

fn device_check(dev: &Device) -> Check {
    let i = dev.info();
    let what = format!(
        "device {} ({}), {} of {}",
        i.id,
        i.name,
        i.role.as_str(),
        i.account
    );
    match i.role {
        Role::Founder | Role::Member => ok("device", what),
        Role::Pending => warn(
            "device",
            format!("{what}: not paired yet"),
            "run `sma pair` on a member device, then `sma join --code CODE` here",
        ),
        Role::Removed => fail(
            "device",
            format!("{what}: removed from the group"),
            "set this device up again with `sma init` and a fresh --home",
        ),
    }
}

fn security_check(dev: &Device) -> Check {
    let s = &dev.info().server;
    if let Some(url) = &s.jmap_url {
        return jmap_security_check(s, url);
    }
    let target = format!("{}:{}", s.host, s.port);
    let trust = match &s.ca_file {
        Some(ca) => format!("certificates verified against {}", ca.display()),
        None => "certificates verified against the web PKI roots".to_owned(),
    };
    match s.security {
        Security::Tls => ok("security", format!("implicit TLS to {target}, {trust}")),
        Security::StartTls => ok("security", format!("STARTTLS to {target}, {trust}")),
        Security::Plain if is_loopback_host(&s.host) => ok(
            "security",
            format!("unencrypted IMAP to {target} (loopback only)"),
        ),
        Security::Plain => warn(
            "security",
            format!("unencrypted IMAP to {target} over the network (--allow-insecure): the password and all metadata travel in clear"),
            "set the device up again with --security tls (port 993) or --security starttls",
        ),
    }
}

/// `security` of a JMAP device: HTTPS, or HTTP to loopback or allowed.
fn jmap_security_check(s: &sma::ServerConfig, url: &str) -> Check {
    let trust = match &s.ca_file {
        Some(ca) => format!("certificates verified against {}", ca.display()),
        None => "certificates verified against the web PKI roots".to_owned(),
    };
    match s.security {
        Security::Plain if is_loopback_host(&s.host) => ok(
            "security",
            format!("unencrypted JMAP (http) to {url} (loopback only)"),
        ),
        Security::Plain => warn(
            "security",
            format!("unencrypted JMAP (http) to {url} over the network (--allow-insecure): the password and all metadata travel in clear"),
            "set the device up again with an https:// --jmap URL",
        ),
        _ => ok("security", format!("JMAP over HTTPS to {url}, {trust}")),
    }
}

fn capabilities_check(caps: &sma_imap::Capabilities) -> Check {
    let mut missing = Vec::new();
    if !caps.idle {
        missing.push("IDLE (sma polls every 30 s instead)");
    }
    if !caps.uidplus {
        missing.push("UIDPLUS (removing a message expunges every \\Deleted message of an SMA folder; harmless there)");
    }
    if !caps.namespace {
        missing.push("NAMESPACE (SMA folders are created at the top level)");
    }
    let has: Vec<&str> = [
        ("IDLE", caps.idle),
        ("UIDPLUS", caps.uidplus),
        ("NAMESPACE", caps.namespace),
        ("MOVE", caps.move_),
        ("CONDSTORE", caps.condstore),
        ("LITERAL+", caps.literal_plus),
    ]
    .into_iter()
    .filter(|(_, y)| *y)
    .map(|(n, _)| n)
    .collect();
    if missing.is_empty() {
        ok("capabilities", format!("has {}", has.join(" ")))
    } else {
        warn(
            "capabilities",
            format!("has {}; lacks {}", has.join(" "), missing.join(", ")),
            "nothing is required of you; ask the server's administrator to enable these for better latency",
        )
    }
}

/// Namespace, folders and subscriptions.
async fn server_checks<T: Transport>(dev: &Device, t: &mut T, fix: bool) -> Vec<Check> {
    let mut out = Vec::new();
    let names = &dev.info().folders;
    match t.namespace().await {
        Ok(ns) if ns.prefix == names.prefix && ns.delimiter == names.delimiter => out.push(ok(
            "namespace",
            format!("personal namespace {:?} with delimiter {}, as when this device was set up", ns.prefix, delim(ns.delimiter)),
        )),
        Ok(ns) => out.push(fail(
            "namespace",
            format!(
                "the server's personal namespace is now {:?} (delimiter {}), but this device uses {:?} (delimiter {})",
                ns.prefix, delim(ns.delimiter), names.prefix, delim(names.delimiter)
            ),
            "the server's configuration changed: set the devices up again with `sma init` in fresh homes",
        )),
        Err(e) => out.push(fail("namespace", e.to_string(), "check the connection and retry")),
    }
    let pattern = format!("{}{}*", names.prefix, ANNOUNCE_BASE);
    let announce = names.announce();
    let inbox = dev.inbox();
    match t.list("", &pattern).await {
        Ok(list) => {
            let has = |n: &str| list.iter().any(|f| f.name == n && f.is_selectable());
            let count = list.iter().filter(|f| f.is_selectable()).count();
            if !has(&announce) {
                out.push(fail(
                    "folders",
                    format!("the announcements folder {announce} is missing"),
                    "someone deleted it: run `sma sync` on a member device to recreate it, or set the group up again",
                ));
            } else if !has(&inbox) && dev.info().role != Role::Removed {
                out.push(fail(
                    "folders",
                    format!("this device's inbox {inbox} is missing"),
                    "the device was probably removed from the group (see `sma status`); if not, `sma sync` recreates it",
                ));
            } else {
                out.push(ok(
                    "folders",
                    format!(
                        "{count} SMA folders, including {announce} and this device's inbox {inbox}"
                    ),
                ));
            }
        }
        Err(e) => out.push(fail(
            "folders",
            e.to_string(),
            "check the connection and retry",
        )),
    }
    out.push(subscription_check(t, &pattern, fix).await);
    out
}

fn delim(d: Option<char>) -> String {
    d.map_or_else(|| "none".to_owned(), |c| format!("{c:?}"))
}

async fn subscription_check<T: Transport>(t: &mut T, pattern: &str, fix: bool) -> Check {
    let subscribed = match t.list_subscribed(pattern).await {
        Ok(s) => s,
        Err(e) => {
            return fail(
                "subscriptions",
                e.to_string(),
                "check the connection and retry",
            )
        }
    };
    if subscribed.is_empty() {
        return ok("subscriptions", "no SMA folder is subscribed");
    }
    let names = subscribed.join(", ");
    if fix {
        let mut errors = Vec::new();
        for f in &subscribed {
            if let Err(e) = t.unsubscribe(f).await {
                errors.push(format!("{f}: {e}"));
            }
        }
        if errors.is_empty() {
            return ok(
                "subscriptions",
                format!("unsubscribed {names} (they were subscribed)"),
            );
        }
        return warn(
            "subscriptions",
            format!("could not unsubscribe {}", errors.join("; ")),
            "unsubscribe these folders in your mail program",
        );
    }
    warn(
        "subscriptions",
        format!("subscribed SMA folders: {names} — mail programs then show them and may download, move or delete sma's messages"),
        format!("run `sma doctor --fix`, or unsubscribe {names} in your mail program"),
    )
}

/// Prints a loud warning on stderr when `server` is used with
/// `--allow-insecure` for a host that is not loopback: the password and
/// every message then cross the network unencrypted. Not silenced by `-q`.
pub(crate) fn warn_if_insecure(server: &sma::ServerConfig) {
    if server.allow_insecure
        && server.security == Security::Plain
        && !is_loopback_host(&server.host)
    {
        if let Some(url) = &server.jmap_url {
            eprintln!(
                "sma: WARNING: connecting to {url} WITHOUT ENCRYPTION (http:// with --allow-insecure): \
                 the password and all of sma's messages and metadata travel in clear over the network. \
                 Use an https:// URL unless this network is fully trusted."
            );
            return;
        }
        eprintln!(
            "sma: WARNING: connecting to {}:{} WITHOUT ENCRYPTION (--security plain --allow-insecure): \
             the IMAP password and all of sma's messages and metadata travel in clear over the network. \
             Use --security tls or starttls unless this network is fully trusted.",
            server.host, server.port
        );
    }
}

/// `sma completions SHELL`
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "sma", &mut std::io::stdout());
    Ok(())
}

/// `sma man`
pub(crate) fn man() -> Result<()> {
    let cmd = Cli::command();
    clap_mangen::Man::new(cmd)
        .render(&mut std::io::stdout())
        .map_err(|e| anyhow::anyhow!("cannot write the manual page: {e}"))?;
    Ok(())
}

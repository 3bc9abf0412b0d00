//! `doctor` (is this device's setup healthy, and what to fix), plus the
//! other newcomer's helpers generated from the clap definitions:
//! `completions SHELL` and `man`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::CommandFactory;
use serde::Serialize;
use sma::{Device, Error, ImapSession, Role};
use sma_imap::{is_loopback_host, IdleOutcome, Security, Transport};
use sma_proto::folders::ANNOUNCE_BASE;

use super::Ctx;
use crate::args::Cli;

/// Clock skew (seconds) above which `doctor` warns.
const SKEW_WARN_SECS: i64 = 60;
/// Clock skew above which `doctor` fails: announcements' heartbeats are
/// trusted only this far into the future.
const SKEW_FAIL_SECS: i64 = 86_400;
/// How long `doctor` waits for IDLE to report its probe message.
const IDLE_WAIT: Duration = Duration::from_secs(10);
/// How long after IDLE starts the probe is appended.
const PROBE_DELAY: Duration = Duration::from_millis(300);
/// IDLE slower than this is a warning (sma then relies on polling).
const IDLE_SLOW: Duration = Duration::from_secs(5);

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
    check: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
}

fn ok(check: &'static str, detail: impl Into<String>) -> Check {
    Check {
        check,
        status: Status::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check,
        status: Status::Warn,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
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
    fn add(&mut self, c: Check) {
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
        });
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
        let dev = match self.open() {
            Ok(d) => d,
            Err(e) => {
                r.add(fail(
                    "device",
                    format!("{e:#}"),
                    "create a device with `sma init --server HOST --user USER`, or pass the right --home",
                ));
                return r.finish();
            }
        };
        r.add(device_check(&dev));
        r.add(security_check(&dev));
        let password = match self.password(Some(&dev)) {
            Ok(p) => p,
            Err(e) => {
                r.add(fail("login", format!("{e:#}"), "give the IMAP password with --password-file, --password-command or SMA_PASSWORD"));
                return r.finish();
            }
        };
        warn_if_insecure(&dev.info().server);
        let config = dev.info().server.imap_config(&password);
        let mut t = match ImapSession::connect(&config).await {
            Ok(t) => t,
            Err(e) => {
                r.add(fail(
                    "login",
                    e.to_string(),
                    "follow the advice in the message; `sma -v doctor` shows the IMAP conversation",
                ));
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
        ));
        r.add(capabilities_check(t.capabilities()));
        let checks = server_checks(&dev, &mut t, fix).await;
        let inbox_ok = checks
            .iter()
            .all(|c| c.check != "folders" || c.status != Status::Fail);
        for c in checks {
            r.add(c);
        }
        if inbox_ok && dev.info().role != Role::Removed {
            for c in probe(&dev, &config, &mut t).await {
                r.add(c);
            }
        }
        let _ = t.logout().await;
        r.finish()
    }
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
async fn server_checks(dev: &Device, t: &mut ImapSession, fix: bool) -> Vec<Check> {
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

async fn subscription_check(t: &mut ImapSession, pattern: &str, fix: bool) -> Check {
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

/// Appends a probe message to this device's inbox from a second session
/// while the first one IDLEs: measures how fast IDLE reports it and, from
/// its INTERNALDATE, the clock skew. The probe is removed again.
async fn probe(dev: &Device, config: &sma_imap::ImapConfig, t: &mut ImapSession) -> Vec<Check> {
    let inbox = dev.inbox();
    let mut other = match ImapSession::connect(config).await {
        Ok(s) => s,
        Err(e) => {
            return vec![fail(
                "idle",
                format!("a second connection failed: {e}"),
                "check the server's connection limits and retry",
            )]
        }
    };
    if let Err(e) = t.select(&inbox).await {
        return vec![fail(
            "idle",
            e.to_string(),
            "check the connection and retry",
        )];
    }
    let token = format!("{:016x}", rand::random::<u64>());
    let message = probe_message(&dev.info().account, &token);
    let append = async {
        tokio::time::sleep(PROBE_DELAY).await;
        let before = unix_now();
        let r = other
            .append(&inbox, &["\\Seen", "\\Deleted"], &message)
            .await;
        (before, unix_now(), Instant::now(), r)
    };
    let (idle, (before, after, appended, uid)) = tokio::join!(t.idle(IDLE_WAIT), append);
    let woke = appended.elapsed();
    let _ = other.logout().await;
    let mut out = Vec::new();
    let uid = match uid {
        Ok(u) => u,
        Err(e) => {
            return vec![fail(
                "idle",
                format!("cannot append a probe message to {inbox}: {e}"),
                "check the account's quota and permissions",
            )]
        }
    };
    let poll = if t.capabilities().idle {
        ""
    } else {
        " (no IDLE: polling with NOOP)"
    };
    out.push(match idle {
        // Seen only in the answer to DONE when the wait ended: IDLE itself
        // said nothing.
        Ok(IdleOutcome::Changed) if woke + PROBE_DELAY + Duration::from_millis(150) >= IDLE_WAIT => warn(
            "idle",
            format!("IDLE did not report a new message within {} s (it showed up only when IDLE ended){poll}", IDLE_WAIT.as_secs()),
            "sma falls back to polling every 30 s (pairing then takes up to 30 s longer); for faster delivery ask for a working IDLE (Courier: IMAP_ENHANCEDIDLE=1; Cyrus: idled)",
        ),
        Ok(IdleOutcome::Changed) if woke <= IDLE_SLOW => ok("idle", format!("a new message was reported after {} ms{poll}", woke.as_millis())),
        Ok(IdleOutcome::Changed) => warn("idle", format!("a new message was reported only after {:.1} s{poll}", woke.as_secs_f64()), "sma also polls every 30 s; for faster delivery ask for a quicker IDLE (Courier: IMAP_ENHANCEDIDLE=1)"),
        Ok(_) => warn("idle", format!("IDLE did not report a new message within {} s{poll}", IDLE_WAIT.as_secs()), "sma falls back to polling every 30 s; for faster delivery ask for a working IDLE (Courier: IMAP_ENHANCEDIDLE=1)"),
        Err(e) => fail("idle", format!("IDLE failed: {e}"), "check the connection and retry"),
    });
    let uid = match uid {
        Some(u) => Some(u),
        None => t
            .search_header("X-SMA-Doctor-Probe", &token)
            .await
            .ok()
            .and_then(|v| v.last().copied()),
    };
    let Some(uid) = uid else {
        out.push(warn(
            "clock",
            "could not find the probe message again",
            "retry `sma doctor`",
        ));
        return out;
    };
    out.push(match t.internal_dates(&[uid]).await {
        Ok(dates) => match dates
            .get(&uid)
            .and_then(|d| parse_internaldate(d).map(|s| (d, s)))
        {
            Some((text, server)) => clock_check(server, before, after, text),
            None => warn(
                "clock",
                "the server gave no readable INTERNALDATE for the probe",
                "retry `sma doctor`",
            ),
        },
        Err(e) => warn(
            "clock",
            format!("cannot read the probe's INTERNALDATE: {e}"),
            "retry `sma doctor`",
        ),
    });
    if let Err(e) = t.delete_messages(&[uid]).await {
        tracing::warn!(error = %e, "could not remove the doctor's probe message; the next sync removes it");
    }
    out
}

fn clock_check(server: i64, before: i64, after: i64, text: &str) -> Check {
    // The server stamped the probe between `before` and `after` (whole seconds).
    let skew = if server < before - 1 {
        server - before
    } else if server > after + 1 {
        server - after
    } else {
        0
    };
    let detail =
        format!("server time {text} (INTERNALDATE of a probe); this machine is off by {skew:+} s");
    match skew.abs() {
        s if s <= SKEW_WARN_SECS => ok("clock", detail),
        s if s <= SKEW_FAIL_SECS => warn("clock", detail, "synchronise this machine's clock (NTP), e.g. `timedatectl set-ntp true`"),
        _ => fail("clock", detail, "set this machine's clock right (NTP): heartbeats more than a day ahead are not trusted"),
    }
}

fn probe_message(account: &str, token: &str) -> Vec<u8> {
    let date = sma_proto::timefmt::rfc5322(unix_now().max(0) as u64);
    format!(
        "From: <{account}>\r\nTo: <{account}>\r\nDate: {date}\r\nSubject: sma doctor probe (safe to delete)\r\nX-SMA-Doctor-Probe: {token}\r\nMessage-ID: <{token}.doctor@sma.invalid>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nA probe of `sma doctor`; it removes it again.\r\n"
    )
    .into_bytes()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Parses an IMAP INTERNALDATE (`26-Nov-2026 14:35:43 +0000`, the day maybe
/// space-padded) into Unix seconds.
fn parse_internaldate(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(' ')?;
    let rfc = format!("{} {rest}", date.replace('-', " "));
    sma_proto::timefmt::parse_rfc5322(&rfc).and_then(|t| i64::try_from(t).ok())
}

/// Prints a loud warning on stderr when `server` is used with
/// `--allow-insecure` for a host that is not loopback: the password and
/// every message then cross the network unencrypted. Not silenced by `-q`.
pub(crate) fn warn_if_insecure(server: &sma::ServerConfig) {
    if server.allow_insecure
        && server.security == Security::Plain
        && !is_loopback_host(&server.host)
    {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internaldate_parsing() {
        assert_eq!(
            parse_internaldate("26-Nov-2026 14:11:58 +0000"),
            Some(1_795_702_318)
        );
        assert_eq!(
            parse_internaldate("26-Nov-2026 15:11:58 +0100"),
            Some(1_795_702_318)
        );
        assert_eq!(
            parse_internaldate(" 6-Nov-2026 14:11:58 -0700").map(|t| t % 60),
            Some(58)
        );
        assert_eq!(parse_internaldate("garbage"), None);
    }

    #[test]
    fn skew_thresholds() {
        assert_eq!(clock_check(1000, 1000, 1001, "x").status, Status::Ok);
        assert_eq!(
            clock_check(1000 + 300, 1000, 1001, "x").status,
            Status::Warn
        );
        assert_eq!(
            clock_check(1000 - 2 * 86_400, 1000, 1001, "x").status,
            Status::Fail
        );
        assert!(clock_check(1300, 1000, 1001, "x").detail.contains("+299 s"));
    }
}

//! The live checks of `sma doctor`: a probe message appended to this
//! device's inbox from a second session while the first one IDLEs measures
//! how fast IDLE reports it and, from its INTERNALDATE, the clock skew.
//! The probe is removed again.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sma::{Device, ImapSession};
use sma_imap::{IdleOutcome, ImapError, Transport, Uid};

use super::doctor::{fail, ok, warn, Check};

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

/// The `idle` and `clock` checks (see the module documentation).
pub(super) async fn probe(
    dev: &Device,
    config: &sma_imap::ImapConfig,
    t: &mut ImapSession,
) -> Vec<Check> {
    let inbox = dev.inbox();
    let other = match ImapSession::connect(config).await {
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
    let probe = Probe {
        inbox: &inbox,
        account: &dev.info().account,
        token: &token,
    };
    let appended = match probe.append_while_idle(t, other).await {
        Ok(a) => a,
        Err(check) => return vec![check],
    };
    let mut out = vec![idle_check(
        &appended.idle,
        appended.woke,
        t.capabilities().idle,
    )];
    let uid = match appended.uid {
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
    out.push(probe_clock(t, uid, appended.before, appended.after).await);
    if let Err(e) = t.delete_messages(&[uid]).await {
        tracing::warn!(error = %e, "could not remove the doctor's probe message; the next sync removes it");
    }
    out
}

/// The probe message and where it goes.
struct Probe<'a> {
    /// This device's inbox.
    inbox: &'a str,
    /// The account (From and To).
    account: &'a str,
    /// A random token in its `X-SMA-Doctor-Probe` header.
    token: &'a str,
}

/// What happened while the probe was appended during IDLE.
struct Appended {
    /// How IDLE ended.
    idle: Result<IdleOutcome, ImapError>,
    /// Time from the append's answer until IDLE ended.
    woke: Duration,
    /// Unix time just before the append.
    before: i64,
    /// Unix time just after the append.
    after: i64,
    /// The probe's UID, if the server said (UIDPLUS).
    uid: Option<Uid>,
}

impl Probe<'_> {
    /// IDLEs on `t` while `other` appends the probe after [`PROBE_DELAY`];
    /// `other` is logged out afterwards. A failed append is the `idle`
    /// check's failure.
    async fn append_while_idle(
        &self,
        t: &mut ImapSession,
        mut other: ImapSession,
    ) -> Result<Appended, Check> {
        let message = probe_message(self.account, self.token);
        let append = async {
            tokio::time::sleep(PROBE_DELAY).await;
            let before = unix_now();
            let r = other
                .append(self.inbox, &["\\Seen", "\\Deleted"], &message)
                .await;
            (before, unix_now(), Instant::now(), r)
        };
        let (idle, (before, after, appended, uid)) = tokio::join!(t.idle(IDLE_WAIT), append);
        let woke = appended.elapsed();
        let _ = other.logout().await;
        let uid = uid.map_err(|e| {
            fail(
                "idle",
                format!("cannot append a probe message to {}: {e}", self.inbox),
                "check the account's quota and permissions",
            )
        })?;
        Ok(Appended {
            idle,
            woke,
            before,
            after,
            uid,
        })
    }
}

/// The `idle` check: how IDLE ended, `woke` after the append; `has_idle`
/// whether the server has IDLE at all.
fn idle_check(idle: &Result<IdleOutcome, ImapError>, woke: Duration, has_idle: bool) -> Check {
    let poll = if has_idle {
        ""
    } else {
        " (no IDLE: polling with NOOP)"
    };
    match idle {
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
    }
}

/// The `clock` check from the INTERNALDATE of the probe `uid`, appended
/// between the Unix times `before` and `after`.
async fn probe_clock(t: &mut ImapSession, uid: Uid, before: i64, after: i64) -> Check {
    match t.internal_dates(&[uid]).await {
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
    }
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

#[cfg(test)]
mod tests {
    use super::super::doctor::Status;
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

    #[test]
    fn idle_latency_thresholds() {
        let changed = Ok(IdleOutcome::Changed);
        let fast = idle_check(&changed, Duration::from_millis(20), true);
        assert_eq!(fast.status, Status::Ok);
        assert!(fast.detail.ends_with("after 20 ms"), "{}", fast.detail);
        assert_eq!(
            idle_check(&changed, Duration::from_secs(6), true).status,
            Status::Warn
        );
        // Reported only when IDLE ended.
        let late = idle_check(&changed, Duration::from_millis(9_600), false);
        assert_eq!(late.status, Status::Warn);
        assert!(
            late.detail.contains("only when IDLE ended"),
            "{}",
            late.detail
        );
        assert!(late.detail.ends_with("(no IDLE: polling with NOOP)"));
        let failed = idle_check(
            &Err(ImapError::ConnectionLost("gone".into())),
            Duration::ZERO,
            true,
        );
        assert_eq!(failed.status, Status::Fail);
    }
}

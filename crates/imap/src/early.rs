//! Logging in without waiting for the greeting: when an earlier connection
//! showed that the server takes the login's initial response on the
//! command line (`SASL-IR`) with the mechanism this login uses, the
//! `AUTHENTICATE` line is written right after the TLS handshake, before the
//! greeting has arrived. That saves the round trip of waiting for it.
//!
//! Whatever goes wrong here (another greeting than `OK`, capabilities that
//! no longer allow the mechanism, a `NO` or `BAD`, a lost connection) is
//! not the caller's result: [`crate::ImapSession::connect`] logs in once
//! more the usual way, on a fresh connection, and reports that. The
//! exceptions ([`is_final`]) are a refused password or token, and a server
//! that sent more than sma accepts or stalled: those are the result.

use async_imap::imap_proto::{Response, ResponseCode, Status};

use crate::config::{ImapConfig, Security};
use crate::conn::Conn;
use crate::error::ImapError;
use crate::io::NetStream;
use crate::oauth2::Mechanism;
use crate::response::{Code, Greeting, Outcome};
use crate::types::Capabilities;

/// The mechanism of a login sent before the greeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EarlyMechanism {
    /// `AUTHENTICATE PLAIN` with the password.
    Plain,
    /// OAuth 2.0 with a token.
    OAuth2(Mechanism),
}

/// What an early login yields.
pub(crate) struct LoggedIn {
    pub(crate) conn: Conn,
    /// What the login's answer told.
    pub(crate) answer: Answered,
}

/// What the answer to an early login told.
pub(crate) struct Answered {
    /// The capabilities after login.
    pub(crate) caps: Capabilities,
    /// The capabilities before login: the greeting's, else the hint's.
    pub(crate) pre_login: Vec<String>,
    /// The greeting's text.
    pub(crate) greeting: String,
}

/// An early login sent and not answered yet: [`finish`] reads the
/// greeting and the answer.
#[derive(Debug)]
pub(crate) struct Pending {
    tag: String,
    mech: EarlyMechanism,
    /// What to answer an error challenge with.
    answer: &'static [u8],
}

/// The mechanism to log in with before the greeting, if the configuration
/// and its hint allow it.
pub(crate) fn plan(config: &ImapConfig) -> Option<EarlyMechanism> {
    if config.security == Security::StartTls {
        // The plain-text phase must be read before anything is sent.
        return None;
    }
    let hint = config.login_hint.as_ref()?;
    allowed(config, &Capabilities::from_raw(hint.clone()))
}

/// The early mechanism `caps` allow for this login.
fn allowed(config: &ImapConfig, caps: &Capabilities) -> Option<EarlyMechanism> {
    if !caps.has("SASL-IR") {
        return None;
    }
    if config.oauth2.is_some() {
        Mechanism::choose(caps).map(EarlyMechanism::OAuth2)
    } else if caps.has("AUTH=PLAIN") {
        Some(EarlyMechanism::Plain)
    } else {
        None
    }
}

/// Whether an early login's failure should end the connect rather than be
/// tried again the usual way: the token source failed or gave something
/// unusable, or the server refused the password (`AUTHENTICATIONFAILED`),
/// which a second try would only repeat; or the server misbehaved in a way
/// that has nothing to do with the login's timing: it sent more than sma
/// accepts, or kept sending too slowly (a second try would let it waste
/// the same memory or time again, and would hide what it did).
pub(crate) fn is_final(e: &ImapError) -> bool {
    matches!(
        e,
        ImapError::TokenUnavailable { .. }
            | ImapError::InvalidArgument(_)
            | ImapError::AuthRejected { .. }
            | ImapError::Oversized { .. }
            | ImapError::TooSlow { .. }
    )
}

/// Whether the server itself turned the early login down (an answer or a
/// greeting), as opposed to a connection that failed on the way: only the
/// former says that this server does not take logins before its greeting.
pub(crate) fn server_declined(e: &ImapError) -> bool {
    matches!(e, ImapError::No { command, .. } if command == DECLINED)
}

/// Writes `AUTHENTICATE` with `mech` on `stream` (secured as configured, no
/// byte read yet), then reads the greeting, then the login's answer and
/// the capabilities after login.
pub(crate) async fn login(
    stream: NetStream,
    config: &ImapConfig,
    mech: EarlyMechanism,
) -> Result<LoggedIn, ImapError> {
    let mut conn = Conn::new(stream, 0, 0);
    let pending = send(&mut conn, config, mech).await?;
    let answer = finish(&mut conn, config, pending).await?;
    Ok(LoggedIn { conn, answer })
}

/// Writes `AUTHENTICATE` with `mech` on `conn` (secured as configured, no
/// byte read yet). Its answer is outstanding afterwards: [`finish`] reads
/// it, and commands may go out behind it meanwhile (they run only if the
/// login succeeds).
pub(crate) async fn send(
    conn: &mut Conn,
    config: &ImapConfig,
    mech: EarlyMechanism,
) -> Result<Pending, ImapError> {
    let tag = conn.tag();
    let (mut segments, answer) = match mech {
        EarlyMechanism::Plain => (
            crate::session::plain_segments(&tag, &config.user, config.password.expose(), true),
            &b"*\r\n"[..],
        ),
        EarlyMechanism::OAuth2(m) => (
            crate::oauth2::authenticate_segments(config, m, &tag, true).await?,
            m.error_answer(),
        ),
    };
    tracing::debug!(tag = %tag, user = %config.user, mechanism = ?mech, "IMAP command AUTHENTICATE *** (before the greeting)");
    let sent = conn.send_authenticate(&tag, &segments, &mut |_| {}).await;
    crate::wire::wipe(&mut segments);
    if let Some(done) = sent? {
        return Err(declined(&format!("answered at once: {}", done.text)));
    }
    Ok(Pending { tag, mech, answer })
}

/// Reads the greeting and the answer to the login [`send`] wrote, and the
/// capabilities after login.
pub(crate) async fn finish(
    conn: &mut Conn,
    config: &ImapConfig,
    pending: Pending,
) -> Result<Answered, ImapError> {
    let Pending { tag, mech, answer } = pending;
    let (mut pre_login, mut greeting) = read_greeting(conn, config, mech).await?;
    let mut untagged_caps: Vec<String> = Vec::new();
    let mut late_greeting: Option<(Vec<String>, String)> = None;
    let (done, _challenge) = conn
        .finish_authenticate(tag, answer, &mut |r| match r {
            Response::Capabilities(c) => untagged_caps.extend(crate::response::cap_strings(c)),
            Response::Data {
                status: Status::Ok,
                code: Some(ResponseCode::Capabilities(c)),
                information,
            } => {
                let text = information.as_deref().unwrap_or("").to_owned();
                late_greeting = Some((crate::response::cap_strings(c), text));
            }
            _ => {}
        })
        .await?;
    if let Some((caps, text)) = late_greeting {
        // The first line was a notice such as Dovecot's "Waiting for
        // authentication process to respond.." (sent while its greeting is
        // held back); the greeting proper came after it.
        (pre_login, greeting) = (caps, text);
    }
    if done.outcome == Outcome::No
        && mech == EarlyMechanism::Plain
        && done.text.contains("[AUTHENTICATIONFAILED]")
    {
        // The server read the login and refused the password: a second
        // login would fail the same way and count twice against the
        // account's failed-login limits.
        return Err(ImapError::AuthRejected {
            user: config.user.clone(),
            addr: config.addr(),
            server_text: done.text,
        });
    }
    if done.outcome != Outcome::Ok {
        return Err(declined(&format!("{:?} {}", done.outcome, done.text)));
    }
    let caps = match done.code {
        Some(Code::Capabilities(raw)) => Capabilities::from_raw(raw),
        _ if !untagged_caps.is_empty() => Capabilities::from_raw(untagged_caps),
        // Commands went out behind the login on the hint's word, and the
        // answer does not contradict it: asking now would mix the answers.
        _ if conn.has_flight_behind() => {
            Capabilities::from_raw(config.caps_hint.clone().unwrap_or_default())
        }
        _ => crate::session::read_capabilities(conn).await?,
    };
    conn.literal_plus = caps.literal_plus;
    tracing::debug!(user = %config.user, "IMAP logged in before the greeting");
    Ok(Answered {
        caps,
        pre_login,
        greeting,
    })
}

/// Reads the greeting after the early `AUTHENTICATE`: it must be `OK`, and
/// its capabilities, if it has any, must still allow `mech`. Returns the
/// capabilities before login (the greeting's, else the hint's) and the
/// greeting's text.
async fn read_greeting(
    conn: &mut Conn,
    config: &ImapConfig,
    mech: EarlyMechanism,
) -> Result<(Vec<String>, String), ImapError> {
    let (status, caps, text) = conn.read_greeting().await?;
    if status != Greeting::Ok {
        return Err(declined(&format!("the greeting is not OK: {text}")));
    }
    let caps = match caps {
        Some(raw) => raw,
        None => config.login_hint.clone().unwrap_or_default(),
    };
    if allowed(config, &Capabilities::from_raw(caps.clone())) != Some(mech) {
        return Err(declined(
            "the greeting's capabilities no longer allow this login",
        ));
    }
    Ok((caps, text))
}

/// The command named in the errors of [`declined`].
const DECLINED: &str = "AUTHENTICATE before the greeting";

/// Why an early login was given up (for the debug log only).
pub(crate) fn declined(why: &str) -> ImapError {
    ImapError::No {
        command: DECLINED.into(),
        text: why.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_by_the_server_counts_as_declined() {
        assert!(server_declined(&declined("the greeting is not OK")));
        assert!(!server_declined(&ImapError::ConnectionLost("reset".into())));
        assert!(!server_declined(&ImapError::No {
            command: "SELECT".into(),
            text: "no".into(),
        }));
        let rejected = ImapError::AuthRejected {
            user: "bob".into(),
            addr: "127.0.0.1:993".into(),
            server_text: "[AUTHENTICATIONFAILED] Authentication failed.".into(),
        };
        assert!(is_final(&rejected) && !server_declined(&rejected));
    }

    #[test]
    fn a_misbehaving_server_is_not_given_a_second_connection() {
        let oversized = ImapError::Oversized {
            command: "AUTHENTICATE".into(),
            what: "an overlong response line".into(),
            limit: "1 MiB".into(),
        };
        let stalled = ImapError::TooSlow {
            what: "the login's answer".into(),
            bytes: 30,
            secs: 60,
        };
        assert!(is_final(&oversized) && is_final(&stalled));
        let lost = ImapError::ConnectionLost("closed".into());
        let silent = ImapError::Timeout {
            what: "the greeting".into(),
        };
        assert!(!is_final(&lost) && !is_final(&silent));
    }
}

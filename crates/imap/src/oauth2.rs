//! OAuth 2.0 login: `AUTHENTICATE OAUTHBEARER` (RFC 7628), else Google's and
//! Microsoft's `XOAUTH2`, with an access token asked for at every login.
//!
//! On failure both mechanisms send one challenge, a base64 JSON error
//! (`{"status":"invalid_token",...}`); the client must answer it (RFC 7628:
//! with the dummy response `%x01`; XOAUTH2: with an empty response) and then
//! gets the tagged `NO`. The decoded JSON becomes part of the error, bounded
//! and stripped of control characters, like everything taken from the server.
//!
//! The token never reaches logs or error messages, and every copy made here
//! is wiped from memory after use.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use async_imap::imap_proto::Response;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::config::{bare_host, ImapConfig, Password};
use crate::conn::Conn;
use crate::error::ImapError;
use crate::response::{Done, Outcome};
use crate::types::Capabilities;
use crate::wire::Segment;

/// The future [`TokenSource::token`] returns: a token, or why there is none.
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<Password, String>> + Send + 'a>>;

/// Where OAuth 2.0 access tokens come from (e.g. a command the user
/// configured, such as `oama access alice@example.org`).
///
/// [`crate::ImapSession::connect`] asks for a token at every login, so an
/// expired token is replaced by the next connection.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A current access token (a [`Password`]: never shown by `Debug`, wiped
    /// when dropped). The error says why there is none; it is shown to the
    /// user as it is, so it must not contain a token.
    fn token(&self) -> TokenFuture<'_>;
}

/// The longest challenge text looked at; the rest is ignored.
const MAX_CHALLENGE: usize = 8 * 1024;

/// The longest description of the server's error shown to the user.
const MAX_SHOWN: usize = 300;

/// The two OAuth 2.0 SASL mechanisms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mechanism {
    /// RFC 7628.
    OAuthBearer,
    /// Google's (and Microsoft's) predecessor of OAUTHBEARER.
    XOAuth2,
}

impl Mechanism {
    /// OAUTHBEARER where advertised, else XOAUTH2, else none.
    pub(crate) fn choose(caps: &Capabilities) -> Option<Mechanism> {
        if caps.has("AUTH=OAUTHBEARER") {
            Some(Mechanism::OAuthBearer)
        } else if caps.has("AUTH=XOAUTH2") {
            Some(Mechanism::XOAuth2)
        } else {
            None
        }
    }

    /// The SASL name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mechanism::OAuthBearer => "OAUTHBEARER",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }

    /// The client's first (and only) message, before base64.
    pub(crate) fn initial_response(
        self,
        user: &str,
        host: &str,
        port: u16,
        token: &str,
    ) -> Zeroizing<Vec<u8>> {
        let text = match self {
            // gs2-header "n,a=<saslname>," then kvpairs, each ended by ^A.
            Mechanism::OAuthBearer => format!(
                "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01",
                sasl_name(user)
            ),
            Mechanism::XOAuth2 => format!("user={user}\x01auth=Bearer {token}\x01\x01"),
        };
        Zeroizing::new(text.into_bytes())
    }

    /// The answer to the server's error challenge, with its line end.
    pub(crate) fn error_answer(self) -> &'static [u8] {
        match self {
            // base64 of %x01.
            Mechanism::OAuthBearer => b"AQ==\r\n",
            Mechanism::XOAuth2 => b"\r\n",
        }
    }
}

/// RFC 5801 saslname: `,` and `=` escaped.
fn sasl_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// Refuses what cannot go into a SASL message: a token that is empty or has
/// spaces or control characters (not a bearer token: RFC 6750 `b64token`),
/// a login with control characters.
pub(crate) fn check(user: &str, token: &str) -> Result<(), ImapError> {
    if token.is_empty() {
        return Err(ImapError::TokenUnavailable {
            reason: "the token command printed an empty first line".into(),
        });
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ImapError::TokenUnavailable {
            reason: "the first line the token command printed is not an access token (it has spaces, control or non-ASCII characters)".into(),
        });
    }
    if user.chars().any(char::is_control) {
        return Err(ImapError::InvalidArgument(
            "the login has control characters".into(),
        ));
    }
    Ok(())
}

/// What the server's error challenge says, for the user: the fields of its
/// JSON (`status=invalid_token, scope=...`), else its decoded text, else
/// the challenge itself; control characters dropped, at most
/// [`MAX_SHOWN`] characters. `None` for an empty challenge.
pub(crate) fn describe_challenge(challenge: &str) -> Option<String> {
    let raw: String = challenge.trim().chars().take(MAX_CHALLENGE).collect();
    if raw.is_empty() {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw.as_bytes())
        .ok();
    let shown = match decoded.as_deref().map(serde_json::from_slice) {
        // `status` first: it says what went wrong.
        Some(Ok(serde_json::Value::Object(fields))) => fields
            .iter()
            .filter(|(k, _)| *k == "status")
            .chain(fields.iter().filter(|(k, _)| *k != "status"))
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => match &decoded {
            Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            None => raw,
        },
    };
    let clean: String = shown
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_SHOWN)
        .collect();
    (!clean.trim().is_empty()).then_some(clean)
}

/// Logs in with a token from `config.oauth2` (the caller checked it is
/// set). Returns the tagged `OK`; a `NO` is [`ImapError::TokenRejected`]
/// with the server's reason.
pub(crate) async fn login(
    conn: &mut Conn,
    caps: &Capabilities,
    config: &ImapConfig,
    addr: &str,
    on_untagged: &mut (dyn FnMut(&Response<'_>) + Send),
) -> Result<Done, ImapError> {
    // Checked before the token is asked for: no command runs in vain.
    let mech = Mechanism::choose(caps).ok_or_else(|| ImapError::OAuth2Unavailable {
        addr: addr.to_owned(),
        offered: offered(caps),
    })?;
    let tag = conn.tag();
    let mut segments = authenticate_segments(config, mech, &tag, caps.has("SASL-IR")).await?;
    tracing::debug!(tag = %tag, user = %config.user, mechanism = mech.name(), "IMAP command AUTHENTICATE (OAuth 2.0) ***");
    let result = conn
        .authenticate(tag, &segments, mech.error_answer(), on_untagged)
        .await;
    crate::wire::wipe(&mut segments);
    let (done, challenge) = result?;
    outcome(done, challenge, mech, &config.user, addr)
}

/// Asks `config.oauth2` for a token and returns the `AUTHENTICATE`
/// command for `mech` with it, tagged `tag` (see [`segments`]); wipe them
/// with [`wipe`] once sent.
pub(crate) async fn authenticate_segments(
    config: &ImapConfig,
    mech: Mechanism,
    tag: &str,
    sasl_ir: bool,
) -> Result<Vec<Segment>, ImapError> {
    let Some(source) = config.oauth2.as_deref() else {
        return Err(ImapError::InvalidArgument(
            "no OAuth 2.0 token source configured".into(),
        ));
    };
    let token = source
        .token()
        .await
        .map_err(|reason| ImapError::TokenUnavailable { reason })?;
    let user = config.user.as_str();
    check(user, token.expose())?;
    let message = mech.initial_response(user, bare_host(&config.host), config.port, token.expose());
    drop(token);
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*message));
    drop(message);
    Ok(segments(tag, mech.name(), &encoded, sasl_ir))
}

/// The tagged answer to `AUTHENTICATE` as a result: a `NO` is
/// [`ImapError::TokenRejected`] with the server's decoded `challenge`,
/// unless its code says the server is in trouble
/// ([`ImapError::ServerFailure`], worth retrying).
pub(crate) fn outcome(
    done: Done,
    challenge: Option<String>,
    mech: Mechanism,
    user: &str,
    addr: &str,
) -> Result<Done, ImapError> {
    match done.outcome {
        Outcome::Ok => Ok(done),
        // Server trouble (`NO [UNAVAILABLE]`) says nothing about the token.
        Outcome::No if done.is_server_trouble() => {
            Err(done.into_error(format!("AUTHENTICATE {}", mech.name())))
        }
        Outcome::No => Err(ImapError::TokenRejected {
            user: user.to_owned(),
            addr: addr.to_owned(),
            server_text: match challenge.as_deref().and_then(describe_challenge) {
                Some(why) => format!("{} (the server's error: {why})", done.text),
                None => done.text,
            },
        }),
        _ => Err(done.into_error(format!("AUTHENTICATE {}", mech.name()))),
    }
}

/// The `AUTHENTICATE` command with the initial response on its line
/// (SASL-IR, RFC 4959), or after the server's `+`.
pub(crate) fn segments(tag: &str, mech: &str, encoded: &str, sasl_ir: bool) -> Vec<Segment> {
    if sasl_ir {
        vec![Segment {
            bytes: format!("{tag} AUTHENTICATE {mech} {encoded}\r\n").into_bytes(),
            wait_continuation: false,
        }]
    } else {
        vec![
            Segment {
                bytes: format!("{tag} AUTHENTICATE {mech}\r\n").into_bytes(),
                wait_continuation: true,
            },
            Segment {
                bytes: format!("{encoded}\r\n").into_bytes(),
                wait_continuation: false,
            },
        ]
    }
}

/// The server's `AUTH=` mechanisms, for the error message.
fn offered(caps: &Capabilities) -> String {
    let mechs = caps.auth_mechanisms();
    if mechs.is_empty() {
        return "no AUTH= mechanism".into();
    }
    let shown: Vec<String> = mechs
        .iter()
        .take(12)
        .map(|m| {
            let m: String = m.chars().filter(|c| !c.is_control()).take(40).collect();
            format!("AUTH={m}")
        })
        .collect();
    shown.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[&str]) -> Capabilities {
        Capabilities::from_raw(list.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn oauthbearer_is_preferred_then_xoauth2() {
        let both = caps(&["IMAP4rev1", "auth=xoauth2", "AUTH=OAUTHBEARER"]);
        assert_eq!(Mechanism::choose(&both), Some(Mechanism::OAuthBearer));
        let x = caps(&["IMAP4rev1", "AUTH=XOAUTH2", "AUTH=PLAIN"]);
        assert_eq!(Mechanism::choose(&x), Some(Mechanism::XOAuth2));
        let none = caps(&["IMAP4rev1", "AUTH=PLAIN", "AUTH=LOGIN"]);
        assert_eq!(Mechanism::choose(&none), None);
        assert_eq!(offered(&none), "AUTH=PLAIN AUTH=LOGIN");
        assert_eq!(offered(&caps(&["IMAP4rev1"])), "no AUTH= mechanism");
    }

    #[test]
    fn initial_responses_follow_rfc_7628_and_xoauth2() {
        let m = Mechanism::OAuthBearer.initial_response("a,b=c@x", "h.example", 993, "T0k");
        assert_eq!(
            &*m,
            b"n,a=a=2Cb=3Dc@x,\x01host=h.example\x01port=993\x01auth=Bearer T0k\x01\x01"
        );
        let m = Mechanism::XOAuth2.initial_response("u@x", "h", 993, "T0k");
        assert_eq!(&*m, b"user=u@x\x01auth=Bearer T0k\x01\x01");
        assert_eq!(Mechanism::OAuthBearer.error_answer(), b"AQ==\r\n");
        assert_eq!(Mechanism::XOAuth2.error_answer(), b"\r\n");
    }

    #[test]
    fn tokens_that_cannot_be_sent_are_refused_without_showing_them() {
        assert!(check("u", "ya29.a0Af-_~+/=").is_ok());
        for bad in ["", "two words", "tab\there", "nul\0", "\x01", "é"] {
            let e = check("u", bad).expect_err(bad);
            assert_eq!(e.kind(), "token", "{bad:?}");
            if !bad.is_empty() {
                assert!(!e.to_string().contains(bad), "{e}");
            }
        }
        assert_eq!(
            check("u\x01", "t").map_err(|e| e.kind()),
            Err("invalid-argument")
        );
    }

    #[test]
    fn error_challenges_are_decoded_bounded_and_cleaned() {
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let json = br#"{"status":"invalid_token","schemes":"bearer","scope":"mail"}"#;
        assert_eq!(
            describe_challenge(&b64(json)).as_deref(),
            Some("status=invalid_token, schemes=bearer, scope=mail")
        );
        let numbers = br#"{"status":401,"nested":{"a":[1,2]}}"#;
        assert_eq!(
            describe_challenge(&b64(numbers)).as_deref(),
            Some(r#"status=401, nested={"a":[1,2]}"#)
        );
        // Not JSON, not base64, control characters, huge: never a panic.
        assert_eq!(
            describe_challenge(&b64(b"plain\x1b[31m text")).as_deref(),
            Some("plain[31m text")
        );
        assert_eq!(
            describe_challenge("not base64!").as_deref(),
            Some("not base64!")
        );
        assert_eq!(describe_challenge("  "), None);
        assert_eq!(describe_challenge(&b64(b"\x00\x01")), None);
        let huge = b64(&vec![b'x'; 1 << 20]);
        assert!(describe_challenge(&huge).is_some_and(|s| s.chars().count() <= MAX_SHOWN));
        let bad_utf8 = b64(&[0xff, 0xfe, b'{']);
        assert!(describe_challenge(&bad_utf8).is_some());
    }
}

//! OAuth 2.0 login: the SASL exchanges on a scripted server (both
//! mechanisms, with and without SASL-IR, error challenges, hostile
//! answers), and the real thing on Dovecot's OAuth-only profile.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use sma_imap::{
    ImapConfig, ImapError, ImapSession, Password, Security, TokenFuture, TokenSource, Transport,
};
use sma_testrig::Dovecot;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Hands out the tokens in order (the last one again when they run out),
/// counting the calls; an `Err` entry fails the call.
#[derive(Debug)]
struct Tokens {
    list: Vec<Result<String, String>>,
    calls: AtomicUsize,
}

impl Tokens {
    fn new(list: &[Result<&str, &str>]) -> Arc<Tokens> {
        Arc::new(Tokens {
            list: list
                .iter()
                .map(|r| r.map(str::to_owned).map_err(str::to_owned))
                .collect(),
            calls: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl TokenSource for Tokens {
    fn token(&self) -> TokenFuture<'_> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let r = self.list[n.min(self.list.len() - 1)].clone();
        Box::pin(async move { r.map(Password::new) })
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap_or_else(|e| panic!("not base64 {s:?}: {e}"))
}

/// How the scripted server behaves.
#[derive(Clone)]
struct Script {
    caps: &'static str,
    /// The token that logs in; anything else gets the error challenge.
    good: &'static str,
    /// What the server sends as error challenge (base64 text).
    challenge: String,
    /// Send the challenge again after the client's answer.
    challenge_twice: bool,
}

impl Script {
    fn new(caps: &'static str) -> Script {
        Script {
            caps,
            good: "good-token",
            challenge: b64(br#"{"status":"invalid_token","scope":"mail"}"#),
            challenge_twice: false,
        }
    }
}

/// Every line the server received, per connection.
type Log = Arc<Mutex<Vec<Vec<String>>>>;

async fn scripted(script: Script) -> (ImapConfig, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let log: Log = Arc::default();
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let n = {
                let mut g = l.lock().expect("log");
                g.push(Vec::new());
                g.len() - 1
            };
            tokio::spawn(serve(sock, script.clone(), l.clone(), n));
        }
    });
    let mut c = ImapConfig::new("127.0.0.1", Security::Plain, "bob@example.org", "unused");
    c.port = port;
    (c, log)
}

/// Whether the SASL message carries the good token.
fn carries(message: &[u8], token: &str) -> bool {
    let text = String::from_utf8_lossy(message);
    text.contains(&format!("auth=Bearer {token}\x01\x01"))
}

async fn serve(sock: tokio::net::TcpStream, s: Script, log: Log, n: usize) {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    let greeting = format!("* OK [CAPABILITY IMAP4rev1 {}] scripted\r\n", s.caps);
    if w.write_all(greeting.as_bytes()).await.is_err() {
        return;
    }
    let mut line = String::new();
    while {
        line.clear();
        r.read_line(&mut line).await.unwrap_or(0) > 0
    } {
        let body = line.trim_end().to_owned();
        log.lock().expect("log")[n].push(body.clone());
        let mut words = body.split(' ');
        let (tag, cmd) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let reply = match cmd.to_ascii_uppercase().as_str() {
            "AUTHENTICATE" => {
                let ir = match words.nth(1) {
                    Some(ir) => ir.to_owned(),
                    None => {
                        let _ = w.write_all(b"+ \r\n").await;
                        let mut next = String::new();
                        let _ = r.read_line(&mut next).await;
                        log.lock().expect("log")[n].push(next.trim_end().to_owned());
                        next
                    }
                };
                if carries(&unb64(&ir), s.good) {
                    format!("{tag} OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n")
                } else {
                    let rounds = if s.challenge_twice { 2 } else { 1 };
                    for _ in 0..rounds {
                        let _ = w
                            .write_all(format!("+ {}\r\n", s.challenge).as_bytes())
                            .await;
                        let mut answer = String::new();
                        let _ = r.read_line(&mut answer).await;
                        log.lock().expect("log")[n].push(format!("answer:{answer:?}"));
                    }
                    format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
                }
            }
            "CAPABILITY" => format!("* CAPABILITY IMAP4rev1 {}\r\n{tag} OK done\r\n", s.caps),
            "LOGOUT" => format!("* BYE bye\r\n{tag} OK done\r\n"),
            _ => format!("{tag} OK done\r\n"),
        };
        if w.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn lines(log: &Log, conn: usize) -> Vec<String> {
    log.lock().expect("log")[conn].clone()
}

#[tokio::test]
async fn oauthbearer_with_sasl_ir_then_a_fresh_token_per_connection() {
    let (c, log) = scripted(Script::new("SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER")).await;
    let tokens = Tokens::new(&[Ok("good-token")]);
    let c = c.with_oauth2(tokens.clone());
    let mut t = ImapSession::connect(&c).await.expect("login");
    t.noop().await.expect("usable");
    let first = lines(&log, 0);
    let auth = first
        .iter()
        .find(|l| l.contains("AUTHENTICATE"))
        .expect("auth line");
    let ir = auth.split(' ').nth(3).expect("initial response");
    let port = c.port;
    assert_eq!(
        unb64(ir),
        format!("n,a=bob@example.org,\x01host=127.0.0.1\x01port={port}\x01auth=Bearer good-token\x01\x01")
            .into_bytes()
    );
    assert!(auth.starts_with("S1 AUTHENTICATE OAUTHBEARER "), "{auth}");
    let _again = ImapSession::connect(&c).await.expect("second login");
    assert_eq!(tokens.calls(), 2, "one token per connection");
}

#[tokio::test]
async fn xoauth2_without_sasl_ir_sends_the_response_after_the_continuation() {
    let (c, log) = scripted(Script::new("AUTH=PLAIN AUTH=XOAUTH2")).await;
    let c = c.with_oauth2(Tokens::new(&[Ok("good-token")]));
    ImapSession::connect(&c).await.expect("login");
    let l = lines(&log, 0);
    let at = l
        .iter()
        .position(|x| x == "S1 AUTHENTICATE XOAUTH2")
        .unwrap_or_else(|| panic!("{l:?}"));
    assert_eq!(
        unb64(&l[at + 1]),
        b"user=bob@example.org\x01auth=Bearer good-token\x01\x01"
    );
}

#[tokio::test]
async fn a_rejected_token_answers_the_challenge_and_reports_the_decoded_reason() {
    for (caps, answer) in [
        ("SASL-IR AUTH=OAUTHBEARER", "\"AQ==\\r\\n\""),
        ("AUTH=OAUTHBEARER", "\"AQ==\\r\\n\""),
        ("SASL-IR AUTH=XOAUTH2", "\"\\r\\n\""),
    ] {
        let (c, log) = scripted(Script::new(caps)).await;
        let c = c.with_oauth2(Tokens::new(&[Ok("stale-token")]));
        let e = ImapSession::connect(&c).await.expect_err("rejected");
        assert!(
            matches!(e, ImapError::TokenRejected { .. }),
            "{caps}: {e:?}"
        );
        assert_eq!((e.kind(), e.exit_code()), ("auth", 3));
        let msg = e.to_string();
        assert!(
            msg.contains("[AUTHENTICATIONFAILED] Authentication failed. (the server's error: status=invalid_token, scope=mail)"),
            "{msg}"
        );
        assert!(!msg.contains("stale-token"), "{msg}");
        let l = lines(&log, 0);
        assert!(l.contains(&format!("answer:{answer}")), "{caps}: {l:?}");
    }
}

#[tokio::test]
async fn no_oauth_mechanism_fails_before_the_token_is_asked_for() {
    let (c, log) = scripted(Script::new("SASL-IR AUTH=PLAIN")).await;
    let tokens = Tokens::new(&[Ok("good-token")]);
    let c = c.with_oauth2(tokens.clone());
    let e = ImapSession::connect(&c).await.expect_err("no mechanism");
    assert!(matches!(e, ImapError::OAuth2Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("it offers AUTH=PLAIN"), "{e}");
    assert_eq!(e.exit_code(), 1);
    assert_eq!(tokens.calls(), 0);
    assert!(
        !lines(&log, 0)
            .iter()
            .any(|l| l.contains("AUTHENTICATE") || l.contains("LOGIN")),
        "no password login either"
    );
}

#[tokio::test]
async fn token_source_failures_and_unusable_tokens_send_nothing() {
    for (token, want) in [
        (
            Err("the command exited with status 1"),
            "exited with status 1",
        ),
        (Ok(""), "empty first line"),
        (Ok("two words"), "not an access token"),
    ] {
        let (c, log) = scripted(Script::new("SASL-IR AUTH=OAUTHBEARER")).await;
        let c = c.with_oauth2(Tokens::new(&[token]));
        let e = ImapSession::connect(&c).await.expect_err("no token");
        assert!(matches!(e, ImapError::TokenUnavailable { .. }), "{e:?}");
        assert!(e.to_string().contains(want), "{e}");
        assert!(e.is_retryable() && !e.is_auth());
        assert!(!lines(&log, 0).iter().any(|l| l.contains("AUTHENTICATE")));
    }
}

#[tokio::test]
async fn hostile_challenges_end_in_errors_not_hangs_or_panics() {
    // A second challenge after the answer: the connection is given up.
    let mut s = Script::new("SASL-IR AUTH=OAUTHBEARER");
    s.challenge_twice = true;
    let (c, _) = scripted(s).await;
    let c = c.with_oauth2(Tokens::new(&[Ok("bad")]));
    let e = ImapSession::connect(&c)
        .await
        .expect_err("second challenge");
    assert!(matches!(e, ImapError::Protocol(_)), "{e:?}");
    // Garbage, escape sequences, a huge challenge: a bounded, clean reason.
    for challenge in [
        "!!not base64!!".to_owned(),
        b64(b"\x1b[2J{\"status\":\"x\x07\"}"),
        b64(format!("{{\"status\":\"{}\"}}", "y".repeat(200_000)).as_bytes()),
    ] {
        let mut s = Script::new("SASL-IR AUTH=OAUTHBEARER");
        s.challenge = challenge;
        let (c, _) = scripted(s).await;
        let c = c.with_oauth2(Tokens::new(&[Ok("bad")]));
        let e = ImapSession::connect(&c).await.expect_err("rejected");
        let ImapError::TokenRejected { server_text, .. } = &e else {
            panic!("{e:?}");
        };
        assert!(server_text.len() < 1000, "{}", server_text.len());
        assert!(
            !server_text.chars().any(char::is_control),
            "{server_text:?}"
        );
    }
}

// --------------------------------------------------------------- Dovecot ---

fn oauth_server() -> &'static Dovecot {
    static SERVER: std::sync::OnceLock<Dovecot> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| Dovecot::start_profile(4, "oauth2"))
}

fn dovecot_config(i: usize, security: Security, tokens: Arc<Tokens>) -> ImapConfig {
    let d = oauth_server();
    let mut c = common::config(d, i, security);
    c.password = Password::default();
    c.with_oauth2(tokens)
}

#[tokio::test]
async fn dovecot_accepts_a_valid_token_over_tls_and_starttls() {
    let d = oauth_server();
    for (i, security) in [(0, Security::Tls), (1, Security::StartTls)] {
        let tokens = Tokens::new(&[Ok(&d.oauth2_token(i, 600))]);
        let c = dovecot_config(i, security, tokens.clone());
        let mut t = ImapSession::connect(&c)
            .await
            .unwrap_or_else(|e| panic!("{security}: {e}\n{}", d.log()));
        assert!(t.capabilities().has("IDLE"), "post-login capabilities");
        t.create("OAuthed").await.expect("usable session");
        assert_eq!(tokens.calls(), 1);
    }
}

#[tokio::test]
async fn dovecot_rejects_expired_and_forged_tokens_with_its_reason() {
    let d = oauth_server();
    let forged = sma_testrig::oauth2::mint_jwt(
        b"some other key",
        &d.account(2).user,
        sma_testrig::oauth2::unix_now() + 600,
    );
    for token in [d.oauth2_token(2, -120), forged] {
        let c = dovecot_config(2, Security::Tls, Tokens::new(&[Ok(&token)]));
        let e = ImapSession::connect(&c).await.expect_err("rejected");
        assert!(matches!(e, ImapError::TokenRejected { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("[AUTHENTICATIONFAILED]"), "{msg}");
        assert!(msg.contains("status=invalid_token"), "{msg}");
        assert!(!msg.contains(&token), "{msg}");
    }
}

#[tokio::test]
async fn every_connection_asks_for_a_new_token() {
    let d = oauth_server();
    // A valid token, then an expired one: only a second connection that
    // really asked again is refused.
    let tokens = Tokens::new(&[Ok(&d.oauth2_token(3, 600)), Ok(&d.oauth2_token(3, -60))]);
    let c = dovecot_config(3, Security::Tls, tokens.clone());
    let mut t = ImapSession::connect(&c).await.expect("first");
    t.noop().await.expect("usable");
    let mut backoff = sma_imap::Backoff::default();
    let e = sma_imap::connect_with_retry(&c, &mut backoff, 3, |_, _, _| {})
        .await
        .expect_err("the second token has expired");
    assert!(e.is_auth(), "{e:?}");
    assert_eq!(tokens.calls(), 2, "a rejected token is not retried");
}

/// With a hint from a first session, the OAuth 2.0 login goes before the
/// greeting; a rejected token is still `TokenRejected`, from the usual
/// login that follows (which asks for a token again).
#[tokio::test]
async fn dovecot_takes_an_oauth2_login_before_the_greeting() {
    let d = oauth_server();
    let token = d.oauth2_token(1, 600);
    let tokens = Tokens::new(&[Ok(&token)]);
    let mut c = dovecot_config(1, Security::Tls, tokens.clone());
    let first = ImapSession::connect(&c).await.expect("first");
    assert_eq!(first.early_login(), sma_imap::EarlyLogin::NotTried);
    c.login_hint = Some(first.pre_login_capabilities().to_vec());
    let mut t = ImapSession::connect(&c)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(t.early_login(), sma_imap::EarlyLogin::Used);
    assert_eq!(tokens.calls(), 2);
    t.noop().await.expect("usable");

    let expired = Tokens::new(&[Ok(&d.oauth2_token(1, -60))]);
    let mut c = dovecot_config(1, Security::Tls, expired.clone());
    c.login_hint = Some(first.pre_login_capabilities().to_vec());
    let e = ImapSession::connect(&c).await.expect_err("expired");
    assert!(matches!(e, ImapError::TokenRejected { .. }), "{e:?}");
    assert_eq!(expired.calls(), 2, "the early login, then the usual one");
}

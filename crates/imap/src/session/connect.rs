//! Opening a session: the TCP connection (loopback-only plain IMAP unless
//! allowed), the greeting, STARTTLS and the login (password or OAuth 2.0).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::net::TcpStream;

use crate::config::{bare_host, is_loopback_ip, ImapConfig, Security};
use crate::conn::Conn;
use crate::error::ImapError;
use crate::io::NetStream;
use crate::response::{Code, Greeting};
use crate::tls;
use crate::types::Capabilities;
use crate::wire::{Command, Segment};

/// Time allowed for name resolution plus TCP connect, and for the TLS
/// handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Refuses plain IMAP to a host that is not loopback (unless allowed)
/// before any network activity, connects, and does the TLS handshake of
/// [`Security::Tls`].
pub(super) async fn open_stream(
    config: &ImapConfig,
    addr: &str,
) -> Result<(NetStream, SocketAddr), ImapError> {
    let plain_guard = config.security == Security::Plain && !config.allow_insecure;
    if plain_guard && !config.is_loopback_host() {
        return Err(ImapError::InsecureRefused {
            host: config.host.clone(),
        });
    }
    let (tcp, peer) = tcp_connect(config, addr, plain_guard).await?;
    let stream = match config.security {
        Security::Tls => NetStream::Tls(Box::new(
            tls::handshake(
                tcp,
                &config.host,
                addr,
                config.ca_file.as_deref(),
                CONNECT_TIMEOUT,
            )
            .await?,
        )),
        Security::StartTls | Security::Plain => NetStream::Plain(tcp),
    };
    Ok((stream, peer))
}

/// What the server said when the connection opened.
pub(super) struct Greeted {
    /// `OK` or `PREAUTH`.
    pub(super) status: Greeting,
    /// The capabilities (from the greeting, else asked for).
    pub(super) caps: Capabilities,
    /// The greeting's text.
    pub(super) text: String,
}

/// Reads the greeting: `OK`, or `PREAUTH` unless STARTTLS is required
/// (a pre-authenticated session could never be upgraded); then the
/// capabilities.
pub(super) async fn greet(
    conn: &mut Conn,
    config: &ImapConfig,
    addr: &str,
) -> Result<Greeted, ImapError> {
    let (status, greeting_caps, text) = conn.read_greeting().await?;
    match status {
        Greeting::Ok => {}
        Greeting::PreAuth if config.security != Security::StartTls => {}
        Greeting::PreAuth => {
            return Err(ImapError::StartTlsUnavailable {
                addr: addr.to_owned(),
            })
        }
        _ => {
            return Err(ImapError::ConnectionLost(format!(
                "the server at {addr} refused the connection: {text}"
            )))
        }
    }
    let caps = match greeting_caps {
        Some(raw) => Capabilities::from_raw(raw),
        None => read_capabilities(conn).await?,
    };
    conn.literal_plus = caps.literal_plus;
    Ok(Greeted { status, caps, text })
}

/// `STARTTLS` and the TLS handshake: the returned connection is encrypted.
/// Fails if the server does not offer or refuses STARTTLS (never
/// downgrades).
pub(super) async fn start_tls(
    mut conn: Conn,
    caps: &Capabilities,
    config: &ImapConfig,
    addr: &str,
) -> Result<Conn, ImapError> {
    if !caps.has("STARTTLS") {
        return Err(ImapError::StartTlsUnavailable {
            addr: addr.to_owned(),
        });
    }
    let done = conn.run_simple(&Command::new("STARTTLS")).await?;
    if !done.is_ok() {
        return Err(ImapError::Tls {
            addr: addr.to_owned(),
            reason: format!(
                "the server refused STARTTLS: {} — try --security tls",
                done.text
            ),
        });
    }
    // Anything the server sent after its OK is dropped with the
    // plain-text buffers (no STARTTLS response injection).
    let (plain, next_tag, sent) = conn.into_parts();
    let NetStream::Plain(tcp) = plain else {
        return Err(ImapError::Protocol(
            "STARTTLS on an encrypted stream".into(),
        ));
    };
    let tls_stream = tls::handshake(
        tcp,
        &config.host,
        addr,
        config.ca_file.as_deref(),
        CONNECT_TIMEOUT,
    )
    .await?;
    Ok(Conn::new(
        NetStream::Tls(Box::new(tls_stream)),
        next_tag,
        sent,
    ))
}

/// Logs in and returns the capabilities of the logged-in session (from the
/// login's answer, else asked for).
pub(super) async fn authenticate(
    conn: &mut Conn,
    caps: &Capabilities,
    config: &ImapConfig,
    addr: &str,
) -> Result<Capabilities, ImapError> {
    let caps = match login(conn, caps, config, addr).await? {
        Some(raw) => Capabilities::from_raw(raw),
        None => read_capabilities(conn).await?,
    };
    conn.literal_plus = caps.literal_plus;
    Ok(caps)
}

/// Resolves the host and connects (10 s in all). With `loopback_only`,
/// only loopback addresses are used (a plain connection without
/// `allow_insecure`).
async fn tcp_connect(
    config: &ImapConfig,
    addr: &str,
    loopback_only: bool,
) -> Result<(TcpStream, SocketAddr), ImapError> {
    let unreachable = |source: std::io::Error| ImapError::Unreachable {
        addr: addr.to_owned(),
        source,
    };
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let host = bare_host(&config.host);
    let resolved = tokio::time::timeout_at(
        deadline.into(),
        tokio::net::lookup_host((host, config.port)),
    )
    .await
    .map_err(|_| {
        unreachable(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "name resolution timed out",
        ))
    })?
    .map_err(|e| {
        unreachable(std::io::Error::new(
            e.kind(),
            format!("cannot resolve {host:?}: {e}"),
        ))
    })?;
    let mut candidates: Vec<SocketAddr> = resolved.collect();
    if loopback_only {
        candidates.retain(|a| is_loopback_ip(a.ip()));
        if candidates.is_empty() {
            return Err(ImapError::InsecureRefused {
                host: config.host.clone(),
            });
        }
    }
    let mut last_err = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{host:?} has no address"),
    );
    for candidate in candidates {
        match tokio::time::timeout_at(deadline.into(), TcpStream::connect(candidate)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                return Ok((tcp, candidate));
            }
            Ok(Err(e)) => last_err = e,
            Err(_) => {
                last_err = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                );
                break;
            }
        }
    }
    Err(unreachable(last_err))
}

/// `CAPABILITY`.
pub(crate) async fn read_capabilities(conn: &mut Conn) -> Result<Capabilities, ImapError> {
    let mut raw: Vec<String> = Vec::new();
    let done = conn
        .run(&Command::new("CAPABILITY"), &mut |r| {
            if let async_imap::imap_proto::Response::Capabilities(c) = r {
                raw.extend(crate::response::cap_strings(c));
            }
        })
        .await?;
    if !done.is_ok() {
        return Err(done.into_error("CAPABILITY".into()));
    }
    Ok(Capabilities::from_raw(raw))
}

/// Logs in; returns the capabilities if the server put them in its OK.
async fn login(
    conn: &mut Conn,
    caps: &Capabilities,
    config: &ImapConfig,
    addr: &str,
) -> Result<Option<Vec<String>>, ImapError> {
    // Some servers send the new capabilities untagged before the OK.
    let mut untagged_caps: Vec<String> = Vec::new();
    let mut collect = |r: &async_imap::imap_proto::Response<'_>| {
        if let async_imap::imap_proto::Response::Capabilities(c) = r {
            untagged_caps.extend(crate::response::cap_strings(c));
        }
    };
    let done = if config.oauth2.is_some() {
        crate::oauth2::login(conn, caps, config, addr, &mut collect).await?
    } else {
        password_login(conn, caps, config, addr, &mut collect).await?
    };
    Ok(match done.code {
        Some(Code::Capabilities(raw)) => Some(raw),
        _ if !untagged_caps.is_empty() => Some(untagged_caps),
        _ => None,
    })
}

/// `AUTHENTICATE PLAIN` when advertised, else `LOGIN`; returns the tagged
/// `OK`.
async fn password_login(
    conn: &mut Conn,
    caps: &Capabilities,
    config: &ImapConfig,
    addr: &str,
    collect: &mut (dyn FnMut(&async_imap::imap_proto::Response<'_>) + Send),
) -> Result<crate::response::Done, ImapError> {
    let user = config.user.as_str();
    let password = config.password.expose();
    let (done, label) = if caps.has("AUTH=PLAIN") {
        let tag = conn.tag();
        let mut segments = plain_segments(&tag, user, password, caps.has("SASL-IR"));
        tracing::debug!(tag = %tag, user = %user, "IMAP command AUTHENTICATE PLAIN ***");
        // A challenge after the credentials is answered with `*` (cancel).
        let done = conn.authenticate(tag, &segments, b"*\r\n", collect).await;
        crate::wire::wipe(&mut segments);
        (done?.0, "AUTHENTICATE PLAIN")
    } else if caps.has("LOGINDISABLED") {
        return Err(ImapError::No {
            command: "LOGIN".into(),
            text: "the server does not allow logging in on this connection (LOGINDISABLED) — use --security tls or starttls".into(),
        });
    } else {
        let cmd = Command::new("LOGIN").string(user).secret(password);
        (conn.run(&cmd, collect).await?, "LOGIN")
    };
    if done.is_ok() {
        return Ok(done);
    }
    match done.outcome {
        // `NO [UNAVAILABLE]` (Dovecot while its authentication process
        // starts or stops) says nothing about the password: retry later.
        crate::response::Outcome::No if done.is_server_trouble() => {
            Err(done.into_error(label.to_owned()))
        }
        crate::response::Outcome::No => Err(ImapError::AuthRejected {
            user: user.to_owned(),
            addr: addr.to_owned(),
            server_text: done.text,
        }),
        _ => Err(done.into_error(label.to_owned())),
    }
}

/// `AUTHENTICATE PLAIN` tagged `tag` with the initial response on its line
/// (SASL-IR, RFC 4959), or after the server's `+`. Every copy of the
/// credentials made here is wiped; wipe the segments once sent.
pub(crate) fn plain_segments(tag: &str, user: &str, password: &str, sasl_ir: bool) -> Vec<Segment> {
    let mut token = zeroize::Zeroizing::new(Vec::with_capacity(user.len() + password.len() + 2));
    token.push(0);
    token.extend_from_slice(user.as_bytes());
    token.push(0);
    token.extend_from_slice(password.as_bytes());
    let encoded =
        zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*token));
    crate::oauth2::segments(tag, "PLAIN", &encoded, sasl_ir)
}

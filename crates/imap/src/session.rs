//! Connecting and logging in: [`ImapSession::connect`].

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{ImapConfig, Security};
use crate::conn::Conn;
use crate::error::ImapError;
use crate::response::Greeting;
use crate::types::Capabilities;
use crate::wire::Command;

mod connect;
pub use connect::CONNECT_TIMEOUT;
use connect::{authenticate, greet, open_stream, start_tls};
pub(crate) use connect::{plain_segments, read_capabilities};

/// How often [`crate::Transport::idle`] polls with NOOP when the server has
/// no IDLE.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(3);

/// The longest single IDLE command; it is re-issued after this (servers
/// may drop IDLE connections after 30 minutes, RFC 2177 says re-issue
/// within 29).
pub const MAX_IDLE: Duration = Duration::from_secs(25 * 60);

/// The folder selected last.
#[derive(Debug, Clone)]
pub(crate) struct Selected {
    pub(crate) name: String,
    pub(crate) read_only: bool,
    /// RFC822.SIZE of messages seen by a header FETCH since the folder was
    /// selected. A message never changes (RFC 3501 2.3.1.1), and a UID
    /// names one message for as long as the folder stays selected, so
    /// [`crate::Transport::fetch_messages`] need not ask again: one round
    /// trip less for every message fetched after its header.
    pub(crate) sizes: std::collections::BTreeMap<crate::types::Uid, u32>,
    /// Whole bodies that came with the headers (see
    /// [`crate::Transport::open_and_fetch_headers`]), handed out once by
    /// [`crate::Transport::fetch_messages`].
    pub(crate) bodies: std::collections::BTreeMap<crate::types::Uid, Vec<u8>>,
}

/// Whether a session logged in without waiting for the greeting (see
/// [`ImapConfig::login_hint`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlyLogin {
    /// No hint, or one that does not allow it: the greeting was awaited.
    NotTried,
    /// The login was sent before the greeting and succeeded.
    Used,
    /// The login sent before the greeting did not succeed (the hint was
    /// stale, the server refused, the connection broke); the session
    /// logged in the usual way on a second connection.
    FellBack,
    /// The login sent before the greeting succeeded, but the commands sent
    /// behind it were lost (the server answered the login twice: Cyrus 3.6
    /// when they share the login's packet); the session logged in early
    /// once more on a second connection, and sends commands only after the
    /// login's answer (see [`crate::Transport::commands_behind_login_lost`]);
    /// or a server refused them ahead of the login's answer (Stalwart) and
    /// they were sent again after it on the same connection.
    FlightLost,
}

/// A logged-in IMAP session over TCP or TLS; implements
/// [`crate::Transport`].
///
/// It is `Send` (not `Sync`); use it from one task at a time.
pub struct ImapSession {
    pub(crate) conn: Conn,
    pub(crate) caps: Capabilities,
    pub(crate) selected: Option<Selected>,
    pub(crate) poll_interval: Duration,
    pub(crate) idle_recheck: Option<Duration>,
    /// The server answered IDLE with NO/BAD once: poll from now on.
    pub(crate) idle_refused: bool,
    addr: String,
    peer: SocketAddr,
    greeting: String,
    /// The capabilities the server advertised before login.
    pre_login: Vec<String>,
    /// Whether the login was sent before the greeting.
    early: EarlyLogin,
    user: String,
    security: Security,
    /// How this session was made, for [`Transport::reconnect`].
    pub(crate) config: ImapConfig,
    /// A login sent before the greeting whose answer has not been read
    /// yet (see [`ImapSession::settle`]).
    pub(crate) deferred: Option<crate::early::Pending>,
    /// The folder listing asked for with the next open, or taken with it
    /// (see [`crate::Transport::list_with_next_open`]).
    pub(crate) listing: crate::listing::FolderListing,
    /// A `CREATE` to send with the next open, or one that succeeded there
    /// (see [`crate::Transport::create_with_next_open`]).
    pub(crate) create_rider: crate::listing::CreateRider,
}

impl std::fmt::Debug for ImapSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSession")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("security", &self.security)
            .field("selected", &self.selected)
            .finish_non_exhaustive()
    }
}

impl ImapSession {
    /// Connects, secures the connection as configured, logs in and reads
    /// the capabilities.
    ///
    /// * [`Security::Plain`] to a host that is not loopback fails with
    ///   [`ImapError::InsecureRefused`] before any network activity unless
    ///   `allow_insecure` is set.
    /// * [`Security::StartTls`] fails with [`ImapError::StartTlsUnavailable`]
    ///   if the server does not offer STARTTLS.
    /// * Login uses `AUTHENTICATE PLAIN` when `AUTH=PLAIN` is advertised,
    ///   else `LOGIN`; a `NO` gives [`ImapError::AuthRejected`].
    /// * With [`ImapConfig::oauth2`], login asks the token source for a
    ///   token and uses `AUTHENTICATE OAUTHBEARER` where advertised, else
    ///   `XOAUTH2` (neither: [`ImapError::OAuth2Unavailable`], before the
    ///   token is asked for); a `NO` gives [`ImapError::TokenRejected`] with
    ///   the server's decoded error, a failed token source
    ///   [`ImapError::TokenUnavailable`].
    /// * With a [`ImapConfig::login_hint`] that allows it, the login is
    ///   sent before the greeting has arrived; if that does not succeed,
    ///   the session logs in once more the usual way, on a fresh
    ///   connection, and that login's result is returned
    ///   ([`ImapSession::early_login`] tells which it was).
    pub async fn connect(config: &ImapConfig) -> Result<ImapSession, ImapError> {
        let addr = config.addr();
        let Some(mech) = crate::early::plan(config) else {
            return Self::connect_greeted(config, addr, EarlyLogin::NotTried).await;
        };
        let (stream, peer) = open_stream(config, &addr).await?;
        if let Some(hint) = config.caps_hint.as_ref().filter(|h| !h.is_empty()) {
            let mut conn = Conn::new(stream, 0, 0);
            return match crate::early::send(&mut conn, config, mech).await {
                Ok(pending) => {
                    let caps = Capabilities::from_raw(hint.clone());
                    conn.literal_plus = caps.literal_plus;
                    let pre_login = config.login_hint.clone().unwrap_or_default();
                    let mut s = Self::new(config, addr, peer, conn, caps, String::new())
                        .with_login(pre_login, EarlyLogin::Used);
                    s.deferred = Some(pending);
                    Ok(s)
                }
                Err(e) => Self::after_early_failure(config, addr, e).await,
            };
        }
        match crate::early::login(stream, config, mech).await {
            Ok(done) => {
                let a = done.answer;
                Ok(Self::new(config, addr, peer, done.conn, a.caps, a.greeting)
                    .with_login(a.pre_login, EarlyLogin::Used))
            }
            Err(e) => Self::after_early_failure(config, addr, e).await,
        }
    }

    /// What follows an early login that failed with `e`: `e` itself if it
    /// is final, else a login the usual way on a fresh connection.
    async fn after_early_failure(
        config: &ImapConfig,
        addr: String,
        e: ImapError,
    ) -> Result<ImapSession, ImapError> {
        if crate::early::is_final(&e) {
            return Err(e);
        }
        tracing::debug!(addr = %addr, error = %e, "IMAP login before the greeting failed; logging in again the usual way");
        // A connection that broke on the way says nothing about the
        // server: only a refusal turns early logins off.
        let early = if crate::early::server_declined(&e) {
            EarlyLogin::FellBack
        } else {
            EarlyLogin::NotTried
        };
        Self::connect_greeted(config, addr, early).await
    }

    /// Reads the answer to a login sent before the greeting, if it is still
    /// outstanding: [`ImapSession::connect`] with a
    /// [`ImapConfig::caps_hint`] returns before it, so that the first
    /// commands can go out in the same flight
    /// ([`crate::Transport::open_and_fetch_headers`] does). Every other
    /// command settles the login first; call this to see the login's
    /// outcome before any command (the greeting, the capabilities before
    /// login and [`ImapSession::early_login`] are the hint's until then). A
    /// login that failed is made again the usual way, as in
    /// [`ImapSession::connect`].
    pub async fn settle(&mut self) -> Result<(), ImapError> {
        let Some(pending) = self.deferred.take() else {
            return Ok(());
        };
        match crate::early::finish(&mut self.conn, &self.config, pending).await {
            Ok(answer) => {
                self.take_answer(answer);
                Ok(())
            }
            Err(e) => self.fall_back(e).await,
        }
    }

    /// Sends `cmds` (built on the capabilities the session has, the hint's)
    /// in one flight behind the login whose answer is outstanding, reads
    /// that answer, then the flight's (untagged ones to `on_untagged`, as
    /// [`Conn::run_many`] does). `None` when no login was outstanding, or
    /// when the flight cannot count: the login failed and was made again
    /// the usual way, or its answer showed other capabilities than those
    /// the flight was built on (its answers are then read and dropped).
    /// The session is logged in either way, and on `None` the caller
    /// builds the flight anew and sends it the usual way.
    pub(crate) async fn flight_behind_login(
        &mut self,
        cmds: &[&Command<'_>],
        limits: crate::limits::Limits,
        on_untagged: &mut (dyn FnMut(usize, &async_imap::imap_proto::Response<'_>) + Send),
    ) -> Result<Option<Vec<crate::response::Done>>, ImapError> {
        let Some(pending) = self.deferred.take() else {
            return Ok(None);
        };
        let watch = crate::response::Watch::Normal;
        let sent = match self.conn.send_behind(cmds, watch, limits).await {
            Ok(sent) => sent,
            Err(e) => {
                self.fall_back(e).await?;
                return Ok(None);
            }
        };
        let answer = match crate::early::finish(&mut self.conn, &self.config, pending).await {
            Ok(answer) => answer,
            Err(e) => {
                self.fall_back(e).await?;
                return Ok(None);
            }
        };
        let as_hinted = self.take_answer(answer);
        if !self.conn.answered_early.is_empty() {
            // Answered before the login's own answer: refused as sent
            // before the login, whatever the hint said (Stalwart). Read
            // what is left of it; the caller sends it again.
            tracing::debug!(
                "IMAP commands behind the login were answered before it; sent again after it"
            );
            self.conn.read_behind(sent, &mut |_, _| {}).await?;
            self.selected = None;
            if self.early == EarlyLogin::Used {
                // The device sends no more commands behind its login.
                self.early = EarlyLogin::FlightLost;
            }
            return Ok(None);
        }
        if as_hinted {
            return match self.conn.read_behind(sent, on_untagged).await {
                Err(ImapError::AnsweredTwice { before }) => {
                    tracing::debug!(addr = %self.addr, %before, "IMAP commands behind the login were lost; logging in again, commands after the login's answer");
                    self.log_in_again_without_flight().await?;
                    Ok(None)
                }
                other => other.map(Some),
            };
        }
        tracing::debug!("IMAP capabilities after login differ from the hint; the flight sent behind the login is done again");
        self.conn.read_behind(sent, &mut |_, _| {}).await?;
        self.selected = None;
        Ok(None)
    }

    /// Keeps what a login's answer told; whether its capabilities are those
    /// the session was started with (the hint's).
    pub(crate) fn take_answer(&mut self, answer: crate::early::Answered) -> bool {
        let sorted = |raw: &[String]| {
            let mut v: Vec<String> = raw.iter().map(|c| c.to_ascii_uppercase()).collect();
            v.sort_unstable();
            v
        };
        let same = sorted(&answer.caps.raw) == sorted(&self.caps.raw);
        tracing::debug!(addr = %self.addr, user = %self.user, caps = ?answer.caps.raw, as_hinted = same, "IMAP logged in (answer read behind the first flight)");
        self.caps = answer.caps;
        self.pre_login = answer.pre_login;
        self.greeting = answer.greeting;
        same
    }

    /// Replaces this session, whose login sent before the greeting failed
    /// with `e`, by one logged in the usual way (or returns `e` if final).
    pub(crate) async fn fall_back(&mut self, e: ImapError) -> Result<(), ImapError> {
        let mut fresh = Self::after_early_failure(&self.config, self.addr.clone(), e).await?;
        fresh.poll_interval = self.poll_interval;
        fresh.idle_recheck = self.idle_recheck;
        fresh.idle_refused = self.idle_refused;
        *self = fresh;
        Ok(())
    }

    /// Replaces this session, whose commands sent behind the login were
    /// lost, by one that logs in before the greeting again but sends no
    /// command before the login's answer ([`EarlyLogin::FlightLost`]).
    async fn log_in_again_without_flight(&mut self) -> Result<(), ImapError> {
        let mut config = self.config.clone();
        config.caps_hint = None;
        let mut fresh = Self::connect(&config).await?;
        if fresh.early == EarlyLogin::Used {
            fresh.early = EarlyLogin::FlightLost;
        }
        fresh.poll_interval = self.poll_interval;
        fresh.idle_recheck = self.idle_recheck;
        fresh.idle_refused = self.idle_refused;
        *self = fresh;
        Ok(())
    }

    /// Connects and logs in the usual way: the greeting first.
    async fn connect_greeted(
        config: &ImapConfig,
        addr: String,
        early: EarlyLogin,
    ) -> Result<ImapSession, ImapError> {
        let (stream, peer) = open_stream(config, &addr).await?;
        let mut conn = Conn::new(stream, 0, 0);
        let greeted = greet(&mut conn, config, &addr).await?;
        let mut caps = greeted.caps;
        if config.security == Security::StartTls {
            conn = start_tls(conn, &caps, config, &addr).await?;
            caps = read_capabilities(&mut conn).await?;
            conn.literal_plus = caps.literal_plus;
        }
        let pre_login = caps.raw.clone();
        if greeted.status != Greeting::PreAuth {
            caps = authenticate(&mut conn, &caps, config, &addr).await?;
        }
        Ok(Self::new(config, addr, peer, conn, caps, greeted.text).with_login(pre_login, early))
    }

    /// A logged-in session.
    fn new(
        config: &ImapConfig,
        addr: String,
        peer: SocketAddr,
        conn: Conn,
        caps: Capabilities,
        greeting: String,
    ) -> ImapSession {
        tracing::debug!(addr = %addr, user = %config.user, caps = ?caps.raw, "IMAP logged in");
        ImapSession {
            conn,
            caps,
            selected: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            idle_recheck: None,
            idle_refused: false,
            addr,
            peer,
            greeting,
            pre_login: Vec::new(),
            early: EarlyLogin::NotTried,
            user: config.user.clone(),
            security: config.security,
            config: config.clone(),
            deferred: None,
            listing: Default::default(),
            create_rider: Default::default(),
        }
    }

    /// The session with what is known about its login.
    fn with_login(mut self, pre_login: Vec<String>, early: EarlyLogin) -> ImapSession {
        self.pre_login = pre_login;
        self.early = early;
        self
    }

    /// The capabilities the server advertised before login (after
    /// STARTTLS with [`Security::StartTls`]): what to keep as the
    /// [`ImapConfig::login_hint`] of the next connection. The hint's own
    /// when the server's greeting had none and the login went early.
    pub fn pre_login_capabilities(&self) -> &[String] {
        &self.pre_login
    }

    /// Whether the answer to this session's login is still outstanding
    /// (see [`ImapSession::settle`]).
    pub fn login_pending(&self) -> bool {
        self.deferred.is_some()
    }

    /// Whether this session logged in before the greeting.
    pub fn early_login(&self) -> EarlyLogin {
        self.early
    }

    /// A new session made like this one (same server, login and poll
    /// settings), replacing it; the old connection is dropped.
    pub(crate) async fn replace_with_new(&mut self) -> Result<(), ImapError> {
        let mut fresh = ImapSession::connect(&self.config).await?;
        fresh.poll_interval = self.poll_interval;
        fresh.idle_recheck = self.idle_recheck;
        fresh.idle_refused = self.idle_refused;
        *self = fresh;
        Ok(())
    }

    /// The text of the server's greeting (e.g. `Dovecot (Debian) ready.`).
    pub fn server_greeting(&self) -> &str {
        &self.greeting
    }

    /// `host:port` as configured.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The socket address actually connected to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The login name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The configured security mode.
    pub fn security(&self) -> Security {
        self.security
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    /// The folder selected last (and whether read-only), if any.
    pub fn selected_folder(&self) -> Option<(&str, bool)> {
        self.selected
            .as_ref()
            .map(|s| (s.name.as_str(), s.read_only))
    }

    /// How many IMAP commands this session has sent (login included;
    /// `IDLE` counts once per IDLE command, `DONE` does not count). For
    /// benchmarks of round trips.
    pub fn commands_sent(&self) -> u64 {
        self.conn.commands_sent()
    }

    /// Whether the session is known to be unusable (lost connection,
    /// timeout, or an interrupted send); reconnect if so.
    pub fn is_lost(&self) -> bool {
        self.conn.is_broken()
    }

    /// Time without progress after which a command fails with
    /// [`ImapError::Timeout`] (default 60 s). It is also the base of every
    /// command's total allowance: a command may take this timeout plus the
    /// time its bytes need at the minimum transfer rate
    /// ([`ImapSession::set_min_transfer_rate`]), else it fails with
    /// [`ImapError::TooSlow`]. Large transfers are fine as long as bytes keep
    /// moving fast enough; a server trickling bytes is cut off.
    pub fn set_command_timeout(&mut self, timeout: Duration) {
        self.conn.set_timeout(timeout);
    }

    /// The minimum average transfer rate, in bytes per second, a command
    /// must keep up beyond the command timeout (default
    /// [`crate::DEFAULT_MIN_RATE`], 16 KiB/s; at least 1). Time spent
    /// parsing is not charged to the server.
    pub fn set_min_transfer_rate(&mut self, bytes_per_sec: u64) {
        self.conn.set_min_rate(bytes_per_sec);
    }

    /// NOOP polling interval of [`crate::Transport::idle`] on servers without
    /// IDLE (default 3 s).
    pub fn set_poll_interval(&mut self, interval: Duration) {
        self.poll_interval = interval.max(Duration::from_millis(50));
    }

    /// With `Some(d)`, [`crate::Transport::idle`] ends each IDLE after `d`
    /// and checks with NOOP before idling again: for servers whose IDLE
    /// reports late (Courier's default is 60 s). Default `None`.
    pub fn set_idle_recheck(&mut self, every: Option<Duration>) {
        self.idle_recheck = every.map(|d| d.max(Duration::from_millis(100)));
    }
}

//! A scriptable misbehaving IMAP server: [`HostileProxy`], a TCP proxy in
//! front of a real server (the rig's [`crate::Dovecot`]) that answers,
//! injects or hangs up on cue.
//!
//! The proxy speaks plain IMAP on both sides (clients connect with
//! `Security::Plain` to 127.0.0.1). It follows the framing in both
//! directions (lines and `{n}` literals) without holding more than one line
//! or 64 KiB at a time, so it can send gigabytes without using them.
//! [`Rule`]s match client commands by a case-insensitive substring and say
//! what to do instead of (or besides) forwarding; the first matching rule
//! with firings left wins.
//!
//! ```no_run
//! use sma_testrig::hostile::{HostileProxy, Reply, Rule};
//! use sma_testrig::Dovecot;
//!
//! let server = Dovecot::start(1);
//! let proxy = HostileProxy::start(server.host(), server.plain_port());
//! // The next SELECT gets a server bug instead of an answer.
//! proxy.add(Rule::on("SELECT").respond(Reply::text("{tag} NO [SERVERBUG] oops\r\n")).times(1));
//! // Connect to 127.0.0.1:proxy.port() with plain IMAP.
//! # let _ = proxy.port();
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

mod pump;

/// What to send, piece by piece. `{tag}` in text is replaced by the tag of
/// the command being answered, `{uid}` by the first UID of its UID set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Text as it is (after placeholders).
    Text(String),
    /// `len` copies of `byte`, streamed (nothing this size is allocated).
    Fill {
        /// The byte.
        byte: u8,
        /// How many.
        len: u64,
    },
    /// `count` copies of `byte`, one at a time, `every` apart.
    Trickle {
        /// The byte.
        byte: u8,
        /// How many.
        count: u64,
        /// Pause between two bytes.
        every: Duration,
    },
    /// Nothing for a while.
    Pause(Duration),
}

/// What the connection does after a [`Reply`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Then {
    /// Goes on serving the client.
    #[default]
    Continue,
    /// Closes the connection.
    Close,
    /// Says nothing more, ever, but keeps the connection open.
    Hang,
}

/// A scripted answer: pieces, then what happens to the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// What is sent, in order.
    pub pieces: Vec<Piece>,
    /// Afterwards.
    pub then: Then,
}

impl Reply {
    /// A reply starting with `text`.
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::default().and_text(text)
    }

    /// Appends text.
    pub fn and_text(mut self, text: impl Into<String>) -> Reply {
        self.pieces.push(Piece::Text(text.into()));
        self
    }

    /// Appends `len` copies of `byte` (streamed).
    pub fn and_fill(mut self, byte: u8, len: u64) -> Reply {
        self.pieces.push(Piece::Fill { byte, len });
        self
    }

    /// Appends `count` copies of `byte`, `every` apart.
    pub fn and_trickle(mut self, byte: u8, count: u64, every: Duration) -> Reply {
        self.pieces.push(Piece::Trickle { byte, count, every });
        self
    }

    /// Appends a pause.
    pub fn and_pause(mut self, pause: Duration) -> Reply {
        self.pieces.push(Piece::Pause(pause));
        self
    }

    /// Closes the connection afterwards.
    pub fn then_close(mut self) -> Reply {
        self.then = Then::Close;
        self
    }

    /// Keeps the connection open and silent afterwards.
    pub fn then_hang(mut self) -> Reply {
        self.then = Then::Hang;
        self
    }
}

/// What a [`Rule`] does with a matching command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The command is not forwarded; the reply is sent instead.
    Respond(Reply),
    /// The command is forwarded; this text is sent before the first byte
    /// of the server's answer (e.g. `* 1 EXISTS\r\n`).
    InjectBefore(String),
    /// The command and its answer are forwarded, then the connection is
    /// closed (e.g. right after the login).
    CloseAfter,
}

/// A command matcher and what to do on a match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Case-insensitive substring of the command line after its tag (`""`
    /// matches every command; `DONE` and other continuation lines are not
    /// commands).
    pub matching: String,
    /// What to do.
    pub action: Action,
    /// Firings left; `None` for no end.
    pub times: Option<usize>,
}

impl Rule {
    /// A rule for commands containing `matching` (case-insensitive), which
    /// forwards them until an action is chosen.
    pub fn on(matching: impl Into<String>) -> Rule {
        Rule {
            matching: matching.into(),
            action: Action::InjectBefore(String::new()),
            times: None,
        }
    }

    /// A rule for every command.
    pub fn every_command() -> Rule {
        Rule::on("")
    }

    /// Answers with `reply` instead of forwarding.
    pub fn respond(mut self, reply: Reply) -> Rule {
        self.action = Action::Respond(reply);
        self
    }

    /// Forwards, sending `text` before the server's answer.
    pub fn inject_before(mut self, text: impl Into<String>) -> Rule {
        self.action = Action::InjectBefore(text.into());
        self
    }

    /// Forwards, then closes the connection after the answer.
    pub fn close_after(mut self) -> Rule {
        self.action = Action::CloseAfter;
        self
    }

    /// Fires at most `n` times.
    pub fn times(mut self, n: usize) -> Rule {
        self.times = Some(n);
        self
    }
}

/// State shared between the test and the proxy's connections.
#[derive(Debug, Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    /// Command lines received (tag removed; credentials never logged).
    log: Mutex<Vec<String>>,
    connections: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Logs `line` (without its tag) and takes the action of the first
    /// matching rule with firings left.
    fn on_command(&self, line: &str) -> Option<Action> {
        let shown = match verb_of(line).as_str() {
            "LOGIN" | "AUTHENTICATE" => verb_of(line),
            _ => line.to_owned(),
        };
        lock(&self.log).push(shown);
        let lower = line.to_ascii_lowercase();
        let mut rules = lock(&self.rules);
        let rule = rules
            .iter_mut()
            .find(|r| r.times != Some(0) && lower.contains(&r.matching.to_ascii_lowercase()))?;
        if let Some(n) = rule.times.as_mut() {
            *n -= 1;
        }
        Some(rule.action.clone())
    }
}

/// The command's name, upper-cased, with `UID` kept (`UID FETCH`).
fn verb_of(line: &str) -> String {
    let mut words = line.split_whitespace();
    let first = words.next().unwrap_or("").to_ascii_uppercase();
    if first == "UID" {
        format!("UID {}", words.next().unwrap_or("").to_ascii_uppercase())
    } else {
        first
    }
}

/// A misbehaving IMAP server in front of a real one; see the module
/// documentation. Stopped (every connection dropped) when dropped.
#[derive(Debug)]
pub struct HostileProxy {
    port: u16,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostileProxy {
    /// Starts a proxy on a free port of 127.0.0.1 forwarding to
    /// `host:port` (plain IMAP), on a thread of its own. Panics if it
    /// cannot listen.
    pub fn start(host: &str, port: u16) -> HostileProxy {
        let upstream: SocketAddr = format!("{host}:{port}")
            .parse()
            .unwrap_or_else(|e| panic!("sma-testrig: bad upstream {host}:{port}: {e}"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("sma-testrig: proxy cannot listen: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("sma-testrig: proxy address: {e}"))
            .port();
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("sma-testrig: proxy socket: {e}"));
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hostile-proxy".into())
            .spawn(move || pump::run(listener, upstream, s, stopped))
            .unwrap_or_else(|e| panic!("sma-testrig: proxy thread: {e}"));
        HostileProxy {
            port,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The port to connect to (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Adds a rule after the existing ones.
    pub fn add(&self, rule: Rule) {
        lock(&self.shared.rules).push(rule);
    }

    /// Removes every rule: the proxy forwards faithfully again.
    pub fn clear(&self) {
        lock(&self.shared.rules).clear();
    }

    /// The command lines received so far, without tags (LOGIN and
    /// AUTHENTICATE without their arguments).
    pub fn commands(&self) -> Vec<String> {
        lock(&self.shared.log).clone()
    }

    /// How many commands named `verb` (`"SELECT"`, `"UID FETCH"`,
    /// case-insensitive) were received.
    pub fn count(&self, verb: &str) -> usize {
        let verb = verb.to_ascii_uppercase();
        lock(&self.shared.log)
            .iter()
            .filter(|l| verb_of(l) == verb)
            .count()
    }

    /// Logins (LOGIN or AUTHENTICATE commands) so far.
    pub fn logins(&self) -> usize {
        self.count("LOGIN") + self.count("AUTHENTICATE")
    }

    /// Client connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for HostileProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs() {
        assert_eq!(verb_of("uid fetch 1:* (UID)"), "UID FETCH");
        assert_eq!(verb_of("SELECT \"INBOX\""), "SELECT");
        assert_eq!(verb_of(""), "");
    }

    #[test]
    fn rules_fire_in_order_and_run_out() {
        let s = Shared::default();
        lock(&s.rules).push(Rule::on("select").close_after().times(1));
        lock(&s.rules).push(Rule::every_command().inject_before("* 1 EXISTS\r\n"));
        assert_eq!(s.on_command("SELECT \"x\""), Some(Action::CloseAfter));
        assert_eq!(
            s.on_command("SELECT \"x\""),
            Some(Action::InjectBefore("* 1 EXISTS\r\n".into()))
        );
        assert!(s.on_command("LOGIN \"u\" \"secret\"").is_some());
        let log = lock(&s.log).clone();
        assert_eq!(log, vec!["SELECT \"x\"", "SELECT \"x\"", "LOGIN"]);
    }
}

//! Behaviour with servers unlike Dovecot (Courier/Cyrus quirks, no IDLE, no
//! UIDPLUS, no NAMESPACE, odd responses, hangs), using a tiny scripted IMAP
//! server on loopback. Dovecot itself is covered by `dovecot.rs`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sma_imap::{
    CreateOutcome, EarlyLogin, IdleOutcome, ImapConfig, ImapError, ImapSession, Security,
    Transport, UidRange,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What the scripted server offers.
#[derive(Clone, Default)]
struct Opts {
    auth_plain: bool,
    namespace: bool,
    uidplus: bool,
    idle: bool,
    literal_plus: bool,
    starttls: bool,
    /// NOOP answers with an untagged response imap-proto cannot parse.
    garbage_on_noop: bool,
    /// NOOP answers only after this long.
    noop_delay_ms: u64,
    /// The first `UID EXPUNGE` expunges nothing, as when a server runs it
    /// beside the pipelined `UID STORE` that flags the message.
    first_expunge_misses: bool,
    /// SASL-IR: `AUTHENTICATE` may carry its initial response.
    sasl_ir: bool,
    /// The greeting is written only after this long.
    greeting_delay_ms: u64,
    /// A command that arrived before the greeting is answered with BAD.
    bad_before_greeting: bool,
    /// An untagged notice without capabilities comes before the greeting,
    /// as Dovecot's "Waiting for authentication process" when its auth
    /// process is slow.
    notice_before_greeting: bool,
    /// Cyrus 3.6: an `AUTHENTICATE` with commands sent before the greeting
    /// behind it is answered twice (`OK`, then `BAD Already
    /// authenticated`), and of those commands only the first is answered.
    repeats_early_login: bool,
    /// Stalwart: commands that came with the login (before the greeting)
    /// are checked against the state before the login runs, so each is
    /// refused (`BAD Not authenticated.`) ahead of the login's answer.
    refuses_behind_login: bool,
    /// Stalwart: the first `UID FETCH` (pipelined behind its `SELECT`,
    /// checked before the `SELECT` ran) finds no mailbox selected.
    first_fetch_unselected: bool,
}

/// Shared between the test and the server.
#[derive(Default)]
struct World {
    /// Every command line received (literals inlined).
    log: Mutex<Vec<String>>,
    folders: Mutex<Vec<String>>,
    exists: AtomicU32,
    /// Messages that arrived and have not been reported yet.
    pending: AtomicU32,
    wake: Notify,
    /// How many `+` continuations the server sent for literals.
    continuations: AtomicU32,
    /// Whether a `UID EXPUNGE` has been answered yet.
    expunged_once: std::sync::atomic::AtomicBool,
    /// Whether a `UID FETCH` has been answered yet.
    fetched_once: std::sync::atomic::AtomicBool,
    /// How many connections sent a command before the greeting was written.
    before_greeting: AtomicU32,
    /// How many command lines the last connection that sent any before
    /// the greeting had sent by then.
    lines_before_greeting: AtomicU32,
}

impl World {
    fn commands(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn new_message(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

async fn start(opts: Opts) -> (ImapConfig, Arc<World>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let world = Arc::new(World::default());
    world.folders.lock().unwrap().push("INBOX".into());
    let w = world.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock, opts.clone(), w.clone()));
        }
    });
    let mut c = ImapConfig::new("127.0.0.1", Security::Plain, "bob", "pässword \"q\"");
    c.port = port;
    (c, world)
}

fn caps(o: &Opts) -> String {
    let mut c = String::from("IMAP4rev1");
    for (on, name) in [
        (o.auth_plain, "AUTH=PLAIN"),
        (o.namespace, "NAMESPACE"),
        (o.uidplus, "UIDPLUS"),
        (o.idle, "IDLE"),
        (o.literal_plus, "LITERAL+"),
        (o.starttls, "STARTTLS"),
        (o.sasl_ir, "SASL-IR"),
    ] {
        if on {
            c.push(' ');
            c.push_str(name);
        }
    }
    c
}

/// Reads one command, answering sync literals with `+`.
async fn read_command<R, W>(r: &mut BufReader<R>, w: &mut W, world: &World) -> Option<String>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut out = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let body = line.trim_end_matches("\r\n");
        let lit = body
            .rfind('{')
            .filter(|_| body.ends_with('}'))
            .map(|i| &body[i + 1..body.len() - 1]);
        match lit {
            Some(n) => {
                let (n, plus) = match n.strip_suffix('+') {
                    Some(n) => (n, true),
                    None => (n, false),
                };
                let n: usize = n.parse().ok()?;
                out.push_str(&body[..body.rfind('{')?]);
                if !plus {
                    world.continuations.fetch_add(1, Ordering::SeqCst);
                    w.write_all(b"+ go ahead\r\n").await.ok()?;
                }
                let mut buf = vec![0; n];
                r.read_exact(&mut buf).await.ok()?;
                out.push_str(&String::from_utf8_lossy(&buf));
            }
            None => {
                out.push_str(body);
                return Some(out);
            }
        }
    }
}

fn arg(cmd: &str, i: usize) -> String {
    // Naive: split on spaces, strip quotes.
    cmd.split(' ')
        .nth(i)
        .unwrap_or("")
        .trim_matches('"')
        .to_owned()
}

/// How many command lines the client sent within `delay_ms` of
/// connecting, before any greeting.
async fn sent_before_greeting(sock: &tokio::net::TcpStream, delay_ms: u64) -> u32 {
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let mut buf = [0u8; 8192];
    match tokio::time::timeout(Duration::from_millis(1), sock.peek(&mut buf)).await {
        Ok(Ok(n)) => buf[..n].windows(2).filter(|w| w == b"\r\n").count() as u32,
        _ => 0,
    }
}

/// `AUTHENTICATE PLAIN`, with the initial response on the line or after
/// `+`: whether the credentials are bob's.
async fn authenticate_plain<R, W>(rest: &str, r: &mut BufReader<R>, w: &mut W) -> Option<bool>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use base64::Engine as _;
    let mut words = rest.split(' ').skip(1);
    if !words.next()?.eq_ignore_ascii_case("PLAIN") {
        return Some(false);
    }
    let response = match words.next() {
        Some(ir) => ir.to_owned(),
        None => {
            w.write_all(b"+ \r\n").await.ok()?;
            let mut line = String::new();
            r.read_line(&mut line).await.ok()?;
            line.trim_end().to_owned()
        }
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(response)
        .ok()?;
    Some(decoded == "\0bob\0pässword \"q\"".as_bytes())
}

async fn serve(sock: tokio::net::TcpStream, o: Opts, world: Arc<World>) {
    let lines = match o.greeting_delay_ms {
        0 => 0,
        delay => sent_before_greeting(&sock, delay).await,
    };
    let early = lines > 0;
    if early {
        world.before_greeting.fetch_add(1, Ordering::SeqCst);
        world.lines_before_greeting.store(lines, Ordering::SeqCst);
    }
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    let notice = match o.notice_before_greeting {
        true => "* OK Waiting for authentication process to respond..\r\n",
        false => "",
    };
    let greet = format!("{notice}* OK [CAPABILITY {}] Scripted ready.\r\n", caps(&o));
    if w.write_all(greet.as_bytes()).await.is_err() {
        return;
    }
    let mut first = true;
    // Commands answered before the rest go unanswered (`repeats_early_login`).
    let mut answered_until_lost: Option<u32> = None;
    // The login's answer, held until the commands that came with it were
    // refused (`refuses_behind_login`), and how many those are.
    let mut held_login: Option<(String, u32)> = None;
    while let Some(cmd) = read_command(&mut r, &mut w, &world).await {
        world.log.lock().unwrap().push(cmd.clone());
        if let Some((answer, left)) = held_login.as_mut() {
            let tag = cmd.split(' ').next().unwrap_or("*");
            let mut out = format!("{tag} BAD Not authenticated.\r\n");
            *left -= 1;
            if *left == 0 {
                out.push_str(answer);
                held_login = None;
            }
            if w.write_all(out.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        match &mut answered_until_lost {
            Some(0) => continue,
            Some(n) => *n -= 1,
            None => {}
        }
        let (tag, rest) = cmd.split_once(' ').unwrap_or((&cmd, ""));
        let verb = rest.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let mut out = String::new();
        let ok = format!("{tag} OK done\r\n");
        let refuse = std::mem::take(&mut first) && early && o.bad_before_greeting;
        match verb.as_str() {
            _ if refuse => out = format!("{tag} BAD Wait for the greeting\r\n"),
            "CAPABILITY" => out = format!("* CAPABILITY {}\r\n{ok}", caps(&o)),
            "AUTHENTICATE" if o.auth_plain => {
                out = match authenticate_plain(rest, &mut r, &mut w).await {
                    Some(true) if o.refuses_behind_login && lines > 1 => {
                        held_login = Some((format!("{tag} OK Logged in\r\n"), lines - 1));
                        continue;
                    }
                    Some(true) if o.repeats_early_login && lines > 1 => {
                        answered_until_lost = Some(1);
                        format!("{tag} OK Logged in\r\n{tag} BAD Already authenticated\r\n")
                    }
                    Some(true) => format!("{tag} OK Logged in\r\n"),
                    Some(false) => {
                        format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
                    }
                    None => return,
                }
            }
            "LOGIN" => {
                if rest == "LOGIN \"bob\" pässword \"q\"" || rest.ends_with("pässword \"q\"") {
                    out = format!("{tag} OK Logged in\r\n");
                } else {
                    out = format!("{tag} NO Login failed.\r\n");
                }
            }
            "NAMESPACE" => out = format!("* NAMESPACE ((\"INBOX.\" \".\")) NIL NIL\r\n{ok}"),
            "LIST" => {
                let pattern = arg(rest, 2);
                if pattern.is_empty() {
                    out.push_str("* LIST (\\Noselect) \"/\" \"\"\r\n");
                } else {
                    for f in world.folders.lock().unwrap().iter() {
                        if pattern == "*" || *f == pattern {
                            out.push_str(&format!("* LIST () \"/\" \"{f}\"\r\n"));
                        }
                    }
                }
                out.push_str(&ok);
            }
            "CREATE" => {
                let name = arg(rest, 1);
                let mut folders = world.folders.lock().unwrap();
                if folders.contains(&name) {
                    out = format!("{tag} NO Cannot create this folder.\r\n");
                } else if name.starts_with("Forbidden") {
                    out = format!("{tag} NO Permission denied\r\n");
                } else {
                    folders.push(name);
                    out = ok;
                }
            }
            "SELECT" | "EXAMINE" => {
                let name = arg(rest, 1);
                if world.folders.lock().unwrap().contains(&name) {
                    let n = world.exists.load(Ordering::SeqCst);
                    out = format!("* {n} EXISTS\r\n* OK [UIDVALIDITY 42] ok\r\n{ok}");
                } else {
                    out = format!("{tag} NO Mailbox does not exist\r\n");
                }
            }
            "NOOP" => {
                tokio::time::sleep(Duration::from_millis(o.noop_delay_ms)).await;
                let p = world.pending.swap(0, Ordering::SeqCst);
                if p > 0 {
                    let n = world.exists.fetch_add(p, Ordering::SeqCst) + p;
                    out.push_str(&format!("* {n} EXISTS\r\n"));
                }
                if o.garbage_on_noop {
                    out.push_str("* XWEIRD (this is [not parseable\r\n");
                }
                out.push_str(&ok);
            }
            "UID"
                if o.first_fetch_unselected
                    && rest.to_ascii_uppercase().starts_with("UID FETCH")
                    && !world.fetched_once.swap(true, Ordering::SeqCst) =>
            {
                out = format!("{tag} BAD No mailbox is selected.\r\n");
            }
            "UID" => {
                let upper = rest.to_ascii_uppercase();
                if upper.starts_with("UID STORE") && !upper.contains(".SILENT") {
                    let uid = arg(rest, 2);
                    out.push_str(&format!("* 1 FETCH (UID {uid} FLAGS (\\Deleted))\r\n"));
                }
                if upper.starts_with("UID EXPUNGE") {
                    let first = !world.expunged_once.swap(true, Ordering::SeqCst);
                    if !(o.first_expunge_misses && first) {
                        out.push_str("* 1 EXPUNGE\r\n");
                    }
                }
                out.push_str(&ok);
            }
            "EXPUNGE" => out = ok,
            "IDLE" => {
                if w.write_all(b"+ idling\r\n").await.is_err() {
                    return;
                }
                let mut line = String::new();
                let mut reported = false;
                loop {
                    tokio::select! {
                        n = r.read_line(&mut line) => {
                            if n.unwrap_or(0) == 0 { return; }
                            break;
                        }
                        _ = world.wake.notified(), if !reported => {
                            let p = world.pending.swap(0, Ordering::SeqCst);
                            let n = world.exists.fetch_add(p, Ordering::SeqCst) + p;
                            reported = true;
                            if w.write_all(format!("* {n} EXISTS\r\n").as_bytes()).await.is_err() { return; }
                        }
                    }
                }
                world.log.lock().unwrap().push(line.trim_end().to_owned());
                out = format!("{tag} OK Idle completed\r\n");
            }
            "STATUS" => {
                // Hangs: never answers.
                continue;
            }
            "DELETE" => {
                let _ = w.write_all(b"* BYE Server shutting down\r\n").await;
                return;
            }
            "LOGOUT" => {
                let _ = w
                    .write_all(format!("* BYE bye\r\n{tag} OK Logout\r\n").as_bytes())
                    .await;
                return;
            }
            _ => out = format!("{tag} BAD Unknown command\r\n"),
        }
        if w.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn login_with_a_literal_password_and_capabilities_after_login() {
    let (c, world) = start(Opts::default()).await;
    let s = ImapSession::connect(&c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cmds = world.commands();
    // No AUTH=PLAIN: LOGIN, non-ASCII password as a synchronising literal.
    assert!(
        cmds[0].ends_with("LOGIN \"bob\" pässword \"q\""),
        "{cmds:?}"
    );
    // The server put no capabilities in its OK: re-read.
    assert!(cmds[1].ends_with("CAPABILITY"), "{cmds:?}");
    assert_eq!(s.commands_sent(), 2);
    assert_eq!(world.continuations.load(Ordering::SeqCst), 1);
    assert!(!s.capabilities().idle);

    let mut wrong = c.clone();
    wrong.password = "nope".into();
    let e = ImapSession::connect(&wrong).await.unwrap_err();
    assert!(e.is_auth());
    assert!(e.to_string().contains("Login failed."), "{e}");
}

#[tokio::test]
async fn namespace_falls_back_to_list() {
    let (c, _) = start(Opts::default()).await;
    let mut s = ImapSession::connect(&c).await.unwrap();
    let ns = s.namespace().await.unwrap();
    assert_eq!((ns.prefix.as_str(), ns.delimiter), ("", Some('/')));

    let (c, _) = start(Opts {
        namespace: true,
        ..Opts::default()
    })
    .await;
    let mut s = ImapSession::connect(&c).await.unwrap();
    let ns = s.namespace().await.unwrap();
    assert_eq!((ns.prefix.as_str(), ns.delimiter), ("INBOX.", Some('.')));
    s.noop().await.unwrap();
}

#[tokio::test]
async fn create_without_response_codes() {
    let (c, _) = start(Opts::default()).await;
    let mut s = ImapSession::connect(&c).await.unwrap();
    assert_eq!(s.create("INBOX.X").await.unwrap(), CreateOutcome::Created);
    // Courier: "NO Cannot create this folder." without a code; LIST decides.
    assert_eq!(
        s.create("INBOX.X").await.unwrap(),
        CreateOutcome::AlreadyExisted
    );
    // Cyrus at top level: NO and the folder does not exist: an error.
    let e = s.create("Forbidden").await.unwrap_err();
    assert!(
        matches!(&e, ImapError::No { command, text } if command == "CREATE \"Forbidden\"" && text == "Permission denied"),
        "{e:?}"
    );
    // SELECT without UIDNEXT (Courier).
    let st = s.select("INBOX.X").await.unwrap();
    assert_eq!((st.uid_validity, st.uid_next), (42, None));
    assert!(matches!(
        s.select("Nope").await,
        Err(ImapError::NoSuchFolder { .. })
    ));
}

#[tokio::test]
async fn expunge_without_uidplus() {
    let (c, world) = start(Opts::default()).await;
    let mut s = ImapSession::connect(&c).await.unwrap();
    s.select("INBOX").await.unwrap();
    s.delete_messages(&[3, 4, 5, 9]).await.unwrap();
    let cmds = world.commands();
    let n = cmds.len();
    assert!(
        cmds[n - 2].ends_with("UID STORE 3:5,9 +FLAGS.SILENT (\\Deleted)"),
        "{cmds:?}"
    );
    assert!(cmds[n - 1].ends_with(" EXPUNGE"), "{cmds:?}");

    let (c, world) = start(Opts {
        uidplus: true,
        ..Opts::default()
    })
    .await;
    let mut s = ImapSession::connect(&c).await.unwrap();
    s.select("INBOX").await.unwrap();
    s.delete_messages(&[7]).await.unwrap();
    assert!(world.commands().last().unwrap().ends_with("UID EXPUNGE 7"));
}

/// A server that runs the pipelined `UID EXPUNGE` beside the `UID STORE`
/// may expunge nothing: the expunge is sent again, once, on its own.
#[tokio::test]
async fn an_expunge_that_missed_the_flag_runs_again() {
    for misses in [false, true] {
        let (c, world) = start(Opts {
            uidplus: true,
            first_expunge_misses: misses,
            ..Opts::default()
        })
        .await;
        let mut s = ImapSession::connect(&c).await.unwrap();
        s.select("INBOX").await.unwrap();
        s.delete_messages(&[7]).await.unwrap();
        let cmds = world.commands();
        let expunges = cmds.iter().filter(|c| c.ends_with("UID EXPUNGE 7")).count();
        assert_eq!(expunges, if misses { 2 } else { 1 }, "{cmds:?}");
        assert!(cmds.last().unwrap().ends_with("UID EXPUNGE 7"), "{cmds:?}");
    }
}

#[tokio::test]
async fn idle_polls_without_the_idle_capability() {
    let (c, world) = start(Opts::default()).await;
    let mut s = ImapSession::connect(&c).await.unwrap();
    s.set_poll_interval(Duration::from_millis(100));
    s.select("INBOX").await.unwrap();
    assert_eq!(
        s.idle(Duration::from_millis(350)).await.unwrap(),
        IdleOutcome::TimedOut
    );
    let noops = world
        .commands()
        .iter()
        .filter(|c| c.ends_with("NOOP"))
        .count();
    assert!((3..=6).contains(&noops), "{noops} NOOPs");
    let w = world.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        w.new_message();
    });
    let t = Instant::now();
    assert_eq!(
        s.idle(Duration::from_secs(5)).await.unwrap(),
        IdleOutcome::Changed
    );
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn idle_with_recheck_and_with_idle() {
    let (c, world) = start(Opts {
        idle: true,
        uidplus: true,
        ..Opts::default()
    })
    .await;
    let mut s = ImapSession::connect(&c).await.unwrap();
    s.select("INBOX").await.unwrap();
    let w = world.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        w.new_message();
    });
    assert_eq!(
        s.idle(Duration::from_secs(5)).await.unwrap(),
        IdleOutcome::Changed
    );
    // The IDLE's answer is still outstanding: the next flight goes out
    // right behind the DONE, and its answers are read after the IDLE's.
    s.delete_messages(&[1]).await.unwrap();
    let cmds = world.commands();
    let done = cmds.iter().position(|c| c == "DONE");
    let store = cmds.iter().position(|c| c.contains("UID STORE 1"));
    assert!(done.is_some() && done < store, "{cmds:?}");

    // A server whose IDLE never reports: recheck with NOOP.
    s.set_idle_recheck(Some(Duration::from_millis(150)));
    world.pending.store(1, Ordering::SeqCst); // arrived, but IDLE stays silent
    let t = Instant::now();
    assert_eq!(
        s.idle(Duration::from_secs(5)).await.unwrap(),
        IdleOutcome::Changed
    );
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn unparseable_untagged_responses_do_not_break_the_session() {
    let (c, _) = start(Opts {
        garbage_on_noop: true,
        ..Opts::default()
    })
    .await;
    let mut s = ImapSession::connect(&c).await.unwrap();
    s.noop().await.unwrap();
    s.noop().await.unwrap();
    s.select("INBOX").await.unwrap();
}

#[tokio::test]
async fn dropped_command_is_finished_by_the_next_one() {
    let (c, _) = start(Opts {
        noop_delay_ms: 300,
        ..Opts::default()
    })
    .await;
    let mut s = ImapSession::connect(&c).await.unwrap();
    let r = tokio::time::timeout(Duration::from_millis(50), s.noop()).await;
    assert!(r.is_err());
    let st = s.select("INBOX").await.unwrap();
    assert_eq!(st.uid_validity, 42);
}

#[tokio::test]
async fn silent_server_times_out_and_the_session_is_lost() {
    let (c, _) = start(Opts::default()).await;
    let mut s = ImapSession::connect(&c).await.unwrap();
    s.set_command_timeout(Duration::from_millis(300));
    let t = Instant::now();
    let e = s.status("INBOX").await.unwrap_err();
    assert!(matches!(e, ImapError::Timeout { .. }), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(e.is_connection_lost() && s.is_lost());
    assert!(s.noop().await.unwrap_err().is_connection_lost());
}

#[tokio::test]
async fn bye_and_close_is_connection_lost_with_the_server_text() {
    let (c, _) = start(Opts::default()).await;
    let mut s = ImapSession::connect(&c).await.unwrap();
    let e = s.delete("INBOX.X").await.unwrap_err();
    assert!(e.is_connection_lost(), "{e:?}");
    assert!(e.to_string().contains("Server shutting down"), "{e}");
    s.logout().await.unwrap();
}

#[tokio::test]
async fn starttls_must_be_offered() {
    let (mut c, world) = start(Opts::default()).await;
    c.security = Security::StartTls;
    let e = ImapSession::connect(&c).await.unwrap_err();
    assert!(matches!(e, ImapError::StartTlsUnavailable { .. }), "{e:?}");
    assert!(!e.is_retryable());
    // Nothing was sent: certainly no password.
    assert!(world.commands().is_empty(), "{:?}", world.commands());
}

#[tokio::test]
async fn literal_plus_is_used_when_offered() {
    let (c, world) = start(Opts {
        literal_plus: true,
        ..Opts::default()
    })
    .await;
    ImapSession::connect(&c).await.unwrap();
    assert!(world.commands()[0].ends_with("LOGIN \"bob\" pässword \"q\""));
    assert_eq!(world.continuations.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_idle_longer_than_the_command_timeout_ends_cleanly() {
    // The command timeout bounds the wait for answers, not IDLE itself:
    // ending an IDLE that ran longer (by its deadline, a cancel, or a
    // dropped future) must not count the idle time against the server.
    let (c, world) = start(Opts {
        idle: true,
        ..Opts::default()
    })
    .await;
    let mut s = ImapSession::connect(&c).await.unwrap();
    s.set_command_timeout(Duration::from_millis(300));
    s.select("INBOX").await.unwrap();
    assert_eq!(
        s.idle(Duration::from_millis(800)).await.unwrap(),
        IdleOutcome::TimedOut
    );
    let out = s
        .idle_until(
            Duration::from_secs(10),
            tokio::time::sleep(Duration::from_millis(800)),
        )
        .await
        .unwrap();
    assert_eq!(out, IdleOutcome::Interrupted);
    let dropped = tokio::time::timeout(Duration::from_millis(800), s.idle(Duration::from_secs(10)));
    assert!(dropped.await.is_err());
    s.noop().await.unwrap();
    assert!(!s.is_lost());
    let dones = world.commands().iter().filter(|c| *c == "DONE").count();
    assert_eq!(dones, 3);
}

/// A server that takes the login before its greeting: with the
/// capabilities of a first session as the hint, the second session's
/// `AUTHENTICATE` arrives before the greeting is written, and logs in.
#[tokio::test]
async fn with_a_hint_the_login_goes_before_the_greeting() {
    let (mut c, world) = start(Opts {
        auth_plain: true,
        sasl_ir: true,
        greeting_delay_ms: 200,
        ..Opts::default()
    })
    .await;
    let s = ImapSession::connect(&c).await.unwrap();
    assert_eq!(s.early_login(), EarlyLogin::NotTried);
    assert_eq!(world.before_greeting.load(Ordering::SeqCst), 0);
    let hint = s.pre_login_capabilities().to_vec();
    assert!(hint.iter().any(|c| c == "SASL-IR"), "{hint:?}");
    s.logout().await.unwrap();
    // LOGOUT is written, not waited for: let the server read it before the
    // log is cleared, or it lands among the next connection's commands.
    let t = Instant::now();
    while !world.commands().iter().any(|c| c.ends_with("LOGOUT")) {
        assert!(t.elapsed() < Duration::from_secs(5), "no LOGOUT arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    c.login_hint = Some(hint.clone());
    world.log.lock().unwrap().clear();
    let s = ImapSession::connect(&c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.early_login(), EarlyLogin::Used);
    assert_eq!(world.before_greeting.load(Ordering::SeqCst), 1);
    let cmds = world.commands();
    assert!(cmds[0].contains("AUTHENTICATE PLAIN "), "{cmds:?}");
    assert!(cmds[1].ends_with("CAPABILITY"), "{cmds:?}");
    assert_eq!(s.commands_sent(), 2);
    assert_eq!(s.pre_login_capabilities(), &hint[..]);
    assert_eq!(s.server_greeting(), "Scripted ready.");
}

/// The hints a first session gives: the capabilities before and after
/// login. Waits until the server has read its LOGOUT, then clears the log.
async fn hints_of_a_first_session(c: &ImapConfig, world: &World) -> (Vec<String>, Vec<String>) {
    let mut s = ImapSession::connect(c).await.unwrap();
    s.create("Box").await.unwrap();
    let hints = (
        s.pre_login_capabilities().to_vec(),
        s.capabilities().raw.clone(),
    );
    s.logout().await.unwrap();
    let t = Instant::now();
    while !world.commands().iter().any(|c| c.ends_with("LOGOUT")) {
        assert!(t.elapsed() < Duration::from_secs(5), "no LOGOUT arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    world.log.lock().unwrap().clear();
    hints
}

/// With the capabilities after login as a hint too, the session does not
/// wait for the login's answer: the first flight (SELECT and the header
/// FETCH) goes out with the login, before the greeting, and its answers
/// are read after the login's. The answer here carries no capabilities:
/// the hint's stand, and no CAPABILITY is asked (it would mix answers).
#[tokio::test]
async fn with_a_capabilities_hint_the_first_flight_goes_behind_the_login() {
    let (mut c, world) = start(Opts {
        auth_plain: true,
        sasl_ir: true,
        greeting_delay_ms: 200,
        ..Opts::default()
    })
    .await;
    let (pre, after) = hints_of_a_first_session(&c, &world).await;
    c.login_hint = Some(pre.clone());
    c.caps_hint = Some(after.clone());
    let mut s = ImapSession::connect(&c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(s.login_pending());
    assert_eq!(s.commands_sent(), 1);
    let (state, headers) = s
        .open_and_fetch_headers("Box", false, UidRange::all(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.uid_validity, 42);
    assert!(headers.is_empty());
    assert!(!s.login_pending());
    assert_eq!(s.early_login(), EarlyLogin::Used);
    assert_eq!(s.server_greeting(), "Scripted ready.");
    assert_eq!(s.capabilities().raw, after);
    let cmds = world.commands();
    assert_eq!(cmds.len(), 3, "{cmds:?}");
    assert!(cmds[0].contains("AUTHENTICATE PLAIN "), "{cmds:?}");
    assert!(cmds[1].contains("SELECT \"Box\""), "{cmds:?}");
    assert!(cmds[2].contains("UID FETCH"), "{cmds:?}");
    assert_eq!(
        world.lines_before_greeting.load(Ordering::SeqCst),
        3,
        "the login and the flight, all before the greeting"
    );
    assert_eq!(s.selected_folder(), Some(("Box", false)));
    s.noop().await.unwrap();
}

/// Behind a login that fails, nothing is taken for an answer: a wrong
/// password is `AuthRejected` at the first command (tried once), and a
/// server that refuses commands before its greeting gets the usual login
/// on a second connection, where the first command runs again.
#[tokio::test]
async fn a_failed_login_with_a_capabilities_hint_surfaces_at_the_first_command() {
    let (mut c, world) = start(Opts {
        auth_plain: true,
        sasl_ir: true,
        greeting_delay_ms: 100,
        ..Opts::default()
    })
    .await;
    let (pre, after) = hints_of_a_first_session(&c, &world).await;
    c.login_hint = Some(pre.clone());
    c.caps_hint = Some(after.clone());
    let right = c.password.clone();
    c.password = "nope".into();
    let mut s = ImapSession::connect(&c).await.unwrap();
    let e = s
        .open_and_fetch_headers("Box", false, UidRange::all(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, ImapError::AuthRejected { .. }), "{e:?}");
    let logins = |w: &World| {
        w.commands()
            .iter()
            .filter(|c| c.contains("AUTHENTICATE PLAIN"))
            .count()
    };
    assert_eq!(logins(&world), 1, "{:?}", world.commands());

    let (mut c, world) = start(Opts {
        auth_plain: true,
        sasl_ir: true,
        greeting_delay_ms: 100,
        bad_before_greeting: true,
        ..Opts::default()
    })
    .await;
    c.login_hint = Some(pre);
    c.caps_hint = Some(after);
    c.password = right;
    world.folders.lock().unwrap().push("Box".into());
    let mut s = ImapSession::connect(&c).await.unwrap();
    let (state, _) = s
        .open_and_fetch_headers("Box", false, UidRange::all(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.uid_validity, 42);
    assert_eq!(s.early_login(), EarlyLogin::FellBack);
    assert!(s.early_login_fell_back().is_some());
    assert_eq!(logins(&world), 2, "{:?}", world.commands());
    assert_eq!(s.selected_folder(), Some(("Box", false)));
}

/// A session whose login goes before the greeting (hints from a first
/// session) on a server with `opts` (and `AUTH=PLAIN`, SASL-IR, a greeting
/// 100 ms late), after its first open of `Box` (an empty folder, UID
/// validity 42), which must not wait for a command timeout.
async fn open_behind_an_early_login(opts: Opts) -> (ImapSession, Arc<World>) {
    let (mut c, world) = start(Opts {
        auth_plain: true,
        sasl_ir: true,
        greeting_delay_ms: 100,
        ..opts
    })
    .await;
    let (pre, after) = hints_of_a_first_session(&c, &world).await;
    c.login_hint = Some(pre);
    c.caps_hint = Some(after);
    let mut s = ImapSession::connect(&c).await.unwrap();
    let started = std::time::Instant::now();
    let (state, headers) = s
        .open_and_fetch_headers("Box", false, UidRange::all(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "noticed at once, not after a command timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(state.uid_validity, 42);
    assert!(headers.is_empty());
    (s, world)
}

/// A server that answers the login twice when commands came behind it
/// (Cyrus 3.6, when they share the login's packet) loses those commands:
/// the session notices the second answer at once, logs in again before the
/// greeting on a second connection but sends the flight only after the
/// login's answer, and reports that (so the device keeps its early login
/// and sends no more commands behind it).
#[tokio::test]
async fn a_login_answered_twice_makes_the_flight_run_again_on_a_usual_login() {
    let (mut s, world) = open_behind_an_early_login(Opts {
        repeats_early_login: true,
        ..Opts::default()
    })
    .await;
    assert_eq!(s.early_login(), EarlyLogin::FlightLost);
    assert!(s.commands_behind_login_lost());
    assert!(
        s.early_login_fell_back().is_none(),
        "the login before the greeting worked: it stays on"
    );
    let logins = world
        .commands()
        .iter()
        .filter(|c| c.contains("AUTHENTICATE PLAIN"))
        .count();
    assert_eq!(
        logins,
        2,
        "the early one with the flight, then an early one alone: {:?}",
        world.commands()
    );
    assert_eq!(
        world.lines_before_greeting.load(Ordering::SeqCst),
        1,
        "the second connection sent only its login before the greeting"
    );
    assert_eq!(s.selected_folder(), Some(("Box", false)));
    s.noop().await.unwrap();
}

/// A server that refuses the commands behind the login ahead of the
/// login's own answer (Stalwart checks every command of a read against the
/// state before the first runs) makes the session send them again after
/// the login, on the same connection, at once, and stop sending commands
/// behind its login.
#[tokio::test]
async fn commands_refused_ahead_of_the_login_are_sent_again_after_it() {
    let (mut s, world) = open_behind_an_early_login(Opts {
        refuses_behind_login: true,
        ..Opts::default()
    })
    .await;
    assert!(
        world.lines_before_greeting.load(Ordering::SeqCst) > 1,
        "the flight went behind the login: {:?}",
        world.commands()
    );
    let selects = world
        .commands()
        .iter()
        .filter(|c| c.contains("SELECT \"Box\""))
        .count();
    assert_eq!(
        selects,
        2,
        "refused, then sent again: {:?}",
        world.commands()
    );
    assert_eq!(s.selected_folder(), Some(("Box", false)));
    assert!(s.commands_behind_login_lost());
    s.noop().await.unwrap();
}

/// A header `FETCH` sent behind its `SELECT` and refused as if nothing were
/// selected (Stalwart checks a flight's commands before the `SELECT` runs)
/// is sent again once the folder is open.
#[tokio::test]
async fn a_fetch_refused_behind_its_select_is_sent_again() {
    let (c, world) = start(Opts {
        first_fetch_unselected: true,
        ..Opts::default()
    })
    .await;
    world.folders.lock().unwrap().push("Box".into());
    let mut s = ImapSession::connect(&c).await.unwrap();
    let (state, headers) = s
        .open_and_fetch_headers("Box", false, UidRange::all(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.uid_validity, 42);
    assert!(headers.is_empty());
    let fetches = world
        .commands()
        .iter()
        .filter(|c| c.contains("UID FETCH"))
        .count();
    assert_eq!(fetches, 2, "{:?}", world.commands());
    assert_eq!(s.selected_folder(), Some(("Box", false)));
}

/// A notice before the greeting (Dovecot's while its auth process is slow)
/// is not taken for the greeting: the greeting's text and capabilities are
/// those of the line with the capabilities.
#[tokio::test]
async fn a_notice_before_the_greeting_is_not_the_greeting() {
    let (mut c, _world) = start(Opts {
        auth_plain: true,
        sasl_ir: true,
        greeting_delay_ms: 100,
        notice_before_greeting: true,
        ..Opts::default()
    })
    .await;
    let hint: Vec<String> = ["IMAP4rev1", "AUTH=PLAIN", "SASL-IR", "X-ONLY-IN-HINT"]
        .map(String::from)
        .to_vec();
    c.login_hint = Some(hint);
    let s = ImapSession::connect(&c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.early_login(), EarlyLogin::Used);
    assert_eq!(s.server_greeting(), "Scripted ready.");
    let pre = s.pre_login_capabilities();
    assert!(pre.iter().any(|c| c == "AUTH=PLAIN"), "{pre:?}");
    assert!(
        !pre.iter().any(|c| c == "X-ONLY-IN-HINT"),
        "the greeting's capabilities, not the hint's: {pre:?}"
    );
}

/// A hint that no longer holds (the server dropped SASL-IR, or refuses a
/// command before its greeting): one more connection, the usual login.
#[tokio::test]
async fn a_stale_hint_falls_back_to_the_usual_login() {
    let hint: Vec<String> = ["IMAP4rev1", "AUTH=PLAIN", "SASL-IR"]
        .map(String::from)
        .to_vec();
    let no_sasl_ir = Opts {
        auth_plain: true,
        greeting_delay_ms: 100,
        ..Opts::default()
    };
    let refuses = Opts {
        auth_plain: true,
        sasl_ir: true,
        greeting_delay_ms: 100,
        bad_before_greeting: true,
        ..Opts::default()
    };
    for (opts, has_sasl_ir) in [(no_sasl_ir, false), (refuses, true)] {
        let (mut c, world) = start(opts).await;
        c.login_hint = Some(hint.clone());
        let mut s = ImapSession::connect(&c)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.early_login(), EarlyLogin::FellBack);
        assert_eq!(world.before_greeting.load(Ordering::SeqCst), 1);
        let has = s.pre_login_capabilities().iter().any(|c| c == "SASL-IR");
        assert_eq!(has, has_sasl_ir);
        let logins = world
            .commands()
            .iter()
            .filter(|c| c.contains("AUTHENTICATE PLAIN"))
            .count();
        assert_eq!(logins, 2, "{:?}", world.commands());
        s.noop().await.unwrap();
    }
}

/// A wrong password with a hint is still `AuthRejected`, and is tried
/// once: a server that answers `NO [AUTHENTICATIONFAILED]` read the login,
/// so a second one would only count twice against the account.
#[tokio::test]
async fn a_wrong_password_with_a_hint_is_rejected() {
    let (mut c, world) = start(Opts {
        auth_plain: true,
        sasl_ir: true,
        ..Opts::default()
    })
    .await;
    c.login_hint = Some(
        ["IMAP4rev1", "AUTH=PLAIN", "SASL-IR"]
            .map(String::from)
            .to_vec(),
    );
    c.password = "nope".into();
    let e = ImapSession::connect(&c).await.unwrap_err();
    assert!(matches!(e, ImapError::AuthRejected { .. }), "{e:?}");
    assert!(e.to_string().contains("Authentication failed."), "{e}");
    assert!(!e.to_string().contains("nope"), "{e}");
    let logins = world
        .commands()
        .iter()
        .filter(|c| c.contains("AUTHENTICATE PLAIN"))
        .count();
    assert_eq!(logins, 1, "{:?}", world.commands());
}

/// Cyrus 3.6 and Courier 5.0 write the answer of each pipelined command as
/// it is done, with Nagle's algorithm on: the second answer waits until the
/// client acknowledges the first, and a delayed ACK (40 ms on Linux) made
/// every flight slower than the same commands one at a time. The scripted
/// server writes its answers the same way; the client acknowledges at once
/// while a flight is outstanding.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_flight_is_not_held_up_by_a_server_writing_answer_by_answer() {
    let (c, _world) = start(Opts {
        namespace: true,
        ..Opts::default()
    })
    .await;
    let mut s = ImapSession::connect(&c).await.unwrap();
    // Interactive traffic first, so the kernel delays ACKs as it would
    // in a long session.
    for _ in 0..3 {
        s.noop().await.unwrap();
    }
    let mut took = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        s.open_and_fetch_headers("INBOX", false, sma_imap::UidRange::all(), None)
            .await
            .unwrap();
        took.push(t.elapsed());
    }
    took.sort();
    assert!(
        took[2] < Duration::from_millis(25),
        "SELECT + FETCH in one flight took {took:?}"
    );
}

//! Issue 20, the rows about what a server's answers mean and about loops:
//! a `NO [SERVERBUG]` is not a missing folder, an empty FETCH of a folder
//! said to hold messages is not an empty folder, and the building blocks the
//! driver's `watch` uses (`RoundLimiter`, `ReconnectBackoff`) bound an
//! EXISTS storm and a reconnect storm from a real (proxied) server.

mod common;
mod rig;

use std::time::{Duration, Instant};

use rig::{connect, folder_with, proxy, via};
use sma_imap::{
    connect_with_retry, reconnect, Backoff, IdleOutcome, ImapError, ImapSession, ReconnectBackoff,
    RoundLimiter, Transport, UidRange,
};
use sma_testrig::hostile::{HostileProxy, Reply, Rule};

fn server_failure(e: &ImapError) -> &str {
    match e {
        ImapError::ServerFailure { text, .. } => text,
        other => panic!("expected ServerFailure, got {other:?}"),
    }
}

#[tokio::test]
async fn serverbug_on_select_with_list_and_fetch_answering_nothing() {
    let p = proxy();
    let uids = folder_with(10, "Inbox10", &[100]).await;
    let mut s = connect(&p, 10).await;
    p.add(Rule::on("SELECT").respond(Reply::text(
        "{tag} NO [SERVERBUG] Internal error occurred. Refer to server log for more information.\r\n",
    )));
    p.add(Rule::on("EXAMINE").respond(Reply::text("{tag} NO [UNAVAILABLE] Try later.\r\n")));
    p.add(Rule::on("LIST").respond(Reply::text("{tag} OK List completed.\r\n")));
    p.add(Rule::on("UID FETCH").respond(Reply::text("{tag} OK Fetch completed.\r\n")));
    let e = s.select("Inbox10").await.unwrap_err();
    assert!(server_failure(&e).starts_with("[SERVERBUG]"), "{e}");
    assert!(e.is_transient() && !e.is_connection_lost(), "{e:?}");
    let e = s.examine("Inbox10").await.unwrap_err();
    assert!(server_failure(&e).starts_with("[UNAVAILABLE]"), "{e}");
    // The session stays usable, and the folder is there all along.
    p.clear();
    let st = s.select("Inbox10").await.expect("select");
    assert_eq!(st.exists as usize, uids.len());
}

#[tokio::test]
async fn a_plain_no_is_missing_only_if_list_agrees() {
    let p = proxy();
    folder_with(11, "Busy", &[]).await;
    let mut s = connect(&p, 11).await;
    p.add(Rule::on("SELECT").respond(Reply::text("{tag} NO Mailbox is busy.\r\n")));
    // LIST is forwarded: it shows Busy, so this is no missing folder.
    let e = s.select("Busy").await.unwrap_err();
    assert!(
        server_failure(&e).contains("yet LIST shows the folder"),
        "{e}"
    );
    // A folder that appeared between the NO and the LIST (another client
    // created it) is opened on a second try.
    p.clear();
    let selects = p.count("SELECT");
    p.add(
        Rule::on("SELECT")
            .respond(Reply::text("{tag} NO Mailbox doesn't exist: Busy\r\n"))
            .times(1),
    );
    let st = s.select("Busy").await.expect("opened on the second try");
    assert_eq!(st.exists, 0);
    assert_eq!(p.count("SELECT") - selects, 2, "{:?}", p.commands());
    // A folder LIST does not show: missing (Courier, Cyrus say it so).
    let e = s.select("Ghost").await.unwrap_err();
    assert!(
        matches!(e, ImapError::NoSuchFolder { ref folder } if folder == "Ghost"),
        "{e:?}"
    );
    // A failing LIST proves nothing either.
    p.add(Rule::on("LIST").respond(Reply::text("{tag} NO [SERVERBUG] LIST broke.\r\n")));
    let e = s.select("Ghost").await.unwrap_err();
    assert!(server_failure(&e).contains("LIST failed"), "{e}");
    // Dovecot's own answer for a missing folder carries [NONEXISTENT].
    p.clear();
    let e = s.select("Ghost").await.unwrap_err();
    assert!(matches!(e, ImapError::NoSuchFolder { .. }), "{e:?}");
    assert!(s.status("Ghost").await.is_err());
}

#[tokio::test]
async fn an_empty_fetch_of_a_folder_said_to_hold_messages() {
    let p = proxy();
    let uids = folder_with(12, "Full", &[100, 100]).await;
    folder_with(12, "Empty", &[]).await;
    let mut s = connect(&p, 12).await;
    p.add(Rule::on("BODY.PEEK[HEADER]").respond(Reply::text("{tag} OK Fetch completed.\r\n")));
    let st = s.select("Full").await.expect("select");
    assert_eq!(st.exists, 2);
    for range in [UidRange::all(), UidRange::from_uid(uids[1] + 100)] {
        let e = s.fetch_headers(range).await.unwrap_err();
        assert!(server_failure(&e).contains("holds 2 message(s)"), "{e}");
    }
    // A range without `*` may rightly be empty.
    let none = s
        .fetch_headers(UidRange::new(1000, 2000))
        .await
        .expect("fetch");
    assert!(none.is_empty());
    s.select("Empty").await.expect("select");
    assert!(s
        .fetch_headers(UidRange::all())
        .await
        .expect("fetch")
        .is_empty());
    p.clear();
    s.select("Full").await.expect("select");
    assert_eq!(
        s.fetch_headers(UidRange::all()).await.expect("fetch").len(),
        2
    );
}

#[tokio::test]
async fn an_empty_fetch_explained_by_the_server_is_no_fault() {
    let p = proxy();
    folder_with(0, "Arrive", &[]).await;
    let uids = folder_with(0, "Vanish", &[100]).await;
    let mut s = connect(&p, 0).await;
    // A message announced only after the FETCH resolved `1:*` (the server
    // then says `* 1 EXISTS` before its OK): the folder was empty.
    assert_eq!(s.select("Arrive").await.expect("select").exists, 0);
    p.add(
        Rule::on("BODY.PEEK[HEADER]")
            .respond(Reply::text("* 1 EXISTS\r\n{tag} OK Fetch completed.\r\n"))
            .times(1),
    );
    let got = s.fetch_headers(UidRange::all()).await.expect("no fault");
    assert!(got.is_empty());
    // Messages another client expunged, which the server reports only on
    // the next command: the NOOP asked after the empty FETCH hears it.
    assert_eq!(s.select("Vanish").await.expect("select").exists, 1);
    p.add(
        Rule::on("BODY.PEEK[HEADER]")
            .respond(Reply::text("{tag} OK Fetch completed.\r\n"))
            .times(1),
    );
    p.add(
        Rule::on("NOOP")
            .respond(Reply::text("* 1 EXPUNGE\r\n{tag} OK NOOP completed.\r\n"))
            .times(1),
    );
    let got = s.fetch_headers(UidRange::all()).await.expect("no fault");
    assert!(got.is_empty());
    assert_eq!(p.count("NOOP"), 1);
    // Only one recheck: the next FETCH (real) finds the message again.
    p.clear();
    s.select("Vanish").await.expect("select");
    let got = s.fetch_headers(UidRange::all()).await.expect("fetch");
    assert_eq!(got.iter().map(|h| h.uid).collect::<Vec<_>>(), uids);
}

/// A round of `sma watch` on an (empty) inbox: SELECT, FETCH if it holds
/// anything, then IDLE. Returns whether IDLE woke at once.
async fn watch_round(s: &mut ImapSession, folder: &str) -> bool {
    let st = s.select(folder).await.expect("select");
    if st.exists > 0 {
        s.fetch_headers(UidRange::all()).await.expect("fetch");
    }
    s.idle(Duration::from_secs(5)).await.expect("idle") == IdleOutcome::Changed
}

#[tokio::test]
async fn an_exists_injected_before_every_response() {
    let p = proxy();
    folder_with(13, "Storm", &[]).await;
    let mut s = connect(&p, 13).await;
    p.add(Rule::every_command().inject_before("* 1 EXISTS\r\n"));
    // Without a limit: a round per IDLE, as fast as the server answers.
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(1) {
        assert!(
            watch_round(&mut s, "Storm").await,
            "the injection wakes IDLE"
        );
        rounds += 1;
    }
    assert!(rounds >= 20, "only {rounds} rounds: no storm to tame");
    // With the RoundLimiter, as `watch` is to use it: 0, 1 and 3 s.
    let idles = p.count("IDLE");
    let mut limiter = RoundLimiter::default();
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(limiter.delay(Instant::now())).await;
        if started.elapsed() >= Duration::from_secs(4) {
            break;
        }
        limiter.started(Instant::now());
        watch_round(&mut s, "Storm").await;
        limiter.finished(Instant::now(), false);
        rounds += 1;
    }
    assert_eq!(rounds, 3, "rounds in 4 s");
    assert_eq!(p.count("IDLE") - idles, 3);
}

/// Logs in through `p` again and again for `span`, as a `watch` loop
/// would: `fresh` makes a new backoff per lost session (the old loop),
/// else one [`ReconnectBackoff`] is kept. Returns the logins.
async fn login_loop(p: &HostileProxy, i: usize, span: Duration, fresh: bool) -> usize {
    let config = via(p, i);
    let before = p.logins();
    let mut kept = ReconnectBackoff::new(
        Backoff::new(Duration::from_millis(50), Duration::from_secs(1)),
        ReconnectBackoff::MIN_UPTIME,
    );
    let started = Instant::now();
    while started.elapsed() < span {
        let mut s = if fresh {
            connect_with_retry(&config, &mut Backoff::default(), 5, |_, _, _| {}).await
        } else {
            reconnect(&config, &mut kept, 5, |_, _, _| {}).await
        }
        .expect("the login itself succeeds");
        let e = s.select("INBOX").await.unwrap_err();
        assert!(e.is_connection_lost(), "{e:?}");
        if !fresh {
            tokio::time::sleep(kept.failed(Instant::now())).await;
        }
    }
    p.logins() - before
}

#[tokio::test]
async fn a_server_that_drops_every_session_right_after_login() {
    let p = proxy();
    p.add(Rule::on("AUTHENTICATE").close_after());
    p.add(Rule::on("LOGIN ").close_after());
    let storm = login_loop(&p, 14, Duration::from_secs(1), true).await;
    assert!(storm >= 10, "only {storm} logins: no storm to tame");
    // 0, 0.05, 0.15, 0.35, 0.75, 1.55, 2.55 s.
    let kept = login_loop(&p, 14, Duration::from_secs(3), false).await;
    assert!((5..=8).contains(&kept), "{kept} logins in 3 s");
    p.clear();
    let mut s = connect(&p, 14).await;
    s.select("INBOX").await.expect("works afterwards");
}

const AUTH_UNAVAILABLE: &str = "{tag} NO [UNAVAILABLE] Temporary authentication failure.\r\n";

/// A login answered `NO [UNAVAILABLE]` (Dovecot while its authentication
/// process starts or stops) is server trouble, worth retrying, and never
/// a rejected password.
#[tokio::test]
async fn a_login_answered_unavailable_is_server_trouble_not_a_wrong_password() {
    let p = proxy();
    for verb in ["AUTHENTICATE", "LOGIN "] {
        p.add(Rule::on(verb).respond(Reply::text(AUTH_UNAVAILABLE)));
    }
    let e = ImapSession::connect(&via(&p, 12)).await.unwrap_err();
    assert!(server_failure(&e).starts_with("[UNAVAILABLE]"), "{e}");
    assert!(
        e.is_transient() && e.is_retryable() && !e.is_auth(),
        "{e:?}"
    );
    // Connecting with retries gets in once the server is ready.
    p.clear();
    for verb in ["AUTHENTICATE", "LOGIN "] {
        p.add(
            Rule::on(verb)
                .respond(Reply::text(AUTH_UNAVAILABLE))
                .times(1),
        );
    }
    let backoff = &mut Backoff::new(Duration::from_millis(50), Duration::from_millis(200));
    let mut retries = 0;
    let mut s = connect_with_retry(&via(&p, 12), backoff, 5, |_, _, _| retries += 1)
        .await
        .expect("the same account logs in once the server is ready");
    s.noop().await.expect("noop");
    assert_eq!(retries, 1, "{:?}", p.commands());
}

/// `Resuming` (pair and join) rides over a restart whose new sessions
/// are refused for a while: logins answered `NO [UNAVAILABLE]`, then the
/// folder's SELECT. It retries with backoff and runs the operation on the
/// folder it had selected.
#[tokio::test]
async fn resuming_waits_out_a_server_that_is_not_ready_after_a_drop() {
    let p = proxy();
    let uids = folder_with(13, "Resumed", &[100, 200]).await;
    let mut s = connect(&p, 13).await;
    let mut r = sma_imap::Resuming::new(&mut s);
    r.select("Resumed").await.expect("select");
    p.add(
        Rule::on("NOOP")
            .respond(Reply::text("* BYE Server shutting down.\r\n").then_close())
            .times(1),
    );
    for verb in ["AUTHENTICATE", "LOGIN "] {
        p.add(
            Rule::on(verb)
                .respond(Reply::text(AUTH_UNAVAILABLE))
                .times(2),
        );
    }
    p.add(
        Rule::on("SELECT")
            .respond(Reply::text("{tag} NO [UNAVAILABLE] Try later.\r\n"))
            .times(1),
    );
    r.noop()
        .await
        .expect("resumed after the server became ready");
    assert_eq!(r.reconnects(), 2, "{:?}", p.commands());
    let headers = r
        .fetch_headers(UidRange::all())
        .await
        .expect("the selection came back");
    assert_eq!(headers.len(), uids.len());
}

//! The session cache (`JmapConfig::session_cache`) against Cyrus 3.6: a
//! session started from it works without reading the session resource,
//! and one it misleads (URLs gone, another account, a folder made again)
//! recovers. Ignored by default like every Cyrus test (Cyrus conflicts with
//! the system's Dovecot and is unpacked privately); `scripts/compat-test
//! cyrus` runs them.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sma_imap::{ImapError, ImapSession, Transport, UidRange};
use sma_jmap::{JmapConfig, JmapSession};
use sma_testrig::ScriptServer;

mod common;

fn cyrus(test: &str) -> ScriptServer {
    common::cyrus(test, 1)
}

fn config(server: &ScriptServer, cache: &Path) -> JmapConfig {
    let a = server.account(0);
    let url = server.jmap_url().expect("the rig printed SMA_JMAP_URL");
    let mut c = JmapConfig::new(url, &a.user, &a.password);
    c.session_cache = Some(cache.to_owned());
    c
}

async fn imap(server: &ScriptServer) -> ImapSession {
    common::imap(server, 0).await
}

fn message(id: &str) -> Vec<u8> {
    format!("From: <a@sma.test>\r\nMessage-ID: <{id}@sma.test>\r\nSubject: {id}\r\n\r\n{id}\r\n")
        .into_bytes()
}

/// Rewrites the cache file with `edit` applied to its JSON.
fn edit_cache(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).expect("the cache file"))
        .expect("the cache is JSON");
    edit(&mut v);
    std::fs::write(path, serde_json::to_vec(&v).expect("JSON")).expect("write the cache");
}

fn cache_path(test: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(test)
        .tempdir()
        .expect("temp dir");
    let path = dir.path().join("jmap-session.json");
    (dir, path)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a private Cyrus with JMAP (conflicts with dovecot-imapd): run scripts/compat-test cyrus"]
async fn a_session_from_the_cache_works_and_a_stale_cache_is_dropped() {
    let server = cyrus("a_session_from_the_cache_works_and_a_stale_cache_is_dropped");
    let (_dir, path) = cache_path("cache");
    let c = config(&server, &path);

    let mut first = JmapSession::connect(&c).await.expect("first session");
    assert!(!first.started_from_cache(), "nothing cached yet");
    first.create("INBOX.cached").await.expect("create");
    first.select("INBOX.cached").await.expect("select");
    assert!(path.exists(), "the session resource was kept");
    let kept: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(
        kept["mailboxes"]["list"]
            .as_array()
            .is_some_and(|l| !l.is_empty()),
        "the mailbox list was kept: {kept}"
    );

    let mut second = JmapSession::connect(&c).await.expect("second session");
    assert!(
        second.started_from_cache(),
        "the second starts from the cache"
    );
    let items: [(&str, &[u8]); 1] = [("INBOX.cached", &message("one"))];
    let checked = second.status_and_append(&items).await.expect("append");
    assert_eq!(checked[0].status.as_ref().expect("status").messages, 0);
    checked[0].appended.as_ref().expect("appended");
    let mut i = imap(&server).await;
    assert_eq!(i.status("INBOX.cached").await.unwrap().messages, 1);

    // The URLs it names are gone: the first call is a lost connection,
    // the cache is dropped, the next session reads the server again.
    edit_cache(&path, |v| {
        v["session"]["apiUrl"] = "/jmap/moved-away/".into()
    });
    let mut third = JmapSession::connect(&c).await.expect("third session");
    assert!(third.started_from_cache());
    let err = third.status("INBOX.cached").await.expect_err("stale URLs");
    assert!(matches!(err, ImapError::ConnectionLost(_)), "{err:?}");
    assert!(!path.exists(), "the stale cache was dropped");
    let mut fourth = JmapSession::connect(&c).await.expect("fourth session");
    assert!(!fourth.started_from_cache());
    assert_eq!(fourth.status("INBOX.cached").await.unwrap().messages, 1);

    // Another account than the server's: dropped the same way.
    edit_cache(&path, |v| {
        v["session"]["primaryAccounts"]["urn:ietf:params:jmap:mail"] = "nobody@sma.test".into()
    });
    let mut fifth = JmapSession::connect(&c).await.expect("fifth session");
    assert!(fifth.started_from_cache());
    let err = fifth
        .status("INBOX.cached")
        .await
        .expect_err("another account");
    assert!(matches!(err, ImapError::ConnectionLost(_)), "{err:?}");
    assert!(!path.exists(), "the stale cache was dropped");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a private Cyrus with JMAP (conflicts with dovecot-imapd): run scripts/compat-test cyrus"]
async fn a_folder_made_again_is_found_although_the_cache_names_its_old_id() {
    let server = cyrus("a_folder_made_again_is_found_although_the_cache_names_its_old_id");
    let (_dir, path) = cache_path("remade");
    let c = config(&server, &path);
    let mut j = JmapSession::connect(&c).await.expect("session");
    j.create("INBOX.remade").await.expect("create");
    j.select("INBOX.remade").await.expect("select");
    j.logout().await.expect("logout");

    // Another client deletes the folder and makes it again: a new id.
    let mut i = imap(&server).await;
    i.delete("INBOX.remade").await.expect("delete over IMAP");
    i.create("INBOX.remade").await.expect("create over IMAP");

    let mut j = JmapSession::connect(&c)
        .await
        .expect("session from the cache");
    assert!(j.started_from_cache());
    let statuses = j.status_many(&["INBOX.remade"]).await.expect("status");
    assert_eq!(statuses[0].as_ref().expect("found").messages, 0);

    let mut j = JmapSession::connect(&c)
        .await
        .expect("session from the cache");
    edit_cache(&path, |v| {
        // Put the stale list back (the status above refreshed it).
        let list = v["mailboxes"]["list"].as_array_mut().expect("list");
        for m in list.iter_mut() {
            if m["name"] == "remade" {
                m["id"] = "stale-id".into();
            }
        }
    });
    let mut j2 = JmapSession::connect(&c)
        .await
        .expect("session from the stale cache");
    assert!(j2.started_from_cache());
    let items: [(&str, &[u8]); 1] = [("INBOX.remade", &message("two"))];
    let checked = j2.status_and_append(&items).await.expect("append");
    checked[0]
        .appended
        .as_ref()
        .expect("appended to the folder made again");
    let staged = message("three");
    j2.stage_append(&staged);
    let uids = j2
        .append_all("INBOX.remade", &[&staged])
        .await
        .expect("append");
    assert_eq!(uids.len(), 1);
    assert_eq!(i.status("INBOX.remade").await.unwrap().messages, 2);
    let state = j.select("INBOX.remade").await.expect("select");
    assert_eq!(state.exists, 2, "{state:?}");
    let headers = j.fetch_headers(UidRange::all()).await.expect("headers");
    assert_eq!(
        headers.len(),
        2,
        "both messages are in the folder made again"
    );
}

/// A minimal event source (RFC 8620 §7.3) on 127.0.0.1: every
/// connection gets `200 text/event-stream`, a `ping` right away, then
/// whatever the test sends through the returned channel. Debian's Cyrus
/// has no event source of its own (its httpd lacks wslay and answers
/// `204`), so the push path is tested with this one in front of the real
/// server's API; the URL it asked for is kept.
async fn event_source() -> (
    u16,
    tokio::sync::broadcast::Sender<String>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, _) = tokio::sync::broadcast::channel::<String>(16);
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (sender, log) = (tx.clone(), asked.clone());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut rx = sender.subscribe();
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
                    if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let line = String::from_utf8_lossy(&head);
                log.lock()
                    .unwrap()
                    .push(line.lines().next().unwrap_or("").to_owned());
                let start = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\nevent: ping\ndata: {\"interval\":15}\n\n";
                if conn.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                while let Ok(ev) = rx.recv().await {
                    if conn.write_all(ev.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, tx, asked)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a private Cyrus with JMAP (conflicts with dovecot-imapd): run scripts/compat-test cyrus"]
async fn idle_waits_for_the_event_source_and_wakes_at_its_state_event() {
    use sma_imap::IdleOutcome;
    use std::time::{Duration, Instant};

    let server = cyrus("idle_waits_for_the_event_source_and_wakes_at_its_state_event");
    let (_dir, path) = cache_path("push");
    let c = config(&server, &path);
    let mut j = JmapSession::connect(&c).await.expect("session");
    j.create("INBOX.pushed").await.expect("create");
    j.select("INBOX.pushed").await.expect("select");
    j.logout().await.expect("logout");
    let (port, push, asked) = event_source().await;
    edit_cache(&path, |v| {
        v["session"]["eventSourceUrl"] = format!(
            "http://127.0.0.1:{port}/events?types={{types}}&closeafter={{closeafter}}&ping={{ping}}"
        )
        .into()
    });

    let mut j = JmapSession::connect(&c)
        .await
        .expect("session from the cache");
    assert!(j.started_from_cache());
    j.select("INBOX.pushed").await.expect("select");
    let account = j.account_id().to_owned();
    let listed_at = j
        .selected_email_state()
        .expect("Cyrus's Email/get names its state")
        .to_owned();
    let state_event = |email: Option<&str>, acct: &str| {
        let types = match email {
            Some(s) => json!({"Email": s, "Mailbox": "m"}),
            None => json!({"Mailbox": "m"}),
        };
        let data = json!({"@type": "StateChange", "changed": {acct: types}});
        format!("event: state\ndata: {data}\n\n")
    };
    let idle = tokio::spawn(async move {
        let started = Instant::now();
        let out = j.idle(Duration::from_secs(20)).await;
        (out, started.elapsed())
    });
    // A message arrives (over IMAP) but the server pushes nothing yet: a
    // session listening to the event source does not poll, so it waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut i = imap(&server).await;
    i.append("INBOX.pushed", &[], &message("pushed"))
        .await
        .expect("append");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !idle.is_finished(),
        "idle returned without a push: it polled"
    );
    push.send("event: ping\ndata: {\"interval\":15}\n\n".into())
        .expect("ping");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!idle.is_finished(), "a ping is not a change");
    // State events that bring nothing for this mailbox wake nothing:
    // another account's emails, this account's mailboxes only, and the
    // very state the mailbox was listed at.
    for (email, acct) in [
        (Some("elsewhere"), "another-account"),
        (None, account.as_str()),
        (Some(listed_at.as_str()), account.as_str()),
    ] {
        push.send(state_event(email, acct)).expect("state");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !idle.is_finished(),
            "woke at a state event that brings nothing: {email:?} of {acct}"
        );
    }
    let pushed = Instant::now();
    push.send(format!("id: 7\n{}", state_event(Some("newer"), &account)))
        .expect("state");
    let (out, _) = idle.await.expect("idle task");
    assert!(matches!(out, Ok(IdleOutcome::Changed)), "{out:?}");
    let woke = pushed.elapsed();
    assert!(
        woke < Duration::from_millis(1000),
        "woke {woke:?} after the push"
    );
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0].starts_with("GET /events?types=Email%2CMailbox&closeafter=no&ping=15 ")
            || asked[0].starts_with("GET /events?types=Email,Mailbox&closeafter=no&ping=15 "),
        "{asked:?}"
    );
    eprintln!("== idle woke {woke:?} after the state event");
}

//! sma-jmap against Cyrus 3.6 serving JMAP and IMAP on the same accounts
//! (the rig's `scripts/cyrus-server start --jmap`). Cyrus conflicts with the
//! system's Dovecot and is unpacked privately (`scripts/cyrus-server
//! install`, as root), so these tests are ignored by default and reported
//! as ignored, never as passed; `scripts/compat-test cyrus` runs them.

use std::time::{Duration, Instant};

use sma_imap::{CreateOutcome, IdleOutcome, ImapError, Transport, UidRange};
use sma_jmap::{JmapConfig, JmapSession};
use sma_testrig::ScriptServer;

mod common;
use common::imap;

/// Two accounts.
fn cyrus2(test: &str) -> ScriptServer {
    common::cyrus(test, 2)
}

async fn jmap(server: &ScriptServer, i: usize) -> JmapSession {
    let a = server.account(i);
    let c = JmapConfig::new(server.jmap_url().unwrap(), &a.user, &a.password);
    JmapSession::connect(&c).await.expect("JMAP session")
}

fn message(id: &str, body: &str) -> Vec<u8> {
    format!(
        "From: <a@sma.test>\r\nTo: <b@sma.test>\r\nSubject: test {id}\r\nMessage-ID: <{id}@sma.test>\r\nX-Folded: one\r\n two\r\nContent-Type: text/plain\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn header_of(m: &[u8]) -> &[u8] {
    let end = m.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    &m[..end]
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a private Cyrus with JMAP (conflicts with dovecot-imapd): run scripts/compat-test cyrus"]
async fn folders_have_the_same_names_on_both_sides() {
    let server = cyrus2("folders_have_the_same_names_on_both_sides");
    let mut j = jmap(&server, 0).await;
    let mut i = imap(&server, 0).await;
    let ns = j.namespace().await.unwrap();
    assert_eq!(ns, i.namespace().await.unwrap(), "the same namespace");

    // JMAP → IMAP, with a missing parent created on the way.
    assert_eq!(
        j.create("INBOX._Autocrypt_SMA").await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        j.create("INBOX._Autocrypt_SMA").await.unwrap(),
        CreateOutcome::AlreadyExisted
    );
    assert_eq!(
        j.create("INBOX.P.child").await.unwrap(),
        CreateOutcome::Created
    );
    let on_imap: Vec<String> = i
        .list("", "*")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    for n in ["INBOX._Autocrypt_SMA", "INBOX.P", "INBOX.P.child"] {
        assert!(on_imap.contains(&n.to_owned()), "{n} not in {on_imap:?}");
    }

    // IMAP → JMAP, including a name with the delimiter escaped.
    i.create("INBOX._Autocrypt_SMA_0123456789abcdef")
        .await
        .unwrap();
    i.create("INBOX._Autocrypt_SMA.fedcba").await.unwrap();
    let on_jmap: Vec<String> = j
        .list("", "*")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    let mut on_imap: Vec<String> = i
        .list("", "*")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    on_imap.sort();
    assert_eq!(on_jmap, on_imap, "both sides list the same names");
    let pattern: Vec<String> = j
        .list("", "INBOX._Autocrypt_SMA*")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        pattern,
        [
            "INBOX._Autocrypt_SMA",
            "INBOX._Autocrypt_SMA.fedcba",
            "INBOX._Autocrypt_SMA_0123456789abcdef"
        ]
    );

    // Subscriptions and deletion show on the other side.
    j.subscribe("INBOX._Autocrypt_SMA").await.unwrap();
    let subs = i.list_subscribed("*").await.unwrap();
    assert!(
        subs.contains(&"INBOX._Autocrypt_SMA".to_owned()),
        "{subs:?}"
    );
    j.unsubscribe("INBOX._Autocrypt_SMA").await.unwrap();
    assert!(!i
        .list_subscribed("*")
        .await
        .unwrap()
        .contains(&"INBOX._Autocrypt_SMA".to_owned()));
    j.delete("INBOX._Autocrypt_SMA_0123456789abcdef")
        .await
        .unwrap();
    assert!(matches!(
        i.select("INBOX._Autocrypt_SMA_0123456789abcdef").await,
        Err(ImapError::NoSuchFolder { .. })
    ));
    assert!(matches!(
        j.delete("INBOX._Autocrypt_SMA_0123456789abcdef").await,
        Err(ImapError::NoSuchFolder { .. })
    ));
    assert!(matches!(
        j.select("INBOX.nothing").await,
        Err(ImapError::NoSuchFolder { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a private Cyrus with JMAP (conflicts with dovecot-imapd): run scripts/compat-test cyrus"]
async fn messages_are_byte_identical_both_ways() {
    let server = cyrus2("messages_are_byte_identical_both_ways");
    let mut j = jmap(&server, 0).await;
    let mut i = imap(&server, 0).await;
    let f = "INBOX._Autocrypt_SMA";
    i.create(f).await.unwrap();

    // IMAP → JMAP.
    let m1 = message("m1", "first body\r\nwith two lines");
    i.append(f, &[], &m1).await.unwrap();
    let state = j.select(f).await.unwrap();
    assert_eq!(state.exists, 1);
    let h = j.fetch_headers(UidRange::all()).await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].size as usize, m1.len());
    assert_eq!(
        String::from_utf8_lossy(&h[0].header),
        String::from_utf8_lossy(header_of(&m1))
    );
    let got = j.fetch_messages(&[h[0].uid], 1 << 20).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.as_deref(), Some(&m1[..]));
    // Over the cap: the size only.
    let small = j.fetch_messages(&[h[0].uid], 10).await.unwrap();
    assert_eq!(small[0].body, None);
    assert_eq!(small[0].size as usize, m1.len());

    // JMAP → IMAP, with \Seen.
    let m2 = message("m2", "second body");
    let uid2 = j.append(f, &["\\Seen"], &m2).await.unwrap().expect("a UID");
    assert!(uid2 > h[0].uid, "a new message gets a higher UID");
    i.select(f).await.unwrap();
    let ih = i.fetch_headers(UidRange::all()).await.unwrap();
    assert_eq!(ih.len(), 2);
    let imap_uid2 = ih
        .iter()
        .find(|h| h.header == header_of(&m2))
        .expect("the JMAP message's header over IMAP")
        .uid;
    let body = i.fetch_messages(&[imap_uid2], 1 << 20).await.unwrap();
    assert_eq!(body[0].body.as_deref(), Some(&m2[..]));
    // Headers agree between the two sides for both messages.
    let jh = j.fetch_headers(UidRange::all()).await.unwrap();
    let mut a: Vec<_> = jh.iter().map(|h| (h.size, h.header.clone())).collect();
    let mut b: Vec<_> = ih.iter().map(|h| (h.size, h.header.clone())).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // UIDs are stable within the session and in arrival order.
    assert_eq!(
        jh.iter().map(|h| h.uid).collect::<Vec<_>>(),
        [h[0].uid, uid2]
    );
    // append_all: several in order.
    let m3 = message("m3", "third");
    let m4 = message("m4", "fourth");
    let uids = j.append_all(f, &[&m3, &m4]).await.unwrap();
    assert_eq!(uids.len(), 2);
    let st = i.status(f).await.unwrap();
    assert_eq!(st.messages, 4);
    let js = j.status_many(&[f, "INBOX.none"]).await.unwrap();
    assert_eq!(js[0].as_ref().unwrap().messages, 4);
    assert!(matches!(js[1], Err(ImapError::NoSuchFolder { .. })));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a private Cyrus with JMAP (conflicts with dovecot-imapd): run scripts/compat-test cyrus"]
async fn delete_search_and_move() {
    let server = cyrus2("delete_search_and_move");
    let mut j = jmap(&server, 0).await;
    let mut i = imap(&server, 0).await;
    let f = "INBOX._Autocrypt_SMA";
    let g = "INBOX._Autocrypt_SMA_other";
    i.create(f).await.unwrap();
    i.create(g).await.unwrap();
    for n in 1..=4 {
        i.append(f, &[], &message(&format!("d{n}"), "x"))
            .await
            .unwrap();
    }
    j.select(f).await.unwrap();
    let h = j.fetch_headers(UidRange::all()).await.unwrap();
    assert_eq!(h.len(), 4);
    let uid_of = |id: &str| {
        h.iter()
            .find(|x| String::from_utf8_lossy(&x.header).contains(&format!("<{id}@sma.test>")))
            .unwrap()
            .uid
    };

    let found = j
        .search_header("Message-ID", "<d3@sma.test>")
        .await
        .unwrap();
    assert_eq!(found, [uid_of("d3")]);
    assert!(j
        .search_header("Message-ID", "<nothere@sma.test>")
        .await
        .unwrap()
        .is_empty());

    j.delete_messages(&[uid_of("d1"), uid_of("d3")])
        .await
        .unwrap();
    let left = j.fetch_headers(UidRange::all()).await.unwrap();
    assert_eq!(
        left.iter().map(|x| x.uid).collect::<Vec<_>>(),
        [uid_of("d2"), uid_of("d4")],
        "exactly the given UIDs are gone, the others keep theirs"
    );
    i.select(f).await.unwrap();
    let ih = i.fetch_headers(UidRange::all()).await.unwrap();
    assert_eq!(ih.len(), 2);
    assert!(ih
        .iter()
        .all(|x| !String::from_utf8_lossy(&x.header).contains("<d1@")
            && !String::from_utf8_lossy(&x.header).contains("<d3@")));

    assert_eq!(j.move_messages(&[uid_of("d2")], g).await.unwrap(), None);
    assert_eq!(j.fetch_headers(UidRange::all()).await.unwrap().len(), 1);
    assert_eq!(i.status(g).await.unwrap().messages, 1);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a private Cyrus with JMAP (conflicts with dovecot-imapd): run scripts/compat-test cyrus"]
async fn idle_sees_another_sessions_append() {
    let server = cyrus2("idle_sees_another_sessions_append");
    let mut j = jmap(&server, 0).await;
    let mut i = imap(&server, 0).await;
    let f = "INBOX._Autocrypt_SMA";
    i.create(f).await.unwrap();
    j.select(f).await.unwrap();

    let t = Instant::now();
    assert_eq!(
        j.idle(Duration::from_millis(1500)).await.unwrap(),
        IdleOutcome::TimedOut
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "waited the timeout"
    );

    let appender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        i.append(f, &[], &message("idle1", "x")).await.unwrap();
        i
    });
    let t = Instant::now();
    assert_eq!(
        j.idle(Duration::from_secs(20)).await.unwrap(),
        IdleOutcome::Changed
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "Changed promptly, after {:?}",
        t.elapsed()
    );
    let mut i = appender.await.unwrap();
    // Seen by the fetch: quiet again.
    assert_eq!(j.fetch_headers(UidRange::all()).await.unwrap().len(), 1);
    assert_eq!(
        j.idle(Duration::from_millis(600)).await.unwrap(),
        IdleOutcome::TimedOut
    );
    // A message in another folder is no change of the selected one.
    i.create("INBOX.elsewhere").await.unwrap();
    i.append("INBOX.elsewhere", &[], &message("idle2", "x"))
        .await
        .unwrap();
    assert_eq!(
        j.idle(Duration::from_millis(800)).await.unwrap(),
        IdleOutcome::TimedOut
    );
    // The session's own append counts.
    j.append(f, &[], &message("idle3", "x")).await.unwrap();
    assert_eq!(
        j.idle(Duration::from_secs(5)).await.unwrap(),
        IdleOutcome::Changed
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a private Cyrus with JMAP (conflicts with dovecot-imapd): run scripts/compat-test cyrus"]
async fn reconnect_changes_uidvalidity_and_bad_password_is_auth() {
    let server = cyrus2("reconnect_changes_uidvalidity_and_bad_password_is_auth");
    let mut j = jmap(&server, 1).await;
    j.create("INBOX.x").await.unwrap();
    let before = j.select("INBOX.x").await.unwrap().uid_validity;
    j.reconnect().await.unwrap();
    let after = j.select("INBOX.x").await.unwrap().uid_validity;
    assert_ne!(before, after, "a new session voids the UIDs");
    j.noop().await.unwrap();

    let a = server.account(1);
    let c = JmapConfig::new(server.jmap_url().unwrap(), &a.user, "wrong");
    let e = JmapSession::connect(&c).await.unwrap_err();
    assert!(e.is_auth(), "{e}");

    let c = JmapConfig::new("http://192.0.2.1/.well-known/jmap", &a.user, "x");
    assert!(matches!(
        JmapSession::connect(&c).await.unwrap_err(),
        ImapError::InsecureRefused { .. }
    ));
}

/// Cyrus keeps one email per content (RFC 8621 `alreadyExists` on import):
/// the same bytes appended to several folders (a broadcast) must land in
/// each, and taking one copy out must leave the others.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a private Cyrus with JMAP (conflicts with dovecot-imapd): run scripts/compat-test cyrus"]
async fn identical_messages_in_several_folders_stay_independent() {
    let server = cyrus2("identical_messages_in_several_folders_stay_independent");
    let mut j = jmap(&server, 0).await;
    let mut i = imap(&server, 0).await;
    let folders = [
        "INBOX._Autocrypt_SMA_a",
        "INBOX._Autocrypt_SMA_b",
        "INBOX._Autocrypt_SMA_c",
    ];
    for f in folders {
        i.create(f).await.unwrap();
    }
    let m = message("same", "broadcast");
    for f in folders {
        j.append(f, &[], &m).await.unwrap();
    }
    // Appending it again where it already is changes nothing.
    j.append(folders[0], &[], &m).await.unwrap();
    for f in folders {
        assert_eq!(i.status(f).await.unwrap().messages, 1, "{f} over IMAP");
    }

    // Processed in a: deleted there only.
    j.select(folders[0]).await.unwrap();
    let h = j.fetch_headers(UidRange::all()).await.unwrap();
    assert_eq!(h.len(), 1);
    j.delete_messages(&[h[0].uid]).await.unwrap();
    assert_eq!(i.status(folders[0]).await.unwrap().messages, 0);
    assert_eq!(i.status(folders[1]).await.unwrap().messages, 1);
    assert_eq!(i.status(folders[2]).await.unwrap().messages, 1);

    // Moved out of b (to the Trash-like c): b empties, c still holds it.
    j.select(folders[1]).await.unwrap();
    let h = j.fetch_headers(UidRange::all()).await.unwrap();
    j.move_messages(&[h[0].uid], folders[2]).await.unwrap();
    assert_eq!(i.status(folders[1]).await.unwrap().messages, 0);
    assert_eq!(i.status(folders[2]).await.unwrap().messages, 1);

    // The last copy goes for good, and the body was intact all along.
    j.select(folders[2]).await.unwrap();
    let h = j.fetch_headers(UidRange::all()).await.unwrap();
    let got = j.fetch_messages(&[h[0].uid], u32::MAX).await.unwrap();
    assert_eq!(got[0].body.as_deref(), Some(&m[..]));
    j.delete_messages(&[h[0].uid]).await.unwrap();
    assert_eq!(i.status(folders[2]).await.unwrap().messages, 0);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a private Cyrus with JMAP (conflicts with dovecot-imapd): run scripts/compat-test cyrus"]
async fn a_broadcast_is_one_email_in_every_inbox_and_each_copy_goes_alone() {
    let server = cyrus2("a_broadcast_is_one_email_in_every_inbox_and_each_copy_goes_alone");
    let mut j = jmap(&server, 0).await;
    let mut i = imap(&server, 0).await;
    let folders = [
        "INBOX._Autocrypt_SMA_x",
        "INBOX._Autocrypt_SMA_y",
        "INBOX._Autocrypt_SMA_z",
    ];
    for f in folders {
        i.create(f).await.unwrap();
    }
    i.append(folders[1], &[], &message("older", "already there"))
        .await
        .unwrap();
    let m = message("broadcast", "to everyone");
    let items: Vec<(&str, &[u8])> = folders.iter().map(|f| (*f, m.as_slice())).collect();
    let checked = j.status_and_append(&items).await.unwrap();
    let before: Vec<u32> = checked
        .iter()
        .map(|c| c.status.as_ref().expect("status").messages)
        .collect();
    assert_eq!(before, [0, 1, 0], "each status is from before the message");
    for c in &checked {
        c.appended.as_ref().expect("appended");
    }
    for f in folders {
        let s = i.status(f).await.unwrap();
        assert_eq!(s.messages, if f == folders[1] { 2 } else { 1 }, "{f}");
    }

    // Processed in x: gone from x only, intact in y and z.
    j.select(folders[0]).await.unwrap();
    let h = j.fetch_headers(UidRange::all()).await.unwrap();
    assert_eq!(h.len(), 1);
    j.delete_messages(&[h[0].uid]).await.unwrap();
    assert_eq!(i.status(folders[0]).await.unwrap().messages, 0);
    assert_eq!(i.status(folders[1]).await.unwrap().messages, 2);
    i.select(folders[2]).await.unwrap();
    let got = i.fetch_messages(&[1], 1 << 20).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].body.as_deref(),
        Some(m.as_slice()),
        "byte for byte over IMAP"
    );
}

/// Instances started at the same moment (as parallel tests start them)
/// listen on ports of their own, below the ephemeral range that client
/// connections draw from, and each JMAP URL reaches its own instance. CI
/// once saw a test's JMAP requests refused mid-test: its instance had been
/// given the port of another one, which stopped when its test ended.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a private Cyrus with JMAP (conflicts with dovecot-imapd): run scripts/compat-test cyrus"]
async fn instances_started_at_once_listen_on_ports_of_their_own() {
    let starts: Vec<_> = (0..3)
        .map(|k| {
            std::thread::spawn(move || common::cyrus(&format!("instances_started_at_once_{k}"), 1))
        })
        .collect();
    let servers: Vec<ScriptServer> = starts
        .into_iter()
        .map(|t| t.join().expect("start"))
        .collect();
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .expect("the ephemeral port range");
    let ephemeral_low: u16 = range
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    let mut ports = std::collections::BTreeSet::new();
    for s in &servers {
        let url = s.jmap_url().expect("a JMAP URL");
        let http: u16 = url
            .trim_start_matches("http://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the JMAP URL");
        for port in [s.port(), http] {
            assert!(
                port < ephemeral_low,
                "port {port} is in the ephemeral range"
            );
            assert!(ports.insert(port), "port {port} given to two instances");
        }
    }
    for (k, s) in servers.iter().enumerate() {
        let folder = format!("INBOX.own{k}");
        let mut i = imap(s, 0).await;
        i.create(&folder).await.expect("create over IMAP");
        let mut j = jmap(s, 0).await;
        j.select(&folder)
            .await
            .expect("the JMAP URL reaches the instance the folder was made on");
    }
}

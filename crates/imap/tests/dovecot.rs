//! Integration tests against a real Dovecot (sma-testrig).
//!
//! Every test uses its own account of one shared server (see `common`).

mod common;

use std::time::{Duration, Instant};

use common::{config, fresh_folder, message, server, session};
use sma_imap::{
    CreateOutcome, EarlyLogin, IdleOutcome, ImapError, ImapSession, Security, Transport, UidRange,
};

#[tokio::test]
async fn tls_with_private_ca() {
    let mut s = session(0).await;
    assert!(s.is_tls());
    assert!(
        s.server_greeting().contains("Dovecot"),
        "{}",
        s.server_greeting()
    );
    let caps = s.capabilities();
    assert!(caps.idle && caps.uidplus && caps.namespace && caps.condstore && caps.literal_plus);
    // Post-login capabilities were read (NAMESPACE is not pre-login).
    assert!(caps.has("NAMESPACE"));
    assert!(s.commands_sent() >= 1);
    s.noop().await.unwrap();
    s.logout().await.unwrap();
}

/// With the pre-login capabilities of a first session as the hint, the
/// next session sends its login before Dovecot's greeting (TLS and plain),
/// in one command with the capabilities in the OK; STARTTLS never does; a
/// wrong password is still rejected as such.
#[tokio::test]
async fn a_hint_from_a_first_session_logs_in_before_the_greeting() {
    let d = server();
    for security in [Security::Tls, Security::Plain] {
        let mut c = config(d, 1, security);
        let first = ImapSession::connect(&c)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.early_login(), EarlyLogin::NotTried);
        let hint = first.pre_login_capabilities().to_vec();
        for cap in ["SASL-IR", "AUTH=PLAIN"] {
            assert!(hint.iter().any(|c| c == cap), "{security}: {hint:?}");
        }
        first.logout().await.unwrap();
        c.login_hint = Some(hint.clone());
        let mut s = ImapSession::connect(&c)
            .await
            .unwrap_or_else(|e| panic!("{security}: {e}\n{}", d.log()));
        assert_eq!(s.early_login(), EarlyLogin::Used, "{security}");
        assert_eq!(s.is_tls(), security == Security::Tls);
        assert_eq!(s.commands_sent(), 1, "the login, capabilities in its OK");
        assert!(s.capabilities().has("NAMESPACE"), "post-login capabilities");
        assert_eq!(s.pre_login_capabilities(), &hint[..]);
        assert!(s.server_greeting().contains("Dovecot"));
        s.noop().await.unwrap();
        s.logout().await.unwrap();

        c.password = "wrong".into();
        let e = ImapSession::connect(&c).await.unwrap_err();
        assert!(matches!(e, ImapError::AuthRejected { .. }), "{e:?}");
    }
    let mut c = config(d, 1, Security::StartTls);
    c.login_hint = Some(vec![
        "IMAP4rev1".into(),
        "SASL-IR".into(),
        "AUTH=PLAIN".into(),
    ]);
    let s = ImapSession::connect(&c).await.unwrap();
    assert_eq!(s.early_login(), EarlyLogin::NotTried);
}

/// With the capabilities after login as a hint as well, the first flight
/// goes behind the login (Dovecot runs the commands its login process
/// read ahead once the login succeeds): the headers and the prefetched
/// body come with the login's answer. A wrong password is still
/// `AuthRejected`, at the first command; a hint that no longer matches
/// the capabilities has the flight done again, with the real ones.
#[tokio::test]
async fn a_capabilities_hint_sends_the_first_flight_behind_the_login() {
    let d = server();
    let mut c = config(d, 1, Security::Tls);
    let folder = "BehindLogin";
    let mut first = ImapSession::connect(&c).await.unwrap();
    fresh_folder(&mut first, folder).await;
    first
        .append(folder, &[], &message("behind", "", 200))
        .await
        .unwrap();
    let pre = first.pre_login_capabilities().to_vec();
    let after = first.capabilities().raw.clone();
    first.logout().await.unwrap();
    c.login_hint = Some(pre);
    for (caps_hint, as_hinted) in [(after.clone(), true), (stale(&after), false)] {
        c.caps_hint = Some(caps_hint);
        let mut s = ImapSession::connect(&c)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
        assert!(s.login_pending());
        let (state, headers) = s
            .open_and_fetch_headers(folder, false, UidRange::all(), Some(1))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
        assert!(!s.login_pending());
        assert_eq!((state.exists, headers.len()), (1, 1));
        assert!(state.highest_modseq.is_some(), "SELECT (CONDSTORE)");
        assert_eq!(s.early_login(), EarlyLogin::Used);
        assert!(s.server_greeting().contains("Dovecot"));
        assert_eq!(s.capabilities().raw, after, "the server's, not the hint's");
        let sent = if as_hinted { 1 + 3 } else { 1 + 3 + 3 };
        assert_eq!(s.commands_sent(), sent, "as hinted: {as_hinted}");
        let bodies = s.fetch_messages(&[headers[0].uid], 1 << 20).await.unwrap();
        assert_eq!(bodies.len(), 1);
        if as_hinted {
            assert_eq!(s.commands_sent(), sent, "the body came with the headers");
        }
        s.logout().await.unwrap();
    }
    c.caps_hint = Some(after);
    c.password = "wrong".into();
    let mut s = ImapSession::connect(&c).await.unwrap();
    let e = s
        .open_and_fetch_headers(folder, false, UidRange::all(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, ImapError::AuthRejected { .. }), "{e:?}");
}

/// `caps` with one capability more, as a server that changed since.
fn stale(caps: &[String]) -> Vec<String> {
    let mut v = caps.to_vec();
    v.push("X-GONE-SINCE".into());
    v
}

#[tokio::test]
async fn starttls_with_private_ca() {
    let d = server();
    let mut s = ImapSession::connect(&config(d, 1, Security::StartTls))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(s.is_tls());
    assert!(
        s.capabilities().has("NAMESPACE"),
        "{:?}",
        s.capabilities().raw
    );
    assert!(!s.capabilities().has("STARTTLS"));
    s.noop().await.unwrap();
    s.logout().await.unwrap();
}

#[tokio::test]
async fn plain_on_loopback_is_allowed() {
    let d = server();
    let mut s = ImapSession::connect(&config(d, 1, Security::Plain))
        .await
        .unwrap();
    assert!(!s.is_tls());
    s.noop().await.unwrap();
}

#[tokio::test]
async fn wrong_ca_is_rejected_clearly() {
    let d = server();
    for security in [Security::Tls, Security::StartTls] {
        let mut c = config(d, 2, security);
        c.ca_file = Some(d.wrong_ca_file().to_owned());
        let e = ImapSession::connect(&c).await.unwrap_err();
        let ImapError::Tls { addr, reason } = &e else {
            panic!("expected a TLS error, got {e:?}");
        };
        assert_eq!(addr, &c.addr());
        assert!(reason.contains("not signed by the CA in"), "{reason}");
        assert!(e.to_string().contains("--ca-file"), "{e}");
        assert!(!e.is_retryable());
    }
    // Without --ca-file the web PKI roots do not know the private CA either.
    let mut c = config(d, 2, Security::Tls);
    c.ca_file = None;
    let e = ImapSession::connect(&c).await.unwrap_err();
    assert!(
        matches!(&e, ImapError::Tls { reason, .. } if reason.contains("trusted certificate authority")),
        "{e}"
    );
}

#[tokio::test]
async fn unusable_ca_file_is_a_tls_error() {
    let d = server();
    let mut c = config(d, 2, Security::Tls);
    c.ca_file = Some("/nonexistent/ca.pem".into());
    let e = ImapSession::connect(&c).await.unwrap_err();
    assert!(
        matches!(&e, ImapError::Tls { reason, .. } if reason.contains("cannot read the CA file")),
        "{e}"
    );
}

#[tokio::test]
async fn tls_to_the_plain_port_says_so() {
    let d = server();
    let mut c = config(d, 2, Security::Tls);
    c.port = d.plain_port();
    let e = ImapSession::connect(&c).await.unwrap_err();
    assert!(
        matches!(&e, ImapError::Tls { reason, .. } if reason.contains("did not answer with TLS")),
        "{e}"
    );
}

#[tokio::test]
async fn plain_to_a_remote_host_is_refused_before_connecting() {
    // TEST-NET-1: never contacted, the refusal comes first.
    let mut c = sma_imap::ImapConfig::new("192.0.2.1", Security::Plain, "alice", "secret");
    c.port = 143;
    let started = Instant::now();
    let e = ImapSession::connect(&c).await.unwrap_err();
    assert!(
        matches!(e, ImapError::InsecureRefused { ref host } if host == "192.0.2.1"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(e.to_string().contains("--allow-insecure"));
    let c = sma_imap::ImapConfig::new("mail.example.org", Security::Plain, "alice", "secret");
    assert!(matches!(
        ImapSession::connect(&c).await,
        Err(ImapError::InsecureRefused { .. })
    ));
}

#[tokio::test]
async fn wrong_password_is_rejected_with_server_text() {
    let d = server();
    let mut c = config(d, 3, Security::Tls);
    c.password = "wrong".into();
    let e = ImapSession::connect(&c).await.unwrap_err();
    let msg = e.to_string();
    assert!(e.is_auth(), "{e:?}");
    assert!(msg.starts_with(&format!(
        "IMAP login failed for {} at {}:",
        c.user,
        c.addr()
    )));
    assert!(msg.contains("[AUTHENTICATIONFAILED]"), "{msg}");
    assert!(msg.ends_with("— check the password"), "{msg}");
    assert!(!msg.contains("wrong"), "password leaked: {msg}");
    assert_eq!(e.exit_code(), 3);
}

#[tokio::test]
async fn unreachable_port() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut c = sma_imap::ImapConfig::new("127.0.0.1", Security::Tls, "u", "p");
    c.port = port;
    let e = ImapSession::connect(&c).await.unwrap_err();
    assert!(matches!(e, ImapError::Unreachable { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[tokio::test]
async fn namespace_and_list() {
    let mut s = session(4).await;
    let ns = s.namespace().await.unwrap();
    assert_eq!(ns.prefix, "");
    assert_eq!(ns.delimiter, Some('.'));

    s.create("Parent").await.unwrap();
    s.create("Parent.Child").await.unwrap();
    let all = s.list("", "*").await.unwrap();
    let names: Vec<&str> = all.iter().map(|f| f.name.as_str()).collect();
    assert!(
        names.contains(&"INBOX") && names.contains(&"Parent.Child"),
        "{names:?}"
    );
    let child = all.iter().find(|f| f.name == "Parent.Child").unwrap();
    assert_eq!(child.delimiter, Some('.'));
    let parent = all.iter().find(|f| f.name == "Parent").unwrap();
    assert!(
        parent.has_attribute("\\HasChildren"),
        "{:?}",
        parent.attributes
    );
    assert!(parent.is_selectable());
    let only = s.list("", "Parent.%").await.unwrap();
    assert_eq!(only.len(), 1);
    // Still usable after the filtered NAMESPACE response.
    s.noop().await.unwrap();
}

#[tokio::test]
async fn create_is_idempotent_and_delete() {
    let mut s = session(5).await;
    assert_eq!(
        s.create("_Autocrypt_SMA").await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        s.create("_Autocrypt_SMA").await.unwrap(),
        CreateOutcome::AlreadyExisted
    );
    // Names are case-sensitive: another spelling is another folder.
    assert_eq!(
        s.create("_AUTOCRYPT_SMA").await.unwrap(),
        CreateOutcome::Created
    );
    let on_disk: Vec<String> = server()
        .folders_on_disk(5)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        on_disk.contains(&"_Autocrypt_SMA".to_owned()),
        "{on_disk:?}"
    );

    s.delete("_AUTOCRYPT_SMA").await.unwrap();
    let e = s.delete("_AUTOCRYPT_SMA").await.unwrap_err();
    assert!(
        matches!(e, ImapError::NoSuchFolder { ref folder } if folder == "_AUTOCRYPT_SMA"),
        "{e:?}"
    );
    assert!(matches!(
        s.select("Missing").await,
        Err(ImapError::NoSuchFolder { .. })
    ));
    assert!(matches!(
        s.examine("Missing").await,
        Err(ImapError::NoSuchFolder { .. })
    ));
    assert!(matches!(
        s.status("Missing").await,
        Err(ImapError::NoSuchFolder { .. })
    ));
    let e = s.create("bad\r\nname").await.unwrap_err();
    assert!(matches!(e, ImapError::InvalidArgument(_)), "{e:?}");
    s.noop().await.unwrap();
}

#[tokio::test]
async fn subscriptions() {
    let mut s = session(6).await;
    s.create("Sub").await.unwrap();
    s.unsubscribe("Sub").await.unwrap(); // not subscribed: still fine
    s.subscribe("Sub").await.unwrap();
    assert!(s
        .list_subscribed("*")
        .await
        .unwrap()
        .contains(&"Sub".to_owned()));
    s.unsubscribe("Sub").await.unwrap();
    assert!(!s
        .list_subscribed("*")
        .await
        .unwrap()
        .contains(&"Sub".to_owned()));
}

#[tokio::test]
async fn append_select_examine_status() {
    let mut s = session(7).await;
    s.create("Box").await.unwrap();
    let before = s.status("Box").await.unwrap();
    assert_eq!(before.messages, 0);
    let uid1 = s
        .append("Box", &["\\Seen"], &message("one", "", 100))
        .await
        .unwrap();
    let uid2 = s
        .append("Box", &[], &message("two", "", 100))
        .await
        .unwrap();
    let (uid1, uid2) = (uid1.expect("APPENDUID"), uid2.expect("APPENDUID"));
    assert!(uid2 > uid1);

    let st = s.select("Box").await.unwrap();
    assert_eq!(st.exists, 2);
    assert_eq!(st.uid_validity, before.uid_validity);
    assert_eq!(st.uid_next, Some(uid2 + 1));
    assert!(st.highest_modseq.is_some());
    assert_eq!(s.selected_folder(), Some(("Box", false)));

    let ex = s.examine("Box").await.unwrap();
    assert_eq!((ex.exists, ex.uid_validity), (2, st.uid_validity));
    assert_eq!(s.selected_folder(), Some(("Box", true)));

    let status = s.status("Box").await.unwrap();
    assert_eq!(status.messages, 2);
    assert_eq!(status.uid_next, Some(uid2 + 1));
    assert_eq!(status.uid_validity, st.uid_validity);
    assert!(status.highest_modseq.is_some());

    let e = s
        .append("NoSuchBox", &[], &message("x", "", 10))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ImapError::NoSuchFolder { ref folder } if folder == "NoSuchBox"),
        "{e:?}"
    );
    let e = s.append("Box", &["bad flag"], b"x").await.unwrap_err();
    assert!(matches!(e, ImapError::InvalidArgument(_)));
    assert_eq!(
        server()
            .folders_on_disk(7)
            .iter()
            .find(|(n, _)| n == "Box")
            .map(|x| x.1),
        Some(2)
    );
}

#[tokio::test]
async fn fetch_headers_and_messages() {
    let mut s = session(8).await;
    fresh_folder(&mut s, "F").await;
    let mut uids = Vec::new();
    for (i, size) in [200usize, 3000, 200_000, 50].into_iter().enumerate() {
        let m = message(&format!("m{i}"), "", size);
        uids.push(s.append("F", &[], &m).await.unwrap().unwrap());
    }
    let all = s.fetch_headers(UidRange::all()).await.unwrap();
    assert_eq!(all.iter().map(|h| h.uid).collect::<Vec<_>>(), uids);
    assert!(all[0].header.windows(12).any(|w| w == b"Subject: m0\r"));
    assert!(all[0].header.ends_with(b"\r\n\r\n"));
    assert!(all[2].size > 200_000);

    let tail = s.fetch_headers(UidRange::from(uids[2]..)).await.unwrap();
    assert_eq!(tail.iter().map(|h| h.uid).collect::<Vec<_>>(), &uids[2..]);
    let mid = s
        .fetch_headers(UidRange::from(uids[1]..=uids[2]))
        .await
        .unwrap();
    assert_eq!(mid.len(), 2);
    // `n:*` beyond the last UID: IMAP returns the last message; we don't.
    let none = s
        .fetch_headers(UidRange::from(uids[3] + 1..))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");

    let cap = 100_000;
    let missing = uids[3] + 100;
    let got = s
        .fetch_messages(&[uids[2], uids[0], missing, uids[1]], cap)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|m| m.uid).collect::<Vec<_>>(),
        vec![uids[0], uids[1], uids[2]]
    );
    assert_eq!(got[0].body.as_deref(), Some(&message("m0", "", 200)[..]));
    assert_eq!(
        got[1].body.as_ref().map(Vec::len),
        Some(got[1].size as usize)
    );
    assert!(got[2].size > cap && got[2].body.is_none());
    assert!(s.fetch_messages(&[], cap).await.unwrap().is_empty());
}

#[tokio::test]
async fn big_message_round_trip() {
    let mut s = session(9).await;
    fresh_folder(&mut s, "Big").await;
    let m = message("big", "", 3 * 1024 * 1024);
    let uid = s.append("Big", &[], &m).await.unwrap().unwrap();
    let got = s.fetch_messages(&[uid], 16 * 1024 * 1024).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.as_deref(), Some(&m[..]));
}

#[tokio::test]
async fn search_and_delete_messages() {
    let mut s = session(10).await;
    fresh_folder(&mut s, "S").await;
    let mut uids = Vec::new();
    for i in 0..5 {
        let kind = if i % 2 == 0 { "sync" } else { "app" };
        let h = format!(
            "Autocrypt-SMA: v=1; kind={kind}; from=00000000000000a{i}; to=*; id={i:032x}\r\n"
        );
        uids.push(
            s.append("S", &[], &message(&format!("s{i}"), &h, 100))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let found = s.search_header("Autocrypt-SMA", "kind=app").await.unwrap();
    assert_eq!(found, vec![uids[1], uids[3]]);
    let found = s
        .search_header("Message-ID", "<s4@sma.invalid>")
        .await
        .unwrap();
    assert_eq!(found, vec![uids[4]]);
    assert!(s
        .search_header("Autocrypt-SMA", "kind=nothing")
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .search_header("X-Unicode", "päck")
        .await
        .unwrap()
        .is_empty());

    s.delete_messages(&[uids[1], uids[3]]).await.unwrap();
    let left: Vec<u32> = s
        .fetch_headers(UidRange::all())
        .await
        .unwrap()
        .iter()
        .map(|h| h.uid)
        .collect();
    assert_eq!(left, vec![uids[0], uids[2], uids[4]]);
    s.delete_messages(&[]).await.unwrap();
    // Already gone: no error.
    s.delete_messages(&[uids[1]]).await.unwrap();
    let st = s.status("S").await.unwrap();
    assert_eq!(st.messages, 3);
    assert_eq!(
        server()
            .folders_on_disk(10)
            .iter()
            .find(|(n, _)| n == "S")
            .map(|x| x.1),
        Some(3)
    );
}

#[tokio::test]
async fn message_operations_need_a_selected_folder() {
    let mut s = session(10).await;
    let e = s.fetch_headers(UidRange::all()).await.unwrap_err();
    assert!(matches!(e, ImapError::InvalidArgument(_)), "{e:?}");
}

#[tokio::test]
async fn idle_wakes_on_append_from_another_connection() {
    let mut a = session(11).await;
    fresh_folder(&mut a, "I").await;
    let mut b = session(11).await;

    // Nothing happens: times out.
    let t = Instant::now();
    assert_eq!(
        a.idle(Duration::from_millis(700)).await.unwrap(),
        IdleOutcome::TimedOut
    );
    assert!(t.elapsed() >= Duration::from_millis(700));

    let appender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.append("I", &[], &message("wake", "", 10)).await.unwrap();
        b
    });
    let t = Instant::now();
    let sent = a.commands_sent();
    assert_eq!(
        a.idle(Duration::from_secs(10)).await.unwrap(),
        IdleOutcome::Changed
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(a.commands_sent(), sent + 1, "one IDLE command");
    let _b = appender.await.unwrap();
    // The session is usable and sees the message.
    assert_eq!(a.fetch_headers(UidRange::all()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn idle_reports_changes_seen_before_it_started() {
    let mut a = session(12).await;
    fresh_folder(&mut a, "J").await;
    let mut b = session(12).await;
    b.append("J", &[], &message("early", "", 10)).await.unwrap();
    // The NOOP learns about the new message; the next idle returns at once.
    a.noop().await.unwrap();
    let t = Instant::now();
    assert_eq!(
        a.idle(Duration::from_secs(10)).await.unwrap(),
        IdleOutcome::Changed
    );
    assert!(t.elapsed() < Duration::from_millis(200));
    assert_eq!(
        a.idle(Duration::from_millis(300)).await.unwrap(),
        IdleOutcome::TimedOut
    );
}

#[tokio::test]
async fn idle_cancellation_leaves_the_session_usable() {
    let mut a = session(13).await;
    fresh_folder(&mut a, "K").await;

    // A cancel token.
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let n2 = notify.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        n2.notify_one();
    });
    let t = Instant::now();
    let out = a
        .idle_until(Duration::from_secs(10), notify.notified())
        .await
        .unwrap();
    assert_eq!(out, IdleOutcome::Interrupted);
    assert!(t.elapsed() < Duration::from_secs(2));
    a.noop().await.unwrap();

    // Dropping the future mid-IDLE: the next command ends the IDLE first.
    let r = tokio::time::timeout(Duration::from_millis(200), a.idle(Duration::from_secs(10))).await;
    assert!(r.is_err(), "idle should still be running");
    a.append("K", &[], &message("after", "", 10)).await.unwrap();
    assert_eq!(a.fetch_headers(UidRange::all()).await.unwrap().len(), 1);
    assert!(!a.is_lost());
}

#[tokio::test]
async fn own_append_to_the_selected_folder_counts_as_a_change() {
    let mut a = session(14).await;
    fresh_folder(&mut a, "L").await;
    a.append("L", &[], &message("own", "", 10)).await.unwrap();
    assert_eq!(
        a.idle(Duration::from_secs(5)).await.unwrap(),
        IdleOutcome::Changed
    );
    // Deleting our own messages is not a change.
    let uids: Vec<u32> = a
        .fetch_headers(UidRange::all())
        .await
        .unwrap()
        .iter()
        .map(|h| h.uid)
        .collect();
    a.delete_messages(&uids).await.unwrap();
    assert_eq!(
        a.idle(Duration::from_millis(300)).await.unwrap(),
        IdleOutcome::TimedOut
    );
}

#[tokio::test]
async fn messages_expunged_by_another_session_are_not_a_server_fault() {
    // Issue 20: an empty FETCH 1:* of a folder said to hold messages is a
    // server fault, unless another client expunged them meanwhile (the
    // server tells us only on a later command).
    let mut a = session(15).await;
    fresh_folder(&mut a, "Race").await;
    let uid = a
        .append("Race", &[], &message("race", "", 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.select("Race").await.unwrap().exists, 1);
    let mut b = session(15).await;
    b.select("Race").await.unwrap();
    b.delete_messages(&[uid]).await.unwrap();
    let got = a.fetch_headers(UidRange::all()).await.unwrap();
    assert!(got.is_empty(), "{got:?}");
    a.noop().await.unwrap();
}

//! Commands sent in one flight, against a real Dovecot: `status_many`,
//! `open_and_fetch_headers` and `status_and_append` give what their
//! one-at-a-time counterparts give.

mod common;

use common::{message, session};
use sma_imap::{ImapError, Transport, UidRange};

#[tokio::test]
async fn status_many_answers_each_folder_as_status_does() {
    let mut s = session(0).await;
    for f in ["Full", "Empty"] {
        s.create(f).await.unwrap();
    }
    for subject in ["a", "b"] {
        s.append("Full", &[], &message(subject, "", 50))
            .await
            .unwrap();
    }
    let sent = s.commands_sent();
    let got = s.status_many(&["Full", "Missing", "Empty"]).await.unwrap();
    // Three STATUS in one flight, and the LIST that tells a missing
    // folder from a refused one.
    assert_eq!(s.commands_sent(), sent + 4);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].as_ref().unwrap(), &s.status("Full").await.unwrap());
    assert_eq!(got[0].as_ref().unwrap().messages, 2);
    assert!(
        matches!(&got[1], Err(ImapError::NoSuchFolder { folder }) if folder == "Missing"),
        "{:?}",
        got[1]
    );
    assert_eq!(got[2].as_ref().unwrap(), &s.status("Empty").await.unwrap());
    assert_eq!(got[2].as_ref().unwrap().messages, 0);
    assert!(s.status_many(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn open_and_fetch_headers_gives_what_select_then_fetch_gives() {
    let mut s = session(1).await;
    s.create("Box").await.unwrap();
    s.create("Void").await.unwrap();
    for subject in ["one", "two", "three"] {
        s.append("Box", &[], &message(subject, "", 300))
            .await
            .unwrap();
    }
    for read_only in [true, false] {
        let (state, headers) = s
            .open_and_fetch_headers("Box", read_only, UidRange::all(), None)
            .await
            .unwrap();
        assert_eq!(s.selected_folder(), Some(("Box", read_only)));
        let again = if read_only {
            s.examine("Box").await.unwrap()
        } else {
            s.select("Box").await.unwrap()
        };
        assert_eq!(state, again);
        assert_eq!(state.exists, 3);
        assert_eq!(headers, s.fetch_headers(UidRange::all()).await.unwrap());
        assert!(String::from_utf8_lossy(&headers[1].header).contains("Subject: two"));
    }
    // Bodies come by the sizes the combined FETCH recorded.
    let (_, headers) = s
        .open_and_fetch_headers("Box", false, UidRange::all(), None)
        .await
        .unwrap();
    let uids: Vec<_> = headers.iter().map(|h| h.uid).collect();
    let bodies = s.fetch_messages(&uids, 1 << 20).await.unwrap();
    assert_eq!(bodies.len(), 3);
    assert!(bodies
        .iter()
        .all(|m| m.body.as_ref().map(Vec::len) == Some(m.size as usize)));

    let (state, headers) = s
        .open_and_fetch_headers("Void", true, UidRange::all(), None)
        .await
        .unwrap();
    assert_eq!((state.exists, headers.len()), (0, 0));
    let e = s
        .open_and_fetch_headers("Missing", true, UidRange::all(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, ImapError::NoSuchFolder { .. }), "{e:?}");
    assert_eq!(s.selected_folder(), None);
}

#[tokio::test]
async fn status_and_append_reports_each_folder_before_its_append() {
    let mut s = session(2).await;
    s.create("Held").await.unwrap();
    s.create("Fresh").await.unwrap();
    for subject in ["x", "y"] {
        s.append("Held", &[], &message(subject, "", 50))
            .await
            .unwrap();
    }
    let (m1, m2, m3) = (
        message("m1", "", 80),
        message("m2", "", 80),
        message("m3", "", 80),
    );
    let sent = s.commands_sent();
    let got = s
        .status_and_append(&[("Held", &m1), ("Missing", &m2), ("Fresh", &m3)])
        .await
        .unwrap();
    assert!(s.commands_sent() >= sent + 6);
    assert_eq!(
        got[0].status.as_ref().unwrap().messages,
        2,
        "counted before"
    );
    let uid = got[0].appended.as_ref().unwrap().expect("APPENDUID");
    assert!(
        matches!(got[1].status, Err(ImapError::NoSuchFolder { .. })),
        "{got:?}"
    );
    assert!(
        matches!(got[1].appended, Err(ImapError::NoSuchFolder { .. })),
        "{got:?}"
    );
    assert_eq!(got[2].status.as_ref().unwrap().messages, 0);
    assert!(got[2].appended.as_ref().unwrap().is_some());
    assert_eq!(s.status("Held").await.unwrap().messages, 3);
    assert_eq!(s.status("Fresh").await.unwrap().messages, 1);
    s.select("Held").await.unwrap();
    let headers = s.fetch_headers(UidRange::new(uid, uid)).await.unwrap();
    assert!(String::from_utf8_lossy(&headers[0].header).contains("Subject: m1"));
}

#[tokio::test]
async fn small_bodies_prefetched_with_the_headers_need_no_second_fetch() {
    let mut s = session(3).await;
    s.create("Box").await.unwrap();
    let small = message("small", "", 2_000);
    let big = message("big", "", sma_imap::PREFETCH_BYTES as usize + 5_000);
    let first = s
        .append("Box", &[], &small)
        .await
        .unwrap()
        .expect("APPENDUID");
    let second = s
        .append("Box", &[], &big)
        .await
        .unwrap()
        .expect("APPENDUID");
    let (_, headers) = s
        .open_and_fetch_headers("Box", false, UidRange::all(), Some(first))
        .await
        .unwrap();
    assert_eq!(headers.len(), 2);
    let sent = s.commands_sent();
    let got = s.fetch_messages(&[first], 1 << 20).await.unwrap();
    assert_eq!(
        s.commands_sent(),
        sent,
        "the small body came with the headers"
    );
    assert_eq!(got[0].body.as_deref(), Some(&small[..]));
    let got = s.fetch_messages(&[first, second], 1 << 20).await.unwrap();
    assert!(
        s.commands_sent() > sent,
        "handed out once; the big one is asked"
    );
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body.as_deref(), Some(&small[..]));
    assert_eq!(got[1].body.as_deref(), Some(&big[..]));
    // A prefetch range past every message costs nothing and changes nothing.
    let (_, again) = s
        .open_and_fetch_headers("Box", true, UidRange::all(), Some(second + 100))
        .await
        .unwrap();
    assert_eq!(again, headers);
}

#[tokio::test]
async fn create_unsubscribed_creates_once_and_leaves_the_folder_unsubscribed() {
    let mut s = session(4).await;
    s.create("Subscribed").await.unwrap();
    s.subscribe("Subscribed").await.unwrap();
    assert_eq!(
        s.create_unsubscribed("Fresh").await.unwrap(),
        sma_imap::CreateOutcome::Created
    );
    assert_eq!(
        s.create_unsubscribed("Subscribed").await.unwrap(),
        sma_imap::CreateOutcome::AlreadyExisted
    );
    let subscribed = s.list_subscribed("*").await.unwrap();
    assert!(
        !subscribed.iter().any(|f| f == "Fresh" || f == "Subscribed"),
        "{subscribed:?}"
    );
    assert!(s.status("Fresh").await.is_ok());
}

#[tokio::test]
async fn list_status_gives_every_selectable_folder_with_its_status() {
    let mut s = session(5).await;
    assert!(
        s.capabilities().has("LIST-STATUS"),
        "Dovecot offers LIST-STATUS"
    );
    for f in ["Grp", "Grp.a", "Grp.b", "Other"] {
        s.create(f).await.unwrap();
    }
    s.append("Grp.a", &[], &message("one", "", 40))
        .await
        .unwrap();
    let sent = s.commands_sent();
    let mut got = s.list_status("Grp*").await.unwrap();
    assert_eq!(
        s.commands_sent(),
        sent + 1,
        "one LIST with RETURN (STATUS ...)"
    );
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Grp", "Grp.a", "Grp.b"]);
    for (name, status) in &got {
        assert_eq!(
            status.as_ref().unwrap(),
            &s.status(name).await.unwrap(),
            "{name}"
        );
    }
    assert_eq!(got[1].1.as_ref().unwrap().messages, 1);
    assert!(s.list_status("Nothing*").await.unwrap().is_empty());
}

#[tokio::test]
async fn create_unsubscribed_all_creates_siblings_in_one_flight() {
    let mut s = session(6).await;
    s.create("Had").await.unwrap();
    s.subscribe("Had").await.unwrap();
    let sent = s.commands_sent();
    let got = s
        .create_unsubscribed_all(&["New1", "Had", "New2"])
        .await
        .unwrap();
    use sma_imap::CreateOutcome::{AlreadyExisted, Created};
    assert_eq!(got, vec![Created, AlreadyExisted, Created]);
    // Three CREATE and three UNSUBSCRIBE, and the LIST that tells an
    // existing folder from a refused one.
    assert_eq!(s.commands_sent(), sent + 7);
    let subscribed = s.list_subscribed("*").await.unwrap();
    assert!(
        !subscribed
            .iter()
            .any(|f| ["New1", "Had", "New2"].contains(&f.as_str())),
        "{subscribed:?}"
    );
    for f in ["New1", "New2"] {
        assert!(s.status(f).await.is_ok(), "{f}");
    }
    let bad = s.create_unsubscribed_all(&["Ok", "Bad\r\nName"]).await;
    assert!(matches!(bad, Err(ImapError::InvalidArgument(_))), "{bad:?}");
    assert!(
        matches!(s.status("Ok").await, Err(ImapError::NoSuchFolder { .. })),
        "an invalid name stops the flight before anything is sent"
    );
}

/// Opens a folder that does not exist, as `init` reads the announcements.
async fn open_missing(s: &mut sma_imap::ImapSession) {
    let missing = s
        .open_and_fetch_headers("Nowhere", true, UidRange::all(), Some(1))
        .await;
    assert!(
        matches!(missing, Err(ImapError::NoSuchFolder { .. })),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_listing_with_the_open_tells_a_missing_folder_and_the_special_use_ones() {
    let mut s = session(7).await;
    // Without the hint: the refused EXAMINE costs a LIST of its own.
    let sent = s.commands_sent();
    open_missing(&mut s).await;
    assert_eq!(s.commands_sent(), sent + 4);
    let expected = s.special_use_folders().await.unwrap();
    // With it: the listing rides in the flight, and answers both.
    s.list_with_next_open();
    let sent = s.commands_sent();
    open_missing(&mut s).await;
    assert_eq!(s.commands_sent(), sent + 4);
    assert_eq!(s.special_use_folders().await.unwrap(), expected);
    assert_eq!(s.commands_sent(), sent + 4, "answered from the listing");
    // Only once: the next query asks the server again.
    s.special_use_folders().await.unwrap();
    assert!(s.commands_sent() > sent + 4);
    // An existing folder opens as without the listing.
    s.create("There").await.unwrap();
    s.list_with_next_open();
    let (state, headers) = s
        .open_and_fetch_headers("There", true, UidRange::all(), None)
        .await
        .unwrap();
    assert_eq!((state.exists, headers.len()), (0, 0));
}

#[tokio::test]
async fn a_create_with_the_open_is_reported_by_the_next_create_call() {
    let mut s = session(8).await;
    // The open fails (the folder is missing); the CREATE beside it counts.
    s.create_with_next_open("Mine");
    let sent = s.commands_sent();
    let missing = s
        .open_and_fetch_headers("Absent", true, UidRange::all(), None)
        .await;
    assert!(
        matches!(missing, Err(ImapError::NoSuchFolder { .. })),
        "{missing:?}"
    );
    let after_open = s.commands_sent();
    assert_eq!(
        after_open,
        sent + 5,
        "EXAMINE, FETCH, CREATE, UNSUBSCRIBE, LIST"
    );
    // A create of another folder first does not take it.
    assert_eq!(
        s.create_unsubscribed("First").await.unwrap(),
        sma_imap::CreateOutcome::Created
    );
    let after_open = s.commands_sent();
    let got = s.create_unsubscribed_all(&["Other", "Mine"]).await.unwrap();
    use sma_imap::CreateOutcome::{AlreadyExisted, Created};
    assert_eq!(got, vec![Created, Created]);
    assert_eq!(
        s.commands_sent(),
        after_open + 2,
        "only Other's CREATE and UNSUBSCRIBE"
    );
    assert!(s.status("Mine").await.is_ok());
    assert!(!s
        .list_subscribed("*")
        .await
        .unwrap()
        .contains(&"Mine".to_owned()));
    // Reported once: the next call asks the server, which has it.
    assert_eq!(s.create_unsubscribed("Mine").await.unwrap(), AlreadyExisted);
    // A CREATE with the open that fails (the folder exists) is not taken
    // for a success.
    s.create_with_next_open("Mine");
    s.open_and_fetch_headers("Other", false, UidRange::all(), None)
        .await
        .unwrap();
    assert_eq!(s.create_unsubscribed("Mine").await.unwrap(), AlreadyExisted);
}

#[tokio::test]
async fn append_all_appends_in_order_and_reports_each_uid() {
    let mut s = session(9).await;
    s.create("Inbox9").await.unwrap();
    s.create("Other9").await.unwrap();
    s.select("Other9").await.unwrap();
    let msgs: Vec<Vec<u8>> = ["first", "second", "third"]
        .iter()
        .map(|subject| message(subject, "", 200))
        .collect();
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let sent = s.commands_sent();
    let uids = s.append_all("Inbox9", &refs).await.unwrap();
    assert_eq!(s.commands_sent(), sent + 3, "one APPEND each, nothing else");
    assert_eq!(
        uids,
        vec![Some(1), Some(2), Some(3)],
        "APPENDUID of each, in order"
    );
    assert_eq!(
        s.selected_folder(),
        Some(("Other9", false)),
        "appending leaves the selection"
    );
    s.examine("Inbox9").await.unwrap();
    let got = s.fetch_messages(&[1, 2, 3], 1 << 20).await.unwrap();
    let bodies: Vec<_> = got.into_iter().map(|m| m.body.unwrap()).collect();
    assert_eq!(bodies, msgs, "each message whole, in the order given");
    let missing = s.append_all("Missing9", &refs).await;
    assert!(
        matches!(&missing, Err(ImapError::NoSuchFolder { folder }) if folder == "Missing9"),
        "{missing:?}"
    );
    let bad = s.append_all("Bad\r\nName", &refs).await;
    assert!(matches!(bad, Err(ImapError::InvalidArgument(_))), "{bad:?}");
    assert!(s.append_all("Inbox9", &[]).await.unwrap().is_empty());
}

//! The transport against Dovecot playing less common servers
//! (`scripts/imap-server --profile`): a non-ASCII namespace prefix with
//! separator `/` (modified UTF-7 on the wire) and a server that advertises
//! only IMAP4rev1 and NAMESPACE.

mod common;

use std::time::Duration;

use common::{config, message};
use sma_imap::{CreateOutcome, IdleOutcome, ImapError, ImapSession, Security, Transport, UidRange};
use sma_testrig::Dovecot;

async fn connect(d: &Dovecot) -> ImapSession {
    ImapSession::connect(&config(d, 0, Security::Tls))
        .await
        .unwrap_or_else(|e| panic!("connect failed: {e}"))
}

#[tokio::test]
async fn non_ascii_prefix_round_trips_through_modified_utf7() {
    let d = Dovecot::start_profile(1, "utf7");
    let mut s = connect(&d).await;
    let ns = s.namespace().await.expect("namespace");
    assert_eq!(ns.prefix, "Posteingang/Ordner-ä/");
    assert_eq!(ns.delimiter, Some('/'));

    let folder = format!("{}Entwürfe & Co", ns.prefix);
    assert_eq!(s.create(&folder).await.unwrap(), CreateOutcome::Created);
    assert_eq!(
        s.create(&folder).await.unwrap(),
        CreateOutcome::AlreadyExisted
    );
    let listed = s.list("", &format!("{}*", ns.prefix)).await.unwrap();
    assert!(
        listed.iter().any(|f| f.name == folder),
        "LIST decodes names: {listed:?}"
    );
    s.unsubscribe(&folder).await.unwrap();
    s.subscribe(&folder).await.unwrap();
    assert_eq!(s.list_subscribed("*").await.unwrap(), vec![folder.clone()]);

    let uid = s.append(&folder, &[], &message("ä", "", 10)).await.unwrap();
    assert!(uid.is_some(), "APPENDUID with UIDPLUS");
    assert_eq!(s.status(&folder).await.unwrap().messages, 1);
    s.examine(&folder).await.unwrap();
    s.select(&folder).await.unwrap();
    assert_eq!(s.selected_folder(), Some((folder.as_str(), false)));
    assert_eq!(s.fetch_headers(UidRange::all()).await.unwrap().len(), 1);

    // Dovecot's NO for a missing folder carries the name in UTF-8 in its
    // text: still understood, and the session stays usable.
    let missing = format!("{}Gelöscht", ns.prefix);
    match s.select(&missing).await {
        Err(ImapError::NoSuchFolder { folder }) => assert_eq!(folder, missing),
        other => panic!("expected NoSuchFolder, got {other:?}"),
    }
    match s.status(&missing).await {
        Err(ImapError::NoSuchFolder { .. }) => {}
        other => panic!("expected NoSuchFolder, got {other:?}"),
    }
    s.delete(&folder).await.unwrap();
    assert!(matches!(
        s.delete(&folder).await,
        Err(ImapError::NoSuchFolder { .. })
    ));
    s.noop().await.unwrap();
    s.logout().await.unwrap();
}

#[tokio::test]
async fn minimal_server_gets_no_unadvertised_extension() {
    let d = Dovecot::start_profile(1, "minimal");
    let mut s = connect(&d).await;
    let caps = s.capabilities().clone();
    assert!(
        !caps.uidplus && !caps.idle && !caps.move_ && !caps.condstore && !caps.literal_plus,
        "{:?}",
        caps.raw
    );
    assert!(caps.namespace);
    let folder = "minimal";
    s.create(folder).await.unwrap();
    // Dovecot sends APPENDUID anyway; without UIDPLUS it is not relied on.
    let uid = s.append(folder, &[], &message("m1", "", 10)).await.unwrap();
    assert_eq!(uid, None);
    s.append(folder, &[], &message("m2", "", 10)).await.unwrap();
    let st = s.select(folder).await.unwrap();
    assert_eq!((st.exists, st.highest_modseq), (2, None));
    let uids: Vec<u32> = s
        .fetch_headers(UidRange::all())
        .await
        .unwrap()
        .iter()
        .map(|h| h.uid)
        .collect();
    assert_eq!(uids.len(), 2);
    // Plain EXPUNGE removes exactly the message flagged now.
    s.delete_messages(&uids[..1]).await.unwrap();
    let left: Vec<u32> = s
        .fetch_headers(UidRange::all())
        .await
        .unwrap()
        .iter()
        .map(|h| h.uid)
        .collect();
    assert_eq!(left, uids[1..]);
    // No IDLE: NOOP polling notices another session's append.
    s.set_poll_interval(Duration::from_millis(100));
    let mut other = connect(&d).await;
    let (idle, appended) = tokio::join!(s.idle(Duration::from_secs(20)), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        other.append(folder, &[], &message("m3", "", 10)).await
    });
    appended.unwrap();
    assert_eq!(idle.unwrap(), IdleOutcome::Changed);
    s.logout().await.unwrap();
}

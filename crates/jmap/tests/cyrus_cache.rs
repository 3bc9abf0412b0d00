//! The session cache (`JmapConfig::session_cache`) against Cyrus 3.6: a
//! session started from it works without reading the session resource,
//! and one it misleads (URLs gone, another account, a folder made again)
//! recovers. Ignored by default like every Cyrus test (Cyrus conflicts with
//! the system's Dovecot and is unpacked privately); `scripts/compat-test
//! cyrus` runs them.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sma_imap::{ImapConfig, ImapError, ImapSession, Security, Transport, UidRange};
use sma_jmap::{JmapConfig, JmapSession};
use sma_testrig::ScriptServer;

fn cyrus(test: &str) -> ScriptServer {
    let root = std::env::var("SMA_COMPAT_ROOT").unwrap_or_else(|_| "/var/tmp/sma-compat".into());
    let httpd = Path::new(&root).join("cyrus/root/usr/lib/cyrus/bin/httpd");
    assert!(
        httpd.exists(),
        "{test}: Cyrus with httpd is not unpacked ({} missing): run scripts/compat-test cyrus (as root)",
        httpd.display()
    );
    ScriptServer::start("cyrus", 1, &["--jmap"])
}

fn config(server: &ScriptServer, cache: &Path) -> JmapConfig {
    let a = server.account(0);
    let url = server.jmap_url().expect("the rig printed SMA_JMAP_URL");
    let mut c = JmapConfig::new(url, &a.user, &a.password);
    c.session_cache = Some(cache.to_owned());
    c
}

async fn imap(server: &ScriptServer) -> ImapSession {
    let a = server.account(0);
    let mut c = ImapConfig::new("127.0.0.1", Security::Plain, &a.user, a.password.as_str());
    c.port = server.port();
    ImapSession::connect(&c).await.expect("IMAP session")
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

//! Reconnecting after the server goes away (own Dovecot: it is stopped).

mod common;

use std::time::Duration;

use common::config;
use sma_imap::{connect_with_retry, Backoff, IdleOutcome, ImapSession, Security, Transport};
use sma_testrig::Dovecot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_server_restart() {
    let mut d = Dovecot::start(1);
    let c = config(&d, 0, Security::Tls);
    let mut old = ImapSession::connect(&c).await.unwrap();
    old.create("R").await.unwrap();
    old.select("R").await.unwrap();

    // An idling session notices the server going away.
    let idler = tokio::spawn(async move {
        let r = old.idle(Duration::from_secs(30)).await;
        (old, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| d.stop());
    let (mut old, r) = idler.await.unwrap();
    match r {
        Err(e) => assert!(e.is_connection_lost(), "{e:?}"),
        Ok(IdleOutcome::Changed) | Ok(_) => {
            // The server may have said BYE and closed cleanly; the next
            // command must then report the loss.
        }
    }
    let e = old.noop().await.unwrap_err();
    assert!(e.is_connection_lost(), "{e:?}");
    assert!(old.is_lost());
    // Stays lost, clearly.
    assert!(old.select("R").await.unwrap_err().is_connection_lost());

    // Server down: retries, then comes back.
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1200));
        d.start_again();
        d
    });
    let mut retries = Vec::new();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
    let mut s = connect_with_retry(&c, &mut backoff, 30, |n, e, delay| {
        assert!(e.is_retryable(), "{e:?}");
        retries.push((n, delay));
    })
    .await
    .unwrap_or_else(|e| panic!("no reconnect: {e}"));
    let _d = restarter.join().unwrap();
    assert!(!retries.is_empty());
    assert_eq!(retries[0], (1, Duration::from_millis(200)));
    assert_eq!(backoff.attempts(), 0, "reset on success");
    s.select("R").await.unwrap();
    s.noop().await.unwrap();
    old.logout().await.unwrap(); // lost: logout still succeeds
    s.logout().await.unwrap();
}

#[tokio::test]
async fn auth_errors_are_not_retried() {
    let d = Dovecot::start(1);
    let mut c = config(&d, 0, Security::Tls);
    c.password = "wrong".into();
    let mut calls = 0;
    let e = connect_with_retry(&c, &mut Backoff::default(), 5, |_, _, _| calls += 1)
        .await
        .unwrap_err();
    assert!(e.is_auth(), "{e:?}");
    assert_eq!(calls, 0);
}

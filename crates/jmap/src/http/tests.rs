//! A request cut on its way: sent again when it only reads, never when it
//! writes. The server is a socket on 127.0.0.1 that closes its first
//! connection after reading the request, without an answer (what a server
//! closing an idle kept-alive connection does to a request that meets the
//! close), and answers on the next ones.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;
use sma_imap::ImapError;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::Http;
use crate::config::JmapConfig;

/// Starts the server; returns its API URL and the count of connections.
async fn cutting_server() -> (reqwest::Url, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let conns = Arc::new(AtomicUsize::new(0));
    let count = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as many body bytes as it announces.
                loop {
                    let Ok(k) = conn.read(&mut buf).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..k]);
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                if n == 0 {
                    return; // closed without an answer
                }
                let body = json!({
                    "methodResponses": [["Mailbox/get", {"list": [], "notFound": []}, "m"]],
                    "sessionState": "0",
                })
                .to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    let url = format!("http://127.0.0.1:{port}/jmap/");
    (url.parse().expect("url"), conns)
}

#[tokio::test]
async fn a_read_cut_on_its_way_is_sent_again() {
    let (url, conns) = cutting_server().await;
    let http = Http::new(JmapConfig::new(url.as_str(), "u@x", "pw")).expect("client");
    let r = http
        .api(
            &url,
            vec![json!(["Mailbox/get", {"accountId": "a", "ids": null}, "m"])],
            "Mailbox/get",
        )
        .await
        .expect("answered the second time");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].id, "m");
    assert_eq!(
        conns.load(Ordering::SeqCst),
        2,
        "one connection cut, one answered"
    );
}

#[tokio::test]
async fn a_write_cut_on_its_way_is_not_sent_again() {
    let (url, conns) = cutting_server().await;
    let http = Http::new(JmapConfig::new(url.as_str(), "u@x", "pw")).expect("client");
    let err = http
        .api(
            &url,
            vec![
                json!(["Mailbox/get", {"accountId": "a", "ids": null}, "m"]),
                json!(["Email/set", {"accountId": "a", "destroy": ["x"]}, "d"]),
            ],
            "Email/set",
        )
        .await
        .expect_err("a write is not repeated");
    assert!(matches!(err, ImapError::ConnectionLost(_)), "{err:?}");
    assert_eq!(conns.load(Ordering::SeqCst), 1, "sent once");
}

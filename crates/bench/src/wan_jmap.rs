//! The WAN part over JMAP (`--server cyrus-jmap`): the same `sma` commands
//! on devices made with `sma init --jmap`, the delay proxy in front of
//! Cyrus's JMAP HTTP port.
//!
//! The floor of every command is what any JMAP client pays at the least: a
//! TCP connection and one API request (`Core/echo`) with its answer, plain
//! HTTP/1.1 through the same proxy (2 RTT). A JMAP request carries every
//! method call a step needs, so one request is the floor whatever the
//! command. The pairing adds its two protocol hops; `watch` delivery, on a
//! connection already open, is one request.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::rig::Rig;
use crate::wan_steps::{COMMANDS, PAIRING_HOPS, WATCH_DELIVERY};

/// Round trips issue 19 allows at 50 ms RTT over JMAP.
pub fn target(command: &str) -> Option<f64> {
    match command {
        "send --to one device" | "recv, nothing to do" | "sync, nothing to do" => Some(3.0),
        _ => None,
    }
}

/// The floor of every command, in [`COMMANDS`] order.
pub async fn floor(rig: &Rig, port: u16, account: usize, rtt_ms: f64) -> Result<Vec<Duration>> {
    let mut out = Vec::new();
    for command in COMMANDS {
        let mut start = Instant::now();
        let mut tcp = TcpStream::connect((rig.server.host(), port)).await?;
        tcp.set_nodelay(true)?;
        if command == WATCH_DELIVERY {
            // A watching client's connection is open already: one request
            // on it (the proxy holds a new connection's first bytes one
            // RTT, as a real handshake would cost).
            echo(&mut tcp, rig, port, account).await?;
            start = Instant::now();
        }
        echo(&mut tcp, rig, port, account).await?;
        let mut d = start.elapsed();
        if command.starts_with("pairing") {
            d += Duration::from_secs_f64(PAIRING_HOPS * rtt_ms / 1000.0);
        }
        out.push(d);
    }
    Ok(out)
}

/// One `Core/echo` request and its whole answer.
async fn echo(tcp: &mut TcpStream, rig: &Rig, port: u16, account: usize) -> Result<()> {
    let acct = rig.server.account(account);
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", acct.user, acct.password));
    let body = r#"{"using":["urn:ietf:params:jmap:core"],"methodCalls":[["Core/echo",{"floor":true},"0"]]}"#;
    let request = format!(
        "POST /jmap/ HTTP/1.1\r\nHost: {}:{port}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        rig.server.host(),
        body.len()
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            bail!("floor: the JMAP server closed before answering");
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(done) = complete(&got)? {
            if !done.starts_with("HTTP/1.1 200") {
                bail!("floor: the JMAP server answered {done:?}");
            }
            return Ok(());
        }
    }
}

/// The status line once `got` holds a whole HTTP response (by
/// `Content-Length`, or the last chunk of a chunked body).
fn complete(got: &[u8]) -> Result<Option<String>> {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let status = head.lines().next().unwrap_or_default().to_uppercase();
    let body = &got[end + 4..];
    if let Some(len) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        let len: usize = len.trim().parse().context("floor: a bad Content-Length")?;
        return Ok((body.len() >= len).then_some(status));
    }
    if head.contains("transfer-encoding: chunked") {
        return Ok(body.ends_with(b"0\r\n\r\n").then_some(status));
    }
    bail!("floor: a response of unknown length: {head}")
}

#[cfg(test)]
mod tests {
    use super::complete;

    #[test]
    fn a_response_is_complete_by_its_length_or_its_last_chunk() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n";
        let mut r = head.to_vec();
        r.extend_from_slice(b"ab");
        assert_eq!(complete(&r).unwrap(), None);
        r.extend_from_slice(b"cd");
        assert_eq!(complete(&r).unwrap().as_deref(), Some("HTTP/1.1 200 OK"));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n";
        assert_eq!(complete(chunked).unwrap(), None);
        let mut c = chunked.to_vec();
        c.extend_from_slice(b"0\r\n\r\n");
        assert!(complete(&c).unwrap().is_some());
        assert!(complete(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}

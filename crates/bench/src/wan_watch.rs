//! `watch` delivery on a simulated wide-area network.
//!
//! The product: a `sma watch` process on B, connected through the delay
//! proxy, and `sma send --to B` processes on A, through the proxy too. A
//! first message proves the watch is running; then, once B is back in
//! IDLE, the timed message: its delivery is the time from `send`'s exit
//! (its APPEND answered) to the message's line on the watch's output.
//!
//! The floor: a raw client through the proxy IDLEs on a folder and, woken,
//! sends `DONE` and the FETCH of the body in one write; another session
//! APPENDs through the proxy; the delivery is the time from the APPEND's
//! answer to the FETCH's answer. Both start the
//! clock at the same point (the sender has the APPEND's answer), so the
//! issue's bound compares them directly: product ≤ floor + 1 RTT.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sma::ImapSession;
use sma_imap::Transport;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::cli::sma;
use crate::proxy::DelayProxy;
use crate::rig::{raw_message, Rig, Sec};
use crate::wan_steps::tls_connect;

/// Round trips above the floor the issue (17) allows `watch` delivery.
pub const ROUND_TRIPS_ABOVE_FLOOR: f64 = 1.0;

/// How long a delivery may take before the run fails.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Pause after a delivery so the receiver is back in IDLE: a paced
/// message, not one that arrives while the round still runs.
fn settle(rtt_ms: f64) -> Duration {
    Duration::from_millis(300) + Duration::from_secs_f64(4.0 * rtt_ms / 1000.0)
}

/// A `sma watch` process whose output lines arrive, timestamped, on a
/// channel; killed when dropped.
struct Watching {
    child: Child,
    lines: std_mpsc::Receiver<(String, Instant)>,
}

impl Watching {
    fn start(rig: &Rig, bin: &Path, account: usize, home: &Path) -> Result<Watching> {
        let mut child = sma(bin, rig, account, home)
            .arg("watch")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start sma watch")?;
        let out = child.stdout.take().context("sma watch has no stdout")?;
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((line, Instant::now())).is_err() {
                    break;
                }
            }
        });
        Ok(Watching { child, lines })
    }

    /// When the message whose body contains `marker` (base64) was printed.
    fn delivered(&self, marker_b64: &str) -> Result<Instant> {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (line, at) = self
                .lines
                .recv_timeout(left)
                .map_err(|_| anyhow!("sma watch did not deliver the message within 60 s"))?;
            if line.contains("body_b64") && line.contains(marker_b64) {
                return Ok(at);
            }
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 255-byte body whose base64 is unique to `tag` (a multiple of 3 bytes
/// keeps the prefix's encoding independent of what follows).
fn body(tag: &str) -> (Vec<u8>, String) {
    use base64::Engine as _;
    let head = format!("{tag:<15}").into_bytes();
    let marker = base64::engine::general_purpose::STANDARD.encode(&head);
    let mut b = head;
    b.resize(255, b'x');
    (b, marker)
}

/// The product's `watch` delivery on B of a message `sma send` on A
/// appended; both devices' configs already point at the proxy.
pub fn product(
    rig: &Rig,
    bin: &Path,
    account: usize,
    (a, b_id): (&Path, &str),
    b: &Path,
    rtt_ms: f64,
) -> Result<Duration> {
    let watching = Watching::start(rig, bin, account, b)?;
    let mut sent = Instant::now();
    for tag in ["wan-warmup", "wan-timed"] {
        let (content, marker) = body(tag);
        let file = rig.home(account, tag);
        std::fs::write(&file, content).context("cannot write the message body")?;
        let out = sma(bin, rig, account, a)
            .args(["send", "--to", b_id])
            .arg(&file)
            .output()
            .context("cannot run sma send")?;
        sent = Instant::now();
        if !out.status.success() {
            bail!(
                "sma send failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let at = watching.delivered(&marker)?;
        if tag == "wan-timed" {
            return Ok(at.saturating_duration_since(sent));
        }
        std::thread::sleep(settle(rtt_ms));
    }
    Ok(sent.elapsed())
}

/// The floor: a raw client IDLEs on `folder` through the proxy and, woken,
/// sends `DONE` and the body's FETCH in one write; another session APPENDs
/// through the proxy.
pub async fn floor(
    rig: &Rig,
    proxy: &DelayProxy,
    account: usize,
    folder: &str,
    rtt_ms: f64,
) -> Result<Duration> {
    let mut config = rig
        .server_config(account)
        .imap_config(&rig.password(account));
    config.port = proxy.port();
    let mut sender = ImapSession::connect(&config).await?;
    let tcp = TcpStream::connect((rig.server.host(), proxy.port())).await?;
    tcp.set_nodelay(true)?;
    let acct = rig.server.account(account);
    let login = format!("LOGIN \"{}\" \"{}\"", acct.user, acct.password);
    let (tx, mut rx) = mpsc::unbounded_channel::<tokio::time::Instant>();
    let waiting = async {
        match rig.sec {
            Sec::Plain => raw_waiter(tcp, &login, folder, tx).await,
            Sec::Tls => raw_waiter(tls_connect(rig, tcp).await?, &login, folder, tx).await,
        }
    };
    let driver = async {
        tokio::time::sleep(settle(rtt_ms)).await;
        let mut delivery = Duration::ZERO;
        for tag in ["wan-warmup", "wan-timed"] {
            sender.append(folder, &[], &raw_message(2048, tag)).await?;
            let sent = tokio::time::Instant::now();
            let at = timeout(DELIVERY_TIMEOUT, rx.recv())
                .await
                .context("floor: IDLE did not wake within 60 s")?
                .ok_or_else(|| anyhow!("the floor's IDLE ended"))?;
            delivery = at.saturating_duration_since(sent);
            tokio::time::sleep(settle(rtt_ms)).await;
        }
        Ok::<_, anyhow::Error>(delivery)
    };
    tokio::select! {
        r = waiting => bail!("the floor's IDLE ended early: {r:?}"),
        d = driver => d,
    }
}

/// Logs in, selects `folder` and IDLEs; on each `EXISTS` sends `DONE` and
/// the newest message's FETCH together, reports when that FETCH is
/// answered, and IDLEs again. Runs until the connection fails.
async fn raw_waiter<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    login: &str,
    folder: &str,
    tx: mpsc::UnboundedSender<tokio::time::Instant>,
) -> Result<()> {
    let start = format!("w0 {login}\r\nw1 SELECT \"{folder}\"\r\nw2 IDLE\r\n");
    s.write_all(start.as_bytes()).await?;
    s.flush().await?;
    let mut buf = Vec::new();
    let mut tag = 2u32;
    let mut idling = false;
    let mut fetching: Option<String> = None;
    loop {
        let line = read_line(&mut s, &mut buf).await?;
        if let Some(t) = &fetching {
            if line.starts_with(t.as_str()) {
                if !line[t.len()..].starts_with("OK") {
                    bail!("floor: FETCH failed: {line}");
                }
                let _ = tx.send(tokio::time::Instant::now());
                fetching = None;
                tag += 2;
                s.write_all(format!("w{tag} IDLE\r\n").as_bytes()).await?;
                s.flush().await?;
            }
            continue;
        }
        if line.starts_with('+') {
            idling = true;
        } else if idling && line.starts_with("* ") && line.ends_with(" EXISTS") {
            let seq = line[2..line.len() - " EXISTS".len()].trim();
            idling = false;
            let fetch = format!("w{} FETCH {seq} BODY.PEEK[]\r\n", tag + 1);
            s.write_all(format!("DONE\r\n{fetch}").as_bytes()).await?;
            s.flush().await?;
            fetching = Some(format!("w{} ", tag + 1));
        } else if line.starts_with('w') && (line.contains(" NO ") || line.contains(" BAD ")) {
            bail!("floor: the server refused: {line}");
        }
    }
}

/// The next CRLF-terminated line of `s` (lines inside literals included).
async fn read_line<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<String> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            return Ok(line);
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("floor: the server closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

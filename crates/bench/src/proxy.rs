//! An in-process TCP delay proxy: a stand-in for a real network between a
//! client and the loopback Dovecot.
//!
//! Every chunk read from one side is written to the other side `delay`
//! later (one way), so a round trip costs twice the delay. Order within a
//! direction is kept; the two directions are independent tasks, so a
//! chunk waiting in one never holds up the other. The delay can be changed
//! between measurements (it applies to chunks read after the change).
//!
//! With `trace` on, the proxy also records the lines the client sends
//! (readable only on plain connections) with the time they left, so a run
//! can attribute round trips to IMAP commands.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One line a client sent, as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Traced {
    /// Connection number (from 1, in accept order).
    pub conn: usize,
    /// When the line left the client, since the trace was cleared.
    pub at: Duration,
    /// The line, cut to 100 characters, a LOGIN's password masked.
    pub line: String,
}

/// The variable that fixes the proxy's port. A JMAP server whose session
/// resource names absolute URLs of its own address (Stalwart names its
/// configured public URL) must name the proxy's instead, or clients go
/// around it: set this, and have the server's script make its public URL
/// `http://127.0.0.1:<port>`.
pub const PROXY_PORT_VAR: &str = "SMA_BENCH_PROXY_PORT";

#[derive(Default)]
struct Shared {
    delay_us: AtomicU64,
    conns: AtomicUsize,
    trace_on: std::sync::atomic::AtomicBool,
    trace: Mutex<(Option<Instant>, Vec<Traced>)>,
}

/// A running delay proxy (on its own thread and runtime, so that a caller
/// blocked on a child process does not stall it).
pub struct DelayProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl DelayProxy {
    /// Starts a proxy on loopback in front of `upstream`, with no delay,
    /// on port [`PROXY_PORT_VAR`] if that is set (else any free port).
    pub fn start(upstream: SocketAddr) -> Result<DelayProxy> {
        let shared = Arc::new(Shared::default());
        let port = match std::env::var(PROXY_PORT_VAR) {
            Ok(p) => p
                .parse()
                .with_context(|| format!("{PROXY_PORT_VAR}={p:?} is not a port"))?,
            Err(_) => 0,
        };
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("cannot bind the delay proxy (port {port})"))?;
        let addr = std_listener.local_addr()?;
        let sh = shared.clone();
        serve_on_own_thread("delay-proxy", std_listener, move |client| {
            let sh = sh.clone();
            async move {
                let _ = relay(client, upstream, sh).await;
            }
        })?;
        Ok(DelayProxy { addr, shared })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Sets the one-way delay (applies to bytes read from now on).
    pub fn set_delay(&self, one_way: Duration) {
        self.shared
            .delay_us
            .store(one_way.as_micros() as u64, Ordering::SeqCst);
    }

    /// Starts recording client lines (clearing what was recorded).
    pub fn trace_start(&self) {
        let mut t = self.shared.trace.lock().expect("trace lock");
        *t = (Some(Instant::now()), Vec::new());
        self.shared.trace_on.store(true, Ordering::SeqCst);
    }

    /// Stops recording and returns the lines.
    pub fn trace_take(&self) -> Vec<Traced> {
        self.shared.trace_on.store(false, Ordering::SeqCst);
        let mut t = self.shared.trace.lock().expect("trace lock");
        std::mem::take(&mut t.1)
    }
}

/// Accepts connections on `listener` on a thread and runtime of their own
/// (so that a caller blocked on a child process does not stall them),
/// each served by a task of `serve`.
pub(crate) fn serve_on_own_thread<F, Fut>(
    name: &str,
    listener: std::net::TcpListener,
    serve: F,
) -> Result<()>
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("listener runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("listener");
                loop {
                    if let Ok((client, _)) = listener.accept().await {
                        tokio::spawn(serve(client));
                    }
                }
            });
        })
        .with_context(|| format!("cannot start the {name} thread"))?;
    Ok(())
}

async fn relay(client: TcpStream, upstream: SocketAddr, sh: Arc<Shared>) -> Result<()> {
    let conn = sh.conns.fetch_add(1, Ordering::SeqCst) + 1;
    let server = TcpStream::connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    // The TCP handshake happened on loopback, in no time; on a real
    // network the client could send only one RTT later, and the server's
    // first bytes (a greeting) would arrive one RTT later too. So nothing
    // is delivered, either way, before one RTT plus the one-way delay.
    let delay = Duration::from_micros(sh.delay_us.load(Ordering::SeqCst));
    let open_at = tokio::time::Instant::now() + 2 * delay;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(pump(cr, sw, sh.clone(), open_at, Some(conn)));
    let down = tokio::spawn(pump(sr, cw, sh, open_at, None));
    let _ = up.await;
    let _ = down.await;
    Ok(())
}

/// Copies `from` to `to`, each chunk `delay` after it was read (or after
/// `open_at`, the simulated end of the TCP handshake). `trace`: the
/// connection number when this is the client-to-server direction.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    sh: Arc<Shared>,
    open_at: tokio::time::Instant,
    trace: Option<usize>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if chunk.is_empty() {
                break;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut partial = Vec::new();
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        // Acknowledge at once, as sma does after each flight: a server
        // that writes a flight's answers one by one with Nagle on (Cyrus)
        // would otherwise wait for this socket's delayed ACK (40 ms), a
        // wait no direct connection of sma's has.
        quickack(from.as_ref());
        let delay = Duration::from_micros(sh.delay_us.load(Ordering::SeqCst));
        let due = tokio::time::Instant::now().max(open_at) + delay;
        if let Some(conn) = trace {
            if n > 0 && sh.trace_on.load(Ordering::SeqCst) {
                record(&sh, conn, &mut partial, &buf[..n]);
            }
        }
        // An empty chunk tells the writer to close.
        if tx.send((due, buf[..n].to_vec())).is_err() || n == 0 {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

fn record(sh: &Shared, conn: usize, partial: &mut Vec<u8>, data: &[u8]) {
    partial.extend_from_slice(data);
    let mut t = sh.trace.lock().expect("trace lock");
    let at = t.0.map(|s| s.elapsed()).unwrap_or_default();
    while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
        let raw: Vec<u8> = partial.drain(..=pos).collect();
        let text = String::from_utf8_lossy(&raw);
        let text = text.trim_end();
        let printable = text.chars().all(|c| !c.is_control());
        if !printable || text.is_empty() {
            continue;
        }
        let mut line: String = text.chars().take(100).collect();
        let words: Vec<&str> = line.split(' ').collect();
        if words.len() >= 4 && words[1].eq_ignore_ascii_case("LOGIN") {
            line = format!("{} LOGIN {} ***", words[0], words[2]);
        }
        t.1.push(Traced { conn, at, line });
    }
    // Message bodies (literals) are long: keep only a line's start.
    if partial.len() > 4096 {
        partial.clear();
    }
}

/// Sets `TCP_QUICKACK` (Linux; elsewhere nothing).
fn quickack(tcp: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = tcp;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delays_each_direction_and_keeps_order() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let proxy = DelayProxy::start(upstream).unwrap();
        proxy.set_delay(Duration::from_millis(20));
        let mut c = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        let start = Instant::now();
        c.write_all(b"one\r\n").await.unwrap();
        c.write_all(b"two\r\n").await.unwrap();
        let mut got = Vec::new();
        while got.len() < 10 {
            let mut buf = [0u8; 64];
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"one\r\ntwo\r\n");
        // Handshake (one RTT) plus the echo (one RTT). Only a lower bound:
        // a busy machine may take longer, never less.
        assert!(start.elapsed() >= Duration::from_millis(80));
    }
}

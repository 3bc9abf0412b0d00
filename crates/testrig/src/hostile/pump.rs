//! The proxy's runtime: accepting, and pumping both directions of each
//! connection while applying the rules.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use super::{lock, Action, Piece, Reply, Shared, Then};

/// Longest line the proxy reads (either side); longer ones end the
/// connection.
const MAX_LINE: u64 = 16 << 20;

/// Bytes written at a time for a [`Piece::Fill`].
const FILL_CHUNK: usize = 64 * 1024;

/// A command forwarded to the server whose answer is outstanding.
#[derive(Debug)]
struct Pending {
    tag: String,
    inject: Option<String>,
    close_after: bool,
}

/// One client connection.
struct Conn {
    client: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Mutex<VecDeque<Pending>>,
}

/// How the client side ended.
enum Outcome {
    Close,
    /// Keep the connection open and silent until the client goes.
    Hang(BufReader<OwnedReadHalf>),
}

/// Runs the proxy until `stopped` fires; connections die with it.
pub(super) fn run(
    listener: std::net::TcpListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sma-testrig: proxy runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("sma-testrig: proxy listener: {e}");
                return;
            }
        };
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                accepted = listener.accept() => match accepted {
                    Ok((sock, _)) => {
                        shared.connections.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(connection(sock, upstream, shared.clone()));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
            }
        }
    });
}

async fn connection(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let conn = Arc::new(Conn {
        client: tokio::sync::Mutex::new(cw),
        pending: Mutex::new(VecDeque::new()),
    });
    let outcome = tokio::select! {
        o = client_to_server(BufReader::new(cr), sw, conn.clone(), shared) => o,
        () = server_to_client(BufReader::new(sr), conn.clone()) => Outcome::Close,
    };
    if let Outcome::Hang(mut cr) = outcome {
        // The server side is gone; the client gets nothing more and may
        // talk to itself until it gives up.
        let mut sink = [0u8; 4096];
        while matches!(cr.read(&mut sink).await, Ok(n) if n > 0) {}
    }
    drop(conn);
}

/// Reads one line (up to LF) into `line`; false at the end or on error.
async fn read_line<R: AsyncBufReadExt + Unpin>(r: &mut R, line: &mut Vec<u8>) -> bool {
    line.clear();
    matches!((&mut *r).take(MAX_LINE).read_until(b'\n', line).await, Ok(n) if n > 0)
}

/// Copies exactly `n` bytes; false if the stream ended first or failed.
async fn copy_exact<R, W>(r: &mut R, w: &mut W, n: u64) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    matches!(tokio::io::copy(&mut (&mut *r).take(n), w).await, Ok(copied) if copied == n)
}

/// Whether a client line starts a command (`tag SP ...`); `DONE` and SASL
/// continuation lines do not.
fn is_command(line: &[u8]) -> bool {
    let text = line.trim_ascii();
    text.contains(&b' ') && !text.eq_ignore_ascii_case(b"DONE")
}

/// The first UID of the UID set of a `UID FETCH/STORE/...` command.
fn uid_of(command: &str) -> String {
    let mut words = command.split_whitespace();
    match words.next() {
        Some(w) if w.eq_ignore_ascii_case("UID") => words
            .nth(1)
            .unwrap_or("")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect(),
        _ => String::new(),
    }
}

fn fill(text: &str, tag: &str, uid: &str) -> String {
    text.replace("{tag}", tag).replace("{uid}", uid)
}

async fn client_to_server(
    mut cr: BufReader<OwnedReadHalf>,
    mut sw: OwnedWriteHalf,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
) -> Outcome {
    let mut line = Vec::new();
    let mut continued = false;
    loop {
        if !read_line(&mut cr, &mut line).await {
            return Outcome::Close;
        }
        if !continued && is_command(&line) {
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            let (tag, rest) = text.split_once(' ').unwrap_or((&text, ""));
            let uid = uid_of(rest);
            let (inject, close_after) = match shared.on_command(rest) {
                Some(Action::Respond(reply)) => {
                    let mut w = conn.client.lock().await;
                    if write_reply(&mut *w, &reply, tag, &uid).await.is_err() {
                        return Outcome::Close;
                    }
                    match reply.then {
                        Then::Continue => continue,
                        Then::Close => return Outcome::Close,
                        Then::Hang => return Outcome::Hang(cr),
                    }
                }
                Some(Action::InjectBefore(t)) if !t.is_empty() => {
                    (Some(fill(&t, tag, &uid)), false)
                }
                Some(Action::CloseAfter) => (None, true),
                _ => (None, false),
            };
            lock(&conn.pending).push_back(Pending {
                tag: tag.to_owned(),
                inject,
                close_after,
            });
        }
        if sw.write_all(&line).await.is_err() {
            return Outcome::Close;
        }
        let literal = literal_suffix(&line);
        if let Some(n) = literal {
            if !copy_exact(&mut cr, &mut sw, n).await {
                return Outcome::Close;
            }
        }
        continued = literal.is_some();
    }
}

async fn server_to_client(mut sr: BufReader<OwnedReadHalf>, conn: Arc<Conn>) {
    let mut line = Vec::new();
    let mut starts_response = true;
    let mut close = false;
    loop {
        if !read_line(&mut sr, &mut line).await {
            return;
        }
        let mut w = conn.client.lock().await;
        if starts_response {
            let (inject, done) = {
                let mut pending = lock(&conn.pending);
                let inject = pending.front_mut().and_then(|p| p.inject.take());
                let tagged = pending
                    .front()
                    .is_some_and(|p| line.starts_with(format!("{} ", p.tag).as_bytes()));
                let done = if tagged { pending.pop_front() } else { None };
                (inject, done)
            };
            if let Some(text) = inject {
                if w.write_all(text.as_bytes()).await.is_err() {
                    return;
                }
            }
            if let Some(p) = done {
                close = p.close_after;
            }
        }
        if w.write_all(&line).await.is_err() {
            return;
        }
        let literal = literal_suffix(&line);
        if let Some(n) = literal {
            if !copy_exact(&mut sr, &mut *w, n).await {
                return;
            }
        }
        starts_response = literal.is_none();
        if close && starts_response {
            let _ = w.shutdown().await;
            return;
        }
    }
}

/// Sends a scripted reply.
async fn write_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    reply: &Reply,
    tag: &str,
    uid: &str,
) -> std::io::Result<()> {
    for piece in &reply.pieces {
        match piece {
            Piece::Text(t) => w.write_all(fill(t, tag, uid).as_bytes()).await?,
            Piece::Fill { byte, len } => {
                let chunk = vec![*byte; FILL_CHUNK];
                let mut left = *len;
                while left > 0 {
                    let n = usize::try_from(left).unwrap_or(FILL_CHUNK).min(FILL_CHUNK);
                    w.write_all(&chunk[..n]).await?;
                    left -= n as u64;
                }
            }
            Piece::Trickle { byte, count, every } => {
                for _ in 0..*count {
                    w.write_all(&[*byte]).await?;
                    w.flush().await?;
                    tokio::time::sleep(*every).await;
                }
            }
            Piece::Pause(d) => tokio::time::sleep(*d).await,
        }
    }
    w.flush().await
}

/// If `line` ends with a literal announcement (`{n}`, `{n+}`), its length.
fn literal_suffix(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"\n")?;
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let body = body.strip_suffix(b"}")?;
    let body = body.strip_suffix(b"+").unwrap_or(body);
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_uids() {
        assert!(is_command(b"S1 NOOP\r\n"));
        assert!(!is_command(b"DONE\r\n"));
        assert!(!is_command(b"AGJvYgBwYXNz\r\n"));
        assert_eq!(uid_of("UID FETCH 12:15,17 (UID)"), "12");
        assert_eq!(uid_of("SELECT \"x\""), "");
        assert_eq!(fill("{tag} OK {uid}", "S4", "9"), "S4 OK 9");
        assert_eq!(literal_suffix(b"* 1 FETCH (BODY[] {12}\r\n"), Some(12));
        assert_eq!(literal_suffix(b"A1 APPEND x {3+}\r\n"), Some(3));
        assert_eq!(literal_suffix(b"* OK\r\n"), None);
    }
}

//! The byte stream under the parser: plain TCP or TLS, with the
//! [`Framer`] on the read side and a progress clock for timeouts.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::framer::{Frame, Framer, Overrun};
use crate::limits::Limits;

/// Bytes read from the socket at a time.
const SCRATCH: usize = 16 * 1024;

/// Plain TCP or TLS over TCP.
pub(crate) enum NetStream {
    /// Unencrypted.
    Plain(TcpStream),
    /// TLS (implicit or after STARTTLS).
    Tls(Box<TlsStream<TcpStream>>),
}

impl NetStream {
    fn is_tls(&self) -> bool {
        matches!(self, NetStream::Tls(_))
    }
}

impl AsyncRead for NetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_flush(cx),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why no response could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The socket failed.
    Io(io::Error),
    /// The server broke a bound; see [`Overrun`].
    Overrun(Overrun),
    /// The connection ended in the middle of a response.
    Truncated,
}

/// The connection as the command engine sees it: complete responses in,
/// bytes out.
pub(crate) struct ImapIo {
    stream: NetStream,
    framer: Framer,
    scratch: Box<[u8]>,
    /// Unframed bytes are `scratch[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    /// Bytes written since [`ImapIo::begin`].
    sent: u64,
    last_progress: Instant,
}

impl ImapIo {
    pub(crate) fn new(stream: NetStream) -> Self {
        ImapIo {
            stream,
            framer: Framer::default(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            sent: 0,
            last_progress: Instant::now(),
        }
    }

    /// Gives back the socket, dropping anything buffered (used for STARTTLS:
    /// bytes the server sent before the TLS handshake must not be trusted).
    pub(crate) fn into_stream(self) -> NetStream {
        self.stream
    }

    /// Whether the stream is encrypted.
    pub(crate) fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// When bytes last moved in either direction.
    pub(crate) fn last_progress(&self) -> Instant {
        self.last_progress
    }

    /// Marks progress now (e.g. when a new command starts).
    pub(crate) fn touch(&mut self) {
        self.last_progress = Instant::now();
    }

    /// Starts a command: these limits, byte counts from zero.
    pub(crate) fn begin(&mut self, limits: Limits) {
        self.framer.begin(limits);
        self.sent = 0;
    }

    /// Bytes received plus bytes sent since [`ImapIo::begin`].
    pub(crate) fn moved(&self) -> u64 {
        self.framer.received().saturating_add(self.sent)
    }

    /// The next complete response; `Ok(None)` when the server closed the
    /// connection cleanly. Cancel-safe: dropping the future loses nothing.
    pub(crate) async fn next_response(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if self.start < self.end {
                let (used, frame) = self
                    .framer
                    .push(&self.scratch[self.start..self.end])
                    .map_err(ReadError::Overrun)?;
                self.start += used;
                if frame.is_some() {
                    return Ok(frame);
                }
                continue;
            }
            if self.eof {
                return if self.framer.in_progress() {
                    Err(ReadError::Truncated)
                } else {
                    Ok(None)
                };
            }
            let n = self
                .stream
                .read(&mut self.scratch)
                .await
                .map_err(ReadError::Io)?;
            self.start = 0;
            self.end = n;
            if n == 0 {
                self.eof = true;
            } else {
                self.last_progress = Instant::now();
                // Acknowledge what was read now: a server writing with
                // Nagle on holds its next bytes until then (the `+` of
                // an IDLE, then the EXISTS of a message that came right
                // after it: 40 ms on Cyrus).
                self.quickack();
            }
        }
    }

    /// Writes some of `buf`; see [`AsyncWriteExt::write`].
    pub(crate) async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.stream.write(buf).await?;
        if n > 0 {
            self.sent = self.sent.saturating_add(n as u64);
            self.last_progress = Instant::now();
        }
        Ok(n)
    }

    /// Flushes the stream.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        self.stream.flush().await
    }

    /// Has the kernel acknowledge what arrives from now on at once, not
    /// after its delayed-ACK timer (Linux `TCP_QUICKACK`; nothing elsewhere).
    /// For a pipelined flight: a server that writes each answer as soon as
    /// it is done, with Nagle's algorithm on (Cyrus 3.6, Courier 5.0), holds
    /// the second answer until the first is acknowledged, and a delayed ACK
    /// (40 ms or more) then makes the flight slower than the commands one
    /// at a time. Setting it also sends an ACK that was being delayed, so
    /// it is set after every read as well. The mode lasts until this side
    /// sends again.
    pub(crate) fn quickack(&self) {
        #[cfg(target_os = "linux")]
        {
            let tcp = match &self.stream {
                NetStream::Plain(s) => s,
                NetStream::Tls(s) => s.get_ref().0,
            };
            if let Err(e) = socket2::SockRef::from(tcp).set_tcp_quickack(true) {
                tracing::debug!(error = %e, "TCP_QUICKACK not set");
            }
        }
    }

    /// Shuts the stream down (TLS close_notify, then FIN).
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }
}

impl fmt::Debug for ImapIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapIo")
            .field("tls", &self.stream.is_tls())
            .field("unframed", &(self.end - self.start))
            .field("framing", &self.framer.in_progress())
            .field("eof", &self.eof)
            .finish()
    }
}

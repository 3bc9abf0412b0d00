//! The byte stream under async-imap: plain TCP or TLS, with the
//! [`ResponseFilter`] on the read side and a progress clock for timeouts.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::filter::ResponseFilter;

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

/// The stream handed to async-imap.
pub(crate) struct ImapIo {
    stream: NetStream,
    filter: ResponseFilter,
    /// Filtered bytes not yet handed to the reader.
    pending: Vec<u8>,
    pending_pos: usize,
    scratch: Box<[u8]>,
    eof: bool,
    last_progress: Instant,
}

impl ImapIo {
    pub(crate) fn new(stream: NetStream) -> Self {
        ImapIo {
            stream,
            filter: ResponseFilter::default(),
            pending: Vec::new(),
            pending_pos: 0,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            eof: false,
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

    /// Takes out a response line the parser could not handle; see
    /// [`ResponseFilter::take_captured`].
    pub(crate) fn take_captured(&mut self, prefix: &[u8]) -> Option<Vec<u8>> {
        self.filter.take_captured(prefix)
    }
}

impl fmt::Debug for ImapIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapIo")
            .field("tls", &self.stream.is_tls())
            .field("pending", &(self.pending.len() - self.pending_pos))
            .field("eof", &self.eof)
            .finish()
    }
}

impl AsyncRead for ImapIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pending_pos < this.pending.len() {
                let avail = &this.pending[this.pending_pos..];
                let n = avail.len().min(buf.remaining());
                buf.put_slice(&avail[..n]);
                this.pending_pos += n;
                if this.pending_pos == this.pending.len() {
                    this.pending.clear();
                    this.pending_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.stream).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                this.eof = true;
                this.filter.finish(&mut this.pending);
            } else {
                this.last_progress = Instant::now();
                this.filter.feed(&this.scratch[..n], &mut this.pending);
            }
        }
    }
}

impl AsyncWrite for ImapIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.stream).poll_write(cx, buf))?;
        if n > 0 {
            this.last_progress = Instant::now();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

//! What the HTTP/1.1 codec needs of its connection, for plain TCP and for
//! TLS alike: readiness-style reads and writes through `&self`, because the
//! connection, its request body reader (which an upstream client's task may
//! poll) and its response writer share one connection. Both listeners kinds
//! thus read requests with the same parser and the same admission.
//!
//! TCP is the socket itself. TLS is a `tokio_rustls` stream behind a mutex
//! (taken for the length of one poll, never contended: one side reads or
//! writes at a time), with the plaintext that a readiness check read kept
//! until it is taken.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Plaintext read from TLS per readiness check, at most (one TLS record).
const TLS_READ: usize = 16 * 1024;

pub trait Transport: Send + Sync + 'static {
    /// Ready when a read may make progress (data, end of file, or an error).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Reads what is at hand into `buf`; `WouldBlock` if nothing is.
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize>;
    /// Ready when a write may make progress.
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Writes what the connection takes now; `WouldBlock` if nothing.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Pushes out what was written and is still held here (TLS records);
    /// `Ok(true)` when nothing is left.
    fn try_flush(&self) -> io::Result<bool>;
    /// Ends our side of the connection (TLS: `close_notify` first).
    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// The connection waits for its next request: memory kept only for
    /// reading can go.
    fn idle(&self) {}
    /// Whether the peer has closed its side (or the connection failed), as
    /// the poller last saw it, without reading: for a watcher whose buffer
    /// is full, with unread bytes still queued before the end of file.
    fn read_closed(&self) -> bool {
        false
    }
}

/// `read_closed` of a TCP socket: its readiness as epoll last reported it.
/// The closed states are final in tokio (never cleared by a read that would
/// block), and a socket with unread bytes is ready at once, so one poll
/// with a no-op waker answers without waiting.
fn tcp_read_closed(stream: &TcpStream) -> bool {
    let ready = std::pin::pin!(stream.ready(Interest::READABLE));
    match ready.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(ready)) => ready.is_read_closed() || ready.is_error(),
        Poll::Ready(Err(_)) => true,
        Poll::Pending => false,
    }
}

/// A transport the connection owns and can turn into a plain byte stream
/// (after a WebSocket handshake).
pub trait Connection: Transport + Sized {
    type Io: AsyncRead + AsyncWrite + Unpin + Send;

    /// The connection as a byte stream, and what was read from it and not yet taken.
    fn into_io(self) -> (Self::Io, Bytes);
}

impl Transport for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    /// `try_read_buf`, plus what tokio's own `poll_read` (and NGINX) do: a
    /// read that did not fill the room it was given drained the socket, so
    /// its readiness is cleared now instead of by a later read that would
    /// fail with `EAGAIN` (a wasted syscall per request).
    ///
    /// The read runs inside `try_io`, so the readiness cleared is the one
    /// seen *before* the read: data that arrives between the read and the
    /// clearing is a newer event, which tokio keeps. Clearing afterwards
    /// with a fresh `try_io` (as this did once) dropped that event: with
    /// edge-triggered epoll no other comes while the peer waits on a full
    /// window, and the body stalled until its 408.
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let room = buf.capacity() - buf.len();
        let mut read = 0;
        let result = self.try_io(Interest::READABLE, || {
            read = TcpStream::try_read_buf(self, buf)?;
            match read {
                // Drained: `WouldBlock` makes `try_io` clear the readiness it saw.
                n if n > 0 && n < room => Err(io::ErrorKind::WouldBlock.into()),
                n => Ok(n),
            }
        });
        match result {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && read > 0 => Ok(read),
            other => other,
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_write_ready(self, cx)
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, bufs)
    }

    fn try_flush(&self) -> io::Result<bool> {
        Ok(true)
    }

    fn poll_shutdown(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(self).shutdown(std::net::Shutdown::Write))
    }

    fn read_closed(&self) -> bool {
        tcp_read_closed(self)
    }
}

impl Connection for TcpStream {
    type Io = TcpStream;

    fn into_io(self) -> (TcpStream, Bytes) {
        (self, Bytes::new())
    }
}

/// A TLS connection (HTTP/1.1 negotiated, or no ALPN at all).
pub struct Tls {
    state: Mutex<TlsState>,
}

struct TlsState {
    stream: TlsStream<TcpStream>,
    /// Plaintext a readiness check read, not yet taken.
    plain: BytesMut,
    /// The peer closed (or the read failed: the error is given once, then end of file).
    eof: bool,
    error: Option<io::Error>,
}

impl Tls {
    pub fn new(stream: TlsStream<TcpStream>) -> Tls {
        Tls { state: Mutex::new(TlsState { stream, plain: BytesMut::new(), eof: false, error: None }) }
    }

    fn lock(&self) -> MutexGuard<'_, TlsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TlsState {
    /// One `poll_read` of the TLS stream into `into`'s spare room; `Ok(0)`: end of file.
    fn poll_read_into(&mut self, cx: &mut Context<'_>, into: &mut BytesMut) -> Poll<io::Result<usize>> {
        if into.capacity() == into.len() {
            into.reserve(TLS_READ);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, into)
    }
}

impl Transport for Tls {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        let state = &mut *state;
        if !state.plain.is_empty() || state.eof || state.error.is_some() {
            return Poll::Ready(Ok(()));
        }
        let mut plain = std::mem::take(&mut state.plain);
        plain.reserve(TLS_READ);
        let polled = state.poll_read_into(cx, &mut plain);
        state.plain = plain;
        match std::task::ready!(polled) {
            Ok(0) => state.eof = true,
            Ok(_) => {}
            Err(e) => state.error = Some(e),
        }
        Poll::Ready(Ok(()))
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut state = self.lock();
        if let Some(e) = state.error.take() {
            state.eof = true;
            return Err(e);
        }
        if !state.plain.is_empty() {
            let n = state.plain.len();
            buf.extend_from_slice(&state.plain);
            state.plain.clear();
            return Ok(n);
        }
        if state.eof {
            return Ok(0);
        }
        match state.poll_read_into(&mut Context::from_waker(Waker::noop()), buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        // Records still waiting for the socket must go first; otherwise
        // rustls takes plaintext at once.
        if state.stream.get_ref().1.wants_write() {
            return Pin::new(&mut state.stream).poll_flush(cx);
        }
        Poll::Ready(Ok(()))
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut state = self.lock();
        match Pin::new(&mut state.stream).poll_write_vectored(&mut Context::from_waker(Waker::noop()), bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn try_flush(&self) -> io::Result<bool> {
        let mut state = self.lock();
        match Pin::new(&mut state.stream).poll_flush(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r.map(|()| true),
            Poll::Pending => Ok(false),
        }
    }

    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.lock().stream).poll_shutdown(cx)
    }

    fn idle(&self) {
        let mut state = self.lock();
        if state.plain.is_empty() {
            state.plain = BytesMut::new();
        }
    }

    /// The socket under the TLS: a `close_notify` queued behind unread
    /// records is not seen, the FIN that follows it is.
    fn read_closed(&self) -> bool {
        let state = self.lock();
        state.eof || state.error.is_some() || tcp_read_closed(state.stream.get_ref().0)
    }
}

impl Connection for Tls {
    type Io = TlsStream<TcpStream>;

    fn into_io(self) -> (TlsStream<TcpStream>, Bytes) {
        let state = self.state.into_inner().unwrap_or_else(|e| e.into_inner());
        (state.stream, state.plain.freeze())
    }
}

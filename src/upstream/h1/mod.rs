//! The HTTP/1.1 client for plain `http://` targets: a pool of keep-alive
//! connections and a small codec of our own, driven inline by the request's
//! task (no connection task, no channels).
//!
//! Written by hand because this is the gateway's hot path: hyper's client
//! connection sends each request through a dispatch channel to a connection
//! future, with body channels and want-signals on both sides. Here a request
//! is one buffer written with one `writev` and a response head parsed with
//! httparse straight from the read buffer (header values share its bytes).
//! HTTPS, HTTP/2 and upgrades keep using hyper-util's client.
//!
//! A reused connection that turns out to be closed before the upstream sent
//! anything is retried once on a new connection, if either nothing could be
//! written or the method is idempotent (what NGINX's `proxy_next_upstream
//! error` does), and the body, if any went, can be sent again (at most
//! `STALE_RESEND_BODY` bytes of it are kept for that).

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, Version, request};
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::http::request_body::RequestBody;
use crate::upstream::limits::{ConnLimit, ConnPermit};
use crate::wire::decode::Decoder;
use crate::wire::edits::HeaderEdits;
use crate::wire::raw_headers::RawHeaders;
use crate::wire::timer::LazyTimer;
use crate::wire::upstream_head::{self as codec, Head, RequestFraming, ResponseFraming};
use crate::wire::write_queue::{MAX_SLICES, WriteQueue};

use crate::http::error::NotSent;

/// The most of an idempotent request's body kept for sending it again when
/// the reused connection it went out on turns out closed: a larger body
/// that broke off there is not resent (the client gets 502).
const STALE_RESEND_BODY: u64 = 64 * 1024;
use crate::wire::BoxError;

/// Bytes asked of the socket per read once the buffer is full.
const READ_CHUNK: usize = 16 * 1024;

/// One open upstream connection and what has been read from it.
#[derive(Debug)]
struct Conn {
    io: TcpStream,
    buf: BytesMut,
    /// Scratch space for parsing response heads.
    spans: codec::Spans,
    /// The head of the request under way, encoded here (no allocation per request).
    head: Vec<u8>,
    /// The request timeout of the exchange under way (lazily moved: no
    /// timer-wheel work per request).
    timer: LazyTimer,
    /// When the last exchange began: a pooled connection counts as idle
    /// from then (one clock read per request, not three; it can only make
    /// a connection expire early, never late).
    used: Instant,
    /// Its place in the upstream's `limits.max_connections`.
    _permit: Option<ConnPermit>,
}

impl Conn {
    /// Reads more into the buffer. `Ok(0)`: the upstream closed.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

pub struct H1Pool {
    authority: String,
    /// Idle connections and when each stops being reusable.
    idle: Mutex<Vec<(Box<Conn>, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    /// The upstream's `max_connections`, shared with its other targets.
    limit: Option<Arc<ConnLimit>>,
}

/// No connection could be opened: the upstream's `max_connections` are
/// open. (Always wrapped in `NotSent`.)
#[derive(Debug, thiserror::Error)]
#[error("the upstream's connection limit is reached")]
pub struct AtCapacity;

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Pool").field("authority", &self.authority).finish_non_exhaustive()
    }
}

impl H1Pool {
    /// Idle connections kept for reuse.
    pub fn idle(&self) -> usize {
        self.idle.lock().map_or(0, |i| i.len())
    }

    pub fn new(
        authority: String,
        max_idle: usize,
        idle_timeout: Duration,
        connect_timeout: Duration,
        limit: Option<Arc<ConnLimit>>,
    ) -> Arc<H1Pool> {
        Arc::new(H1Pool { authority, idle: Mutex::new(Vec::new()), max_idle, idle_timeout, connect_timeout, limit })
    }

    /// The target's `timeouts.connect`.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Closes one idle connection, if there is one (its permit then serves
    /// a request waiting for a connection to another target).
    pub fn close_idle(&self) -> bool {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop().is_some()
    }

    fn put(&self, conn: Box<Conn>) {
        // Requests wait for a connection slot: close this one, so that one of them gets it.
        if self.limit.as_ref().is_some_and(|l| l.has_waiters()) {
            return;
        }
        let expires = conn.used + self.idle_timeout;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push((conn, expires));
        }
    }

    /// Closes, every half `idle_timeout` (at least every second), the idle
    /// connections that expired or that their target closed, while the
    /// pool lives. Checking only when a connection is taken left a quiet
    /// target's sockets open (and in CLOSE-WAIT) for ever, and the idle
    /// gauge counting them.
    pub fn sweep_while_alive(pool: &Arc<H1Pool>) {
        let every = (pool.idle_timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let pool = Arc::downgrade(pool);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.sweep(Instant::now());
            }
        });
    }

    fn sweep(&self, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let waker = std::task::Waker::noop();
        idle.retain_mut(|(conn, expires)| {
            *expires > now && conn.poll_read(&mut Context::from_waker(waker)).is_pending()
        });
    }

    /// A pooled connection that still looks open, most recent first.
    fn checkout(&self, now: Instant) -> Option<Box<Conn>> {
        loop {
            let (mut conn, expires) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            if expires <= now {
                continue;
            }
            // An idle connection has nothing to read: readable means closed
            // (or an upstream talking out of turn); either way, not reusable.
            // No syscall unless the reactor has seen an event for it.
            let waker = std::task::Waker::noop();
            if conn.poll_read(&mut Context::from_waker(waker)).is_pending() {
                return Some(conn);
            }
        }
    }

    /// A new connection; its errors are `NotSent`.
    async fn connect(&self, deadline: Instant) -> Result<Box<Conn>, BoxError> {
        let permit = match &self.limit {
            Some(limit) => Some(limit.try_open().ok_or_else(|| NotSent(Box::new(AtCapacity)))?),
            None => None,
        };
        let io = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.authority))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))
            .and_then(|connected| connected)
            .map_err(|e| NotSent(Box::new(e)))?;
        let _ = io.set_nodelay(true);
        let timer = LazyTimer::new(deadline);
        Ok(Box::new(Conn {
            io,
            buf: BytesMut::new(),
            spans: Vec::new(),
            head: Vec::new(),
            timer,
            used: Instant::now(),
            _permit: permit,
        }))
    }

    /// Sends the request `parts` and `body`, with `edits` made to its
    /// headers (its URI absolute; the path and query are sent), and returns
    /// the response once its head has arrived, or a `TimedOut` error after
    /// `timeout`. Borrowed, not owned: this future stays small. The response
    /// body streams from the connection, which goes back to the pool at its end.
    pub async fn send(
        self: &Arc<Self>,
        parts: &mut request::Parts,
        body: &mut RequestBody,
        edits: &HeaderEdits<'_>,
        timeout: Duration,
    ) -> Result<UpstreamResponse, BoxError> {
        let now = Instant::now();
        let deadline = now + timeout;
        // Framed from the body we send, never from the client's lines.
        let framing = RequestFraming::of(&parts.method, &*body);

        let mut retried = false;
        loop {
            // A resend goes on a new connection: the pool's others are as
            // old as the one the target closed, likely closed too.
            let (mut conn, reused) = match if retried { None } else { self.checkout(now) } {
                Some(conn) => (conn, true),
                None => match tokio::time::timeout_at(deadline, self.connect(deadline)).await {
                    Ok(conn) => (conn?, false),
                    Err(_) => return Err(Box::new(NotSent(timed_out()))),
                },
            };
            // The target may have closed a reused connection just as it is
            // taken (its keep-alive timeout): an idempotent request's body
            // is kept (its first `STALE_RESEND_BODY` bytes) so that it can
            // go again on a new connection, as NGINX resends a PUT.
            if reused && !retried && framing.has_body() && parts.method.is_idempotent() {
                body.keep_for_retry(STALE_RESEND_BODY);
            }
            conn.used = now;
            conn.head.clear();
            codec::encode_head(parts, edits, &self.authority, framing, &mut conn.head);
            // An HTTP/2 body that declared `content-length: 0` without
            // ending its stream may still send DATA (malformed, RFC 9113
            // §8.1.1, the stream reset): the upstream must not have a whole
            // request by then, so the head's last byte waits for the end.
            let empty_unended = framing == RequestFraming::Length(0) && !body.is_end_stream();
            let mut exchange = Exchange {
                conn: Some(conn),
                head_sent: 0,
                queue: WriteQueue::new(),
                body: (framing.has_body() || empty_unended).then_some(&mut *body),
                chunked: framing == RequestFraming::Chunked,
                left: match framing {
                    RequestFraming::Length(n) => n,
                    _ => 0,
                },
                held: None,
                gathered: Gathered::default(),
                head_held: empty_unended,
                body_started: false,
                written: false,
                write_failed: None,
                received: false,
                interim: 0,
                method: &parts.method,
                misreadable_body: framing.body_may_be_misread(&parts.method),
                deadline,
            };
            match std::future::poll_fn(|cx| exchange.poll(cx)).await {
                // The request's headers stay with the caller (a retry may send them again).
                Ok((head, conn)) => return Ok(self.response(head, conn)),
                Err(failure) => {
                    let (body_started, received, written) =
                        (exchange.body_started, exchange.received, exchange.written);
                    drop(exchange);
                    let safe = !written || parts.method.is_idempotent();
                    // Rewound last: only when everything else allows the resend.
                    if reused
                        && !retried
                        && !received
                        && safe
                        && failure.is_connection_lost()
                        && (!body_started || body.rewind())
                    {
                        retried = true;
                        continue;
                    }
                    let error = failure.into_error();
                    return Err(if written { error } else { Box::new(NotSent(error)) });
                }
            }
        }
    }

    fn response(self: &Arc<Self>, head: Head, conn: Box<Conn>) -> UpstreamResponse {
        let mut body = ResponseBody {
            conn: Some(conn),
            decoder: Decoder::new(head.framing),
            keep_alive: head.keep_alive,
            pool: self.clone(),
        };
        if body.decoder.is_done() {
            body.finish();
        }
        UpstreamResponse { status: head.status, version: head.version, headers: head.headers, body }
    }
}

/// A response whose head has arrived; its body streams from the connection.
#[derive(Debug)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub version: Version,
    /// The end-to-end header lines as received (hop-by-hop ones are gone).
    pub headers: RawHeaders,
    pub body: ResponseBody,
}

/// Why an exchange failed.
#[derive(Debug)]
enum Failure {
    /// The connection closed or reset before a response head.
    Lost(std::io::Error),
    Other(BoxError),
}

impl Failure {
    fn is_connection_lost(&self) -> bool {
        matches!(self, Failure::Lost(_))
    }

    fn into_error(self) -> BoxError {
        match self {
            Failure::Lost(e) => Box::new(e),
            Failure::Other(e) => e,
        }
    }
}

fn timed_out() -> BoxError {
    Box::new(std::io::Error::new(std::io::ErrorKind::TimedOut, "the upstream did not answer in time"))
}

fn lost(e: std::io::Error) -> Failure {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => Failure::Lost(e),
        _ => Failure::Other(Box::new(e)),
    }
}

/// One request on one connection: writes the head and body while watching
/// for the response head (an upstream may answer before reading the whole
/// body; then the rest of the body is dropped and the connection closed).
struct Exchange<'a> {
    conn: Option<Box<Conn>>,
    /// How much of the request head (in `conn.head`) has been written.
    head_sent: usize,
    /// Body bytes to write after it, in order.
    queue: WriteQueue,
    /// The request body, until it has been read to its end.
    body: Option<&'a mut RequestBody>,
    chunked: bool,
    /// Body bytes the head announced and not yet taken (`Length` framing):
    /// a body that turns out longer or shorter fails the exchange, and its
    /// connection is closed, so the upstream never reads the difference
    /// as the start of another request.
    left: u64,
    /// The body's last byte, held until the body says it has ended: an
    /// HTTP/2 body whose DATA goes on past its `content-length` is
    /// malformed, and the upstream must not have received a whole request
    /// by then (RFC 9113 §8.1.1). An HTTP/1.1 body's end is known with its
    /// last byte, so nothing is held for it.
    held: Option<Bytes>,
    /// Small body pieces at hand, joined before they are queued: a client's
    /// body of one-byte chunks (or one-byte HTTP/2 DATA frames) went out a
    /// chunk and a `writev` each, ~1 s of CPU per MB sent.
    gathered: Gathered,
    /// The head's last byte is held until an empty body (`content-length:
    /// 0`) says it has ended, as `held` for a body's last byte.
    head_held: bool,
    body_started: bool,
    /// Some bytes reached the socket.
    written: bool,
    /// Why writing stopped, when the socket refused more: the answer may
    /// have come before the reset (a target that answers early and closes
    /// with body bytes unread resets the connection), so it is read first.
    write_failed: Option<std::io::Error>,
    /// Some bytes came back.
    received: bool,
    /// Interim (1xx) responses skipped so far, whatever the reads they came in.
    interim: usize,
    method: &'a Method,
    /// A body some servers would misread (`RequestFraming::body_may_be_misread`):
    /// the connection is not reused.
    misreadable_body: bool,
    /// The request timeout.
    deadline: Instant,
}

/// Body pieces smaller than this are joined with the ones at hand.
pub(super) const GATHER_BELOW: usize = 4 << 10;
/// Joined pieces are queued once they hold this much.
pub(super) const GATHER_UP_TO: usize = 64 << 10;

/// Small body pieces at hand, joined before they are queued.
#[derive(Default)]
struct Gathered {
    bytes: BytesMut,
}

impl Gathered {
    /// Queues a body piece (as a chunk, on a chunked body), joining it with
    /// the small pieces before it while it is small.
    fn put(&mut self, queue: &mut WriteQueue, chunked: bool, data: Bytes) {
        if data.len() < GATHER_BELOW {
            self.bytes.extend_from_slice(&data);
            if self.bytes.len() >= GATHER_UP_TO {
                self.queue(queue, chunked);
            }
            return;
        }
        self.queue(queue, chunked);
        if chunked { queue.push_chunk(data) } else { queue.push(data) }
    }

    /// Queues the small pieces joined so far (before what follows them).
    fn queue(&mut self, queue: &mut WriteQueue, chunked: bool) {
        if !self.bytes.is_empty() {
            let joined = self.bytes.split().freeze();
            if chunked { queue.push_chunk(joined) } else { queue.push(joined) }
        }
    }
}

impl Exchange<'_> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(Head, Box<Conn>), Failure>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Err(Failure::Other("exchange polled after completion".into())));
        };
        // Write what the socket takes (the head and the body bytes at hand
        // in one `writev`), pulling more body as it drains.
        while self.write_failed.is_none() {
            if self.queue.is_empty()
                && let Some(body) = self.body.as_deref_mut()
            {
                match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => self.gathered.queue(&mut self.queue, self.chunked),
                    Poll::Ready(None) => {
                        self.gathered.queue(&mut self.queue, self.chunked);
                        self.body = None;
                        self.head_held = false;
                        if let Some(last) = self.held.take() {
                            self.queue.push(last);
                        }
                        if self.chunked {
                            self.queue.push_last_chunk();
                        } else if self.left != 0 {
                            return Poll::Ready(Err(Failure::Other("the request body ended before its length".into())));
                        }
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(Failure::Other(Box::new(e)))),
                    Poll::Ready(Some(Ok(frame))) => {
                        self.body_started = true;
                        // Trailers are not sent on HTTP/1.1 (NGINX does not either).
                        if let Ok(data) = frame.into_data()
                            && !data.is_empty()
                        {
                            if self.chunked {
                                self.gathered.put(&mut self.queue, self.chunked, data);
                            } else {
                                let Some(left) = self.left.checked_sub(data.len() as u64) else {
                                    return Poll::Ready(Err(Failure::Other(
                                        "the request body is longer than its length".into(),
                                    )));
                                };
                                self.left = left;
                                if left == 0 && !self.body.as_deref().is_some_and(|b| b.is_end_stream()) {
                                    let mut data = data;
                                    self.held = Some(data.split_off(data.len() - 1));
                                    if !data.is_empty() {
                                        self.gathered.put(&mut self.queue, self.chunked, data);
                                    }
                                } else {
                                    self.gathered.put(&mut self.queue, self.chunked, data);
                                }
                            }
                        }
                        continue;
                    }
                }
            }
            let head = &conn.head[self.head_sent..conn.head.len() - usize::from(self.head_held)];
            if head.is_empty() && self.queue.is_empty() {
                break;
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = self.queue.slices_after(head, &mut slices);
            match Pin::new(&mut conn.io).poll_write_vectored(cx, &slices[..count]) {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) => self.write_failed = Some(std::io::ErrorKind::BrokenPipe.into()),
                Poll::Ready(Ok(n)) => {
                    self.written = true;
                    let into_head = n.min(head.len());
                    self.head_sent += into_head;
                    self.queue.advance(n - into_head);
                }
                Poll::Ready(Err(e)) => match lost(e) {
                    Failure::Lost(e) => self.write_failed = Some(e),
                    other => return Poll::Ready(Err(other)),
                },
            }
        }
        // Read the response head.
        loop {
            match codec::parse_head(&mut conn.buf, self.method, &mut conn.spans, &mut self.interim) {
                Err(e) => return Poll::Ready(Err(Failure::Other(Box::new(e)))),
                Ok(Some(mut head)) => {
                    // An upstream never has reason to send more than one
                    // response: bytes past a bodiless one, or past the
                    // length of one that is all here, are another answer
                    // that some later request would read as its own.
                    let overrun = match head.framing {
                        ResponseFraming::Empty => !conn.buf.is_empty(),
                        ResponseFraming::Length(n) => conn.buf.len() as u64 > n,
                        _ => false,
                    };
                    if overrun {
                        return Poll::Ready(Err(Failure::Other(Box::new(codec::HeadError::Malformed(
                            "more bytes than the response's framing",
                        )))));
                    }
                    if self.body.is_some() || !self.queue.is_empty() || self.head_sent < conn.head.len() {
                        // The rest of the body is not sent: the target gets
                        // the end of the stream (a FIN after the bytes it
                        // has), not a body it waits for until its timeout
                        // while its answer waits on it. (A plain socket's
                        // shutdown is immediate.)
                        head.keep_alive = false;
                        let _ = Pin::new(&mut conn.io).poll_shutdown(cx);
                    }
                    // An application that writes a HEAD, 204 or 304 answer's
                    // body after all (a second write, later than this read)
                    // would have it read as the answer of whichever request
                    // takes the connection next: such a connection is not
                    // reused (RFC 9112 §6.3 gives all three no body whatever
                    // their fields say). The check above only sees bytes that
                    // came with the head. The cost: a new connection after
                    // each, where a 204 is a DELETE's usual answer.
                    let bodiless = self.method == http::Method::HEAD
                        || head.status == http::StatusCode::NO_CONTENT
                        || head.status == http::StatusCode::NOT_MODIFIED;
                    if bodiless || self.misreadable_body {
                        head.keep_alive = false;
                    }
                    let conn = self.conn.take().expect("checked above");
                    return Poll::Ready(Ok((head, conn)));
                }
                Ok(None) => {}
            }
            match conn.poll_read(cx) {
                Poll::Pending => {
                    if conn.timer.poll_until(self.deadline, cx).is_ready() {
                        return Poll::Ready(Err(Failure::Other(timed_out())));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => {
                    let e = self.write_failed.take().unwrap_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the upstream closed the connection without a response",
                        )
                    });
                    return Poll::Ready(Err(if self.received { Failure::Other(Box::new(e)) } else { lost(e) }));
                }
                Poll::Ready(Ok(_)) => self.received = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(lost(self.write_failed.take().unwrap_or(e)))),
            }
        }
    }
}

/// A response body read from its connection; the connection goes back to
/// the pool when the body ends cleanly and is closed otherwise.
#[derive(Debug)]
pub struct ResponseBody {
    conn: Option<Box<Conn>>,
    decoder: Decoder,
    keep_alive: bool,
    pool: Arc<H1Pool>,
}

impl ResponseBody {
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && conn.buf.is_empty()
        {
            self.pool.put(conn);
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            match this.decoder.decode(&mut conn.buf) {
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Ok(Some(data)) => {
                    if this.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(None) if this.decoder.is_done() => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
            }
            match std::task::ready!(conn.poll_read(cx)) {
                Ok(0) => {
                    if let Err(e) = this.decoder.eof() {
                        this.conn = None;
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

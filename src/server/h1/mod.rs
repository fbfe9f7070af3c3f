//! Our own HTTP/1.1 server, for plain and TLS connections alike: read a
//! head, run the engine, write the response, and again, until the client
//! leaves, the connection idles out or the listener stops.
//!
//! Written by hand because this is the gateway's hot path (as the upstream
//! client in `upstream::h1` is): hyper's server connection costs a
//! dispatcher, a header timer reset per request and a second copy of every
//! header on the way out. Here a head is parsed in place from memory that
//! the header values then share, and a response is one `writev` of its head
//! and the body bytes already at hand.
//!
//! Every request on the connection is read here, upgrades included: a
//! WebSocket that a route allows becomes a tunnel after the upstream's
//! valid `101`, which the engine hands over with the response
//! (`proxy::Tunnel`). HTTP/2 connections are hyper's (`server/conn.rs`).
//! The codec itself (head parsing, body reading, response heads, the
//! `Transport` of a TCP or TLS stream) is in `crate::wire`; this module
//! drives one connection with it.
//!
//! ```text
//! wait (idle_timeout; header_read_timeout once a head has begun) ─► parse head ─► 400/414/431/501 + close
//!   ─► proxy::handle (watching for the client leaving) ─► write head + body ─► 101? tunnel
//!   ─► keep-alive? loop : close
//! ```

mod write;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use http::{Request, StatusCode};
use tokio::time::Instant;

use crate::wire::transport::Connection;
pub use crate::wire::transport::Tls;
use crate::wire::{body_reader as body, request_head as head, response_head as response};

use super::{Shared, StopSignal};
use crate::http::client_body::ClientBody;
use crate::http::conn::{ConnInfo, HeadBegan};
use crate::plan::ListenerPlan;
use crate::proxy;
use crate::wire::decode::Framing;
use crate::wire::recycle::Slab;
use crate::wire::timer::LazyTimer as Timer;
use head::HeadLimits;
use response::Exchange;

/// Reads of request heads take memory from a per-thread slab in pieces of
/// this size or more: the header values of a request share it, and an idle
/// connection holds none (NGINX also frees an idle connection's buffers).
const SLAB: usize = 64 * 1024;
/// A read is given at least this much room.
const MIN_READ: usize = 4 * 1024;
/// How long an idle connection keeps the room of its last request's future.
const KEEP_REQUEST_ROOM: Duration = Duration::from_millis(100);

/// What a connection needs from the listener that accepted it.
pub(super) struct Ctx<'a> {
    pub info: &'a Arc<ConnInfo>,
    pub lp: &'a ListenerPlan,
    pub shared: &'a Arc<Shared>,
    pub stop: &'a StopSignal,
    /// When the connection was accepted.
    pub started: Instant,
}

/// Serves an HTTP/1.1 connection whose first bytes, already read, are `first`.
pub(super) async fn serve<T: Connection>(stream: T, first: &[u8], cx: Ctx<'_>) {
    let conn = Conn::new(Arc::new(stream), first, &cx);
    let timer = Timer::new(cx.started + cx.lp.limits.header_read_timeout);
    conn.run(cx, timer).await
}

enum Wait {
    Readable,
    Timeout,
    Stop,
}

struct Conn<T> {
    stream: Arc<T>,
    /// Bytes read and not yet served: a partial head, or a pipelined request.
    buf: BytesMut,
    spans: head::Spans,
    limits: HeadLimits,
    header_timeout: Duration,
    idle_timeout: Duration,
    /// When the head being read began to arrive (set once a read leaves it partial).
    head_since: Option<Instant>,
    /// When a head that took more than one read began to arrive (the
    /// connection's first head included): where its request's duration
    /// starts, as NGINX's `$request_time` does.
    head_began: Option<Instant>,
    /// When the connection last became idle (None: now, when it is first needed).
    idle_since: Option<Instant>,
    /// The listener is stopping: finish the current request, then close.
    closing: bool,
}

impl<T: Connection> Conn<T> {
    fn new(stream: Arc<T>, first: &[u8], cx: &Ctx<'_>) -> Conn<T> {
        let limits = &cx.lp.limits;
        Conn {
            stream,
            buf: BytesMut::from(first),
            spans: Vec::new(),
            limits: HeadLimits { max_size: limits.max_header_size, max_headers: limits.max_headers },
            header_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            // The first head is timed from the connection's start.
            head_since: Some(cx.started),
            head_began: None,
            idle_since: Some(cx.started),
            closing: false,
        }
    }

    async fn run(mut self, cx: Ctx<'_>, mut timer: Timer) {
        let Ctx { info, shared, stop, .. } = cx;
        // One wait on the stop notice for the connection's whole life,
        // registered before the flag is read (so no notice is missed).
        let mut stopped = std::pin::pin!(stop.notify.notified());
        stopped.as_mut().enable();
        self.closing = *stop.flag.borrow();
        // The room a request's future takes (a few KiB, boxed so that an
        // idle connection's task keeps none), kept for the next request
        // while requests come back to back: a fresh box for every request
        // cost more than anything else the engine allocates (a block that
        // size is the allocator's slow path). Given back after
        // `KEEP_REQUEST_ROOM` of idleness.
        let mut room: Option<Pin<Box<_>>> = None;
        loop {
            let head = loop {
                if !self.buf.is_empty() {
                    match head::parse(&mut self.buf, self.limits, &mut self.spans) {
                        Ok(Some(head)) => break head,
                        Ok(None) => {
                            let began = *self.head_began.get_or_insert_with(Instant::now);
                            self.head_since.get_or_insert(began);
                        }
                        Err(e) => {
                            let plan = shared.plan.load();
                            let request = e.request.as_deref();
                            let (status, detail) = (e.why.status(), e.why.to_string());
                            // A HEAD's refusal has no body (RFC 9110 §9.3.2), its
                            // method read from the line, or from the line's
                            // start when the line itself was refused (too long),
                            // past the blank lines allowed before it (RFC 9112 §2.2).
                            let head = request.map_or_else(
                                || self.buf.trim_ascii_start().starts_with(b"HEAD "),
                                |r| r.method() == http::Method::HEAD,
                            );
                            let resp = proxy::refuse(&plan, info, status, &detail, self.head_since, request);
                            // Boxed: a rare path, kept out of every idle connection's task.
                            Box::pin(self.respond_and_close(resp, head, &mut timer)).await;
                            return;
                        }
                    }
                } else if self.closing {
                    return;
                }
                // A head under way, or the connection's first (timed from its
                // start, TLS handshake included, even before a byte of it).
                let deadline = match self.head_since {
                    Some(since) => since + self.header_timeout,
                    _ => *self.idle_since.get_or_insert_with(Instant::now) + self.idle_timeout,
                };
                // Idle with room kept: wake to give it back. These deadlines
                // only move later, request after request, so the lazy timer
                // is re-armed once per `KEEP_REQUEST_ROOM`, not per request.
                let release = match (&room, self.idle_since) {
                    (Some(_), Some(since)) if self.buf.is_empty() => Some(since + KEEP_REQUEST_ROOM),
                    _ => None,
                }
                .filter(|&release| release < deadline);
                match self.wait_readable(&mut timer, release.unwrap_or(deadline), stopped.as_mut()).await {
                    Wait::Readable => {}
                    Wait::Timeout if release.is_some() => {
                        room = None;
                        continue;
                    }
                    Wait::Timeout => {
                        // A head begun and never finished: logged (408), not answered.
                        if !self.buf.is_empty() {
                            proxy::head_timed_out(&shared.plan.load(), info, self.head_since);
                        }
                        return;
                    }
                    Wait::Stop => {
                        self.closing = true;
                        continue;
                    }
                }
                match self.read() {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Ok(0) | Err(_) if !self.buf.trim_ascii_start().is_empty() => {
                        // A head begun and cut by its client: logged as a client that left
                        // (499; NGINX logs it too, as a 400 with the request line).
                        proxy::head_cut(&shared.plan.load(), info, self.head_since);
                        return;
                    }
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            };
            self.head_since = None;

            let head::Head { mut parts, framing, keep_alive, expect_continue } = head;
            if let Some(began) = self.head_began.take() {
                // Rare (a head in pieces): the map is allocated only then.
                parts.extensions.insert(HeadBegan(began));
            }
            let method = parts.method.clone();
            let version = parts.version;
            let (body, handle) = if framing == Framing::Empty {
                (ClientBody::Empty, None)
            } else {
                let rest = std::mem::take(&mut self.buf);
                let (reader, handle) = body::new(self.stream.clone(), rest, framing, expect_continue);
                (ClientBody::H1(reader), Some(handle))
            };
            let req = Request::from_parts(parts, body);
            let handled = proxy::handle(shared.plan.load_full(), info, req);
            let handled = match &mut room {
                Some(kept) => {
                    // The last request's future has finished: it holds nothing.
                    Pin::set(&mut *kept, handled);
                    kept.as_mut()
                }
                None => room.insert(Box::pin(handled)).as_mut(),
            };
            let mut resp = match &handle {
                None => match self.unless_client_leaves(handled).await {
                    Some(resp) => resp,
                    None => return,
                },
                Some(body) => match self.unless_client_leaves_after(body, handled).await {
                    Some(resp) => resp,
                    None => return,
                },
            };
            // A 101 goes out only with the tunnel the engine made for it.
            let tunnel = match resp.status() {
                StatusCode::SWITCHING_PROTOCOLS => match proxy::Tunnel::take(&mut resp) {
                    Some(tunnel) => Some(tunnel),
                    None => return,
                },
                _ => None,
            };

            // A body the engine did not read to its end (an early answer)
            // leaves the connection unusable, unless it was all buffered.
            let body_done = handle.as_ref().is_none_or(|h| h.finish_buffered());
            // A connection whose certificate a reload's `client_auth` no
            // longer passes is done (its request got a 421).
            let stale = info.client_auth.as_ref().is_some_and(|c| c.is_stale());
            let stopping = self.closing || stale || stop.flag.has_changed().unwrap_or(true);
            // One clock read per request: the `Date` of this response, and
            // the start of the idleness that follows it.
            let now = Instant::now();
            let x = Exchange { method: &method, version, keep_alive: keep_alive && body_done && !stopping, now };
            let mut writing = write::Writing::start(resp, &x);
            let written = match writing.now(&*self.stream) {
                Some(written) => {
                    // The body and what it holds (rate-limit slots) go now,
                    // as when `finish` returns.
                    drop(writing);
                    written
                }
                // Boxed: an idle connection's task keeps no room for a
                // response either; most responses never get here.
                None => {
                    // A body still coming from upstream (a stalled one
                    // included) is let go when the client leaves, with
                    // the upstream connection and places it holds.
                    let stream = self.stream.clone();
                    let finish = Box::pin(writing.finish(&*stream, &mut timer, self.idle_timeout));
                    let written = match &handle {
                        None => self.unless_client_leaves(finish).await,
                        Some(body) if body_done => self.unless_client_leaves_after(body, finish).await,
                        // The socket still holds the unread body: not watched.
                        Some(_) => Some(finish.await),
                    };
                    match written {
                        Some(written) => written,
                        None => return,
                    }
                }
            };
            let reusable = match written {
                Ok(reusable) => reusable && x.keep_alive,
                Err(_) => return,
            };
            if let Some(tunnel) = tunnel {
                // An upgrade has no body (the engine checked), so nothing else holds the socket.
                drop(room.take());
                drop(handle);
                if let Ok(stream) = Arc::try_unwrap(self.stream) {
                    // What the client sent after its head: read before, or held by the transport.
                    let (io, held) = stream.into_io();
                    let mut early = std::mem::take(&mut self.buf);
                    early.put(held);
                    Box::pin(tunnel.run(io, early.freeze())).await;
                }
                return;
            }
            if let Some(handle) = handle {
                match handle.reclaim() {
                    Some(rest) => self.buf = rest,
                    None => {
                        write::close(&*self.stream, true).await;
                        return;
                    }
                }
            }
            if !reusable {
                write::close(&*self.stream, false).await;
                return;
            }
            self.idle_since = Some(now);
            if self.buf.is_empty() {
                // Gives the slab piece back while the connection idles (and
                // the transport its read room).
                self.buf = BytesMut::new();
                self.stream.idle();
            }
        }
    }

    /// Runs `handled` to its end, unless the client closes its side first
    /// (the upstream request is then dropped, as NGINX does). Bytes of a
    /// pipelined next request are kept, up to the head limit.
    async fn unless_client_leaves<F: Future>(&mut self, handled: F) -> Option<F::Output> {
        let stream = self.stream.clone();
        let max = self.limits.max_size;
        let buf = &mut self.buf;
        unless(handled, until_closed(&*stream, |ready| read_more(&*stream, buf, max, ready))).await
    }

    /// `unless_client_leaves` for a request with a body: the socket is
    /// watched once the body has been read to its end (before, the body's
    /// reader reads it, and sees the client leave). NGINX watches the same
    /// way; without it an upload's client that left kept its upstream
    /// request, a `max_requests` place and a connection until the upstream
    /// timeout, logged as the upstream's `504`. What the client sends after
    /// its body (a pipelined request) joins the body's rest.
    async fn unless_client_leaves_after<F: Future>(&self, body: &body::BodyHandle, handled: F) -> Option<F::Output> {
        let stream = self.stream.clone();
        let max = self.limits.max_size;
        let watch = async {
            std::future::poll_fn(|cx| body.poll_done(cx)).await;
            until_closed(&*stream, |ready| body.with_rest(|buf| read_more(&*stream, buf, max, ready))).await;
        };
        unless(handled, watch).await
    }

    /// Reads what the socket has. An empty buffer takes its room from the
    /// thread's slab (no allocation per request); a partial head grows its own.
    fn read(&mut self) -> std::io::Result<usize> {
        if !self.buf.is_empty() {
            if self.buf.capacity() - self.buf.len() < MIN_READ {
                self.buf.reserve(MIN_READ);
            }
            return self.stream.try_read_buf(&mut self.buf);
        }
        READ_SLAB.with(|slab| {
            slab.cut(MIN_READ, |slab| {
                let n = self.stream.try_read_buf(slab)?;
                self.buf = slab.split();
                Ok(n)
            })
        })
    }

    async fn wait_readable<S: Future>(&self, timer: &mut Timer, deadline: Instant, stopped: Pin<&mut S>) -> Wait {
        let closing = self.closing;
        // `poll_read_ready`, not `readable()`: one waker slot instead of a
        // registration in the socket's waiter list on every wait.
        let readable = std::future::poll_fn(|cx| self.stream.poll_read_ready(cx));
        tokio::select! {
            biased;
            ready = readable => if ready.is_ok() { Wait::Readable } else { Wait::Timeout },
            _ = stopped, if !closing => Wait::Stop,
            () = timer.until(deadline) => Wait::Timeout,
        }
    }

    async fn respond_and_close(&self, resp: http::Response<proxy::Body>, head: bool, timer: &mut Timer) {
        let x = Exchange {
            method: if head { &http::Method::HEAD } else { &http::Method::GET },
            version: http::Version::HTTP_11,
            keep_alive: false,
            now: Instant::now(),
        };
        if write::Writing::start(resp, &x).finish(&*self.stream, timer, self.idle_timeout).await.is_ok() {
            // The client may be sending a body behind the head we refused.
            write::close(&*self.stream, true).await;
        }
    }
}

thread_local! {
    static READ_SLAB: Slab = Slab::new(SLAB);
}

/// `handled` to its end, unless `watch` (the client leaving) ends first.
async fn unless<F: Future>(handled: F, watch: impl Future<Output = ()>) -> Option<F::Output> {
    tokio::select! {
        biased;
        resp = handled => Some(resp),
        () = watch => None,
    }
}

/// What one read of a watched socket found.
enum Watched {
    /// Bytes (or none yet): watch on.
    More,
    /// The client closed its side, or the connection failed.
    Closed,
    /// The buffer holds more than a head may: reading stops (the client waits its turn).
    Full,
}

/// How often a watcher that stopped reading (`Watched::Full`) looks for the
/// client's end of file behind the bytes it left unread.
const FULL_RECHECK: Duration = Duration::from_secs(1);

/// Ends when the client closes its side of `stream`; `read` reads what
/// has come, once the socket is readable.
async fn until_closed<T: Connection>(stream: &T, mut read: impl FnMut(std::io::Result<()>) -> Watched) {
    loop {
        let ready = std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await;
        match read(ready) {
            Watched::More => {}
            Watched::Closed => return,
            Watched::Full => break,
        }
    }
    // Unread bytes keep the socket readable, so readiness cannot wake this
    // watch again; the poller's closed state (EPOLLRDHUP, which NGINX reads
    // the same way) still tells a client that left. Looked at each second:
    // rare (a pipeline past the head limit), and the upstream try it ends
    // runs for seconds anyway.
    loop {
        tokio::time::sleep(FULL_RECHECK).await;
        if stream.read_closed() {
            return;
        }
    }
}

/// Reads what `stream` has into `buf` (kept for the next request), up to `max`.
fn read_more<T: Connection>(stream: &T, buf: &mut BytesMut, max: usize, ready: std::io::Result<()>) -> Watched {
    if buf.len() > max || ready.is_err() {
        return Watched::Full;
    }
    if buf.capacity() - buf.len() < MIN_READ {
        buf.reserve(MIN_READ);
    }
    match stream.try_read_buf(buf) {
        Ok(0) => Watched::Closed,
        Ok(_) => Watched::More,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Watched::More,
        Err(_) => Watched::Closed,
    }
}

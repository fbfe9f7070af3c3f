//! Writing a response on a plain HTTP/1.1 connection: the head and the
//! body bytes already at hand go out in one `writev`; the rest streams as
//! it comes, framed as `response::body_framing` decided. A client that
//! stops reading for `stall` is cut off.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use http::Response;
use http_body::Body as _;
use tokio::time::Instant;

use super::Timer;
use crate::proxy::Body;
use crate::wire::decode::content_length;
use crate::wire::response_head::{self as response, BodyFraming, Exchange, Fields};
use crate::wire::transport::Transport;
use crate::wire::write_queue::{MAX_SLICES, WriteQueue};

/// Queued body bytes that are written without waiting for more.
const FLUSH_AT: usize = 64 * 1024;
/// How long a closing connection reads (and drops) what the client still
/// sends, so that it gets our answer instead of a reset.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_MAX: usize = 1 << 20;

/// A response on its way out: its head encoded, then its body, taken as it
/// comes and framed as `response::body_framing` decided.
///
/// `now` sends what can go without waiting, which for a small response is
/// all of it: the connection then never holds a writing future. Only a
/// response that must wait (for the socket or for its body) goes on in
/// `finish`, which the connection boxes, so that an idle connection's
/// task keeps no room for one.
pub struct Writing {
    out: Outgoing,
    body: Body,
    framing: BodyFraming,
    /// Body bytes still owed, for a `Length` framing.
    left: Option<u64>,
    /// The body's end is queued: `Some(true)` when it went whole and
    /// delimited, so that the connection can carry another request.
    ended: Option<bool>,
}

impl Writing {
    pub fn start(resp: Response<Body>, x: &Exchange<'_>) -> Writing {
        let (mut parts, mut body) = resp.into_parts();
        if !parts.headers.is_empty() {
            // Lines still raw join what the map already holds (`proxy::body`).
            body.merge_headers(&mut parts.headers);
        }
        let raw = body.take_raw();
        // The body's own size (an upstream body knows its Content-Length); the
        // header is read only for a body that does not know it (raw lines carry
        // none then: the upstream codec drops a length beside chunked).
        let exact = body.size_hint().exact();
        let declared = if exact.is_none() { content_length(&parts.headers).ok().flatten() } else { None };
        let framing = response::body_framing(x, parts.status, declared, exact);
        let fields = match &raw {
            Some((lines, edits)) => Fields::Raw(lines, edits.as_ref()),
            None => Fields::Map(&parts.headers),
        };
        let mut head = crate::wire::recycle::buffer(384 + parts.headers.len() * 40);
        response::encode_head(x, parts.status, fields, framing, exact, &mut head);
        crate::wire::recycle::give_back(parts.headers);
        drop(raw);
        // The head stays in its Vec (a `Bytes` made from it would allocate);
        // `head_sent` counts what of it the socket took.
        let out = Outgoing { head, head_sent: 0, queue: WriteQueue::new() };
        let (left, ended, body) = match framing {
            BodyFraming::None => (None, Some(true), Body::empty()),
            BodyFraming::Length(n) => (Some(n), None, body),
            BodyFraming::Chunked | BodyFraming::Close => (None, None, body),
        };
        Writing { out, body, framing, left, ended }
    }

    /// Everything, without waiting: `Some` with the outcome when the body
    /// was all at hand and the socket took it all; `None` when the rest
    /// must wait (`finish`).
    pub fn now<T: Transport + ?Sized>(&mut self, stream: &T) -> Option<std::io::Result<bool>> {
        // A body that is not ready is polled again, with the task's waker,
        // by `finish`: this poll's (no-op) waker is then replaced.
        let mut cx = Context::from_waker(Waker::noop());
        while self.ended.is_none() && !self.full() {
            match self.poll_step(&mut cx) {
                Poll::Ready(Some(reusable)) => self.ended = Some(reusable),
                Poll::Ready(None) => {}
                Poll::Pending => return None,
            }
        }
        let reusable = self.ended?;
        match write_now(stream, &mut self.out) {
            Ok(true) => Some(Ok(reusable)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// The rest of the response. `Ok(true)`: the body went out whole and
    /// delimited, so the connection can carry another request. A client
    /// that takes nothing for `stall` is an error.
    pub async fn finish<T: Transport + ?Sized>(
        mut self,
        stream: &T,
        timer: &mut Timer,
        stall: Duration,
    ) -> std::io::Result<bool> {
        loop {
            if let Some(reusable) = self.ended {
                flush(stream, &mut self.out, timer, stall).await?;
                return Ok(reusable);
            }
            if self.full() {
                flush(stream, &mut self.out, timer, stall).await?;
            }
            // Whatever the body has ready joins the queue; the queue is
            // written when the body has nothing more at hand.
            let step = std::future::poll_fn(|cx| match self.poll_step(cx) {
                Poll::Ready(step) => Poll::Ready(Some(step)),
                Poll::Pending if !self.out.is_empty() => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            })
            .await;
            match step {
                None => flush(stream, &mut self.out, timer, stall).await?,
                Some(Some(reusable)) => self.ended = Some(reusable),
                Some(None) => {}
            }
        }
    }

    /// Enough is queued to be written before more is taken.
    fn full(&self) -> bool {
        self.out.queue.len() >= FLUSH_AT || self.out.queue.count() >= MAX_SLICES - 1
    }

    /// Takes one frame of the body. `Ready(None)`: its bytes are queued;
    /// `Ready(Some(reusable))`: the body is over (its end queued, or it
    /// failed or overran: then the connection is not reused).
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Option<bool>> {
        // A body that knows it is done is not polled once more to say so.
        let frame =
            if self.body.is_end_stream() { None } else { std::task::ready!(Pin::new(&mut self.body).poll_frame(cx)) };
        let frame = match frame {
            None => {
                if self.framing == BodyFraming::Chunked {
                    self.out.queue.push_last_chunk();
                }
                // Shorter than its declared length: the client must not wait for the rest.
                return Poll::Ready(Some(self.framing != BodyFraming::Close && self.left.is_none_or(|l| l == 0)));
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed; closing the connection");
                return Poll::Ready(Some(false));
            }
            Some(Ok(frame)) => frame,
        };
        // Trailers are not sent on HTTP/1.1 (NGINX does not either).
        let Ok(mut data) = frame.into_data() else { return Poll::Ready(None) };
        match self.framing {
            BodyFraming::Chunked => self.out.queue.push_chunk(data),
            BodyFraming::Length(_) => {
                let room = self.left.unwrap_or(0);
                let over = data.len() as u64 > room;
                if over {
                    data.truncate(room as usize);
                }
                self.left = Some(room - data.len() as u64);
                self.out.queue.push(data);
                if over {
                    tracing::debug!("response body longer than its Content-Length; closing the connection");
                    return Poll::Ready(Some(false));
                }
            }
            BodyFraming::Close | BodyFraming::None => self.out.queue.push(data),
        }
        Poll::Ready(None)
    }
}

/// A response on its way out: the head, then the body bytes queued.
struct Outgoing {
    head: Vec<u8>,
    head_sent: usize,
    queue: WriteQueue,
}

impl Outgoing {
    fn is_empty(&self) -> bool {
        self.head_sent == self.head.len() && self.queue.is_empty()
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        crate::wire::recycle::give_back_buffer(std::mem::take(&mut self.head));
    }
}

/// Writes everything queued; a client that takes nothing for `stall` is an error.
async fn flush<T: Transport + ?Sized>(
    stream: &T,
    out: &mut Outgoing,
    timer: &mut Timer,
    stall: Duration,
) -> std::io::Result<()> {
    loop {
        if write_now(stream, out)? {
            return Ok(());
        }
        let deadline = Instant::now() + stall;
        tokio::select! {
            biased;
            ready = std::future::poll_fn(|cx| stream.poll_write_ready(cx)) => ready?,
            () = timer.until(deadline) => return Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
}

/// Writes what the connection takes now (`out` keeps the rest); `true`
/// when all of it is out (TLS records flushed too).
fn write_now<T: Transport + ?Sized>(stream: &T, out: &mut Outgoing) -> std::io::Result<bool> {
    while !out.is_empty() {
        let head = &out.head[out.head_sent..];
        let written = {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = out.queue.slices_after(head, &mut slices);
            stream.try_write_vectored(&slices[..count])
        };
        match written {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                let into_head = n.min(head.len());
                out.head_sent += into_head;
                out.queue.advance(n - into_head);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    stream.try_flush()
}

/// Ends the connection: our side is shut at once (TLS: after
/// `close_notify`); with `linger`, what the client still sends (a body we
/// did not read) is read and dropped for a moment, so that closing does not
/// reset the connection under our answer.
pub async fn close<T: Transport + ?Sized>(stream: &T, linger: bool) {
    let shut = std::future::poll_fn(|cx| stream.poll_shutdown(cx));
    let _ = tokio::time::timeout(LINGER_TIME, shut).await;
    if !linger {
        return;
    }
    let discard = async {
        let mut scratch = BytesMut::with_capacity(16 * 1024);
        let mut total = 0;
        loop {
            if std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await.is_err() {
                return;
            }
            scratch.clear();
            match stream.try_read_buf(&mut scratch) {
                Ok(0) => return,
                Ok(n) => {
                    total += n;
                    if total > LINGER_MAX {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, discard).await;
}

//! The one response body type the gateway sends: either bytes it made
//! itself or an upstream body streamed through untouched. An enum instead of
//! a boxed trait object: no allocation per response.
//!
//! A body from an HTTP/1.1 upstream may also carry that upstream's header
//! lines, not yet in the response's map (`wire::raw_headers`), and the
//! response-phase edits still to be made to them (`ResponseEdits`). Only
//! the plain HTTP/1.1 writer reads them as they are; everyone else calls
//! `merge_headers` first, after which the map is the whole truth.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::observe::{Ending, Pending};
use crate::policy::ctx::Slot;
use crate::policy::validate::response::BodyCheck;
use crate::upstream::InFlight;
use crate::upstream::h1::ResponseBody;
use crate::wire::BoxError;
use crate::wire::field_edits::ResponseEdits;
use crate::wire::names::X_REQUEST_ID;
use crate::wire::raw_headers::RawHeaders;

/// The piece a counted body is handed out in.
const COUNTED_PIECE: usize = 64 << 10;
/// The response body, and the request's observers until it is done.
#[derive(Debug)]
pub struct Body {
    kind: Kind,
    watch: Option<Watch>,
    /// A copy of the body for the response check (`validate.response: report`).
    check: Option<Box<BodyCheck>>,
    /// A gateway-made body counted against `max_buffered` (an aggregate's
    /// answer) until it is done.
    held: Option<Box<crate::http::buffer_budget::Held>>,
}

#[derive(Debug)]
enum Kind {
    /// A complete body made by the gateway (problem, static, echo…).
    Full(Option<Bytes>),
    /// An upstream's body, streamed; holds the target's in-flight slot (and
    /// any concurrency-limit slots) until done.
    /// `left`: what its `content-length` still promises (HTTP/2 targets).
    Upstream { inner: Streamed, _in_flight: Option<InFlight>, _slots: Vec<Slot>, read: ReadTimeout, left: Option<u64> },
    /// An upstream's body on an inline-driven connection (`upstream::h1`).
    /// Boxed: it holds the upstream connection and the raw head, and a
    /// response is moved several times on its way out.
    Pooled(Box<PooledBody>),
}

/// An upstream body another client streams: hyper's (HTTPS targets,
/// WebSocket handshakes) or the gateway's HTTP/2 client's.
#[derive(Debug)]
enum Streamed {
    Hyper(Incoming),
    H2(crate::upstream::h2::ResponseBody),
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        match self.get_mut() {
            Streamed::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Streamed::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Streamed::Hyper(b) => b.is_end_stream(),
            Streamed::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Streamed::Hyper(b) => b.size_hint(),
            Streamed::H2(b) => b.size_hint(),
        }
    }
}

/// A body from `upstream::h1`, with the slots it holds until it is done.
#[derive(Debug)]
pub struct PooledBody {
    pub inner: ResponseBody,
    /// Held until the body is done (its drop releases the target's slot).
    pub _in_flight: Option<InFlight>,
    pub slots: Vec<Slot>,
    /// The upstream's header lines, while they are not in the map.
    pub raw: Option<RawHeaders>,
    /// The response phase's edits to `raw`, left for the writer.
    pub edits: Option<ResponseEdits>,
    read: ReadTimeout,
}

/// `timeouts.read`: the longest pause between two frames of an upstream's
/// body. Its timer is made only when the body first has to wait (a body
/// that is all at hand never needs one), and re-armed after a frame.
#[derive(Debug)]
struct ReadTimeout {
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A frame came since the timer was armed.
    moved: bool,
}

impl ReadTimeout {
    fn new(limit: Duration) -> ReadTimeout {
        ReadTimeout { limit, timer: None, moved: false }
    }

    /// Passes `polled` on; a body that has waited `limit` since its last
    /// frame fails instead.
    fn guard(&mut self, cx: &mut Context<'_>, polled: Polled) -> Polled {
        if !polled.is_pending() {
            self.moved = true;
            return polled;
        }
        let timer = match &mut self.timer {
            Some(timer) => {
                if self.moved {
                    timer.as_mut().reset(Instant::now() + self.limit);
                }
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep(self.limit))),
        };
        self.moved = false;
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(self.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }
}

type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

/// An upstream's body cut for `timeouts.read` (logged `UT`, not `UC`: the
/// upstream is slow, not gone).
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing of the body for {0:?}")]
struct BodyStalled(Duration);

/// An upstream's frame as the client gets it (hyper's client: HTTPS and
/// HTTP/2 targets). Trailers are dropped, as the own HTTP/1.1 client drops
/// them: fields such as `Set-Cookie`, `Content-Length` or `Location` must
/// not come as trailers (RFC 9110 §6.5.1), the response phase never sees
/// them, and an HTTP/2 client refuses a stream whose trailers hold
/// `content-length`. A body that ends short of its `content-length` (a
/// stream reset with `NO_ERROR` before its end) fails instead of ending as
/// if whole.
fn upstream_frame(polled: Polled, left: &mut Option<u64>) -> Polled {
    let end = |left: &Option<u64>| match left {
        Some(n) if *n > 0 => Poll::Ready(Some(Err(format!("the upstream's body ended {n} bytes short").into()))),
        _ => Poll::Ready(None),
    };
    match polled {
        Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => end(left),
        Poll::Ready(Some(Ok(frame))) => {
            if let (Some(n), Some(data)) = (left.as_mut(), frame.data_ref()) {
                *n = n.saturating_sub(data.len() as u64);
            }
            Poll::Ready(Some(Ok(frame)))
        }
        Poll::Ready(None) => end(left),
        other => other,
    }
}

/// The request's metrics and log line, finished when the body is dropped:
/// how many bytes went out and whether they all did.
#[derive(Debug)]
struct Watch {
    pending: Option<Box<Pending>>,
    ended: bool,
    broke: bool,
    /// It broke for `timeouts.read` (`BodyStalled`).
    stalled: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            let ending = if self.stalled {
                Ending::UpstreamStalled
            } else if self.broke {
                Ending::UpstreamBroke
            } else if self.ended || p.bodiless {
                Ending::Complete
            } else {
                Ending::ClientLeft
            };
            p.finish(ending);
        }
    }
}

impl Body {
    fn of(kind: Kind) -> Body {
        Body { kind, watch: None, check: None, held: None }
    }

    /// An `upstream::h1` body; its upstream's header lines stay raw in it
    /// (the response's map empty) until a step needs them in the map.
    /// `read_timeout`: the longest pause between two pieces of it.
    pub fn pooled(inner: ResponseBody, raw: RawHeaders, in_flight: InFlight, read_timeout: Duration) -> Body {
        Body::of(Kind::Pooled(Box::new(PooledBody {
            inner,
            _in_flight: Some(in_flight),
            slots: Vec::new(),
            raw: Some(raw),
            edits: None,
            read: ReadTimeout::new(read_timeout),
        })))
    }

    /// A body an HTTP/2 target streams, of the `content-length` it
    /// declared (`None`: none, or a body that has none, as a HEAD's).
    pub fn upstream_h2(
        inner: crate::upstream::h2::ResponseBody,
        in_flight: InFlight,
        read_timeout: Duration,
        declared: Option<u64>,
    ) -> Body {
        let read = ReadTimeout::new(read_timeout);
        let inner = Streamed::H2(inner);
        Body::of(Kind::Upstream { inner, _in_flight: Some(in_flight), _slots: Vec::new(), read, left: declared })
    }

    /// A body hyper's client streams from an upstream.
    pub fn upstream(inner: Incoming, in_flight: InFlight, read_timeout: Duration) -> Body {
        let read = ReadTimeout::new(read_timeout);
        let inner = Streamed::Hyper(inner);
        Body::of(Kind::Upstream { inner, _in_flight: Some(in_flight), _slots: Vec::new(), read, left: None })
    }

    /// Counts the body against `max_buffered` until it is done (handed out
    /// in pieces of `COUNTED_PIECE`).
    pub fn counted(mut self, held: crate::http::buffer_budget::Held) -> Body {
        self.held = Some(Box::new(held));
        self
    }

    pub fn empty() -> Body {
        Body::of(Kind::Full(None))
    }

    /// Keeps concurrency slots until the body is finished. A gateway-made
    /// body is complete already: its slots are released now.
    pub fn hold(mut self, slots: Vec<Slot>) -> Body {
        match &mut self.kind {
            Kind::Upstream { _slots, .. } => _slots.extend(slots),
            Kind::Pooled(p) => p.slots.extend(slots),
            Kind::Full(_) => {}
        }
        self
    }

    /// An answer that has no content (RFC 9110 §6.4.1: to HEAD, and 1xx,
    /// 204, 304) on HTTP/2, where hyper sends whatever the body holds (the
    /// HTTP/1.1 writer leaves it out itself): the body is dropped, an
    /// upstream's too (an HTTP/2 upstream may have sent DATA after all,
    /// which would make the client's stream malformed). A HEAD's answer
    /// the gateway made keeps its length as `content-length`; a 1xx or 204
    /// has none (§8.6).
    pub fn drop_content(&mut self, status: http::StatusCode, head: bool, headers: &mut http::HeaderMap) {
        if let (true, Kind::Full(Some(bytes))) = (head, &self.kind) {
            headers.entry(http::header::CONTENT_LENGTH).or_insert_with(|| bytes.len().into());
        }
        if status.is_informational() || status == http::StatusCode::NO_CONTENT {
            headers.remove(http::header::CONTENT_LENGTH);
        }
        // A body known to be over already (an HTTP/1.1 upstream's bodiless
        // answer) stays: it gives its connection back when it is done.
        if !http_body::Body::is_end_stream(self) {
            self.kind = Kind::Full(None);
            if let Some(w) = &mut self.watch {
                w.ended = true;
            }
        }
    }

    /// Hands the request's observers to the body: they finish when it is done.
    pub fn watch(&mut self, pending: Box<Pending>) {
        let ended = http_body::Body::is_end_stream(self);
        self.watch = Some(Watch { pending: Some(pending), ended, broke: false, stalled: false });
    }

    /// Copies the body as it streams and checks it once it has ended.
    pub fn check(&mut self, check: BodyCheck) {
        let mut check = Box::new(check);
        if http_body::Body::is_end_stream(self) {
            check.complete();
        }
        self.check = Some(check);
    }

    /// The upstream header lines this body still carries, if any.
    pub fn raw_headers(&self) -> Option<&RawHeaders> {
        match &self.kind {
            Kind::Pooled(p) => p.raw.as_ref(),
            _ => None,
        }
    }

    /// Moves the raw header lines, then the deferred edits, into `headers`.
    pub fn merge_headers(&mut self, headers: &mut HeaderMap) {
        if let Kind::Pooled(p) = &mut self.kind {
            if let Some(raw) = p.raw.take() {
                raw.into_map(headers);
            }
            if let Some(edits) = p.edits.take() {
                edits.apply(headers);
            }
        }
    }

    /// Leaves the edits `make` makes for the writer, when this body still
    /// carries an upstream's raw lines; `false` (and nothing made) otherwise.
    fn defer_with(&mut self, make: impl FnOnce() -> ResponseEdits) -> bool {
        match &mut self.kind {
            Kind::Pooled(p) if p.raw.is_some() => {
                p.edits = Some(make());
                true
            }
            _ => false,
        }
    }

    /// The deferred edits, when the writer will apply them.
    fn edits_mut(&mut self) -> Option<&mut ResponseEdits> {
        match &mut self.kind {
            Kind::Pooled(p) => p.edits.as_mut(),
            _ => None,
        }
    }

    /// For the HTTP/1.1 writer: the raw lines and their edits, taken out.
    pub fn take_raw(&mut self) -> Option<(RawHeaders, Option<ResponseEdits>)> {
        match &mut self.kind {
            Kind::Pooled(p) => Some((p.raw.take()?, p.edits.take())),
            _ => None,
        }
    }

    pub fn full(bytes: impl Into<Bytes>) -> Body {
        let bytes = bytes.into();
        Body::of(Kind::Full(if bytes.is_empty() { None } else { Some(bytes) }))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            // A counted answer goes in pieces: the count lives while the
            // writer (hyper's HTTP/2 send buffer too) still asks for more.
            Kind::Full(Some(b)) if this.held.is_some() && b.len() > COUNTED_PIECE => {
                Poll::Ready(Some(Ok(Frame::data(b.split_to(COUNTED_PIECE)))))
            }
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream { inner, read, left, .. } => {
                let polled = Pin::new(inner).poll_frame(cx);
                upstream_frame(read.guard(cx, polled), left)
            }
            Kind::Pooled(p) => {
                let polled = Pin::new(&mut p.inner).poll_frame(cx);
                p.read.guard(cx, polled)
            }
        };
        if let Some(c) = &mut this.check {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        c.push(data);
                    }
                }
                // Broken off: nothing to judge.
                Poll::Ready(Some(Err(_))) => this.check = None,
                Poll::Ready(None) | Poll::Pending => {}
            }
            let ended = matches!(polled, Poll::Ready(None)) || {
                match &this.kind {
                    Kind::Full(bytes) => bytes.is_none(),
                    Kind::Upstream { inner, .. } => inner.is_end_stream(),
                    Kind::Pooled(p) => p.inner.is_end_stream(),
                }
            };
            // Judged when the body is dropped (after the writer has sent the
            // last bytes), so that the check never holds them back.
            if ended && let Some(c) = &mut this.check {
                c.complete();
            }
        }
        if let Some(w) = &mut this.watch {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let (Some(data), Some(p)) = (frame.data_ref(), &mut w.pending) {
                        p.response_bytes += data.len() as u64;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    w.broke = true;
                    w.stalled = e.is::<BodyStalled>();
                }
                Poll::Ready(None) => w.ended = true,
                Poll::Pending => {}
            }
            // A writer that checks `is_end_stream` never polls past the last frame.
            if !w.ended && !w.broke && matches!(polled, Poll::Ready(Some(Ok(_)))) {
                w.ended = match &this.kind {
                    Kind::Full(bytes) => bytes.is_none(),
                    Kind::Upstream { inner, .. } => inner.is_end_stream(),
                    Kind::Pooled(p) => p.inner.is_end_stream(),
                };
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
            Kind::Pooled(p) => p.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { inner, .. } => inner.size_hint(),
            Kind::Pooled(p) => p.inner.size_hint(),
        }
    }
}

/// The response's whole header map: lines an upstream sent raw (and any
/// edits left for the writer) join it first. For response steps that must
/// see or change the map.
pub fn headers_mut(resp: &mut Response<Body>) -> &mut HeaderMap {
    if resp.body().raw_headers().is_some() {
        let (mut parts, mut body) = std::mem::replace(resp, Response::new(Body::empty())).into_parts();
        body.merge_headers(&mut parts.headers);
        *resp = Response::from_parts(parts, body);
    }
    resp.headers_mut()
}

/// Leaves `make`'s field edits to the writer, which applies them to an
/// upstream's raw lines as it writes them (both writers give the same
/// head). `false` when the response's map is the whole truth: edit it.
pub fn defer_edits(resp: &mut Response<Body>, make: impl FnOnce() -> ResponseEdits) -> bool {
    resp.body_mut().defer_with(make)
}

/// Sets the request id, the last edit of every response.
pub fn set_request_id(resp: &mut Response<Body>, id: HeaderValue) {
    match resp.body_mut().edits_mut() {
        Some(edits) => edits.request_id = Some(id),
        None => {
            resp.headers_mut().insert(X_REQUEST_ID, id);
        }
    }
}

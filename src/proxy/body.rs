//! The one response body type the gateway sends: either bytes it made
//! itself or an upstream body streamed through untouched. An enum instead of
//! a boxed trait object: no allocation per response.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;

use crate::policy::ratelimit::Slot;
use crate::upstream::InFlight;
use crate::upstream::h1pool::Pooled;

#[derive(Debug)]
pub enum Body {
    /// A complete body made by the gateway (problem, static, echo…).
    Full(Option<Bytes>),
    /// An upstream's body, streamed; holds the target's in-flight slot (and
    /// any concurrency-limit slots) until done.
    Upstream { inner: Incoming, _in_flight: Option<InFlight>, _slots: Vec<Slot> },
    /// An upstream's body on an inline-driven connection (`upstream::h1pool`).
    Pooled(PooledBody),
}

/// Streams the body and drives its connection; gives the connection back
/// to the pool once the body has been read to the end.
#[derive(Debug)]
pub struct PooledBody {
    pub inner: Incoming,
    pub conn: Option<Pooled>,
    pub in_flight: Option<InFlight>,
    pub slots: Vec<Slot>,
    /// The body ended (for chunked bodies `is_end_stream` never says so).
    pub done: bool,
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && (self.done || self.inner.is_end_stream())
        {
            conn.release();
        }
    }
}

impl Body {
    pub fn empty() -> Body {
        Body::Full(None)
    }

    /// Keeps concurrency slots until the body is finished. A gateway-made
    /// body is complete already: its slots are released now.
    pub fn hold(self, slots: Vec<Slot>) -> Body {
        match self {
            Body::Upstream { inner, _in_flight, mut _slots } => {
                _slots.extend(slots);
                Body::Upstream { inner, _in_flight, _slots }
            }
            Body::Pooled(mut p) => {
                p.slots.extend(slots);
                Body::Pooled(p)
            }
            full => full,
        }
    }

    pub fn full(bytes: impl Into<Bytes>) -> Body {
        let bytes = bytes.into();
        if bytes.is_empty() { Body::Full(None) } else { Body::Full(Some(bytes)) }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Upstream { inner, .. } => Pin::new(inner).poll_frame(cx),
            Body::Pooled(p) => {
                if let Some(conn) = p.conn.as_mut() {
                    conn.poll_conn(cx);
                }
                let frame = Pin::new(&mut p.inner).poll_frame(cx);
                if matches!(frame, Poll::Ready(None)) {
                    p.done = true;
                }
                frame
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(bytes) => bytes.is_none(),
            Body::Upstream { inner, .. } => inner.is_end_stream(),
            Body::Pooled(p) => p.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Upstream { inner, .. } => inner.size_hint(),
            Body::Pooled(p) => p.inner.size_hint(),
        }
    }
}

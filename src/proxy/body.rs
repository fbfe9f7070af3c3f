//! The one response body type the gateway sends: either bytes it made
//! itself or an upstream body streamed through untouched. An enum instead of
//! a boxed trait object: no allocation per response.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use super::error::BoxError;
use crate::policy::ratelimit::Slot;
use crate::upstream::InFlight;
use crate::upstream::h1::ResponseBody;

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

/// A body from `upstream::h1`, with the slots it holds until it is done.
#[derive(Debug)]
pub struct PooledBody {
    pub inner: ResponseBody,
    pub in_flight: Option<InFlight>,
    pub slots: Vec<Slot>,
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
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Upstream { inner, .. } => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            Body::Pooled(p) => Pin::new(&mut p.inner).poll_frame(cx),
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

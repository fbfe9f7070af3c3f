//! The request body as a client connection delivers it: from hyper (HTTP/2,
//! TLS, upgrades) or from our own HTTP/1.1 codec on plain listeners. The
//! engine sees one type (an enum, no allocation per request).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::wire::BoxError;
use crate::wire::body_reader::BodyReader;

#[derive(Debug)]
pub enum ClientBody {
    /// The request has no body.
    Empty,
    /// A body read whole already (to validate it), sent on as it came.
    Buffered(Option<Bytes>),
    Hyper(Incoming),
    H1(BodyReader),
}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::Buffered(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ClientBody::Hyper(inner) => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            ClientBody::H1(inner) => Pin::new(inner).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Buffered(bytes) => bytes.is_none(),
            ClientBody::Hyper(inner) => inner.is_end_stream(),
            ClientBody::H1(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Buffered(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ClientBody::Hyper(inner) => inner.size_hint(),
            ClientBody::H1(inner) => inner.size_hint(),
        }
    }
}

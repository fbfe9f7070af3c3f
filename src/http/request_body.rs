//! The request body on its way upstream: streamed as it arrives, but
//! limited in size (413, enforced while streaming, not after buffering) and
//! in how long it may stall between pieces (408, against slow POSTs).
//! Trailer fields (HTTP/2, or hyper's HTTP/1.1) never carry what RFC 9110
//! §6.5.1 keeps out of trailers (framing, routing, authentication, request
//! modifiers…): those are dropped on the way, so a trailer cannot add a
//! second `Host` or `Content-Length` after the head was checked.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

use super::client_body::ClientBody;
use crate::wire::BoxError;

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the client stopped sending the request body")]
    Timeout,
    #[error("the request body could not be read")]
    Read(#[source] BoxError),
}

use http::header::{self, HeaderName};

/// Fields a trailer may not carry (RFC 9110 §6.5.1).
static NOT_IN_TRAILERS: [HeaderName; 20] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::HOST,
    header::CONNECTION,
    header::UPGRADE,
    header::TE,
    header::TRAILER,
    header::EXPECT,
    header::MAX_FORWARDS,
    header::CACHE_CONTROL,
    header::PRAGMA,
    header::RANGE,
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
];

#[derive(Debug)]
pub struct RequestBody {
    inner: ClientBody,
    limit: u64,
    received: u64,
    stall_timeout: Duration,
    /// Armed only while waiting for data: bodies that arrive at once never allocate it.
    stall: Option<Pin<Box<Sleep>>>,
}

impl RequestBody {
    pub fn new(inner: ClientBody, limit: u64, stall_timeout: Duration) -> RequestBody {
        RequestBody { inner, limit, received: 0, stall_timeout, stall: None }
    }

    /// No body (a placeholder while a phase holds the real one).
    pub fn empty() -> RequestBody {
        RequestBody { inner: ClientBody::Empty, limit: 0, received: 0, stall_timeout: Duration::ZERO, stall: None }
    }

    /// A body already read whole (`limit` and `stall_timeout` as the original's).
    pub fn buffered(bytes: Bytes, limit: u64, stall_timeout: Duration) -> RequestBody {
        let received = bytes.len() as u64;
        let inner = ClientBody::Buffered((!bytes.is_empty()).then_some(bytes));
        RequestBody { inner, limit, received, stall_timeout, stall: None }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// Body bytes read so far.
    pub fn received(&self) -> u64 {
        self.received
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.stall = None;
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.received > this.limit {
                        return Poll::Ready(Some(Err(BodyError::TooLarge(this.limit))));
                    }
                }
                let frame = match frame.into_trailers() {
                    Ok(mut trailers) => {
                        crate::wire::remove::remove_all(&mut trailers, &NOT_IN_TRAILERS);
                        Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Read(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let timeout = this.stall_timeout;
                let stall = this.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(stall.as_mut().poll(cx));
                Poll::Ready(Some(Err(BodyError::Timeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

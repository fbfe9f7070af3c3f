//! The request body on its way upstream: streamed as it arrives, but
//! limited in size (413, enforced while streaming, not after buffering) and
//! in how long it may stall between pieces (408, against slow POSTs).
//! Trailer fields (HTTP/2's; the own HTTP/1.1 codec drops its own) are
//! dropped, as NGINX drops a request's: no admission rule ever read them
//! (identity headers, names with `_`, values with blanks, the route's
//! header edits), and a service that merges trailers into its headers
//! would take them as the client's word. gRPC, which needs them, is not
//! proxied.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

use super::buffer_budget::Held;
use super::client_body::ClientBody;
use crate::wire::BoxError;

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the request body did not arrive in time")]
    Timeout,
    #[error("the request body could not be read")]
    Read(#[source] BoxError),
}

impl BodyError {
    /// The body broke off because the client went away (its connection
    /// ended or was reset, its stream reset), not for anything it sent.
    pub fn client_left(&self) -> bool {
        matches!(self, BodyError::Read(e) if crate::http::error::client_gone(e.as_ref()))
    }
}

#[derive(Debug)]
pub struct RequestBody {
    inner: ClientBody,
    limit: u64,
    received: u64,
    stall_timeout: Duration,
    /// Armed only while waiting for data: bodies that arrive at once never allocate it.
    stall: Option<Pin<Box<Sleep>>>,
    /// What was sent so far, kept for another try (`keep_for_retry`).
    replay: Option<Box<Replay>>,
    /// A body read whole: its bytes' count against `max_buffered`.
    held: Option<Held>,
    /// Shared with whoever sent the body away (hyper's client takes it):
    /// whether its last poll waited for the client, and why it was cut.
    waiting: Option<Arc<BodyWatch>>,
}

/// What the sender of a body given away can still learn of it: hyper's
/// HTTP/2 client replaces the body's error with a stream reset of its own,
/// so a body refused as too large would read as the upstream's failure
/// (a 502, and a mark against the target's health).
#[derive(Debug, Default)]
pub struct BodyWatch {
    /// The last poll waited for the client (`waiting_on_client`).
    pub waiting: AtomicBool,
    /// Why the body was cut off, by the client's doing.
    pub cut: std::sync::OnceLock<BodyCut>,
    /// The body bytes that have come so far (what the log reports of a
    /// body whose request ended before the sender saw it end).
    pub received: std::sync::atomic::AtomicU64,
}

/// A `BodyError`, as a body's sender learns it afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCut {
    TooLarge(u64),
    Timeout,
    /// The client left, or its body broke off.
    ClientLeft,
    Read,
}

/// The body pieces handed out so far, kept (up to a limit) so that a retry
/// can send them again; then the rest of the body follows.
#[derive(Debug)]
struct Replay {
    kept: Vec<Bytes>,
    kept_len: u64,
    limit: u64,
    /// More than `limit`: this body cannot be sent again.
    overflowed: bool,
    /// The next kept piece to hand out again (`kept.len()`: none).
    cursor: usize,
}

impl RequestBody {
    pub fn new(inner: ClientBody, limit: u64, stall_timeout: Duration) -> RequestBody {
        RequestBody { inner, limit, received: 0, stall_timeout, stall: None, replay: None, held: None, waiting: None }
    }

    /// No body (a placeholder while a phase holds the real one).
    pub fn empty() -> RequestBody {
        RequestBody {
            inner: ClientBody::Empty,
            limit: 0,
            received: 0,
            stall_timeout: Duration::ZERO,
            stall: None,
            replay: None,
            held: None,
            waiting: None,
        }
    }

    /// A body already read whole (`limit` and `stall_timeout` as the original's).
    /// `received` counts its bytes as they are handed out, as for a body
    /// still coming (counted at the start too, a validated body was logged
    /// and measured twice its size).
    pub fn buffered(bytes: Bytes, limit: u64, stall_timeout: Duration) -> RequestBody {
        let inner = ClientBody::Buffered((!bytes.is_empty()).then_some(bytes));
        RequestBody { inner, limit, received: 0, stall_timeout, stall: None, replay: None, held: None, waiting: None }
    }

    /// Keeps `held` (the count of this body's bytes) for as long as the body lives.
    pub fn holding(mut self, held: Held) -> RequestBody {
        self.held = Some(held);
        self
    }

    /// Keeps up to `limit` bytes of what is handed out, so that `rewind`
    /// can hand them out again for a retry. Asked again (a retry policy's
    /// `buffer`, then the pool's resend on a stale connection), the larger
    /// limit holds: the first one asked no longer switches the other off.
    pub fn keep_for_retry(&mut self, limit: u64) {
        match &mut self.replay {
            None => {
                let replay = Replay { kept: Vec::new(), kept_len: 0, limit, overflowed: false, cursor: 0 };
                self.replay = Some(Box::new(replay));
            }
            Some(r) if !r.overflowed => r.limit = r.limit.max(limit),
            Some(_) => {}
        }
    }

    /// [`rewind`](Self::rewind), only if at most `limit` bytes went out
    /// (a retry policy's `buffer`, below what the pool keeps).
    pub fn rewind_within(&mut self, limit: u64) -> bool {
        if self.replay.as_ref().is_some_and(|r| r.kept_len > limit) {
            return false;
        }
        self.rewind()
    }

    /// Whether there is nothing (more) to send.
    pub fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(self)
    }

    /// Starts the body over for another try. `false`: it cannot be (more
    /// was sent than was kept), and must not be tried again.
    pub fn rewind(&mut self) -> bool {
        match &mut self.replay {
            Some(r) if !r.overflowed => {
                r.cursor = 0;
                true
            }
            Some(_) => false,
            None => self.received == 0,
        }
    }

    /// Whether the body is there whole (read by a phase, or none).
    pub fn is_whole(&self) -> bool {
        matches!(self.inner, ClientBody::Empty | ClientBody::Buffered(_))
    }

    /// A copy of a body that is there whole (read by a phase, or none),
    /// for a client that consumes the body it is given. The copy takes
    /// the count against `max_buffered`: it is the one kept (for a retry)
    /// while the other is sent away and dropped.
    pub fn try_clone_whole(&mut self) -> Option<RequestBody> {
        let inner = match &self.inner {
            ClientBody::Empty => ClientBody::Empty,
            ClientBody::Buffered(b) => ClientBody::Buffered(b.clone()),
            // Ended with nothing read: an HTTP/2 request without a body
            // (its HEADERS ended the stream) is one as empty.
            _ if self.received == 0 && self.is_end_stream() => ClientBody::Empty,
            _ => return None,
        };
        Some(RequestBody {
            inner,
            limit: self.limit,
            received: self.received,
            stall_timeout: self.stall_timeout,
            stall: None,
            replay: None,
            held: self.held.take(),
            waiting: None,
        })
    }

    /// The client waits for `100 Continue` before it sends the body
    /// (HTTP/1.1, nothing of it read yet).
    pub fn awaits_continue(&self) -> bool {
        matches!(&self.inner, ClientBody::H1(reader) if reader.awaits_continue())
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// The last poll waited for the client (a piece of the body that has
    /// not come), rather than handing one out.
    pub fn waiting_on_client(&self) -> bool {
        self.stall.is_some()
    }

    /// `waiting_on_client` and the body's cut, readable after the body has
    /// been given away (to hyper's client, which owns what it sends).
    pub fn watch(&mut self) -> Arc<BodyWatch> {
        let stalled = self.stall.is_some();
        self.waiting
            .get_or_insert_with(|| Arc::new(BodyWatch { waiting: AtomicBool::new(stalled), ..Default::default() }))
            .clone()
    }

    fn not_waiting(&mut self) {
        self.stall = None;
        if let Some(w) = &self.waiting {
            w.waiting.store(false, Ordering::Relaxed);
        }
    }

    /// Notes why the body ends in an error, for a sender that watches.
    fn cut(&self, error: BodyError) -> BodyError {
        if let Some(w) = &self.waiting {
            let cut = match &error {
                BodyError::TooLarge(limit) => BodyCut::TooLarge(*limit),
                BodyError::Timeout => BodyCut::Timeout,
                BodyError::Read(e) if crate::http::error::client_gone(e.as_ref()) => BodyCut::ClientLeft,
                BodyError::Read(_) => BodyCut::Read,
            };
            let _ = w.cut.set(cut);
        }
        error
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
        if let Some(r) = &mut this.replay
            && r.cursor < r.kept.len()
        {
            r.cursor += 1;
            return Poll::Ready(Some(Ok(Frame::data(r.kept[r.cursor - 1].clone()))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.stall = None;
                if let Some(w) = &this.waiting {
                    w.waiting.store(false, Ordering::Relaxed);
                }
                if frame.is_trailers() {
                    // Dropped (above); the end of the body follows them.
                    return Pin::new(this).poll_frame(cx);
                }
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if let Some(w) = &this.waiting {
                        w.received.store(this.received, Ordering::Relaxed);
                    }
                    // What the framing has promised counts too: a chunk
                    // announced larger than the limit is refused at its
                    // first bytes, not after the limit's worth went upstream
                    // (NGINX checks each chunk size likewise).
                    let promised = this.inner.size_hint().lower();
                    if this.received.saturating_add(promised) > this.limit {
                        return Poll::Ready(Some(Err(this.cut(BodyError::TooLarge(this.limit)))));
                    }
                }
                if let Some(r) = &mut this.replay {
                    r.keep(&frame);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.not_waiting();
                Poll::Ready(Some(Err(this.cut(BodyError::Read(e)))))
            }
            // Over before the length it declared: the client broke off. (An
            // HTTP/2 client's RST_STREAM(NO_ERROR) mid-body reads as the end
            // of the body in hyper, as a server's early answer would; the
            // upstream would see a body short of its length, a 502 blamed
            // on it and a mark against its health.)
            Poll::Ready(None) if this.inner.size_hint().lower() > 0 => {
                this.not_waiting();
                let left = crate::http::error::ClientLeft;
                Poll::Ready(Some(Err(this.cut(BodyError::Read(Box::new(left))))))
            }
            // Over: whatever comes late now is not the client's doing.
            Poll::Ready(None) => {
                this.not_waiting();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some(w) = &this.waiting {
                    w.waiting.store(true, Ordering::Relaxed);
                }
                let timeout = this.stall_timeout;
                let stall = this.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(stall.as_mut().poll(cx));
                Poll::Ready(Some(Err(this.cut(BodyError::Timeout))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream() && self.replay.as_ref().is_none_or(|r| r.cursor >= r.kept.len())
    }

    fn size_hint(&self) -> SizeHint {
        let hint = self.inner.size_hint();
        match &self.replay {
            // What is left of the body: the kept pieces not handed out again, and the rest.
            Some(r) if r.cursor < r.kept.len() => {
                let again: u64 = r.kept[r.cursor..].iter().map(|b| b.len() as u64).sum();
                let mut total = SizeHint::new();
                total.set_lower(hint.lower() + again);
                if let Some(upper) = hint.upper() {
                    total.set_upper(upper + again);
                }
                total
            }
            _ => hint,
        }
    }
}

impl Replay {
    fn keep(&mut self, frame: &Frame<Bytes>) {
        // Only pieces handed out for the first time reach here.
        if self.overflowed {
            return;
        }
        // The piece that crosses the limit is kept too: it is in memory as
        // it goes anyway, and a sender that has not sent it yet (an HTTP/2
        // stream waiting for its window) can still send the body again.
        // `rewind_within` holds a retry to the limit itself.
        match frame.data_ref() {
            Some(data) if self.kept_len <= self.limit => {
                self.kept_len += data.len() as u64;
                self.kept.push(data.clone());
                self.cursor = self.kept.len();
            }
            // Too long (trailers never come here: dropped before).
            _ => {
                self.overflowed = true;
                self.kept = Vec::new();
                self.cursor = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender waiting for an HTTP/2 window reads the piece after the
    /// window's worth before it can send it: with a 64 KiB window and a
    /// 64 KiB limit, that piece is kept (the body can still go again on a
    /// stream the target never processed); one more is not.
    #[test]
    fn the_piece_crossing_the_limit_is_kept_and_no_more() {
        let mut r = Replay { kept: Vec::new(), kept_len: 0, limit: 64 << 10, overflowed: false, cursor: 0 };
        let piece = |n: usize| Frame::data(Bytes::from(vec![b'x'; n]));
        for _ in 0..5 {
            r.keep(&piece(16 << 10));
        }
        assert!(!r.overflowed);
        assert_eq!(r.kept_len, 80 << 10);
        r.keep(&piece(1));
        assert!(r.overflowed);
        assert!(r.kept.is_empty());
    }
}

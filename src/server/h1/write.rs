//! Writing a response on a plain HTTP/1.1 connection: the head and the
//! body bytes already at hand go out in one `writev`; the rest streams as
//! it comes, framed as `response::body_framing` decided. A client that
//! stops reading for `stall` is cut off.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use http::Response;
use http_body::Body as _;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Timer;
use super::response::{self, BodyFraming, Exchange, Fields};
use crate::http::decode::content_length;
use crate::http::write_queue::{MAX_SLICES, WriteQueue};
use crate::proxy::Body;

/// Queued body bytes that are written without waiting for more.
const FLUSH_AT: usize = 64 * 1024;
/// How long a closing connection reads (and drops) what the client still
/// sends, so that it gets our answer instead of a reset.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_MAX: usize = 1 << 20;

/// Writes `resp`. `Ok(true)`: the body went out whole and delimited, so
/// the connection can carry another request.
// Not an `async fn`, for the reason given at `proxy::handle`.
#[allow(clippy::manual_async_fn)]
pub fn response(
    stream: &TcpStream,
    resp: Response<Body>,
    x: &Exchange<'_>,
    timer: &mut Timer,
    stall: Duration,
) -> impl Future<Output = std::io::Result<bool>> {
    async move {
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
        let mut head = crate::http::recycle::buffer(384 + parts.headers.len() * 40);
        response::encode_head(x, parts.status, fields, framing, exact, &mut head);
        crate::http::recycle::give_back(parts.headers);
        drop(raw);
        // The head stays in its Vec (a `Bytes` made from it would allocate);
        // `head_sent` counts what of it the socket took.
        let mut out = Outgoing { head, head_sent: 0, queue: WriteQueue::new() };
        let mut left = match framing {
            BodyFraming::None => {
                drop(body);
                flush(stream, &mut out, timer, stall).await?;
                return Ok(true);
            }
            BodyFraming::Length(n) => Some(n),
            BodyFraming::Chunked | BodyFraming::Close => None,
        };
        loop {
            // Whatever the body has ready joins the queue; the queue is written
            // when the body has nothing more at hand. A body that knows it is
            // done is not polled once more to say so.
            let step = if body.is_end_stream() {
                Some(None)
            } else {
                std::future::poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Ready(frame) => Poll::Ready(Some(frame)),
                    Poll::Pending if !out.is_empty() => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                })
                .await
            };
            match step {
                None => flush(stream, &mut out, timer, stall).await?,
                Some(None) => {
                    if framing == BodyFraming::Chunked {
                        out.queue.push_last_chunk();
                    }
                    flush(stream, &mut out, timer, stall).await?;
                    // Shorter than its declared length: the client must not wait for the rest.
                    return Ok(framing != BodyFraming::Close && left.is_none_or(|l| l == 0));
                }
                Some(Some(Err(e))) => {
                    tracing::debug!(error = %e, "response body failed; closing the connection");
                    flush(stream, &mut out, timer, stall).await?;
                    return Ok(false);
                }
                Some(Some(Ok(frame))) => {
                    // Trailers are not sent on HTTP/1.1 (NGINX does not either).
                    let Ok(mut data) = frame.into_data() else { continue };
                    match framing {
                        BodyFraming::Chunked => out.queue.push_chunk(data),
                        BodyFraming::Length(_) => {
                            let room = left.unwrap_or(0);
                            let over = data.len() as u64 > room;
                            if over {
                                data.truncate(room as usize);
                            }
                            left = Some(room - data.len() as u64);
                            out.queue.push(data);
                            if over {
                                tracing::debug!("response body longer than its Content-Length; closing the connection");
                                flush(stream, &mut out, timer, stall).await?;
                                return Ok(false);
                            }
                        }
                        BodyFraming::Close | BodyFraming::None => out.queue.push(data),
                    }
                    if out.queue.len() >= FLUSH_AT || out.queue.count() >= MAX_SLICES - 1 {
                        flush(stream, &mut out, timer, stall).await?;
                    }
                }
            }
        }
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
        crate::http::recycle::give_back_buffer(std::mem::take(&mut self.head));
    }
}

/// Writes everything queued; a client that takes nothing for `stall` is an error.
async fn flush(stream: &TcpStream, out: &mut Outgoing, timer: &mut Timer, stall: Duration) -> std::io::Result<()> {
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
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let deadline = Instant::now() + stall;
                tokio::select! {
                    biased;
                    ready = stream.writable() => ready?,
                    () = timer.until(deadline) => return Err(std::io::ErrorKind::TimedOut.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Ends the connection: our side is shut at once; with `linger`, what the
/// client still sends (a body we did not read) is read and dropped for a
/// moment, so that closing does not reset the connection under our answer.
pub async fn close(stream: &TcpStream, linger: bool) {
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    if !linger {
        return;
    }
    let discard = async {
        let mut scratch = vec![0u8; 16 * 1024];
        let mut total = 0;
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut scratch) {
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

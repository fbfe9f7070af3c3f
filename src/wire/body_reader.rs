//! A request body read straight from the client's socket, on its way to
//! the engine (and the upstream), while the connection waits for the
//! response.
//!
//! The body and its connection share one small state behind a mutex (taken
//! once per poll, never contended: both run on the connection's task unless
//! an HTTPS upstream's client reads the body from its own). When the
//! response is done the connection takes the state back: what the body read
//! beyond its end (a pipelined request) returns to the connection, and a
//! body still being read stops (its reader sees an error).

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use std::io::IoSlice;

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};

use super::BoxError;
use super::decode::{Decoder, Framing};
use super::transport::Transport;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// Bytes asked of the socket per read of body data.
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug)]
struct State {
    buf: BytesMut,
    decoder: Decoder,
    /// Bytes of `100 Continue` already written, while one is owed.
    continue_sent: Option<usize>,
    /// The connection took the socket back: no more reading.
    reclaimed: bool,
    /// The connection, waiting for the body's end to watch the socket itself.
    done_waker: Option<Waker>,
}

/// The engine's side: an `http_body::Body`.
pub struct BodyReader {
    /// Dynamic: one body type for plain and TLS connections (the engine's
    /// `ClientBody` names it); a call through it per read is nothing.
    stream: Arc<dyn Transport>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader").field("state", &self.state).finish_non_exhaustive()
    }
}

/// The connection's side of the same body.
#[derive(Debug)]
pub struct BodyHandle {
    state: Arc<Mutex<State>>,
}

/// A body of `framing` whose first bytes are `buf`. `expect_continue`: the
/// client waits for `100 Continue`, sent when the body is first read.
pub fn new(
    stream: Arc<dyn Transport>,
    buf: BytesMut,
    framing: Framing,
    expect_continue: bool,
) -> (BodyReader, BodyHandle) {
    let state = State {
        buf,
        decoder: Decoder::new(framing),
        continue_sent: expect_continue.then_some(0),
        reclaimed: false,
        done_waker: None,
    };
    let state = Arc::new(Mutex::new(state));
    (BodyReader { stream, state: state.clone() }, BodyHandle { state })
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl BodyReader {
    /// The client waits for `100 Continue` before it sends the body (none
    /// written yet, and none of the body came with the head): a refusal
    /// decided by the head alone spares it the upload.
    pub fn awaits_continue(&self) -> bool {
        let state = lock(&self.state);
        state.continue_sent == Some(0) && state.buf.is_empty()
    }
}

impl BodyHandle {
    /// Whether the body has been read to its end. If not, reads what is
    /// already buffered (a small body the engine never asked for) and
    /// discards it; a `100 Continue` still owed is never sent.
    pub fn finish_buffered(&self) -> bool {
        let mut state = lock(&self.state);
        state.continue_sent = None;
        let state = &mut *state;
        while let Ok(Some(_)) = state.decoder.decode(&mut state.buf) {}
        state.decoder.is_done()
    }

    /// Ready once the body has been read to its end: from then on the
    /// reader never touches the socket, and the connection may watch it
    /// (for the client leaving while the upstream works).
    pub fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.state);
        if state.decoder.is_done() {
            return Poll::Ready(());
        }
        state.done_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Runs `f` on the buffer of what follows the body (a pipelined
    /// request), which `reclaim` hands back: bytes read after the body's
    /// end go there, after those the reader read past it.
    pub fn with_rest<R>(&self, f: impl FnOnce(&mut BytesMut) -> R) -> R {
        f(&mut lock(&self.state).buf)
    }

    /// Takes the connection's buffer back (what follows the body) and stops
    /// the reader. `None` if the body did not end: the connection cannot be reused.
    pub fn reclaim(self) -> Option<BytesMut> {
        let mut state = lock(&self.state);
        state.reclaimed = true;
        state.decoder.is_done().then(|| std::mem::take(&mut state.buf))
    }
}

impl State {
    /// Tells a connection waiting for the body's end that it came.
    fn wake_if_done(&mut self) {
        if self.decoder.is_done()
            && let Some(w) = self.done_waker.take()
        {
            w.wake();
        }
    }

    /// Writes what is owed of `100 Continue` (and flushes it, over TLS).
    fn poll_continue(&mut self, stream: &dyn Transport, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some(sent) = self.continue_sent {
            if sent == CONTINUE.len() && stream.try_flush()? {
                self.continue_sent = None;
                break;
            }
            ready!(stream.poll_write_ready(cx))?;
            if sent == CONTINUE.len() {
                continue;
            }
            match stream.try_write_vectored(&[IoSlice::new(&CONTINUE[sent..])]) {
                Ok(n) => self.continue_sent = Some(sent + n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl http_body::Body for BodyReader {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut state = lock(&this.state);
        let state = &mut *state;
        loop {
            if state.reclaimed {
                return Poll::Ready(Some(Err("the request is over: its body can no longer be read".into())));
            }
            match state.decoder.decode(&mut state.buf) {
                Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
                Ok(Some(data)) => {
                    state.wake_if_done();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(None) if state.decoder.is_done() => {
                    state.wake_if_done();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
            }
            if let Err(e) = ready!(state.poll_continue(&*this.stream, cx)) {
                return Poll::Ready(Some(Err(Box::new(e))));
            }
            if let Err(e) = ready!(this.stream.poll_read_ready(cx)) {
                return Poll::Ready(Some(Err(Box::new(e))));
            }
            if state.buf.capacity() - state.buf.len() < 1024 {
                state.buf.reserve(READ_CHUNK);
            }
            match this.stream.try_read_buf(&mut state.buf) {
                Ok(0) => {
                    if let Err(e) = state.decoder.eof() {
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.state).decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        let decoder = lock(&self.state).decoder;
        match decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            // A chunk's announced size: what `RequestBody` holds against
            // the body limit before the chunk's data is forwarded.
            None => {
                let mut hint = SizeHint::default();
                hint.set_lower(decoder.promised());
                hint
            }
        }
    }
}

//! HTTP/2 to one target (`protocol: http2`): a single multiplexed
//! connection, made when first needed and again once it has closed.
//!
//! Not hyper-util's pooled client: that client connects by the request
//! URI's authority, which HTTP/2 also sends as `:authority`, so the Host a
//! route keeps (`preserve_host`) or rewrites could only go as a `Host`
//! field that contradicts it (RFC 9113 §8.3.1: strict servers refuse such
//! a request). Here the connection is the target's and every request
//! names its own `:authority`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, header};
use http_body::{Body as _, Frame, SizeHint};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::http::error::{BoxError, NotSent};
use crate::http::request_body::RequestBody;

/// How many times one request goes again on a new connection that took
/// nothing when its stream was not processed (a target going away as it
/// came, again and again, is a failure after these; see `send`).
const MAX_RESENDS: u32 = 3;

/// A streamed request body's first bytes kept as they go (and the piece
/// that crosses this: it may be waiting for the stream's window), so that
/// a stream the target did not process can go again with them (the
/// HTTP/1.1 pool keeps as much of a request it may resend); past them,
/// such a request is a failure.
const RESEND_BODY: u64 = 64 << 10;

/// A connection with streams under way is pinged this often, and closed
/// (failing its streams) when no answer comes within `KEEPALIVE_TIMEOUT`:
/// a target that vanished without closing (a host down, a dropped NAT
/// entry) would otherwise hold every request until `timeouts.request`,
/// and every later one with them. An idle connection is not pinged.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// hyper's HTTP/2 client settings, kept when the gateway moved to the h2
/// crate itself: windows large enough for fast targets (the protocol's
/// 64 KiB stalls a fast stream), response heads up to 16 KiB.
const STREAM_WINDOW: u32 = 2 << 20;
const CONNECTION_WINDOW: u32 = 5 << 20;
const MAX_HEADER_LIST: u32 = 16 << 10;
const MAX_SEND_BUFFER: usize = 1 << 20;

/// The target's connection as its requests share it.
#[derive(Clone)]
struct Open {
    /// Its number (see `H2Target::forget`).
    number: u64,
    sender: h2::client::SendRequest<Bytes>,
    state: Arc<ConnState>,
}

/// What a connection's requests and its driver know of it.
#[derive(Default)]
struct ConnState {
    /// Its streams sent so far.
    sent: AtomicU64,
    /// Of them, the ones the target said it did not process.
    unprocessed: AtomicU64,
    /// Streams whose answer is still awaited or read (keep-alive pings
    /// only then).
    streams: AtomicUsize,
    /// The driver has ended: the connection takes no more streams.
    closed: AtomicBool,
}

impl ConnState {
    /// Whether the connection took a stream (answered or still under
    /// way): a connection that took some before going away was making
    /// progress (NGINX at `keepalive_requests` takes its last request and
    /// says `GOAWAY` at once, before any answer). Read once the streams
    /// that raced its `GOAWAY` have come back, not at the first of them.
    fn took_some(&self) -> bool {
        self.sent.load(Ordering::Relaxed) > self.unprocessed.load(Ordering::Relaxed)
    }
}

/// A stream counted in `ConnState::streams` until its answer is done.
struct StreamCount(Arc<ConnState>);

impl StreamCount {
    fn new(state: &Arc<ConnState>) -> StreamCount {
        state.streams.fetch_add(1, Ordering::Relaxed);
        StreamCount(state.clone())
    }
}

impl Drop for StreamCount {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection to one target, shared by its requests.
pub struct H2Target {
    /// `host:port` to connect to.
    addr: String,
    /// TLS (ALPN `h2`) for `https://` targets: the settings and the name
    /// verified as the upstream's client verifies (`tls.ca`, `tls.server_name`).
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    /// The connection, numbered so that a request that found it closing
    /// drops it from here only if no newer one has replaced it.
    conn: tokio::sync::Mutex<Option<Open>>,
    /// Connections made so far (the next one's number).
    made: AtomicU64,
}

impl std::fmt::Debug for H2Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Target").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Why the upstream did not process a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unprocessed {
    /// `REFUSED_STREAM`: this stream only.
    Refused,
    /// Above a `GOAWAY`'s last stream id, or never opened: the connection
    /// takes no new stream.
    GoingAway,
}

impl H2Target {
    /// `tls`: the client settings and the certificate's name, for `https://`.
    pub fn new(
        addr: String,
        tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
        connect_timeout: Duration,
    ) -> H2Target {
        let tls = tls.map(|(config, name)| {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"h2".to_vec()];
            (tokio_rustls::TlsConnector::from(Arc::new(config)), name)
        });
        H2Target { addr, tls, connect_timeout, conn: tokio::sync::Mutex::new(None), made: Default::default() }
    }

    /// Whether the connection is open with no request on it (an idle
    /// connection, for `portcullis_upstream_connections`). `in_flight`:
    /// the target's requests under way.
    pub fn idle(&self, in_flight: usize) -> bool {
        in_flight == 0
            && self.conn.try_lock().is_ok_and(|c| c.as_ref().is_some_and(|o| !o.state.closed.load(Ordering::Relaxed)))
    }

    /// Sends `req` (its URI absolute: the scheme, the `:authority`, the
    /// path) on the target's connection. A failure to connect is `NotSent`.
    ///
    /// A target closing its connection gracefully (`GOAWAY`, NGINX after
    /// `keepalive_requests`, any server's restart) refuses the streams that
    /// raced it: the connection is dropped from here at once (it stays
    /// open for the streams it took) and a request whose stream it did not
    /// process goes again on a new one, whatever its method (RFC 9113
    /// §8.7: a stream above the `GOAWAY`'s last id, or refused with
    /// `REFUSED_STREAM`, was not processed), as Envoy and Go's client do.
    /// Only a request whose body is here whole can go again (the copy kept
    /// for that is one header map per request, on this path only); a
    /// streamed one is a `NotSent` failure.
    ///
    /// The h2 crate itself, not hyper's client over it: hyper fails a
    /// request with the `GOAWAY`'s error also when it had just opened its
    /// stream (the stream then goes, and is cancelled), and drops a request
    /// waiting for a free stream when a `GOAWAY` comes; neither can be told
    /// from a stream the target never saw, so POSTs were either processed
    /// twice or refused (502) at every `GOAWAY`. Here a request learns the
    /// fate of its own stream.
    pub async fn send(&self, mut req: Request<RequestBody>) -> Result<Response<ResponseBody>, BoxError> {
        let mut resends = MAX_RESENDS;
        // The connection that last went away under this request, judged at
        // the next (see `ConnState::took_some`).
        let mut gone: Option<Arc<ConnState>> = None;
        loop {
            let open = self.sender().await?;
            // Waits while the connection has no stream to spare. One that
            // went away meanwhile took nothing of this request: it goes
            // on the next, judged as after a `GOAWAY`.
            let sender = match open.sender.clone().ready().await {
                Ok(sender) => sender,
                Err(e) => {
                    self.forget(open.number).await;
                    if gone.replace(open.state).is_some_and(|before| !before.took_some()) {
                        resends = resends.saturating_sub(1);
                    }
                    if resends == 0 {
                        return Err(Box::new(NotSent(Box::new(e))));
                    }
                    continue;
                }
            };
            // What goes again if the stream is not processed: the head,
            // and the body (a copy of one here whole, or the first
            // `RESEND_BODY` bytes of a streamed one, kept as they go).
            let spare_head = (resends > 0).then(|| copy_head(&req));
            let spare_body = spare_head.as_ref().and_then(|_| req.body_mut().try_clone_whole());
            if spare_head.is_some() && spare_body.is_none() {
                req.body_mut().keep_for_retry(RESEND_BODY);
            }
            let (said, e, sent_body) = match self.exchange(sender, &open.state, req).await {
                Ok(resp) => return Ok(resp),
                Err(Failed::Unprocessed(why, e, body)) => (why, e, body),
                Err(Failed::Other(e)) => return Err(e),
            };
            open.state.unprocessed.fetch_add(1, Ordering::Relaxed);
            if said == Unprocessed::GoingAway {
                self.forget(open.number).await;
            }
            let body = spare_body.or_else(|| sent_body.and_then(|mut b| b.rewind().then_some(b)));
            match spare_head.zip(body) {
                Some((head, body)) if resends > 0 => {
                    // Only resends after a connection that took nothing
                    // count: more requests in flight than the target takes
                    // per connection (NGINX's `keepalive_requests`) move on
                    // a connection at a time, each taking its share; a
                    // target going away at once every time is let go after
                    // `MAX_RESENDS` more. (`timeouts.request` bounds them
                    // all.) A connection is judged at the request's next
                    // going away, when its streams have all come back.
                    // (A refused stream stays on its connection: always counted.)
                    if said == Unprocessed::GoingAway {
                        if gone.replace(open.state).is_some_and(|before| !before.took_some()) {
                            resends -= 1;
                        }
                    } else {
                        resends -= 1;
                    }
                    req = Request::from_parts(head, body);
                }
                _ => return Err(Box::new(NotSent(e))),
            }
        }
    }

    /// One stream: the request's head, its body streamed beside the
    /// answer (a target may answer before the body ends, and stream its
    /// answer while reading more), and the answer's head.
    async fn exchange(
        &self,
        mut sender: h2::client::SendRequest<Bytes>,
        state: &Arc<ConnState>,
        req: Request<RequestBody>,
    ) -> Result<Response<ResponseBody>, Failed> {
        let (mut head, body) = req.into_parts();
        strip_connection_fields(&mut head.headers);
        if !head.headers.contains_key(header::CONTENT_LENGTH)
            && let Some(len) = body.size_hint().exact()
            && (len != 0 || matches!(head.method, http::Method::POST | http::Method::PUT | http::Method::PATCH))
        {
            head.headers.insert(header::CONTENT_LENGTH, len.into());
        }
        let eos = body.is_end_stream();
        state.sent.fetch_add(1, Ordering::Relaxed);
        // Refused before a stream was made (a `GOAWAY` came since
        // `ready`): nothing went.
        let (response, send) = match sender.send_request(Request::from_parts(head, ()), eos) {
            Ok(sent) => sent,
            Err(e) if e.is_go_away() || e.is_io() => {
                return Err(Failed::Unprocessed(Unprocessed::GoingAway, Box::new(e), Some(body)));
            }
            Err(e) => return Err(Failed::Other(Box::new(NotSent(Box::new(e))))),
        };
        let counted = StreamCount::new(state);
        let (mut body_failed, mut body_back, mut ended_body) = (None, None, None);
        if eos {
            ended_body = Some(body);
        } else {
            let (failed, told) = tokio::sync::oneshot::channel();
            let (back, given) = tokio::sync::oneshot::channel();
            tokio::spawn(pipe(body, send, failed, back));
            (body_failed, body_back) = (Some(told), Some(given));
        }
        let e = match response.await {
            Ok(resp) => {
                let (parts, recv) = resp.into_parts();
                let left = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
                let body = ResponseBody { recv, data_done: false, left, _stream: counted, _pipe: body_back };
                return Ok(Response::from_parts(parts, body));
            }
            Err(e) => e,
        };
        // The request's own body failed (the client left, sent too much,
        // stalled): that is the failure, not the reset it caused.
        if let Some(failed) = body_failed.and_then(|mut told| told.try_recv().ok()) {
            return Err(Failed::Other(failed));
        }
        match unprocessed(&e) {
            // The body comes back from its pipe (which the stream's reset
            // has stopped) to go again if what went of it was kept.
            Some(why) => {
                let body = match body_back {
                    Some(given) => given.await.ok(),
                    None => ended_body,
                };
                Err(Failed::Unprocessed(why, Box::new(e), body))
            }
            None => Err(Failed::Other(Box::new(e))),
        }
    }

    /// The open connection, or a new one (one at a time: requests that
    /// find none wait for the one being made).
    async fn sender(&self) -> Result<Open, BoxError> {
        let mut slot = self.conn.lock().await;
        if let Some(open) = slot.as_ref().filter(|o| !o.state.closed.load(Ordering::Relaxed)) {
            return Ok(open.clone());
        }
        let number = self.made.fetch_add(1, Ordering::Relaxed);
        *slot = None;
        let sender = self.connect().await.map_err(|e| Box::new(NotSent(e)) as BoxError)?;
        let open = Open { number, sender: sender.0, state: sender.1 };
        *slot = Some(open.clone());
        Ok(open)
    }

    /// Drops connection `number` (closing: it takes no new stream), unless
    /// it was replaced already.
    async fn forget(&self, number: u64) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|o| o.number == number) {
            *slot = None;
        }
    }

    async fn connect(&self) -> Result<(h2::client::SendRequest<Bytes>, Arc<ConnState>), BoxError> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => handshake(tcp).await,
            Some((connector, name)) => {
                let stream =
                    tokio::time::timeout(self.connect_timeout, connector.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
                if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err("the target did not agree to HTTP/2 (ALPN `h2`)".into());
                }
                handshake(stream).await
            }
        }
    }
}

/// Why a stream failed.
enum Failed {
    /// The target did not process it: it may go again, with its body
    /// when the body came back.
    Unprocessed(Unprocessed, BoxError, Option<RequestBody>),
    Other(BoxError),
}

/// The HTTP/2 handshake on a connected stream, and its driver.
async fn handshake<T>(io: T) -> Result<(h2::client::SendRequest<Bytes>, Arc<ConnState>), BoxError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await?;
    let state = Arc::new(ConnState::default());
    tokio::spawn(drive(conn, state.clone()));
    Ok((sender, state))
}

/// Runs the connection until it ends, pinging it while streams are under
/// way (see `KEEPALIVE_INTERVAL`); a ping left unanswered closes it.
async fn drive<T>(mut conn: h2::client::Connection<T, Bytes>, state: Arc<ConnState>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut pings = conn.ping_pong();
    loop {
        tokio::select! {
            ended = &mut conn => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "HTTP/2 upstream connection ended");
                }
                break;
            }
            () = tokio::time::sleep(KEEPALIVE_INTERVAL) => {}
        }
        let Some(pings) = pings.as_mut().filter(|_| state.streams.load(Ordering::Relaxed) > 0) else { continue };
        let answered = tokio::select! {
            _ = &mut conn => break,
            pong = tokio::time::timeout(KEEPALIVE_TIMEOUT, pings.ping(h2::Ping::opaque())) => matches!(pong, Ok(Ok(_))),
        };
        if !answered {
            tracing::debug!("HTTP/2 upstream connection closed: its keep-alive ping went unanswered");
            break;
        }
    }
    state.closed.store(true, Ordering::Relaxed);
}

/// Whether the target said it did not process the stream, and why.
fn unprocessed(e: &h2::Error) -> Option<Unprocessed> {
    match () {
        _ if !e.is_remote() => None,
        _ if e.is_go_away() => Some(Unprocessed::GoingAway),
        _ if e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM) => Some(Unprocessed::Refused),
        _ => None,
    }
}

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2); the h2 crate refuses a request
/// carrying one. The gateway's hop-by-hop pass has removed them already
/// on the proxy path; this keeps every caller safe.
fn strip_connection_fields(headers: &mut HeaderMap) {
    for name in [header::CONNECTION, header::TRANSFER_ENCODING, header::UPGRADE] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if headers.get(header::TE).is_some_and(|te| !te.as_bytes().eq_ignore_ascii_case(b"trailers")) {
        headers.remove(header::TE);
    }
}

/// Streams the request body to its stream, as the target's flow control
/// allows; stops when the target resets the stream (an early answer). A
/// body that fails is told to `failed` before the stream is reset, so the
/// request sees that failure rather than the reset.
/// The body goes back on `back` when the pipe ends.
async fn pipe(
    mut body: RequestBody,
    mut send: h2::SendStream<Bytes>,
    failed: tokio::sync::oneshot::Sender<BoxError>,
    back: tokio::sync::oneshot::Sender<RequestBody>,
) {
    let mut back = back;
    tokio::select! {
        piped = pipe_body(&mut body, &mut send) => {
            if let Err(e) = piped {
                let _ = failed.send(e);
                send.send_reset(h2::Reason::CANCEL);
            }
        }
        // Nobody waits for the answer any more (timed out, or its body
        // dropped): the rest of the upload goes nowhere.
        () = back.closed() => send.send_reset(h2::Reason::CANCEL),
    }
    let _ = back.send(body);
}

async fn pipe_body(body: &mut RequestBody, send: &mut h2::SendStream<Bytes>) -> Result<(), BoxError> {
    use super::h1::{GATHER_BELOW, GATHER_UP_TO};
    // A frame read ahead while small pieces were joined.
    let mut ahead = None;
    loop {
        let frame = match ahead.take() {
            Some(frame) => frame,
            None => tokio::select! {
                frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)) => frame,
                _ = std::future::poll_fn(|cx| send.poll_reset(cx)) => return Ok(()),
            },
        };
        match frame {
            None => {
                let _ = send.send_data(Bytes::new(), true);
                return Ok(());
            }
            Some(Err(e)) => return Err(Box::new(e)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    // Small pieces at hand go as one DATA frame: a body of
                    // one-byte chunks went a frame each, and an h2 server
                    // (the h2 crate's `too_many_data_frames`) closed the
                    // connection, other clients' requests on it too.
                    if data.len() < GATHER_BELOW && !body.is_end_stream() {
                        let mut joined = bytes::BytesMut::from(&data[..]);
                        while joined.len() < GATHER_UP_TO && !body.is_end_stream() {
                            let next = std::future::poll_fn(|cx| {
                                Poll::Ready(match std::pin::Pin::new(&mut *body).poll_frame(cx) {
                                    Poll::Ready(frame) => Some(frame),
                                    Poll::Pending => None,
                                })
                            })
                            .await;
                            match next {
                                None => break,
                                Some(Some(Ok(frame))) if frame.is_data() => match frame.into_data() {
                                    Ok(more) if more.len() < GATHER_BELOW => joined.extend_from_slice(&more),
                                    Ok(more) => {
                                        ahead = Some(Some(Ok(Frame::data(more))));
                                        break;
                                    }
                                    Err(_) => break,
                                },
                                Some(other) => {
                                    ahead = Some(other);
                                    break;
                                }
                            }
                        }
                        data = joined.freeze();
                    }
                    let end = body.is_end_stream() && ahead.is_none();
                    while !data.is_empty() {
                        send.reserve_capacity(data.len());
                        let granted = match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                            Some(Ok(n)) if n > 0 => n,
                            Some(Ok(_)) => continue,
                            // The stream was reset or closed: the target has answered or gone.
                            Some(Err(_)) | None => return Ok(()),
                        };
                        let piece = data.split_to(granted.min(data.len()));
                        if send.send_data(piece, end && data.is_empty()).is_err() {
                            return Ok(());
                        }
                    }
                    if end {
                        return Ok(());
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = send.send_trailers(trailers);
                        return Ok(());
                    }
                }
            },
        }
    }
}

/// An HTTP/2 target's answer body: its DATA frames, then its trailers.
/// Each frame's bytes are handed back to the flow-control window as they
/// are taken (the stream's window refills as the client reads).
pub struct ResponseBody {
    recv: h2::RecvStream,
    data_done: bool,
    /// What its `content-length` still promises.
    left: Option<u64>,
    _stream: StreamCount,
    /// Keeps the request body's pipe going while the answer is read.
    _pipe: Option<tokio::sync::oneshot::Receiver<RequestBody>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").field("left", &self.left).finish_non_exhaustive()
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        if !this.data_done {
            match std::task::ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    this.left = this.left.map(|l| l.saturating_sub(data.len() as u64));
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // A reset with `NO_ERROR` after the answer (RFC 9113 §8.1:
                // the target needs no more of the request) ends the body;
                // a short one is caught by its `content-length` upstream.
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) && e.is_remote() => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        match std::task::ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) if e.reason() == Some(h2::Reason::NO_ERROR) && e.is_remote() => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Some(left) => SizeHint::with_exact(left),
            None if self.recv.is_end_stream() => SizeHint::with_exact(0),
            None => SizeHint::default(),
        }
    }
}

/// A copy of `req`'s head, to send again if its stream goes unprocessed.
fn copy_head(req: &Request<RequestBody>) -> http::request::Parts {
    let (mut head, ()) = Request::new(()).into_parts();
    head.method = req.method().clone();
    head.uri = req.uri().clone();
    head.version = req.version();
    head.headers = req.headers().clone();
    head.extensions = req.extensions().clone();
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target that stops answering (no pong, no answer: a host gone
    /// without a FIN) fails its streams a ping's timeout after the next
    /// keep-alive ping, not at `timeouts.request`, and its connection is
    /// taken no more.
    #[tokio::test(start_paused = true)]
    async fn a_connection_whose_ping_goes_unanswered_is_closed() {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut conn = h2::server::handshake(server_io).await.unwrap();
            let taken = conn.accept().await;
            // Reads nothing more: the ping is never answered.
            std::future::pending::<()>().await;
            drop((taken, conn));
        });
        let (sender, state) = handshake(client_io).await.unwrap();
        let mut sender = sender.ready().await.unwrap();
        let (response, _) = sender.send_request(Request::get("http://t/").body(()).unwrap(), true).unwrap();
        let _counted = StreamCount::new(&state);
        let started = tokio::time::Instant::now();
        let failed = tokio::time::timeout(Duration::from_secs(120), response).await;
        assert!(matches!(failed, Ok(Err(_))), "the stream is failed: {failed:?}");
        let waited = started.elapsed();
        assert!(waited >= KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT, "{waited:?}");
        assert!(waited < KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT + Duration::from_secs(1), "{waited:?}");
        assert!(state.closed.load(Ordering::Relaxed));
    }
}

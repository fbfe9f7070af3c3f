//! One client connection: optional TLS handshake, then HTTP/1.1 or HTTP/2
//! (ALPN, or the HTTP/2 preface on plain connections) until the client
//! leaves, the connection idles out, or the listener stops.
//!
//! HTTP/1.1, plain or over TLS, is served by our own codec (`server/h1`);
//! hyper serves HTTP/2 (h2c with prior knowledge, or ALPN `h2`). Every
//! request hyper reads passes the same admission as the own codec's
//! (`wire::admit`) before the engine sees it.

use std::convert::Infallible;
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderValue, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{OpenGuard, Shared, StopSignal, h1};
use crate::http::client_body::ClientBody;
use crate::http::conn::ConnInfo;
use crate::plan::ListenerPlan;
use crate::proxy::{self, Body};
use crate::tls;
use crate::wire::admit;

/// How often a hyper connection checks for idleness (at most).
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// How long a connection told to close (GOAWAY) may take to do so before
/// it is dropped: with no request in flight nothing is left to finish, but
/// hyper waits for an unfinished handshake or header block for ever.
const GOODBYE: Duration = Duration::from_secs(1);
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<str>,
    shared: Arc<Shared>,
    signal: StopSignal,
    _open: OpenGuard,
) {
    let _ = stream.set_nodelay(true);
    // The listener's settings only: each request takes the plan current
    // when it arrives (`Conn::service`, `h1::serve`).
    let Some(lp) = shared.plan.load().listener(&listener).cloned() else { return };
    let lp = &*lp;
    let info = ConnInfo {
        peer,
        peer_ip: HeaderValue::try_from(peer.ip().to_string()).expect("an IP address is a valid header value"),
        scheme: "http",
        listener: listener.clone(),
        client_cert: None,
        client_auth: None,
        hsts: None,
        redirect_https: lp.redirect_https,
        tls_version: None,
        idle_timeout: lp.limits.idle_timeout,
    };
    let conn = Conn::new(info, lp, shared.clone(), signal.flag.clone());
    match &lp.tls {
        None => {
            // A connection that sends nothing at all is cut off like a slow head.
            match tokio::time::timeout(lp.limits.header_read_timeout, read_preface(&stream)).await {
                Ok(Ok((true, first))) => {
                    let io = PrefixedIo { stream, prefix: first };
                    // Boxed, as TLS below: plain HTTP/1.1 tasks stay small.
                    Box::pin(conn.drive_h2(TokioIo::new(io))).await
                }
                Ok(Ok((false, first))) => {
                    let cx =
                        h1::Ctx { info: &conn.info, lp, shared: &conn.shared, stop: &signal, started: conn.started };
                    h1::serve(stream, &first, cx).await;
                }
                Ok(Err(_)) | Err(_) => {}
            }
        }
        // Boxed: the handshake's state would otherwise make every plain
        // connection's task as large as a TLS one.
        Some(config) => Box::pin(serve_tls(stream, conn, config.clone(), &signal)).await,
    }
}

async fn serve_tls(stream: TcpStream, mut conn: Conn<'_>, config: Arc<rustls::ServerConfig>, signal: &StopSignal) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let peer = conn.info.peer;
    let handshake = async {
        // A connection closed (or reset) before its first byte is no
        // handshake: a load balancer's TCP check or a port scan, counted
        // as a failure it hid real ones and fed the alert on their rate.
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => return None,
            // A TLS record starts with its type (22, a handshake; an SSLv2
            // hello with 0x80): printable text (a method, in any case, or
            // the empty lines RFC 9112 lets a request start with) is plain
            // HTTP sent to the HTTPS port.
            Ok(_) if first[0].is_ascii_graphic() || matches!(first[0], b' ' | b'\t' | b'\r' | b'\n') => {
                return Some(Err(stream));
            }
            Ok(_) => {}
        }
        Some(Ok(acceptor.accept(stream).await))
    };
    let tls = match tokio::time::timeout(conn.lp.limits.tls_handshake_timeout, handshake).await {
        Ok(None) => return,
        Ok(Some(Err(plain))) => {
            tracing::debug!(%peer, "plain HTTP sent to a TLS listener");
            if let Some([failed, _]) = &conn.lp.tls_failures {
                failed.inc();
            }
            let security = conn.shared.plan.load().without_route.security().clone();
            answer_plain_http(plain, &security).await;
            return;
        }
        Ok(Some(Ok(handshake))) => match handshake {
            Ok(tls) => tls,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                if let Some([failed, _]) = &conn.lp.tls_failures {
                    failed.inc();
                }
                return;
            }
        },
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            if let Some([_, timed_out]) = &conn.lp.tls_failures {
                timed_out.inc();
            }
            return;
        }
    };
    let session = tls.get_ref().1;
    // A resumed session's client certificate was checked when the session
    // began: one that has expired since ends the connection, as a new
    // handshake with it would fail.
    if let Some(chain) = session.peer_certificates() {
        let now = crate::policy::clock::WallClock::system().unix_secs();
        if !tls::client_cert_valid_at(chain, i64::try_from(now).unwrap_or(i64::MAX)) {
            tracing::debug!(%peer, "TLS session resumed with a client certificate outside its validity period");
            if let Some([failed, _]) = &conn.lp.tls_failures {
                failed.inc();
            }
            return;
        }
    }
    let h2 = session.alpn_protocol() == Some(b"h2");
    let info = Arc::make_mut(&mut conn.info);
    info.scheme = "https";
    info.tls_version = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => Some("1.3"),
        Some(rustls::ProtocolVersion::TLSv1_2) => Some("1.2"),
        _ => None,
    };
    info.hsts = conn.lp.hsts.clone();
    info.client_cert = session.peer_certificates().and_then(tls::client_identity).map(Arc::new);
    info.client_auth = Some(Arc::new(tls::ClientAuthSeen::at_handshake(conn.lp.client_auth.as_deref())));
    if h2 {
        conn.drive_h2(TokioIo::new(tls)).await;
    } else {
        // HTTP/1.1 over TLS is read by the same codec as plain HTTP/1.1.
        let cx = h1::Ctx { info: &conn.info, lp: conn.lp, shared: &conn.shared, stop: signal, started: conn.started };
        h1::serve(h1::Tls::new(tls), &[], cx).await;
    }
}

/// A plain HTTP request on a TLS listener gets a plain 400 saying so (as
/// NGINX answers it), not a TLS alert a browser or curl shows as garbage
/// or an opaque error. Then a lingering close, as NGINX's: what the client
/// still sends is read (for a second, 64 KiB at most) after the answer,
/// so that closing with unread bytes does not reset the answer away.
/// It carries the security headers as every answer does (not the
/// listener's HSTS: it goes over plain HTTP, where browsers ignore it; a
/// `security_headers.set` one goes as written, harmless there).
async fn answer_plain_http(mut stream: TcpStream, security: &crate::wire::field_edits::FieldEdits) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let id = crate::http::request_id::generate();
    let detail = "this port speaks HTTPS: the request was sent as plain HTTP (use https://)";
    let answer = crate::http::problem::problem(http::StatusCode::BAD_REQUEST, detail, &id);
    let body = answer.body();
    // The `Date` header is the system's time by definition.
    #[allow(clippy::disallowed_methods)]
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let mut head = format!(
        "HTTP/1.1 400 Bad Request\r\ndate: {date}\r\ncontent-type: application/problem+json\r\n\
         content-length: {}\r\nx-request-id: {}\r\nconnection: close\r\n",
        body.len(),
        id.to_str().unwrap_or_default()
    )
    .into_bytes();
    // The defaults, then `set` (which replaces a default of the same name:
    // `default_lines` leaves those out) and what `set` adds to (`Vary`).
    let (forced, added) = security.forced_lines();
    head.extend_from_slice(security.default_lines());
    head.extend_from_slice(forced);
    head.extend_from_slice(added);
    head.extend_from_slice(b"\r\n");
    let answered = async {
        stream.write_all(&head).await?;
        stream.write_all(body).await?;
        stream.shutdown().await
    };
    if !matches!(tokio::time::timeout(Duration::from_secs(1), answered).await, Ok(Ok(()))) {
        return;
    }
    let linger = async {
        let mut sink = [0u8; 8192];
        let mut left = 64usize << 10;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), linger).await;
}

/// Reads the first bytes, up to the length of the HTTP/2 preface: `true`
/// if they are the preface (h2c with prior knowledge). The bytes read are
/// returned, to be served first. Reads rather than peeks: a client that
/// sends part of the preface and stalls is waited for, not polled.
async fn read_preface(stream: &TcpStream) -> std::io::Result<(bool, Bytes)> {
    let mut first = [0u8; H2_PREFACE.len()];
    let mut got = 0;
    loop {
        stream.readable().await?;
        match stream.try_read(&mut first[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        if first[..got] != H2_PREFACE[..got] || got == H2_PREFACE.len() {
            let h2 = first[..] == *H2_PREFACE;
            return Ok((h2, Bytes::copy_from_slice(&first[..got])));
        }
    }
}

/// What the connection's requests have been doing.
#[derive(Default)]
struct Activity {
    /// Requests whose response body has not been dropped yet.
    in_flight: AtomicUsize,
    /// Requests seen so far.
    started: AtomicU64,
    /// When the last response ended, in milliseconds since the connection started.
    last_ms: AtomicU64,
    /// Response bodies hyper has yet to ask for their next frame: it asks
    /// once the client's flow-control window has room, so a body waiting
    /// long is one the client does not read.
    owed: AtomicUsize,
    /// When hyper last asked a body for a frame (or a response began), in
    /// milliseconds since the connection started.
    last_poll_ms: AtomicU64,
    /// Each response body under way (HTTP/2 streams), for the check that
    /// cuts one its client has left unread for `idle_timeout` while other
    /// streams move (the rule above sees only the connection as a whole).
    streams: std::sync::Mutex<Vec<std::sync::Weak<Stream>>>,
    /// Requests dropped before their response was made: on HTTP/2, streams
    /// the client reset while the gateway worked (each may have cost an
    /// upstream request). Past `EARLY_RESETS` (Envoy's premature-reset
    /// rule), `too_many_resets` closes the connection.
    reset_early: AtomicU64,
    too_many_resets: tokio::sync::Notify,
    /// New requests are answered 503 without being served: the connection
    /// is closing and its client ignores the GOAWAY (it has not answered
    /// the PING that lets hyper send the final one, naming the last stream
    /// taken), or it abused streams (`too_many_resets`).
    refusing: AtomicBool,
}

/// A connection whose streams were, after at least `.0` of them, more
/// than half reset before their answer is closed (GOAWAY): the "rapid
/// reset" class (CVE-2023-44487) slowed down so that each reset comes after
/// the stream is accepted, which the HTTP/2 library's own bound (resets of
/// streams not yet accepted) does not see. Envoy: 500 streams, half.
const EARLY_RESETS: (u64, u64) = (500, 2);

/// A request's service future: counted as reset early if dropped before
/// its response was made.
struct Unanswered(Option<Arc<Activity>>);

impl Unanswered {
    fn answered(&mut self) {
        self.0 = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let Some(activity) = self.0.take() else { return };
        let reset = activity.reset_early.fetch_add(1, Ordering::Relaxed) + 1;
        let started = activity.started.load(Ordering::Relaxed);
        if started >= EARLY_RESETS.0 && reset * EARLY_RESETS.1 > started {
            activity.too_many_resets.notify_one();
        }
    }
}

/// One HTTP/2 response body, shared with the connection's check.
#[derive(Debug)]
struct Stream {
    /// Taken (dropped, and with it the upstream connection it reads from)
    /// when the client has not asked for more for `idle_timeout`.
    body: std::sync::Mutex<Option<Body>>,
    /// Since when hyper owes the body a poll (a frame was handed out and
    /// the client's window has had no room since), in milliseconds since
    /// the connection started; `NOT_OWED` while the body waits for its
    /// upstream (its own read timeout governs that).
    owed_since_ms: AtomicU64,
}

const NOT_OWED: u64 = u64::MAX;

impl Activity {
    fn track(&self, stream: &Arc<Stream>) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if streams.len() >= 64 && streams.len().is_power_of_two() {
            streams.retain(|s| s.strong_count() > 0);
        }
        streams.push(Arc::downgrade(stream));
    }

    /// Drops the bodies of streams owed a poll for `idle` (their clients
    /// read other streams, not these): their upstream connections go.
    fn cut_unread_streams(&self, now: Duration, idle: Duration) {
        let now_ms = now.as_millis() as u64;
        let idle_ms = idle.as_millis() as u64;
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|weak| {
            let Some(stream) = weak.upgrade() else { return false };
            let since = stream.owed_since_ms.load(Ordering::Relaxed);
            if since != NOT_OWED && now_ms.saturating_sub(since) >= idle_ms {
                let body = stream.body.lock().unwrap_or_else(|e| e.into_inner()).take();
                if body.is_some() {
                    tracing::debug!("client left a stream's response unread for idle_timeout; its body dropped");
                }
                drop(body);
                return false;
            }
            true
        });
    }
}

/// One connection's shared state, whatever its protocol.
struct Conn<'p> {
    info: Arc<ConnInfo>,
    lp: &'p ListenerPlan,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    activity: Arc<Activity>,
    started: Instant,
}

impl<'p> Conn<'p> {
    fn new(info: ConnInfo, lp: &'p ListenerPlan, shared: Arc<Shared>, stop: watch::Receiver<bool>) -> Conn<'p> {
        let activity = Arc::new(Activity::default());
        Conn { info: Arc::new(info), lp, shared, stop, activity, started: Instant::now() }
    }

    /// Runs each request on the plan current when it arrives.
    fn service(
        &self,
    ) -> impl hyper::service::Service<
        http::Request<Incoming>,
        Response = Response<Tracked>,
        Error = Infallible,
        Future: Send + 'static,
    > + Send
    + 'static {
        let shared = self.shared.clone();
        let info = self.info.clone();
        let activity = self.activity.clone();
        let started = self.started;
        let max_field_section = self.lp.limits.max_header_size;
        let max_fields = self.lp.limits.max_headers;
        service_fn(move |mut req| {
            // One atomic load per request; the plan stays alive until the request ends.
            let plan = shared.plan.load_full();
            let info = info.clone();
            let activity = activity.clone();
            activity.started.fetch_add(1, Ordering::Relaxed);
            // Counted until the response body is done, or until hyper drops
            // the request unanswered (the client reset its stream): a count
            // left behind kept the connection from ever idling out.
            let request = InFlight::begin(activity.clone(), started);
            let mut unanswered = Unanswered(Some(activity.clone()));
            let refusing = activity.refusing.load(Ordering::Relaxed);
            async move {
                let head = req.method() == http::Method::HEAD;
                let resp = match admit::parsed(&mut req, max_field_section, max_fields) {
                    // Nothing of it reaches a service: the connection is closing.
                    Ok(()) if refusing => proxy::refuse(
                        &plan,
                        &info,
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        "this connection is closing (GOAWAY): send the request on a new connection",
                        None,
                        Some(&req.map(|_| ())),
                    ),
                    Ok(()) => proxy::handle(plan, &info, req.map(ClientBody::Hyper)).await,
                    Err(refusal) => {
                        // Its head as the log reads it (version, User-Agent, Referer).
                        let mut head = http::Request::new(());
                        *head.method_mut() = req.method().clone();
                        *head.uri_mut() = req.uri().clone();
                        *head.version_mut() = req.version();
                        *head.headers_mut() = std::mem::take(req.headers_mut());
                        proxy::refuse(&plan, &info, refusal.status(), &refusal.to_string(), None, Some(&head))
                    }
                };
                // hyper writes the map: an upstream's raw header lines join it first.
                let (mut parts, mut body) = resp.into_parts();
                body.merge_headers(&mut parts.headers);
                let status = parts.status;
                if head || status.is_informational() || matches!(status.as_u16(), 204 | 304) {
                    body.drop_content(status, head, &mut parts.headers);
                }
                // A stream its client reset mid-body is answered to no one:
                // counted as reset early, as one whose work was dropped.
                if parts.extensions.get::<proxy::ClientLeft>().is_none() {
                    unanswered.answered();
                }
                activity.owed.fetch_add(1, Ordering::Relaxed);
                let now_ms = started.elapsed().as_millis() as u64;
                activity.last_poll_ms.store(now_ms, Ordering::Relaxed);
                let stream = Arc::new(Stream { body: std::sync::Mutex::new(Some(body)), owed_since_ms: now_ms.into() });
                activity.track(&stream);
                let tracked = Tracked { stream, activity, started, owed: true, _request: request };
                Ok::<_, Infallible>(Response::from_parts(parts, tracked))
            }
        })
    }

    async fn drive_h2<I>(mut self, io: TokioIo<I>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let served = self.lp.http2.serve_connection(io, self.service());
        self.drive(std::pin::pin!(served)).await;
    }

    /// Polls `served` to its end, closing it politely when the listener
    /// stops, when the first request is too slow to come, or when it idles
    /// out (then dropping it if it has not closed within `GOODBYE`), and
    /// dropping it when its client leaves responses unread for `idle_timeout`.
    async fn drive<C>(&mut self, mut served: Pin<&mut C>)
    where
        C: Served,
    {
        let idle = self.lp.limits.idle_timeout;
        let mut closing = *self.stop.borrow();
        let every = (idle / 2).clamp(Duration::from_millis(10), CHECK_EVERY);
        let mut check = tokio::time::interval_at(Instant::now() + every, every);
        let first_request = tokio::time::sleep(self.lp.limits.header_read_timeout);
        tokio::pin!(first_request);
        // Armed when the connection is asked to close (a draining listener
        // too: an idle HTTP/2 client that never answers the PING after
        // GOAWAY would otherwise hold the drain until its deadline).
        let goodbye = tokio::time::sleep(Duration::MAX);
        tokio::pin!(goodbye);
        let mut goodbye_armed = false;
        let mut abusive = false;
        if closing {
            served.as_mut().shut();
            goodbye.as_mut().reset(Instant::now() + GOODBYE);
            goodbye_armed = true;
        }
        loop {
            tokio::select! {
                res = served.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.stop.changed(), if !closing => {
                    closing = true;
                    served.as_mut().shut();
                    goodbye.as_mut().reset(Instant::now() + GOODBYE);
                    goodbye_armed = true;
                }
                () = stale_client_auth(self.info.client_auth.as_deref()), if !closing => {
                    tracing::debug!("the client certificate is no longer trusted after a reload; connection closed (GOAWAY)");
                    closing = true;
                    served.as_mut().shut();
                    goodbye.as_mut().reset(Instant::now() + GOODBYE);
                    goodbye_armed = true;
                }
                () = self.activity.too_many_resets.notified(), if !abusive => {
                    // No two-step goodbye for an abuser (it need not answer the
                    // PING that ends it): its new streams are refused at once,
                    // and the connection dropped after `GOODBYE`, whatever is
                    // in flight (Envoy closes such a connection outright).
                    tracing::debug!("most streams reset before their answer; connection closed (GOAWAY)");
                    self.activity.refusing.store(true, Ordering::Relaxed);
                    abusive = true;
                    if !closing {
                        served.as_mut().shut();
                    }
                    closing = true;
                    goodbye.as_mut().reset(Instant::now() + GOODBYE);
                    goodbye_armed = true;
                }
                _ = &mut first_request, if !closing && self.activity.started.load(Ordering::Relaxed) == 0 => {
                    closing = true;
                    served.as_mut().shut();
                    goodbye.as_mut().reset(Instant::now() + GOODBYE);
                    goodbye_armed = true;
                }
                _ = &mut goodbye, if goodbye_armed => {
                    // A request that slipped in as GOAWAY went out finishes
                    // (the unread-response rule below still applies to it);
                    // a client that had `GOODBYE` to answer the PING and has
                    // not gets its new streams refused from now on (hyper
                    // sends the final GOAWAY only after the answer).
                    if !abusive && self.activity.in_flight.load(Ordering::Relaxed) > 0 {
                        self.activity.refusing.store(true, Ordering::Relaxed);
                        goodbye.as_mut().reset(Instant::now() + GOODBYE);
                        continue;
                    }
                    tracing::debug!("connection did not close after GOAWAY; dropped");
                    return;
                }
                _ = check.tick() => {
                    let now_ms = self.started.elapsed();
                    if self.activity.in_flight.load(Ordering::Relaxed) > 0 {
                        // A client that reads none of its responses (a
                        // zero window) holds them, and their upstream
                        // connections, until it is cut off (NGINX's
                        // `send_timeout` for the whole connection).
                        let last_poll = Duration::from_millis(self.activity.last_poll_ms.load(Ordering::Relaxed));
                        if self.activity.owed.load(Ordering::Relaxed) > 0 && now_ms.saturating_sub(last_poll) >= idle {
                            tracing::debug!("client left its responses unread for idle_timeout; connection dropped");
                            return;
                        }
                        // One stream left unread while others move
                        // (Envoy's per-stream idle timeout).
                        self.activity.cut_unread_streams(now_ms, idle);
                        continue;
                    }
                    if closing {
                        continue;
                    }
                    let quiet_since = Duration::from_millis(self.activity.last_ms.load(Ordering::Relaxed));
                    if now_ms.saturating_sub(quiet_since) >= idle {
                        closing = true;
                        served.as_mut().shut();
                        goodbye.as_mut().reset(Instant::now() + GOODBYE);
                        goodbye_armed = true;
                    }
                }
            }
        }
    }
}

/// Completes when a reload's `client_auth` no longer trusts the
/// connection's certificate (never on a connection without TLS).
async fn stale_client_auth(seen: Option<&crate::tls::ClientAuthSeen>) {
    match seen {
        Some(seen) => seen.gone_stale().await,
        None => std::future::pending().await,
    }
}

/// A hyper server connection, HTTP/1.1 or HTTP/2.
trait Served: Future<Output = hyper::Result<()>> {
    /// Graceful shutdown: GOAWAY, or `Connection: close` after the current request.
    fn shut(self: Pin<&mut Self>);
}

impl<I, S> Served for http2::Connection<TokioIo<I>, S, TokioExecutor>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Tracked>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shut(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// A plain connection's socket, with bytes already read from it that are
/// served first (the start of an HTTP/2 preface).
struct PrefixedIo {
    stream: TcpStream,
    prefix: Bytes,
}

impl AsyncRead for PrefixedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Let go of the memory it came from (a read slab, shared).
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PrefixedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A response body that marks the end of its request when hyper is done
/// with it (sent or abandoned): idleness counts from there.
#[derive(Debug)]
pub struct Tracked {
    stream: Arc<Stream>,
    activity: Arc<Activity>,
    started: Instant,
    /// Counted in `Activity::owed`: hyper has yet to ask for the next frame.
    owed: bool,
    _request: InFlight,
}

/// A request counted in `Activity::in_flight` while it lives; when it
/// ends, idleness counts from then.
#[derive(Debug)]
struct InFlight {
    activity: Arc<Activity>,
    started: Instant,
}

impl InFlight {
    fn begin(activity: Arc<Activity>, started: Instant) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { activity, started }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.last_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activity").field("in_flight", &self.in_flight).finish_non_exhaustive()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.owed {
            self.activity.owed.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = crate::http::error::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = {
            let mut body = self.stream.body.lock().unwrap_or_else(|e| e.into_inner());
            match body.as_mut() {
                Some(body) => Pin::new(body).poll_frame(cx),
                // Cut: the client left it unread for `idle_timeout`.
                None => Poll::Ready(Some(Err("the client left the response unread for idle_timeout".into()))),
            }
        };
        let now_ms = self.started.elapsed().as_millis() as u64;
        self.stream.owed_since_ms.store(if polled.is_ready() { now_ms } else { NOT_OWED }, Ordering::Relaxed);
        // Ready: hyper asks again when the client has room for more;
        // pending: the body wakes hyper (the upstream is the slow one).
        let owed = polled.is_ready();
        if owed != self.owed {
            let count = &self.activity.owed;
            if owed {
                count.fetch_add(1, Ordering::Relaxed)
            } else {
                count.fetch_sub(1, Ordering::Relaxed)
            };
            self.owed = owed;
        }
        self.activity.last_poll_ms.store(now_ms, Ordering::Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        // A cut body has not ended: hyper asks for more, and resets the stream.
        self.stream.body.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let body = self.stream.body.lock().unwrap_or_else(|e| e.into_inner());
        body.as_ref().map_or_else(SizeHint::default, |b| b.size_hint())
    }
}

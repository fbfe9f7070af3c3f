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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::http::error::{BoxError, NotSent};
use crate::http::request_body::RequestBody;

/// How many times one request goes again on a new connection that took
/// nothing when its stream was not processed (a target going away as it
/// came, again and again, is a failure after these; see `send`).
const MAX_RESENDS: u32 = 3;

/// The target's connection: its number, its sender, and its tally.
type Open = (u64, SendRequest<RequestBody>, Arc<Tally>);

/// What became of the streams sent on one connection: a connection that
/// took some before going away was making progress (NGINX at
/// `keepalive_requests` takes its last request and says `GOAWAY` at once,
/// before any answer).
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    /// Refused, or given back before they went.
    unprocessed: AtomicU64,
}

impl Tally {
    /// Whether the connection took a stream (answered or still under
    /// way). Read once the streams that raced its `GOAWAY` have come back,
    /// not at the first of them: the connection fails them all at once,
    /// but each request learns of it on its own turn.
    fn took_some(&self) -> bool {
        self.sent.load(Ordering::Relaxed) > self.unprocessed.load(Ordering::Relaxed)
    }
}

/// The connection to one target, shared by its requests.
pub struct H2Target {
    /// `host:port` to connect to.
    addr: String,
    /// TLS (ALPN `h2`) for `https://` targets: the settings and the name
    /// the certificate must carry.
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
        in_flight == 0 && self.conn.try_lock().is_ok_and(|c| c.as_ref().is_some_and(|(_, s, _)| !s.is_closed()))
    }

    /// Sends `req` (its URI absolute: the scheme, the `:authority`, the
    /// path) on the target's connection. A failure to connect is `NotSent`.
    ///
    /// A target closing its connection gracefully (`GOAWAY`, NGINX after
    /// `keepalive_requests`, any server's restart) refuses the streams that
    /// raced it: the connection is dropped from here at once (it stays
    /// open for the streams it took) and a request whose body is here whole
    /// goes again on a new one, as Envoy does and as the HTTP/1.1 pool
    /// resends on a connection the target had closed. Before, every request
    /// until the connection's last stream ended found the closing
    /// connection again: a burst of 502s at each `GOAWAY`. (The copy kept
    /// for that is one header map per request, on this path only.)
    pub async fn send(&self, mut req: Request<RequestBody>) -> Result<Response<Incoming>, BoxError> {
        let mut resends = MAX_RESENDS;
        // The connection that last went away under this request, judged at
        // the next (see `Tally::took_some`).
        let mut gone: Option<Arc<Tally>> = None;
        loop {
            let mut spare = if resends > 0 { copy_whole(&mut req) } else { None };
            let (number, mut sender, tally) = self.sender().await?;
            // Waits while the connection has no stream to spare. One that
            // closed meanwhile (its `GOAWAY` came, its last stream ended)
            // took nothing of this request: it goes on the next, judged
            // as after a `GOAWAY`.
            if let Err(e) = sender.ready().await {
                self.forget(number).await;
                if gone.replace(tally).is_some_and(|before| !before.took_some()) {
                    resends = resends.saturating_sub(1);
                }
                if resends == 0 {
                    return Err(Box::new(NotSent(Box::new(e))));
                }
                continue;
            }
            tally.sent.fetch_add(1, Ordering::Relaxed);
            let idempotent = req.method().is_idempotent();
            let mut failed = match sender.try_send_request(req).await {
                Ok(resp) => return Ok(resp),
                Err(failed) => failed,
            };
            // Given back: the connection closed before it took the request.
            let returned = failed.take_message();
            let given_back = returned.is_some();
            let e = failed.into_error();
            // RFC 9113 §8.7: a stream refused (`REFUSED_STREAM`) or above a
            // `GOAWAY`'s last id was not processed: safe to send again,
            // whatever the method, as on a connection that was never made.
            // But the `GOAWAY`'s error also reaches a request whose stream
            // hyper had just opened as it came (its HEADERS go, then a
            // cancel): that one may have been processed, and the two are
            // told apart by nothing hyper gives. After a `GOAWAY` only an
            // idempotent request goes again (NGINX's `proxy_next_upstream`
            // rule); a POST is a 502 (a regression review saw POSTs
            // processed twice).
            let said = unprocessed(&e);
            if returned.is_some() || said == Some(Unprocessed::GoingAway) {
                self.forget(number).await;
            }
            if returned.is_some() || said.is_some() {
                tally.unprocessed.fetch_add(1, Ordering::Relaxed);
            }
            let unprocessed = said.filter(|u| *u == Unprocessed::Refused || idempotent);
            let again = returned.or_else(|| unprocessed.and(spare.take()));
            match again {
                Some(again) if resends > 0 => {
                    // Only resends after a connection that took nothing
                    // count: more requests in flight than the target takes
                    // per connection (NGINX's `keepalive_requests`) move on
                    // a connection at a time, each taking its share; a
                    // target going away at once every time is let go after
                    // `MAX_RESENDS` more. (`timeouts.request` bounds them
                    // all.) A connection is judged at the request's next
                    // going away, when its streams have all come back.
                    // (A refused stream stays on its connection: always counted.)
                    if unprocessed == Some(Unprocessed::GoingAway) || given_back {
                        if gone.replace(tally).is_some_and(|before| !before.took_some()) {
                            resends -= 1;
                        }
                    } else {
                        resends -= 1;
                    }
                    req = again;
                }
                Some(_) => return Err(Box::new(NotSent(Box::new(e)))),
                None if unprocessed.is_some() => return Err(Box::new(NotSent(Box::new(e)))),
                None => return Err(Box::new(e)),
            }
        }
    }

    /// The open connection, or a new one (one at a time: requests that
    /// find none wait for the one being made).
    async fn sender(&self) -> Result<Open, BoxError> {
        let mut slot = self.conn.lock().await;
        if let Some((number, open, tally)) = slot.as_ref().filter(|(_, s, _)| !s.is_closed()) {
            return Ok((*number, open.clone(), tally.clone()));
        }
        let number = self.made.fetch_add(1, Ordering::Relaxed);
        *slot = None;
        let made = self.connect().await.map_err(|e| Box::new(NotSent(e)) as BoxError)?;
        let tally = Arc::new(Tally::default());
        *slot = Some((number, made.clone(), tally.clone()));
        Ok((number, made, tally))
    }

    /// Drops connection `number` (closing: it takes no new stream), unless
    /// it was replaced already.
    async fn forget(&self, number: u64) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|(n, _, _)| *n == number) {
            *slot = None;
        }
    }

    async fn connect(&self) -> Result<SendRequest<RequestBody>, BoxError> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        tcp.set_nodelay(true)?;
        let mut h2 = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new()).keep_alive_interval(Duration::from_secs(30)).keep_alive_while_idle(false);
        let sender = match &self.tls {
            None => {
                let (sender, conn) = h2.handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                sender
            }
            Some((connector, name)) => {
                let stream =
                    tokio::time::timeout(self.connect_timeout, connector.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
                if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err("the target did not agree to HTTP/2 (ALPN `h2`)".into());
                }
                let (sender, conn) = h2.handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                sender
            }
        };
        Ok(sender)
    }
}

/// Why the upstream did not process a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unprocessed {
    /// `REFUSED_STREAM`: this stream only.
    Refused,
    /// `GOAWAY`: the connection takes no new stream.
    GoingAway,
}

/// Whether the upstream said it did not process the stream, and why.
fn unprocessed(e: &hyper::Error) -> Option<Unprocessed> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return match () {
                _ if !h2.is_remote() => None,
                _ if h2.is_go_away() => Some(Unprocessed::GoingAway),
                _ if h2.reason() == Some(h2::Reason::REFUSED_STREAM) => Some(Unprocessed::Refused),
                _ => None,
            };
        }
        source = s.source();
    }
    None
}

/// A copy of `req` to send again if its stream goes unprocessed: only a
/// request whose body is here whole (none, or read by a phase) can be; a
/// streamed body went to the first stream.
fn copy_whole(req: &mut Request<RequestBody>) -> Option<Request<RequestBody>> {
    let body = req.body_mut().try_clone_whole()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    Some(copy)
}

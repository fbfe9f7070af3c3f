//! An HTTP/1.1 upstream on loopback that tests tell to misbehave: for
//! health checks, outlier ejection, retries and their budgets, circuit
//! breakers and response aggregation.
//!
//! The server is a hand-written accept loop (hyper hides the socket, and
//! `Reset` needs it): keep-alive, request bodies by `Content-Length` or
//! `Transfer-Encoding: chunked` (read and discarded), `Expect:
//! 100-continue`. Every response carries `Content-Length` (but 204 and 304,
//! which have no body) and keeps the connection alive unless the client
//! asked to close it.
//!
//! `/healthz` answers `set_health`'s status with the body `ok` whatever the
//! mode; every other path behaves as the `Mode` set last says.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// The path health checks probe.
pub const HEALTH_PATH: &str = "/healthz";

/// A request head larger than this is refused (400, connection closed).
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

/// How the server answers requests on every path but `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200, `{"upstream":"<name>","path":"<path-and-query>"}`.
    Ok,
    /// That status, `{"upstream":"<name>","status":n}` (no body for 204 and
    /// 304). 1xx statuses are refused by `set`.
    Status(u16),
    /// Reads the request head, then closes the connection with a TCP RST
    /// (`SO_LINGER` 0) without answering.
    Reset,
    /// Reads the request head and never answers; the connection stays open
    /// until the server stops.
    Hang,
    /// Waits that long after the request (body included), then answers as
    /// `Ok`.
    Slow(Duration),
    /// 200, `content-type: application/json`, exactly that body.
    Json(&'static str),
    /// As `Json`, with that `Cache-Control`.
    JsonCached(&'static str, &'static str),
    /// A JSON head announcing 10 bytes, 2 of them, then nothing more.
    StallBody,
}

/// What the server saw of a request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target as sent: path and query.
    pub uri: String,
    pub headers: HeaderMap,
}

struct Inner {
    name: String,
    mode: Mutex<Mode>,
    health: AtomicU16,
    /// `/healthz` answers 200 announcing 10 bytes, sends 2 and closes.
    health_breaks_off: std::sync::atomic::AtomicBool,
    hits: AtomicUsize,
    health_hits: AtomicUsize,
    last: Mutex<Option<Seen>>,
    stopping: Notify,
}

/// A running misbehaving upstream. Dropping it stops it too (without waiting
/// for the sockets to close; `stop` waits).
pub struct Flaky {
    addr: SocketAddr,
    inner: Arc<Inner>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Flaky {
    /// Starts serving on 127.0.0.1 (port 0), in mode `Ok`, health 200.
    pub async fn start(name: &str) -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            name: name.to_string(),
            mode: Mutex::new(Mode::Ok),
            health: AtomicU16::new(200),
            health_breaks_off: std::sync::atomic::AtomicBool::new(false),
            hits: AtomicUsize::new(0),
            health_hits: AtomicUsize::new(0),
            last: Mutex::new(None),
            stopping: Notify::new(),
        });
        let server = tokio::spawn(accept_loop(listener, inner.clone()));
        Flaky { addr, inner, server: Mutex::new(Some(server)) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies to requests whose head is read from now on.
    pub fn set(&self, mode: Mode) {
        if let Mode::Status(n) = mode {
            assert!((200..=999).contains(&n), "Flaky: status {n} cannot be a final answer");
        }
        *self.inner.mode.lock().unwrap() = mode;
    }

    /// What `/healthz` answers from now on (default 200).
    pub fn set_health(&self, status: u16) {
        assert!((200..=999).contains(&status), "Flaky: status {status} cannot be a final answer");
        self.inner.health.store(status, Ordering::SeqCst);
    }

    /// Whether `/healthz` answers a 200 whose body breaks off (announced
    /// 10 bytes, 2 sent, then the connection closes).
    pub fn set_health_breaks_off(&self, on: bool) {
        self.inner.health_breaks_off.store(on, Ordering::SeqCst);
    }

    /// Requests received on paths other than `/healthz`, counted when their
    /// head is read (so also those that `Reset` or `Hang`).
    pub fn hits(&self) -> usize {
        self.inner.hits.load(Ordering::SeqCst)
    }

    /// Requests received on `/healthz`.
    pub fn health_hits(&self) -> usize {
        self.inner.health_hits.load(Ordering::SeqCst)
    }

    pub fn reset_counts(&self) {
        self.inner.hits.store(0, Ordering::SeqCst);
        self.inner.health_hits.store(0, Ordering::SeqCst);
    }

    /// The last request on a path other than `/healthz`.
    pub fn last_request(&self) -> Option<Seen> {
        self.inner.last.lock().unwrap().clone()
    }

    /// Closes the listener and every open connection, and waits until they
    /// are closed: connecting afterwards is refused. Stopping twice is fine.
    pub async fn stop(&self) {
        let server = self.server.lock().unwrap().take();
        if let Some(server) = server {
            self.inner.stopping.notify_one();
            let _ = server.await;
        }
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        if let Some(server) = self.server.lock().unwrap().take() {
            // Dropping the accept loop drops the listener and aborts the
            // connections' tasks (their `JoinSet`).
            server.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = inner.stopping.notified() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                connections.spawn(serve(stream, inner.clone()));
            }
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// A connection with the bytes read but not yet consumed.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads more bytes; false at end of stream or on error.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Consumes `n` bytes, reading as needed.
    async fn discard(&mut self, mut n: u64) -> bool {
        loop {
            let here = (self.buf.len() as u64).min(n);
            self.buf.drain(..here as usize);
            n -= here;
            if n == 0 {
                return true;
            }
            if !self.fill().await {
                return false;
            }
        }
    }

    /// Consumes up to and including the next CRLF.
    async fn discard_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if self.buf.len() > MAX_HEAD || !self.fill().await {
                return None;
            }
        }
    }

    /// Reads and discards a chunked body, trailers included.
    async fn discard_chunked(&mut self) -> bool {
        loop {
            let (used, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete(found)) => break found,
                    Ok(httparse::Status::Partial) if self.buf.len() <= MAX_HEAD => {
                        if !self.fill().await {
                            return false;
                        }
                    }
                    _ => return false,
                }
            };
            self.buf.drain(..used);
            if size == 0 {
                // Trailer fields, then an empty line.
                loop {
                    match self.discard_line().await {
                        Some(line) if line.is_empty() => return true,
                        Some(_) => {}
                        None => return false,
                    }
                }
            }
            if !self.discard(size).await {
                return false;
            }
            match self.discard_line().await {
                Some(line) if line.is_empty() => {}
                _ => return false,
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }
}

/// A parsed request head.
struct Head {
    seen: Seen,
    /// HTTP/1.0 (minor version 0).
    http10: bool,
    len: usize,
}

enum Parsed {
    Head(Head),
    Closed,
    Invalid,
}

async fn read_head(conn: &mut Conn) -> Parsed {
    loop {
        if !conn.buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&conn.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let mut map = HeaderMap::new();
                    for h in req.headers.iter() {
                        if let (Ok(k), Ok(v)) =
                            (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value))
                        {
                            map.append(k, v);
                        }
                    }
                    let seen = Seen {
                        method: req.method.unwrap_or_default().to_string(),
                        uri: req.path.unwrap_or_default().to_string(),
                        headers: map,
                    };
                    return Parsed::Head(Head { seen, http10: req.version == Some(0), len });
                }
                Ok(httparse::Status::Partial) if conn.buf.len() <= MAX_HEAD => {}
                _ => return Parsed::Invalid,
            }
        }
        if !conn.fill().await {
            return Parsed::Closed;
        }
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

enum Body {
    None,
    Length(u64),
    Chunked,
}

fn body_of(headers: &HeaderMap) -> Option<Body> {
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        let last = headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty());
        return match last {
            Some(t) if t.eq_ignore_ascii_case("chunked") => Some(Body::Chunked),
            _ => None,
        };
    }
    match headers.get(http::header::CONTENT_LENGTH) {
        None => Some(Body::None),
        Some(v) => v.to_str().ok()?.trim().parse().ok().map(Body::Length),
    }
}

async fn serve(stream: TcpStream, inner: Arc<Inner>) {
    let mut conn = Conn { stream, buf: Vec::new() };
    loop {
        let head = match read_head(&mut conn).await {
            Parsed::Head(head) => head,
            Parsed::Closed => return,
            Parsed::Invalid => {
                conn.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                return;
            }
        };
        conn.buf.drain(..head.len);
        let Head { seen, http10, .. } = head;
        let path = seen.uri.split('?').next().unwrap_or_default();
        let health = path == HEALTH_PATH;
        let mode = if health {
            inner.health_hits.fetch_add(1, Ordering::SeqCst);
            None
        } else {
            let mode = *inner.mode.lock().unwrap();
            *inner.last.lock().unwrap() = Some(seen.clone());
            inner.hits.fetch_add(1, Ordering::SeqCst);
            Some(mode)
        };
        match mode {
            Some(Mode::Reset) => {
                // A zero linger turns the close into an RST.
                let _ = socket2::SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO));
                return;
            }
            Some(Mode::Hang) => std::future::pending::<()>().await,
            None if inner.health_breaks_off.load(Ordering::SeqCst) => {
                conn.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 10\r\n\r\nok").await;
                return;
            }
            Some(Mode::StallBody) => {
                conn.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n[1").await;
                std::future::pending::<()>().await
            }
            _ => {}
        }

        let Some(body) = body_of(&seen.headers) else {
            conn.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            return;
        };
        let has_body = match body {
            Body::None | Body::Length(0) => false,
            Body::Length(_) | Body::Chunked => true,
        };
        if has_body
            && !http10
            && has_token(&seen.headers, "expect", "100-continue")
            && !conn.write(b"HTTP/1.1 100 Continue\r\n\r\n").await
        {
            return;
        }
        let read = match body {
            Body::None => true,
            Body::Length(n) => conn.discard(n).await,
            Body::Chunked => conn.discard_chunked().await,
        };
        if !read {
            return;
        }

        let name = &inner.name;
        let cache_control = match mode {
            Some(Mode::JsonCached(c, _)) => Some(c),
            _ => None,
        };
        let (status, content_type, body, upstream) = match mode {
            None => (inner.health.load(Ordering::SeqCst), "text/plain", "ok".to_string(), false),
            Some(Mode::Ok) => (200, "application/json", ok_body(name, &seen.uri), true),
            Some(Mode::Slow(d)) => {
                tokio::time::sleep(d).await;
                (200, "application/json", ok_body(name, &seen.uri), true)
            }
            Some(Mode::Status(n)) => {
                (n, "application/json", format!("{{\"upstream\":{},\"status\":{n}}}", json_str(name)), true)
            }
            Some(Mode::Json(body) | Mode::JsonCached(_, body)) => (200, "application/json", body.to_string(), true),
            Some(Mode::Reset | Mode::Hang | Mode::StallBody) => unreachable!(),
        };

        let close = has_token(&seen.headers, "connection", "close")
            || (http10 && !has_token(&seen.headers, "connection", "keep-alive"));
        let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Unknown");
        let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
        let bodyless = status == 204 || status == 304;
        if !bodyless {
            out.push_str(&format!("content-type: {content_type}\r\ncontent-length: {}\r\n", body.len()));
        }
        if upstream {
            out.push_str(&format!("x-upstream: {name}\r\n"));
        }
        if let Some(c) = cache_control {
            out.push_str(&format!("cache-control: {c}\r\n"));
        }
        if close {
            out.push_str("connection: close\r\n");
        } else if http10 {
            out.push_str("connection: keep-alive\r\n");
        }
        out.push_str("\r\n");
        if !bodyless && !seen.method.eq_ignore_ascii_case("HEAD") {
            out.push_str(&body);
        }
        if !conn.write(out.as_bytes()).await || close {
            return;
        }
    }
}

fn ok_body(name: &str, uri: &str) -> String {
    format!("{{\"upstream\":{},\"path\":{}}}", json_str(name), json_str(uri))
}

/// A JSON string literal (quoted, escaped).
fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

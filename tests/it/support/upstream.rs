//! Real upstream servers on loopback (HTTP/1.1 and h2c on one port).
//!
//! The default handler answers with JSON describing what it received:
//! `{server, method, path, query, version, headers}`. Special paths:
//! `/hang` never answers, `/hold` answers once `release()` is called,
//! `/count` reads the whole body and reports its length (`/count-slowly`
//! with pauses), `/big?bytes=N`
//! streams N bytes back, `/hop` answers with hop-by-hop headers, `/branded`
//! with the headers a gateway cleans up (`Server`, `X-Powered-By`, its own
//! `X-Frame-Options` and `X-Request-Id`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Notify;

type Body = BoxBody<Bytes, Infallible>;

pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// TCP connections accepted.
    pub connections: Arc<AtomicUsize>,
    hold: Arc<Notify>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let hold = Arc::new(Notify::new());
        let name: Arc<str> = name.into();
        let (h, n, w) = (hits.clone(), name.clone(), hold.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (h, n, w) = (h.clone(), n.clone(), w.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, n.clone(), h.clone(), w.clone()));
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Upstream { addr, hits, connections, hold }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Lets every request waiting on `/hold` answer.
    pub fn release(&self) {
        self.hold.notify_waiters();
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

async fn handle(
    req: Request<Incoming>,
    name: Arc<str>,
    hits: Arc<AtomicUsize>,
    hold: Arc<Notify>,
) -> Result<Response<Body>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/hang" => std::future::pending::<()>().await,
        "/hold" => hold.notified().await,
        "/count" | "/count-slowly" => {
            // `/count-slowly` pauses now and then, so that the sender's
            // window fills and it has to wait.
            let slowly = path == "/count-slowly";
            let mut body = req.into_body();
            let mut n = 0usize;
            let mut frames = 0u32;
            while let Some(frame) = body.frame().await {
                // A body broken off (the stream reset) says so again at
                // every poll: it ends here.
                let Ok(frame) = frame else { break };
                n += frame.into_data().map(|d| d.len()).unwrap_or(0);
                frames += 1;
                if slowly && frames.is_multiple_of(8) {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            }
            return Ok(Response::new(full(serde_json::json!({ "received": n }).to_string())));
        }
        "/big" => {
            let total: usize =
                req.uri().query().and_then(|q| q.strip_prefix("bytes=")).and_then(|n| n.parse().ok()).unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = (0..total.div_ceil(chunk.len())).map(move |i| {
                let len = chunk.len().min(total - i * chunk.len());
                Ok::<_, Infallible>(Frame::data(chunk.slice(..len)))
            });
            let body = StreamBody::new(futures_util::stream::iter(chunks));
            return Ok(Response::new(BodyExt::boxed(body)));
        }
        "/hop" => {
            let resp = Response::builder()
                .header("connection", "x-up-hop")
                .header("x-up-hop", "1")
                .header("keep-alive", "timeout=5")
                .header("proxy-authenticate", "Basic")
                .header("x-up-normal", "1")
                .body(full("hop"))
                .unwrap();
            return Ok(resp);
        }
        // A backend whose CORS library lets every origin in.
        p if p.ends_with("/permissive") => {
            let resp = Response::builder()
                .header("access-control-allow-origin", "https://evil.example.net")
                .header("access-control-allow-credentials", "true")
                .header("access-control-expose-headers", "X-Secret")
                .header("access-control-allow-private-network", "true")
                .body(full("permissive"))
                .unwrap();
            return Ok(resp);
        }
        // Security headers present with nothing in them.
        "/blank-defaults" => {
            let resp = Response::builder()
                .header("x-frame-options", "")
                .header("x-content-type-options", "")
                .header("vary", "Accept-Encoding")
                .body(full("blank"))
                .unwrap();
            return Ok(resp);
        }
        // `?v=…`: the HSTS value sent (percent-decoded; `empty` for a blank line).
        "/hsts" => {
            let query = req.uri().query().unwrap_or("");
            let value = query.strip_prefix("v=").unwrap_or("").replace("%20", " ").replace("%3B", ";");
            let value = if value == "empty" { String::new() } else { value };
            let resp = Response::builder().header("strict-transport-security", value).body(full("hsts")).unwrap();
            return Ok(resp);
        }
        "/branded" => {
            let resp = Response::builder()
                .header("server", "Upstream/1.0")
                .header("x-powered-by", "Express")
                .header("x-frame-options", "SAMEORIGIN")
                .header("x-request-id", "upstream-id")
                .header("vary", "Accept")
                .body(full("branded"))
                .unwrap();
            return Ok(resp);
        }
        _ => {}
    }
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        match headers.get_mut(k.as_str()) {
            Some(serde_json::Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            _ => {
                headers.insert(k.as_str().to_string(), v.into());
            }
        }
    }
    let doc = serde_json::json!({
        "server": &*name,
        "method": req.method().as_str(),
        "path": path,
        "query": req.uri().query(),
        "version": format!("{:?}", req.version()),
        // HTTP/2's `:authority` (absent in an HTTP/1.1 request's origin form).
        "authority": req.uri().authority().map(|a| a.as_str()),
        "headers": headers,
    });
    Ok(Response::builder().header("content-type", "application/json").body(full(doc.to_string())).unwrap())
}

/// A WebSocket server that echoes text and binary messages, hangs up (no
/// close frame) on the text `hang up`, and answers `flood N` with N binary
/// messages of 64 KiB.
pub struct WsUpstream {
    pub addr: SocketAddr,
}

impl WsUpstream {
    pub async fn start() -> WsUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        // Hangs up without a close handshake (a crashed or restarted service).
                        if msg.to_text().is_ok_and(|t| t == "hang up") {
                            return;
                        }
                        // `flood N`: N binary messages of 64 KiB, as fast as they go.
                        if let Some(n) =
                            msg.to_text().ok().and_then(|t| t.strip_prefix("flood ")?.parse::<usize>().ok())
                        {
                            for _ in 0..n {
                                let chunk = tokio_tungstenite::tungstenite::Message::binary(vec![7u8; 64 << 10]);
                                if ws.send(chunk).await.is_err() {
                                    return;
                                }
                            }
                            continue;
                        }
                        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        WsUpstream { addr }
    }
}

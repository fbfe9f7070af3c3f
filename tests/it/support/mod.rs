//! Test support: the real gateway on port 0, real upstream servers on
//! loopback, and small HTTP clients.

#![allow(dead_code)]

pub mod flaky;
pub mod h2raw;
pub mod h2target;
pub mod idp;
pub mod otlp;
pub mod pki;
pub mod process;
pub mod recorder;
pub mod redis;
pub mod scripted;
pub mod tls;
pub mod upstream;
pub mod wire;

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis::config::{self, LoadedConfig};
use portcullis::{Gateway, Handle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use upstream::{Upstream, WsUpstream};

/// Parses YAML the way the binary does (base dir for relative files: `base`).
pub fn load(yaml: &str, base: &Path) -> LoadedConfig {
    config::parse_str(yaml, "test.yaml", base).unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
}

/// Starts the gateway with a config whose listener is `gw` on 127.0.0.1:0.
pub async fn gateway(body: &str) -> Gateway1 {
    let yaml = format!("listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\n{body}");
    let handle = Gateway::start(&load(&yaml, Path::new("."))).await.expect("gateway starts");
    let addr = handle.addr("gw").expect("listener gw");
    Gateway1 { handle, addr }
}

/// A running gateway with one listener.
pub struct Gateway1 {
    pub handle: Handle,
    pub addr: SocketAddr,
}

impl Gateway1 {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// What a client sees.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn http1_client() -> TestClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn h2c_client() -> TestClient {
    Client::builder(TokioExecutor::new()).http2_only(true).build(HttpConnector::new())
}

pub async fn send(client: &TestClient, req: Request<Full<Bytes>>) -> Reply {
    let resp = client.request(req).await.expect("request reaches the gateway");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply { status: parts.status, headers: parts.headers, body, version: parts.version }
}

/// GET `url` over HTTP/1.1 with extra headers.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(&http1_client(), req.body(Full::default()).unwrap()).await
}

/// Sends raw bytes and returns everything the gateway answers until it closes.
pub async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Status code of a raw HTTP/1.1 response.
pub fn raw_status(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A loopback listener whose accept queue is full: a new connection's SYN
/// is dropped, so connecting to `addr` hangs until the connect timeout.
/// The queue stays full while this lives.
pub struct FullAcceptQueue {
    pub addr: SocketAddr,
    _socket: socket2::Socket,
    _fillers: Vec<std::net::TcpStream>,
}

pub fn full_accept_queue() -> FullAcceptQueue {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(100)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    FullAcceptQueue { addr, _socket: socket, _fillers: fillers }
}

/// A loopback port that nothing listens on, and that stays so: it is
/// held bound, never listening, for the rest of the test process (a port
/// merely freed could be taken by another test's server meanwhile, and a
/// "refused" target would answer 404).
pub async fn closed_port() -> SocketAddr {
    use std::sync::Mutex;
    static HELD: Mutex<Vec<socket2::Socket>> = Mutex::new(Vec::new());
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    HELD.lock().unwrap().push(socket);
    addr
}

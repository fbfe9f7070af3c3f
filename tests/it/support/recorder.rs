//! An upstream that records the exact bytes of every connection it accepts
//! and reads requests from them the way a lenient backend would: a
//! `Transfer-Encoding` that mentions `chunked` wins, else the first
//! `Content-Length`, bare LF line ends are taken. If the gateway ever lets
//! a second request hide inside the first one's bytes, this server finds
//! it, answers it, and counts it.
//!
//! Each request is answered with `<METHOD> <target>` as the body, so a
//! client can tell whose answer it got. A reply can be scripted instead
//! (`with_replies`): raw bytes chosen by target, for the response direction.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One request as this server read it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub target: String,
    /// Header lines as received: (name as written, value).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The connection it came on (0, 1, … in accept order).
    pub connection: usize,
}

impl Received {
    /// Every value of `name` (case-insensitive).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }

    /// Exactly one framing line, and it describes the body received: the
    /// gateway framed this request itself.
    pub fn framed_by_one_line(&self) -> bool {
        let lengths = self.all("content-length");
        let codings = self.all("transfer-encoding");
        match (lengths.as_slice(), codings.as_slice()) {
            ([], []) => self.body.is_empty(),
            ([n], []) => n.parse::<usize>().ok() == Some(self.body.len()),
            ([], [c]) => *c == "chunked",
            _ => false,
        }
    }
}

type Replies = Arc<dyn Fn(&Received) -> Option<Vec<u8>> + Send + Sync>;

#[derive(Default)]
struct Log {
    /// Raw bytes per connection.
    connections: Vec<Vec<u8>>,
    requests: Vec<Received>,
}

pub struct Recorder {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    changed: Arc<Notify>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        Recorder::with_replies(|_| None).await
    }

    /// `replies` picks raw response bytes for a request, or `None` for the echo.
    pub async fn with_replies(replies: impl Fn(&Received) -> Option<Vec<u8>> + Send + Sync + 'static) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let changed = Arc::new(Notify::new());
        let replies: Replies = Arc::new(replies);
        let (l, c) = (log.clone(), changed.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let id = {
                    let mut log = l.lock().unwrap();
                    log.connections.push(Vec::new());
                    log.connections.len() - 1
                };
                tokio::spawn(serve(stream, id, l.clone(), c.clone(), replies.clone()));
            }
        });
        Recorder { addr, log, changed }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request read so far, in order.
    pub fn requests(&self) -> Vec<Received> {
        self.log.lock().unwrap().requests.clone()
    }

    pub fn count(&self) -> usize {
        self.log.lock().unwrap().requests.len()
    }

    /// The raw bytes of connection `i`.
    pub fn bytes(&self, i: usize) -> Vec<u8> {
        self.log.lock().unwrap().connections[i].clone()
    }

    /// Every byte received, all connections, for failure messages.
    pub fn transcript(&self) -> String {
        let log = self.log.lock().unwrap();
        log.connections
            .iter()
            .enumerate()
            .map(|(i, b)| format!("--- connection {i}\n{}", String::from_utf8_lossy(b)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until a request whose target is `target` has been read.
    pub async fn wait_for(&self, target: &str) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                if self.requests().iter().any(|r| r.target == target) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("{target} never reached the upstream:\n{}", self.transcript()));
    }
}

async fn serve(mut s: TcpStream, id: usize, log: Arc<Mutex<Log>>, changed: Arc<Notify>, replies: Replies) {
    let mut buf = Vec::new();
    loop {
        let req = loop {
            match parse(&buf) {
                Some((req, used)) => {
                    buf.drain(..used);
                    break req;
                }
                None => {
                    let mut chunk = [0u8; 8192];
                    let n = match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    log.lock().unwrap().connections[id].extend_from_slice(&chunk[..n]);
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        };
        let req = Received { connection: id, ..req };
        log.lock().unwrap().requests.push(req.clone());
        changed.notify_waiters();
        let reply = replies(&req).unwrap_or_else(|| {
            let body = format!("{} {}", req.method, req.target);
            format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}", body.len())
                .into_bytes()
        });
        // A target under `/slow/` is answered after a while: the client's
        // side of the gateway has time to act in between.
        if req.target.contains("/slow/") {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        if s.write_all(&reply).await.is_err() {
            return;
        }
        let head_end = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(reply.len());
        if String::from_utf8_lossy(&reply[..head_end]).to_ascii_lowercase().contains("connection: close") {
            let _ = s.shutdown().await;
            return;
        }
    }
}

/// One request from the front of `buf` and the bytes it used, if complete.
fn parse(buf: &[u8]) -> Option<(Received, usize)> {
    let end = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let end_crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let head_end = match (end, end_crlf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_string(), v.trim().to_string())))
        .collect();
    let get = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let rest = &buf[head_end..];
    let (body, used) = if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        dechunk(rest)?
    } else {
        let n: usize = get("content-length").and_then(|v| v.split(',').next()?.trim().parse().ok()).unwrap_or(0);
        if rest.len() < n {
            return None;
        }
        (rest[..n].to_vec(), n)
    };
    let req = Received { method, target, headers, body, connection: 0 };
    Some((req, head_end + used))
}

/// A chunked body, leniently (sizes up to the first non-hex byte, LF line ends).
fn dechunk(mut rest: &[u8]) -> Option<(Vec<u8>, usize)> {
    let total = rest.len();
    let mut body = Vec::new();
    loop {
        let eol = rest.iter().position(|&b| b == b'\n')?;
        let line = String::from_utf8_lossy(&rest[..eol]);
        let hex: String = line.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        let size = usize::from_str_radix(&hex, 16).ok()?;
        rest = &rest[eol + 1..];
        if size == 0 {
            // Trailers, up to an empty line.
            loop {
                let eol = rest.iter().position(|&b| b == b'\n')?;
                let empty = rest[..eol].iter().all(|&b| b == b'\r');
                rest = &rest[eol + 1..];
                if empty {
                    return Some((body, total - rest.len()));
                }
            }
        }
        if rest.len() < size + 1 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        let eol = rest.iter().position(|&b| b == b'\n')?;
        rest = &rest[eol + 1..];
    }
}

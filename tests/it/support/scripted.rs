//! An upstream that answers with exact bytes chosen by path: for the wire
//! cases a well-behaved server never produces (chunk extensions, trailers,
//! bodies delimited by close, early answers, hang-ups, garbage).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Scripted {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    stalls_ended: Arc<AtomicUsize>,
}

/// What the server counts.
#[derive(Clone)]
struct Counts {
    requests: Arc<AtomicUsize>,
    stalls_ended: Arc<AtomicUsize>,
}

impl Scripted {
    pub async fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let stalls_ended = Arc::new(AtomicUsize::new(0));
        let c = connections.clone();
        let counts = Counts { requests: requests.clone(), stalls_ended: stalls_ended.clone() };
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(s, counts.clone()));
            }
        });
        Scripted { addr, connections, requests, stalls_ended }
    }

    /// `/stall` connections the gateway has closed.
    pub fn stalls_ended(&self) -> usize {
        self.stalls_ended.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Request heads received (answered or not).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn serve(mut s: TcpStream, counts: Counts) {
    let requests = &counts.requests;
    let mut buf = Vec::new();
    let mut on_this_connection = 0;
    loop {
        let Some(end) = read_head(&mut s, &mut buf).await else { return };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        requests.fetch_add(1, Ordering::SeqCst);
        on_this_connection += 1;
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        if path != "/early" {
            while buf.len() < length {
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..length);
        }
        let reply: &[u8] = match path.as_str() {
            "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
            "/until-close" => b"HTTP/1.1 200 OK\r\n\r\nuntil close",
            "/head" => b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nx-head: 1\r\n\r\n",
            "/continue" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            "/early" => b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope",
            "/garbage" => b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
            "/bad-chunk" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXX",
            // Nine interim answers, one write (and read) each, then the answer.
            "/interims-apart" => {
                for _ in 0..9 {
                    if s.write_all(b"HTTP/1.1 103 Early Hints\r\n\r\n").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
            }
            // The head at once, its body 300 ms later.
            "/slow-body" => {
                if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n").await.is_err() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                b"0123456789"
            }
            // 1,000 bytes of 100,000, then the connection closes.
            "/cut" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n").await;
                let _ = s.write_all(&[b'x'; 1000]).await;
                let _ = s.shutdown().await;
                return;
            }
            // Two bytes of ten, then nothing until the gateway lets go.
            "/stall" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab").await;
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest).await;
                counts.stalls_ended.fetch_add(1, Ordering::SeqCst);
                return;
            }
            // Hangs up on every request but a connection's first: what a
            // keep-alive connection closed by the upstream looks like.
            "/flaky" if on_this_connection > 1 => return,
            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        };
        if s.write_all(reply).await.is_err() {
            return;
        }
        if matches!(path.as_str(), "/until-close" | "/early" | "/garbage" | "/bad-chunk") {
            let _ = s.shutdown().await;
            return;
        }
    }
}

/// Reads until a blank line; returns the head's length.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

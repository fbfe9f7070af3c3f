//! A raw HTTP/1.1 client: exact bytes out, responses read one at a time
//! (status, head, body framed by `Content-Length`, chunked or close), so a
//! test sees every response the gateway sends, a smuggled one included.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Status line and header lines, as received.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A connection to the gateway, plain or TLS.
pub struct RawConn<S = TcpStream> {
    stream: S,
    buf: Vec<u8>,
    eof: bool,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        RawConn::over(TcpStream::connect(addr).await.unwrap())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawConn<S> {
    pub fn over(stream: S) -> RawConn<S> {
        RawConn { stream, buf: Vec::new(), eof: false }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        // The gateway may close before taking everything (a refused head): not an error here.
        let _ = self.stream.write_all(bytes).await;
    }

    /// Reads more; false at end of file (or a reset).
    async fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Ok(_) => {
                self.eof = true;
                false
            }
            Err(_) => panic!("no response within {WAIT:?}; got so far: {:?}", String::from_utf8_lossy(&self.buf)),
        }
    }

    /// The next response, or `None` if the connection ends first. `head_request`:
    /// the request was `HEAD` (no body follows whatever the head says).
    pub async fn response(&mut self, head_request: bool) -> Option<RawResponse> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end - 4]).into_owned();
        self.buf.drain(..head_end);
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut resp = RawResponse { status, head, body: Vec::new() };
        if head_request || status < 200 || status == 204 || status == 304 {
            return Some(resp);
        }
        if resp.header("transfer-encoding").is_some() {
            resp.body = self.dechunk().await?;
        } else if let Some(n) = resp.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < n {
                if !self.fill().await {
                    return None;
                }
            }
            resp.body = self.buf.drain(..n).collect();
        } else {
            while self.fill().await {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Some(resp)
    }

    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn dechunk(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size = usize::from_str_radix(std::str::from_utf8(&line).ok()?.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                while !self.line().await?.is_empty() {}
                return Some(body);
            }
            while self.buf.len() < size + 2 {
                if !self.fill().await {
                    return None;
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// Whether the gateway closes the connection (with nothing more to say) within a moment.
    pub async fn closes(&mut self) -> bool {
        while self.buf.is_empty() {
            if !self.fill().await {
                return true;
            }
        }
        false
    }

    /// What was read and not yet taken as a response.
    pub fn unread(&self) -> &[u8] {
        &self.buf
    }
}

/// Sends `request` on a new connection and reads one response.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Option<RawResponse> {
    let mut conn = RawConn::connect(addr).await;
    conn.send(request).await;
    conn.response(request.starts_with(b"HEAD ")).await
}

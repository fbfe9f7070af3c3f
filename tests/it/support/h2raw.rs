//! Hand-built HTTP/2 frames over h2c (prior knowledge), for requests that
//! no well-behaved client library would send: header values with CR, LF or
//! NUL, connection-specific fields, `content-length` that disagrees with the
//! DATA frames. HPACK fields are written as literals without indexing, so
//! every byte is ours.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const CONTINUATION: u8 = 9;
pub const END_STREAM: u8 = 1;
pub const END_HEADERS: u8 = 4;
pub const ACK: u8 = 1;

/// The next frame a peer sends: its type, flags, stream and payload
/// (`None` at the end of the connection or a read error).
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(reader: &mut R) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    reader.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], id, payload))
}

/// One frame: length, type, flags, stream, payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// How the gateway ended a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response and its status (0 if it could not be read).
    Status(u16),
    /// `RST_STREAM` with this error code.
    Reset(u32),
    /// `GOAWAY` with this error code.
    GoAway(u32),
    Closed,
}

impl Outcome {
    /// Refused: a 400 or the stream or connection ended without an answer.
    pub fn is_refusal(self) -> bool {
        matches!(self, Outcome::Status(400) | Outcome::Reset(_) | Outcome::GoAway(_) | Outcome::Closed)
    }
}

pub struct H2Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl H2Conn {
    pub async fn connect(addr: SocketAddr) -> H2Conn {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(PREFACE).await.unwrap();
        let mut conn = H2Conn { stream, buf: Vec::new() };
        conn.frame(SETTINGS, 0, 0, &[]).await;
        conn
    }

    async fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let _ = self.stream.write_all(&frame(kind, flags, stream, payload)).await;
    }

    /// A HEADERS frame with every field a literal without indexing (and
    /// CONTINUATION frames for a block over the default 16 KiB frame size).
    pub async fn headers(&mut self, stream: u32, fields: &[(&[u8], &[u8])], end_stream: bool) {
        let mut block = Vec::new();
        for (name, value) in fields {
            block.push(0);
            integer(&mut block, name.len());
            block.extend_from_slice(name);
            integer(&mut block, value.len());
            block.extend_from_slice(value);
        }
        let pieces: Vec<&[u8]> = block.chunks(16384).collect();
        let pieces = if pieces.is_empty() { vec![&[][..]] } else { pieces };
        for (i, piece) in pieces.iter().enumerate() {
            let last = if i + 1 == pieces.len() { END_HEADERS } else { 0 };
            if i == 0 {
                self.frame(HEADERS, last | if end_stream { END_STREAM } else { 0 }, stream, piece).await;
            } else {
                self.frame(CONTINUATION, last, stream, piece).await;
            }
        }
    }

    pub async fn data(&mut self, stream: u32, bytes: &[u8], end_stream: bool) {
        self.frame(DATA, if end_stream { END_STREAM } else { 0 }, stream, bytes).await;
    }

    /// `GOAWAY` with that error code (last stream 0).
    pub async fn goaway(&mut self, code: u32) {
        let mut payload = 0u32.to_be_bytes().to_vec();
        payload.extend_from_slice(&code.to_be_bytes());
        self.frame(GOAWAY, 0, 0, &payload).await;
    }

    /// `RST_STREAM` with that error code.
    pub async fn reset(&mut self, stream: u32, code: u32) {
        self.frame(RST_STREAM, 0, stream, &code.to_be_bytes()).await;
    }

    /// Reads frames until stream `id` is answered or ended, or the connection is.
    pub async fn outcome(&mut self, id: u32) -> Outcome {
        loop {
            let Some((kind, flags, stream, payload)) = self.read_frame().await else { return Outcome::Closed };
            match kind {
                SETTINGS if flags & ACK == 0 => self.frame(SETTINGS, ACK, 0, &[]).await,
                PING if flags & ACK == 0 => self.frame(PING, ACK, 0, &payload).await,
                GOAWAY => return Outcome::GoAway(u32::from_be_bytes(payload[4..8].try_into().unwrap())),
                RST_STREAM if stream == id => {
                    return Outcome::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()));
                }
                HEADERS if stream == id => return Outcome::Status(status(&payload)),
                _ => {}
            }
        }
    }

    async fn read_frame(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        loop {
            if self.buf.len() >= 9 {
                let len = (usize::from(self.buf[0]) << 16) | (usize::from(self.buf[1]) << 8) | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let frame: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let stream = u32::from_be_bytes(frame[5..9].try_into().unwrap()) & 0x7fff_ffff;
                    return Some((frame[3], frame[4], stream, frame[9..].to_vec()));
                }
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                Ok(_) => return None,
                Err(_) => panic!("no HTTP/2 answer within 5 s"),
            }
        }
    }
}

/// The `:status` of a response header block: the first field, indexed from
/// HPACK's static table or a literal whose name is `:status` (index 8),
/// its value raw or Huffman-coded digits.
fn status(block: &[u8]) -> u16 {
    let (&first, rest) = block.split_first().unwrap_or((&0, &[]));
    match first {
        0x88 => return 200,
        0x89 => return 204,
        0x8a => return 206,
        0x8b => return 304,
        0x8c => return 400,
        0x8d => return 404,
        0x8e => return 500,
        0x48 | 0x08 | 0x18 => {}
        _ => return 0,
    }
    let Some((&len, value)) = rest.split_first() else { return 0 };
    let value = &value[..usize::from(len & 0x7f).min(value.len())];
    let digits = if len & 0x80 == 0 { value.to_vec() } else { huffman_digits(value) };
    std::str::from_utf8(&digits).ok().and_then(|d| d.parse().ok()).unwrap_or(0)
}

/// Decodes Huffman-coded ASCII digits (RFC 7541 Appendix B: `0`-`2` have
/// 5-bit codes, `3`-`9` 6-bit ones); stops at anything else (the padding).
fn huffman_digits(bytes: &[u8]) -> Vec<u8> {
    let bits: Vec<u8> = bytes.iter().flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1)).collect();
    let read = |at: usize, n: usize| bits.get(at..at + n).map(|b| b.iter().fold(0u8, |v, &x| v << 1 | x));
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(five) = read(at, 5) {
        if five <= 2 {
            out.push(b'0' + five);
            at += 5;
        } else if let Some(six @ 0x19..=0x1f) = read(at, 6) {
            out.push(b'3' + (six - 0x19));
            at += 6;
        } else {
            break;
        }
    }
    out
}

/// An HPACK integer with a 7-bit prefix (RFC 7541 §5.1), Huffman bit clear.
fn integer(out: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}

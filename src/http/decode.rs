//! HTTP/1.1 body decoding, for request bodies from clients and response
//! bodies from upstreams: `Content-Length`, chunked (RFC 9112 §7.1) and
//! until-close. A pure state machine over the connection's read buffer, so
//! every split point of the input can be tested without a socket.

use bytes::{Buf, Bytes, BytesMut};

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the peer closes the connection (responses only).
    UntilClose,
}

/// A chunk-size line longer than this (extensions included) is refused.
const MAX_CHUNK_LINE: usize = 4096;
/// Trailer fields are read and dropped, up to this much.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the upstream sent a malformed chunked body: {0}")]
    Chunked(&'static str),
    #[error("the upstream closed the connection before the body was complete")]
    Truncated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailers(usize),
    UntilClose,
    Done,
}

impl Decoder {
    pub fn new(framing: Framing) -> Decoder {
        match framing {
            Framing::Empty | Framing::Length(0) => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::ChunkSize,
            Framing::UntilClose => Decoder::UntilClose,
        }
    }

    pub fn is_done(&self) -> bool {
        *self == Decoder::Done
    }

    /// Bytes of body still expected, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }

    /// The next piece of body data from the front of `buf`. `Ok(None)`
    /// means: done (see `is_done`) or more input is needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        loop {
            match *self {
                Decoder::Done => return Ok(None),
                Decoder::Length(n) => {
                    let data = take_up_to(buf, n);
                    *self = match n - data.len() as u64 {
                        0 => Decoder::Done,
                        left => Decoder::Length(left),
                    };
                    return Ok((!data.is_empty()).then_some(data));
                }
                Decoder::UntilClose => {
                    return Ok((!buf.is_empty()).then(|| buf.split().freeze()));
                }
                Decoder::ChunkData(n) => {
                    let data = take_up_to(buf, n);
                    *self = match n - data.len() as u64 {
                        0 => Decoder::ChunkEnd,
                        left => Decoder::ChunkData(left),
                    };
                    return Ok((!data.is_empty()).then_some(data));
                }
                Decoder::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(DecodeError::Chunked("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Decoder::ChunkSize;
                }
                Decoder::ChunkSize => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else { return Ok(None) };
                    let size = parse_chunk_size(&line)?;
                    *self = if size == 0 { Decoder::Trailers(0) } else { Decoder::ChunkData(size) };
                }
                Decoder::Trailers(seen) => {
                    let Some(line) = take_line(buf, MAX_TRAILERS - seen)? else { return Ok(None) };
                    *self = if line.len() == 2 { Decoder::Done } else { Decoder::Trailers(seen + line.len()) };
                }
            }
        }
    }

    /// The connection reached end of file: fine only for an until-close body.
    pub fn eof(&mut self) -> Result<(), DecodeError> {
        match self {
            Decoder::UntilClose | Decoder::Done => {
                *self = Decoder::Done;
                Ok(())
            }
            _ => Err(DecodeError::Truncated),
        }
    }
}

/// The body length that `Content-Length` declares, if any. `5, 5` and
/// repeated lines are fine if they agree (RFC 9110 §8.6); anything else
/// that is not one decimal number is an error (a smuggling sign).
pub fn content_length(headers: &http::HeaderMap) -> Result<Option<u64>, &'static str> {
    let mut length = DeclaredLength::default();
    for value in headers.get_all(http::header::CONTENT_LENGTH) {
        length.note(value.as_bytes());
    }
    length.result()
}

/// `Content-Length` lines, noted one by one while a head is parsed.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeclaredLength {
    length: Option<u64>,
    error: Option<&'static str>,
}

impl DeclaredLength {
    pub fn note(&mut self, value: &[u8]) {
        for part in value.split(|&b| b == b',') {
            match parse_decimal(trim(part)) {
                None => self.error = Some("bad Content-Length"),
                Some(n) if self.length.is_some_and(|l| l != n) => {
                    self.error = Some("conflicting Content-Length values");
                }
                Some(n) => self.length = Some(n),
            }
        }
    }

    /// Whether any line was noted.
    pub fn is_present(&self) -> bool {
        self.length.is_some() || self.error.is_some()
    }

    pub fn result(&self) -> Result<Option<u64>, &'static str> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.length),
        }
    }
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0')))
}

/// `bytes` without leading and trailing whitespace.
pub fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// Up to `n` bytes from the front of `buf` (none if it is empty).
fn take_up_to(buf: &mut BytesMut, n: u64) -> Bytes {
    let take = n.min(buf.len() as u64) as usize;
    buf.split_to(take).freeze()
}

/// One CRLF-terminated line (CRLF included) from the front of `buf`.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, DecodeError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) if i + 1 > max => Err(DecodeError::Chunked("line too long")),
        Some(i) if i == 0 || buf[i - 1] != b'\r' => Err(DecodeError::Chunked("bare LF")),
        Some(i) => Ok(Some(buf.split_to(i + 1))),
        None if buf.len() >= max => Err(DecodeError::Chunked("line too long")),
        None => Ok(None),
    }
}

/// `1*HEXDIG [ chunk-ext ] CRLF`; extensions are ignored.
fn parse_chunk_size(line: &[u8]) -> Result<u64, DecodeError> {
    let line = &line[..line.len() - 2];
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(DecodeError::Chunked("bad chunk size"));
    }
    match line[digits..].first() {
        None | Some(b';') | Some(b' ') | Some(b'\t') => {}
        Some(_) => return Err(DecodeError::Chunked("bad chunk size")),
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| DecodeError::Chunked("bad chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| DecodeError::Chunked("bad chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split at every position and collects the body.
    fn decode_all(framing: Framing, input: &[u8]) -> Result<(Vec<u8>, Vec<u8>), DecodeError> {
        let mut result = None;
        for split in 0..=input.len() {
            let mut decoder = Decoder::new(framing);
            let mut buf = BytesMut::new();
            let mut body = Vec::new();
            let outcome = (|| {
                for part in [&input[..split], &input[split..]] {
                    buf.extend_from_slice(part);
                    while let Some(data) = decoder.decode(&mut buf)? {
                        body.extend_from_slice(&data);
                    }
                }
                if !decoder.is_done() {
                    decoder.eof()?;
                }
                Ok((body.clone(), buf.to_vec()))
            })();
            match &result {
                None => result = Some(outcome),
                Some(first) => assert_eq!(first, &outcome, "split at {split}"),
            }
        }
        result.unwrap()
    }

    #[test]
    fn length_leaves_what_follows() {
        let (body, rest) = decode_all(Framing::Length(5), b"helloHTTP").unwrap();
        assert_eq!((&body[..], &rest[..]), (&b"hello"[..], &b"HTTP"[..]));
        assert_eq!(decode_all(Framing::Length(5), b"hel"), Err(DecodeError::Truncated));
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let input = b"5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let (body, rest) = decode_all(Framing::Chunked, input).unwrap();
        assert_eq!((&body[..], &rest[..]), (&b"hello world"[..], &b"NEXT"[..]));
        let (body, _) = decode_all(Framing::Chunked, b"A\r\n0123456789\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"0123456789");
    }

    #[test]
    fn chunked_errors() {
        for bad in [
            &b"5\r\nhelloXX0\r\n\r\n"[..],
            b"zz\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"-1\r\n",
            b"5\r\nhel",
        ] {
            assert!(decode_all(Framing::Chunked, bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = format!("1;{}\r\n", "x".repeat(MAX_CHUNK_LINE));
        assert!(decode_all(Framing::Chunked, long.as_bytes()).is_err());
    }

    #[test]
    fn until_close_takes_everything() {
        let (body, _) = decode_all(Framing::UntilClose, b"all of it").unwrap();
        assert_eq!(body, b"all of it");
    }
}

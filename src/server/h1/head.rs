//! Request heads on plain HTTP/1.1 connections (RFC 9112): parsed in place
//! from the connection's read buffer by httparse, with header values and
//! the request target sharing the buffer's bytes (no copy per header).
//!
//! Strict where a lenient parse would let a request be read two ways
//! (smuggling): `Transfer-Encoding` with `Content-Length`, a transfer coding
//! other than a final `chunked`, conflicting lengths, and a missing or
//! repeated `Host` are refused.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Uri, Version, request};

use crate::http::decode::{DeclaredLength, Framing, trim};
use crate::http::field;

/// Header slots on the stack; a larger `max_headers` uses the heap.
const STACK_HEADERS: usize = 128;

/// Where each header of a head being parsed sits: name, value start and end
/// (kept by the connection: no allocation per request).
pub type Spans = Vec<(HeaderName, usize, usize)>;

/// The limits a head is held to.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Request line and headers, in bytes (431).
    pub max_size: usize,
    /// Header lines (431).
    pub max_headers: usize,
}

/// A parsed request head and what it says about its connection.
#[derive(Debug)]
pub struct Head {
    pub parts: request::Parts,
    /// How the body is delimited: `Empty`, `Length` or `Chunked`.
    pub framing: Framing,
    /// The client allows another request on this connection.
    pub keep_alive: bool,
    /// `Expect: 100-continue` with a body to come.
    pub expect_continue: bool,
}

// Returned by value once per request: boxing the head would be an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed {
    Complete(Head),
    /// Incomplete: read more.
    Partial,
    /// `Upgrade` or `CONNECT`: served by hyper, which owns the upgrade
    /// machinery. Nothing was taken from the buffer.
    HandOff,
}

/// Why a head is refused; each answers with its status, then the connection closes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("the request is malformed: {0}")]
    Malformed(&'static str),
    #[error("the request head is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request has too many header fields")]
    TooManyHeaders,
    #[error("the request line is too long")]
    UriTooLong,
    #[error("the request uses a transfer coding the gateway does not support")]
    UnsupportedCoding,
}

impl HeadError {
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            HeadError::Malformed(_) => StatusCode::BAD_REQUEST,
            HeadError::TooLarge(_) | HeadError::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::UriTooLong => StatusCode::URI_TOO_LONG,
            HeadError::UnsupportedCoding => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

/// Parses one request head from the front of `buf`; on `Complete` the head
/// is removed from `buf` and what follows (body, next request) stays.
pub fn parse(buf: &mut BytesMut, limits: HeadLimits, spans: &mut Spans) -> Result<Parsed, HeadError> {
    let scanned = if limits.max_headers <= STACK_HEADERS {
        // Uninitialised: initialising the slots would cost a memset of 4 KiB per request.
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
        scan(buf, limits, spans, &mut slots[..limits.max_headers])?
    } else {
        let mut slots = Vec::with_capacity(limits.max_headers);
        slots.resize_with(limits.max_headers, MaybeUninit::uninit);
        scan(buf, limits, spans, &mut slots)?
    };
    match scanned {
        Scan::Partial => Ok(Parsed::Partial),
        Scan::HandOff => Ok(Parsed::HandOff),
        Scan::Complete(line) => build(buf, line, spans).map(Parsed::Complete),
    }
}

enum Scan {
    Partial,
    HandOff,
    Complete(Line),
}

/// What the scan learnt; the header spans are in `spans`.
struct Line {
    len: usize,
    method: Method,
    version: Version,
    target: (usize, usize),
    facts: Facts,
}

/// Runs httparse and notes where everything is, without taking from `buf`.
fn scan<'b>(
    buf: &'b [u8],
    limits: HeadLimits,
    spans: &mut Spans,
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Scan, HeadError> {
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_size => {
            // A request line that never ends is a too-long target.
            return Err(if buf.contains(&b'\n') {
                HeadError::TooLarge(limits.max_size)
            } else {
                HeadError::UriTooLong
            });
        }
        Ok(httparse::Status::Partial) => return Ok(Scan::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(HeadError::Malformed("not an HTTP/1.x request")),
        Err(_) => return Err(HeadError::Malformed("bad request head")),
    };
    if len > limits.max_size {
        return Err(HeadError::TooLarge(limits.max_size));
    }
    let method = req.method.unwrap_or_default();
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| HeadError::Malformed("bad method"))?;
    if method == Method::CONNECT {
        return Ok(Scan::HandOff);
    }
    let version = if req.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let base = buf.as_ptr() as usize;
    let target = req.path.unwrap_or_default();
    let target_start = target.as_ptr() as usize - base;

    spans.clear();
    let mut facts = Facts::default();
    for h in req.headers.iter() {
        let name =
            crate::http::names::from_wire(h.name.as_bytes()).map_err(|_| HeadError::Malformed("bad header name"))?;
        if name == header::UPGRADE {
            return Ok(Scan::HandOff);
        }
        facts.note(&name, h.value);
        let start = h.value.as_ptr() as usize - base;
        spans.push((name, start, start + h.value.len()));
    }
    Ok(Scan::Complete(Line { len, method, version, target: (target_start, target_start + target.len()), facts }))
}

/// Takes the head off `buf` and builds the request parts from it.
fn build(buf: &mut BytesMut, line: Line, spans: &mut Spans) -> Result<Head, HeadError> {
    let Line { len, method, version, target, facts } = line;
    let head: Bytes = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.1))
        .map_err(|_| HeadError::Malformed("bad request target"))?;
    // Room for what forwarding adds (X-Forwarded-*, X-Request-Id…).
    let mut headers = crate::http::recycle::header_map(spans.len() + 6);
    for (name, start, end) in spans.drain(..) {
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| HeadError::Malformed("bad header value"))?;
        headers.append(name, value);
    }

    if version == Version::HTTP_11 && facts.hosts != 1 && uri.authority().is_none() {
        // RFC 9112 §3.2: exactly one Host (an absolute-form target carries its own).
        return Err(HeadError::Malformed("an HTTP/1.1 request needs exactly one Host header"));
    }
    if facts.hosts > 1 {
        return Err(HeadError::Malformed("more than one Host header"));
    }
    let framing = framing(&facts, version)?;
    let keep_alive = match version {
        Version::HTTP_10 => facts.keep_alive && !facts.close,
        _ => !facts.close,
    };
    let expect_continue = facts.expect_continue && framing != Framing::Empty;

    let mut parts = request::Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Head { parts, framing, keep_alive, expect_continue })
}

/// What the headers say about framing and the connection, noted in the one
/// pass that builds the map.
#[derive(Default)]
struct Facts {
    hosts: usize,
    /// `Transfer-Encoding` was present.
    transfer_encoding: bool,
    /// Codings listed: how many `chunked`, whether the last one is, and
    /// whether any other (gzip…) appears.
    chunked: usize,
    last_chunked: bool,
    other_coding: bool,
    length: DeclaredLength,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

impl Facts {
    fn note(&mut self, name: &HeaderName, value: &[u8]) {
        if name == header::HOST {
            self.hosts += 1;
        } else if name == header::CONTENT_LENGTH {
            self.length.note(value);
        } else if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            for coding in field::list(value).filter(|c| !c.is_empty()) {
                self.last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                if self.last_chunked {
                    self.chunked += 1;
                } else {
                    self.other_coding = true;
                }
            }
        } else if name == header::CONNECTION {
            for token in field::list(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                }
            }
        } else if name == header::EXPECT {
            self.expect_continue = trim(value).eq_ignore_ascii_case(b"100-continue");
        }
    }
}

/// RFC 9112 §6.3, for requests: chunked, a length, or no body.
fn framing(facts: &Facts, version: Version) -> Result<Framing, HeadError> {
    if facts.transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(HeadError::Malformed("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if facts.length.is_present() {
            return Err(HeadError::Malformed("both Transfer-Encoding and Content-Length"));
        }
        // Chunked exactly once and last, or the length cannot be known (400);
        // another coding beside it we cannot decode for the upstream (501).
        if facts.chunked != 1 || !facts.last_chunked {
            return Err(HeadError::Malformed("chunked must be the final transfer coding, once"));
        }
        if facts.other_coding {
            return Err(HeadError::UnsupportedCoding);
        }
        return Ok(Framing::Chunked);
    }
    Ok(match facts.length.result().map_err(HeadError::Malformed)? {
        None | Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits { max_size: 8192, max_headers: 100 };

    fn parse_str(raw: &str) -> Result<Parsed, HeadError> {
        let mut buf = BytesMut::from(raw);
        parse(&mut buf, LIMITS, &mut Vec::new())
    }

    fn head(raw: &str) -> Head {
        match parse_str(raw) {
            Ok(Parsed::Complete(h)) => h,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn a_simple_get_leaves_the_next_request() {
        let mut buf = BytesMut::from("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\n\r\nGET /next");
        let Parsed::Complete(h) = parse(&mut buf, LIMITS, &mut Vec::new()).unwrap() else { panic!() };
        assert_eq!(h.parts.method, Method::GET);
        assert_eq!(h.parts.uri, "/a?b=1");
        assert_eq!(h.parts.headers.get_all("x-a").iter().count(), 2);
        assert_eq!((h.framing, h.keep_alive, h.expect_continue), (Framing::Empty, true, false));
        assert_eq!(&buf[..], b"GET /next");
    }

    #[test]
    fn partial_heads_ask_for_more_until_too_large() {
        assert!(matches!(parse_str("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(Parsed::Partial)));
        let long_line = format!("GET /{}", "a".repeat(9000));
        assert_eq!(parse_str(&long_line).unwrap_err(), HeadError::UriTooLong);
        let long_head = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(9000));
        assert_eq!(parse_str(&long_head).unwrap_err(), HeadError::TooLarge(8192));
    }

    #[test]
    fn too_many_headers() {
        let many: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        assert_eq!(parse_str(&raw).unwrap_err(), HeadError::TooManyHeaders);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!head("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-y\r\n\r\n").keep_alive);
    }

    #[test]
    fn body_framing() {
        let h = head("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!((h.framing, h.expect_continue), (Framing::Length(5), true));
        let h = head("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!((h.framing, h.expect_continue), (Framing::Empty, false));
        let h = head("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
    }

    #[test]
    fn smuggling_signs_are_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            "GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            let err = parse_str(raw).unwrap_err();
            assert_eq!(err.status(), 400, "{raw:?}: {err}");
        }
        let err = parse_str("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap_err();
        assert_eq!(err, HeadError::UnsupportedCoding);
    }

    #[test]
    fn upgrades_and_connect_are_handed_off_untouched() {
        let raw = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        let mut buf = BytesMut::from(raw);
        assert!(matches!(parse(&mut buf, LIMITS, &mut Vec::new()), Ok(Parsed::HandOff)));
        assert_eq!(&buf[..], raw.as_bytes());
        assert!(matches!(parse_str("CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"), Ok(Parsed::HandOff)));
    }

    #[test]
    fn absolute_form_needs_no_host() {
        let h = head("GET http://x.example/a HTTP/1.1\r\n\r\n");
        assert_eq!(h.parts.uri.authority().map(|a| a.as_str()), Some("x.example"));
    }
}

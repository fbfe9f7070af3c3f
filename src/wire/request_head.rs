//! Request heads on plain HTTP/1.1 connections (RFC 9112): parsed in place
//! from the connection's read buffer by httparse, with header values and
//! the request target sharing the buffer's bytes (no copy per header).
//!
//! httparse checks the grammar (tokens, no CR, NUL or other control bytes in
//! a field, no whitespace before a colon, no obs-fold); on top of it a line
//! must end in CRLF (httparse also takes a bare LF, which another parser in
//! front of the gateway may read differently), the target may carry no
//! fragment, and the head must pass the admission rules every protocol
//! shares (`wire::admit`: framing, Host, CONNECT).

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Uri, Version, request};

use super::admit::{self, Facts, Refusal};
use super::decode::Framing;
use super::field;

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

/// Parses one request head from the front of `buf`; on `Some` the head is
/// removed from `buf` and what follows (body, next request) stays. `None`:
/// incomplete, read more.
/// A head refused: why, and its method and target when the request line
/// was read (the access log names them; a refusal of a head that failed
/// to read at all logs method `-`). Boxed: a rare path.
#[derive(Debug)]
pub struct Refused {
    pub why: Refusal,
    /// The head as read (request line and fields), when it was.
    pub request: Option<Box<request::Request<()>>>,
}

impl From<Refusal> for Refused {
    fn from(why: Refusal) -> Refused {
        Refused { why, request: None }
    }
}

pub fn parse(buf: &mut BytesMut, limits: HeadLimits, spans: &mut Spans) -> Result<Option<Head>, Refused> {
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
        None => Ok(None),
        Some(line) => build(buf, line, spans).map(Some),
    }
}

/// Why a head over the limit is refused, decided on its first `max_size`
/// bytes only (all here once the buffer is past the limit), so that the
/// same request gets the same status however its bytes arrived (whole, or
/// in TLS records): a request line longer than the limit is a too-long
/// target (414), else the fields are too large (431).
fn too_large(buf: &[u8], limits: HeadLimits) -> Refusal {
    match buf.iter().take(limits.max_size).position(|&b| b == b'\n') {
        None => Refusal::UriTooLong,
        Some(_) => Refusal::TooLarge(limits.max_size),
    }
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
) -> Result<Option<Line>, Refusal> {
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_size => return Err(too_large(buf, limits)),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(version_refusal(buf)),
        Err(_) => return Err(Refusal::Malformed("bad request head")),
    };
    if len > limits.max_size {
        return Err(too_large(buf, limits));
    }
    if field::has_bare_lf(&buf[..len]) {
        return Err(Refusal::Malformed("a line of the request head does not end in CRLF"));
    }
    let method = req.method.unwrap_or_default();
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| Refusal::Malformed("bad method"))?;
    let version = if req.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let base = buf.as_ptr() as usize;
    let target = req.path.unwrap_or_default();
    if target.as_bytes().contains(&b'#') {
        // RFC 9112 §3.2: a request-target has no fragment; the URI parser
        // would drop it silently.
        return Err(Refusal::Malformed("bad request target"));
    }
    let target_start = target.as_ptr() as usize - base;

    spans.clear();
    let mut facts = Facts::default();
    for h in req.headers.iter() {
        if admit::dropped_name(h.name.as_bytes()) {
            continue;
        }
        let name = super::names::from_wire(h.name.as_bytes()).map_err(|_| Refusal::Malformed("bad header name"))?;
        facts.note(&name, h.value);
        let start = h.value.as_ptr() as usize - base;
        spans.push((name, start, start + h.value.len()));
    }
    Ok(Some(Line { len, method, version, target: (target_start, target_start + target.len()), facts }))
}

/// Why a request line's version was refused: `HTTP/x.y` with another
/// major version is one the gateway does not speak (505, RFC 9110
/// §15.6.6); anything else is no HTTP version at all (400).
fn version_refusal(buf: &[u8]) -> Refusal {
    let line = buf.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() && *major != b'1' =>
        {
            Refusal::VersionNotSupported
        }
        // The version is fine: the line around it is not (two spaces).
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'0' | b'1'] => {
            Refusal::Malformed("a request line that is not `METHOD target HTTP/1.1` with single spaces")
        }
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            Refusal::Malformed("an HTTP/1 minor version above 1 (HTTP/1.0 and HTTP/1.1 are read)")
        }
        _ => Refusal::Malformed("not an HTTP/1.x request"),
    }
}

/// Takes the head off `buf` and builds the request parts from it.
fn build(buf: &mut BytesMut, line: Line, spans: &mut Spans) -> Result<Head, Refused> {
    let Line { len, method, version, target, facts } = line;
    let head: Bytes = buf.split_to(len).freeze();
    let uri =
        Uri::from_maybe_shared(head.slice(target.0..target.1)).map_err(|_| Refusal::Malformed("bad request target"))?;
    // Room for what forwarding adds (X-Forwarded-*, X-Request-Id…).
    let mut headers = super::recycle::header_map(spans.len() + 6);
    for (name, start, end) in spans.drain(..) {
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| Refusal::Malformed("bad header value"))?;
        headers.append(name, value);
    }
    // The Host value is looked up only for an absolute-form target (rare).
    let host = || headers.get(header::HOST).map(|v| v.as_bytes().to_vec());
    let admitted = admit::http1(&method, version, &uri, &facts, host);
    let mut parts = request::Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    let admitted = match admitted {
        Ok(admitted) => admitted,
        Err(why) => return Err(Refused { why, request: Some(Box::new(request::Request::from_parts(parts, ()))) }),
    };
    Ok(Head {
        parts,
        framing: admitted.framing,
        keep_alive: admitted.keep_alive,
        expect_continue: admitted.expect_continue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits { max_size: 8192, max_headers: 100 };

    fn parse_str(raw: &str) -> Result<Option<Head>, Refusal> {
        let mut buf = BytesMut::from(raw);
        parse(&mut buf, LIMITS, &mut Vec::new()).map_err(|e| e.why)
    }

    fn head(raw: &str) -> Head {
        match parse_str(raw) {
            Ok(Some(h)) => h,
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    #[test]
    fn a_simple_get_leaves_the_next_request() {
        let mut buf = BytesMut::from("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\n\r\nGET /next");
        let h = parse(&mut buf, LIMITS, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(h.parts.method, Method::GET);
        assert_eq!(h.parts.uri, "/a?b=1");
        assert_eq!(h.parts.headers.get_all("x-a").iter().count(), 2);
        assert_eq!((h.framing, h.keep_alive, h.expect_continue), (Framing::Empty, true, false));
        assert_eq!(&buf[..], b"GET /next");
    }

    #[test]
    fn partial_heads_ask_for_more_until_too_large() {
        assert!(matches!(parse_str("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None)));
        let long_line = format!("GET /{}", "a".repeat(9000));
        assert_eq!(parse_str(&long_line).unwrap_err(), Refusal::UriTooLong);
        let long_head = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(9000));
        assert_eq!(parse_str(&long_head).unwrap_err(), Refusal::TooLarge(8192));
    }

    /// The same over-long request line is a 414 whether the whole head
    /// arrived at once or only the line's start (TLS records cut it so).
    #[test]
    fn a_long_request_line_is_414_however_it_arrives() {
        let whole = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
        assert_eq!(parse_str(&whole).unwrap_err(), Refusal::UriTooLong);
        assert_eq!(parse_str(&whole[..8500]).unwrap_err(), Refusal::UriTooLong);
        let line_then_fields = format!("GET /{} HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(4000), "b".repeat(5000));
        assert_eq!(parse_str(&line_then_fields).unwrap_err(), Refusal::TooLarge(8192));
    }

    #[test]
    fn too_many_headers() {
        let many: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        assert_eq!(parse_str(&raw).unwrap_err(), Refusal::TooManyHeaders);
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
        let h = head("POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!((h.framing, h.expect_continue), (Framing::Length(5), false), "HTTP/1.0 has no 1xx");
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
            "GET / HTTP/1.x\r\nHost: x\r\n\r\n",
            "GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\nX-Smuggled: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n\n",
            "GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x@internal\r\n\r\n",
            "GET http://internal/ HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            let err = parse_str(raw).unwrap_err();
            assert_eq!(err.status(), 400, "{raw:?}: {err}");
        }
        let err = parse_str("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap_err();
        assert_eq!(err, Refusal::UnsupportedCoding);
        for raw in ["GET / HTTP/2.0\r\nHost: x\r\n\r\n", "GET / HTTP/3.0\r\nHost: x\r\n\r\n"] {
            assert_eq!(parse_str(raw).unwrap_err().status(), 505, "{raw:?}");
        }
        // Each refusal says what is wrong with the line.
        let detail = |raw: &str| parse_str(raw).unwrap_err().to_string();
        assert!(detail("GET /a  HTTP/1.1\r\nHost: x\r\n\r\n").contains("single spaces"));
        assert!(detail("GET /a HTTP/1.2\r\nHost: x\r\n\r\n").contains("minor version above 1"));
        assert!(detail("GET /a HTTP/1.1\r\nHost: ::1\r\n\r\n").contains("IPv6 address is written in brackets"));
    }

    #[test]
    fn upgrades_are_read_like_any_request_and_connect_is_refused() {
        let h = head("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(h.parts.headers["upgrade"], "websocket");
        let err = parse_str("CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n").unwrap_err();
        assert_eq!(err.status(), 501);
    }

    #[test]
    fn absolute_form_must_agree_with_host() {
        let h = head("GET http://x.example/a HTTP/1.1\r\nHost: X.example.\r\n\r\n");
        assert_eq!(h.parts.uri.authority().map(|a| a.as_str()), Some("x.example"));
        assert!(parse_str("GET http://x.example/a HTTP/1.1\r\n\r\n").is_err());
    }

    /// Well-formed heads the fuzzer starts from (and mutates).
    fn seeds() -> Vec<Vec<u8>> {
        [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"POST /a?b=1 HTTP/1.1\r\nHost: x.example:8080\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"GET http://x/a HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\n\r\n",
            b"PUT /a HTTP/1.0\r\nContent-Length: 5, 5\r\nExpect: 100-continue\r\n\r\nhello",
            b"GET /ws HTTP/1.1\r\nHost: [::1]:80\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        ]
        .iter()
        .map(|s| s.to_vec())
        .collect()
    }

    fn heads() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            prop::collection::vec(crate::fuzz::wire_byte(), 0..300),
            prop::sample::select(seeds()).prop_flat_map(|s| crate::fuzz::mutated(s, 6)),
        ]
    }

    /// The framing line a forwarded head must carry for `framing`.
    fn upstream_framing(framing: Framing) -> crate::wire::edits::RequestFraming {
        use crate::wire::edits::RequestFraming;
        match framing {
            Framing::Length(n) => RequestFraming::Length(n),
            Framing::Chunked | Framing::UntilClose => RequestFraming::Chunked,
            Framing::Empty => RequestFraming::Empty,
        }
    }

    #[test]
    fn fuzz_request_heads() {
        crate::fuzz::run("request heads", heads(), |bytes| {
            let mut buf = BytesMut::from(&bytes[..]);
            let Ok(Some(head)) = parse(&mut buf, LIMITS, &mut Vec::new()) else { return Ok(()) };
            // What the parser took is a head, and what it left is the rest.
            assert!(bytes.ends_with(&buf[..]));
            // Differential: the head as the gateway forwards it is read back
            // the same: method, target, Host, framing; one framing line; CRLF only.
            let framing = upstream_framing(head.framing);
            let mut out = Vec::new();
            let edits = crate::wire::edits::HeaderEdits::default();
            crate::wire::upstream_head::encode_head(&head.parts, &edits, "upstream:80", framing, &mut out);
            assert!(!crate::wire::field::has_bare_lf(&out), "{out:?}");
            let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
            let framing_lines =
                text.matches("\r\ncontent-length:").count() + text.matches("\r\ntransfer-encoding:").count();
            assert!(framing_lines <= 1, "{text}");
            let again = match parse(&mut BytesMut::from(&out[..]), LIMITS, &mut Vec::new()) {
                Ok(Some(again)) => again,
                other => panic!("the forwarded head is not read back: {other:?}\n{text}"),
            };
            assert_eq!(again.parts.method, head.parts.method);
            let target = head.parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            let target = if target.starts_with('/') { target.to_string() } else { format!("/{target}") };
            assert_eq!(again.parts.uri, target.as_str());
            let host = head.parts.headers.get(header::HOST).map_or(&b"upstream:80"[..], |h| h.as_bytes());
            assert_eq!(again.parts.headers.get(header::HOST).map(|h| h.as_bytes()), Some(host));
            assert_eq!(again.framing, head.framing);
            Ok(())
        });
    }
}

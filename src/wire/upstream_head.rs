//! HTTP/1.1 wire format for the upstream side: the request head we write
//! and the response head we parse (RFC 9112), with the framing rules that
//! decide how long the response body is and whether the connection can be
//! reused.
//!
//! The request is framed by the gateway alone: its `content-length` or
//! `transfer-encoding` line is written here from `RequestFraming`, and no
//! client framing line is copied. The response is read strictly: anything
//! that two readers could frame differently (a bare LF, two or conflicting
//! lengths, a length beside `Transfer-Encoding`, a coding other than
//! `chunked`, a `101` nobody asked for, bytes after a bodiless response)
//! is a malformed response: the client gets 502 and the connection is
//! closed, never pooled.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::{Method, StatusCode, Version, request};

pub use super::edits::RequestFraming;

use super::decode::DeclaredLength;
use super::edits::HeaderEdits;
use super::field;
use super::hop_by_hop;
use super::raw_headers::RawHeaders;

/// Response heads larger than this are refused (NGINX's default
/// `proxy_buffer_size` is one page; 64 KiB leaves room for big cookies).
pub const MAX_HEAD: usize = 64 * 1024;
/// More response header lines than this are refused.
const MAX_HEADERS: usize = 128;
/// Interim (1xx) responses skipped before a final one, at most.
const MAX_INTERIM: usize = 8;

/// Writes the request line and headers: the client's lines that `edits`
/// lets through, then the lines it sets, then the framing line. `parts.uri`
/// is absolute; only its path and query go on the request line (origin-form).
pub fn encode_head(
    parts: &request::Parts,
    edits: &HeaderEdits<'_>,
    authority: &str,
    framing: RequestFraming,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if !target.starts_with('/') {
        // `http://x?a` has an empty path: origin-form needs its `/`.
        out.push(b'/');
    }
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // Host first (RFC 9112 §3.2 asks user agents to; proxies do the same).
    let mut has_host = false;
    if let Some(host) = edits.host() {
        field::write(out, header::HOST.as_str().as_bytes(), host.as_bytes());
        has_host = true;
    }
    for (name, value) in &parts.headers {
        if !edits.forwards(name, value) {
            continue;
        }
        has_host |= name == header::HOST;
        field::write(out, name.as_str().as_bytes(), value.as_bytes());
    }
    for (name, value) in edits.lines() {
        field::write(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !has_host {
        // RFC 9112 §3.2: every HTTP/1.1 request carries Host.
        field::write(out, b"host", authority.as_bytes());
    }
    match framing {
        RequestFraming::Empty => {}
        RequestFraming::Length(n) => field::write(out, b"content-length", field::decimal(n, &mut [0; 20])),
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if framing.body_may_be_misread(&parts.method) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// (name, line start, value start, value end) of each line kept.
pub type Spans = Vec<(HeaderName, usize, usize, usize)>;

pub use super::decode::Framing as ResponseFraming;

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    /// The end-to-end header lines, as received (no map is built: see
    /// `wire::raw_headers`).
    pub headers: RawHeaders,
    pub framing: ResponseFraming,
    /// The connection can carry another request after this response.
    pub keep_alive: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("the upstream sent a malformed response head: {0}")]
    Malformed(&'static str),
    #[error("the upstream's response head is larger than {MAX_HEAD} bytes")]
    TooLarge,
}

/// Parses one response head from the front of `buf`, removing it. `None`:
/// incomplete, read more. Interim (1xx) responses are skipped, as RFC 9110
/// §15.2 asks of a client (the gateway answers `100 Continue` to its own
/// client itself); a `101` is never asked for here and is malformed.
///
/// `spans` is scratch space kept by the connection (no allocation per
/// response); `interim` counts the 1xx responses skipped so far for this
/// request, across calls (they may come one read at a time).
pub fn parse_head(
    buf: &mut BytesMut,
    method: &Method,
    spans: &mut Spans,
    interim: &mut usize,
) -> Result<Option<Head>, HeadError> {
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        // Uninitialised slots: initialising 128 headers would cost a 4 KiB memset per response.
        let mut slots = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(HeadError::TooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::Malformed("too many header lines")),
            Err(httparse::Error::Version | httparse::Error::Status) => {
                return Err(HeadError::Malformed("not an HTTP/1.x status line"));
            }
            Err(_) => return Err(HeadError::Malformed("a malformed header line (a control byte, or a bad name)")),
        };
        if len > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        if field::has_bare_lf(&buf[..len]) {
            return Err(HeadError::Malformed("a line does not end in CRLF"));
        }
        let code = resp.code.unwrap_or(0);
        // RFC 9110 §15: 100 to 599; `http` would take up to 999.
        if !(100..=599).contains(&code) {
            return Err(HeadError::Malformed("a status code outside 100 to 599"));
        }
        let status = StatusCode::from_u16(code).map_err(|_| HeadError::Malformed("bad status code"))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(HeadError::Malformed("101 Switching Protocols without an upgrade request"));
        }
        if status.is_informational() {
            *interim += 1;
            if *interim > MAX_INTERIM {
                return Err(HeadError::Malformed("too many interim responses"));
            }
            let _ = buf.split_to(len);
            continue;
        }
        let version = if resp.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
        // Offsets first: the header slices borrow `buf`, which is split next.
        // Hop-by-hop headers are read here for framing and never enter the
        // map (the response is forwarded without them).
        let base = buf.as_ptr() as usize;
        spans.clear();
        let mut hop = HopByHop::default();
        for h in resp.headers.iter() {
            let name =
                super::names::from_wire(h.name.as_bytes()).map_err(|_| HeadError::Malformed("bad header name"))?;
            if hop_by_hop::is_hop_by_hop(&name) {
                hop.note(&name, h.value);
                continue;
            }
            if super::names::is_gateway_own(&name) {
                continue;
            }
            if name == header::CONTENT_LENGTH {
                // A list (`3, 3`) counts as that many lines: one value, once, or malformed.
                hop.lengths += 1 + h.value.iter().filter(|&&b| b == b',').count();
                hop.length.note(h.value);
            }
            let line = h.name.as_ptr() as usize - base;
            let start = h.value.as_ptr() as usize - base;
            spans.push((name, line, start, start + h.value.len()));
        }
        let (framing, delimited) = framing(&hop, status, method, version)?;
        // The lines share the head's bytes: no copy, no value objects.
        let head: Bytes = buf.split_to(len).freeze();
        let mut headers = RawHeaders::new(head, spans.drain(..));
        for name in &hop.listed {
            headers.remove(name);
        }
        let keep_alive = delimited && version == Version::HTTP_11 && !hop.close;
        return Ok(Some(Head { status, version, headers, framing, keep_alive }));
    }
}

/// What the hop-by-hop headers of a response said.
#[derive(Default)]
struct HopByHop {
    transfer_encoding: bool,
    /// Every `Transfer-Encoding` line together says exactly `chunked`.
    chunked_only: bool,
    /// `Connection: close`.
    close: bool,
    /// Other names listed in `Connection` (hop-by-hop too: removed).
    listed: Vec<HeaderName>,
    /// `Content-Length` (not hop-by-hop, but read in the same pass): lines, and their value.
    lengths: usize,
    length: DeclaredLength,
}

impl HopByHop {
    fn note(&mut self, name: &HeaderName, value: &[u8]) {
        if name == header::TRANSFER_ENCODING {
            // A second line, or any coding but one `chunked`, cannot be
            // passed on faithfully (the client would get coded bytes it was
            // not told about): malformed, whatever it is.
            self.chunked_only = !self.transfer_encoding && field::chunked_alone(value);
            self.transfer_encoding = true;
        } else if name == header::CONNECTION {
            for token in field::list(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive")
                    && let Ok(listed) = HeaderName::from_bytes(token)
                    && !hop_by_hop::is_protected(&listed)
                {
                    self.listed.push(listed);
                }
            }
        }
    }
}

/// The body's framing (RFC 9112 §6.3), and whether it ends without closing
/// the connection.
fn framing(
    hop: &HopByHop,
    status: StatusCode,
    method: &Method,
    version: Version,
) -> Result<(ResponseFraming, bool), HeadError> {
    if hop.lengths > 1 {
        return Err(HeadError::Malformed("more than one Content-Length"));
    }
    let length = hop.length.result().map_err(HeadError::Malformed)?;
    if hop.transfer_encoding {
        if hop.lengths > 0 {
            return Err(HeadError::Malformed("both Transfer-Encoding and Content-Length"));
        }
        if version == Version::HTTP_10 {
            return Err(HeadError::Malformed("Transfer-Encoding in an HTTP/1.0 response"));
        }
        if !hop.chunked_only {
            return Err(HeadError::Malformed(
                "a Transfer-Encoding other than `chunked` alone (another coding, an empty element after it, or \
                 a second line)",
            ));
        }
    }
    if method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((ResponseFraming::Empty, true));
    }
    if hop.transfer_encoding {
        return Ok((ResponseFraming::Chunked, true));
    }
    Ok(match length {
        Some(0) => (ResponseFraming::Empty, true),
        Some(n) => (ResponseFraming::Length(n), true),
        None => (ResponseFraming::UntilClose, false),
    })
}

/// The length and coding rules of `parse_head`, for a response head
/// another reader (hyper's client, for `https://` targets and health
/// probes) has parsed leniently: why it is ambiguous, if it is. Two
/// lengths or a list, a length beside `Transfer-Encoding` (hyper decodes
/// the chunks and the length went on, short), a coding besides `chunked`
/// alone (decoded chunks still gzip, without a `Content-Encoding`).
pub fn lenient_framing_fault(headers: &http::HeaderMap) -> Option<&'static str> {
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    let single_length = headers
        .get(header::CONTENT_LENGTH)
        .is_none_or(|v| !v.is_empty() && v.as_bytes().iter().all(u8::is_ascii_digit));
    if lengths > 1 || !single_length {
        return Some("the upstream's response gives its length twice or as a list");
    }
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    match codings.next() {
        None => None,
        Some(_) if lengths > 0 => Some("the upstream's response has both Content-Length and Transfer-Encoding"),
        Some(c) if field::chunked_alone(c.as_bytes()) && codings.next().is_none() => None,
        Some(_) => Some("the upstream's response has a transfer coding other than chunked alone"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: Method) -> Result<Option<Head>, HeadError> {
        let mut buf = BytesMut::from(raw);
        parse_head(&mut buf, &method, &mut Vec::new(), &mut 0)
    }

    #[test]
    fn content_length_and_keep_alive() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nokNEXT");
        let head = parse_head(&mut buf, &Method::GET, &mut Vec::new(), &mut 0).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.framing, ResponseFraming::Length(2));
        assert!(head.keep_alive);
        let lines: Vec<&[u8]> = head.headers.lines().map(|(_, l)| l).collect();
        assert_eq!(lines, [&b"Content-Length: 2"[..], b"X-A: b"]);
        assert_eq!(&buf[..], b"okNEXT");
    }

    #[test]
    fn hop_by_hop_headers_stay_out_of_the_map() {
        let raw = "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\
                   Transfer-Encoding: chunked\r\nX-Kept: 2\r\n\r\n";
        let head = parse(raw, Method::GET).unwrap().unwrap();
        let names: Vec<&str> = head.headers.lines().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
        assert_eq!((head.framing, head.keep_alive), (ResponseFraming::Chunked, true));
    }

    #[test]
    fn partial_head_asks_for_more() {
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Le", Method::GET).unwrap().is_none());
    }

    #[test]
    fn informational_responses_are_skipped() {
        let head =
            parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n", Method::POST);
        let head = head.unwrap().unwrap();
        assert_eq!(head.status, 201);
        assert_eq!(head.framing, ResponseFraming::Empty);
    }

    #[test]
    fn bodiless_responses() {
        for (raw, method) in [
            ("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", Method::HEAD),
            ("HTTP/1.1 204 No Content\r\n\r\n", Method::GET),
            ("HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n", Method::GET),
        ] {
            let head = parse(raw, method).unwrap().unwrap();
            assert_eq!(head.framing, ResponseFraming::Empty, "{raw}");
            assert!(head.keep_alive);
        }
    }

    #[test]
    fn chunked_alone_or_malformed() {
        let head = parse("HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n", Method::GET).unwrap().unwrap();
        assert_eq!((head.framing, head.keep_alive), (ResponseFraming::Chunked, true));
        for raw in [
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 204 No Content\r\ntransfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert!(parse(raw, Method::GET).is_err(), "{raw}");
        }
    }

    #[test]
    fn desync_shapes_are_malformed() {
        for raw in [
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 2\nx-injected: 1\r\n\r\nok",
            "HTTP/1.1 200 OK\ncontent-length: 2\n\nok",
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\nok",
            "HTTP/1.1 200 OK\r\nx: a\rb\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nx: a\0b\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nx : a\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nx: a\r\n b\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.1 100 Continue\nx: 1\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert!(parse(raw, Method::GET).is_err(), "{raw:?}");
        }
        let interims = "HTTP/1.1 103 Early Hints\r\n\r\n".repeat(MAX_INTERIM + 1);
        assert!(parse(&interims, Method::GET).is_err());
        // One read at a time: still counted across the calls.
        let mut count = 0;
        let mut refused = false;
        for _ in 0..=MAX_INTERIM {
            let mut one = BytesMut::from("HTTP/1.1 103 Early Hints\r\n\r\n");
            refused |= parse_head(&mut one, &Method::GET, &mut Vec::new(), &mut count).is_err();
        }
        assert!(refused, "{count} interim responses, one per read");
    }

    #[test]
    fn no_length_reads_until_close() {
        let head = parse("HTTP/1.1 200 OK\r\n\r\n", Method::GET).unwrap().unwrap();
        assert_eq!((head.framing, head.keep_alive), (ResponseFraming::UntilClose, false));
    }

    #[test]
    fn connection_close_and_http10_are_not_reused() {
        let head = parse("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n", Method::GET);
        assert!(!head.unwrap().unwrap().keep_alive);
        let head = parse("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", Method::GET).unwrap().unwrap();
        assert!(!head.keep_alive);
        assert_eq!(head.version, Version::HTTP_10);
    }

    #[test]
    fn bad_lengths_are_refused() {
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 1x\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        ] {
            assert!(parse(raw, Method::GET).is_err(), "{raw}");
        }
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n",
        ] {
            assert!(parse(raw, Method::GET).is_err(), "one length, once: {raw}");
        }
    }

    #[test]
    fn garbage_and_oversized_heads_are_refused() {
        assert!(parse("SSH-2.0-OpenSSH\r\n\r\n", Method::GET).is_err());
        let big = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD + 1));
        assert_eq!(parse(&big, Method::GET).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn request_head_is_origin_form_with_host() {
        let req = http::Request::post("http://10.0.0.1:8080/a/b?x=1").header("x-y", "z").body(()).unwrap();
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        encode_head(&parts, &HeaderEdits::default(), "10.0.0.1:8080", RequestFraming::Chunked, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /a/b?x=1 HTTP/1.1\r\nx-y: z\r\nhost: 10.0.0.1:8080\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn an_absolute_target_without_a_path_goes_out_with_one() {
        let (parts, ()) = http::Request::get("http://x?a=1").body(()).unwrap().into_parts();
        let mut out = Vec::new();
        encode_head(&parts, &HeaderEdits::default(), "x", RequestFraming::Empty, &mut out);
        assert!(out.starts_with(b"GET /?a=1 HTTP/1.1\r\n"), "{}", String::from_utf8_lossy(&out));
    }

    #[test]
    fn the_client_framing_lines_are_never_copied() {
        let req = http::Request::post("http://u/a")
            .header("content-length", "5, 5")
            .header("Content-Length", "5")
            .header("transfer-encoding", "chunked")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        for (framing, expected) in [
            (RequestFraming::Length(5), "content-length: 5\r\n"),
            (RequestFraming::Length(0), "content-length: 0\r\n"),
            (RequestFraming::Chunked, "transfer-encoding: chunked\r\n"),
            (RequestFraming::Empty, ""),
        ] {
            let mut out = Vec::new();
            encode_head(&parts, &HeaderEdits::default(), "u", framing, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text, format!("POST /a HTTP/1.1\r\nhost: u\r\n{expected}\r\n"), "{framing:?}");
        }
    }

    /// The header lines of an encoded head, sorted.
    fn fields_of(head: &[u8]) -> Vec<String> {
        let text = String::from_utf8(head.to_vec()).unwrap();
        let mut lines: Vec<String> = text.lines().skip(1).filter(|l| !l.is_empty()).map(String::from).collect();
        lines.sort();
        lines
    }

    #[test]
    fn edits_written_on_the_way_match_edits_made_to_the_map() {
        use http::HeaderValue;
        let client = [
            ("host", "api.example.com"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=6.6.6.6"),
            ("x-request-id", "client-id"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("expect", "100-continue"),
            ("upgrade", "h2c"),
            ("accept", "*/*"),
            ("accept", "text/plain"),
            ("content-length", "99"),
        ];
        let mut req = http::Request::get("http://10.0.0.1:8080/a");
        for (n, v) in client {
            req = req.header(n, v);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        // Identity-style lines: names the client's request no longer has.
        static ADDED: [HeaderName; 3] = [
            HeaderName::from_static("x-auth-subject"),
            HeaderName::from_static("x-consumer-id"),
            HeaderName::from_static("x-auth-scopes"),
        ];
        static VALUES: [Option<HeaderValue>; 3] =
            [Some(HeaderValue::from_static("alice")), None, Some(HeaderValue::from_static("read write"))];
        let cases: [fn(&mut HeaderEdits<'static>); 4] = [
            |_| {},
            |e| {
                e.set(header::HOST, HeaderValue::from_static("backend"));
                e.set(HeaderName::from_static("x-forwarded-for"), HeaderValue::from_static("1.2.3.4"));
                e.set(HeaderName::from_static("x-request-id"), HeaderValue::from_static("gw-id"));
                e.drop_forwarded();
            },
            |e| {
                e.drop_forwarded_host();
                e.set(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http"));
            },
            |e| {
                e.set(HeaderName::from_static("x-request-id"), HeaderValue::from_static("gw-id"));
                e.add(&ADDED, &VALUES);
            },
        ];
        // The engine removes what `Connection` lists as the request arrives.
        let mut parts = parts;
        hop_by_hop::strip(&mut parts.headers, true);
        for (case, framing) in cases.into_iter().zip([
            RequestFraming::Empty,
            RequestFraming::Length(7),
            RequestFraming::Length(0),
            RequestFraming::Length(3),
        ]) {
            let mut edits = HeaderEdits::default();
            case(&mut edits);
            let mut streamed = Vec::new();
            encode_head(&parts, &edits, "10.0.0.1:8080", framing, &mut streamed);
            let mut map = parts.headers.clone();
            edits.apply(&mut map, framing);
            let mut mapped: Vec<String> = map.iter().map(|(n, v)| format!("{n}: {}", v.to_str().unwrap())).collect();
            // A `GET` with a body goes with `close` (added for hyper by the forwarder).
            if framing.body_may_be_misread(&parts.method) {
                mapped.push("connection: close".into());
            }
            mapped.sort();
            let fields = fields_of(&streamed);
            assert_eq!(fields, mapped);
            assert!(fields.iter().all(|l| !l.starts_with("x-secret-hop") && !l.starts_with("expect")), "{fields:?}");
            assert!(fields.contains(&"te: trailers".to_string()), "{fields:?}");
            if framing == RequestFraming::Length(3) {
                assert!(fields.contains(&"x-auth-scopes: read write".to_string()), "{fields:?}");
                assert!(!fields.iter().any(|l| l.starts_with("x-consumer-id")), "{fields:?}");
            }
        }
    }

    fn response_seeds() -> Vec<Vec<u8>> {
        [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, x-hop\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\nuntil close",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        ]
        .iter()
        .map(|s| s.to_vec())
        .collect()
    }

    /// Any response: no panic. Differential: an accepted head, written out
    /// again as its lines, is read back with the same status and framing.
    #[test]
    fn fuzz_response_heads() {
        use proptest::prelude::*;
        let inputs = prop_oneof![
            prop::collection::vec(crate::fuzz::wire_byte(), 0..300),
            prop::sample::select(response_seeds()).prop_flat_map(|s| crate::fuzz::mutated(s, 6)),
        ];
        let methods = prop::sample::select(vec![Method::GET, Method::HEAD, Method::POST]);
        crate::fuzz::run("response heads", (inputs, methods), |(bytes, method)| {
            let mut buf = BytesMut::from(&bytes[..]);
            let Ok(Some(head)) = parse_head(&mut buf, &method, &mut Vec::new(), &mut 0) else { return Ok(()) };
            prop_assert!(bytes.ends_with(&buf[..]));
            let mut again = format!("HTTP/1.1 {}\r\n", head.status.as_str()).into_bytes();
            for (_, line) in head.headers.lines() {
                again.extend_from_slice(line);
                again.extend_from_slice(b"\r\n");
            }
            match head.framing {
                ResponseFraming::Chunked => again.extend_from_slice(b"transfer-encoding: chunked\r\n"),
                ResponseFraming::UntilClose => again.extend_from_slice(b"connection: close\r\n"),
                _ => {}
            }
            again.extend_from_slice(b"\r\n");
            let reread = parse_head(&mut BytesMut::from(&again[..]), &method, &mut Vec::new(), &mut 0);
            let reread =
                reread.map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&again))))?;
            let reread = reread.ok_or_else(|| TestCaseError::fail("incomplete"))?;
            prop_assert_eq!(reread.status, head.status);
            prop_assert_eq!(reread.framing, head.framing);
            Ok(())
        });
    }
}

//! Response heads on plain HTTP/1.1 connections: the status line, the
//! headers as the engine left them, `Date`, and the framing headers this
//! connection needs (RFC 9112 §6: `Content-Length`, chunked for a body of
//! unknown length, or close-delimited for an HTTP/1.0 client).

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode, Version};
use tokio::time::Instant;

use super::field;
use super::field_edits::{self, Passing, ResponseEdits};
use super::raw_headers::RawHeaders;

/// How the body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body bytes at all (HEAD, 204, 304, 1xx), whatever the headers say.
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client, unknown length).
    Close,
}

/// What the request said that shapes the response's head.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    pub method: &'a Method,
    pub version: Version,
    /// The connection stays open after this response.
    pub keep_alive: bool,
    /// Now, as the connection last read the clock (for `Date`).
    pub now: Instant,
}

/// Picks the body's framing. `exact` is the body's own exact size when it
/// knows it, `declared` the response's valid `Content-Length`.
pub fn body_framing(x: &Exchange<'_>, status: StatusCode, declared: Option<u64>, exact: Option<u64>) -> BodyFraming {
    if *x.method == Method::HEAD || status.is_informational() || status == StatusCode::NO_CONTENT {
        return BodyFraming::None;
    }
    if status == StatusCode::NOT_MODIFIED {
        return BodyFraming::None;
    }
    match exact.or(declared) {
        Some(n) => BodyFraming::Length(n),
        None if x.version == Version::HTTP_11 => BodyFraming::Chunked,
        None => BodyFraming::Close,
    }
}

/// The header fields of a response, as the writer gets them.
#[derive(Debug, Clone, Copy)]
pub enum Fields<'a> {
    Map(&'a HeaderMap),
    /// An upstream's lines as received, and the response phase's edits
    /// still to be made to them (the response's map is empty).
    Raw(&'a RawHeaders, Option<&'a ResponseEdits>),
}

/// Writes the status line and headers. `framing` decides the length
/// headers: a `Content-Length` already there is kept when it matches, and
/// framing headers the engine might have left are dropped.
pub fn encode_head(
    x: &Exchange<'_>,
    status: StatusCode,
    fields: Fields<'_>,
    framing: BodyFraming,
    exact: Option<u64>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut seen = Seen::default();
    match fields {
        Fields::Map(headers) => {
            for (name, value) in headers {
                if seen.skips(name, framing, status) {
                    continue;
                }
                field::write(out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
        Fields::Raw(raw, edits) => write_raw(raw, edits, framing, status, &mut seen, out),
    }
    match framing {
        BodyFraming::Length(n) => {
            field::write(out, b"content-length", field::decimal(n, &mut [0; 20]));
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // A HEAD answer tells the length a GET would get, when it is known.
        BodyFraming::None if *x.method == Method::HEAD && !seen.length => {
            if let Some(n) = exact.filter(|&n| n > 0) {
                field::write(out, b"content-length", field::decimal(n, &mut [0; 20]));
            }
        }
        BodyFraming::None | BodyFraming::Close => {}
    }
    if !seen.date {
        out.extend_from_slice(b"date: ");
        with_date(x.now, |d| out.extend_from_slice(d));
        out.extend_from_slice(b"\r\n");
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // Only the engine's WebSocket handshake answers get here (with their `Upgrade`).
        out.extend_from_slice(b"connection: upgrade\r\n");
    } else if !x.keep_alive || framing == BodyFraming::Close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if x.version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// What the fields written so far held, for the lines added after them.
#[derive(Default)]
struct Seen {
    date: bool,
    /// A `Content-Length` was kept (HEAD, 304).
    length: bool,
}

impl Seen {
    /// Whether the writer leaves out a field named `name`: framing and
    /// connection fields are its own to write (a 204 carries no length;
    /// HEAD and 304 keep the one they have).
    fn skips(&mut self, name: &HeaderName, framing: BodyFraming, status: StatusCode) -> bool {
        if name == header::CONTENT_LENGTH {
            let own = matches!(framing, BodyFraming::Length(_) | BodyFraming::Chunked | BodyFraming::Close)
                || status == StatusCode::NO_CONTENT
                || status.is_informational();
            self.length |= !own;
            return own;
        }
        if name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            return true;
        }
        if name == header::DATE {
            self.date = true;
        }
        false
    }
}

/// Raw lines as received, with the edits `ResponseEdits::apply` would make
/// to a map: removed and replaced names left out, defaults added where the
/// upstream had none, then the names that are always set.
fn write_raw(
    raw: &RawHeaders,
    edits: Option<&ResponseEdits>,
    framing: BodyFraming,
    status: StatusCode,
    seen: &mut Seen,
    out: &mut Vec<u8>,
) {
    // Which defaults the upstream set itself (at most a handful exist).
    let mut present = 0u64;
    for (name, line) in raw.lines() {
        if seen.skips(name, framing, status) {
            continue;
        }
        match edits.map_or(Passing::Kept, |e| e.passing(name)) {
            Passing::Dropped => continue,
            // An empty value protects nothing (`FieldEdits::apply`).
            Passing::KeptForDefault(_) if field_edits::empty_value(line) => continue,
            Passing::KeptForDefault(i) => present |= 1 << (i % 64),
            Passing::Kept => {}
        }
        out.reserve(line.len() + 2);
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    let Some(e) = edits else { return };
    if let Some(limits) = &e.limits {
        for (name, which) in limits.fields() {
            if seen.skips(name, framing, status) {
                continue;
            }
            match e.passing_limit(which) {
                Passing::Dropped => continue,
                Passing::KeptForDefault(i) => present |= 1 << (i % 64),
                Passing::Kept => {}
            }
            limits.write_line(name, which, out);
        }
    }
    if present == 0 {
        // The usual case: the upstream sent none of them; one copy.
        out.extend_from_slice(e.fields.default_lines());
    } else {
        let defaults = e.fields.defaults().iter().enumerate();
        for (_, (name, value)) in defaults.filter(|(i, _)| present & (1 << (i % 64)) == 0) {
            field::write(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    let (forced, added) = e.fields.forced_lines();
    out.extend_from_slice(forced);
    out.extend_from_slice(added);
    if let Some(id) = &e.request_id {
        field::write(out, b"x-request-id", id.as_bytes());
    }
}

/// The `Date` value of the current second, and until when it holds.
struct CachedDate {
    until: Option<Instant>,
    text: [u8; 29],
}

thread_local! {
    static DATE: RefCell<CachedDate> = const { RefCell::new(CachedDate { until: None, text: [0; 29] }) };
}

/// Calls `f` with the current IMF-fixdate (RFC 9110 §5.6.7). The wall
/// clock is read and formatted once a second; in between, the monotonic
/// `now` the connection already has says whether the second has turned.
fn with_date(now: Instant, f: impl FnOnce(&[u8])) {
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.until.is_none_or(|until| now >= until) {
            // The `Date` header is the system's time by definition.
            #[allow(clippy::disallowed_methods)]
            let wall = SystemTime::now();
            let text = httpdate::fmt_http_date(wall);
            if text.len() == cached.text.len() {
                cached.text.copy_from_slice(text.as_bytes());
            }
            let into_second = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            cached.until = Some(now + Duration::from_nanos(u64::from(1_000_000_000 - into_second.min(999_999_999))));
        }
        f(&cached.text)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn get11() -> Exchange<'static> {
        Exchange { method: &Method::GET, version: Version::HTTP_11, keep_alive: true, now: Instant::now() }
    }

    fn encode(x: &Exchange<'_>, status: StatusCode, headers: &HeaderMap, exact: Option<u64>) -> String {
        let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
        let framing = body_framing(x, status, declared, exact);
        let mut out = Vec::new();
        encode_head(x, status, Fields::Map(headers), framing, exact, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn length_date_and_order() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        let text = encode(&get11(), StatusCode::OK, &h, Some(2));
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 2\r\ndate: "), "{text}");
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
        // An upstream's own Date and length are kept.
        h.insert(header::DATE, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("7"));
        let text = encode(&get11(), StatusCode::OK, &h, None);
        assert_eq!(text.matches("date:").count(), 1, "{text}");
        assert!(text.contains("content-length: 7\r\n"), "{text}");
    }

    #[test]
    fn unknown_length_is_chunked_or_closes() {
        let text = encode(&get11(), StatusCode::OK, &HeaderMap::new(), None);
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        let old = Exchange { version: Version::HTTP_10, keep_alive: true, ..get11() };
        let text = encode(&old, StatusCode::OK, &HeaderMap::new(), None);
        assert!(!text.contains("chunked") && text.contains("connection: close\r\n"), "{text}");
        let text = encode(&old, StatusCode::OK, &HeaderMap::new(), Some(0));
        assert!(text.contains("connection: keep-alive\r\n"), "{text}");
    }

    #[test]
    fn bodiless_statuses_and_head() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        let text = encode(&get11(), StatusCode::NO_CONTENT, &h, None);
        assert!(!text.contains("content-length"), "{text}");
        let text = encode(&get11(), StatusCode::NOT_MODIFIED, &h, None);
        assert!(text.contains("content-length: 10\r\n"), "{text}");
        let head = Exchange { method: &Method::HEAD, ..get11() };
        assert_eq!(body_framing(&head, StatusCode::OK, Some(10), None), BodyFraming::None);
        let text = encode(&head, StatusCode::OK, &HeaderMap::new(), Some(5));
        assert!(text.contains("content-length: 5\r\n"), "{text}");
    }

    #[test]
    fn closing_connections_say_so() {
        let x = Exchange { keep_alive: false, ..get11() };
        let text = encode(&x, StatusCode::OK, &HeaderMap::new(), Some(0));
        assert!(text.contains("connection: close\r\n"), "{text}");
    }

    /// The header lines of an encoded head, lowercased and sorted.
    fn fields_of(head: &[u8]) -> Vec<String> {
        let text = String::from_utf8(head.to_vec()).unwrap();
        let mut lines: Vec<String> = text
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                format!("{}: {}", n.to_ascii_lowercase(), v.trim())
            })
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn raw_lines_with_edits_match_the_map_path() {
        use crate::wire::field_edits::FieldEdits;
        let field = |n: &'static str, v: &'static str| (HeaderName::from_static(n), http::HeaderValue::from_static(v));
        // The security-header policy's defaults, as it compiles them.
        let defaults = || {
            vec![
                field("x-content-type-options", "nosniff"),
                field("x-frame-options", "DENY"),
                field("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
                field("referrer-policy", "no-referrer"),
            ]
        };
        let banners = || ["server", "x-powered-by"].map(HeaderName::from_static).to_vec();
        let upstream = [
            ("Server", "nginx/1.22"),
            ("Content-Type", "text/plain"),
            ("X-Frame-Options", "SAMEORIGIN"),
            ("X-Request-Id", "from-upstream"),
            ("X-Powered-By", "PHP"),
            ("Content-Length", "2"),
            ("Vary", "Accept"),
            ("vary", "Origin"),
            ("RateLimit", "\"upstream\";r=1;t=1"),
            ("X-RateLimit-Remaining", "1"),
            ("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ];
        // Also an upstream that sets none of the defaults (they are then
        // added as one rendered block).
        let none_of_the_defaults: Vec<_> = upstream.iter().copied().filter(|(n, _)| *n != "X-Frame-Options").collect();
        // And one whose values of two defaults are empty (one beside a real value).
        let mut empty_defaults = upstream.to_vec();
        empty_defaults.extend([("X-Content-Type-Options", ""), ("X-Frame-Options", ""), ("Referrer-Policy", "")]);
        let plain = FieldEdits::new(defaults(), Vec::new(), banners());
        let set =
            FieldEdits::new(defaults(), vec![field("referrer-policy", "same-origin"), field("vary", "*")], banners());
        let mut removing = banners();
        removing.push(HeaderName::from_static("x-frame-options"));
        let removing_a_default = FieldEdits::new(defaults(), Vec::new(), removing);
        let off = FieldEdits::default();
        // Edits that touch the rate-limit names too: one a default, one
        // always set, one removed.
        let mut touching = banners();
        touching.push(HeaderName::from_static("x-ratelimit-limit"));
        let touching_limits = FieldEdits::new(
            vec![field("ratelimit-policy", "\"default\""), field("x-content-type-options", "nosniff")],
            vec![field("x-ratelimit-reset", "0")],
            touching,
        );
        // The rate-limit fields set for one response: none, the IETF pair,
        // all five (one of them, `RateLimit`, also sent by the upstream).
        let limits = |ietf, legacy| {
            Some(crate::wire::limit_fields::LimitFields {
                ietf,
                legacy,
                policy: http::HeaderValue::from_static("\"r\";q=10;w=1"),
                limit: 10,
                remaining: 9,
                reset_secs: 1,
            })
        };
        let per_response = [None, limits(true, false), limits(true, true)];
        for cfg in [plain, set, removing_a_default, touching_limits, off] {
            let cfg = std::sync::Arc::new(cfg);
            for (request_id, upstream, extra) in [None, Some(http::HeaderValue::from_static("abc"))]
                .into_iter()
                .flat_map(|id| {
                    [(id.clone(), &upstream[..]), (id.clone(), &none_of_the_defaults[..]), (id, &empty_defaults[..])]
                })
                .flat_map(|(id, up)| per_response.iter().map(move |extra| (id.clone(), up, extra.clone())))
            {
                let edits = ResponseEdits { limits: extra, fields: cfg.clone(), request_id };
                let raw = RawHeaders::from_pairs(upstream);
                for (status, framing) in
                    [(StatusCode::OK, BodyFraming::Length(2)), (StatusCode::NOT_MODIFIED, BodyFraming::None)]
                {
                    let mut streamed = Vec::new();
                    encode_head(&get11(), status, Fields::Raw(&raw, Some(&edits)), framing, Some(2), &mut streamed);
                    let mut map = HeaderMap::new();
                    raw.clone().into_map(&mut map);
                    edits.clone().apply(&mut map);
                    let mut mapped = Vec::new();
                    encode_head(&get11(), status, Fields::Map(&map), framing, Some(2), &mut mapped);
                    assert_eq!(fields_of(&streamed), fields_of(&mapped), "{cfg:?} {status}");
                }
            }
        }
    }
}

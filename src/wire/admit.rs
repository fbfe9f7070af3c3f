//! The admission of a request head: the rules every request passes before
//! the engine sees it, whatever carried it (the gateway's own HTTP/1.1
//! codec, plain or over TLS, or hyper's HTTP/2). One set of rules, so that
//! no protocol path is a way around another's (request smuggling lives in
//! the gaps between two readings of one message).
//!
//! - **Framing** (RFC 9112 §6): `Transfer-Encoding` beside `Content-Length`,
//!   `chunked` not once and last, a coding other than `chunked` (501),
//!   `Transfer-Encoding` on HTTP/1.0, and a `Content-Length` that is not one
//!   decimal (or a list of identical ones) are refused. HTTP/2 requests may
//!   carry no `Transfer-Encoding` or other connection-specific field at all.
//! - **Host** (RFC 9112 §3.2, RFC 3986 §3.2.2): exactly one on HTTP/1.1, a
//!   host name, IPv4 or IPv6 literal with an optional port, nothing else (no
//!   userinfo, list, path, whitespace or percent-encoding), agreeing with an
//!   absolute-form target or HTTP/2 `:authority`.
//! - **One of each singleton**: `Authorization` and `Content-Type` are one
//!   value each (RFC 9110 §11.6.2, §8.3), and two of them are refused: the
//!   gateway checks one credential or media type, and a service that reads
//!   the other would act on what nobody checked.
//! - **Method**: `CONNECT` is not a gateway's business (501), nor is
//!   `TRACE` (501; NGINX answers 405): a service's echo of the request
//!   would hand a page's script the `Cookie` and `Authorization` it may not
//!   read (cross-site tracing), and the gateway's own answer would show
//!   what it adds.
//! - **Names with anything but letters, digits and `-`** (`_`, `.`, and
//!   the other token characters) are dropped, as NGINX drops them
//!   (`ignore_invalid_headers`, `underscores_in_headers off`): CGI, WSGI,
//!   PHP and Rack backends read `X_Consumer_Id` (and PHP's built-in server
//!   `X.Consumer.Id`) as `X-Consumer-Id`, so such a spelling would carry
//!   an identity or forwarding header past the gateway's removal of the
//!   client's, or a value past a header's validation. No field the
//!   gateway reads or writes has one.
//!
//! The own codec notes `Facts` header by header in its one pass over a head;
//! hyper's requests are admitted from their map (`parsed`).

use std::net::Ipv6Addr;

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode, Uri, Version};

use super::decode::{DeclaredLength, Framing, trim};
use super::field;

/// Why a request is refused before it reaches the engine.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
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
    #[error("the gateway does not serve {0}")]
    NotImplemented(&'static str),
    #[error("the request's HTTP major version is not 1")]
    VersionNotSupported,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
            Refusal::TooLarge(_) | Refusal::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::UriTooLong => StatusCode::URI_TOO_LONG,
            Refusal::UnsupportedCoding | Refusal::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Refusal::VersionNotSupported => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        }
    }
}

/// What a head's fields say about framing, the connection and the host,
/// noted one field at a time (no lookups, no allocation).
#[derive(Debug, Default)]
pub struct Facts {
    hosts: u8,
    /// `Authorization` and `Content-Type` fields seen.
    authorizations: u8,
    content_types: u8,
    /// A `Host` value that is not a valid host and port.
    bad_host: Option<&'static str>,
    /// `Transfer-Encoding` was present.
    transfer_encoding: bool,
    /// How many `chunked`, whether the last coding is, and whether any other appears.
    chunked: usize,
    last_chunked: bool,
    other_coding: bool,
    length: DeclaredLength,
    /// `Connection: close`, `keep-alive`.
    pub close: bool,
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    expect_continue: bool,
    /// A field that HTTP/2 forbids (RFC 9113 §8.2.2): `Connection`,
    /// `Keep-Alive`, `Proxy-Connection`, `Upgrade`, `Transfer-Encoding`,
    /// or `TE` other than `trailers`.
    connection_specific: bool,
}

impl Facts {
    pub fn note(&mut self, name: &HeaderName, value: &[u8]) {
        if name == header::HOST {
            self.hosts = self.hosts.saturating_add(1);
            if let Err(e) = host_and_port(value) {
                self.bad_host = Some(e);
            }
        } else if name == header::CONTENT_LENGTH {
            self.length.note(value);
        } else if name == header::AUTHORIZATION {
            self.authorizations = self.authorizations.saturating_add(1);
        } else if name == header::CONTENT_TYPE {
            self.content_types = self.content_types.saturating_add(1);
        } else if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            self.connection_specific = true;
            for coding in field::list(value).filter(|c| !c.is_empty()) {
                self.last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                if self.last_chunked {
                    self.chunked += 1;
                } else {
                    self.other_coding = true;
                }
            }
        } else if name == header::CONNECTION {
            self.connection_specific = true;
            for token in field::list(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                }
            }
        } else if name == header::EXPECT {
            self.expect_continue = trim(value).eq_ignore_ascii_case(b"100-continue");
        } else if name == header::UPGRADE {
            self.connection_specific = true;
        } else if name == header::TE {
            self.connection_specific |= !trim(value).eq_ignore_ascii_case(b"trailers");
        } else if matches!(name.as_str(), "keep-alive" | "proxy-connection") {
            self.connection_specific = true;
        }
    }

    /// A singleton field given twice (see the module's note).
    fn singletons(&self) -> Result<(), Refusal> {
        if self.authorizations > 1 {
            return Err(Refusal::Malformed("more than one Authorization header"));
        }
        if self.content_types > 1 {
            return Err(Refusal::Malformed("more than one Content-Type header"));
        }
        Ok(())
    }

    /// The same facts, from a map (hyper's requests).
    pub fn of(headers: &HeaderMap) -> Facts {
        let mut facts = Facts::default();
        for (name, value) in headers {
            facts.note(name, value.as_bytes());
        }
        facts
    }
}

/// What admission decided about an HTTP/1.x request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// How the body is delimited: `Empty`, `Length` or `Chunked`.
    pub framing: Framing,
    /// The client allows another request on this connection.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1 with a body to come (HTTP/1.0
    /// has no 1xx responses: the expectation is ignored there).
    pub expect_continue: bool,
}

/// The rules for an HTTP/1.x head. `host` is the request's `Host` value,
/// needed only when the target is in absolute form (to compare them).
pub fn http1(
    method: &Method,
    version: Version,
    uri: &Uri,
    facts: &Facts,
    host: impl FnOnce() -> Option<Vec<u8>>,
) -> Result<Admitted, Refusal> {
    refused_method(method)?;
    if facts.hosts > 1 {
        return Err(Refusal::Malformed("more than one Host header"));
    }
    if let Some(e) = facts.bad_host {
        return Err(Refusal::Malformed(e));
    }
    facts.singletons()?;
    if version == Version::HTTP_11 && facts.hosts == 0 {
        // RFC 9112 §3.2: every HTTP/1.1 request, absolute-form or not.
        return Err(Refusal::Malformed("an HTTP/1.1 request needs exactly one Host header"));
    }
    absolute_form(uri, host)?;
    let framing = framing(facts, version)?;
    let keep_alive = match version {
        Version::HTTP_10 => facts.keep_alive && !facts.close,
        _ => !facts.close,
    };
    let expect_continue = facts.expect_continue && framing != Framing::Empty && version == Version::HTTP_11;
    Ok(Admitted { framing, keep_alive, expect_continue })
}

/// Whether every request of `method` is refused before routing (a route
/// listing it would never serve it).
pub fn never_served(method: &Method) -> bool {
    refused_method(method).is_err()
}

/// The methods no route serves, on every protocol path, in any case:
/// methods are case-sensitive (RFC 9110 §9.1), but a service that ignores
/// case would read `trace` as TRACE (and IIS's `TRACK` is the same echo).
/// Any other method with a lower-case letter is refused too, as NGINX
/// refuses it (400): Werkzeug, Django and others upper-case the method, so
/// `delete` would pass a route limited to `DELETE` (and its policies) by a
/// broader route and still run the service's DELETE handler.
fn refused_method(method: &Method) -> Result<(), Refusal> {
    let name = method.as_str();
    if name.eq_ignore_ascii_case("CONNECT") {
        Err(Refusal::NotImplemented("CONNECT"))
    } else if name.eq_ignore_ascii_case("TRACE") || name.eq_ignore_ascii_case("TRACK") {
        Err(Refusal::NotImplemented("TRACE"))
    } else if name.bytes().any(|b| b.is_ascii_lowercase()) {
        Err(Refusal::Malformed("a method with lower-case letters (methods are upper case)"))
    } else {
        Ok(())
    }
}

/// Whether a field name read from the wire is dropped (see the module's note).
#[inline]
pub fn dropped_name(name: &[u8]) -> bool {
    name.iter().any(|&b| !(b.is_ascii_alphanumeric() || b == b'-'))
}

/// For a config that names a request header the gateway reads (an API
/// key's, a route condition's, a rate-limit key's, a validated one's):
/// `Err` when every protocol path drops such a name as it arrives
/// (`dropped_name`), so the setting could never see the header (an API
/// key always missing, a route that never matches, one rate-limit bucket
/// for every client).
/// (A name that is no header name at all is left to its own error.)
pub fn readable_request_header(name: &str) -> Result<(), String> {
    if !dropped_name(name.as_bytes()) || HeaderName::try_from(name).is_err() {
        return Ok(());
    }
    let spelled: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    Err(format!(
        "`{name}`: request headers named with other characters than letters, digits and `-` are dropped as they \
         arrive (as NGINX drops them: backends read `_` as `-`), so this would never see one; write `{spelled}`"
    ))
}

/// Removes the fields whose names are dropped.
fn drop_invalid_names(headers: &mut HeaderMap) {
    if headers.keys().any(|n| dropped_name(n.as_str().as_bytes())) {
        let names: Vec<HeaderName> = headers.keys().filter(|n| dropped_name(n.as_str().as_bytes())).cloned().collect();
        for name in names {
            headers.remove(&name);
        }
    }
}

/// The rules for a request hyper has read (HTTP/2; an HTTP/1.x one would
/// get the HTTP/1 rules): hyper has framed its body already; what is
/// checked here is what hyper lets through and the own codec would not.
/// `max_field_section`: the listener's `max_header_size`.
pub fn parsed<B>(req: &mut http::Request<B>, max_field_section: usize, max_fields: usize) -> Result<(), Refusal> {
    if req.version() == Version::HTTP_2 {
        // Measured here, not by the HTTP/2 layer (whose own, looser limit
        // only bounds memory): its 431 would be bare, unlogged, uncounted.
        if field_section_size(req) > max_field_section {
            return Err(Refusal::TooLarge(max_field_section));
        }
        // Counted as they came, before split cookies are joined (200
        // `cookie` fields are 200 fields, as on HTTP/1.1).
        if req.headers().len() > max_fields {
            return Err(Refusal::TooManyHeaders);
        }
        // The `http` crate takes `"` in a name, which is no token (RFC 9110
        // §5.1): malformed (RFC 9113 §8.2.1), as HTTP/1.1 reads it.
        if req.headers().keys().any(|name| name.as_str().contains('"')) {
            return Err(Refusal::Malformed("a field name that is not a token"));
        }
        join_cookies(req.headers_mut());
    }
    drop_invalid_names(req.headers_mut());
    let headers = req.headers();
    let facts = Facts::of(headers);
    let host = || headers.get(header::HOST).map(|v| v.as_bytes().to_vec());
    if req.version() != Version::HTTP_2 {
        return http1(req.method(), req.version(), req.uri(), &facts, host).map(|_| ());
    }
    refused_method(req.method())?;
    if facts.connection_specific {
        return Err(Refusal::Malformed("an HTTP/2 request carries a connection-specific header field"));
    }
    // RFC 9113 §8.3.1: `:path` is an absolute path (`?a=1` was served as
    // `/?a=1`, which HTTP/1.1 refuses; `*` is OPTIONS's own). (`:scheme`
    // is checked with `:authority` below; without it the HTTP/2 library
    // drops it unread, and nothing reads it.)
    let path = req.uri().path_and_query().map_or("", |pq| pq.as_str());
    if !(path.starts_with('/') || path == "*" && req.method() == http::Method::OPTIONS) {
        return Err(Refusal::Malformed("bad request target"));
    }
    // RFC 9113 §8.2.1: malformed. HTTP/1.1 reads such a value trimmed; sent
    // on to an HTTP/1.1 upstream as it came, it would be read otherwise there.
    if headers.values().any(|v| matches!(v.as_bytes(), [b' ' | b'\t', ..] | [.., b' ' | b'\t'])) {
        return Err(Refusal::Malformed("an HTTP/2 field value begins or ends with whitespace"));
    }
    facts.length.result().map_err(Refusal::Malformed)?;
    facts.singletons()?;
    if facts.hosts > 1 {
        return Err(Refusal::Malformed("more than one Host header"));
    }
    if let Some(e) = facts.bad_host {
        return Err(Refusal::Malformed(e));
    }
    // `:authority` (in the URI), or `Host`, or both agreeing (RFC 9113 §8.3.1).
    match req.uri().authority() {
        Some(authority) => check_authority(authority.as_str().as_bytes(), req.uri().scheme_str(), host)?,
        None if facts.hosts == 1 => {}
        None => return Err(Refusal::Malformed("an HTTP/2 request needs :authority or Host")),
    }
    // What the config reads as the `Host` header (a route's `headers`
    // condition, a rate-limit or hash key) is `:authority` on HTTP/2, as
    // NGINX makes a `Host` of it: without one, a route matched on `Host`
    // fell through and a key on it was missing (per IP instead). Set after
    // the checks; no upstream gets it as a field (HTTP/2 moves it back to
    // `:authority`, HTTP/1.1 gets the gateway's own `Host`).
    if facts.hosts == 0
        && let Some(authority) = req.uri().authority()
        && let Ok(value) = http::HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(header::HOST, value);
    }
    Ok(())
}

/// The size of an HTTP/2 request's field section as
/// `SETTINGS_MAX_HEADER_LIST_SIZE` counts it (RFC 9113 §6.5.2): each
/// field's name and value plus 32, the pseudo-header fields included, as
/// they came (before split cookies are joined).
fn field_section_size<B>(req: &http::Request<B>) -> usize {
    const EACH: usize = 32;
    let uri = req.uri();
    let mut size = ":method".len() + req.method().as_str().len() + EACH;
    if let Some(scheme) = uri.scheme_str() {
        size += ":scheme".len() + scheme.len() + EACH;
    }
    if let Some(authority) = uri.authority() {
        size += ":authority".len() + authority.as_str().len() + EACH;
    }
    if let Some(pq) = uri.path_and_query() {
        size += ":path".len() + pq.as_str().len() + EACH;
    }
    size + req.headers().iter().map(|(n, v)| n.as_str().len() + v.len() + EACH).sum::<usize>()
}

/// HTTP/2 may split `cookie` into one field per cookie (RFC 9113 §8.2.3);
/// they are one `Cookie` again, joined with `; `, before anything reads them
/// or an HTTP/1.1 upstream gets them (where several `Cookie` lines are read
/// differently by different servers: the first, the last, or joined with `,`).
/// Empty fields (valid HTTP/2) are left out: joined, an empty last one
/// left `a=1; `, which the whitespace rule then refused (400).
fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(_), Some(_)) = (values.next(), values.next()) else { return };
    let mut joined = Vec::new();
    for v in headers.get_all(header::COOKIE).iter().filter(|v| !v.is_empty()) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if joined.is_empty() {
        // Only empty fields: no cookie at all.
        headers.remove(header::COOKIE);
    } else if let Ok(value) = http::HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// An absolute-form target (`GET http://host/path`): http or https, a
/// valid authority, and the same host and port as the `Host` header.
fn absolute_form(uri: &Uri, host: impl FnOnce() -> Option<Vec<u8>>) -> Result<(), Refusal> {
    let Some(authority) = uri.authority() else {
        return match uri.scheme() {
            None => Ok(()),
            Some(_) => Err(Refusal::Malformed("bad request target")),
        };
    };
    check_authority(authority.as_str().as_bytes(), uri.scheme_str(), host)
}

/// A URI authority: valid, of an http(s) URI, and in agreement with `Host` when there is one.
fn check_authority(
    authority: &[u8],
    scheme: Option<&str>,
    host: impl FnOnce() -> Option<Vec<u8>>,
) -> Result<(), Refusal> {
    let default_port = match scheme {
        Some(s) if s.eq_ignore_ascii_case("http") => 80,
        Some(s) if s.eq_ignore_ascii_case("https") => 443,
        // HTTP/2 without `:scheme` cannot happen (h2 refuses it); be safe.
        _ => return Err(Refusal::Malformed("the request target's scheme must be http or https")),
    };
    let target = host_and_port(authority).map_err(Refusal::Malformed)?;
    if let Some(value) = host() {
        let header = host_and_port(&value).map_err(Refusal::Malformed)?;
        if !target.same_as(&header, default_port) {
            return Err(Refusal::Malformed("the Host header does not match the request target"));
        }
    }
    Ok(())
}

/// RFC 9112 §6.3, for requests: chunked, a length, or no body.
fn framing(facts: &Facts, version: Version) -> Result<Framing, Refusal> {
    if facts.transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(Refusal::Malformed("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if facts.length.is_present() {
            return Err(Refusal::Malformed("both Transfer-Encoding and Content-Length"));
        }
        // Chunked exactly once and last, or the length cannot be known (400);
        // another coding beside it we cannot decode for the upstream (501).
        if facts.chunked != 1 || !facts.last_chunked {
            return Err(Refusal::Malformed("chunked must be the final transfer coding, once"));
        }
        if facts.other_coding {
            return Err(Refusal::UnsupportedCoding);
        }
        return Ok(Framing::Chunked);
    }
    Ok(match facts.length.result().map_err(Refusal::Malformed)? {
        None | Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

/// A host and optional port, as `Host` and URI authorities carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort<'a> {
    /// A name or IPv4 address (maybe with a trailing dot), or `[IPv6]`.
    pub host: &'a [u8],
    pub port: Option<u16>,
}

impl HostPort<'_> {
    /// The host without a trailing dot: `example.com.` and `example.com`
    /// name the same host (compared without regard to case).
    pub fn name(&self) -> &[u8] {
        self.host.strip_suffix(b".").unwrap_or(self.host)
    }

    fn same_as(&self, other: &HostPort<'_>, default_port: u16) -> bool {
        self.name().eq_ignore_ascii_case(other.name())
            && self.port.unwrap_or(default_port) == other.port.unwrap_or(default_port)
    }
}

/// Longest host name (RFC 1035: 253 characters, plus a trailing dot).
const MAX_HOST: usize = 254;

/// Parses `host [ ":" port ]` strictly (RFC 3986 §3.2.2, less what no real
/// client sends and backends read differently): a DNS-style name of
/// letters, digits, `-` and `_` in dot-separated labels (one trailing dot
/// allowed), or an IPv6 literal in brackets; a port of 1-5 digits up to
/// 65535. Userinfo, lists, paths, whitespace, percent-encoding, empty
/// labels and empty ports are refused.
pub fn host_and_port(value: &[u8]) -> Result<HostPort<'_>, &'static str> {
    let (host, rest) = if value.first() == Some(&b'[') {
        let end = value.iter().position(|&b| b == b']').ok_or("the Host is not a valid host")?;
        let literal = std::str::from_utf8(&value[1..end]).map_err(|_| "the Host is not a valid host")?;
        literal.parse::<Ipv6Addr>().map_err(|_| "the Host is not a valid host")?;
        value.split_at(end + 1)
    } else {
        let end = name_end(value)?;
        value.split_at(end)
    };
    let port = match rest {
        [] => None,
        [b':', digits @ ..] if (1..=5).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) => {
            let port = digits.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
            Some(u16::try_from(port).map_err(|_| "the Host has a bad port")?)
        }
        _ => return Err("the Host has a bad port"),
    };
    Ok(HostPort { host, port })
}

/// Where a host name at the start of `value` ends (at `:` or the end), in
/// one pass: dot-separated labels of letters, digits, `-` and `_`, each
/// 1-63 long; one trailing dot allowed.
fn name_end(value: &[u8]) -> Result<usize, &'static str> {
    const BAD: &str = "the Host is not a valid host";
    let mut label = 0usize;
    let mut end = value.len();
    for (i, &b) in value.iter().enumerate() {
        if NAME_BYTE[usize::from(b)] {
            label += 1;
            if label > 63 {
                return Err(BAD);
            }
        } else if b == b'.' {
            if label == 0 {
                return Err(BAD);
            }
            label = 0;
        } else if b == b':' {
            end = i;
            break;
        } else {
            return Err(BAD);
        }
    }
    match end {
        0 if value.is_empty() => Err("the Host is empty"),
        0 => Err("the Host names no host before its `:` (an IPv6 address is written in brackets, `[::1]`)"),
        n if n > MAX_HOST => Err(BAD),
        n => Ok(n),
    }
}

/// The bytes of a host name's labels.
static NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(v: &str) -> Result<HostPort<'_>, &'static str> {
        host_and_port(v.as_bytes())
    }

    #[test]
    fn hosts_that_route_one_way_only() {
        for ok in [
            "example.com",
            "Example.COM",
            "a-b_c.example",
            "10.0.0.1",
            "[::1]",
            "[2001:db8::1]:8443",
            "x:80",
            "x.:1",
            "localhost",
        ] {
            assert!(hp(ok).is_ok(), "{ok}");
        }
        assert_eq!(hp("x.:80").unwrap().name(), b"x");
        assert_eq!(hp("[::1]:65535").unwrap().port, Some(65535));
        for bad in [
            "",
            " ",
            "x y",
            "x\ty",
            "x, internal",
            "x@internal",
            "u:p@x",
            "x/admin",
            "x:80:80",
            "x%2eexample",
            "x:",
            ":80",
            "x:65536",
            "x:123456",
            "x:+80",
            "a..b",
            ".a",
            ".",
            "x..",
            "[::1",
            "[nope]",
            "[::1]x",
            "[fe80::1%25eth0]",
            "x?",
            "x#",
        ] {
            assert!(hp(bad).is_err(), "{bad:?}");
        }
        assert!(hp(&"a".repeat(64)).is_err());
        assert!(hp(&format!("{}.com", "a.".repeat(130))).is_err());
    }

    fn head(method: Method, version: Version, target: &str, fields: &[(&str, &str)]) -> Result<Admitted, Refusal> {
        let uri: Uri = target.parse().unwrap();
        let mut facts = Facts::default();
        for (n, v) in fields {
            facts.note(&HeaderName::from_bytes(n.as_bytes()).unwrap(), v.as_bytes());
        }
        let host = fields.iter().find(|(n, _)| n.eq_ignore_ascii_case("host")).map(|(_, v)| v.as_bytes().to_vec());
        http1(&method, version, &uri, &facts, || host)
    }

    #[test]
    fn host_rules() {
        let get = |target: &str, fields: &[(&str, &str)]| head(Method::GET, Version::HTTP_11, target, fields);
        assert!(get("/", &[("host", "x")]).is_ok());
        assert!(get("/", &[]).is_err());
        assert!(get("http://x/", &[]).is_err(), "absolute-form needs Host too (RFC 9112 §3.2)");
        assert!(get("/", &[("host", "x"), ("host", "x")]).is_err());
        assert!(get("http://x/a", &[("host", "X.:80")]).is_ok());
        assert!(get("https://x/a", &[("host", "x:443")]).is_ok());
        assert!(get("http://x/a", &[("host", "y")]).is_err());
        assert!(get("http://x:81/a", &[("host", "x")]).is_err());
        assert!(get("http://u@x/a", &[("host", "x")]).is_err());
        assert!(get("ftp://x/a", &[("host", "x")]).is_err());
        assert!(head(Method::GET, Version::HTTP_10, "/", &[]).is_ok(), "HTTP/1.0 needs no Host");
        assert_eq!(
            head(Method::CONNECT, Version::HTTP_11, "x:443", &[("host", "x:443")]),
            Err(Refusal::NotImplemented("CONNECT"))
        );
        assert_eq!(head(Method::TRACE, Version::HTTP_11, "/", &[("host", "x")]), Err(Refusal::NotImplemented("TRACE")));
        for other in ["trace", "Trace", "TRACK", "track"] {
            let m = Method::from_bytes(other.as_bytes()).unwrap();
            assert_eq!(
                head(m, Version::HTTP_11, "/", &[("host", "x")]),
                Err(Refusal::NotImplemented("TRACE")),
                "{other}"
            );
        }
        let lower = Method::from_bytes(b"connect").unwrap();
        assert_eq!(head(lower, Version::HTTP_11, "/", &[("host", "x")]), Err(Refusal::NotImplemented("CONNECT")));
        // Any other method with a lower-case letter: 400, as NGINX answers.
        for other in ["get", "delete", "Post", "pURGE"] {
            let m = Method::from_bytes(other.as_bytes()).unwrap();
            let refused = head(m, Version::HTTP_11, "/", &[("host", "x")]);
            assert!(matches!(refused, Err(Refusal::Malformed(_))), "{other}: {refused:?}");
        }
        for upper in ["GET", "PURGE", "MKCOL", "X-CUSTOM_1"] {
            let m = Method::from_bytes(upper.as_bytes()).unwrap();
            assert!(head(m, Version::HTTP_11, "/", &[("host", "x")]).is_ok(), "{upper}");
        }
    }

    #[test]
    fn framing_rules() {
        let post = |fields: &[(&str, &str)]| {
            let mut all = vec![("host", "x")];
            all.extend_from_slice(fields);
            head(Method::POST, Version::HTTP_11, "/", &all)
        };
        assert_eq!(post(&[("content-length", "5")]).unwrap().framing, Framing::Length(5));
        assert_eq!(post(&[("content-length", "5, 5")]).unwrap().framing, Framing::Length(5));
        assert_eq!(post(&[("content-length", "0")]).unwrap().framing, Framing::Empty);
        assert_eq!(post(&[("transfer-encoding", "Chunked")]).unwrap().framing, Framing::Chunked);
        for bad in [
            &[("content-length", "5, 6")][..],
            &[("content-length", "5"), ("content-length", "6")],
            &[("content-length", "5,")],
            &[("content-length", "")],
            &[("content-length", "-5")],
            &[("content-length", "0x5")],
            &[("transfer-encoding", "chunked"), ("content-length", "5")],
            &[("transfer-encoding", "chunked, chunked")],
            &[("transfer-encoding", "chunked"), ("transfer-encoding", "identity")],
            &[("transfer-encoding", "xchunked")],
            &[("transfer-encoding", "")],
        ] {
            assert_eq!(post(bad).map_err(|e| e.status()), Err(StatusCode::BAD_REQUEST), "{bad:?}");
        }
        assert_eq!(post(&[("transfer-encoding", "gzip, chunked")]), Err(Refusal::UnsupportedCoding));
        let old = head(Method::POST, Version::HTTP_10, "/", &[("transfer-encoding", "chunked")]);
        assert!(old.is_err());
    }

    #[test]
    fn expect_continue_is_http11_only() {
        let fields = [("host", "x"), ("content-length", "5"), ("expect", "100-continue")];
        assert!(head(Method::POST, Version::HTTP_11, "/", &fields).unwrap().expect_continue);
        assert!(!head(Method::POST, Version::HTTP_10, "/", &fields).unwrap().expect_continue);
    }

    fn h2(target: &str, fields: &[(&str, &str)]) -> Result<(), Refusal> {
        let mut req = http::Request::get(target).version(Version::HTTP_2);
        for (n, v) in fields {
            req = req.header(*n, *v);
        }
        parsed(&mut req.body(()).unwrap(), 32 << 10, 100)
    }

    #[test]
    fn http2_rules() {
        assert!(h2("https://x/a", &[]).is_ok());
        assert!(h2("/a", &[("host", "x")]).is_ok());
        assert!(h2("/a", &[]).is_err());
        assert!(h2("https://x/a", &[("host", "x:443")]).is_ok());
        assert!(h2("https://x/a", &[("host", "y")]).is_err());
        assert!(h2("https://u@x/a", &[]).is_err());
        for field in [("transfer-encoding", "chunked"), ("connection", "close"), ("te", "gzip"), ("upgrade", "h2c")] {
            assert!(h2("https://x/a", &[field]).is_err(), "{field:?}");
        }
        assert!(h2("https://x/a", &[("te", "trailers")]).is_ok());
        assert!(h2("https://x/a", &[("content-length", "1, 2")]).is_err());
        let mut req = http::Request::get("https://x/a").version(Version::HTTP_2).body(()).unwrap();
        req.headers_mut().append(header::COOKIE, "a=1".parse().unwrap());
        req.headers_mut().append(header::COOKIE, "b=2".parse().unwrap());
        parsed(&mut req, 32 << 10, 100).unwrap();
        let cookies: Vec<_> = req.headers().get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; b=2"], "HTTP/2's split cookies are one field again");
        for padded in [" padded", "padded ", "\tpadded"] {
            assert!(h2("https://x/a", &[("x-w", padded)]).is_err(), "{padded:?}");
        }
        assert!(h2("https://x/a", &[("x-w", "in side")]).is_ok());
        // A name with `"`, which HTTP/1.1 refuses (not a token); the h2
        // crate makes names with `from_lowercase`, which takes it.
        let mut req = http::Request::get("https://x/a").version(Version::HTTP_2).body(()).unwrap();
        let quoted = HeaderName::from_lowercase(b"x\"a").expect("the http crate takes it this way");
        req.headers_mut().insert(quoted, "b".parse().unwrap());
        assert_eq!(parsed(&mut req, 32 << 10, 100), Err(Refusal::Malformed("a field name that is not a token")));
        // Fields are counted as they came: 150 split cookies are 150 fields.
        let mut req = http::Request::get("https://x/a").version(Version::HTTP_2).body(()).unwrap();
        for i in 0..150 {
            req.headers_mut().append(header::COOKIE, format!("c{i}=v").parse().unwrap());
        }
        assert_eq!(parsed(&mut req, 32 << 10, 100), Err(Refusal::TooManyHeaders));
    }

    #[test]
    fn an_http2_field_section_is_measured_as_its_settings_count_it() {
        // Pseudo-header fields: :method GET 42, :scheme https 44,
        // :authority x 43, :path /a 39; a field `x-w: <n bytes>` 35 + n.
        let req = |n: usize| {
            let value = "v".repeat(n);
            http::Request::get("https://x/a").version(Version::HTTP_2).header("x-w", value).body(()).unwrap()
        };
        assert_eq!(field_section_size(&req(100)), 42 + 44 + 43 + 39 + 35 + 100);
        let limit = 8 << 10;
        let fits = limit - (42 + 44 + 43 + 39 + 35);
        assert!(parsed(&mut req(fits), limit, 100).is_ok());
        assert_eq!(parsed(&mut req(fits + 1), limit, 100), Err(Refusal::TooLarge(limit)));
        // HTTP/1.1 heads are measured by the codec as they are read.
        let mut h1 = http::Request::get("/a").header("host", "x").header("x-w", "v".repeat(limit)).body(()).unwrap();
        assert!(parsed(&mut h1, limit, 100).is_ok());
    }

    /// Any Host value: no panic; an accepted one is a clean name or IPv6
    /// literal, and reads back the same.
    #[test]
    fn fuzz_hosts() {
        use proptest::prelude::*;
        let seed = b"api.example.com:8080".to_vec();
        let values = prop_oneof![
            prop::collection::vec(crate::fuzz::wire_byte(), 0..40),
            crate::fuzz::mutated(seed, 4),
            crate::fuzz::mutated(b"[2001:db8::1]:443".to_vec(), 4),
        ];
        // The rule as written in words, slowly: the one-pass parser must agree.
        let reference = |value: &[u8]| -> bool {
            let host = value.split(|&b| b == b':').next().unwrap_or_default();
            let name = host.strip_suffix(b".").unwrap_or(host);
            !name.is_empty()
                && host.len() <= MAX_HOST
                && name.split(|&b| b == b'.').all(|l| {
                    (1..=63).contains(&l.len())
                        && l.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        crate::fuzz::run("hosts", values, |value| {
            if value.first() != Some(&b'[') {
                let name_ok = name_end(&value).is_ok();
                prop_assert_eq!(name_ok, reference(&value), "{:?}", String::from_utf8_lossy(&value));
            }
            let Ok(parsed) = host_and_port(&value) else { return Ok(()) };
            let name = parsed.name();
            let literal = name.first() == Some(&b'[');
            prop_assert!(
                literal || name.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
                "{:?}",
                value
            );
            prop_assert_eq!(host_and_port(parsed.host), Ok(HostPort { host: parsed.host, port: None }));
            Ok(())
        });
    }
}

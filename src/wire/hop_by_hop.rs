//! Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and are
//! never forwarded, in either direction: the fixed list plus every header
//! named in `Connection`, except the ones the gateway frames, routes and
//! identifies clients by (`Content-Length`, `Host`, the forwarding headers
//! and `X-Request-Id`): a client that lists them in `Connection` must not
//! get them removed between the gateway's reading of a message and the
//! upstream's (NGINX ignores such names for the same reason). Headers the
//! gateway sets itself are set after this removal.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

// A static, not a const: a const array is built and dropped at every use.
static FIXED: [HeaderName; 10] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    // RFC 7540 §3.2.1: sent with `Upgrade: h2c`, for that connection only.
    HeaderName::from_static("http2-settings"),
];

/// A header the config may not set on a message (`request_headers.set`,
/// `response_headers.set`, a static answer's `headers`): its framing
/// (`Content-Length`, `Transfer-Encoding`) and its connection's fields are
/// the gateway's to write; set by hand they would contradict the framing it
/// sends (an HTTP/2 stream whose `content-length` is not its DATA's length
/// is malformed) or be silently dropped.
pub fn not_settable(name: &HeaderName) -> bool {
    *name == header::CONTENT_LENGTH
        || (is_hop_by_hop(name) && *name != header::PROXY_AUTHENTICATE && *name != header::PROXY_AUTHORIZATION)
}

/// A header that belongs to one connection (not counting names listed in `Connection`).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    // By length first: it runs on every header of every message, and most
    // names have a length no hop-by-hop name has.
    let name = name.as_str();
    match name.len() {
        2 => name == "te",
        7 => name == "trailer" || name == "upgrade",
        10 => name == "connection" || name == "keep-alive",
        14 => name == "http2-settings",
        16 => name == "proxy-connection",
        17 => name == "transfer-encoding",
        18 => name == "proxy-authenticate",
        19 => name == "proxy-authorization",
        _ => false,
    }
}

/// Removes hop-by-hop headers, those `Connection` lists included. `TE:
/// trailers` survives on requests, as it is the only TE a proxy may pass on
/// (gRPC needs it).
pub fn strip(headers: &mut HeaderMap, is_request: bool) {
    // Most messages carry none: one pass over the names (cheap comparisons
    // for standard headers) instead of a dozen hash lookups.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Names listed in Connection go too (collected first: we mutate the map).
    for name in listed_in_connection(headers) {
        headers.remove(name);
    }
    strip_fixed(headers, is_request);
}

/// Removes the fixed hop-by-hop names only (`TE: trailers` survives on requests).
pub fn strip_fixed(headers: &mut HeaderMap, is_request: bool) {
    let te_trailers =
        is_request && headers.get(header::TE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    super::remove::remove_all(headers, &FIXED);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The names a message's `Connection` header lists that it may remove
/// (not the protected ones, see the module's comment).
pub fn listed_in_connection(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| super::field::list(v.as_bytes()))
        .filter_map(|name| HeaderName::from_bytes(name).ok())
        .filter(|name| !is_protected(name))
        .collect()
}

/// Names no `Connection` header removes.
pub fn is_protected(name: &HeaderName) -> bool {
    use super::names::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID};
    name == header::CONTENT_LENGTH
        || name == header::HOST
        || name == header::FORWARDED
        || name == X_FORWARDED_FOR
        || name == X_FORWARDED_PROTO
        || name == X_FORWARDED_HOST
        || name == X_REQUEST_ID
}

/// Whether a request asks to become a WebSocket (RFC 6455 §4.1): `GET`
/// on HTTP/1.1 with `Connection: upgrade` and `Upgrade: websocket`. No other
/// upgrade is ever made (`h2c` least of all: it would tunnel past routing).
pub fn asks_websocket(method: &http::Method, version: http::Version, headers: &HeaderMap) -> bool {
    if method != http::Method::GET || version != http::Version::HTTP_11 {
        return false;
    }
    // `Upgrade` first: one lookup, and nearly every request has none.
    let Some(upgrade) = headers.get(header::UPGRADE) else { return false };
    let mut protocols = super::field::list(upgrade.as_bytes());
    let websocket =
        protocols.next().is_some_and(|p| p.eq_ignore_ascii_case(b"websocket")) && protocols.next().is_none();
    websocket
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| super::field::list(v.as_bytes()))
            .any(|t| t.eq_ignore_ascii_case(b"upgrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fixed_and_listed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "close, X-Hop".parse().unwrap());
        h.insert("x-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TE, "gzip".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip(&mut h, true);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn the_fixed_list_and_nothing_else() {
        for name in &FIXED {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in ["user-agent", "trailers", "host", "x-upgrade", "content-length", "teapot"] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn te_trailers_survives_on_requests() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, "trailers".parse().unwrap());
        strip(&mut h, true);
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
    }

    #[test]
    fn framing_and_host_cannot_be_listed_away() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Content-Length, host, X-Hop, x-forwarded-for, X-Request-Id".parse().unwrap());
        h.insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        h.insert(header::HOST, "x".parse().unwrap());
        h.insert("x-hop", "1".parse().unwrap());
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        h.insert("x-request-id", "abc".parse().unwrap());
        strip(&mut h, true);
        assert_eq!(h.len(), 4, "{h:?}");
        assert!(h.contains_key(header::CONTENT_LENGTH) && h.contains_key(header::HOST) && !h.contains_key("x-hop"));
    }

    #[test]
    fn detects_websocket_only() {
        use http::{Method, Version};
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "WebSocket".parse().unwrap());
        assert!(asks_websocket(&Method::GET, Version::HTTP_11, &h));
        assert!(!asks_websocket(&Method::POST, Version::HTTP_11, &h));
        assert!(!asks_websocket(&Method::GET, Version::HTTP_10, &h));
        for other in ["h2c", "websocket, h2c", "TLS/1.0"] {
            h.insert(header::UPGRADE, other.parse().unwrap());
            assert!(!asks_websocket(&Method::GET, Version::HTTP_11, &h), "{other}");
        }
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.remove(header::CONNECTION);
        assert!(!asks_websocket(&Method::GET, Version::HTTP_11, &h));
    }
}

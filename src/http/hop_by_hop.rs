//! Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and are
//! never forwarded, in either direction: the fixed list plus every header
//! named in `Connection`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

// A static, not a const: a const array is built and dropped at every use.
static FIXED: [HeaderName; 9] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// A header that belongs to one connection (not counting names listed in `Connection`).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    // By length first: it runs on every header of every message, and most
    // names have a length no hop-by-hop name has.
    let name = name.as_str();
    match name.len() {
        2 => name == "te",
        7 => name == "trailer" || name == "upgrade",
        10 => name == "connection" || name == "keep-alive",
        16 => name == "proxy-connection",
        17 => name == "transfer-encoding",
        18 => name == "proxy-authenticate",
        19 => name == "proxy-authorization",
        _ => false,
    }
}

/// Removes hop-by-hop headers. `TE: trailers` survives on requests, as it is
/// the only TE a proxy may pass on (gRPC needs it).
pub fn strip(headers: &mut HeaderMap, is_request: bool) {
    // Most messages carry none: one pass over the names (cheap comparisons
    // for standard headers) instead of a dozen hash lookups.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let te_trailers =
        is_request && headers.get(header::TE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    // Names listed in Connection go too (collected first: we mutate the map).
    for name in listed_in_connection(headers) {
        headers.remove(name);
    }
    crate::http::remove::remove_all(headers, &FIXED);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The names a message's `Connection` header lists (hop-by-hop too).
pub fn listed_in_connection(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// The protocol an HTTP/1.1 request asks to upgrade to (`Connection:
/// upgrade` plus `Upgrade: X`), e.g. `websocket`.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    // `Upgrade` first: one lookup, and nearly every request has none.
    let upgrade = headers.get(header::UPGRADE)?;
    let wants = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    wants.then(|| upgrade.clone())
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
    fn detects_upgrade() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
        h.remove(header::CONNECTION);
        assert!(upgrade_protocol(&h).is_none());
    }
}

//! Header names read off the wire. The names nearly every message carries
//! are recognised by their length and one or two exact compares (their
//! canonical `Content-Length` and lowercase spellings); anything else goes
//! through `HeaderName::from_bytes`, whose general lowercase-and-lookup is
//! the most frequent cost of parsing a head (~150 instructions a name).

use http::header::{self, HeaderName, InvalidHeaderName};

/// (canonical spelling, lowercase spelling, name), grouped by length below.
type Known = (&'static [u8], &'static [u8], HeaderName);

static LEN_4: [Known; 2] = [(b"Host", b"host", header::HOST), (b"Date", b"date", header::DATE)];
static LEN_6: [Known; 3] = [
    (b"Accept", b"accept", header::ACCEPT),
    (b"Server", b"server", header::SERVER),
    (b"Cookie", b"cookie", header::COOKIE),
];
static LEN_10: [Known; 4] = [
    (b"User-Agent", b"user-agent", header::USER_AGENT),
    (b"Connection", b"connection", header::CONNECTION),
    (b"Keep-Alive", b"keep-alive", HeaderName::from_static("keep-alive")),
    (b"Set-Cookie", b"set-cookie", header::SET_COOKIE),
];
static LEN_12: [Known; 1] = [(b"Content-Type", b"content-type", header::CONTENT_TYPE)];
static LEN_13: [Known; 3] = [
    (b"Authorization", b"authorization", header::AUTHORIZATION),
    (b"Cache-Control", b"cache-control", header::CACHE_CONTROL),
    (b"Last-Modified", b"last-modified", header::LAST_MODIFIED),
];
static LEN_14: [Known; 1] = [(b"Content-Length", b"content-length", header::CONTENT_LENGTH)];
static LEN_15: [Known; 2] = [
    (b"Accept-Encoding", b"accept-encoding", header::ACCEPT_ENCODING),
    (b"Accept-Language", b"accept-language", header::ACCEPT_LANGUAGE),
];
static LEN_17: [Known; 1] = [(b"Transfer-Encoding", b"transfer-encoding", header::TRANSFER_ENCODING)];

/// The header name spelt by `bytes`, as `HeaderName::from_bytes` would make it.
pub fn from_wire(bytes: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
    let known: &[Known] = match bytes.len() {
        4 => &LEN_4,
        6 => &LEN_6,
        10 => &LEN_10,
        12 => &LEN_12,
        13 => &LEN_13,
        14 => &LEN_14,
        15 => &LEN_15,
        17 => &LEN_17,
        _ => &[],
    };
    for (canonical, lower, name) in known {
        if bytes == *canonical || bytes == *lower {
            return Ok(name.clone());
        }
    }
    HeaderName::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_from_bytes() {
        let tables: [&[Known]; 8] = [&LEN_4, &LEN_6, &LEN_10, &LEN_12, &LEN_13, &LEN_14, &LEN_15, &LEN_17];
        for (canonical, lower, name) in tables.iter().flat_map(|t| t.iter()) {
            assert_eq!(canonical.len(), lower.len());
            assert_eq!(HeaderName::from_bytes(canonical).unwrap(), *name);
            assert_eq!(from_wire(canonical).unwrap(), *name);
            assert_eq!(from_wire(lower).unwrap(), *name);
        }
        for other in [&b"CONTENT-LENGTH"[..], b"X-Custom", b"hOsT", b"x-request-id"] {
            assert_eq!(from_wire(other).unwrap(), HeaderName::from_bytes(other).unwrap());
        }
        assert!(from_wire(b"bad name").is_err());
        assert!(from_wire(b"").is_err());
    }
}

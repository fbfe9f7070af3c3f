//! The gateway's HTTP semantics, shared by every protocol path and below
//! the engine: path normalization, forwarded headers, request ids, problem
//! responses, and fetching documents (JWKS, introspection). The HTTP/1.1
//! wire machinery is in `crate::wire`.

pub mod client_body;
pub mod conn;
pub mod error;
pub mod fetch;
pub mod forwarded;
pub mod normalize;
pub mod problem;
pub mod request_body;
pub mod request_id;

/// A response the gateway makes itself (a problem, a preflight answer, a
/// responder's reply): complete bytes. The engine wraps it into its body type.
pub type Answer = ::http::Response<bytes::Bytes>;

/// A URL from the config as a message may show it (messages reach logs,
/// CI output and `reload` answers): its user part and its query's values
/// replaced (`redis://<redacted>@host:6379/0`, `https://idp/jwks?key=<redacted>`).
pub fn url_in_message(url: &str) -> String {
    const HIDDEN: &str = "<redacted>";
    let url = url.split('#').next().unwrap_or(url);
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut out = String::with_capacity(url.len());
    match base[authority_start..authority_end].rfind('@') {
        Some(at) => {
            out.push_str(&base[..authority_start]);
            out.push_str(HIDDEN);
            out.push_str(&base[authority_start + at..]);
        }
        None => out.push_str(base),
    }
    if let Some(q) = query {
        out.push('?');
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) => format!("{name}={HIDDEN}"),
                None => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_in_messages_keep_no_credentials() {
        let shown = super::url_in_message;
        assert_eq!(shown("redis://:pw@redis:6379/0"), "redis://<redacted>@redis:6379/0");
        assert_eq!(shown("https://u:p@h/a@b?key=k&v=2#t=x"), "https://<redacted>@h/a@b?key=<redacted>&v=<redacted>");
        assert_eq!(shown("http://10.0.0.1:80"), "http://10.0.0.1:80");
        assert_eq!(shown("not a url"), "not a url");
    }
}

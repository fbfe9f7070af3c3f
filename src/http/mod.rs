//! The gateway's HTTP semantics, shared by every protocol path and below
//! the engine: path normalization, forwarded headers, request ids, problem
//! responses, and fetching documents (JWKS, introspection). The HTTP/1.1
//! wire machinery is in `crate::wire`.

pub mod buffer_budget;
pub mod client_body;
pub mod conn;
pub mod error;
pub mod fetch;
pub mod forwarded;
pub mod json;
pub mod normalize;
pub mod problem;
pub mod request_body;
pub mod request_id;

/// A response the gateway makes itself (a problem, a preflight answer, a
/// responder's reply): complete bytes. The engine wraps it into its body type.
pub type Answer = ::http::Response<bytes::Bytes>;

/// Where a URL's user part (`user:password`, before `@`) is, to hide it:
/// after `scheme:` and the slashes that follow, or after the `//` of a
/// network-path reference (RFC 3986 §4.2), up to the last `@` before the
/// authority ends. Browsers read `\` as `/` and any number of slashes
/// after a special scheme (the WHATWG URL standard), so both are read so
/// here too: a password is found wherever some reader would find one. A
/// `\` does not end the authority, though: for other schemes it is a
/// byte of the password (`redis://:pa\ss@host` authenticates with
/// `pa\ss`), so the part hidden runs to the last `@` before `/`, `?` or
/// `#` (for a browser's URL, that may hide more than its user part).
pub fn user_part(url: &[u8]) -> Option<std::ops::Range<usize>> {
    let slashes = |from: usize| url[from..].iter().take_while(|&&b| b == b'/' || b == b'\\').count();
    let scheme = url.iter().position(|&b| b == b':').filter(|&colon| {
        url[0].is_ascii_alphabetic()
            && url[1..colon].iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    });
    let start = match scheme {
        Some(colon) => colon + 1 + slashes(colon + 1),
        None if slashes(0) >= 2 => slashes(0),
        None => return None,
    };
    let end = url[start..].iter().position(|&b| matches!(b, b'/' | b'?' | b'#')).map_or(url.len(), |i| start + i);
    url[start..end].iter().rposition(|&b| b == b'@').map(|at| start..start + at)
}

/// Whether an authority has a port written that is not 1 to 65535 (`:0`,
/// `:99999`, `:` alone, `:+80`): such a URL reaches nothing.
/// (`Authority::port` is `None` for a number too large: the text is read.)
pub fn bad_port(authority: &http::uri::Authority) -> bool {
    // After the user part: `u:pw@h` has no port.
    let raw = authority.as_str().rsplit_once('@').map_or(authority.as_str(), |(_, host)| host);
    let after_host = raw.rsplit_once(']').map_or(raw, |(_, rest)| rest);
    let Some((_, port)) = after_host.rsplit_once(':') else { return false };
    !port.bytes().all(|b| b.is_ascii_digit()) || authority.port_u16().is_none_or(|p| p == 0)
}

/// The problem with a config URL's port, if it has one that reaches nothing.
pub fn port_fault(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    bad_port(uri.authority()?).then(|| format!("`{}`: a port is a number from 1 to 65535", url_in_message(url)))
}

/// What is wrong with a URL the gateway fetches from (JWKS, discovery,
/// token introspection), if anything: it must be `http://` or `https://`
/// (`ftp://`, a typo such as `htp://`, fetched nothing and failed every
/// request), with a port that reaches something, and without a user and
/// password (never sent: credentials go in the settings made for them).
pub fn fetch_url_fault(url: &str) -> Option<String> {
    let shown = url_in_message(url);
    let Ok(uri) = url.parse::<http::Uri>() else {
        return Some(format!("`{shown}` is not an absolute http(s) URL"));
    };
    let http = matches!(uri.scheme_str().map(str::to_ascii_lowercase).as_deref(), Some("http" | "https"));
    match uri.authority() {
        _ if !http => Some(format!("`{shown}` is not an http(s) URL: write `https://host/path`")),
        None => Some(format!("`{shown}` is not an absolute http(s) URL")),
        Some(a) if a.as_str().contains('@') => {
            Some(format!("`{shown}`: a user and password in the URL are not sent; remove them"))
        }
        Some(_) => port_fault(url),
    }
}

/// A URL from the config as a message may show it (messages reach logs,
/// CI output and `reload` answers): its user part and its query's values
/// replaced (`redis://<redacted>@host:6379/0`, `https://idp/jwks?key=<redacted>`).
pub fn url_in_message(url: &str) -> String {
    const HIDDEN: &str = "<redacted>";
    // A password written raw with `/`, `?` or `#` in it (`redis://:pa/ss@h`)
    // ends the user part early for every reader, and the URL is refused:
    // but the message must not show it. A `:` before the last `@` of the
    // whole text: all of that goes (more than a user part, for a URL with
    // an `@` in its query; a message may hide too much, never too little).
    let (prefix, after) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    // So does one with an `@` and then a `/` (`Pa@ss/wd@host`): the user
    // part found ends at the first `@`, and another follows it.
    let base = url.split(['?', '#']).next().unwrap_or(url);
    let found_end = user_part(base.as_bytes()).map(|user| user.end);
    if let Some(at) = after.rfind('@')
        && after[..at].contains(':')
        && match found_end {
            None => after[..at].contains(['/', '?', '#']),
            Some(end) => prefix.len() + at > end,
        }
    {
        return format!("{prefix}{HIDDEN}{}", url_in_message(&after[at..]));
    }
    let url = url.split('#').next().unwrap_or(url);
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    // A text that is no URL (`rediss//:pw@host`, a missing `:`) may
    // still hold a password before an `@`: all of it before the last `@`
    // goes when a `:` precedes it.
    let unparsed = || {
        (!base.contains("://"))
            .then(|| base.rfind('@'))
            .flatten()
            .filter(|&at| base[..at].contains(':'))
            .map(|at| 0..at)
    };
    match user_part(base.as_bytes()).or_else(unparsed) {
        // The range ends at ASCII bytes (`@`, and `:` or a slash): char boundaries.
        Some(user) => {
            out.push_str(&base[..user.start]);
            out.push_str(HIDDEN);
            out.push_str(&base[user.end..]);
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
        // An `@` after the user part: all of it up to the last `@` goes (a
        // password with `@` and `/`; a message may hide a path's `@` too).
        assert_eq!(shown("https://u:p@h/a@b?key=k&v=2#t=x"), "https://<redacted>@b?key=<redacted>&v=<redacted>");
        assert_eq!(shown("redis://:Pa@ssw/rd@127.0.0.1:6379/0"), "redis://<redacted>@127.0.0.1:6379/0");
        assert_eq!(shown("http://10.0.0.1:80"), "http://10.0.0.1:80");
        assert_eq!(shown("not a url"), "not a url");
        assert_eq!(shown("//u:p@h/x"), "//<redacted>@h/x");
        assert_eq!(shown("https:\\\\u:p@h/x"), "https:\\\\<redacted>@h/x");
        assert_eq!(shown("/x@y"), "/x@y");
        assert_eq!(shown(""), "");
        assert_eq!(shown(":@"), "<redacted>@");
        assert_eq!(shown("rediss//:LEAKED@host"), "<redacted>@host", "no scheme: still no password");
        assert_eq!(shown("redis:/u:LEAKED@host"), "redis:/<redacted>@host");
        // A password written raw with `/`, `?` or `#`: refused as a URL, never shown.
        for raw in
            ["redis://:pa/ss@127.0.0.1:6379/0", "redis://:pa?ss@127.0.0.1:6379/0", "redis://:pa#ss@127.0.0.1:6379/0"]
        {
            assert_eq!(shown(raw), "redis://<redacted>@127.0.0.1:6379/0", "{raw}");
        }
        assert_eq!(shown("http://u:pa/ss@h:1/x?k=v"), "http://<redacted>@h:1/x?k=<redacted>");
    }

    #[test]
    fn fetched_urls_are_http_without_credentials() {
        let fault = super::fetch_url_fault;
        assert_eq!(fault("https://idp.example/jwks"), None);
        assert_eq!(fault("HTTP://127.0.0.1:8080/introspect"), None);
        for bad in ["ftp://127.0.0.1/x", "htp://h/x", "gopher://h/j", "/relative", "idp.example/jwks", "https://h:0/x"]
        {
            assert!(fault(bad).is_some(), "{bad}");
        }
        let said = fault("http://u:pw@h/x").unwrap();
        assert!(said.contains("user and password") && !said.contains("pw"), "{said}");
        assert!(!super::port_fault("http://u:pw@h/x").is_some_and(|f| f.contains("port")), "no port there");
    }
}

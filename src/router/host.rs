//! Host matching: exact names and `*.example.com` wildcards.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// Lower-case host name.
    Exact(Box<str>),
    /// Lower-case suffix including the dot: `.example.com` matches any subdomain.
    Suffix(Box<str>),
}

impl HostMatch {
    /// A host as a route names it: a DNS name (its FQDN spelling with a
    /// trailing `.` is the same host, as requests are read), whose labels
    /// may hold `_` (requests with such hosts are taken, so routes may
    /// name them), or `*.` and a domain.
    pub fn parse(text: &str) -> Result<HostMatch, String> {
        let lower = text.trim().to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower).to_string();
        let valid = |s: &str| {
            !s.is_empty()
                && s.split('.')
                    .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        };
        if let Some(rest) = lower.strip_prefix("*.") {
            if valid(rest) {
                return Ok(HostMatch::Suffix(format!(".{rest}").into()));
            }
        } else if valid(&lower) {
            return Ok(HostMatch::Exact(lower.into()));
        }
        // A name in Unicode: requests carry its ASCII (punycode) form.
        let name = lower.strip_prefix("*.").unwrap_or(&lower);
        if !name.is_ascii()
            && let Ok(url::Host::Domain(ascii)) = url::Host::parse(name)
        {
            let wildcard = if lower.starts_with("*.") { "*." } else { "" };
            return Err(format!(
                "`{text}` is written in Unicode: requests name it in its ASCII form, write `{wildcard}{ascii}`"
            ));
        }
        Err(format!("`{text}` is not a host name or `*.domain` wildcard (ports are not part of the match)"))
    }

    /// `host` is the request's host without port, in any case.
    pub fn matches(&self, host: Option<&str>) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => host.is_some_and(|x| x.eq_ignore_ascii_case(h)),
            HostMatch::Suffix(s) => host.is_some_and(|x| {
                x.len() > s.len() && x.as_bytes()[x.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }),
        }
    }

    /// Exact > longer wildcard > shorter wildcard > any.
    pub fn specificity(&self, other: &HostMatch) -> Ordering {
        fn rank(h: &HostMatch) -> (u8, usize) {
            match h {
                HostMatch::Any => (0, 0),
                HostMatch::Suffix(s) => (1, s.len()),
                HostMatch::Exact(_) => (2, 0),
            }
        }
        rank(self).cmp(&rank(other))
    }

    pub fn overlaps(&self, other: &HostMatch) -> bool {
        use HostMatch::*;
        match (self, other) {
            (Any, _) | (_, Any) => true,
            (Exact(a), Exact(b)) => a == b,
            (Exact(e), Suffix(s)) | (Suffix(s), Exact(e)) => e.len() > s.len() && e.ends_with(&**s),
            (Suffix(a), Suffix(b)) => a.ends_with(&**b) || b.ends_with(&**a),
        }
    }

    pub fn covers(&self, other: &HostMatch) -> bool {
        use HostMatch::*;
        match (self, other) {
            (Any, _) => true,
            (Exact(a), Exact(b)) => a == b,
            (Suffix(s), Exact(e)) => e.len() > s.len() && e.ends_with(&**s),
            (Suffix(a), Suffix(b)) => b.ends_with(&**a),
            _ => false,
        }
    }
}

/// The host a request names: `Host` (HTTP/1.1) or the URI authority (HTTP/2),
/// without port and without a trailing dot (`example.com.` is `example.com`;
/// admission has checked the form).
pub fn request_host<'a>(uri: &'a http::Uri, headers: &'a http::HeaderMap) -> Option<&'a str> {
    host_of(uri, headers.get(http::header::HOST))
}

/// The same, from a `Host` value the caller already has.
pub fn host_of<'a>(uri: &'a http::Uri, host_header: Option<&'a http::HeaderValue>) -> Option<&'a str> {
    let raw = match uri.authority() {
        Some(a) => a.host(),
        None => host_header?.to_str().ok()?,
    };
    // Strip a port, keeping IPv6 literals (`[::1]:80`) intact.
    let host = match raw.rfind(':') {
        Some(i) if !raw[i..].contains(']') => &raw[..i],
        _ => raw,
    };
    Some(host.strip_suffix('.').unwrap_or(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let w = HostMatch::parse("*.Example.com").unwrap();
        assert!(w.matches(Some("api.example.COM")));
        assert!(w.matches(Some("a.b.example.com")));
        assert!(!w.matches(Some("example.com")));
        assert!(!w.matches(None));
        assert!(HostMatch::parse("bad host").is_err());
        let unicode = HostMatch::parse("*.Bücher.example").err().unwrap();
        assert!(unicode.contains("write `*.xn--bcher-kva.example`"), "{unicode}");
        let uri: http::Uri = "/".parse().unwrap();
        let host = http::HeaderValue::from_static("API.example.com.:8080");
        assert!(HostMatch::parse("api.example.com").unwrap().matches(host_of(&uri, Some(&host))));
        assert!(w.covers(&HostMatch::parse("x.example.com").unwrap()));
        // The FQDN spelling and `_` in labels, as requests carry them.
        let fqdn = HostMatch::parse("API.example.com.").unwrap();
        assert!(fqdn.matches(host_of(&uri, Some(&host))));
        let under = http::HeaderValue::from_static("admin_x.example.com");
        assert!(HostMatch::parse("admin_x.example.com").unwrap().matches(host_of(&uri, Some(&under))));
        assert!(HostMatch::parse("api..example.com").is_err() && HostMatch::parse("*.").is_err());
    }
}

//! API version selection by header (`Accept-Version: 2`) or by a media-type
//! parameter (`Accept: application/json; version=2`). Versions in the path
//! (`/v2/...`) are folded into the path pattern instead.

use http::{HeaderMap, HeaderName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSource {
    Header(HeaderName),
    /// A parameter of the `Accept` media type.
    AcceptParam(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMatch {
    pub source: VersionSource,
    pub value: Box<str>,
    /// Also match requests that carry no version.
    pub default: bool,
}

/// The versions a request asks for: none, one, or several (two
/// `Accept-Version` fields, `Accept-Version: 1, 2`, or two media ranges
/// with different parameters), where the gateway would route by one and
/// the service might read another.
#[derive(Debug, PartialEq, Eq)]
enum Requested {
    None,
    One(String),
    /// Two or more, the first two of them.
    Several(String, String),
}

impl VersionMatch {
    #[cfg(test)]
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        self.decide(headers) == Some(true)
    }

    /// Whether the request asks for this version (or none, for the
    /// `default`); `None` when it names this version beside another.
    pub fn decide(&self, headers: &HeaderMap) -> Option<bool> {
        match self.requested(headers) {
            Requested::One(v) => Some(same_version(&v, &self.value)),
            Requested::None => Some(self.default),
            Requested::Several(..) if self.named(headers) => None,
            Requested::Several(..) => Some(false),
        }
    }

    /// Whether any version the request names is this one.
    fn named(&self, headers: &HeaderMap) -> bool {
        let mut found = false;
        self.each_requested(headers, |v| found |= same_version(v, &self.value));
        found
    }

    /// The header the version is read from (for an answer that names it).
    pub fn header_name(&self) -> HeaderName {
        match &self.source {
            VersionSource::Header(name) => name.clone(),
            VersionSource::AcceptParam(_) => http::header::ACCEPT,
        }
    }

    fn requested(&self, headers: &HeaderMap) -> Requested {
        let mut found = Requested::None;
        self.each_requested(headers, |v| match &found {
            Requested::None => found = Requested::One(v.to_string()),
            Requested::One(seen) if same_version(seen, v) => {}
            Requested::One(seen) => found = Requested::Several(seen.clone(), v.to_string()),
            Requested::Several(..) => {}
        });
        found
    }

    /// Calls `see` with each version the request names.
    fn each_requested(&self, headers: &HeaderMap, mut see: impl FnMut(&str)) {
        match &self.source {
            VersionSource::Header(name) => {
                // `Accept-Version: 1, 2`: a service that splits it may read
                // either (an empty item, `2,`, names nothing).
                for value in headers.get_all(name) {
                    match value.to_str() {
                        Ok(v) => v.split(',').map(str::trim).filter(|p| !p.is_empty()).for_each(&mut see),
                        Err(_) => see("\u{fffd}"),
                    }
                }
            }
            VersionSource::AcceptParam(param) => {
                for accept in headers.get_all(http::header::ACCEPT) {
                    // Read whole even with a byte beyond ASCII in another
                    // parameter: skipped, its version was routed past.
                    let accept = String::from_utf8_lossy(accept.as_bytes());
                    for (name, value) in media_params(&accept) {
                        if name.eq_ignore_ascii_case(param) {
                            see(&value);
                        }
                    }
                }
            }
        }
    }

    /// Whether one request could satisfy both.
    pub fn overlaps(&self, other: &VersionMatch) -> bool {
        self.source != other.source || same_version(&self.value, &other.value) || (self.default && other.default)
    }

    pub fn covers(&self, other: &VersionMatch) -> bool {
        self.source == other.source && same_version(&self.value, &other.value) && (self.default || !other.default)
    }
}

/// Whether two spellings name one version: quotes aside (`"2"`), and a
/// version of numbers compared by number (`2`, `2.0`, `02`, `v2`), as
/// ASP.NET API Versioning and other services read them. Compared as
/// written, `Accept-Version: 2.0` missed the route for `2` and fell to a
/// broader one, while the service behind served its version 2.
fn same_version(a: &str, b: &str) -> bool {
    let (a, b) = (unquoted(a), unquoted(b));
    a == b || numbers(a).is_some_and(|x| numbers(b).is_some_and(|y| x == y))
}

fn unquoted(v: &str) -> &str {
    v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v).trim()
}

/// `v2.10` as the numbers 2 and 10 with trailing zeros left out (`2.0` is
/// `2`), each without its leading zeros; `None` if it is not all numbers.
fn numbers(v: &str) -> Option<Vec<&str>> {
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let mut parts: Vec<&str> = Vec::new();
    for p in v.split('.') {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parts.push(match p.trim_start_matches('0') {
            "" => "0",
            n => n,
        });
    }
    while parts.len() > 1 && parts.last() == Some(&"0") {
        parts.pop();
    }
    Some(parts)
}

/// The parameters of every media range in an `Accept` value, read as RFC
/// 9110 §5.6.6 writes them: `;` and `,` inside a quoted string are part of
/// the value (`x="a;version=2"` is no `version`), quotes and `\` escapes
/// removed.
fn media_params(accept: &str) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    let bytes = accept.as_bytes();
    let mut i = 0;
    // Skip to the first `;` of the current media range (or its end).
    while i < bytes.len() {
        match bytes[i] {
            b';' => {
                i += 1;
                let start = i;
                while i < bytes.len() && !matches!(bytes[i], b'=' | b';' | b',') {
                    i += 1;
                }
                let name = accept[start..i].trim();
                let mut value = String::new();
                if i < bytes.len() && bytes[i] == b'=' {
                    i += 1;
                    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
                        i += 1;
                    }
                    if i < bytes.len() && bytes[i] == b'"' {
                        i += 1;
                        while i < bytes.len() && bytes[i] != b'"' {
                            if bytes[i] == b'\\' && i + 1 < bytes.len() {
                                i += 1;
                            }
                            let ch = accept[i..].chars().next().unwrap_or('\u{fffd}');
                            value.push(ch);
                            i += ch.len_utf8();
                        }
                        i += 1;
                    } else {
                        let start = i;
                        while i < bytes.len() && !matches!(bytes[i], b';' | b',') {
                            i += 1;
                        }
                        value.push_str(accept[start..i].trim());
                    }
                }
                out.push((name, value));
            }
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_param() {
        let v =
            VersionMatch { source: VersionSource::AcceptParam("version".into()), value: "2".into(), default: false };
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, "application/json; version=2".parse().unwrap());
        assert!(v.matches(&h));
        h.insert(http::header::ACCEPT, "application/json;version=\"1\"".parse().unwrap());
        assert!(!v.matches(&h));
        assert!(!v.matches(&HeaderMap::new()));
        // Inside a quoted string, `;` and `=` are the value's.
        h.insert(http::header::ACCEPT, r#"application/json; x="a;version=2", text/plain; q=0.5"#.parse().unwrap());
        assert!(!v.matches(&h));
        h.insert(http::header::ACCEPT, r#"application/json; x="a,b\"c"; version="2""#.parse().unwrap());
        assert!(v.matches(&h));
        // Two versions asked for: neither is taken.
        h.insert(http::header::ACCEPT, "application/json; version=2, application/xml; version=1".parse().unwrap());
        assert!(!v.matches(&h));
        h.insert(http::header::ACCEPT, "application/json; version=2".parse().unwrap());
        h.append(http::header::ACCEPT, "text/html; version=2".parse().unwrap());
        assert!(v.matches(&h));
        // A byte beyond ASCII in another parameter does not hide the version.
        h.insert(http::header::ACCEPT, http::HeaderValue::from_bytes(b"application/json; version=2; x=\xE9").unwrap());
        assert!(v.matches(&h));
    }

    #[test]
    fn a_version_header_given_twice_matches_only_when_both_agree() {
        let name = HeaderName::from_static("accept-version");
        let v = VersionMatch { source: VersionSource::Header(name.clone()), value: "1".into(), default: true };
        let mut h = HeaderMap::new();
        h.append(&name, "1".parse().unwrap());
        h.append(&name, " 1".parse().unwrap());
        assert!(v.matches(&h));
        h.append(&name, "2".parse().unwrap());
        assert!(!v.matches(&h), "1 and 2: ambiguous, not even the default");
    }

    /// One version in other spellings is that version: quoted, with
    /// trailing zeros, leading zeros, a `v`; and two spellings of it agree.
    #[test]
    fn spellings_of_a_number_are_one_version() {
        let name = HeaderName::from_static("accept-version");
        let v = VersionMatch { source: VersionSource::Header(name.clone()), value: "2".into(), default: false };
        for same in ["2", "\"2\"", "2.0", "02", "2.0.0", "v2", "V2.0"] {
            let mut h = HeaderMap::new();
            h.insert(&name, same.parse().unwrap());
            assert!(v.matches(&h), "{same}");
        }
        for other in ["3", "2.1", "20", "0.2", "2a", "two", "v", "", "2..0", "\"2"] {
            let mut h = HeaderMap::new();
            h.insert(&name, other.parse().unwrap());
            assert!(!v.matches(&h), "{other}");
        }
        let mut h = HeaderMap::new();
        h.insert(&name, "2, 2.0".parse().unwrap());
        assert!(v.matches(&h), "one version twice is not two");
        let v10 = VersionMatch { value: "1.0".into(), ..v.clone() };
        assert!(v10.overlaps(&VersionMatch { value: "1".into(), ..v.clone() }), "one version on two routes");
        assert!(!v10.overlaps(&v));
    }
}

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

impl VersionMatch {
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        match self.requested(headers) {
            Some(v) => v == &*self.value,
            None => self.default,
        }
    }

    fn requested<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        match &self.source {
            VersionSource::Header(name) => headers.get(name)?.to_str().ok().map(str::trim),
            VersionSource::AcceptParam(param) => {
                let accept = headers.get(http::header::ACCEPT)?.to_str().ok()?;
                accept.split(',').flat_map(|media| media.split(';').skip(1)).find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim().eq_ignore_ascii_case(param).then(|| v.trim().trim_matches('"'))
                })
            }
        }
    }

    /// Whether one request could satisfy both.
    pub fn overlaps(&self, other: &VersionMatch) -> bool {
        self.source != other.source || self.value == other.value || (self.default && other.default)
    }

    pub fn covers(&self, other: &VersionMatch) -> bool {
        self.source == other.source && self.value == other.value && (self.default || !other.default)
    }
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
    }
}

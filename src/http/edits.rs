//! How a client's request headers change on their way upstream, kept as a
//! list of edits rather than made to the map: the HTTP/1.1 upstream codec
//! writes the client's lines that `forwards` lets through and then the
//! lines set here, in one pass (no map insert or remove per request);
//! every other client (hyper) gets the same edits made to the map by
//! `apply`. Both give the same headers (tested in `upstream::h1::codec`).
//!
//! Left out: hop-by-hop lines (those named in `Connection` too; `TE:
//! trailers` survives), `Expect` (the gateway answers `100 Continue`
//! itself), and every name that is set here.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

use super::forwarded::X_FORWARDED_HOST;
use super::hop_by_hop;

#[derive(Debug, Default)]
pub struct HeaderEdits {
    /// Set, replacing the client's lines of the same name, in this order
    /// (inline: a request sets four, X-Forwarded-For/Proto/Host and
    /// X-Request-Id; the edits live in the request's future, which is moved
    /// whole, so they are not made roomier than that).
    set: SmallVec<[(HeaderName, HeaderValue); 4]>,
    /// `Host` for the upstream, when it is not the client's own line.
    host: Option<HeaderValue>,
    /// Client lines left out without replacement.
    drop_forwarded: bool,
    drop_forwarded_host: bool,
    /// Names the client's `Connection` lists (hop-by-hop too).
    listed: Vec<HeaderName>,
}

impl HeaderEdits {
    /// The edits every request gets, from the client's `headers`;
    /// `hop_by_hop`: whether any of them is hop-by-hop (the caller's pass
    /// over the names found out; most requests carry none).
    pub fn new(headers: &HeaderMap, hop_by_hop: bool) -> HeaderEdits {
        let mut edits = HeaderEdits::default();
        if hop_by_hop {
            edits.listed = hop_by_hop::listed_in_connection(headers);
        }
        edits
    }

    /// Sets `name` to `value` upstream, whatever the client sent.
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        if name == header::HOST {
            self.host = Some(value);
        } else {
            self.set.push((name, value));
        }
    }

    /// `Forwarded` from the client is not passed on.
    pub fn drop_forwarded(&mut self) {
        self.drop_forwarded = true;
    }

    /// `X-Forwarded-Host` from the client is not passed on.
    pub fn drop_forwarded_host(&mut self) {
        self.drop_forwarded_host = true;
    }

    /// The `Host` to send, when it replaces the client's.
    pub fn host(&self) -> Option<&HeaderValue> {
        self.host.as_ref()
    }

    /// Whether the client's line `name: value` goes upstream.
    pub fn forwards(&self, name: &HeaderName, value: &HeaderValue) -> bool {
        if hop_by_hop::is_hop_by_hop(name) {
            return name == header::TE && value.as_bytes().eq_ignore_ascii_case(b"trailers");
        }
        !(name == header::EXPECT
            || (name == header::HOST && self.host.is_some())
            || (self.drop_forwarded && name == header::FORWARDED)
            || (self.drop_forwarded_host && name == X_FORWARDED_HOST)
            || self.set.iter().any(|(n, _)| n == name)
            || (!self.listed.is_empty() && self.listed.contains(name)))
    }

    /// The lines set, after the client's (`Host` aside, see `host`).
    pub fn lines(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.set.iter().map(|(n, v)| (n, v))
    }

    /// Makes the same edits to a map.
    pub fn apply(self, headers: &mut HeaderMap) {
        // The fixed hop-by-hop names and those `Connection` lists (`TE: trailers` stays).
        hop_by_hop::strip(headers, true);
        headers.remove(header::EXPECT);
        if self.drop_forwarded {
            headers.remove(header::FORWARDED);
        }
        if self.drop_forwarded_host {
            headers.remove(&X_FORWARDED_HOST);
        }
        if let Some(host) = self.host {
            headers.insert(header::HOST, host);
        }
        for (name, value) in self.set {
            headers.insert(name, value);
        }
    }
}

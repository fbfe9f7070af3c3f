//! How a client's request headers change on their way upstream, kept as a
//! list of edits rather than made to the map: the HTTP/1.1 upstream codec
//! writes the client's lines that `forwards` lets through and then the
//! lines set here, in one pass (no map insert or remove per request);
//! every other client (hyper) gets the same edits made to the map by
//! `apply`. Both give the same headers (tested in `wire::upstream_head`).
//!
//! Left out: hop-by-hop lines (`TE: trailers` survives; the names a
//! client's `Connection` lists were removed when the request arrived, see
//! `hop_by_hop::strip`), `Expect` (the gateway answers `100 Continue`
//! itself), every name that is set here, and the client's framing lines:
//! the upstream request is framed from the body the gateway sends
//! (`RequestFraming`), never from what the client wrote.

use http::Method;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

use super::hop_by_hop;
use super::names::X_FORWARDED_HOST;

#[derive(Debug, Default)]
pub struct HeaderEdits<'a> {
    /// Set, replacing the client's lines of the same name, in this order
    /// (inline: a proxied request sets five, X-Forwarded-For/Proto/Host,
    /// X-Request-Id and traceparent; with room for four, every request
    /// spilled to the heap, ~300 instructions with mimalloc's slow path. The
    /// edits live in the request's future, which is moved whole, so they
    /// are not made roomier than that; a WebSocket upgrade's two more spill).
    set: SmallVec<[(HeaderName, HeaderValue); 5]>,
    /// `Host` for the upstream, when it is not the client's own line.
    host: Option<HeaderValue>,
    /// Client lines left out without replacement.
    drop_forwarded: bool,
    drop_forwarded_host: bool,
    /// Added after the set lines: names the client's request cannot carry
    /// (removed when it arrived), each with its value where it has one.
    /// Borrowed: the identity headers, rendered once per identity.
    added: Option<(&'a [HeaderName], &'a [Option<HeaderValue>])>,
}

/// How the upstream request's body is framed: decided from the body the
/// gateway is about to send (its exact size when it knows it), never from
/// the client's `Content-Length` or `Transfer-Encoding` lines, which may
/// have been removed, doubled or written to be read two ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body and no framing line.
    Empty,
    /// `content-length: n`, and exactly n bytes (0 for an empty POST, PUT
    /// or PATCH: RFC 9110 §8.6 asks for it where a body is expected).
    Length(u64),
    /// `transfer-encoding: chunked` (a body of unknown length: a chunked
    /// HTTP/1.1 body, an HTTP/2 body without `content-length`).
    Chunked,
}

impl RequestFraming {
    pub fn of(method: &Method, body: &impl http_body::Body) -> RequestFraming {
        if body.is_end_stream() {
            let expects_body = *method == Method::POST || *method == Method::PUT || *method == Method::PATCH;
            return if expects_body { RequestFraming::Length(0) } else { RequestFraming::Empty };
        }
        match body.size_hint().exact() {
            Some(n) => RequestFraming::Length(n),
            None => RequestFraming::Chunked,
        }
    }

    /// Whether body bytes follow the head.
    pub fn has_body(self) -> bool {
        !matches!(self, RequestFraming::Empty | RequestFraming::Length(0))
    }

    /// Whether the request carries a body on a method some servers read
    /// without one (`GET`, `HEAD`, `DELETE`, `OPTIONS`: static-file and
    /// redirect handlers that skip `Content-Length` there, the "CL.0"
    /// desync): such a server would read the body as the connection's next
    /// request, one no policy looked at, and its answer would go to
    /// whichever client the pooled connection served next. So that request
    /// goes with `Connection: close` and its connection is never reused
    /// (NGINX and Envoy reuse it). Elasticsearch-style `GET` bodies still
    /// work, one connection each.
    pub fn body_may_be_misread(self, method: &Method) -> bool {
        self.has_body()
            && (*method == Method::GET
                || *method == Method::DELETE
                || *method == Method::OPTIONS
                || *method == Method::HEAD)
    }
}

impl<'a> HeaderEdits<'a> {
    /// Sets `name` to `value` upstream, whatever the client sent.
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        if name == header::HOST {
            self.host = Some(value);
        } else {
            self.set.push((name, value));
        }
    }

    /// Adds `names[i]: values[i]` where `values[i]` is `Some`. The caller
    /// has removed these names from the client's request: they are not
    /// checked against its lines.
    pub fn add(&mut self, names: &'a [HeaderName], values: &'a [Option<HeaderValue>]) {
        self.added = Some((names, values));
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
        !(name == header::CONTENT_LENGTH
            || name == header::EXPECT
            || (name == header::HOST && self.host.is_some())
            || (self.drop_forwarded && name == header::FORWARDED)
            || (self.drop_forwarded_host && name == X_FORWARDED_HOST)
            || self.set.iter().any(|(n, _)| n == name))
    }

    /// The lines set and added, after the client's (`Host` aside, see `host`).
    pub fn lines(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        let (names, values) = self.added.unwrap_or_default();
        let added = names.iter().zip(values).filter_map(|(n, v)| Some((n, v.as_ref()?)));
        self.set.iter().map(|(n, v)| (n, v)).chain(added)
    }

    /// Makes the same edits to a map, framed as `framing` says (hyper's
    /// client then frames the body by that line and the body's size).
    pub fn apply(self, headers: &mut HeaderMap, framing: RequestFraming) {
        // The fixed hop-by-hop names (`TE: trailers` stays).
        hop_by_hop::strip_fixed(headers, true);
        headers.remove(header::EXPECT);
        headers.remove(header::CONTENT_LENGTH);
        if let RequestFraming::Length(n) = framing {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        if self.drop_forwarded {
            headers.remove(header::FORWARDED);
        }
        if self.drop_forwarded_host {
            headers.remove(&X_FORWARDED_HOST);
        }
        if let Some(host) = self.host {
            headers.insert(header::HOST, host);
        }
        if let Some((names, values)) = self.added {
            for (name, value) in names.iter().zip(values) {
                if let Some(value) = value {
                    headers.insert(name.clone(), value.clone());
                }
            }
        }
        for (name, value) in self.set {
            headers.insert(name, value);
        }
    }
}

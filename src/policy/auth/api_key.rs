//! API keys: read from a header or query parameter, hashed with SHA-256 and
//! looked up among the consumers' key hashes.

use std::sync::Arc;

use http::{HeaderName, request};

use super::config::ApiKeyConfig;
use super::{Consumers, Failure, Identity};
use crate::config::FieldErrors;
use crate::policy::clock::WallClock;
use crate::policy::compile::CompileCtx;

#[derive(Debug)]
pub struct ApiKey {
    name: Arc<str>,
    source: Source,
    consumers: Arc<Consumers>,
    /// Keys' `expires` are read against this.
    clock: WallClock,
}

/// What a request presents where a provider reads its key.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'r> {
    Absent,
    Key(&'r str),
    Unreadable,
}

#[derive(Debug)]
enum Source {
    Header(HeaderName),
    Query(String),
}

impl ApiKey {
    /// Where it reads its key, in words (two providers of a route reading
    /// the same place shadow each other).
    pub fn reads(&self) -> super::Place {
        match &self.source {
            Source::Header(h) if h == http::header::AUTHORIZATION => super::Place::Authorization(None),
            Source::Header(h) => super::Place::Header(h.as_str().to_string()),
            Source::Query(q) => super::Place::Query(q.clone()),
        }
    }

    pub fn compile(cfg: &ApiKeyConfig, cx: &mut CompileCtx<'_>) -> Result<ApiKey, FieldErrors> {
        let (name, consumers): (Arc<str>, _) = (cx.name.into(), super::consumers_of(cx));
        let source = match (&cfg.header, &cfg.query) {
            (Some(h), None) => {
                crate::wire::admit::readable_request_header(h).map_err(|e| FieldErrors::one("api_key.header", e))?;
                HeaderName::try_from(h.as_str())
                    .map(Source::Header)
                    .map_err(|_| FieldErrors::one("api_key.header", format!("`{h}` is not a header name")))?
            }
            (None, Some(q)) => Source::Query(q.clone()),
            _ => return Err(FieldErrors::one("api_key", "give exactly one of `header` or `query`")),
        };
        Ok(ApiKey { name, source, consumers, clock: WallClock::system() })
    }

    #[cfg(test)]
    pub fn set_clock(&mut self, clock: WallClock) {
        self.clock = clock;
    }

    /// The key the request presents. A header sent twice, or not as text,
    /// and a query parameter sent twice, or only in another spelling a
    /// service reads as it (`API_KEY`, `api%5Fkey`, `api_key[]`), are `Unreadable`:
    /// a credential that is there but cannot be checked is refused, never
    /// taken as absent (which would let a route fall back to anonymous or
    /// to its next provider with an unchecked key forwarded upstream).
    pub fn key<'r>(&self, req: &'r request::Parts) -> Presented<'r> {
        match &self.source {
            Source::Header(h) => {
                let mut lines = req.headers.get_all(h).iter();
                let (Some(line), None) = (lines.next(), lines.next()) else {
                    return if req.headers.contains_key(h) { Presented::Unreadable } else { Presented::Absent };
                };
                match line.to_str().map(str::trim) {
                    Ok("") => Presented::Absent,
                    Ok(key) => Presented::Key(key),
                    Err(_) => Presented::Unreadable,
                }
            }
            Source::Query(q) => {
                // The exact name once decides (other spellings beside it go
                // with it on success); other spellings alone, or the exact
                // name twice, cannot be checked.
                let Some(query) = req.uri.query() else { return Presented::Absent };
                let exact = query.split('&').filter(|p| p.split('=').next() == Some(q.as_str())).count();
                match (exact, query_param(query, q)) {
                    // Empty, as an empty header: no key (RFC 6750 §3.1's rule).
                    (1, Some("")) => Presented::Absent,
                    (1, Some(key)) => Presented::Key(key),
                    (0, _) if !query.split(['&', ';']).any(|p| names(p.split('=').next().unwrap_or(""), q)) => {
                        Presented::Absent
                    }
                    _ => Presented::Unreadable,
                }
            }
        }
    }

    /// Takes the key off the request (every spelling of a query key): it is
    /// for the gateway, not for the upstream.
    pub fn remove(&self, req: &mut request::Parts) {
        match &self.source {
            Source::Header(h) => {
                req.headers.remove(h);
            }
            Source::Query(q) => remove_query_param(req, q),
        }
    }

    pub fn authenticate(&self, req: &mut request::Parts) -> Result<Arc<Identity>, Failure> {
        let Presented::Key(key) = self.key(req) else { return Err(Failure::Invalid) };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
        let mut wanted = [0u8; 32];
        wanted.copy_from_slice(digest.as_ref());
        // Looked up by the digest of the presented key: timing depends on the
        // digest, which tells an attacker nothing about stored keys.
        let (consumer, expires) = self.consumers.by_key_hash.get(&wanted).ok_or(Failure::Invalid)?;
        if expires.is_some_and(|t| t <= self.clock.now()) {
            return Err(Failure::Invalid);
        }
        self.remove(req);
        Ok(Arc::new(Identity {
            provider: self.name.clone(),
            subject: consumer.id.to_string(),
            scopes: consumer.scopes.clone(),
            consumer: Some(consumer.clone()),
            claims: None,
            bearer: false,
            rendered: Default::default(),
        }))
    }
}

/// Removes every `name=` parameter from the request's query, in every
/// spelling some service reads as `name`: percent-encoded (`%74ok=`),
/// after a `;` (servers that still split on it), in another case
/// (ASP.NET), with brackets (`tok[]=`, PHP and Rails read an array) or
/// with `.`, a space or a lone `[` for `_`, or cut at a NUL (PHP's names).
/// Such a service would read a credential the gateway never checked.
/// What is not removed stays as written (empty pieces included).
pub(crate) fn remove_query_param(req: &mut request::Parts, name: &str) {
    let Some(q) = req.uri.query() else { return };
    let named = |p: &str| names(p.split('=').next().unwrap_or(""), name);
    if !q.split(['&', ';']).any(named) {
        return;
    }
    let kept: Vec<String> = q
        .split('&')
        .filter_map(|piece| {
            let parts: Vec<&str> = piece.split(';').collect();
            let left: Vec<&str> = parts.iter().copied().filter(|p| !named(p)).collect();
            // A piece that lost every part goes; one untouched stays as written.
            (!left.is_empty() || parts.iter().all(|p| p.is_empty())).then(|| left.join(";"))
        })
        .collect();
    let pq =
        if kept.is_empty() { req.uri.path().to_string() } else { format!("{}?{}", req.uri.path(), kept.join("&")) };
    let mut parts = req.uri.clone().into_parts();
    if let Ok(pq) = pq.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            req.uri = uri;
        }
    }
}

/// Whether a service could read the parameter or cookie name `written` as
/// `name` (see [`remove_query_param`]); `name` is the config's.
pub(crate) fn names(written: &str, name: &str) -> bool {
    let written = written.trim_matches([' ', '\t']);
    if written.eq_ignore_ascii_case(name) {
        return true;
    }
    let decoded = percent_encoding::percent_decode_str(&written.replace('+', " ")).decode_utf8_lossy().into_owned();
    // PHP ends a name at a NUL.
    let decoded = decoded.split('\0').next().unwrap_or("").trim_matches([' ', '\t']);
    let bracketed = decoded.find('[').is_some_and(|at| decoded[at..].contains(']'));
    // `a[b]` is `a` read as an array; a `[` without its `]` is PHP's `_`.
    let base = if bracketed { decoded.split('[').next().unwrap_or("") } else { decoded };
    base.eq_ignore_ascii_case(name) || base.replace(['.', ' ', '['], "_").eq_ignore_ascii_case(name)
}

/// The (first) value of `name` in a query string, still percent-encoded.
pub(crate) fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then_some(v)
    })
}

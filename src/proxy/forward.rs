//! Forwarding to an upstream: target choice, the upstream request's URI and
//! headers, timeouts, and tunnels for `Upgrade` (WebSocket).

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version, request};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::http::edits::HeaderEdits;
use crate::http::forwarded::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use crate::http::{forwarded, hop_by_hop, request_id};
use crate::plan::{HostRewrite, Proxy};
use crate::upstream::HashKey;

use super::request_body::{BodyError, RequestBody};

use super::ConnInfo;
use super::body::{Body, PooledBody};
use super::error::{BoxError, GatewayError};

pub(super) struct Forward<'a> {
    pub proxy: &'a Proxy,
    pub conn: &'a ConnInfo,
    pub client: forwarded::Client,
    pub request_id: &'a HeaderValue,
    /// The normalized path that matched.
    pub path: &'a str,
    pub values: &'a [&'a str],
    /// The client's `Host`, as routing read it.
    pub host_header: Option<&'a HeaderValue>,
    /// The client sent some hop-by-hop header.
    pub hop_by_hop: bool,
}

/// Only HTTP/1.1 has `Upgrade`; HTTP/2 clients never get here with one.
pub(super) fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11 && hop_by_hop::upgrade_protocol(req.headers()).is_some()
}

// Not an `async fn`, for the reason given at `proxy::handle`.
#[allow(clippy::manual_async_fn)]
pub(super) fn forward(
    f: Forward<'_>,
    mut parts: request::Parts,
    mut body: RequestBody,
    client_upgrade: Option<OnUpgrade>,
) -> impl Future<Output = Result<Response<Body>, GatewayError>> {
    async move {
        let upstream = &f.proxy.upstream;
        let key = hash_key(upstream.balancer.hash_key(), &parts.headers, &f.client);
        let target = upstream.pick(key.as_deref());
        let in_flight = target.begin();

        // The path forwarded is the path that matched, rewritten as configured.
        let path = match &f.proxy.rewrite {
            Some(rw) => rw.apply(f.path, f.values),
            None => f.path.into(),
        };
        // The host the client asked for, as routing saw it: the URI authority
        // (HTTP/2, absolute-form) wins over `Host` (RFC 9112 §3.2.2).
        let from_authority = parts.uri.authority().is_some();
        let original_host = match parts.uri.authority() {
            Some(a) => HeaderValue::try_from(a.as_str()).ok(),
            None => f.host_header.cloned(),
        };
        let path_and_query = match parts.uri.path_and_query() {
            // Already normal and not rewritten: reuse the client's bytes as they are.
            Some(pq) if pq.path() == path => pq.clone(),
            _ => {
                let text = match parts.uri.query() {
                    Some(q) => format!("{path}?{q}"),
                    None => path.into_owned(),
                };
                PathAndQuery::try_from(text).map_err(|e| GatewayError::Internal(e.into()))?
            }
        };
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(target.scheme.clone());
        uri.authority = Some(target.authority.clone());
        uri.path_and_query = Some(path_and_query);
        parts.uri = Uri::from_parts(uri).map_err(|e| GatewayError::Internal(e.into()))?;

        let upgrade = client_upgrade.as_ref().and_then(|_| hop_by_hop::upgrade_protocol(&parts.headers));
        // Edits, not map changes: the HTTP/1.1 codec writes them as it encodes
        // the head (`http::edits`); hyper's client gets them applied below.
        let mut edits = HeaderEdits::new(&parts.headers, f.hop_by_hop);
        forwarded_headers(&f, &parts.headers, original_host.clone(), &mut edits);
        let host = match &f.proxy.host {
            // Already the request's own `Host` line: nothing to change.
            HostRewrite::Preserve if !from_authority => None,
            HostRewrite::Preserve => original_host,
            HostRewrite::Target => HeaderValue::try_from(target.authority.as_str()).ok(),
            HostRewrite::Set(h) => Some(h.clone()),
        };
        if let Some(h) = host {
            edits.set(header::HOST, h);
        }
        parts.version = Version::HTTP_11;

        // Plain HTTP/1.1 targets: inline-driven pooled connections (no upgrades there).
        if let (Some(pool), None) = (&target.h1, &client_upgrade) {
            // The pool times the exchange itself (a lazily moved timer per
            // connection, cheaper than a timeout future per request).
            let resp = match pool.send(&mut parts, &mut body, &edits, upstream.request_timeout).await {
                Err(e) => return Err(classify(upstream.name.clone(), e)),
                Ok(r) => r,
            };
            // The codec keeps hop-by-hop headers out already; the others stay
            // raw in the body until someone needs them in the map.
            let body = PooledBody {
                inner: resp.body,
                in_flight: Some(in_flight),
                slots: Vec::new(),
                raw: Some(resp.headers),
                edits: None,
            };
            let mut out = Response::new(Body::Pooled(Box::new(body)));
            *out.status_mut() = resp.status;
            *out.version_mut() = resp.version;
            return Ok(out);
        }
        if let Some(proto) = &upgrade {
            edits.set(header::CONNECTION, HeaderValue::from_static("upgrade"));
            edits.set(header::UPGRADE, proto.clone());
        }
        edits.apply(&mut parts.headers);
        let req = Request::from_parts(parts, body);
        // Boxed: hyper's client future is large and this path is the less common one.
        Box::pin(through_hyper(upstream, req, client_upgrade, in_flight)).await
    }
}

/// HTTPS, HTTP/2 and upgraded requests: hyper-util's pooled client.
async fn through_hyper(
    upstream: &crate::upstream::Upstream,
    req: Request<RequestBody>,
    client_upgrade: Option<OnUpgrade>,
    in_flight: crate::upstream::InFlight,
) -> Result<Response<Body>, GatewayError> {
    let sent = upstream.client.request(req);
    let mut resp = match tokio::time::timeout(upstream.request_timeout, sent).await {
        Err(_) => return Err(GatewayError::UpstreamTimeout { upstream: upstream.name.clone() }),
        Ok(Err(e)) => return Err(classify(upstream.name.clone(), Box::new(e))),
        Ok(Ok(resp)) => resp,
    };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_side) = client_upgrade else {
            return Err(GatewayError::UpstreamUnreachable {
                upstream: upstream.name.clone(),
                cause: "upstream switched protocols without being asked".into(),
            });
        };
        let upstream_side = hyper::upgrade::on(&mut resp);
        tokio::spawn(tunnel(client_side, upstream_side, in_flight));
        let (parts, _) = resp.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let (mut parts, inner) = resp.into_parts();
    hop_by_hop::strip(&mut parts.headers, false);
    Ok(Response::from_parts(parts, Body::Upstream { inner, _in_flight: Some(in_flight), _slots: Vec::new() }))
}

/// `X-Forwarded-For/Proto/Host`, `X-Request-Id`; `Forwarded` from an
/// untrusted client is dropped (we do not vouch for it).
fn forwarded_headers(f: &Forward<'_>, headers: &http::HeaderMap, host: Option<HeaderValue>, edits: &mut HeaderEdits) {
    // Every `X-Forwarded-For` line counts (as in `forwarded::resolve`).
    let prior = f.client.peer_trusted && headers.contains_key(&X_FORWARDED_FOR);
    let xff = if prior {
        let mut xff = String::with_capacity(48);
        for prior in headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()) {
            xff.push_str(prior);
            xff.push_str(", ");
        }
        xff.push_str(f.conn.peer_ip.to_str().unwrap_or_default());
        HeaderValue::try_from(xff).ok()
    } else {
        Some(f.conn.peer_ip.clone())
    };
    if let Some(v) = xff {
        edits.set(X_FORWARDED_FOR, v);
    }
    if f.client.peer_trusted {
        // A trusted proxy's own values stand.
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            edits.set(X_FORWARDED_PROTO, HeaderValue::from_static(f.conn.scheme));
        }
        if let Some(h) = host
            && !headers.contains_key(&X_FORWARDED_HOST)
        {
            edits.set(X_FORWARDED_HOST, h);
        }
    } else {
        edits.set(X_FORWARDED_PROTO, HeaderValue::from_static(f.conn.scheme));
        match host {
            Some(h) => edits.set(X_FORWARDED_HOST, h),
            None => edits.drop_forwarded_host(),
        }
        edits.drop_forwarded();
    }
    edits.set(request_id::HEADER, f.request_id.clone());
}

fn hash_key(key: Option<&HashKey>, headers: &http::HeaderMap, client: &forwarded::Client) -> Option<Vec<u8>> {
    match key? {
        HashKey::Header(name) => headers.get(name).map(|v| v.as_bytes().to_vec()),
        HashKey::Cookie(name) => {
            headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(
                |pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    (k == &**name).then(|| v.as_bytes().to_vec())
                },
            )
        }
        HashKey::ClientIp => Some(client.ip.to_string().into_bytes()),
    }
}

/// The client's body going wrong is the client's fault (413, 408, 400); a
/// connect timeout is a timeout (504); anything else before a response is 502.
fn classify(upstream: std::sync::Arc<str>, e: BoxError) -> GatewayError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*e);
    while let Some(s) = source {
        if let Some(body) = s.downcast_ref::<BodyError>() {
            return match body {
                BodyError::TooLarge(limit) => GatewayError::BodyTooLarge { limit: *limit },
                BodyError::Timeout => GatewayError::BodyTimeout,
                BodyError::Read(_) => GatewayError::BodyRead(body.to_string().into()),
            };
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return GatewayError::UpstreamTimeout { upstream };
        }
        source = s.source();
    }
    GatewayError::UpstreamUnreachable { upstream, cause: e }
}

/// Copies bytes both ways between the upgraded client and upstream connections.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, _in_flight: crate::upstream::InFlight) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "tunnel closed with an error");
    }
}

//! Forwarding to an upstream: target choice, the upstream request's URI and
//! headers, timeouts, and tunnels for WebSocket upgrades on the routes that
//! allow them.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version, request};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::http::forwarded::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use crate::http::{forwarded, request_id};
use crate::observe::metrics::UpstreamError;
use crate::observe::trace::TRACEPARENT;
use crate::plan::{HostRewrite, Proxy};
use crate::upstream::breaker::{Admission, ProbeToken};
use crate::upstream::limits::Refusal;
use crate::upstream::retry::{RetryPolicy, TryFailure};
use crate::upstream::{HashKey, Target, Upstream};
use crate::wire::edits::{HeaderEdits, RequestFraming};
use crate::wire::hop_by_hop;
use smallvec::SmallVec;

use crate::http::request_body::{BodyError, RequestBody};

use super::body::Body;
use crate::http::conn::ConnInfo;
use crate::http::error::{BoxError, GatewayError, InvalidResponse, NotSent};

pub(super) struct Forward<'a, 'p> {
    pub proxy: &'p Proxy,
    pub conn: &'a ConnInfo,
    pub client: forwarded::Client,
    pub request_id: &'a HeaderValue,
    /// The normalized path that matched.
    pub path: &'a str,
    pub values: &'a [&'a str],
    /// The client's `Host`, as routing read it.
    pub host_header: Option<&'a HeaderValue>,
    /// Identity header lines to add (names, values), when the engine writes them.
    pub identity: Option<(&'a [HeaderName], &'a [Option<HeaderValue>])>,
    /// The upstream's `traceparent`: the request's trace, the gateway's span.
    pub traceparent: HeaderValue,
    /// What happened upstream, one entry per try, for the access log and
    /// span (`None`: nothing watches; the exchange is not even timed).
    pub tried: Option<&'a mut SmallVec<[Tried<'p>; 1]>>,
    /// How many tries were made, and whether no target was healthy (the
    /// response says so).
    pub notes: &'a mut TryNotes,
    /// Record `http_client_request_duration_seconds`.
    pub client_metrics: bool,
}

/// What the response tells the client about its upstream tries.
#[derive(Debug, Default)]
pub(super) struct TryNotes {
    pub tries: u32,
    /// Sent although no target was healthy (`all_unhealthy: serve_all`).
    pub all_unhealthy: bool,
    /// Request body bytes read from the client by the last try, when counted
    /// (what the log reports for a body that broke off).
    pub body_received: Option<u64>,
    /// The last try's target (its index in the upstream's), for the
    /// gateway's log line of a failed request.
    pub last_target: Option<usize>,
}

/// One upstream try, as the access log reports it. Noted when it starts,
/// so that a request whose client leaves mid-try still shows where it
/// went (`outcome` stays `None`: the try was cancelled).
#[derive(Debug)]
pub(super) struct Tried<'a> {
    pub upstream: &'a Upstream,
    pub target: &'a Target,
    pub outcome: Option<Result<u16, UpstreamError>>,
    pub started: Instant,
    /// Set when the try ends.
    pub duration_ns: u64,
    /// Ended without an outcome (the client's body broke it off): timed
    /// already, logged `cancelled`.
    pub ended: bool,
    /// Request body bytes sent, when the codec counted them.
    pub request_bytes: Option<u64>,
    /// The body as a client library sends it (hyper's): the bytes that
    /// came so far, also when the request ends before the library does.
    pub body: Option<std::sync::Arc<crate::http::request_body::BodyWatch>>,
}

impl Tried<'_> {
    /// The request body bytes this try took from the client.
    pub fn body_bytes(&self) -> Option<u64> {
        self.request_bytes.or_else(|| Some(self.body.as_ref()?.received.load(std::sync::atomic::Ordering::Relaxed)))
    }
}

/// Records an ended exchange's upstream metrics and completes its entry
/// for the log. A try broken off by the client's body (too slow, too
/// large, cut) is not the upstream's doing: no metrics, and its entry
/// stays `cancelled` (the upstream got part of it); any other error
/// before the exchange takes the entry back.
fn note(
    f: &mut Forward<'_, '_>,
    target: &Target,
    ended: Instant,
    request_bytes: Option<u64>,
    result: &Result<Response<Body>, GatewayError>,
) {
    let Some(tried) = f.tried.as_deref_mut() else { return };
    let outcome = match result {
        Ok(resp) => Ok(resp.status().as_u16()),
        // No connection within `timeouts.connect`: a connect failure (Envoy's `UF`).
        Err(GatewayError::UpstreamTimeout { sent: false, waited: false, .. }) => Err(UpstreamError::Connect),
        Err(GatewayError::UpstreamTimeout { .. }) => Err(UpstreamError::Timeout),
        Err(GatewayError::UpstreamUnreachable { sent: false, .. }) => Err(UpstreamError::Connect),
        Err(GatewayError::UpstreamUnreachable { sent: true, .. }) => Err(UpstreamError::Closed),
        Err(GatewayError::BodyRead(_) | GatewayError::BodyTimeout | GatewayError::BodyTooLarge { .. }) => {
            if let Some(entry) = tried.last_mut() {
                entry.duration_ns = ended.saturating_duration_since(entry.started).as_nanos() as u64;
                entry.request_bytes = request_bytes;
                entry.ended = true;
            }
            return;
        }
        Err(_) => {
            tried.pop();
            return;
        }
    };
    let Some(entry) = tried.last_mut() else { return };
    let duration_ns = ended.saturating_duration_since(entry.started).as_nanos() as u64;
    if f.client_metrics {
        let status = outcome.map(|s| StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY));
        target.metrics.record(status, duration_ns);
    }
    entry.outcome = Some(outcome);
    entry.duration_ns = duration_ns;
    entry.request_bytes = request_bytes;
}

/// The client side of a WebSocket upgrade that a route allows.
pub(super) enum ClientSide {
    /// A connection hyper serves: its upgraded IO arrives through this.
    Hyper(OnUpgrade),
    /// The gateway's own HTTP/1.1 connection: it takes the `Tunnel` from
    /// the `101` response's extensions once it has written that response.
    Connection,
}

impl ClientSide {
    pub(super) fn of<B>(req: &mut Request<B>) -> ClientSide {
        // hyper's HTTP/1.1 server puts its upgrade handle in every request;
        // the own codec's requests have no extensions at all.
        if req.extensions().get::<OnUpgrade>().is_some() {
            ClientSide::Hyper(hyper::upgrade::on(req))
        } else {
            ClientSide::Connection
        }
    }
}

const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");
const WEBSOCKET: HeaderValue = HeaderValue::from_static("websocket");

// Not an `async fn`, for the reason given at `proxy::handle`.
#[allow(clippy::manual_async_fn)]
pub(super) fn forward<'a, 'p>(
    mut f: Forward<'a, 'p>,
    mut parts: request::Parts,
    mut body: RequestBody,
    client_upgrade: Option<ClientSide>,
) -> impl Future<Output = Result<Response<Body>, GatewayError>> {
    async move {
        let upstream: &'p Upstream = &f.proxy.upstream;
        let policy = &*f.proxy.retry;
        let now = Instant::now();
        let (slot, probe) = admit(upstream, now)?;
        let key = hash_key(upstream.balancer.hash_key(), &parts.headers, &f.client);

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
            Some(pq) if pq.path() == path && pq.as_str().starts_with('/') => pq.clone(),
            _ => {
                let text = match parts.uri.query() {
                    Some(q) => format!("{path}?{q}"),
                    None => path.into_owned(),
                };
                PathAndQuery::try_from(text).map_err(|e| GatewayError::Internal(e.into()))?
            }
        };
        parts.version = Version::HTTP_11;

        // Retries: only where another try could follow (never a WebSocket upgrade).
        // (The default, "elsewhere only" retry has nowhere to go with one target.)
        let may_retry = policy.attempts > 1
            && client_upgrade.is_none()
            && probe.is_none()
            && !(policy.only_elsewhere && upstream.targets.len() == 1);
        if may_retry {
            upstream.budget.request(now);
            // A body is kept for another try only where a try may fail after
            // sending it (a connect failure sends nothing): whole if it is
            // there whole already, else up to the buffer.
            if policy.retries_after_sending() && !body.is_end_stream() {
                body.keep_for_retry(replay_limit(&body, policy));
            }
        }
        let deadline = now + upstream.request_timeout;
        let mut tried: SmallVec<[usize; 2]> = SmallVec::new();
        let mut client_upgrade = client_upgrade;
        let mut slot = slot;
        loop {
            let Some(picked) = upstream.pick(key.as_deref(), &tried, Instant::now()) else {
                return Err(refuse(upstream, Refusal::NoHealthyTarget));
            };
            if picked.panic {
                upstream.health.note_panic(&upstream.name, Instant::now());
                f.notes.all_unhealthy = true;
            }
            tried.push(picked.index);
            f.notes.tries = tried.len() as u32;
            f.notes.last_target = Some(picked.index);
            let target = &upstream.targets[picked.index];
            let in_flight = target.begin().with(slot.take());
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(target.scheme.clone());
            uri.authority = Some(target.authority.clone());
            uri.path_and_query = Some(path_and_query.clone());
            parts.uri = Uri::from_parts(uri).map_err(|e| GatewayError::Internal(e.into()))?;

            // Edits, not map changes: the HTTP/1.1 codec writes them as it encodes
            // the head (`wire::edits`); hyper's client gets them applied below.
            let mut edits = HeaderEdits::default();
            forwarded_headers(&f, &parts.headers, original_host.clone(), &mut edits);
            let host = match &f.proxy.host {
                // Already the request's own `Host` line: nothing to change.
                HostRewrite::Preserve if !from_authority => None,
                HostRewrite::Preserve => original_host.clone(),
                HostRewrite::Target => HeaderValue::try_from(target.authority.as_str()).ok(),
                HostRewrite::Set(h) => Some(h.clone()),
            };
            if let Some(h) = host {
                edits.set(header::HOST, h);
            }
            if let Some((names, values)) = f.identity {
                edits.add(names, values);
            }
            edits.set(TRACEPARENT, f.traceparent.clone());
            let try_started = Instant::now();
            let left = deadline.saturating_duration_since(try_started);
            let timeout = policy.per_try_timeout.map_or(left, |t| t.min(left));
            // Noted (and timed) only when something reports it.
            if let Some(tried) = f.tried.as_deref_mut() {
                tried.push(Tried {
                    upstream,
                    target,
                    outcome: None,
                    started: try_started,
                    duration_ns: 0,
                    ended: false,
                    request_bytes: None,
                    body: None,
                });
            }

            let (result, replayable, request_bytes) = if let (Some(pool), None) = (&target.h1, &client_upgrade) {
                // Plain HTTP/1.1 targets: inline-driven pooled connections (no upgrades there).
                // The pool times the exchange itself (a lazily moved timer per
                // connection, cheaper than a timeout future per request).
                let result = match send_h1(upstream, pool, &mut parts, &mut body, &edits, timeout).await {
                    // Time ran out while the client's body was late: the
                    // client's doing (408), not the upstream's (no 504, no
                    // mark against the target's health).
                    Err(GatewayError::UpstreamTimeout { .. }) if body.waiting_on_client() => {
                        drop(in_flight);
                        Err(GatewayError::BodyTimeout)
                    }
                    Err(e) => {
                        // The try is over: its places are free for a retry's.
                        drop(in_flight);
                        Err(e)
                    }
                    Ok(resp) => {
                        // The codec keeps hop-by-hop headers out already.
                        let mut out =
                            Response::new(Body::pooled(resp.body, resp.headers, in_flight, upstream.read_timeout));
                        *out.status_mut() = resp.status;
                        *out.version_mut() = resp.version;
                        Ok(out)
                    }
                };
                (result, true, Some(body.received()))
            } else {
                let upgrade = client_upgrade.take().map(|side| {
                    edits.set(header::CONNECTION, HeaderValue::from_static("upgrade"));
                    edits.set(header::UPGRADE, WEBSOCKET);
                    (side, parts.headers.get(SEC_WEBSOCKET_KEY).map(websocket_accept), f.conn.idle_timeout)
                });
                // hyper's client takes the body: a copy goes when the body is
                // whole, so that a retry can send it again.
                let spare = if may_retry { body.try_clone_whole() } else { None };
                let replayable = spare.is_some();
                let mut sent_body = std::mem::replace(&mut body, spare.unwrap_or_else(RequestBody::empty));
                let watch = sent_body.watch();
                if let Some(entry) = f.tried.as_deref_mut().and_then(|t| t.last_mut()) {
                    entry.body = Some(watch.clone());
                }
                let mut headers = parts.headers.clone();
                edits.apply(&mut headers, RequestFraming::of(&parts.method, &sent_body));
                let mut req = Request::new(sent_body);
                *req.method_mut() = parts.method.clone();
                *req.uri_mut() = parts.uri.clone();
                *req.version_mut() = parts.version;
                *req.headers_mut() = headers;
                // Boxed: hyper's client future is large and this path is the less common one.
                let result = match (&target.h2, upgrade) {
                    (Some(h2), None) => {
                        as_http2(&mut req, &target.authority);
                        Box::pin(through_h2(upstream, h2, req, in_flight, timeout)).await
                    }
                    (_, Some(upgrade)) => {
                        // The handshake's connection becomes the tunnel,
                        // outside the pool: it takes its own place in
                        // `max_connections` (of `http://` targets, as the pool's).
                        let mut in_flight = in_flight;
                        let started = Instant::now();
                        let permit = match (&target.h1, &upstream.limits.connections) {
                            (Some(_), Some(limit)) => Some(connection_permit(upstream, limit, timeout).await),
                            _ => None,
                        };
                        match permit {
                            Some(Err(e)) => Err(e),
                            permit => {
                                if let Some(Ok(permit)) = permit {
                                    in_flight.holding(permit);
                                }
                                let left = timeout.saturating_sub(started.elapsed());
                                Box::pin(through_hyper(upstream, req, Some(upgrade), in_flight, left)).await
                            }
                        }
                    }
                    (_, None) => Box::pin(through_hyper(upstream, req, None, in_flight, timeout)).await,
                };
                // As on the HTTP/1.1 path: time that ran out while the
                // client's body was late is the client's doing (408); and a
                // body cut by the client's doing (too large, too slow, broken
                // off) is the client's too, whatever error the client library
                // made of it (HTTP/2's is a stream reset of its own: a 502,
                // and a mark against the target's health).
                let result = match (result, watch.cut.get()) {
                    (Err(_), Some(cut)) => Err(body_cut(*cut)),
                    (Err(GatewayError::UpstreamTimeout { .. }), None)
                        if watch.waiting.load(std::sync::atomic::Ordering::Relaxed) =>
                    {
                        Err(GatewayError::BodyTimeout)
                    }
                    (other, _) => other,
                };
                // A body cut off: what came, not what its length promised.
                let received = watch.cut.get().map(|_| watch.received.load(std::sync::atomic::Ordering::Relaxed));
                (result, replayable, received)
            };
            f.notes.body_received = request_bytes;
            // One clock read for the try's duration and the health record.
            let ended = Instant::now();
            note(&mut f, target, ended, request_bytes, &result);

            let failure = try_failure(&result, policy);
            // Passive health and the breaker learn from every try the upstream is to blame for.
            if let Some(ok) = upstream_verdict(&result) {
                upstream.record(picked.index, ok, probe, ended);
            }
            let Some(failure) = failure else {
                // Sent for good: the header map's allocation serves the next request.
                crate::wire::recycle::give_back(std::mem::take(&mut parts.headers));
                return result;
            };
            let again = may_retry
                && (tried.len() as u32) < policy.attempts
                && (!policy.only_elsewhere || tried.len() < upstream.targets.len())
                && policy.allows(failure, &parts.method)
                && replayable
                // Nothing to send to: the client gets this try's answer (not a
                // 503 `no-healthy-target`, and no retry counted as sent)...
                && upstream.has_target_for_retry(ended)
                // ...nor while the breaker this try may have opened stops the upstream.
                && upstream.breaker.as_ref().is_none_or(|b| b.is_closed())
                && body.rewind_within(replay_limit(&body, policy));
            if !again {
                return result;
            }
            let wait = policy.backoff(tried.len() as u32, rand::random::<f64>());
            if Instant::now() + wait >= deadline {
                return result;
            }
            if !upstream.budget.try_retry(Instant::now()) {
                upstream.counters.retries_denied.inc();
                return result;
            }
            // A retry is a request in flight too: it takes a `max_requests`
            // place again. An upstream's answer still holds its try's place
            // (it goes with the answer, below): counted as given back, and
            // if there is still no room, that answer is the client's, not a 503.
            let answered = result.is_ok();
            let admitted = if answered { upstream.limits.admit_again() } else { upstream.limits.admit() };
            slot = match admitted {
                Ok(s) => s,
                Err(rule) if answered => {
                    let _ = refuse(upstream, rule);
                    return result;
                }
                Err(rule) => return Err(refuse(upstream, rule)),
            };
            upstream.counters.retries.inc();
            // The failed answer goes (its connection closes, its in-flight places free).
            drop(result);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// `Portcullis-Tries: 3` when a request was tried more than once, and
/// `Portcullis-Upstream-Health: all-unhealthy` when it was sent although no
/// target was healthy.
pub(super) fn tell_tries(resp: &mut Response<Body>, notes: &TryNotes) {
    const TRIES: HeaderName = HeaderName::from_static("portcullis-tries");
    const HEALTH: HeaderName = HeaderName::from_static("portcullis-upstream-health");
    if notes.tries > 1 {
        resp.headers_mut().insert(TRIES, HeaderValue::from(notes.tries));
    }
    if notes.all_unhealthy {
        resp.headers_mut().insert(HEALTH, HeaderValue::from_static("all-unhealthy"));
    }
}

/// A place in the upstream's `max_connections` for a connection the own
/// pool does not make (a WebSocket handshake's, which becomes its tunnel),
/// found as `send_h1` finds one: an idle pooled connection closed to make
/// room, or a wait (as one of `max_pending`) within `timeout`.
async fn connection_permit(
    upstream: &Upstream,
    limit: &crate::upstream::limits::ConnLimit,
    timeout: std::time::Duration,
) -> Result<crate::upstream::limits::ConnPermit, GatewayError> {
    let deadline = Instant::now() + timeout;
    let mut waiting = None;
    loop {
        if let Some(permit) = limit.try_open() {
            return Ok(permit);
        }
        if upstream.targets.iter().filter_map(|t| t.h1.as_ref()).any(|p| p.close_idle()) {
            continue;
        }
        if waiting.is_none() {
            waiting = Some(limit.wait().map_err(|rule| refuse(upstream, rule))?);
        }
        if tokio::time::timeout_at(deadline, limit.freed()).await.is_err() {
            return Err(GatewayError::UpstreamTimeout { upstream: upstream.name.clone(), sent: false, waited: true });
        }
    }
}

/// One HTTP/1.1 exchange on `pool`, within `timeout`. When the upstream's
/// `max_connections` are open, an idle connection to another target is
/// closed to make room, or the request waits for one to close (as one of
/// `max_pending`): the wait is part of `timeout` (it was added to it: a
/// request could take twice its timeout).
pub(super) async fn send_h1(
    upstream: &Upstream,
    pool: &std::sync::Arc<crate::upstream::h1::H1Pool>,
    parts: &mut request::Parts,
    body: &mut RequestBody,
    edits: &HeaderEdits<'_>,
    timeout: std::time::Duration,
) -> Result<crate::upstream::h1::UpstreamResponse, GatewayError> {
    let deadline = Instant::now() + timeout;
    let mut waiting = None;
    let mut left = timeout;
    loop {
        match pool.send(parts, body, edits, left).await {
            Ok(resp) => return Ok(resp),
            Err(e) if at_capacity(&*e) => {
                let Some(limit) = &upstream.limits.connections else { return Err(classify(upstream.name.clone(), e)) };
                if upstream.targets.iter().filter_map(|t| t.h1.as_ref()).any(|p| p.close_idle()) {
                    continue;
                }
                if waiting.is_none() {
                    waiting = Some(limit.wait().map_err(|rule| refuse(upstream, rule))?);
                }
                if tokio::time::timeout_at(deadline, limit.freed()).await.is_err() {
                    return Err(GatewayError::UpstreamTimeout {
                        upstream: upstream.name.clone(),
                        sent: false,
                        waited: true,
                    });
                }
                left = deadline.saturating_duration_since(Instant::now());
            }
            Err(e) => {
                let mut error = classify(upstream.name.clone(), e);
                // The time the wait left ran out at the target: it had less
                // than `timeouts.request`, not its failure (nor its health's).
                // A connect timeout within what was left is the target's.
                if waiting.is_some()
                    && let GatewayError::UpstreamTimeout { waited, sent, .. } = &mut error
                    && (*sent || left < pool.connect_timeout())
                {
                    *waited = true;
                }
                return Err(error);
            }
        }
    }
}

fn at_capacity(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.is::<crate::upstream::h1::AtCapacity>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Admission before the first try: the upstream's limits, then its
/// breaker (a request the limits refuse never takes the half-open probe).
/// Returns the request's `max_requests` place and, when it is the probe, its token.
pub(super) fn admit(
    upstream: &Upstream,
    now: Instant,
) -> Result<(Option<crate::upstream::limits::RequestSlot>, Option<ProbeToken>), GatewayError> {
    let slot = upstream.limits.admit().map_err(|rule| refuse(upstream, rule))?;
    let probe = match &upstream.breaker {
        None => None,
        Some(b) => match b.admit(now) {
            Admission::Pass => None,
            Admission::Probe(token) => Some(token),
            Admission::Refuse { retry_after } => {
                return Err(refuse_until(upstream, Refusal::BreakerOpen, Some(retry_after)));
            }
        },
    };
    Ok((slot, probe))
}

/// A refusal before any try, counted by rule.
pub(super) fn refuse(upstream: &Upstream, rule: Refusal) -> GatewayError {
    refuse_until(upstream, rule, None)
}

/// `refuse`, with when the rule lets requests through again, if known.
fn refuse_until(upstream: &Upstream, rule: Refusal, retry_after: Option<std::time::Duration>) -> GatewayError {
    upstream.counters.refused[rule.index()].inc();
    GatewayError::Refused { upstream: upstream.name.clone(), rule, retry_after }
}

/// What a try's result says for retrying: `None` when it is final.
fn try_failure(result: &Result<Response<Body>, GatewayError>, policy: &RetryPolicy) -> Option<TryFailure> {
    match result {
        Ok(resp) => policy.watches_status(resp.status().as_u16()).then(|| TryFailure::Status(resp.status().as_u16())),
        Err(
            GatewayError::UpstreamUnreachable { sent: false, .. } | GatewayError::UpstreamTimeout { sent: false, .. },
        ) => Some(TryFailure::ConnectFailure),
        Err(GatewayError::UpstreamUnreachable { sent: true, .. }) => Some(TryFailure::Reset),
        Err(GatewayError::UpstreamTimeout { sent: true, .. }) => Some(TryFailure::Timeout),
        Err(_) => None,
    }
}

/// Whether the try went well for the upstream's health (`None`: the
/// client's fault or a refusal, which says nothing about the upstream).
fn upstream_verdict(result: &Result<Response<Body>, GatewayError>) -> Option<bool> {
    match result {
        Ok(resp) => Some(!resp.status().is_server_error()),
        Err(GatewayError::UpstreamTimeout { waited: true, .. }) => None,
        Err(GatewayError::UpstreamUnreachable { .. } | GatewayError::UpstreamTimeout { .. }) => Some(false),
        Err(_) => None,
    }
}

/// An HTTP/2 request names its host in `:authority` (the URI's), not in a
/// `Host` field beside it (RFC 9113 §8.3.1): the Host the route kept or
/// rewrote moves there (the target's, if it is not a valid authority).
fn as_http2(req: &mut Request<RequestBody>, target: &http::uri::Authority) {
    let host = req.headers_mut().remove(header::HOST);
    let authority =
        host.and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok()).unwrap_or_else(|| target.clone());
    let mut uri = std::mem::take(req.uri_mut()).into_parts();
    uri.authority = Some(authority);
    if let Ok(u) = Uri::from_parts(uri) {
        *req.uri_mut() = u;
    }
}

/// `protocol: http2` targets: the target's own multiplexed connection.
async fn through_h2(
    upstream: &crate::upstream::Upstream,
    h2: &crate::upstream::h2::H2Target,
    req: Request<RequestBody>,
    in_flight: crate::upstream::InFlight,
    timeout: std::time::Duration,
) -> Result<Response<Body>, GatewayError> {
    let head = req.method() == http::Method::HEAD;
    let resp = match tokio::time::timeout(timeout, h2.send(req)).await {
        Err(_) => {
            return Err(GatewayError::UpstreamTimeout { upstream: upstream.name.clone(), sent: true, waited: false });
        }
        Ok(Err(e)) => return Err(classify(upstream.name.clone(), e)),
        Ok(Ok(resp)) => resp,
    };
    valid_status(upstream, resp.status())?;
    let (mut parts, inner) = resp.into_parts();
    hop_by_hop::strip(&mut parts.headers, false);
    for own in &crate::wire::names::GATEWAY_OWN {
        parts.headers.remove(own);
    }
    // What the body must come to (hyper's HTTP/2 client ends a stream reset
    // with NO_ERROR as if it were whole); none for bodiless answers.
    let bodiless = head || matches!(parts.status.as_u16(), 204 | 304);
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let body = Body::upstream_h2(inner, in_flight, upstream.read_timeout, declared.filter(|_| !bodiless));
    Ok(Response::from_parts(parts, body))
}

/// RFC 9110 §15: a status outside 100 to 599 is invalid (the `http` crate
/// takes up to 999); the own HTTP/1.1 codec refuses it as it reads the head.
fn valid_status(upstream: &crate::upstream::Upstream, status: StatusCode) -> Result<(), GatewayError> {
    if status.as_u16() <= 599 {
        return Ok(());
    }
    Err(GatewayError::UpstreamUnreachable {
        upstream: upstream.name.clone(),
        cause: Box::new(InvalidResponse(
            format!("the upstream answered status {}, outside 100 to 599", status.as_u16()).into(),
        )),
        sent: true,
    })
}

/// HTTPS and upgraded requests: hyper-util's pooled client.
/// `upgrade`: the client's side of an allowed WebSocket upgrade, and the
/// `Sec-WebSocket-Accept` a genuine answer carries.
async fn through_hyper(
    upstream: &crate::upstream::Upstream,
    req: Request<RequestBody>,
    upgrade: Option<(ClientSide, Option<HeaderValue>, std::time::Duration)>,
    in_flight: crate::upstream::InFlight,
    timeout: std::time::Duration,
) -> Result<Response<Body>, GatewayError> {
    let mut req = req;
    if crate::wire::edits::RequestFraming::of(req.method(), req.body()).body_may_be_misread(req.method())
        && req.version() != http::Version::HTTP_2
    {
        // As the own codec does (`body_may_be_misread`): hyper does not
        // reuse a connection whose request said `close`.
        req.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    // A late body after an answer that has none (HEAD, 204, 304) would be
    // read as the next request's answer: as the own codec does, such a
    // connection is not reused. HEAD says `close`; the others are known by
    // their answer, so the connection is captured to be poisoned then (an
    // idle one already back in hyper's pool is skipped from that moment).
    let mut captured = (req.version() != http::Version::HTTP_2).then(|| {
        if req.method() == http::Method::HEAD {
            req.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        hyper_util::client::legacy::connect::capture_connection(&mut req)
    });
    // A copy to send once more if the target closes a reused connection
    // under the request (its keep-alive timeout), as the own HTTP/1.1
    // pool does: idempotent, not an upgrade, its body there whole.
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut spare = (upgrade.is_none() && req.method().is_idempotent() && req.version() != http::Version::HTTP_2)
        .then(|| copy_of(&mut req))
        .flatten();
    let client = if upgrade.is_some() { &upstream.upgrades } else { &upstream.client };
    let sent = client.request(req);
    let mut resp = match tokio::time::timeout_at(deadline, sent).await {
        Err(_) => {
            return Err(GatewayError::UpstreamTimeout { upstream: upstream.name.clone(), sent: true, waited: false });
        }
        Ok(Err(e)) if let Some(mut again) = spare.take().filter(|_| lost_on_reused(&e, started)) => {
            tracing::debug!(upstream = %upstream.name, error = %e, "a reused connection closed under the request; sent again");
            captured = Some(hyper_util::client::legacy::connect::capture_connection(&mut again));
            match tokio::time::timeout_at(deadline, client.request(again)).await {
                Err(_) => {
                    let name = upstream.name.clone();
                    return Err(GatewayError::UpstreamTimeout { upstream: name, sent: true, waited: false });
                }
                Ok(Err(e)) => return Err(classify(upstream.name.clone(), Box::new(e))),
                Ok(Ok(resp)) => resp,
            }
        }
        Ok(Err(e)) => return Err(classify(upstream.name.clone(), Box::new(e))),
        Ok(Ok(resp)) => resp,
    };
    drop(spare);
    if matches!(resp.status(), StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
        && resp.version() != http::Version::HTTP_2
        && let Some(captured) = &captured
        && let Some(connected) = captured.connection_metadata().as_ref()
    {
        connected.poison();
    }
    valid_status(upstream, resp.status())?;
    framed_alone(upstream, resp.headers())?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Only a valid answer to the upgrade the client asked for turns the
        // connection into a tunnel; anything else is a broken upstream.
        // HTTP/1.0 has no upgrades, and a 101 has no body to frame.
        let framed = resp.version() == http::Version::HTTP_11
            && !resp.headers().contains_key(header::CONTENT_LENGTH)
            && !resp.headers().contains_key(header::TRANSFER_ENCODING);
        let (client_side, accept, client_idle) = match upgrade {
            Some((side, Some(accept), idle)) if framed && is_websocket_handshake(resp.headers(), &accept) => {
                (side, accept, idle)
            }
            _ => {
                return Err(GatewayError::UpstreamUnreachable {
                    upstream: upstream.name.clone(),
                    cause: Box::new(InvalidResponse(
                        "the upstream switched protocols without a valid WebSocket handshake".into(),
                    )),
                    sent: true,
                });
            }
        };
        let log = TunnelLog::default();
        let logged =
            TunnelLogged { log: log.clone(), carried: Default::default(), ended: false, idle: false, unread: false };
        let tunnel = Tunnel {
            upstream: hyper::upgrade::on(&mut resp),
            _in_flight: in_flight,
            log: logged,
            idle: upstream.read_timeout,
            client_idle,
        };
        // The 101 the client gets: the upstream's end-to-end fields (its
        // subprotocol and extension choices, a `Set-Cookie`, as NGINX
        // passes them), and the handshake's own fields written by the gateway.
        let mut out = Response::new(Body::empty());
        *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        out.extensions_mut().insert(log);
        let mut headers = std::mem::take(resp.headers_mut());
        hop_by_hop::strip(&mut headers, false);
        for own in &crate::wire::names::GATEWAY_OWN {
            headers.remove(own);
        }
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, WEBSOCKET);
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
        *out.headers_mut() = headers;
        match client_side {
            ClientSide::Hyper(client) => {
                tokio::spawn(async move {
                    match client.await {
                        Ok(client) => tunnel.run(TokioIo::new(client), Bytes::new()).await,
                        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                    }
                });
            }
            ClientSide::Connection => {
                out.extensions_mut().insert(TunnelSlot(std::sync::Arc::new(std::sync::Mutex::new(Some(tunnel)))));
            }
        }
        return Ok(out);
    }
    let (mut parts, inner) = resp.into_parts();
    hop_by_hop::strip(&mut parts.headers, false);
    for own in &crate::wire::names::GATEWAY_OWN {
        parts.headers.remove(own);
    }
    Ok(Response::from_parts(parts, Body::upstream(inner, in_flight, upstream.read_timeout)))
}

/// `http://` targets' framing rules for the HTTP/1.1 responses hyper's
/// client reads (`https://` targets), which it reads leniently.
fn framed_alone(upstream: &crate::upstream::Upstream, headers: &http::HeaderMap) -> Result<(), GatewayError> {
    match crate::wire::upstream_head::lenient_framing_fault(headers) {
        None => Ok(()),
        Some(why) => {
            let cause = Box::new(InvalidResponse(why.into()));
            Err(GatewayError::UpstreamUnreachable { upstream: upstream.name.clone(), cause, sent: true })
        }
    }
}

/// How much of a request body a retry may send again: all of one that is
/// here whole, else the policy's `buffer`.
fn replay_limit(body: &RequestBody, policy: &RetryPolicy) -> u64 {
    if body.is_whole() { u64::MAX } else { policy.buffer }
}

/// A handshake's `Sec-WebSocket-Key` must be one line holding 16 bytes in
/// base64 (RFC 6455 §4.1): with two, the gateway checked the answer
/// against the first while the target might use either; with none, the
/// handshake could never be answered right. Refused before the upstream.
pub(super) fn handshake_key_fault(headers: &http::HeaderMap) -> Result<(), &'static str> {
    use base64::Engine;
    let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return Err("send exactly one `Sec-WebSocket-Key`");
    };
    match base64::engine::general_purpose::STANDARD.decode(key.as_bytes().trim_ascii()) {
        Ok(nonce) if nonce.len() == 16 => Ok(()),
        _ => Err("`Sec-WebSocket-Key` is 16 random bytes in base64"),
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
fn websocket_accept(key: &HeaderValue) -> HeaderValue {
    use base64::Engine;
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(GUID);
    let encoded = base64::engine::general_purpose::STANDARD.encode(ctx.finish());
    HeaderValue::try_from(encoded).expect("base64 is a valid header value")
}

/// A `101` that completes a WebSocket handshake (RFC 6455 §4.1, client's checks).
fn is_websocket_handshake(headers: &http::HeaderMap, accept: &HeaderValue) -> bool {
    let upgrade = headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let connection = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| crate::wire::field::list(v.as_bytes()))
        .any(|t| t.eq_ignore_ascii_case(b"upgrade"));
    let accepted = headers.get_all(SEC_WEBSOCKET_ACCEPT).iter().eq([accept]);
    upgrade && connection && accepted
}

/// `X-Forwarded-For/Proto/Host`, `X-Request-Id`; `Forwarded` from an
/// untrusted client is dropped (we do not vouch for it).
fn forwarded_headers(
    f: &Forward<'_, '_>,
    headers: &http::HeaderMap,
    host: Option<HeaderValue>,
    edits: &mut HeaderEdits,
) {
    // Every `X-Forwarded-For` line counts (as in `forwarded::resolve`).
    let prior = f.client.peer_trusted && !f.client.from_forwarded && headers.contains_key(&X_FORWARDED_FOR);
    let xff = if f.client.from_forwarded && f.client.ip != f.conn.peer.ip() {
        // The proxies wrote `Forwarded`: the client they name, then them.
        HeaderValue::try_from(format!("{}, {}", f.client.ip, f.conn.peer_ip.to_str().unwrap_or_default())).ok()
    } else if prior {
        let mut xff = String::with_capacity(48);
        for prior in headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()) {
            // An empty line adds no hop (it made `, 127.0.0.1`).
            let prior = prior.trim_matches([' ', '\t', ',']);
            if !prior.is_empty() {
                xff.push_str(prior);
                xff.push_str(", ");
            }
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
        // A trusted proxy's own values stand: its `X-Forwarded-Proto/Host`,
        // or with `client_ip_header: forwarded` the `proto=` and `host=` of
        // the `Forwarded` element it wrote (a balancer that speaks only
        // RFC 7239 took https for http: insecure cookies, redirect loops).
        let said = |name| f.client.from_forwarded.then(|| forwarded::last_forwarded(headers, name)).flatten();
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            let proto = match said("proto") {
                Some(p) if p.eq_ignore_ascii_case("https") => "https",
                Some(p) if p.eq_ignore_ascii_case("http") => "http",
                _ => f.conn.scheme,
            };
            edits.set(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        }
        if !headers.contains_key(&X_FORWARDED_HOST) {
            let named = said("host")
                .filter(|h| crate::wire::admit::host_and_port(h.as_bytes()).is_ok())
                .and_then(|h| HeaderValue::try_from(h).ok());
            if let Some(h) = named.or(host) {
                edits.set(X_FORWARDED_HOST, h);
            }
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
/// connect timeout is a timeout (504); anything else before a response is
/// 502. Either upstream failure says whether the upstream got the request.
/// A copy of `req` to send again, if its body is there whole (none, or
/// read by a phase).
fn copy_of(req: &mut Request<RequestBody>) -> Option<Request<RequestBody>> {
    let body = req.body_mut().try_clone_whole()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// Whether hyper-util's client failed because the connection closed or
/// broke under the request (before any answer: its error comes before the
/// response), on a connection made before the request started: a reused
/// one, which the target may have closed just as it was taken.
fn lost_on_reused(e: &hyper_util::client::legacy::Error, started: tokio::time::Instant) -> bool {
    let reused = e.connect_info().is_some_and(|connected| {
        let mut extras = http::Extensions::new();
        connected.get_extras(&mut extras);
        extras.get::<crate::upstream::client::MadeAt>().is_some_and(|made| made.0 < started)
    });
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut lost = false;
    while let Some(s) = source {
        use std::io::ErrorKind::*;
        lost |= s.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_incomplete_message())
            || s.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof)
            });
        source = s.source();
    }
    reused && lost
}

/// The answer to a request body cut by the client's doing, as `classify`
/// makes it of a `BodyError`.
fn body_cut(cut: crate::http::request_body::BodyCut) -> GatewayError {
    use crate::http::request_body::BodyCut;
    match cut {
        BodyCut::TooLarge(limit) => GatewayError::BodyTooLarge { limit },
        BodyCut::Timeout => GatewayError::BodyTimeout,
        BodyCut::ClientLeft => GatewayError::BodyRead(Box::new(crate::http::error::ClientLeft)),
        BodyCut::Read => GatewayError::BodyRead("the request body could not be read".into()),
    }
}

fn classify(upstream: std::sync::Arc<str>, e: BoxError) -> GatewayError {
    let sent = !not_sent(&*e);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*e);
    while let Some(s) = source {
        if let Some(body) = s.downcast_ref::<BodyError>() {
            return match body {
                BodyError::TooLarge(limit) => GatewayError::BodyTooLarge { limit: *limit },
                BodyError::Timeout => GatewayError::BodyTimeout,
                BodyError::Read(inner) if crate::http::error::client_gone(inner.as_ref()) => {
                    GatewayError::BodyRead(Box::new(crate::http::error::ClientLeft))
                }
                BodyError::Read(_) => GatewayError::BodyRead(body.to_string().into()),
            };
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return GatewayError::UpstreamTimeout { upstream, sent, waited: false };
        }
        source = s.source();
    }
    GatewayError::UpstreamUnreachable { upstream, cause: e, sent }
}

/// Whether the upstream client says the request never left (`NotSent` from
/// `upstream::h1`, a connect error from hyper's client).
pub(super) fn not_sent(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.is::<NotSent>() {
        return true;
    }
    e.downcast_ref::<hyper_util::client::legacy::Error>().is_some_and(|h| h.is_connect())
}

/// The upstream side of a WebSocket after its valid `101`, and the target's
/// in-flight slot, held until the tunnel closes.
pub struct Tunnel {
    upstream: OnUpgrade,
    _in_flight: crate::upstream::InFlight,
    log: TunnelLogged,
    /// The upstream's `timeouts.read`: a tunnel that carries nothing either
    /// way for this long is closed (NGINX: `proxy_read_timeout`, 60 s).
    idle: std::time::Duration,
    /// The listener's `idle_timeout`: a client that reads nothing of what
    /// the upstream sends for this long is cut (NGINX: `send_timeout`),
    /// whatever `idle` is. A write waiting on the client is no silence.
    client_idle: std::time::Duration,
}

/// A WebSocket's access-log line and metrics, handed over by the engine
/// (`TunnelLog::put`) once the `101` is made and finished when the tunnel
/// closes, as NGINX logs it: the whole session's duration, and the bytes
/// each way. Carried in the `101`'s extensions for the engine to find.
#[derive(Clone, Default)]
pub struct TunnelLog(std::sync::Arc<std::sync::Mutex<TunnelHeld>>);

/// What a tunnel holds until it closes, handed over by the engine.
#[derive(Default)]
struct TunnelHeld {
    pending: Option<Box<crate::observe::Pending>>,
    /// The route's concurrency slots: a WebSocket counts against
    /// `concurrency` for as long as it is open, as NGINX's `limit_conn` does.
    slots: Vec<crate::policy::ctx::Slot>,
}

impl TunnelLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, TunnelHeld> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The request's observers, to finish when the tunnel closes.
    pub fn put(&self, pending: Box<crate::observe::Pending>) {
        self.lock().pending = Some(pending);
    }

    /// Concurrency slots, released when the tunnel closes.
    pub fn hold(&self, slots: Vec<crate::policy::ctx::Slot>) {
        self.lock().slots.extend(slots);
    }
}

/// The tunnel's end of its `TunnelLog`: finishes it when dropped (the
/// tunnel closed, never opened, or was cut: a shutdown's deadline), with
/// the bytes it carried up to then.
#[derive(Default)]
struct TunnelLogged {
    log: TunnelLog,
    /// Client to upstream, upstream to client: counted as they pass, so a
    /// tunnel cut where it stands still says what it carried.
    carried: [std::sync::atomic::AtomicU64; 2],
    /// The tunnel ran to its end (a side closed, or it was idle too long):
    /// else it was cut, logged as a connection cut (`DC`).
    ended: bool,
    /// It ended for carrying nothing for its idle time (`SI`).
    idle: bool,
    /// It was cut for its client reading nothing for `idle_timeout` (`DC`).
    unread: bool,
}

impl Drop for TunnelLogged {
    fn drop(&mut self) {
        let (pending, slots) = {
            let mut held = self.log.lock();
            (held.pending.take(), std::mem::take(&mut held.slots))
        };
        drop(slots);
        if let Some(mut p) = pending {
            let [up, down] = &self.carried;
            p.request_bytes += up.load(std::sync::atomic::Ordering::Relaxed);
            p.response_bytes += down.load(std::sync::atomic::Ordering::Relaxed);
            let ending = match (self.ended && !self.unread, self.idle) {
                (true, true) => crate::observe::Ending::Idle,
                (true, false) => crate::observe::Ending::Complete,
                (false, _) => crate::observe::Ending::ClientLeft,
            };
            p.finish(ending);
        }
    }
}

/// How long a tunnel one side has closed stays open for the other side's
/// last bytes (the answer to a close frame sent just before a half-close).
const HALF_CLOSED_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a `101` response for the gateway's own HTTP/1.1 connection carries
/// its tunnel (response extensions must be `Clone`; the tunnel is taken once).
#[derive(Clone)]
pub struct TunnelSlot(std::sync::Arc<std::sync::Mutex<Option<Tunnel>>>);

impl Tunnel {
    /// The tunnel a `101` response carries, for the connection that writes it.
    pub fn take<B>(resp: &mut Response<B>) -> Option<Tunnel> {
        let slot = resp.extensions_mut().remove::<TunnelSlot>()?;
        slot.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Copies bytes both ways between `client` and the upstream until either
    /// side closes (what it sent before is passed on first), as NGINX ends
    /// an upgraded connection: a half-closed tunnel would hold its places
    /// (`concurrency`, `max_requests`) until `timeouts.read`. `early` (what
    /// the client sent after its request head) goes upstream first.
    pub async fn run<C: AsyncRead + AsyncWrite + Unpin>(self, client: C, early: Bytes) {
        // The in-flight place and the log line are held to the end.
        let Tunnel { upstream, _in_flight: held, mut log, idle, client_idle } = self;
        let mut upstream = match upstream.await {
            Ok(upstream) => TokioIo::new(upstream),
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                log.ended = true;
                return;
            }
        };
        if !early.is_empty() && upstream.write_all(&early).await.is_err() {
            log.ended = true;
            return;
        }
        log.carried[0].store(early.len() as u64, std::sync::atomic::Ordering::Relaxed);
        // Counted as they pass, so that a tunnel cut by an error (or by a
        // shutdown, this future dropped) still says what it carried.
        let opened = tokio::time::Instant::now();
        let last_moved_ms = std::sync::atomic::AtomicU64::new(0);
        let blocked_since_ms = std::sync::atomic::AtomicU64::new(NOT_BLOCKED);
        let client = Counting {
            io: client,
            carried: &log.carried,
            opened,
            last_moved_ms: &last_moved_ms,
            blocked_since_ms: &blocked_since_ms,
        };
        // Ends when nothing moved either way for `idle`, or when the client
        // has left a write waiting for `client_idle` (true: the latter).
        let silence = async {
            loop {
                let ms = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
                let (until, unread) = match ms(&blocked_since_ms) {
                    NOT_BLOCKED => (opened + std::time::Duration::from_millis(ms(&last_moved_ms)) + idle, false),
                    since => (opened + std::time::Duration::from_millis(since) + client_idle, true),
                };
                let now = tokio::time::Instant::now();
                if now >= until {
                    return unread;
                }
                // A write that starts waiting on the client meanwhile sets
                // nothing that wakes this: look again within `client_idle`
                // (a long `idle` hid the client's deadline until it ran out).
                tokio::time::sleep_until(until.min(now + client_idle)).await;
            }
        };
        let (mut from_client, mut to_client) = tokio::io::split(client);
        let (mut from_upstream, mut to_upstream) = tokio::io::split(upstream);
        // Each way ends at its reader's end, its writer flushed and shut.
        let last = {
            let up = async {
                let copied = tokio::io::copy(&mut from_client, &mut to_upstream).await;
                (copied, to_upstream.shutdown().await)
            };
            let down = async {
                let copied = tokio::io::copy(&mut from_upstream, &mut to_client).await;
                (copied, to_client.shutdown().await)
            };
            let (mut up, mut down, mut silence) = (std::pin::pin!(up), std::pin::pin!(down), std::pin::pin!(silence));
            // The first way to end (its sender closed, or an error) ends the
            // tunnel, after at most `HALF_CLOSED_GRACE` for the other way: time
            // for the answer to a close frame sent just before a half-close.
            tokio::select! {
                (copied, _) = &mut up => match copied {
                    Err(e) => Some(e),
                    Ok(_) => tokio::time::timeout(HALF_CLOSED_GRACE, down).await.ok().and_then(|(copied, _)| copied.err()),
                },
                (copied, _) = &mut down => match copied {
                    Err(e) => Some(e),
                    Ok(_) => tokio::time::timeout(HALF_CLOSED_GRACE, up).await.ok().and_then(|(copied, _)| copied.err()),
                },
                unread = &mut silence => {
                    if unread {
                        // As an HTTP response left unread: the client's doing (`DC`).
                        tracing::debug!(?client_idle, "tunnel: the client read nothing for idle_timeout; closed");
                        log.unread = true;
                    } else {
                        tracing::debug!(?idle, "tunnel idle for the upstream's read timeout; closed");
                        log.idle = true;
                    }
                    None
                }
            }
        };
        if let Some(e) = last {
            tracing::debug!(error = %e, "tunnel closed with an error");
        }
        drop(from_client.unsplit(to_client));
        log.ended = true;
        drop(held);
    }
}

/// The client side of a tunnel, counting the bytes read from it and
/// written to it (every byte the tunnel moves passes here), and noting when
/// the last ones moved.
struct Counting<'a, C> {
    io: C,
    /// Read from the client, written to it.
    carried: &'a [std::sync::atomic::AtomicU64; 2],
    opened: tokio::time::Instant,
    /// Milliseconds from `opened`.
    last_moved_ms: &'a std::sync::atomic::AtomicU64,
    /// Since when (milliseconds from `opened`) a write to the client has
    /// waited on it, or `NOT_BLOCKED`.
    blocked_since_ms: &'a std::sync::atomic::AtomicU64,
}

/// `Counting::blocked_since_ms` when no write waits on the client.
const NOT_BLOCKED: u64 = u64::MAX;

impl<C> Counting<'_, C> {
    fn moved(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_moved_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Counting<'_, C> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.carried[0].fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            self.moved();
        }
        polled
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Counting<'_, C> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_write(cx, data);
        match polled {
            std::task::Poll::Ready(Ok(n)) => {
                self.carried[1].fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                self.moved();
                self.blocked_since_ms.store(NOT_BLOCKED, std::sync::atomic::Ordering::Relaxed);
            }
            std::task::Poll::Pending
                if self.blocked_since_ms.load(std::sync::atomic::Ordering::Relaxed) == NOT_BLOCKED =>
            {
                let ms = self.opened.elapsed().as_millis() as u64;
                self.blocked_since_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
            }
            _ => {}
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> BoxError {
        Box::new(std::io::Error::new(kind, "test"))
    }

    #[test]
    fn upstream_failures_say_whether_the_request_left() {
        let up: std::sync::Arc<str> = "users".into();
        let refused = classify(up.clone(), Box::new(NotSent(io(std::io::ErrorKind::ConnectionRefused))));
        assert!(matches!(refused, GatewayError::UpstreamUnreachable { sent: false, .. }));
        assert!(refused.retryable());
        let connect_timeout = classify(up.clone(), Box::new(NotSent(io(std::io::ErrorKind::TimedOut))));
        assert!(matches!(connect_timeout, GatewayError::UpstreamTimeout { sent: false, .. }));
        assert!(connect_timeout.retryable());
        let reset = classify(up.clone(), io(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(reset, GatewayError::UpstreamUnreachable { sent: true, .. }));
        assert!(!reset.retryable(), "the upstream may have acted on it");
        let body = classify(up, Box::new(NotSent(Box::new(BodyError::Timeout))));
        assert!(matches!(body, GatewayError::BodyTimeout));
        assert!(!body.retryable(), "the client's fault");
    }
}

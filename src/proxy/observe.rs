//! The engine's side of the observe step: what a request is seen to be
//! and do, gathered as it is served and handed to the response body as an
//! `observe::Pending` (metrics and the access-log line, finished when the
//! body is done).

use std::net::IpAddr;
use std::time::SystemTime;

use tokio::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};
use smallvec::SmallVec;

use super::forward::Tried;
use crate::http::error::GatewayError;
use crate::http::error::UpstreamRefusal;
use crate::http::forwarded::Client;
use crate::observe::access_log::record::{MAX_PATH, MAX_QUERY, MAX_REFERRER, MAX_USER_AGENT, TEXT_ROOM, cut_field};
use crate::observe::access_log::{Record, Try};
use crate::observe::metrics::UpstreamError;
use crate::observe::trace::TraceContext;
use crate::observe::{Ending, Flag, Pending, SpanRequest, SpanStart};
use crate::plan::Plan;
use crate::policy::ctx::{Refusal, RequestCtx};

/// One request as the observers see it, from its arrival to its response.
/// Dropped without a response (the client left while it was served), it
/// is logged as such (status 499, flag `DC`), with the tries made so far
/// (the one in flight as `cancelled`).
pub(super) struct Seen<'p> {
    pub trace: TraceContext,
    /// The matched route's index.
    pub route: Option<usize>,
    /// The declared body size (`Content-Length`), until the codec counts it.
    pub request_bytes: u64,
    pub flag: Flag,
    /// The upstream tries, one entry each (filled only when watching).
    pub tried: SmallVec<[Tried<'p>; 1]>,
    /// What the observers get when the response is made; `None` when
    /// nothing watches (no admin API, access log or span export). Boxed: the
    /// request's future is moved whole, and most of it would be this.
    watch: Option<Box<Pending>>,
}

/// Fills a record (a new one, or one a finished request left, whose text
/// buffer is reused) field by field: `ua`, `referer`, the path and the
/// query as the log keeps them, and blanks for what is learnt later.
fn fill_record<B>(
    r: &mut Record,
    plan: &Plan,
    req: &Request<B>,
    client: &Client,
    peer: IpAddr,
    request_id: &HeaderValue,
) {
    let uri = req.uri();
    let text = &mut r.text;
    text.clear();
    plan.observe.redact.path(uri.path().as_bytes(), text);
    cut_field(text, 0, MAX_PATH);
    r.path_len = text.len() as u32;
    r.query_len = uri.query().map(|q| {
        let from = text.len();
        plan.observe.redact.query(q.as_bytes(), text);
        cut_field(text, from, MAX_QUERY);
        (text.len() - from) as u32
    });
    // Both fields in one walk over the few headers a request has (two
    // lookups hashed each name: ~200 instructions a request).
    let (mut user_agent, mut referer) = (None, None);
    for (name, value) in req.headers() {
        if *name == header::USER_AGENT {
            user_agent = user_agent.or(Some(value));
        } else if *name == header::REFERER {
            referer = referer.or(Some(value));
        }
    }
    r.user_agent_len = user_agent.map(|v| {
        let from = text.len();
        text.extend_from_slice(v.as_bytes());
        cut_field(text, from, MAX_USER_AGENT);
        (text.len() - from) as u32
    });
    r.referrer_len = referer.map(|v| {
        // A referrer's user part, query and fragment may carry credentials too.
        let from = text.len();
        plan.observe.redact.url(v.as_bytes(), text);
        cut_field(text, from, MAX_REFERRER);
        (text.len() - from) as u32
    });
    text.extend_from_slice(&TEXT_ROOM);
    r.time = wall_now();
    r.duration_ns = 0;
    r.method = req.method().clone();
    r.version = req.version();
    r.request_id = request_id.clone();
    r.trace_id = None;
    r.client_ip = client.ip;
    r.source_ip = peer;
    r.tls_version = None;
    r.status = 0;
    r.request_bytes = 0;
    r.response_bytes = 0;
    r.route = None;
    r.upstream = None;
    r.tries.clear();
    r.consumer = None;
    r.auth_provider = None;
    r.auth_outcome = None;
    r.auth_reason = None;
    r.rate_limit = None;
    r.validation = None;
    r.flag = Flag::None;
}

/// The log's `@timestamp`: the real wall time (not the policies' clock,
/// which tests may set), read only when there is an access log.
#[allow(clippy::disallowed_methods)]
fn wall_now() -> SystemTime {
    SystemTime::now()
}

/// A sampled request's span as it begins: what its attributes say of the request.
fn span_start<B>(plan: &Plan, req: &Request<B>, trace: TraceContext, client: &Client, tls: bool) -> Box<SpanStart> {
    let uri = req.uri();
    let query = uri.query().map(|q| {
        let mut out = Vec::new();
        plan.observe.redact.query(q.as_bytes(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let authority =
        uri.authority().map(|a| a.as_str().as_bytes()).or(req.headers().get(header::HOST).map(|h| h.as_bytes()));
    let server = authority.and_then(|a| crate::wire::admit::host_and_port(a).ok()).map(|hp| {
        let host = String::from_utf8_lossy(hp.host).trim_start_matches('[').trim_end_matches(']').to_string();
        (host, hp.port)
    });
    let protocol = match req.version() {
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_10 => "1.0",
        _ => "1.1",
    };
    Box::new(SpanStart {
        trace,
        trace_state: trace.parent.and_then(|_| crate::observe::trace::joined_state(req.headers())),
        wall: wall_now(),
        request: SpanRequest {
            path: {
                let mut path = Vec::new();
                plan.observe.redact.path(uri.path().as_bytes(), &mut path);
                String::from_utf8_lossy(&path).into_owned()
            },
            query,
            scheme: if tls { "https" } else { "http" },
            protocol,
            user_agent: req.headers().get(header::USER_AGENT).map(text),
            server,
        },
        client: client.ip,
    })
}

impl<'p> Seen<'p> {
    pub fn of<B>(
        plan: &Plan,
        req: &Request<B>,
        client: &Client,
        peer: IpAddr,
        tls_version: Option<&'static str>,
        request_id: &HeaderValue,
    ) -> Seen<'p> {
        let observer = &plan.observe;
        let trace =
            TraceContext::of(req.headers(), client.peer_trusted, request_id, || observer.sample(), observer.exports());
        // Nothing watches: no bookkeeping at all (the trace context is still passed on).
        let watch = observer.watching().then(|| {
            let start = Instant::now();
            if observer.metrics {
                observer.active.add(1);
            }
            let mut p = Pending::take(observer.clone(), start, req.method());
            match observer.access_log.get() {
                Some(_) => {
                    let r = p.record.get_or_insert_with(Record::default);
                    fill_record(r, plan, req, client, peer, request_id);
                    r.trace_id = Some(trace.trace_id);
                    r.tls_version = tls_version;
                }
                None => p.record = None,
            }
            p.span = (trace.sampled && observer.exports())
                .then(|| span_start(plan, req, trace, client, tls_version.is_some()));
            p
        });
        Seen { trace, route: None, request_bytes: 0, flag: Flag::None, tried: SmallVec::new(), watch }
    }

    /// The request began to arrive at `since`, before it was seen: its
    /// line's `@timestamp`, its duration and its span start there.
    pub fn began_at(&mut self, since: Instant) {
        let Some(w) = self.watch.as_mut() else { return };
        let before = Instant::now().saturating_duration_since(since);
        w.start = since;
        if let Some(r) = w.record.as_mut() {
            r.time = r.time.checked_sub(before).unwrap_or(r.time);
        }
        if let Some(span) = w.span.as_mut() {
            span.wall = span.wall.checked_sub(before).unwrap_or(span.wall);
        }
    }

    /// Whether anything will report this request.
    pub fn watching(&self) -> bool {
        self.watch.is_some()
    }

    /// A request whose head could not be read, or was refused before
    /// routing: what the connection tells, and its method and target when
    /// they were read (`request`). `since`: when its head began to arrive
    /// (the line's `@timestamp` and the start of its duration), when the
    /// server knows.
    pub fn unread(
        plan: &Plan,
        conn: &crate::http::conn::ConnInfo,
        request_id: &HeaderValue,
        since: Option<Instant>,
        request: Option<&Request<()>>,
    ) -> Seen<'p> {
        let unknown = || {
            let mut req = Request::new(());
            *req.method_mut() = Method::from_bytes(b"-").expect("`-` is a token");
            req
        };
        // A trusted proxy's word counts for a refused request too (its
        // trace continued, the client it names logged), as far as its head
        // was read.
        let client = match request {
            Some(req) => crate::http::forwarded::resolve(conn.peer.ip(), req.headers(), &plan.trusted_proxies),
            None => Client { ip: conn.peer.ip(), peer_trusted: false, from_forwarded: false },
        };
        let mut seen = match request {
            Some(req) => Seen::of(plan, req, &client, conn.peer.ip(), conn.tls_version, request_id),
            None => Seen::of(plan, &unknown(), &client, conn.peer.ip(), conn.tls_version, request_id),
        };
        if let Some(since) = since {
            seen.began_at(since);
        }
        if let Some(r) = seen.watch.as_mut().and_then(|w| w.record.as_mut())
            && request.is_none()
        {
            r.text.clear();
            r.path_len = 0;
        }
        seen.flag = Flag::InvalidInput;
        seen
    }

    /// What the request phases decided, and a responder's answer.
    /// `validates`: the route has a `validate` phase.
    pub fn note(&mut self, ctx: &RequestCtx<'_>, responder: bool, validates: bool) {
        if let Some(received) = ctx.client_left {
            // The client left while a phase read its body: not what the
            // phase would have refused (NGINX's 499).
            self.flag = Flag::ClientClosed;
            self.request_bytes = received;
        } else if let Some(refused) = ctx.refused {
            self.flag = match refused {
                Refusal::Unauthenticated => Flag::Unauthenticated,
                Refusal::Forbidden => Flag::Forbidden,
                Refusal::RateLimited => Flag::RateLimited,
                Refusal::Invalid => Flag::InvalidInput,
            };
        } else if responder && self.flag == Flag::None {
            // A responder's own answer; its refusal (a body too large for
            // `echo`) keeps the flag its error gave.
            self.flag = Flag::LocalResponse;
        }
        let Some(r) = self.watch.as_mut().and_then(|w| w.record.as_mut()) else { return };
        if let Some(id) = &ctx.identity {
            r.auth_provider = Some(id.provider.clone());
            r.auth_outcome = Some("success");
            r.consumer = id.consumer.as_ref().map(|c| c.id.clone());
        } else if ctx.refused == Some(Refusal::Unauthenticated) {
            r.auth_outcome = Some("failure");
            if let Some((provider, reason)) = &ctx.auth_failure {
                r.auth_provider = provider.clone();
                r.auth_reason = Some(reason);
            }
        }
        if validates && ctx.client_left.is_none() {
            let failed = ctx.refused == Some(Refusal::Invalid) || ctx.invalid_reported;
            // A request an earlier phase refused (401, 403, 429) was never
            // validated: no outcome (it read `passed`).
            r.validation = match ctx.refused {
                _ if failed => Some("failed"),
                None => Some("passed"),
                Some(_) => None,
            };
        }
        if ctx.rate_limit.is_some() || ctx.refused == Some(Refusal::RateLimited) {
            r.rate_limit = Some(if ctx.refused == Some(Refusal::RateLimited) { "rejected" } else { "allowed" });
        }
    }

    /// Hands over to the response body.
    pub fn pending(mut self, status: StatusCode) -> Option<Box<Pending>> {
        let mut p = self.watch.take()?;
        let tried = &self.tried;
        p.series = self.route;
        // A client that left mid-body is logged and counted as NGINX's 499,
        // whatever answer was written to the closed connection.
        p.status = if self.flag == Flag::ClientClosed { client_closed() } else { status };
        p.flag = self.flag;
        p.request_bytes = tried.last().and_then(Tried::body_bytes).unwrap_or(self.request_bytes);
        p.bodiless = p.method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if let Some(r) = &mut p.record {
            r.status = p.status.as_u16();
            r.route = self.route.and_then(|i| p.observer.as_ref()?.route_names.get(i).cloned());
            put_tries(r, tried);
            // The answer relayed is the last try's (one upstream, the status it gave).
            r.relayed_from_ns = match tried.last() {
                Some(t) if r.upstream.is_some() && t.outcome == Some(Ok(status.as_u16())) => {
                    Some(t.started.saturating_duration_since(p.start).as_nanos() as u64)
                }
                _ => None,
            };
        }
        Some(p)
    }
}

/// The tries as the log writes them; one still in flight (its client
/// left) is `cancelled`, timed up to now. The upstream time is the time
/// during which a try was under way (an aggregate's calls run side by
/// side: their sum would be longer than the request). Tries of more than
/// one upstream (an aggregate's) name theirs each, and the line no single one.
fn put_tries(r: &mut Record, tried: &[Tried<'_>]) {
    let Some(first) = tried.first() else { return };
    let one_upstream = tried.iter().all(|t| std::ptr::eq(t.upstream, first.upstream));
    r.upstream = one_upstream.then(|| first.upstream.log_name.clone());
    let mut spans: SmallVec<[(Instant, Instant); 2]> = SmallVec::new();
    for t in tried {
        let (outcome, duration_ns) = match t.outcome {
            Some(outcome) => (outcome.map_err(error_name), t.duration_ns),
            None if t.ended => (Err("cancelled"), t.duration_ns),
            None => (Err("cancelled"), Instant::now().saturating_duration_since(t.started).as_nanos() as u64),
        };
        spans.push((t.started, t.started + std::time::Duration::from_nanos(duration_ns)));
        let upstream = (!one_upstream).then(|| t.upstream.log_name.clone());
        r.tries.push(Try { target: t.target.log_label.clone(), upstream, outcome, duration_ns });
    }
    r.upstream_ns = Some(if spans.len() == 1 { first_duration(&r.tries) } else { covered_ns(&mut spans) });
}

fn first_duration(tries: &[Try]) -> u64 {
    tries.first().map_or(0, |t| t.duration_ns)
}

/// The length of the union of `spans`.
fn covered_ns(spans: &mut [(Instant, Instant)]) -> u64 {
    spans.sort_unstable_by_key(|s| s.0);
    let mut total = std::time::Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for &(start, end) in spans.iter() {
        current = match current {
            Some((from, to)) if start <= to => Some((from, to.max(end))),
            Some((from, to)) => {
                total += to - from;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((from, to)) = current {
        total += to - from;
    }
    total.as_nanos() as u64
}

fn error_name(e: UpstreamError) -> &'static str {
    match e {
        UpstreamError::Connect => "connect",
        UpstreamError::Timeout => "timeout",
        UpstreamError::Closed => "closed",
    }
}

impl Drop for Seen<'_> {
    fn drop(&mut self) {
        let Some(mut p) = self.watch.take() else { return };
        // The client left before the response: NGINX's 499.
        p.status = client_closed();
        p.series = self.route;
        p.request_bytes = self.tried.last().and_then(Tried::body_bytes).unwrap_or(self.request_bytes);
        p.bodiless = true;
        if let Some(r) = &mut p.record {
            r.status = 499;
            r.route = self.route.and_then(|i| p.observer.as_ref()?.route_names.get(i).cloned());
            put_tries(r, &self.tried);
        }
        p.finish(Ending::ClientLeft);
    }
}

/// NGINX's status for a request whose client closed the connection first.
fn client_closed() -> StatusCode {
    StatusCode::from_u16(499).expect("499 is a valid status")
}

/// The response flag of an error the engine turned into a problem response.
pub(super) fn flag_of(e: &GatewayError) -> Flag {
    match e {
        GatewayError::NoRoute | GatewayError::MethodNotAllowed { .. } => Flag::NoRoute,
        // Refused, or no connection within `timeouts.connect` (504): not reached.
        GatewayError::UpstreamUnreachable { sent: false, .. }
        | GatewayError::UpstreamTimeout { sent: false, waited: false, .. } => Flag::UpstreamConnectFailure,
        GatewayError::UpstreamUnreachable { sent: true, .. } => Flag::UpstreamClosed,
        GatewayError::UpstreamTimeout { .. } => Flag::UpstreamTimeout,
        GatewayError::CorsRejected(_) => Flag::Forbidden,
        GatewayError::StaleClientAuth => Flag::Unauthenticated,
        GatewayError::Internal(_) => Flag::LocalResponse,
        GatewayError::Refused { rule, .. } => refusal_flag(*rule),
        // The client went away mid-body: NGINX's 499, not its mistake.
        GatewayError::BodyRead(_) if e.client_left() => Flag::ClientClosed,
        GatewayError::BadPath(_)
        | GatewayError::BodyTooLarge { .. }
        | GatewayError::BodyTimeout
        | GatewayError::BodyRead(_)
        | GatewayError::UriTooLong { .. }
        | GatewayError::MissingHost
        | GatewayError::TooManyHeaders
        | GatewayError::MethodOverride(_)
        | GatewayError::AmbiguousHeader(_)
        | GatewayError::BadHandshake(_) => Flag::InvalidInput,
    }
}

/// The response flag of an upstream's refusal.
pub(super) fn refusal_flag(rule: UpstreamRefusal) -> Flag {
    match rule {
        UpstreamRefusal::MaxRequests | UpstreamRefusal::MaxPending => Flag::UpstreamOverflow,
        UpstreamRefusal::BreakerOpen => Flag::BreakerOpen,
        UpstreamRefusal::NoHealthyTarget => Flag::NoHealthyUpstream,
    }
}

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
use crate::observe::access_log::{Record, Try};
use crate::observe::metrics::UpstreamError;
use crate::observe::trace::TraceContext;
use crate::observe::{Ending, Flag, Pending, SpanStart};
use crate::plan::Plan;
use crate::policy::ctx::{Refusal, RequestCtx};

/// One request as the observers see it, from its arrival to its response.
/// Dropped without a response (the client left while it was served), it
/// is logged as such (status 499, flag `DC`).
pub(super) struct Seen {
    pub trace: TraceContext,
    /// The matched route's index.
    pub route: Option<usize>,
    /// The declared body size (`Content-Length`), until the codec counts it.
    pub request_bytes: u64,
    pub flag: Flag,
    /// What the observers get when the response is made; `None` when
    /// nothing watches (no admin API, access log or span export). Boxed: the
    /// request's future is moved whole, and most of it would be this.
    watch: Option<Box<Pending>>,
}

/// `ua`, `referer`, the path and the query, as the log keeps them.
fn record_of<B>(plan: &Plan, req: &Request<B>, client: &Client, peer: IpAddr, request_id: &HeaderValue) -> Record {
    let uri = req.uri();
    let mut text = String::with_capacity(uri.path().len() + 64);
    text.push_str(uri.path());
    let path_len = text.len() as u32;
    let mark = |text: &mut String, from: usize| Some((text.len() - from) as u32);
    let query_len = uri.query().and_then(|q| {
        let from = text.len();
        plan.observe.redact.query(q, &mut text);
        mark(&mut text, from)
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
    let user_agent_len = user_agent.map(|v| {
        let from = text.len();
        push_lossy(&mut text, v.as_bytes());
        (text.len() - from) as u32
    });
    let referrer_len = referer.map(|v| {
        // A referrer's query may carry credentials too.
        let v = String::from_utf8_lossy(v.as_bytes());
        let from = text.len();
        match v.split_once('?') {
            Some((base, q)) => {
                text.push_str(base);
                text.push('?');
                plan.observe.redact.query(q, &mut text);
            }
            None => text.push_str(&v),
        }
        (text.len() - from) as u32
    });
    Record {
        time: wall_now(),
        duration_ns: 0,
        method: req.method().clone(),
        version: req.version(),
        text,
        path_len,
        query_len,
        user_agent_len,
        referrer_len,
        request_id: request_id.clone(),
        trace_id: None,
        client_ip: client.ip,
        source_ip: peer,
        tls_version: None,
        status: 0,
        request_bytes: 0,
        response_bytes: 0,
        route: None,
        upstream: None,
        tries: SmallVec::new(),
        consumer: None,
        auth_provider: None,
        auth_outcome: None,
        rate_limit: None,
        validation: None,
        flag: Flag::None,
    }
}

/// `bytes` as text, invalid UTF-8 replaced (the common, valid case without
/// `from_utf8_lossy`'s chunk walk).
fn push_lossy(text: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => text.push_str(s),
        Err(_) => text.push_str(&String::from_utf8_lossy(bytes)),
    }
}

/// The log's `@timestamp`: the real wall time (not the policies' clock,
/// which tests may set), read only when there is an access log.
#[allow(clippy::disallowed_methods)]
fn wall_now() -> SystemTime {
    SystemTime::now()
}

impl Seen {
    pub fn of<B>(
        plan: &Plan,
        req: &Request<B>,
        client: &Client,
        peer: IpAddr,
        tls_version: Option<&'static str>,
        request_id: &HeaderValue,
    ) -> Seen {
        let observer = &plan.observe;
        let trace = TraceContext::of(req.headers(), client.peer_trusted, request_id, || observer.sample());
        // Nothing watches: no bookkeeping at all (the trace context is still passed on).
        let watch = observer.watching().then(|| {
            let start = Instant::now();
            if observer.metrics {
                observer.active.add(1);
            }
            let record = observer.access_log.get().map(|_| {
                let mut r = record_of(plan, req, client, peer, request_id);
                r.trace_id = Some(trace.trace_id);
                r.tls_version = tls_version;
                r
            });
            let span = (trace.sampled && observer.exports()).then(|| {
                Box::new(SpanStart { trace, wall: wall_now(), path: req.uri().path().to_string(), client: client.ip })
            });
            Box::new(Pending {
                observer: observer.clone(),
                series: None,
                start,
                method: req.method().clone(),
                status: StatusCode::OK,
                request_bytes: 0,
                response_bytes: 0,
                bodiless: false,
                record,
                flag: Flag::None,
                span,
            })
        });
        Seen { trace, route: None, request_bytes: 0, flag: Flag::None, watch }
    }

    /// Whether anything will report this request.
    pub fn watching(&self) -> bool {
        self.watch.is_some()
    }

    /// A request whose head could not be read: what the connection tells.
    pub fn unread(plan: &Plan, conn: &crate::http::conn::ConnInfo, request_id: &HeaderValue) -> Seen {
        let mut req = Request::new(());
        *req.method_mut() = Method::from_bytes(b"-").expect("`-` is a token");
        let client = Client { ip: conn.peer.ip(), peer_trusted: false };
        let mut seen = Seen::of(plan, &req, &client, conn.peer.ip(), conn.tls_version, request_id);
        if let Some(r) = seen.watch.as_mut().and_then(|w| w.record.as_mut()) {
            r.text.clear();
            r.path_len = 0;
        }
        seen.flag = Flag::InvalidInput;
        seen
    }

    /// What the request phases decided, and a responder's answer.
    /// `validates`: the route has a `validate` phase.
    pub fn note(&mut self, ctx: &RequestCtx<'_>, responder: bool, validates: bool) {
        if let Some(refused) = ctx.refused {
            self.flag = match refused {
                Refusal::Unauthenticated => Flag::Unauthenticated,
                Refusal::Forbidden => Flag::Forbidden,
                Refusal::RateLimited => Flag::RateLimited,
                Refusal::Invalid => Flag::InvalidInput,
            };
        } else if responder {
            self.flag = Flag::LocalResponse;
        }
        let Some(r) = self.watch.as_mut().and_then(|w| w.record.as_mut()) else { return };
        if let Some(id) = &ctx.identity {
            r.auth_provider = Some(id.provider.clone());
            r.auth_outcome = Some("success");
            r.consumer = id.consumer.as_ref().map(|c| c.id.clone());
        } else if ctx.refused == Some(Refusal::Unauthenticated) {
            r.auth_outcome = Some("failure");
        }
        if validates {
            r.validation = Some(if ctx.refused == Some(Refusal::Invalid) { "failed" } else { "passed" });
        }
        if ctx.rate_limit.is_some() || ctx.refused == Some(Refusal::RateLimited) {
            r.rate_limit = Some(if ctx.refused == Some(Refusal::RateLimited) { "rejected" } else { "allowed" });
        }
    }

    /// Hands over to the response body.
    pub fn pending(mut self, tried: &[Tried<'_>], status: StatusCode) -> Option<Box<Pending>> {
        let mut p = self.watch.take()?;
        p.series = self.route;
        p.status = status;
        p.flag = self.flag;
        p.request_bytes = tried.last().and_then(|t| t.request_bytes).unwrap_or(self.request_bytes);
        p.bodiless = p.method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if let Some(r) = &mut p.record {
            r.status = status.as_u16();
            r.route = self.route.and_then(|i| p.observer.route_names.get(i).cloned());
            for t in tried {
                r.upstream = Some(t.upstream.log_name.clone());
                r.tries.push(Try {
                    target: t.target.log_label.clone(),
                    outcome: t.outcome.map_err(|e| match e {
                        UpstreamError::Connect => "connect",
                        UpstreamError::Timeout => "timeout",
                        UpstreamError::Closed => "closed",
                    }),
                    duration_ns: t.duration_ns,
                });
            }
        }
        Some(p)
    }
}

impl Drop for Seen {
    fn drop(&mut self) {
        let Some(mut p) = self.watch.take() else { return };
        // The client left before the response: NGINX's 499.
        p.status = StatusCode::from_u16(499).expect("499 is a valid status");
        p.series = self.route;
        p.request_bytes = self.request_bytes;
        p.bodiless = true;
        if let Some(r) = &mut p.record {
            r.status = 499;
            r.route = self.route.and_then(|i| p.observer.route_names.get(i).cloned());
        }
        p.finish(Ending::ClientLeft);
    }
}

/// The response flag of an error the engine turned into a problem response.
pub(super) fn flag_of(e: &GatewayError) -> Flag {
    match e {
        GatewayError::NoRoute | GatewayError::MethodNotAllowed { .. } => Flag::NoRoute,
        GatewayError::UpstreamUnreachable { sent: false, .. } => Flag::UpstreamConnectFailure,
        GatewayError::UpstreamUnreachable { sent: true, .. } => Flag::UpstreamClosed,
        GatewayError::UpstreamTimeout { .. } => Flag::UpstreamTimeout,
        GatewayError::CorsRejected(_) => Flag::Forbidden,
        GatewayError::Internal(_) => Flag::LocalResponse,
        GatewayError::Refused { rule, .. } => match rule {
            UpstreamRefusal::MaxRequests | UpstreamRefusal::MaxPending => Flag::UpstreamOverflow,
            UpstreamRefusal::BreakerOpen => Flag::BreakerOpen,
            UpstreamRefusal::NoHealthyTarget => Flag::NoHealthyUpstream,
        },
        GatewayError::BadPath(_)
        | GatewayError::BodyTooLarge { .. }
        | GatewayError::BodyTimeout
        | GatewayError::BodyRead(_)
        | GatewayError::UriTooLong { .. }
        | GatewayError::MissingHost
        | GatewayError::TooManyHeaders => Flag::InvalidInput,
    }
}

//! The policy phase model: every policy (IP lists, rate limits,
//! authentication, header changes, CORS…) runs in one fixed request phase
//! or response step, in the order listed below whatever order the config
//! lists them in. A policy is a `Compiled` value built once from config;
//! requests only run it.
//!
//! ```text
//!  request ─► access ─► limit_by_ip ─► authenticate ─► authorize ─► limit ─► validate ─► transform ─► upstream | responder
//!               └──────────┴──────────────┴──────────────┴──────────┴─────────┘   any may answer (Outcome::Respond)
//!  client ◄── request id ◄─ HSTS ◄─ security headers ◄─ CORS ◄─ deprecation ◄─ route headers ◄─ rate-limit headers ◄─┘
//!       └─► observe (slot: access log, metrics)
//! ```
//!
//! This file is also the one registration point: the policy folders below,
//! and, after the phase lists, which route key becomes which policy in which
//! phase or step (`Policy`, `ResponsePolicy`, `compile_route`). Beside it:
//! `ctx.rs` (what phases share: the request's context, the identity,
//! rate-limit header info, concurrency slots, `Outcome`), `compile.rs` (what
//! every `compile` gets), `clock.rs` (wall time), `prehashed.rs` (maps keyed by secret hashes). One folder per policy,
//! with `config.rs` (serde types), `mod.rs` (compiled form and behaviour) and
//! `tests.rs`. A policy imports only those three files of this floor, never
//! another policy nor this file (`tests/it/layers.rs`).

// The policies (the registry's first half).
pub mod auth;
pub mod authz;
pub mod cors;
pub mod deprecation;
pub mod headers;
pub mod ip;
pub mod ratelimit;
pub mod security_headers;
pub mod validate;

// What the policies share.
pub mod clock;
pub mod compile;
pub mod ctx;
pub mod prehashed;

use std::sync::Arc;

use http::{HeaderMap, Method, request};

use crate::config::RouteConfig;
use crate::http::Answer;
use compile::CompileCtx;
use ctx::{Outcome, Refusal, RequestCtx, ResponseCtx};
use security_headers::FieldEdits;

/// The request phases, in the order they run (after the engine's
/// admission checks and routing, before the upstream or responder).
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// `ip`: allow/deny lists, first, before anything costs us work.
    Access,
    /// `rate_limit` keyed by IP only: before authentication, which costs CPU
    /// (a flood of bad tokens is limited before it is verified).
    LimitByIp,
    /// `authenticate`: sets `RequestCtx::identity`; identity headers are set here.
    Authenticate,
    /// `authorize`: scopes, claims and groups of the identity just set.
    Authorize,
    /// Per-consumer and per-route limits, quotas and concurrency: after
    /// authorization, so refused callers spend no one's budget.
    Limit,
    /// Input validation (bodies, schemas): the last check, as it may read the body.
    Validate,
    /// `request_headers`: changes to the request just before it leaves,
    /// after every check has read it as the client sent it.
    Transform,
}

/// The response steps, in the order they run on every response of a route
/// (forwarded, made by a responder or a policy, or an error). The engine
/// runs the ones marked *engine*; `ResponsePolicy` (below) the rest.
// The engine's steps are listed for their place in the order; only the
// policies' are built (to sort a route's response policies).
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResponseStep {
    /// *engine*: `RateLimit`/`RateLimit-Policy` of the tightest limit met,
    /// on 429s and successes alike; first, as it only reads the request's context.
    RateLimitHeaders,
    /// `response_headers`: the route's own changes, before the gateway's
    /// headers below, which must win.
    RouteHeaders,
    /// `deprecated`: `Deprecation`, `Sunset`, `Link`, appended.
    Deprecation,
    /// `cors`: grants for an allowed `Origin` (preflights are answered
    /// before routing's policies run, by the same policy).
    Cors,
    /// `security_headers`: defaults where missing, `set` values, banners
    /// removed; not on a `101`. Kept apart in `Chain::security`, as the one
    /// step a writer can still apply to an upstream's raw header lines.
    SecurityHeaders,
    /// *engine*: HSTS on TLS listeners (a listener's setting, not a route's).
    Hsts,
    /// *engine*: `X-Request-Id`, last, so nothing replaces it.
    RequestId,
    /// *engine*: the access log, metrics and span, once every header is
    /// final; finished when the response body is (`observe::Pending`).
    Observe,
}

// ---- The registry: which config key becomes which policy, in which phase or step.

/// A request-phase policy. An enum (not trait objects): no allocation and
/// no dynamic dispatch per call, and async policies can use plain `async fn`.
#[derive(Debug)]
pub enum Policy {
    /// IP allow/deny lists.
    Ip(ip::Compiled),
    /// Limits keyed by client IP only.
    LimitByIp(ratelimit::Compiled),
    /// Other limits, quotas and concurrency.
    Limit(ratelimit::Compiled),
    /// The route's authentication providers.
    Authenticate(auth::RouteAuth),
    /// Scopes, claims and groups.
    Authorize(authz::Compiled),
    /// Sets and removes request headers.
    RequestHeaders(headers::Compiled),
    /// Parameters, headers and body against their schemas.
    Validate(Box<validate::Compiled>),
}

impl Policy {
    /// What the access log and metrics call this policy's refusals.
    fn refusal(&self) -> Refusal {
        match self {
            Policy::LimitByIp(_) | Policy::Limit(_) => Refusal::RateLimited,
            Policy::Authenticate(_) => Refusal::Unauthenticated,
            Policy::Ip(_) | Policy::Authorize(_) | Policy::RequestHeaders(_) => Refusal::Forbidden,
            Policy::Validate(_) => Refusal::Invalid,
        }
    }

    pub fn phase(&self) -> Phase {
        match self {
            Policy::Ip(_) => Phase::Access,
            Policy::LimitByIp(_) => Phase::LimitByIp,
            Policy::Authenticate(_) => Phase::Authenticate,
            Policy::Authorize(_) => Phase::Authorize,
            Policy::Limit(_) => Phase::Limit,
            Policy::Validate(_) => Phase::Validate,
            Policy::RequestHeaders(_) => Phase::Transform,
        }
    }

    /// The outcome without awaiting, when this policy can give it so; `None`
    /// (with nothing changed): use `on_request`.
    fn try_sync(&self, req: &mut request::Parts, ctx: &mut RequestCtx<'_>) -> Option<Outcome> {
        match self {
            Policy::Ip(ip) => Some(ip.on_request(ctx)),
            Policy::LimitByIp(l) | Policy::Limit(l) => l.try_sync(req, ctx),
            Policy::Authenticate(auth) => auth.try_sync(req, ctx),
            Policy::Authorize(authz) => Some(authz.on_request(req, ctx)),
            Policy::RequestHeaders(h) => {
                h.apply(&mut req.headers);
                Some(Outcome::Continue)
            }
            Policy::Validate(v) => v.try_sync(req, ctx),
        }
    }

    /// Whether this policy reads or changes the request's headers (so that
    /// the identity headers must be in them by then).
    fn reads_headers(&self) -> bool {
        match self {
            Policy::Limit(l) | Policy::LimitByIp(l) => l.reads_headers(),
            Policy::RequestHeaders(_) => true,
            // Its header checks read what the client sent, before the identity headers.
            Policy::Ip(_) | Policy::Authenticate(_) | Policy::Authorize(_) | Policy::Validate(_) => false,
        }
    }

    async fn on_request(&self, req: &mut request::Parts, ctx: &mut RequestCtx<'_>) -> Outcome {
        match self {
            Policy::Ip(ip) => ip.on_request(ctx),
            Policy::LimitByIp(l) | Policy::Limit(l) => l.on_request(req, ctx).await,
            Policy::Authenticate(auth) => auth.on_request(req, ctx).await,
            Policy::Authorize(authz) => authz.on_request(req, ctx),
            Policy::RequestHeaders(h) => {
                h.apply(&mut req.headers);
                Outcome::Continue
            }
            Policy::Validate(v) => v.on_request(req, ctx).await,
        }
    }
}

/// A response-step policy of a route (the steps the engine owns, such as
/// HSTS and the request id, are not here).
#[derive(Debug)]
pub enum ResponsePolicy {
    /// The route's `response_headers`.
    Headers(headers::Compiled),
    /// `Deprecation`, `Sunset`, `Link`.
    Deprecation(deprecation::Compiled),
    /// CORS grants on actual requests; it also answers preflights (`Chain::preflight`).
    Cors(cors::Compiled),
}

impl ResponsePolicy {
    pub fn step(&self) -> ResponseStep {
        match self {
            ResponsePolicy::Headers(_) => ResponseStep::RouteHeaders,
            ResponsePolicy::Deprecation(_) => ResponseStep::Deprecation,
            ResponsePolicy::Cors(_) => ResponseStep::Cors,
        }
    }

    fn on_response(&self, headers: &mut HeaderMap, cx: &ResponseCtx<'_>) {
        match self {
            ResponsePolicy::Headers(h) => h.apply(headers),
            ResponsePolicy::Deprecation(d) => d.on_response(headers),
            ResponsePolicy::Cors(c) if !cx.preflight => c.on_response(cx.origin, headers),
            ResponsePolicy::Cors(_) => {}
        }
    }
}

/// Compiles a route's policies; problems go to `cx.errors`, at full paths.
pub fn compile_route(route: &RouteConfig, cx: &mut CompileCtx<'_>) -> Option<Chain> {
    let before = cx.errors.len();
    let mut request = Vec::new();
    let mut response = Vec::new();

    // Request phases.
    if let Some(cfg) = &route.ip {
        let c = ip::Compiled::compile(cfg, cx);
        request.extend(cx.take("ip", c).map(Policy::Ip));
    }
    if !route.authenticate.is_empty() {
        let c = auth::compile(&route.authenticate, route.anonymous, cx);
        request.extend(cx.take("authenticate", c).map(Policy::Authenticate));
    } else if route.anonymous {
        cx.error("anonymous", "`anonymous` needs `authenticate` on the same route");
    }
    if let Some(cfg) = &route.authorize {
        if route.authenticate.is_empty() {
            cx.error("authorize", "`authorize` needs `authenticate` on the same route");
        }
        if route.anonymous {
            cx.error("authorize", "`authorize` would refuse every anonymous caller: drop `anonymous`, or `authorize`");
        }
        let c = authz::Compiled::compile(cfg, cx);
        request.extend(cx.take("authorize", c).map(Policy::Authorize));
    }
    let limits =
        ratelimit::RouteLimits { rate_limit: &route.rate_limit, quota: &route.quota, concurrency: &route.concurrency };
    let c = ratelimit::compile(&limits, cx);
    if let Some((by_ip, later)) = cx.take("", c) {
        request.extend(by_ip.map(Policy::LimitByIp));
        request.extend(later.map(Policy::Limit));
    }
    if let Some(cfg) = &route.validate {
        let c = validate::Compiled::compile(cfg, cx).map(Box::new);
        request.extend(cx.take("validate", c).map(Policy::Validate));
    }
    if let Some(cfg) = &route.request_headers {
        let c = headers::Compiled::compile(cfg, cx);
        request.extend(cx.take("request_headers", c).map(Policy::RequestHeaders));
    }

    // Response steps.
    if let Some(cfg) = &route.response_headers {
        let c = headers::Compiled::compile(cfg, cx);
        response.extend(cx.take("response_headers", c).map(ResponsePolicy::Headers));
    }
    if let Some(cfg) = &route.deprecated {
        let c = deprecation::Compiled::compile(cfg, cx);
        response.extend(cx.take("deprecated", c).map(ResponsePolicy::Deprecation));
    }
    if let Some(cfg) = &route.cors {
        let c = cors::Compiled::compile(cfg, cx);
        response.extend(cx.take("cors", c).map(ResponsePolicy::Cors));
        // The route's `cors` is the only answer (edge.md): a set field
        // would override it on preflights and be removed on actual responses.
        let sets = [
            ("response_headers", route.response_headers.as_ref().map(|h| &h.set)),
            ("security_headers", route.security_headers.as_ref().map(|h| &h.set)),
        ];
        for (key, set) in sets {
            for name in set.into_iter().flat_map(|s| s.keys()).filter(|k| cors::is_cors_field(k)) {
                cx.error(
                    &format!("{key}.set.{name}"),
                    "the route's `cors` writes the Access-Control-* fields for the origins it allows: leave them to it",
                );
            }
        }
    }
    let security = match &route.security_headers {
        Some(cfg) => {
            let c = security_headers::compile(cfg, cx).map(Arc::new);
            cx.take("security_headers", c).unwrap_or_default()
        }
        None => cx.shared::<Arc<FieldEdits>>().cloned().unwrap_or_default(),
    };
    (cx.errors.len() == before).then(|| Chain::new(request, response, security))
}

/// One route's policies, sorted by phase and step once, at compile time.
#[derive(Debug, Default)]
pub struct Chain {
    request: Vec<Policy>,
    response: Vec<ResponsePolicy>,
    /// The security-headers step: kept apart, as the one response step a
    /// writer can still apply to raw upstream lines (`wire::field_edits`).
    security: Arc<FieldEdits>,
    /// Whether the engine writes the identity headers (with the upstream
    /// request's edits, or into the map for a responder): when no phase
    /// after authentication reads the headers. Else authentication sets them.
    identity_by_engine: bool,
}

impl Chain {
    pub fn new(mut request: Vec<Policy>, mut response: Vec<ResponsePolicy>, security: Arc<FieldEdits>) -> Chain {
        // Stable: policies of one phase keep their config order.
        request.sort_by_key(Policy::phase);
        response.sort_by_key(ResponsePolicy::step);
        // The identity headers cost a map insert each when authentication
        // sets them; the engine writes them as lines instead, unless a later
        // phase (a header-keyed limit, `request_headers`) must see them.
        let mut identity_by_engine = false;
        if let Some(at) = request.iter().position(|p| matches!(p, Policy::Authenticate(_))) {
            let read_later = request[at + 1..].iter().any(Policy::reads_headers);
            if let Policy::Authenticate(auth) = &mut request[at] {
                if read_later {
                    auth.set_headers_now();
                } else {
                    identity_by_engine = true;
                }
            }
        }
        Chain { request, response, security, identity_by_engine }
    }

    /// The chain of responses without a route (404, 405, refusals): the
    /// default security headers only.
    pub fn without_route(security: Arc<FieldEdits>) -> Chain {
        Chain { request: Vec::new(), response: Vec::new(), security, identity_by_engine: false }
    }

    /// Whether the engine writes the identity headers of the request's
    /// identity (`auth::IdentityHeaders::lines`), rather than authentication.
    pub fn identity_by_engine(&self) -> bool {
        self.identity_by_engine
    }

    /// Whether the route has a `validate` phase.
    pub fn validates(&self) -> bool {
        self.request.iter().any(|p| matches!(p, Policy::Validate(_)))
    }

    /// The declared responses an upstream's answers are checked against
    /// (`apis[].validate.response: report`).
    pub fn response_rules(&self) -> Option<&std::sync::Arc<validate::response::ResponseRules>> {
        self.request.iter().find_map(|p| match p {
            Policy::Validate(v) => v.response_rules(),
            _ => None,
        })
    }

    /// Whether a phase reads the request body (the engine hands it over in
    /// `RequestCtx::body`).
    pub fn reads_body(&self) -> bool {
        self.request.iter().any(|p| matches!(p, Policy::Validate(v) if v.reads_body()))
    }

    pub fn has_request_policies(&self) -> bool {
        !self.request.is_empty()
    }

    /// Runs the request phases as far as they go without awaiting (cached
    /// tokens, the embedded rate-limit store…): `Ok` is the outcome, `Err(i)`
    /// the first policy that must await; finish with `on_request_from(i)`.
    /// Most requests never need the boxed future that awaiting takes.
    pub fn on_request_sync(&self, req: &mut request::Parts, ctx: &mut RequestCtx<'_>) -> Result<Outcome, usize> {
        for (i, policy) in self.request.iter().enumerate() {
            match policy.try_sync(req, ctx) {
                Some(Outcome::Continue) => {}
                Some(respond) => {
                    ctx.refused = Some(policy.refusal());
                    return Ok(respond);
                }
                None => return Err(i),
            }
        }
        Ok(Outcome::Continue)
    }

    /// Runs the request phases from the policy at `from` on; the first
    /// `Respond` ends the request.
    pub async fn on_request_from(&self, from: usize, req: &mut request::Parts, ctx: &mut RequestCtx<'_>) -> Outcome {
        for policy in &self.request[from..] {
            if let Outcome::Respond(resp) = policy.on_request(req, ctx).await {
                ctx.refused = Some(policy.refusal());
                return Outcome::Respond(resp);
            }
        }
        Outcome::Continue
    }

    /// The method a CORS preflight asks about, when the request is one
    /// (answered before the request phases, for the route the real request takes).
    pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
        cors::Compiled::is_preflight(method, headers)
    }

    /// The answer to a CORS preflight for this route, when it has CORS.
    pub fn preflight(&self, requested: &Method, headers: &HeaderMap) -> Option<Result<Answer, &'static str>> {
        self.response.iter().find_map(|p| match p {
            ResponsePolicy::Cors(c) => Some(c.preflight(requested, headers)),
            _ => None,
        })
    }

    /// Whether a response step must see the whole header map (else an
    /// upstream's raw lines can go out with only `security()` applied).
    pub fn edits_map(&self) -> bool {
        !self.response.is_empty()
    }

    /// The security-headers step, as edits both writers can apply.
    pub fn security(&self) -> &Arc<FieldEdits> {
        &self.security
    }

    /// The route's response steps, in `ResponseStep` order, up to and
    /// including the security headers (on a `101`, only their removals:
    /// the upstream's `Server` goes from the handshake as from any answer).
    pub fn on_response(&self, headers: &mut HeaderMap, cx: &ResponseCtx<'_>) {
        for policy in &self.response {
            policy.on_response(headers, cx);
        }
        if cx.switching {
            self.security.remove_only(headers);
        } else {
            self.security.apply(headers);
        }
    }
}

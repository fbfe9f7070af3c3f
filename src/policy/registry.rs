//! The one registration point: which config keys of a route become which
//! policies, and the enums that hold them. A new policy adds its folder and
//! one block here (its variant, the phase or response step it runs in, and
//! the lines that compile it); nothing else (recipe: docs/policies.md).

use std::sync::Arc;

use http::{HeaderMap, Method, request};

use super::compile::CompileCtx;
use super::security_headers::FieldEdits;
use super::{
    Outcome, Phase, RequestCtx, ResponseCtx, ResponseStep, auth, authz, cors, deprecation, headers, ip, ratelimit,
    security_headers,
};
use crate::config::RouteConfig;
use crate::http::Answer;

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
}

impl Policy {
    pub fn phase(&self) -> Phase {
        match self {
            Policy::Ip(_) => Phase::Access,
            Policy::LimitByIp(_) => Phase::LimitByIp,
            Policy::Authenticate(_) => Phase::Authenticate,
            Policy::Authorize(_) => Phase::Authorize,
            Policy::Limit(_) => Phase::Limit,
            Policy::RequestHeaders(_) => Phase::Transform,
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
            ResponsePolicy::Cors(c) => c.on_response(cx.origin, headers),
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
        let c = auth::compile(&route.authenticate, cx);
        request.extend(cx.take("authenticate", c).map(Policy::Authenticate));
    }
    if let Some(cfg) = &route.authorize {
        if route.authenticate.is_empty() {
            cx.error("authorize", "`authorize` needs `authenticate` on the same route");
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
}

impl Chain {
    pub fn new(mut request: Vec<Policy>, mut response: Vec<ResponsePolicy>, security: Arc<FieldEdits>) -> Chain {
        // Stable: policies of one phase keep their config order.
        request.sort_by_key(Policy::phase);
        response.sort_by_key(ResponsePolicy::step);
        Chain { request, response, security }
    }

    /// The chain of responses without a route (404, 405, refusals): the
    /// default security headers only.
    pub fn without_route(security: Arc<FieldEdits>) -> Chain {
        Chain { request: Vec::new(), response: Vec::new(), security }
    }

    pub fn has_request_policies(&self) -> bool {
        !self.request.is_empty()
    }

    /// Runs the request phases; the first `Respond` ends the request.
    pub async fn on_request(&self, req: &mut request::Parts, ctx: &mut RequestCtx<'_>) -> Outcome {
        for policy in &self.request {
            if let Outcome::Respond(resp) = policy.on_request(req, ctx).await {
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
    /// including the security headers (not on a `101`).
    pub fn on_response(&self, headers: &mut HeaderMap, cx: &ResponseCtx<'_>) {
        for policy in &self.response {
            policy.on_response(headers, cx);
        }
        if !cx.switching {
            self.security.apply(headers);
        }
    }
}

//! The one registration point: which config keys of a route become which
//! policies. A new policy adds one block here and its own folder.

use std::sync::Arc;

use crate::config::RouteConfig;

use super::auth::{IdentityHeaders, Providers, RouteAuth};
use http::{request, response};

use super::{Outcome, Phase, RequestCtx, auth, authz, headers, ip, ratelimit};

/// What routes share: the plan's authentication providers and counters.
pub struct Shared<'a> {
    pub providers: &'a Providers,
    pub identity_headers: &'a Arc<IdentityHeaders>,
    pub stores: &'a Arc<ratelimit::Stores>,
}

/// Compiles a route's policies. Errors are `(path under the route, message)`.
pub fn compile_route(route: &RouteConfig, shared: &Shared<'_>) -> Result<Chain, Vec<(String, String)>> {
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    let mut prefixed = |key: &str, errs: Vec<(String, String)>| {
        errors.extend(errs.into_iter().map(|(p, m)| {
            let path = match p.as_str() {
                "" => key.to_string(),
                p if key.is_empty() => p.to_string(),
                p if p.starts_with('[') => format!("{key}{p}"),
                p => format!("{key}.{p}"),
            };
            (path, m)
        }));
    };
    if let Some(cfg) = &route.ip {
        match ip::Compiled::compile(cfg) {
            Ok(c) => policies.push(Policy::Ip(c)),
            Err(e) => prefixed("ip", e),
        }
    }
    if !route.authenticate.is_empty() {
        let mut providers = Vec::new();
        for (i, name) in route.authenticate.iter().enumerate() {
            match shared.providers.get(name) {
                Some(p) => providers.push(p.clone()),
                None => {
                    let mut known: Vec<&str> = shared.providers.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    prefixed(
                        "authenticate",
                        vec![(
                            format!("[{i}]"),
                            format!("unknown auth provider `{name}` (defined: {})", known.join(", ")),
                        )],
                    );
                }
            }
        }
        let auth = RouteAuth::new(providers, shared.identity_headers.clone());
        if auth.bearer_providers() > 1 {
            prefixed(
                "authenticate",
                vec![(
                    String::new(),
                    "at most one bearer-token provider (jwt or introspection) per route: the first would take every token"
                        .into(),
                )],
            );
        }
        policies.push(Policy::Authenticate(auth));
    }
    match ratelimit::compile_route(
        &route.name,
        route.upstream.as_deref(),
        &route.rate_limit,
        &route.quota,
        &route.concurrency,
        shared.stores,
    ) {
        Ok((by_ip, later)) => {
            policies.extend(by_ip.map(Policy::LimitByIp));
            policies.extend(later.map(Policy::Limit));
        }
        Err(e) => prefixed("", e),
    }
    if let Some(cfg) = &route.authorize {
        if route.authenticate.is_empty() {
            prefixed("authorize", vec![(String::new(), "`authorize` needs `authenticate` on the same route".into())]);
        }
        match authz::Compiled::compile(cfg) {
            Ok(c) => policies.push(Policy::Authorize(c)),
            Err(e) => prefixed("authorize", e),
        }
    }
    if let Some(cfg) = &route.request_headers {
        match headers::Compiled::compile(cfg) {
            Ok(c) => policies.push(Policy::RequestHeaders(c)),
            Err(e) => prefixed("request_headers", e),
        }
    }
    if let Some(cfg) = &route.response_headers {
        match headers::Compiled::compile(cfg) {
            Ok(c) => policies.push(Policy::ResponseHeaders(c)),
            Err(e) => prefixed("response_headers", e),
        }
    }
    if errors.is_empty() { Ok(Chain::new(policies)) } else { Err(errors) }
}

/// Every kind of compiled policy. An enum (not trait objects): no allocation
/// and no dynamic dispatch per call, and async policies can use plain `async fn`.
#[derive(Debug)]
pub enum Policy {
    /// IP allow/deny lists (access phase).
    Ip(ip::Compiled),
    /// Limits keyed by client IP only (limit_by_ip phase).
    LimitByIp(ratelimit::Compiled),
    /// Other limits, quotas and concurrency (limit phase).
    Limit(ratelimit::Compiled),
    /// The route's authentication providers (authenticate phase).
    Authenticate(auth::RouteAuth),
    /// Scopes, claims and groups (authorize phase).
    Authorize(authz::Compiled),
    /// Sets and removes request headers (transform phase).
    RequestHeaders(headers::Compiled),
    /// Sets and removes response headers (response phase).
    ResponseHeaders(headers::Compiled),
}

impl Policy {
    /// The request phase this policy runs in; `None` for response-only policies.
    pub fn phase(&self) -> Option<Phase> {
        match self {
            Policy::Ip(_) => Some(Phase::Access),
            Policy::LimitByIp(_) => Some(Phase::LimitByIp),
            Policy::Limit(_) => Some(Phase::Limit),
            Policy::Authenticate(_) => Some(Phase::Authenticate),
            Policy::Authorize(_) => Some(Phase::Authorize),
            Policy::RequestHeaders(_) => Some(Phase::Transform),
            Policy::ResponseHeaders(_) => None,
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
            Policy::ResponseHeaders(_) => Outcome::Continue,
        }
    }

    fn on_response(&self, resp: &mut response::Parts, _ctx: &RequestCtx<'_>) {
        if let Policy::ResponseHeaders(h) = self {
            h.apply(&mut resp.headers);
        }
    }
}

/// One route's policies, sorted by phase once, at compile time.
#[derive(Debug, Default)]
pub struct Chain {
    request: Vec<Policy>,
    response: Vec<Policy>,
}

impl Chain {
    pub fn new(policies: Vec<Policy>) -> Chain {
        let (mut request, response): (Vec<Policy>, Vec<Policy>) =
            policies.into_iter().partition(|p| p.phase().is_some());
        // Stable: policies of one phase keep their config order.
        request.sort_by_key(|p| p.phase());
        Chain { request, response }
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

    /// Runs the response phase, on every response the route sends.
    pub fn has_response_policies(&self) -> bool {
        !self.response.is_empty()
    }

    pub fn on_response(&self, resp: &mut response::Parts, ctx: &RequestCtx<'_>) {
        for policy in &self.response {
            policy.on_response(resp, ctx);
        }
    }
}

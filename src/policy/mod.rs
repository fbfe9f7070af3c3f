//! The policy phase model. Every policy (IP lists, rate limits,
//! authentication, validation, header changes…) runs in one fixed phase, in
//! this order whatever order the config lists them in:
//!
//! ```text
//!  request ──► access ─► limit_by_ip ─► authenticate ─► authorize ─► limit ─► validate ─► transform ──► upstream
//!                │            │              │              │           │          │           │          or responder
//!                └────────────┴──────────────┴──────────────┴───────────┴──────────┘           │
//!                        any of them may end the request with a response (Outcome::Respond)  │
//!  client ◄── response ◄───────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! A policy is a `Compiled` value built once from config (`registry.rs`);
//! requests only run it. Policies share state only through [`RequestCtx`].

pub mod auth;
pub mod authz;
pub mod cors;
pub mod headers;
pub mod ip;
pub mod ratelimit;
pub mod registry;
pub mod security_headers;

use std::net::IpAddr;

use http::{HeaderValue, request, response};

use crate::http::Answer;

/// The request phases, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// IP allow/deny: before anything costs us work.
    Access,
    /// Per-IP rate limits: before authentication, which costs CPU.
    LimitByIp,
    Authenticate,
    Authorize,
    /// Per-consumer and per-route limits and quotas: needs the identity.
    Limit,
    /// Input validation (bodies, schemas).
    Validate,
    /// Changes to the request just before it leaves (headers, …).
    Transform,
}

/// What a request phase decided.
// `Respond` is built at most once per request and moved straight out; boxing
// it would add an allocation to every gateway-made response.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outcome {
    /// Go on to the next policy.
    Continue,
    /// Stop here and send this response (the engine adds the common headers).
    Respond(Answer),
}

/// What policies know about the request beyond its headers. The one place
/// where phases share state.
#[derive(Debug)]
pub struct RequestCtx<'a> {
    pub client_ip: IpAddr,
    pub request_id: &'a HeaderValue,
    pub route: &'a str,
    /// The verified client certificate, on mutual-TLS listeners.
    pub client_cert: Option<&'a crate::tls::ClientIdentity>,
    /// Set by the authenticate phase.
    pub identity: Option<auth::Identity>,
    /// The tightest rate limit seen, for the `RateLimit` response headers.
    pub rate_limit: Option<ratelimit::HeaderInfo>,
    /// Concurrency slots, held until the response is done.
    pub slots: Vec<ratelimit::Slot>,
}

impl<'a> RequestCtx<'a> {
    pub fn new(
        client_ip: IpAddr,
        request_id: &'a HeaderValue,
        route: &'a str,
        client_cert: Option<&'a crate::tls::ClientIdentity>,
    ) -> RequestCtx<'a> {
        RequestCtx { client_ip, request_id, route, client_cert, identity: None, rate_limit: None, slots: Vec::new() }
    }
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

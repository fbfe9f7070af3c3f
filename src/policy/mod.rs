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
//! Where things are: `registry.rs` (the one registration point: config key →
//! policy → phase or step), `compile.rs` (what every `compile` gets),
//! `ctx.rs` (what phases share: the request's context, the identity, rate-limit
//! header info, concurrency slots), and one folder per policy with its
//! `config.rs` (serde types), `mod.rs` (compiled form and behaviour) and its
//! tests. A policy never imports another policy (`tests/it/layers.rs`).

pub mod auth;
pub mod authz;
pub mod clock;
pub mod compile;
pub mod cors;
mod ctx;
pub mod deprecation;
pub mod headers;
pub mod ip;
pub mod ratelimit;
pub mod registry;
pub mod security_headers;

use crate::http::Answer;

pub use ctx::{Consumer, HeaderInfo, Identity, Releases, RequestCtx, ResponseCtx, Slot};

/// The request phases, in the order they run (after the engine's
/// admission checks and routing, before the upstream or responder).
// `Validate` has its slot before its policy lands (the validation issue).
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
/// runs the ones marked *engine*; the registry's `ResponsePolicy` the rest.
// The engine's steps are listed for their place in the order; only the
// registry's are built (to sort a route's response policies).
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
    /// *engine*, a slot left for the observability work: the access log and
    /// metrics, once every header is final. Nothing runs here yet.
    Observe,
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

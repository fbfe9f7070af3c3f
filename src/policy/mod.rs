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
mod ctx;
pub mod headers;
pub mod ip;
pub mod ratelimit;
pub mod registry;
pub mod security_headers;

use crate::http::Answer;

pub use ctx::{Consumer, HeaderInfo, Identity, Releases, RequestCtx, Slot};

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

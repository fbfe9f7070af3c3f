//! What the request phases share, and nothing else: the request's context
//! ([`RequestCtx`]) and the values one phase leaves for a later one or for
//! the response (who the caller is, the tightest rate limit, concurrency
//! slots). A policy reads these; it never imports another policy.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use http::HeaderValue;

use crate::http::Answer;
use crate::http::request_body::RequestBody;
use crate::tls::ClientIdentity;

/// What policies know about the request beyond its headers. The one place
/// where phases share state.
#[derive(Debug)]
pub struct RequestCtx<'a> {
    pub client_ip: IpAddr,
    pub request_id: &'a HeaderValue,
    pub route: &'a str,
    /// The verified client certificate, on mutual-TLS listeners.
    pub client_cert: Option<&'a ClientIdentity>,
    /// Set by the authenticate phase: shared with the provider's cache, not copied.
    pub identity: Option<Arc<Identity>>,
    /// The tightest rate limit seen, for the `RateLimit` response headers.
    pub rate_limit: Option<HeaderInfo>,
    /// Concurrency slots, held until the response is done.
    pub slots: Vec<Slot>,
    /// Which kind of policy answered instead of the route (logs, metrics).
    pub refused: Option<Refusal>,
    /// Why authentication refused the request: the provider whose
    /// credential was refused (none when no credential was sent) and the
    /// reason, as `portcullis_auth_failures_total` counts it (the log).
    pub auth_failure: Option<(Option<Arc<str>>, &'static str)>,
    /// Validation in `report` mode found what `enforce` would refuse (the
    /// request went on; the log says `failed`).
    pub invalid_reported: bool,
    /// The request body, on routes whose policies read it (validation);
    /// the engine takes it back after the phases.
    pub body: Option<RequestBody>,
    /// The client left while a phase read its body (the bytes that came):
    /// the phase's answer reaches no one, and the request is logged as the
    /// client's leaving (499, `DC`), not as what the phase would refuse.
    pub client_left: Option<u64>,
    /// The route's path parameters: names, and the values this request's
    /// path gave them (same order).
    pub path_params: (&'a [Arc<str>], &'a [&'a str]),
}

/// Why a policy answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unauthenticated,
    Forbidden,
    RateLimited,
    Invalid,
}

impl<'a> RequestCtx<'a> {
    pub fn new(
        client_ip: IpAddr,
        request_id: &'a HeaderValue,
        route: &'a str,
        client_cert: Option<&'a ClientIdentity>,
    ) -> RequestCtx<'a> {
        RequestCtx {
            client_ip,
            request_id,
            route,
            client_cert,
            identity: None,
            rate_limit: None,
            slots: Vec::new(),
            refused: None,
            auth_failure: None,
            invalid_reported: false,
            body: None,
            client_left: None,
            path_params: (&[], &[]),
        }
    }
}

/// What the response steps know besides the response's headers.
#[derive(Debug, Clone, Copy)]
pub struct ResponseCtx<'a> {
    /// The request's `Origin` (CORS).
    pub origin: Option<&'a HeaderValue>,
    /// The response is a `101`: its head goes out as the upstream sent it
    /// (no security headers on a protocol switch).
    pub switching: bool,
    /// The response is the gateway's answer to a CORS preflight (its
    /// `Access-Control-*` fields are the route's already).
    pub preflight: bool,
}

/// Who the caller is, once authenticated (set by `auth`, read by `authz`,
/// the rate limits and the identity headers).
#[derive(Debug, Clone)]
pub struct Identity {
    pub provider: Arc<str>,
    pub subject: String,
    pub consumer: Option<Arc<Consumer>>,
    pub scopes: Vec<String>,
    /// Token claims (JWT or introspection answer), for `authorize.claims`.
    pub claims: Option<Arc<serde_json::Value>>,
    /// Whether the credential was a bearer token (for `insufficient_scope`).
    pub bearer: bool,
    /// The identity headers' values (consumer, groups, subject, scopes,
    /// provider), rendered on first use: once per cached token, not per request.
    pub rendered: OnceLock<[Option<HeaderValue>; 5]>,
}

impl Identity {
    pub fn groups(&self) -> &[String] {
        self.consumer.as_ref().map_or(&[], |c| &c.groups)
    }
}

/// A consumer from the config's `consumers` list, as an identity carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub id: Arc<str>,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
}

/// What the rate-limit headers report: the most constrained limit.
#[derive(Debug, Clone)]
pub struct HeaderInfo {
    /// The limit's `RateLimit-Policy` value (`"name";q=…;w=…`), made once.
    pub policy: HeaderValue,
    pub limit: u64,
    pub remaining: u64,
    pub reset_secs: u64,
}

/// Whoever counts concurrency slots (the rate-limit store).
pub trait Releases: Send + Sync {
    fn release(&self, key: u128);
}

/// A held concurrency slot; released when dropped (request done, failed or
/// abandoned). The response body keeps it until the last byte.
pub struct Slot {
    owner: Arc<dyn Releases>,
    key: u128,
}

impl Slot {
    pub fn new(owner: Arc<dyn Releases>, key: u128) -> Slot {
        Slot { owner, key }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.owner.release(self.key);
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot").field("key", &self.key).finish()
    }
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

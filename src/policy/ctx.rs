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

// What an identity's scopes and groups may be, here beside it: consumers
// (`auth`) and `authorize` rules (`authz`) are held to the same.

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Why a scope the config writes (a consumer's, an `authorize` rule's) is
/// not one scope token, if it is not. Scopes travel joined with spaces (a
/// token's `scope`, `X-Auth-Scopes`): `read write` is two scopes to a
/// service, and a rule requiring it is met by no token's scopes.
pub fn scope_fault(scope: &str) -> Option<String> {
    let shown = scope.escape_debug();
    if is_scope_token(scope) {
        None
    } else if scope.is_empty() {
        Some("an empty scope (a scope is one word)".into())
    } else if scope.contains(' ') {
        Some(format!(
            "`{shown}` holds a space: scopes are joined with spaces (a token's `scope`, `X-Auth-Scopes`), so \
             services read it as several; list each scope apart"
        ))
    } else {
        Some(format!("`{shown}` is not a scope: printable ASCII without spaces, `\"` or `\\` (RFC 6749 §3.3)"))
    }
}

/// Why a group name the config writes (a consumer's, an `authorize`
/// rule's) is not one, if it is not. Groups reach services joined with `,`
/// in `X-Consumer-Groups`, whose readers split at `,` and trim what is
/// between: `guests,admins` would be two groups there (one to `authorize`,
/// so a `deny: [admins]` let it through), ` staff` would be `staff`.
pub fn group_fault(group: &str) -> Option<String> {
    let shown = group.escape_debug();
    if group.is_empty() {
        Some("an empty group name".into())
    } else if group.trim() != group {
        Some(format!(
            "`{shown}` has whitespace at an end: services read `X-Consumer-Groups` trimmed (`{}`), `authorize` as \
             written",
            group.trim().escape_debug()
        ))
    } else if group.contains(',') {
        Some(format!(
            "`{shown}` holds `,`: `X-Consumer-Groups` joins groups with `,`, so services read it as several groups"
        ))
    } else if group.chars().any(char::is_control) {
        Some(format!("`{shown}` holds a control character, which `X-Consumer-Groups` cannot carry"))
    } else {
        None
    }
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

#[cfg(test)]
mod tests {
    use super::{group_fault, scope_fault};

    /// The scopes and groups the config writes are held to what reaches a
    /// service: one scope token each (`X-Auth-Scopes` joins them with spaces),
    /// one group name each (`X-Consumer-Groups` joins them with `,`, read trimmed).
    #[test]
    fn configured_scopes_and_groups_read_one_way_everywhere() {
        for good in ["orders:read", "a!#$%&'()*+,-./:;<=>?@[]^_`{|}~"] {
            assert_eq!(scope_fault(good), None, "{good}");
        }
        for bad in ["", "read write", "a\"b", "a\\b", "a\tb", "caf\u{e9}", "a\u{7f}"] {
            assert!(scope_fault(bad).is_some(), "{bad:?}");
        }
        for good in ["admins", "on call", "a:b/c"] {
            assert_eq!(group_fault(good), None, "{good}");
        }
        for bad in
            ["", "guests,admins", " staff", "staff ", "staff\t", "\u{a0}staff", "a\u{1}b", "a\u{7f}b", "a\u{85}b"]
        {
            assert!(group_fault(bad).is_some(), "{bad:?}");
        }
    }
}

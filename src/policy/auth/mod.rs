//! Authentication: named providers (JWT, introspection, API keys, Basic,
//! mTLS) attached to routes. A route lists acceptable providers; the first
//! whose credential is present decides, and a present-but-invalid
//! credential fails the request instead of falling through. The identity
//! goes upstream in configured headers, which are stripped from every
//! client request so they cannot be spoofed.

mod api_key;
mod basic;
pub mod cache;
pub mod config;
mod consumers;
mod introspect;
mod jwks;
mod jwt;
mod mtls;

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{self, HeaderName, HeaderValue};
use http::{StatusCode, request};

pub use config::*;
pub use consumers::{Consumers, hash_key};

use crate::config::FieldErrors;
use crate::http::problem;
use crate::observe::metrics::{Counter, Registry};
use crate::policy::compile::{CompileCtx, Previous};
use crate::policy::ctx::{Identity, Outcome, RequestCtx};
use jwt::Cached;

/// Why authentication failed, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A credential was presented and is not valid (401).
    Invalid,
    /// The service that would decide is unreachable (503).
    Unavailable,
}

/// One compiled provider.
// Built once per config and shared through `Arc`: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Provider {
    Jwt(jwt::Jwt),
    Introspection(introspect::Introspection),
    ApiKey(api_key::ApiKey),
    Basic(basic::Basic),
    Mtls(mtls::Mtls),
}

impl Provider {
    /// Compiles `auth.<name>` (`cx.name`), with the plan's `Arc<Consumers>`
    /// and, on a reload, the running plan's providers (`Previous<Providers>`)
    /// from `cx.shared`.
    pub fn compile(cfg: &ProviderConfig, cx: &mut CompileCtx<'_>) -> Result<Provider, FieldErrors> {
        match cfg {
            ProviderConfig::Jwt(c) => jwt::Jwt::compile(c, cx).map(Provider::Jwt),
            ProviderConfig::Introspection(c) => introspect::Introspection::compile(c, cx).map(Provider::Introspection),
            ProviderConfig::ApiKey(c) => api_key::ApiKey::compile(c, cx).map(Provider::ApiKey),
            ProviderConfig::Basic(c) => basic::Basic::compile(c, cx).map(Provider::Basic),
            ProviderConfig::Mtls(c) => mtls::Mtls::compile(c, cx).map(Provider::Mtls),
        }
    }

    /// The same provider in the running plan, on a reload.
    fn previous<'c>(cx: &'c CompileCtx<'_>) -> Option<&'c Provider> {
        cx.shared::<Previous<Providers>>()?.0.get(cx.name).map(|p| &**p)
    }

    /// Starts background work (JWKS refresh). Called once the plan is live.
    pub fn start(&self) {
        if let Provider::Jwt(j) = self {
            j.start();
        }
    }

    /// `Some` when this provider's kind of credential is in the request.
    fn present(&self, req: &request::Parts, ctx: &RequestCtx<'_>) -> bool {
        match self {
            Provider::Jwt(j) => j.token(req).is_some(),
            Provider::Introspection(_) => bearer_token(req).is_some(),
            Provider::ApiKey(k) => k.key(req) != api_key::Presented::Absent,
            Provider::Basic(_) => basic::offered(req),
            // A certificate outside the provider's `ca` is none of its
            // credentials: the route's next provider (another CA's) decides.
            Provider::Mtls(m) => ctx.client_cert.is_some_and(|c| m.takes(c)),
        }
    }

    /// The answer when it needs no await (a cached token, an API key, a
    /// certificate); `None`: use `authenticate`, nothing was changed.
    fn try_sync(&self, req: &mut request::Parts, ctx: &RequestCtx<'_>) -> Option<Result<Arc<Identity>, Failure>> {
        match self {
            Provider::Jwt(j) => match j.try_cached(req) {
                Cached::Answer(answer) => Some(answer),
                Cached::Absent | Cached::Verify => None,
            },
            Provider::ApiKey(k) => Some(k.authenticate(req)),
            Provider::Mtls(m) => Some(m.authenticate(ctx.client_cert)),
            Provider::Introspection(_) | Provider::Basic(_) => None,
        }
    }

    async fn authenticate(&self, req: &mut request::Parts, ctx: &RequestCtx<'_>) -> Result<Arc<Identity>, Failure> {
        match self {
            Provider::Jwt(j) => j.authenticate(req).await,
            Provider::Introspection(i) => i.authenticate(req).await,
            Provider::ApiKey(k) => k.authenticate(req),
            Provider::Basic(b) => b.authenticate(req).await,
            Provider::Mtls(m) => m.authenticate(ctx.client_cert),
        }
    }

    /// Takes this provider's credential off a request another provider of
    /// the route authenticated. An `Authorization` goes only when it is of
    /// this provider's scheme (the authenticating one may have kept its own).
    fn remove_unchecked(&self, req: &mut request::Parts) {
        let scheme = req.headers.get(header::AUTHORIZATION).map(|v| scheme_of(v.as_bytes()).0.to_ascii_lowercase());
        let authorization_of = |name: &[u8]| scheme.as_deref() == Some(name);
        match self {
            Provider::ApiKey(k) => k.remove(req),
            Provider::Jwt(j) if !j.uses_bearer() => j.remove_token(req),
            Provider::Jwt(_) | Provider::Introspection(_) if authorization_of(b"bearer") => {
                req.headers.remove(header::AUTHORIZATION);
            }
            Provider::Basic(_) if authorization_of(b"basic") => {
                req.headers.remove(header::AUTHORIZATION);
            }
            _ => {}
        }
    }

    /// Where it reads its credential (`None`: a client certificate,
    /// which several `mtls` providers share by their CAs).
    fn reads(&self) -> Option<Place> {
        match self {
            Provider::Jwt(j) => Some(j.reads()),
            Provider::Introspection(_) => Some(Place::Authorization(Some("Bearer"))),
            Provider::ApiKey(k) => Some(k.reads()),
            Provider::Basic(_) => Some(Place::Authorization(Some("Basic"))),
            Provider::Mtls(_) => None,
        }
    }

    /// The `WWW-Authenticate` challenge for this provider, if it has one.
    fn challenge(&self, invalid: bool) -> Option<String> {
        match self {
            Provider::Jwt(_) | Provider::Introspection(_) if invalid => {
                Some("Bearer realm=\"portcullis\", error=\"invalid_token\"".into())
            }
            Provider::Jwt(_) | Provider::Introspection(_) => Some("Bearer realm=\"portcullis\"".into()),
            Provider::Basic(b) => Some(format!("Basic realm=\"{}\", charset=\"UTF-8\"", b.realm())),
            // Not registered schemes, but RFC 9110 wants a challenge on every 401.
            Provider::ApiKey(_) => Some("ApiKey realm=\"portcullis\"".into()),
            Provider::Mtls(_) => Some("Mutual realm=\"portcullis\"".into()),
        }
    }
}

/// Where a provider reads its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// `Authorization` with this scheme (`None`: the whole header, an
    /// `api_key` named `Authorization`).
    Authorization(Option<&'static str>),
    /// Another header, by its lower-case name.
    Header(String),
    Cookie(String),
    Query(String),
}

impl Place {
    /// Two providers reading these places would both find a credential in
    /// one request (the first listed then decides alone).
    fn overlaps(&self, other: &Place) -> bool {
        match (self, other) {
            (Place::Authorization(a), Place::Authorization(b)) => a.is_none() || b.is_none() || a == b,
            (Place::Header(h), Place::Cookie(_)) | (Place::Cookie(_), Place::Header(h)) => h == "cookie",
            // `api_key` reads other spellings of its parameter (`API_KEY`,
            // `api.key`) as its own, and refuses the request then.
            (Place::Query(a), Place::Query(b)) => api_key::names(a, b) || api_key::names(b, a),
            (a, b) => a == b,
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Authorization(Some(scheme)) => write!(f, "`Authorization: {scheme}`"),
            Place::Authorization(None) => write!(f, "the header `authorization`"),
            Place::Header(h) => write!(f, "the header `{h}`"),
            Place::Cookie(c) => write!(f, "the cookie `{c}`"),
            Place::Query(q) => write!(f, "the query parameter `{q}`"),
        }
    }
}

/// `Authorization: Bearer <token>`: the scheme in any case, a space, and
/// the token's bytes, spaces around them trimmed. Not checked further here:
/// it runs twice for every request of a token route, and a cache hit needs
/// no more (only verified tokens are cached, and they are matched exactly);
/// what is verified goes through `token_text` first.
/// The scopes a token's `scope` (or `scp`) claim grants: a string of
/// scope tokens separated by spaces (RFC 6749 §3.3: only %x20), or an
/// array of them. A piece that is not a scope token (other whitespace, a
/// `"` or `\`, non-ASCII) is dropped: `x\u{a0}orders:read` granted
/// `orders:read` to a check splitting on any whitespace, and an array item
/// `"profile admin:write"` reached services as two scopes in
/// `X-Auth-Scopes`, which is joined with spaces.
pub(crate) fn scopes_of(claim: Option<&serde_json::Value>) -> Vec<String> {
    let token = |t: &&str| crate::policy::ctx::is_scope_token(t);
    match claim {
        Some(serde_json::Value::String(s)) => s.split(' ').filter(token).map(String::from).collect(),
        Some(serde_json::Value::Array(a)) => {
            a.iter().filter_map(|v| v.as_str()).filter(token).map(String::from).collect()
        }
        _ => Vec::new(),
    }
}

pub(crate) fn bearer_token(req: &request::Parts) -> Option<&[u8]> {
    let v = req.headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = v.split_at_checked(6)?;
    // A tab too (RFC 9110 writes a space): Django REST framework and
    // `\s+` parsers read `Bearer<TAB>token` as a bearer token, so it is
    // one here, verified as any other, never an absent credential that an
    // anonymous route would forward unchecked.
    if !scheme.eq_ignore_ascii_case(b"bearer") || !matches!(rest.first(), Some(b' ' | b'\t')) {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// An `Authorization` value's scheme and what follows it: split at the
/// first space or tab (servers split on either, see `bearer_token`).
pub(crate) fn scheme_of(value: &[u8]) -> (&[u8], &[u8]) {
    match value.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(at) => (&value[..at], &value[at + 1..]),
        None => (value, &[]),
    }
}

/// A token as text: visible ASCII only (no spaces, controls or obs-text).
pub(crate) fn token_text(token: &[u8]) -> Option<&str> {
    if token.iter().all(|b| b.is_ascii_graphic()) { std::str::from_utf8(token).ok() } else { None }
}

/// The compiled identity header names, in `render`'s order: consumer,
/// groups, subject, scopes, provider.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    names: [HeaderName; 5],
}

impl IdentityHeaders {
    pub fn compile(cfg: &IdentityHeadersConfig, _cx: &mut CompileCtx<'_>) -> Result<IdentityHeaders, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut name = |key: &str, v: &str| {
            // Sent by the gateway, but a CGI-style backend reads `X_Consumer`
            // as `X-Consumer`, which a client may send beside it (theirs is
            // only removed under the name written here): the backend would
            // see two identities. Such names are dropped from clients for that
            // reason (`wire::admit`); none is written here either.
            if let Err(e) = crate::wire::admit::readable_request_header(v) {
                errors.push((key.to_string(), e));
            }
            HeaderName::try_from(v).unwrap_or_else(|_| {
                errors.push((key.to_string(), format!("`{v}` is not a header name")));
                HeaderName::from_static("x-invalid")
            })
        };
        let out = IdentityHeaders {
            names: [
                name("consumer", &cfg.consumer),
                name("groups", &cfg.groups),
                name("subject", &cfg.subject),
                name("scopes", &cfg.scopes),
                name("provider", &cfg.provider),
            ],
        };
        // Stripping these from every request must not remove what requests need.
        const RESERVED: [&str; 8] = [
            "authorization",
            "host",
            "cookie",
            "content-length",
            "content-type",
            "transfer-encoding",
            "connection",
            "te",
        ];
        let names = &out.names;
        for (i, n) in names.iter().enumerate() {
            if RESERVED.contains(&n.as_str()) {
                // At `identity_headers` itself: the offending name may come from a default.
                errors.add("", format!("`{n}` cannot carry an identity: the gateway strips it from every request"));
            } else if names[..i].contains(n) {
                errors.add("", format!("`{n}` is used for two identity fields"));
            }
        }
        if errors.is_empty() { Ok(out) } else { Err(errors) }
    }

    /// Removes every identity header (done for every client request).
    pub fn strip(&self, headers: &mut http::HeaderMap) {
        crate::wire::remove::remove_all(headers, &self.names);
    }

    /// The names and `id`'s values (rendered once per identity; `None`
    /// where the identity has no such field).
    pub fn lines<'a>(&'a self, id: &'a Identity) -> (&'a [HeaderName], &'a [Option<HeaderValue>]) {
        (&self.names, id.rendered.get_or_init(|| render(id)))
    }

    /// Sets `id`'s headers in a request's map.
    pub fn insert_into(&self, headers: &mut http::HeaderMap, id: &Identity) {
        let (names, values) = self.lines(id);
        for (name, value) in names.iter().zip(values) {
            if let Some(value) = value {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

/// A route's `authenticate` list.
#[derive(Debug)]
pub struct RouteAuth {
    providers: Vec<Arc<Provider>>,
    /// The providers' names, in the same order (logs).
    names: Vec<Arc<str>>,
    headers: Arc<IdentityHeaders>,
    /// Whether the identity headers go into the request's map here (when a
    /// later phase reads the headers); else the engine writes them with
    /// the upstream request's other edits (`IdentityHeaders::lines`).
    headers_now: bool,
    /// `portcullis_auth_failures_total` of this route.
    failures: Failures,
    /// A request without any credential passes, with no identity.
    anonymous: bool,
}

/// A route's refusal counters: no credential, and per provider an invalid
/// credential or an unavailable provider (by index in `providers`).
#[derive(Debug)]
struct Failures {
    missing: Arc<Counter>,
    by_provider: Vec<[Arc<Counter>; 2]>,
}

impl Failures {
    fn new(route: &str, names: &[String], registry: &Registry) -> Failures {
        let counter = |provider: &str, reason: &str| {
            let labels =
                vec![("route", route.to_string()), ("provider", provider.to_string()), ("reason", reason.to_string())];
            registry.counter("portcullis_auth_failures", labels)
        };
        Failures {
            missing: counter("-", "missing"),
            by_provider: names.iter().map(|n| [counter(n, "invalid"), counter(n, "unavailable")]).collect(),
        }
    }
}

/// A route's `authenticate` list: any one of these providers suffices.
/// Names the plan does not define, and two bearer-token providers on one
/// route, are refused.
pub fn compile(names: &[String], anonymous: bool, cx: &mut CompileCtx<'_>) -> Result<RouteAuth, FieldErrors> {
    let mut errors = FieldErrors::new();
    let empty = Providers::new();
    let defined = cx.shared::<Providers>().unwrap_or(&empty);
    let configured = cx.shared::<ProviderNames>().map_or(&[][..], |n| &n.0[..]);
    let mut providers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match defined.get(name) {
            Some(p) => providers.push(p.clone()),
            // Defined but failed to compile: its own error says why.
            None if configured.contains(name) => {}
            None if configured.is_empty() => {
                errors.add(format!("[{i}]"), format!("unknown auth provider `{name}` (no auth providers are defined)"))
            }
            None => {
                let mut known: Vec<&str> = configured.iter().map(String::as_str).collect();
                known.sort_unstable();
                errors.add(format!("[{i}]"), format!("unknown auth provider `{name}` (defined: {})", known.join(", ")));
            }
        }
    }
    // Only the providers that compiled (`providers` is in the same order).
    let names: Vec<String> = names.iter().filter(|n| defined.contains_key(*n)).cloned().collect();
    let headers = match cx.shared::<Arc<IdentityHeaders>>() {
        Some(h) => h.clone(),
        None => Arc::new(IdentityHeaders::compile(&Default::default(), cx)?),
    };
    let registry = cx.shared::<Arc<Registry>>().cloned().unwrap_or_default();
    let failures = Failures::new(cx.name, &names, &registry);
    let names = names.iter().map(|n| Arc::from(n.as_str())).collect();
    let auth = RouteAuth { providers, names, headers, headers_now: false, failures, anonymous };
    if auth.bearer_providers() > 1 {
        errors.add(
            "",
            "at most one bearer-token provider (jwt or introspection) per route: the first would take every token",
        );
    }
    // Any two others that read the same place shadow each other likewise:
    // the first present decides alone, so the second is never consulted
    // (two `basic` providers: the second's users always got 401).
    let places: Vec<Option<Place>> = auth.providers.iter().map(|p| p.reads()).collect();
    let bearer = Place::Authorization(Some("Bearer"));
    for (i, place) in places.iter().enumerate() {
        let Some(place) = place else { continue };
        if let Some(first) = places[..i]
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.overlaps(place) && (p, place) != (&bearer, &bearer)))
        {
            errors.add(
                format!("[{i}]"),
                format!(
                    "`{}` reads the same credential as `{}` ({place}): the first listed would take every such \
                     credential, and this one would never be asked; merge them or read another place",
                    auth.names[i], auth.names[first]
                ),
            );
        }
    }
    errors.or_value(auth)
}

impl RouteAuth {
    /// Sets the identity headers in the request's map as soon as the
    /// identity is known, for a later phase that reads or changes headers.
    pub fn set_headers_now(&mut self) {
        self.headers_now = true;
    }

    /// Two bearer-token providers on one route would shadow each other (the
    /// first present credential decides): refused until tokens are routed by issuer.
    pub fn bearer_providers(&self) -> usize {
        self.providers
            .iter()
            .filter(|p| {
                matches!(&***p, Provider::Jwt(j) if j.uses_bearer()) || matches!(&***p, Provider::Introspection(_))
            })
            .count()
    }

    /// The answer without awaiting, when the credential's provider can give
    /// it so (`None`: use `on_request`; nothing was changed).
    pub fn try_sync(&self, req: &mut request::Parts, ctx: &mut RequestCtx<'_>) -> Option<Outcome> {
        // A JWT provider first: its token, read once, tells both whether it
        // is present and whether the cache has it.
        let mut found = None;
        for (i, p) in self.providers.iter().enumerate() {
            let answer = match &**p {
                Provider::Jwt(j) => match j.try_cached(req) {
                    Cached::Absent => continue,
                    Cached::Answer(answer) => Some(answer),
                    Cached::Verify => None,
                },
                p if p.present(req, ctx) => p.try_sync(req, ctx),
                _ => continue,
            };
            found = Some((i, answer));
            break;
        }
        let Some((index, answer)) = found else {
            return Some(self.no_credential(req, ctx));
        };
        Some(self.decided(index, answer?, req, ctx))
    }

    pub async fn on_request(&self, req: &mut request::Parts, ctx: &mut RequestCtx<'_>) -> Outcome {
        let Some(index) = self.providers.iter().position(|p| p.present(req, ctx)) else {
            return self.no_credential(req, ctx);
        };
        let answer = self.providers[index].authenticate(req, ctx).await;
        self.decided(index, answer, req, ctx)
    }

    /// On a route that takes a JWT from a cookie or the query, a bearer
    /// token no provider checked (the deciding one, `decided`, read
    /// another place, or none decided on an anonymous route) is removed: a
    /// service that reads `Authorization` for the whole token got a forged
    /// one beside the checked cookie, or beside an API key.
    fn remove_unchecked_bearer(&self, req: &mut request::Parts, decided: Option<usize>) {
        let elsewhere = |p: &Provider| matches!(p, Provider::Jwt(j) if !j.uses_bearer());
        let checked_bearer = decided.is_some_and(|i| {
            matches!(&*self.providers[i], Provider::Jwt(j) if j.uses_bearer())
                || matches!(&*self.providers[i], Provider::Introspection(_))
        });
        if !checked_bearer
            && self.providers.iter().any(|p| elsewhere(p))
            && req
                .headers
                .get(header::AUTHORIZATION)
                .is_some_and(|v| scheme_of(v.as_bytes()).0.eq_ignore_ascii_case(b"bearer"))
        {
            req.headers.remove(header::AUTHORIZATION);
        }
    }

    /// A request that presents none of the providers' credentials.
    fn no_credential(&self, req: &mut request::Parts, ctx: &mut RequestCtx<'_>) -> Outcome {
        if self.anonymous {
            // What looks like a credential of the route's providers but is
            // none of theirs (a token cookie or query parameter in another
            // spelling, a Basic value that does not decode) was never
            // checked: a service must not take it as checked.
            for p in &self.providers {
                p.remove_unchecked(req);
            }
            self.remove_unchecked_bearer(req, None);
            return Outcome::Continue;
        }
        self.failures.missing.inc();
        ctx.auth_failure = Some((None, "missing"));
        self.refuse(StatusCode::UNAUTHORIZED, "authentication is required", None, ctx)
    }

    /// What the provider at `index` answered, as the request's outcome.
    fn decided(
        &self,
        index: usize,
        answer: Result<Arc<Identity>, Failure>,
        req: &mut request::Parts,
        ctx: &mut RequestCtx<'_>,
    ) -> Outcome {
        match answer {
            Ok(identity) => {
                // The route's other credentials were never checked: a
                // service must not take one as checked (a valid header key
                // beside a forged query key or bearer token of the next provider).
                for (i, p) in self.providers.iter().enumerate() {
                    if i != index {
                        p.remove_unchecked(req);
                    }
                }
                self.remove_unchecked_bearer(req, Some(index));
                if self.headers_now {
                    self.headers.insert_into(&mut req.headers, &identity);
                }
                ctx.identity = Some(identity);
                Outcome::Continue
            }
            Err(Failure::Invalid) => {
                self.failures.by_provider[index][0].inc();
                ctx.auth_failure = Some((self.names.get(index).cloned(), "invalid"));
                self.refuse(StatusCode::UNAUTHORIZED, "the credentials are not valid", Some(index), ctx)
            }
            Err(Failure::Unavailable) => {
                self.failures.by_provider[index][1].inc();
                ctx.auth_failure = Some((self.names.get(index).cloned(), "unavailable"));
                self.refuse(StatusCode::SERVICE_UNAVAILABLE, "the authentication service is unavailable", None, ctx)
            }
        }
    }

    /// `failed`: the provider whose credential was presented and refused;
    /// only its challenge says `invalid_token`.
    fn refuse(&self, status: StatusCode, detail: &str, failed: Option<usize>, ctx: &RequestCtx<'_>) -> Outcome {
        let mut resp = problem::problem(status, detail, ctx.request_id);
        if status == StatusCode::UNAUTHORIZED {
            let mut seen = Vec::new();
            let challenges: Vec<String> =
                self.providers.iter().enumerate().filter_map(|(i, p)| p.challenge(failed == Some(i))).collect();
            // One Bearer challenge: the one saying the token was invalid, if
            // a token provider refused it (a plain one beside it, from a
            // cookie or query provider, contradicted it: RFC 6750 clients
            // may read only one).
            let invalid_bearer = challenges.iter().any(|c| c.starts_with("Bearer ") && c.contains("error="));
            for c in challenges {
                if invalid_bearer && c == "Bearer realm=\"portcullis\"" {
                    continue;
                }
                if !seen.contains(&c) {
                    if let Ok(v) = HeaderValue::try_from(c.as_str()) {
                        resp.headers_mut().append(header::WWW_AUTHENTICATE, v);
                    }
                    seen.push(c);
                }
            }
        }
        Outcome::Respond(resp)
    }
}

/// The identity headers' values, in `IdentityHeaders::names`' order; `None`
/// for what the identity lacks or what is not a valid header value.
fn render(id: &Identity) -> [Option<HeaderValue>; 5] {
    let value = |v: &str| HeaderValue::try_from(v).ok();
    let consumer = id.consumer.as_deref();
    [
        consumer.and_then(|c| value(&c.id)),
        consumer.filter(|c| !c.groups.is_empty()).and_then(|c| value(&c.groups.join(","))),
        value(&id.subject),
        (!id.scopes.is_empty()).then(|| id.scopes.join(" ")).and_then(|s| value(&s)),
        value(&id.provider),
    ]
}

/// Every provider of a plan, by name.
pub type Providers = HashMap<String, Arc<Provider>>;

/// Every provider name the config defines, compiled or not (a route that
/// names one that failed to compile is not told it is unknown).
#[derive(Debug, Default)]
pub struct ProviderNames(pub Vec<String>);

#[cfg(test)]
mod tests;

/// The plan's consumers (`cx.shared`), for providers that map credentials to them.
fn consumers_of(cx: &CompileCtx<'_>) -> Arc<Consumers> {
    cx.shared::<Arc<Consumers>>().cloned().unwrap_or_default()
}

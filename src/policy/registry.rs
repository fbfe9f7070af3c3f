//! The one registration point: which config keys of a route become which
//! policies. A new policy adds one block here and its own folder.

use std::sync::Arc;

use crate::config::RouteConfig;

use super::auth::{IdentityHeaders, Providers, RouteAuth};
use super::{Chain, Policy, authz, headers, ip, ratelimit};

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

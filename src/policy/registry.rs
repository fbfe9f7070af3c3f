//! The one registration point: which config keys of a route become which
//! policies. A new policy adds one block here and its own folder.

use crate::config::RouteConfig;

use super::{Chain, Policy, headers};

/// Compiles a route's policies. Errors are `(path under the route, message)`.
pub fn compile_route(route: &RouteConfig) -> Result<Chain, Vec<(String, String)>> {
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    let mut prefixed = |key: &str, errs: Vec<(String, String)>| {
        errors.extend(errs.into_iter().map(|(p, m)| (format!("{key}.{p}"), m)));
    };
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

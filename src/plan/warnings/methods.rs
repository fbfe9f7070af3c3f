//! `methods-fall-through`: a guarded route (`authenticate` or `ip`) that
//! lists its `methods`, under a broader route that is not guarded. The
//! most specific route that takes a request's method wins, and a 405 comes
//! only when no route takes it: `DELETE /admin/users/1` goes to the open
//! catch-all, unauthenticated, though `/admin` looked closed (as in Kong
//! and Envoy; NGINX picks the `location` first and its `limit_except`
//! answers 403).

use super::Found;
use super::documents::segment_prefix;
use crate::config::{LoadedConfig, RouteConfig};

/// The literal part a route's path starts with, and whether it covers
/// every path under it (a prefix or a `{*rest}` tail).
fn literal(r: &RouteConfig) -> Option<(String, bool)> {
    let m = &r.matcher;
    match (&m.path_prefix, &m.path) {
        (Some(p), _) => Some((p.trim_end_matches('/').to_string(), true)),
        (None, Some(p)) => {
            let covers = p.contains("{*");
            let literal = p.split('{').next().unwrap_or("").trim_end_matches('/');
            Some((literal.to_string(), covers))
        }
        (None, None) => Some((String::new(), true)),
    }
}

fn guarded(r: &RouteConfig) -> bool {
    (!r.authenticate.is_empty() && !r.anonymous) || r.ip.is_some()
}

pub(super) fn methods_fall_through(loaded: &LoadedConfig, found: &mut Found) {
    let routes = &loaded.config.routes;
    for (i, r) in routes.iter().enumerate() {
        let Some(methods) = r.matcher.methods.as_ref().filter(|_| guarded(r)) else { continue };
        let Some((path, _)) = literal(r) else { continue };
        let mut own: Vec<String> = methods.iter().map(|m| m.to_ascii_uppercase()).collect();
        if own.iter().any(|m| m == "GET") {
            own.push("HEAD".into());
        }
        let open = routes.iter().enumerate().find_map(|(j, o)| {
            let m = &o.matcher;
            let (prefix, covers) = literal(o)?;
            let same_host = m.host.is_none() || m.host == r.matcher.host;
            let conditional = !m.headers.is_empty() || m.version.is_some();
            if j == i || guarded(o) || !covers || !same_host || conditional || !segment_prefix(&prefix, &path) {
                return None;
            }
            let others = match &m.methods {
                None => "every other method".to_string(),
                Some(ms) => {
                    let extra: Vec<String> =
                        ms.iter().map(|m| m.to_ascii_uppercase()).filter(|m| !own.contains(m)).collect();
                    if extra.is_empty() {
                        return None;
                    }
                    format!("`{}`", extra.join("`, `"))
                }
            };
            Some((o.name.clone(), others))
        });
        if let Some((name, others)) = open {
            found.add(
                "methods-fall-through",
                format!("routes[{i}].match.methods"),
                format!(
                    "route `{}` guards only the methods it lists: {others} on its paths go to route `{name}`, \
                     which is not guarded (the most specific route taking the method wins; 405 comes only when \
                     none does); list every method here, or give the others a route of their own (e.g. a \
                     `static` 405)",
                    r.name
                ),
            );
        }
    }
}

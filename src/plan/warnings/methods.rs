//! `methods-fall-through`: a guarded route (`authenticate` or `ip`) that
//! lists its `methods`, where a route that is not guarded and reaches a
//! service (`upstream`, `aggregate`) takes other methods on some of the
//! same paths. The most specific route that takes a request's method wins,
//! and a 405 comes only when no route takes it: `DELETE /admin/users/1`
//! goes to the open catch-all, unauthenticated, though `/admin` looked
//! closed (as in Kong and Envoy; NGINX picks the `location` first and its
//! `limit_except` answers 403).

use crate::config::{LoadedConfig, RouteConfig};

use super::Found;

/// A path pattern's segments (a `{param}` or a segment holding one is
/// any segment) and whether it takes every path under them.
pub(super) struct Shape {
    pub(super) segments: Vec<Option<String>>,
    pub(super) prefix: bool,
    /// A `{*rest}` tail: at least one more segment.
    pub(super) rest: bool,
}

pub(super) fn shape(r: &RouteConfig) -> Shape {
    let m = &r.matcher;
    let version = m.version.as_ref().and_then(|v| v.path_prefix.as_deref()).unwrap_or("");
    let (path, mut prefix) = match (&m.path_prefix, &m.path) {
        (Some(p), _) => (p.as_str(), true),
        (None, Some(p)) => (p.as_str(), false),
        (None, None) => ("/", true),
    };
    let mut segments = Vec::new();
    let mut rest = false;
    for seg in format!("{}/{}", version.trim_end_matches('/'), path.trim_start_matches('/')).split('/').skip(1) {
        if seg.starts_with("{*") {
            (prefix, rest) = (true, true);
            break;
        }
        segments.push((!seg.contains('{')).then(|| seg.to_string()));
    }
    // `/` as a prefix (or a trailing `/`) adds no segment.
    if prefix && segments.last().is_some_and(|s| s.as_deref() == Some("")) {
        segments.pop();
    }
    Shape { segments, prefix, rest }
}

/// Whether some request path matches both shapes.
pub(super) fn overlap(a: &Shape, b: &Shape) -> bool {
    let same = a.segments.iter().zip(&b.segments).all(|(x, y)| match (x, y) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    });
    // What each takes at least: a `{*rest}` one more segment.
    let (la, lb) = (a.segments.len() + usize::from(a.rest), b.segments.len() + usize::from(b.rest));
    same && match (a.prefix, b.prefix) {
        (true, true) => true,
        (true, false) => lb >= la,
        (false, true) => la >= lb,
        (false, false) => la == lb,
    }
}

/// Whether some request's host matches both (`*.example.com` takes
/// `admin.example.com`; names compare without case).
fn hosts_overlap(a: Option<&str>, b: Option<&str>) -> bool {
    let (Some(a), Some(b)) = (a, b) else { return true };
    // As requests are routed: without case, and without a trailing dot.
    let (a, b) = (a.trim_end_matches('.').to_ascii_lowercase(), b.trim_end_matches('.').to_ascii_lowercase());
    let under =
        |wild: &str, name: &str| wild.strip_prefix("*.").is_some_and(|base| name.ends_with(&format!(".{base}")));
    a == b || under(&a, &b) || under(&b, &a)
}

pub(super) fn guarded(r: &RouteConfig) -> bool {
    (!r.authenticate.is_empty() && !r.anonymous) || r.ip.is_some()
}

pub(super) fn methods_fall_through(loaded: &LoadedConfig, found: &mut Found) {
    let routes = &loaded.config.routes;
    for (i, r) in routes.iter().enumerate() {
        let Some(methods) = r.matcher.methods.as_ref().filter(|_| guarded(r)) else { continue };
        let mut own: Vec<String> = methods.iter().map(|m| m.to_ascii_uppercase()).collect();
        if own.iter().any(|m| m == "GET") {
            own.push("HEAD".into());
        }
        let guarded_shape = shape(r);
        // A route of the same paths and host that takes every method and
        // reaches no service unguarded (the advised `static` 405, or a
        // guarded twin): the other methods end there.
        let same = |q: &RouteConfig| {
            q.matcher.path == r.matcher.path
                && q.matcher.path_prefix == r.matcher.path_prefix
                && q.matcher.version.as_ref().map(|v| &v.path_prefix)
                    == r.matcher.version.as_ref().map(|v| &v.path_prefix)
                && q.matcher.host == r.matcher.host
                && q.matcher.headers.is_empty()
        };
        let taken = routes.iter().enumerate().any(|(k, q)| {
            k != i
                && same(q)
                && q.matcher.methods.is_none()
                && (guarded(q) || (q.upstream.is_none() && q.aggregate.is_none()))
        });
        if taken {
            continue;
        }
        let open = routes.iter().enumerate().find_map(|(j, o)| {
            let m = &o.matcher;
            // A static answer or a redirect reaches no service.
            let reaches = o.upstream.is_some() || o.aggregate.is_some();
            let conditional = !m.headers.is_empty()
                || m.version.as_ref().is_some_and(|v| v.header.is_some() || v.accept_param.is_some());
            if j == i
                || guarded(o)
                || !reaches
                || conditional
                || !hosts_overlap(m.host.as_deref(), r.matcher.host.as_deref())
                || !overlap(&shape(o), &guarded_shape)
            {
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
                     none does); list every method here, or give the others a route of their own (a `static` \
                     405 on the same paths)",
                    r.name
                ),
            );
        }
    }
}

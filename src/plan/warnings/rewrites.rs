//! `rewrite-reaches-guarded`: a route without `authenticate` or `ip` whose
//! rewrite (or an aggregate call's path) sends its upstream paths that a
//! guarded route to the same upstream stands in front of. The router keeps
//! `/admin/users` for the guarded route, but `/v1/admin/users` with
//! `strip_prefix: /v1` reaches the same service as `/admin/users`, with no
//! credential checked; a service that trusts the gateway's guard serves it.
//! Neither Envoy nor NGINX say so; their users learn it from an audit.

use crate::config::{LoadedConfig, RouteConfig};

use super::Found;
use super::methods::{Shape, guarded, overlap, shape};

/// The segments of a literal path (`/v1/x` is `v1`, `x`), none for `/`.
fn literal_segments(path: &str) -> Vec<String> {
    path.trim_matches('/').split('/').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// `shape` without its first segments when they are `prefix`'s; `None`
/// when they are not (the rewrite does not apply to this shape).
fn strip(mut s: Shape, prefix: &str) -> Option<Shape> {
    let cut = literal_segments(prefix);
    if cut.len() > s.segments.len() || s.segments.iter().zip(&cut).any(|(have, want)| have.as_ref() != Some(want)) {
        return None;
    }
    s.segments.drain(..cut.len());
    Some(s)
}

/// The paths a template builds (`/files/{id}/{rest}`), where `rest` names
/// one of `catch_alls` (it may hold `/`): the shape ends there, a prefix.
/// Anything else in braces is one segment.
fn template(path: &str, catch_alls: &[String]) -> Shape {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut segments = Vec::new();
    for seg in path.split('/').skip(1) {
        let names = seg.split('{').skip(1).filter_map(|p| p.split_once('}').map(|(n, _)| n));
        if names.clone().any(|n| catch_alls.iter().any(|c| c == n)) {
            return Shape { segments, prefix: true, rest: true };
        }
        segments.push((!seg.contains('{')).then(|| seg.to_string()));
    }
    if segments.last().is_some_and(|s| s.as_deref() == Some("")) {
        segments.pop();
    }
    Shape { segments, prefix: false, rest: false }
}

/// The route's `{*name}` catch-all parameters.
fn catch_alls(r: &RouteConfig) -> Vec<String> {
    let path = r.matcher.path.as_deref().unwrap_or_default();
    path.split("{*").skip(1).filter_map(|p| p.split_once('}').map(|(n, _)| n.to_string())).collect()
}

/// The paths the route's upstream gets, when its rewrite changes them.
fn rewritten(r: &RouteConfig) -> Option<Shape> {
    let rw = r.rewrite.as_ref()?;
    if let Some(path) = &rw.path {
        return Some(template(path, &catch_alls(r)));
    }
    moved(r, shape(r))
}

/// What the route's prefix rewrite makes of the request paths `s` (all
/// under its prefix, else `None`); `s` itself without a path rewrite;
/// `None` for a template (its parameters are the route's own).
fn moved(r: &RouteConfig, s: Shape) -> Option<Shape> {
    let Some(rw) =
        r.rewrite.as_ref().filter(|rw| rw.path.is_some() || rw.strip_prefix.is_some() || rw.replace_prefix.is_some())
    else {
        return Some(s);
    };
    if rw.path.is_some() {
        return None;
    }
    if let Some(prefix) = &rw.strip_prefix {
        return strip(s, prefix);
    }
    let replace = rw.replace_prefix.as_ref()?;
    let mut s = strip(s, &replace.from)?;
    let mut to: Vec<Option<String>> = literal_segments(&replace.to).into_iter().map(Some).collect();
    to.append(&mut s.segments);
    s.segments = to;
    Some(s)
}

/// Whether every path of `b` is one of `a`'s.
fn covers(a: &Shape, b: &Shape) -> bool {
    if a.segments.len() > b.segments.len() {
        return false;
    }
    let same = a.segments.iter().zip(&b.segments).all(|(x, y)| match (x, y) {
        (None, _) => true,
        (Some(x), Some(y)) => x == y,
        (Some(_), None) => false,
    });
    let longer = b.segments.len() > a.segments.len() || b.rest;
    same && if a.prefix { !a.rest || longer } else { !b.prefix && a.segments.len() == b.segments.len() }
}

/// Whether `guard` takes every request of `open` whose path `open` would
/// send into the guarded paths: the guard's own requests, moved by
/// `open`'s rewrite, are all of them (`/v1/admin/…` stripped of `/v1` is
/// the guard's `/admin/…`), and no host or header condition lets a request
/// of those paths pass it by.
fn guard_takes_them(open: &RouteConfig, guard: &RouteConfig, guarded_paths: &Shape) -> bool {
    let m = &guard.matcher;
    let conditional =
        !m.headers.is_empty() || m.version.as_ref().is_some_and(|v| v.header.is_some() || v.accept_param.is_some());
    let host = m.host.is_none() || m.host == open.matcher.host;
    !conditional && host && moved(open, shape(guard)).is_some_and(|through| covers(&through, guarded_paths))
}

/// The paths the route's upstream gets, rewritten or not.
fn upstream_paths(r: &RouteConfig) -> Shape {
    rewritten(r).unwrap_or_else(|| shape(r))
}

/// Whether one method could be both routes' (`None`: any).
fn methods_meet(a: Option<&[String]>, b: Option<&[String]>) -> bool {
    let (Some(a), Some(b)) = (a, b) else { return true };
    let with_head = |ms: &[String]| {
        let mut v: Vec<String> = ms.iter().map(|m| m.to_ascii_uppercase()).collect();
        if v.iter().any(|m| m == "GET") {
            v.push("HEAD".into());
        }
        v
    };
    let (a, b) = (with_head(a), with_head(b));
    a.iter().any(|m| b.contains(m))
}

/// Whether two upstreams reach one service: one name, or a target in
/// common (two names for one service, with other timeouts or pools).
fn same_service(loaded: &LoadedConfig, a: &str, b: &str) -> bool {
    use crate::config::TargetConfig;
    let targets = |name: &str| -> Vec<String> {
        let upstream = loaded.config.upstreams.get(name);
        let urls = upstream.into_iter().flat_map(|u| &u.targets).map(|t| match t {
            TargetConfig::Url(u) => u,
            TargetConfig::Weighted(w) => &w.url,
        });
        urls.map(|u| u.trim_end_matches('/').to_ascii_lowercase()).collect()
    };
    a == b || {
        let theirs = targets(b);
        targets(a).iter().any(|t| theirs.contains(t))
    }
}

/// What a route (or one of its aggregate calls) sends its upstream.
struct Sent<'a> {
    /// Where the warning points.
    at: String,
    upstream: &'a str,
    paths: Shape,
    /// `None`: any.
    methods: Option<Vec<String>>,
    /// A routed request (the router's precedence may give some of them to
    /// the guard), not a call the gateway makes itself.
    routed: bool,
}

pub(super) fn rewrites_reaching_guarded_paths(loaded: &LoadedConfig, found: &mut Found) {
    let routes = &loaded.config.routes;
    let guards: Vec<(&RouteConfig, &str, Shape)> = routes
        .iter()
        .filter(|g| guarded(g))
        .filter_map(|g| Some((g, g.upstream.as_deref()?, upstream_paths(g))))
        .collect();
    if guards.is_empty() {
        return;
    }
    // What an unguarded route sends where: (its place, upstream, paths,
    // method, whether the router's precedence may keep it off the guard's).
    for (i, r) in routes.iter().enumerate().filter(|(_, r)| !guarded(r)) {
        let mut sends: Vec<Sent<'_>> = Vec::new();
        if let Some(upstream) = r.upstream.as_deref() {
            let at = if r.rewrite.is_some() { format!("routes[{i}].rewrite") } else { format!("routes[{i}].match") };
            let (paths, methods) = (upstream_paths(r), r.matcher.methods.clone());
            sends.push(Sent { at, upstream, paths, methods, routed: true });
        }
        if let Some(a) = &r.aggregate {
            let catch = catch_alls(r);
            for (name, call) in &a.calls {
                let method = call.method.clone().unwrap_or_else(|| "GET".into());
                let at = format!("routes[{i}].aggregate.calls.{name}.path");
                let (upstream, paths) = (call.upstream.as_str(), template(&call.path, &catch));
                sends.push(Sent { at, upstream, paths, methods: Some(vec![method]), routed: false });
            }
        }
        for Sent { at, upstream, paths, methods, routed } in sends {
            let hit = guards.iter().find(|(g, gu, gp)| {
                same_service(loaded, gu, upstream)
                    && methods_meet(methods.as_deref(), g.matcher.methods.as_deref())
                    && overlap(&paths, gp)
                    && !(routed && guard_takes_them(r, g, gp))
            });
            if let Some((g, _, _)) = hit {
                found.add(
                    "rewrite-reaches-guarded",
                    at,
                    format!(
                        "route `{}` sends upstream `{upstream}` paths that route `{}` guards (`authenticate`/`ip`), \
                         without those checks: a service that trusts the gateway's guard serves them. Guard this \
                         route too, or narrow what it rewrites to",
                        r.name, g.name
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    fn found(routes: &str) -> Vec<(String, String)> {
        let text = format!(
            "upstreams:\n  b: {{ targets: [ \"http://127.0.0.1:9\" ] }}\n  c: {{ targets: [ \"http://127.0.0.1:10\" ] }}\n\
             auth:\n  k: {{ api_key: {{ header: X-Key }} }}\nroutes:\n{routes}"
        );
        let loaded = crate::config::parse_str(&text, "t.yaml", std::path::Path::new(".")).unwrap();
        let mut found = super::Found::default();
        super::rewrites_reaching_guarded_paths(&loaded, &mut found);
        found.0.into_iter().map(|(_, path, message)| (path, message)).collect()
    }

    const ADMIN: &str = "  - { name: admin, match: { path_prefix: /admin }, upstream: b, authenticate: [ k ] }\n";

    #[test]
    fn rewrites_and_calls_onto_guarded_paths_are_named() {
        let routes = format!(
            "{ADMIN}  - {{ name: v1, match: {{ path_prefix: /v1 }}, upstream: b, rewrite: {{ strip_prefix: /v1 }} }}\n\
             \x20 - {{ name: legacy, match: {{ path: \"/legacy/{{*rest}}\" }}, upstream: b, rewrite: {{ path: \"/{{rest}}\" }} }}\n\
             \x20 - {{ name: old, match: {{ path_prefix: /old }}, upstream: b, rewrite: {{ replace_prefix: {{ from: /old, to: /admin }} }} }}\n\
             \x20 - name: dash\n    match: {{ path: \"/dash/{{*rest}}\" }}\n    aggregate: {{ calls: {{ one: {{ upstream: b, path: \"/{{rest}}\" }} }} }}\n"
        );
        let paths: Vec<String> = found(&routes).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            ["routes[1].rewrite", "routes[2].rewrite", "routes[3].rewrite", "routes[4].aggregate.calls.one.path"]
        );
        // A service's public and private areas under two stripped prefixes:
        // `/public/y` is the private `/y`.
        let routes = "  - { name: private, match: { path_prefix: /private }, upstream: c, rewrite: { strip_prefix: /private }, authenticate: [ k ] }\n\
                      \x20 - { name: public, match: { path_prefix: /public }, upstream: c, rewrite: { strip_prefix: /public } }\n";
        let (path, message) = found(routes).pop().expect("a warning");
        assert_eq!(path, "routes[1].rewrite");
        assert!(message.contains("route `public` sends upstream `c` paths that route `private` guards"), "{message}");
        // The guard strips its prefix, the catch-all beside it does not:
        // `/users` is the service path the guard serves as `/admin/users`.
        let routes = "  - { name: admin, match: { path_prefix: /admin }, upstream: c, rewrite: { strip_prefix: /admin }, authenticate: [ k ] }\n\
                      \x20 - { name: site, match: { path_prefix: / }, upstream: c }\n";
        let found_here = found(routes);
        assert_eq!(found_here.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["routes[1].match"]);
        // Two upstream names for one service (a target in common) are one service.
        let text = "upstreams:\n  b: { targets: [ \"http://127.0.0.1:9\" ] }\n  \
                    b2: { targets: [ \"http://127.0.0.1:9/\" ], timeouts: { request: 5s } }\n\
                    auth:\n  k: { api_key: { header: X-Key } }\nroutes:\n\
                    \x20 - { name: admin, match: { path_prefix: /admin }, upstream: b, authenticate: [ k ] }\n\
                    \x20 - { name: v2, match: { path_prefix: /v2 }, upstream: b2, rewrite: { strip_prefix: /v2 } }\n";
        let loaded = crate::config::parse_str(text, "t.yaml", std::path::Path::new(".")).unwrap();
        let mut found = super::Found::default();
        super::rewrites_reaching_guarded_paths(&loaded, &mut found);
        assert_eq!(found.0.iter().map(|(_, p, _)| p.as_str()).collect::<Vec<_>>(), ["routes[1].rewrite"]);
    }

    /// The versioned layout: `/v1` and the guarded `/v1/admin`, both
    /// stripped of `/v1`. Only `/v1/admin/…` becomes `/admin/…`, and the
    /// router gives those to the guard: nothing to say.
    #[test]
    fn a_rewrite_whose_guarded_paths_the_guard_takes_is_not_named() {
        let routes = "  - { name: admin, match: { path_prefix: /v1/admin }, upstream: b, rewrite: { strip_prefix: /v1 }, authenticate: [ k ] }\n\
                      \x20 - { name: v1, match: { path_prefix: /v1 }, upstream: b, rewrite: { strip_prefix: /v1 } }\n\
                      \x20 - { name: site, match: { path_prefix: / }, upstream: c }\n";
        assert_eq!(found(routes), Vec::<(String, String)>::new());
        // The guard on one host only: another host's `/v1/admin/…` passes it by.
        let routes = "  - { name: admin, match: { host: admin.example, path_prefix: /v1/admin }, upstream: b, rewrite: { strip_prefix: /v1 }, authenticate: [ k ] }\n\
                      \x20 - { name: v1, match: { path_prefix: /v1 }, upstream: b, rewrite: { strip_prefix: /v1 } }\n";
        assert_eq!(found(routes).len(), 1);
    }

    #[test]
    fn rewrites_elsewhere_or_to_another_upstream_are_not() {
        let routes = format!(
            "{ADMIN}  - {{ name: v1, match: {{ path_prefix: /v1/users }}, upstream: b, rewrite: {{ strip_prefix: /v1 }} }}\n\
             \x20 - {{ name: other, match: {{ path_prefix: /c }}, upstream: c, rewrite: {{ strip_prefix: /c }} }}\n\
             \x20 - {{ name: one, match: {{ path: \"/u/{{id}}\" }}, upstream: b, rewrite: {{ path: \"/users/{{id}}\" }} }}\n\
             \x20 - {{ name: plain, match: {{ path_prefix: / }}, upstream: b }}\n"
        );
        assert_eq!(found(&routes), Vec::<(String, String)>::new());
    }
}

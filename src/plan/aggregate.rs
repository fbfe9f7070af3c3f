//! Compiling a route's `aggregate`: the calls in an order that runs each
//! after what it waits for, their path templates, and field filters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::Ctx;
use crate::config::aggregate::{AggregateConfig, MergeMode, OnFailure};
use crate::observe::metrics::{Counter, Registry};
use crate::upstream::Upstream;

/// Why a call failed, as `portcullis_aggregate_call_failures_total`'s
/// `reason` label: a fixed set (a partial answer is a 200, so without this
/// count only its body says a call failed).
pub const FAILURE_REASONS: [&str; 8] =
    ["timeout", "connect", "closed", "refused", "status", "invalid_answer", "dependency", "placeholder"];

pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_BODY: u64 = 1 << 20;

#[derive(Debug)]
pub struct AggregatePlan {
    pub timeout: Duration,
    /// Each call after every call it waits for.
    pub calls: Vec<CallPlan>,
    pub merge: MergeMode,
}

#[derive(Debug)]
pub struct CallPlan {
    pub name: Arc<str>,
    /// Its key in the answer (`as`, else the name).
    pub key: Arc<str>,
    pub upstream: Arc<Upstream>,
    pub method: Method,
    pub path: Vec<Piece>,
    /// A failure fails the whole request (`required`, or `on_failure: fail`).
    pub must_succeed: bool,
    pub on_failure: OnFailure,
    /// Indexes (into `calls`) of the calls it waits for.
    pub after: Vec<usize>,
    pub timeout: Option<Duration>,
    pub allow: Option<Vec<Vec<String>>>,
    pub deny: Vec<Vec<String>>,
    pub max_body: u64,
    /// Its failures by reason (`FAILURE_REASONS`' order).
    pub failures: Box<[Arc<Counter>]>,
}

/// A piece of a call's path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(String),
    /// The route's path parameter at this index.
    Param(usize),
    /// A field of an earlier call's answer: the call's index and the path in it.
    Field {
        call: usize,
        path: Vec<String>,
        text: String,
    },
}

/// `at`: the route's place in the config; `params`: its path parameters;
/// `known`: every upstream the config defines (one that failed to compile
/// has its own error, and is not called unknown here).
/// `route`: the route's name, for the calls' failure counts in `registry`.
pub(super) fn compile(
    cx: &mut Ctx,
    (at, route): (&str, &str),
    cfg: &AggregateConfig,
    params: &[Arc<str>],
    upstreams: &HashMap<&str, Arc<Upstream>>,
    known: &[&str],
    registry: &Registry,
) -> Option<AggregatePlan> {
    let at = format!("{at}.aggregate");
    let before = cx.errors.len();
    if cfg.calls.is_empty() {
        cx.err(format!("{at}.calls"), "an aggregate needs at least one call");
    }
    // A budget of nothing fails every call (but one that wins the race).
    if cfg.timeout.is_some_and(|t| t.0.is_zero()) {
        cx.err(format!("{at}.timeout"), "must be longer than zero");
    }
    for (name, c) in &cfg.calls {
        if c.timeout.is_some_and(|t| t.0.is_zero()) {
            cx.err(format!("{at}.calls.{name}.timeout"), "must be longer than zero");
        }
    }
    let names: Vec<&str> = cfg.calls.keys().map(String::as_str).collect();
    let order = match topological(cfg) {
        Ok(order) => order,
        Err(msg) => {
            cx.err(format!("{at}.calls"), msg);
            return None;
        }
    };
    // Index in `order` of each call name.
    let position: HashMap<&str, usize> = order.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut keys: HashMap<String, String> = HashMap::new();
    let mut calls = Vec::new();
    for name in &order {
        let c = &cfg.calls[*name];
        let cat = format!("{at}.calls.{name}");
        let upstream = upstreams.get(c.upstream.as_str()).cloned();
        if upstream.is_none() && !known.contains(&c.upstream.as_str()) {
            cx.err(
                format!("{cat}.upstream"),
                format!("unknown upstream `{}` ({})", c.upstream, super::route::defined(known)),
            );
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')) {
            cx.err(
                cat.clone(),
                format!(
                    "a call's name is letters, digits, `_` and `-` (it is a key of the answer and goes in \
                     `Portcullis-Aggregate`): `{name}`"
                ),
            );
        }
        let method = match c.method.as_deref().map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes())) {
            None => Method::GET,
            // A call asks for a JSON answer about a resource: CONNECT (a
            // tunnel, its target an authority) is no such request.
            Some(Ok(m)) if m == Method::CONNECT => {
                cx.err(format!("{cat}.method"), "CONNECT opens a tunnel: a call asks for a JSON answer (GET, POST…)");
                Method::GET
            }
            // TRACE echoes the request (with the identity headers): no resource's JSON.
            Some(Ok(m)) if m == Method::TRACE => {
                cx.err(format!("{cat}.method"), "TRACE echoes the request: a call asks for a JSON answer (GET, POST…)");
                Method::GET
            }
            // An answer to HEAD has no body: nothing to merge, ever.
            Some(Ok(m)) if m == Method::HEAD => {
                cx.err(
                    format!("{cat}.method"),
                    "a HEAD answer has no body: a call asks for a JSON answer (GET, POST…)",
                );
                Method::GET
            }
            Some(Ok(m)) => m,
            Some(Err(_)) => {
                cx.err(format!("{cat}.method"), "not a method");
                Method::GET
            }
        };
        let waits_for = reachable(cfg, name);
        let path = match template(&c.path, params, &waits_for, &position) {
            Ok(p) => p,
            Err(msg) => {
                cx.err(format!("{cat}.path"), msg);
                Vec::new()
            }
        };
        let key = c.rename.clone().unwrap_or_else(|| name.to_string());
        if key == "errors" {
            let at = if c.rename.is_some() { format!("{cat}.as") } else { cat.clone() };
            cx.err(at, "`errors` is the key of the failed calls' entries; name the call (or its `as`) otherwise");
        }
        if let Some(other) = keys.insert(key.clone(), name.to_string()) {
            cx.err(format!("{cat}.as"), format!("`{key}` is also the key of call `{other}`"));
        }
        let after = c.after.iter().filter_map(|a| position.get(a.as_str()).copied()).collect();
        // Unknown (reported above): the aggregate is not built.
        let Some(upstream) = upstream else { continue };
        calls.push(CallPlan {
            name: Arc::from(*name),
            key: key.into(),
            upstream,
            method,
            path,
            must_succeed: c.required || c.on_failure == OnFailure::Fail,
            on_failure: c.on_failure,
            after,
            timeout: c.timeout.map(|t| t.0),
            allow: c.allow.as_ref().map(|a| a.iter().map(|p| dot_path(p)).collect()),
            deny: c.deny.iter().map(|p| dot_path(p)).collect(),
            max_body: c.max_body_size.map_or(DEFAULT_MAX_BODY, |s| s.0),
            failures: FAILURE_REASONS
                .iter()
                .map(|reason| {
                    let labels =
                        vec![("route", route.to_string()), ("call", name.to_string()), ("reason", reason.to_string())];
                    registry.counter("portcullis_aggregate_call_failures", labels)
                })
                .collect(),
        });
    }
    if cfg.merge == MergeMode::Flat {
        flat_collisions(cx, &at, cfg, &names);
    }
    if cx.errors.len() > before {
        return None;
    }
    Some(AggregatePlan { timeout: cfg.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0), calls, merge: cfg.merge })
}

/// The calls in an order where each comes after those it names in `after`
/// (by name, for a stable order); a circle or an unknown name is an error.
fn topological(cfg: &AggregateConfig) -> Result<Vec<&str>, String> {
    for (name, c) in &cfg.calls {
        for a in &c.after {
            if !cfg.calls.contains_key(a) {
                return Err(format!("call `{name}` waits for `{a}`, which is not a call here"));
            }
        }
    }
    let mut done: Vec<&str> = Vec::new();
    while done.len() < cfg.calls.len() {
        let ready = cfg
            .calls
            .iter()
            .find(|(n, c)| !done.contains(&n.as_str()) && c.after.iter().all(|a| done.contains(&a.as_str())));
        match ready {
            Some((n, _)) => done.push(n),
            None => {
                let left: Vec<&str> = cfg.calls.keys().map(String::as_str).filter(|n| !done.contains(n)).collect();
                return Err(format!("these calls wait for each other in a circle: {}", left.join(", ")));
            }
        }
    }
    Ok(done)
}

/// Every call `name` waits for, directly or through others.
fn reachable<'a>(cfg: &'a AggregateConfig, name: &str) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    let mut stack: Vec<&str> =
        cfg.calls.get(name).map(|c| c.after.iter().map(String::as_str).collect()).unwrap_or_default();
    while let Some(n) = stack.pop() {
        if !seen.contains(&n) {
            seen.push(n);
            if let Some(c) = cfg.calls.get(n) {
                stack.extend(c.after.iter().map(String::as_str));
            }
        }
    }
    seen
}

/// `/orders?user={user.id}&page={page}` into pieces.
fn template(
    text: &str,
    params: &[Arc<str>],
    waits_for: &[&str],
    position: &HashMap<&str, usize>,
) -> Result<Vec<Piece>, String> {
    if !text.starts_with('/') {
        return Err(format!("`{text}`: a call's path starts with `/`"));
    }
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Literal(rest[..open].to_string()));
        }
        let close = rest[open..].find('}').ok_or_else(|| format!("`{text}`: a `{{` without its `}}`"))? + open;
        let inner = &rest[open + 1..close];
        let piece = match inner.split_once('.') {
            None => match params.iter().position(|p| &**p == inner) {
                Some(i) => Piece::Param(i),
                None => {
                    let known: Vec<&str> = params.iter().map(|p| &**p).collect();
                    return Err(format!(
                        "`{{{inner}}}` is not a path parameter of the route (it has: {}); a call's field is written `{{call.field}}`",
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ));
                }
            },
            Some((call, field)) => {
                if !waits_for.contains(&call) {
                    return Err(format!("`{{{inner}}}` uses call `{call}`: list it in `after`"));
                }
                if field.is_empty() {
                    return Err(format!("`{{{inner}}}`: name a field after the dot"));
                }
                Piece::Field { call: position[call], path: dot_path(field), text: inner.to_string() }
            }
        };
        pieces.push(piece);
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("`{text}`: a `}}` without its `{{`"));
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest.to_string()));
    }
    for piece in &pieces {
        let Piece::Literal(l) = piece else { continue };
        if l.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("`{text}`: spaces and control characters are not allowed in a path"));
        }
        // What a request target may hold (RFC 9112 §3.2): ASCII, valid
        // `%` escapes, no fragment (it would be dropped, the query after it too).
        if !l.is_ascii() {
            return Err(format!("`{text}`: a path is ASCII: percent-encode other characters (`é` is `%C3%A9`)"));
        }
        if l.contains('#') {
            return Err(format!("`{text}`: a call's path has no fragment (`#`): it is never sent"));
        }
        let bytes = l.as_bytes();
        let hex = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_hexdigit);
        let bad_escape = bytes.iter().enumerate().any(|(i, &b)| b == b'%' && !(hex(i + 1) && hex(i + 2)));
        if bad_escape {
            return Err(format!("`{text}`: a `%` starts an escape of two hex digits (`%25` for `%` itself)"));
        }
    }
    Ok(pieces)
}

fn dot_path(p: &str) -> Vec<String> {
    p.split('.').map(str::to_string).collect()
}

/// `merge: flat`: two calls whose `allow` lists name the same top-level
/// field would collide: a config error. (Without `allow` the fields are
/// not known until the answers come; a collision is then logged.)
fn flat_collisions(cx: &mut Ctx, at: &str, cfg: &AggregateConfig, names: &[&str]) {
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for name in names {
        let Some(allow) = &cfg.calls[*name].allow else { continue };
        for field in allow {
            let top = field.split('.').next().unwrap_or(field);
            if let Some(other) = owner.insert(top, name)
                && other != *name
            {
                cx.err(
                    format!("{at}.calls.{name}.allow"),
                    format!("`{top}` is also a field of call `{other}`: with `merge: flat` one would hide the other"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions<'a>(names: &[&'a str]) -> HashMap<&'a str, usize> {
        names.iter().enumerate().map(|(i, n)| (*n, i)).collect()
    }

    #[test]
    fn templates() {
        let params: Vec<Arc<str>> = vec!["id".into()];
        let pos = positions(&["user"]);
        let t = template("/orders?user={user.id}&x={id}", &params, &["user"], &pos).unwrap();
        assert_eq!(
            t,
            vec![
                Piece::Literal("/orders?user=".into()),
                Piece::Field { call: 0, path: vec!["id".into()], text: "user.id".into() },
                Piece::Literal("&x=".into()),
                Piece::Param(0),
            ]
        );
        assert!(template("/x/{nope}", &params, &[], &pos).unwrap_err().contains("not a path parameter"));
        assert!(template("/x/{user.id}", &params, &[], &pos).unwrap_err().contains("list it in `after`"));
        assert!(template("/x/{id", &params, &[], &pos).is_err());
        assert!(template("x", &params, &[], &pos).is_err());
        assert!(template("/a b", &params, &[], &pos).is_err());
    }
}
